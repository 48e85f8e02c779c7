//! Credentials kept in a file only the user can read
//! (`$XDG_CONFIG_HOME/atcr/credentials.json`, mode 0600), keyed by registry.

use crate::Credentials;
use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

pub struct CredentialStore {
    path: PathBuf,
}

/// Server URLs arrive as `host`, `https://host` or `https://host/v2/`;
/// all name the same registry.
pub fn registry_key(server_url: &str) -> String {
    let s = server_url.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    s.split('/').next().unwrap_or(s).to_ascii_lowercase()
}

impl CredentialStore {
    pub fn default_location() -> Result<Self, String> {
        let base = crate::xdg_dir("XDG_CONFIG_HOME", ".config")?;
        Ok(CredentialStore {
            path: base.join("atcr").join("credentials.json"),
        })
    }

    fn load(&self) -> Result<BTreeMap<String, Credentials>, String> {
        match fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("{} is corrupt: {e}", self.path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(format!("cannot read {}: {e}", self.path.display())),
        }
    }

    fn write(&self, all: &BTreeMap<String, Credentials>) -> Result<(), String> {
        let json = serde_json::to_vec_pretty(all).map_err(|e| e.to_string())?;
        replace_private(&self.path, &json)
    }

    pub fn save(&self, creds: Credentials) -> Result<(), String> {
        let mut all = self.load()?;
        all.insert(registry_key(&creds.server_url), creds);
        self.write(&all)
    }

    pub fn get(&self, server_url: &str) -> Result<Option<Credentials>, String> {
        Ok(self.load()?.remove(&registry_key(server_url)))
    }

    pub fn erase(&self, server_url: &str) -> Result<bool, String> {
        let mut all = self.load()?;
        let found = all.remove(&registry_key(server_url)).is_some();
        if found {
            self.write(&all)?;
        }
        Ok(found)
    }

    /// Every stored login, in registry order.
    pub fn all(&self) -> Result<Vec<Credentials>, String> {
        Ok(self.load()?.into_values().collect())
    }

    pub fn list(&self) -> Result<BTreeMap<String, String>, String> {
        Ok(self
            .load()?
            .into_values()
            .map(|c| (c.server_url, c.username))
            .collect())
    }
}

/// Replaces `path` with `bytes`: a private temporary file beside it, then a
/// rename, so readers never see a half-written or world-readable file.
pub fn replace_private(path: &std::path::Path, bytes: &[u8]) -> Result<(), String> {
    let dir = path
        .parent()
        .ok_or_else(|| format!("{} has no folder", path.display()))?;
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    write_private(&tmp, bytes).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    fs::rename(&tmp, path).map_err(|e| format!("cannot replace {}: {e}", path.display()))
}

#[cfg(unix)]
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_of_one_registry_share_a_key() {
        for url in [
            "atcr.io",
            "https://atcr.io",
            "https://ATCR.io/v2/",
            "http://atcr.io/",
        ] {
            assert_eq!(registry_key(url), "atcr.io", "{url}");
        }
        assert_eq!(registry_key("127.0.0.1:8787"), "127.0.0.1:8787");
    }
}
