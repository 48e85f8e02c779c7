//! Registers the helper in Docker's client configuration
//! (`$DOCKER_CONFIG/config.json`, default `~/.docker/config.json`).

use std::fs;
use std::path::PathBuf;

/// Sets `credHelpers[host] = "atcr"`, keeping every other setting.
pub fn register_helper(host: &str) -> Result<PathBuf, String> {
    let dir = match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").ok_or("HOME is not set")?).join(".docker"),
    };
    let path = dir.join("config.json");
    let mut config: serde_json::Value = match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| format!("{} is not valid JSON: {e}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({}),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let root = config
        .as_object_mut()
        .ok_or_else(|| format!("{} is not a JSON object", path.display()))?;
    let helpers = root
        .entry("credHelpers")
        .or_insert_with(|| serde_json::json!({}));
    let helpers = helpers
        .as_object_mut()
        .ok_or("credHelpers is not a JSON object")?;
    helpers.insert(host.to_string(), serde_json::Value::String("atcr".into()));
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let json = serde_json::to_string_pretty(&config).map_err(|e| e.to_string())?;
    fs::write(&path, json + "\n").map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}
