//! What `docker-credential-atcr` and `atcr` share: the credentials file
//! (`store.rs`), the device login (`login.rs`), the appview's HTTP
//! (`http.rs`) and the Docker and containers configuration
//! (`docker_config.rs`).

pub mod docker_config;
pub mod http;
pub mod login;
pub mod store;

use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::path::PathBuf;

/// An XDG base directory: `$<var>` when it is set to an absolute path (the
/// spec says an empty or relative value is to be ignored), else
/// `~/<fallback>`.
pub fn xdg_dir(var: &str, fallback: &str) -> Result<PathBuf, String> {
    base_dir(std::env::var_os(var), std::env::var_os("HOME"), fallback)
        .ok_or_else(|| format!("neither {var} nor HOME is set"))
}

fn base_dir(set: Option<OsString>, home: Option<OsString>, fallback: &str) -> Option<PathBuf> {
    set.map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            home.filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(fallback))
        })
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Credentials {
    #[serde(rename = "ServerURL")]
    pub server_url: String,
    pub username: String,
    pub secret: String,
    /// The device name a `login` was approved under (not part of the
    /// credential-helper protocol: `get` leaves it out).
    #[serde(
        rename = "DeviceName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub device_name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xdg_dirs_ignore_empty_and_relative_values() {
        let home = || Some(OsString::from("/home/someone"));
        for (value, want) in [
            (Some(""), "/home/someone/.cache"),
            (Some("relative/dir"), "/home/someone/.cache"),
            (None, "/home/someone/.cache"),
            (Some("/var/cache/me"), "/var/cache/me"),
        ] {
            let got = base_dir(value.map(OsString::from), home(), ".cache");
            assert_eq!(got, Some(PathBuf::from(want)), "{value:?}");
        }
        assert_eq!(base_dir(None, Some(OsString::new()), ".cache"), None);
    }
}
