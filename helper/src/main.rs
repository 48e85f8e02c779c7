//! `docker-credential-atcr`: the Docker credential helper for ATCR registries.
//!
//! Speaks the credential-helper protocol Docker, Podman, Buildah and Skopeo
//! use: `store`, `get`, `erase` and `list` over stdin/stdout. `configure-docker`
//! registers the helper for a registry host in `~/.docker/config.json`.

mod docker_config;
mod store;

use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::process::ExitCode;
use store::CredentialStore;

/// The message Docker recognises as "nothing stored for this registry".
const NOT_FOUND: &str = "credentials not found in native keychain";

#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Credentials {
    #[serde(rename = "ServerURL")]
    pub server_url: String,
    pub username: String,
    pub secret: String,
}

const USAGE: &str =
    "usage: docker-credential-atcr <store|get|erase|list|configure-docker [registry-host]|version>

Credential-helper commands read stdin and write stdout as Docker expects:
  store   stdin: {\"ServerURL\":…,\"Username\":…,\"Secret\":…}
  get     stdin: server URL      stdout: the stored credentials
  erase   stdin: server URL
  list    stdout: {server URL: username}
configure-docker registers this helper for a registry in ~/.docker/config.json.";

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
            let creds = store.get(server.trim())?.ok_or(NOT_FOUND)?;
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
        Some("configure-docker") => {
            let host = args.get(1).map(String::as_str).unwrap_or("atcr.io");
            let path = docker_config::register_helper(host)?;
            Ok(format!(
                "docker-credential-atcr now provides credentials for {host} ({})",
                path.display()
            ))
        }
        Some("version") => Ok(version()),
        _ => Err(USAGE.into()),
    }
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
