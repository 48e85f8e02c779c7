//! `docker-credential-atcr`: the Docker credential helper for ATCR registries.
//!
//! Speaks the credential-helper protocol Docker, Podman, Buildah and Skopeo
//! use: `store`, `get`, `erase` and `list` over stdin/stdout. `login`,
//! `logout` and `status` sign a device in with an appview's device login
//! (`login.rs`). `configure-docker` registers the helper for a registry
//! host in `~/.docker/config.json` and the containers `auth.json`.

use atcr_helper::store::CredentialStore;
use atcr_helper::{docker_config, login, Credentials};
use std::io::{Read, Write};
use std::process::ExitCode;

/// The message Docker recognises as "nothing stored for this registry".
const NOT_FOUND: &str = "credentials not found in native keychain";

const USAGE: &str = "usage: docker-credential-atcr <command>

Signing in (the registry defaults to atcr.io):
  login [registry] [--device-name NAME]
                    sign this device in: approve the code shown in a browser
  logout [registry] revoke this device at the registry and forget it here
  status            each registry: who, which device, valid or revoked
  configure-docker [registry]
                    use this helper for the registry in ~/.docker/config.json
                    and the containers auth.json (podman, buildah, skopeo)
  version

Credential-helper commands read stdin and write stdout as Docker expects:
  store   stdin: {\"ServerURL\":…,\"Username\":…,\"Secret\":…}
  get     stdin: server URL      stdout: the stored credentials
  erase   stdin: server URL
  list    stdout: {server URL: username}";

const DEFAULT_REGISTRY: &str = "atcr.io";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(output) => {
            if !output.is_empty() {
                let mut stdout = std::io::stdout();
                let _ = writeln!(stdout, "{output}");
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            // Docker shows stdout to the user for helper failures.
            println!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<String, String> {
    let store = CredentialStore::default_location()?;
    match args.first().map(String::as_str) {
        Some("store") => {
            let creds: Credentials = serde_json::from_str(&read_stdin()?)
                .map_err(|e| format!("invalid credentials on stdin: {e}"))?;
            store.save(creds)?;
            Ok(String::new())
        }
        Some("get") => {
            let server = read_stdin()?;
            // Only what is stored: never a login, never a wait.
            let mut creds = store.get(server.trim())?.ok_or(NOT_FOUND)?;
            creds.device_name = None;
            serde_json::to_string(&creds).map_err(|e| e.to_string())
        }
        Some("erase") => {
            let server = read_stdin()?;
            if store.erase(server.trim())? {
                Ok(String::new())
            } else {
                Err(NOT_FOUND.into())
            }
        }
        Some("list") => serde_json::to_string(&store.list()?).map_err(|e| e.to_string()),
        Some("login") => {
            let (registry, name) = login_args(&args[1..])?;
            login::login(&store, &registry, name.as_deref())
        }
        Some("logout") => login::logout(&store, args.get(1).map(String::as_str)),
        Some("status") => login::status(&store),
        Some("configure-docker") => {
            let host = args.get(1).map(String::as_str).unwrap_or(DEFAULT_REGISTRY);
            let paths = docker_config::register_helper(host)?;
            let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            Ok(format!(
                "docker-credential-atcr now provides credentials for {host} ({})",
                shown.join(", ")
            ))
        }
        Some("version") => Ok(version()),
        _ => Err(USAGE.into()),
    }
}

/// `login [registry] [--device-name NAME]`.
fn login_args(args: &[String]) -> Result<(String, Option<String>), String> {
    let mut registry = None;
    let mut name = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--device-name" => {
                name = Some(rest.next().ok_or("--device-name needs a name")?.clone())
            }
            a if a.starts_with('-') => return Err(format!("unknown option {a}\n\n{USAGE}")),
            a if registry.is_none() => registry = Some(a.to_string()),
            a => return Err(format!("unexpected argument {a}\n\n{USAGE}")),
        }
    }
    Ok((registry.unwrap_or_else(|| DEFAULT_REGISTRY.into()), name))
}

/// `docker-credential-atcr <version> (commit <commit>)`: the commit is
/// `ATCR_COMMIT` at build time, else `unknown`.
fn version() -> String {
    format!("docker-credential-atcr {}", atcr_protocol::build_info!())
}

fn read_stdin() -> Result<String, String> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| format!("cannot read stdin: {e}"))?;
    Ok(input)
}
