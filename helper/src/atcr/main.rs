//! `atcr`: push and pull images between disk and an ATCR registry, blobs
//! going straight between disk and the owner's hold (presigned multipart
//! uploads), manifests through the appview. Uses the logins of
//! `docker-credential-atcr` (the same credentials file, the same device
//! login).

mod image;
mod progress;
mod pull;
mod push;
mod registry;
mod retry;
mod source;
mod state;
mod upload;

use atcr_helper::store::CredentialStore;
use std::process::ExitCode;

const USAGE: &str = "usage: atcr <command>

  push SOURCE REGISTRY/NAME[:TAG] [--parallel N] [--part-size SIZE]
      SOURCE is an image on this machine:
        oci:DIR[:TAG]              an OCI layout directory
        oci-archive:FILE[:TAG]     an OCI layout in a tar
        docker-archive:FILE[:REF]  a `docker save` / `podman save` tar
        docker-daemon:IMAGE        an image in the Docker engine   } exported to a
        containers-storage:IMAGE   an image in podman's storage     } temporary layout
                                                                    (skopeo, else docker/podman save)
      Blobs the registry lacks go straight to your hold in parts of SIZE
      (default 16MiB), N at a time (default 4); an interrupted push resumes.
  pull REGISTRY/NAME[:TAG|@DIGEST] DEST [--parallel N]
      DEST is oci:DIR[:TAG], oci-archive:FILE[:TAG] or docker-archive:FILE
  login [REGISTRY] [--device-name NAME]   sign this device in (as docker-credential-atcr login)
  logout [REGISTRY]
  status
  version

Credentials: ~/.config/atcr/credentials.json, shared with docker-credential-atcr.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(output) => {
            if !output.is_empty() {
                println!("{output}");
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("atcr: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Options common to push and pull.
pub struct Options {
    pub positional: Vec<String>,
    pub parallel: usize,
    pub part_size: u64,
}

fn options(args: &[String]) -> Result<Options, String> {
    let mut opts = Options {
        positional: Vec::new(),
        parallel: 4,
        part_size: 16 * 1024 * 1024,
    };
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| rest.next().cloned())
                .ok_or(format!("{flag} needs a value"))
        };
        match flag {
            "--parallel" | "-j" => {
                opts.parallel = value()?
                    .parse()
                    .ok()
                    .filter(|n| (1..=64).contains(n))
                    .ok_or("--parallel takes 1 to 64")?
            }
            "--part-size" => {
                opts.part_size = atcr_protocol::quota::parse_size(&value()?)
                    .map_err(|e| format!("--part-size: {e}"))?
            }
            f if f.starts_with("--") => return Err(format!("unknown option {f}\n\n{USAGE}")),
            _ => opts.positional.push(arg.clone()),
        }
    }
    Ok(opts)
}

fn run(args: &[String]) -> Result<String, String> {
    let store = CredentialStore::default_location()?;
    match args.first().map(String::as_str) {
        Some("push") => {
            let opts = options(&args[1..])?;
            let [source, target] = &opts.positional[..] else {
                return Err(USAGE.into());
            };
            push::push(&store, source, target, &opts)
        }
        Some("pull") => {
            let opts = options(&args[1..])?;
            let [target, dest] = &opts.positional[..] else {
                return Err(USAGE.into());
            };
            pull::pull(&store, target, dest, &opts)
        }
        Some("login") => {
            let mut registry = None;
            let mut name = None;
            let mut rest = args[1..].iter();
            while let Some(arg) = rest.next() {
                match arg.as_str() {
                    "--device-name" => {
                        name = Some(rest.next().ok_or("--device-name needs a name")?.clone())
                    }
                    a => registry = Some(a.to_string()),
                }
            }
            let registry = registry.unwrap_or_else(|| "atcr.io".into());
            atcr_helper::login::login(&store, &registry, name.as_deref())
        }
        Some("logout") => atcr_helper::login::logout(&store, args.get(1).map(String::as_str)),
        Some("status") => atcr_helper::login::status(&store),
        Some("version") => Ok(format!("atcr {}", atcr_protocol::build_info!())),
        Some("help" | "--help" | "-h") => Ok(USAGE.into()),
        _ => Err(USAGE.into()),
    }
}
