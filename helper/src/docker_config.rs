//! Registers the helper with the clients that read credential helpers:
//! Docker (`$DOCKER_CONFIG/config.json`, default `~/.docker/config.json`)
//! and podman, buildah and skopeo (the containers `auth.json`:
//! `$REGISTRY_AUTH_FILE`, else `$XDG_RUNTIME_DIR/containers/auth.json`,
//! else `~/.config/containers/auth.json`). Both use the same `credHelpers`
//! map; every other entry is kept, and each file is replaced atomically.

use std::fs;
use std::path::{Path, PathBuf};

fn home() -> Result<PathBuf, String> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .ok_or_else(|| "HOME is not set".into())
}

fn docker_config() -> Result<PathBuf, String> {
    Ok(match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => PathBuf::from(dir),
        None => home()?.join(".docker"),
    }
    .join("config.json"))
}

fn containers_auth() -> Result<PathBuf, String> {
    let set = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(file) = set("REGISTRY_AUTH_FILE") {
        return Ok(PathBuf::from(file));
    }
    Ok(match set("XDG_RUNTIME_DIR") {
        Some(dir) => PathBuf::from(dir).join("containers"),
        None => home()?.join(".config").join("containers"),
    }
    .join("auth.json"))
}

/// Sets `credHelpers[host] = "atcr"` in Docker's config and the containers
/// `auth.json`; returns the files written.
pub fn register_helper(host: &str) -> Result<Vec<PathBuf>, String> {
    let paths = vec![docker_config()?, containers_auth()?];
    for path in &paths {
        add_helper(path, host)?;
    }
    Ok(paths)
}

/// Adds `credHelpers[host] = "atcr"` to the JSON config at `path`.
pub fn add_helper(path: &Path, host: &str) -> Result<(), String> {
    let mut config: serde_json::Value = match fs::read(path) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => serde_json::json!({}),
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
        .ok_or_else(|| format!("credHelpers in {} is not a JSON object", path.display()))?;
    helpers.insert(host.to_string(), serde_json::Value::String("atcr".into()));
    let json = serde_json::to_string_pretty(&config).map_err(|e| e.to_string())? + "\n";
    crate::store::replace_private(path, json.as_bytes())
}
