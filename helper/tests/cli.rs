//! Runs the built helper binary as Docker would: commands on argv, data on stdin.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn helper(home: &std::path::Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_docker-credential-atcr"))
        .args(args)
        .env("HOME", home)
        .env("ATCR_NO_BROWSER", "1")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("DOCKER_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("helper starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn store_get_list_erase_round_trip() {
    let home = tempdir();
    let stored = helper(
        &home,
        &["store"],
        r#"{"ServerURL":"https://127.0.0.1:8787","Username":"alice.test","Secret":"abcd-efgh-ijkl-mnop"}"#,
    );
    assert!(stored.status.success(), "{}", stdout(&stored));

    let got = helper(&home, &["get"], "127.0.0.1:8787\n");
    assert!(got.status.success());
    let creds: serde_json::Value = serde_json::from_str(&stdout(&got)).unwrap();
    assert_eq!(creds["Username"], "alice.test");
    assert_eq!(creds["Secret"], "abcd-efgh-ijkl-mnop");

    let listed = helper(&home, &["list"], "");
    let list: serde_json::Value = serde_json::from_str(&stdout(&listed)).unwrap();
    assert_eq!(list["https://127.0.0.1:8787"], "alice.test");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(home.join(".config/atcr/credentials.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the store must be private");
    }

    assert!(helper(&home, &["erase"], "https://127.0.0.1:8787")
        .status
        .success());
    let gone = helper(&home, &["get"], "127.0.0.1:8787");
    assert!(!gone.status.success());
    assert_eq!(stdout(&gone), "credentials not found in native keychain");
}

#[test]
fn malformed_store_input_is_refused() {
    let home = tempdir();
    let out = helper(&home, &["store"], "not json");
    assert!(!out.status.success());
    assert!(stdout(&out).starts_with("invalid credentials on stdin"));
}

#[test]
fn configure_docker_keeps_existing_settings() {
    let home = tempdir();
    std::fs::create_dir_all(home.join(".docker")).unwrap();
    std::fs::write(
        home.join(".docker/config.json"),
        r#"{"auths":{"ghcr.io":{}},"credHelpers":{"gcr.io":"gcloud"}}"#,
    )
    .unwrap();
    let out = helper(&home, &["configure-docker", "127.0.0.1:8787"], "");
    assert!(out.status.success(), "{}", stdout(&out));
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.join(".docker/config.json")).unwrap()).unwrap();
    assert_eq!(config["credHelpers"]["127.0.0.1:8787"], "atcr");
    assert_eq!(config["credHelpers"]["gcr.io"], "gcloud");
    assert!(config["auths"]["ghcr.io"].is_object());
    // podman, buildah and skopeo read the containers auth.json.
    let auth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.join(".config/containers/auth.json")).unwrap())
            .unwrap();
    assert_eq!(auth["credHelpers"]["127.0.0.1:8787"], "atcr");
}

#[test]
fn configure_docker_follows_registry_auth_file() {
    let home = tempdir();
    let file = home.join("elsewhere/auth.json");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, r#"{"auths":{"quay.io":{"auth":"eA=="}}}"#).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_docker-credential-atcr"))
        .args(["configure-docker", "atcr.example"])
        .env("HOME", &home)
        .env("REGISTRY_AUTH_FILE", &file)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(child.wait().unwrap().success());
    let auth: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(auth["credHelpers"]["atcr.example"], "atcr");
    assert_eq!(auth["auths"]["quay.io"]["auth"], "eA==");
}

#[test]
fn status_logout_and_login_without_a_registry_say_so() {
    let home = tempdir();
    let status = helper(&home, &["status"], "");
    assert!(status.status.success());
    assert_eq!(stdout(&status), "Not logged in to any registry.");
    let logout = helper(&home, &["logout"], "");
    assert!(!logout.status.success());
    assert_eq!(stdout(&logout), "not logged in to any registry");
    // Nothing listens on port 9 of loopback: the login fails at once.
    let login = helper(&home, &["login", "127.0.0.1:9"], "");
    assert!(!login.status.success());
    assert!(
        stdout(&login).starts_with("cannot reach http://127.0.0.1:9/auth/device/code"),
        "{}",
        stdout(&login)
    );
    let bad = helper(&home, &["login", "--device-name"], "");
    assert!(!bad.status.success());
    assert_eq!(stdout(&bad), "--device-name needs a name");
}

#[test]
fn get_leaves_out_the_device_name() {
    let home = tempdir();
    let stored = helper(
        &home,
        &["store"],
        r#"{"ServerURL":"atcr.example","Username":"alice.test","Secret":"atcr_dev_x","DeviceName":"laptop"}"#,
    );
    assert!(stored.status.success());
    let got = helper(&home, &["get"], "atcr.example");
    let creds: serde_json::Value = serde_json::from_str(&stdout(&got)).unwrap();
    assert_eq!(
        creds,
        serde_json::json!({"ServerURL": "atcr.example", "Username": "alice.test", "Secret": "atcr_dev_x"})
    );
}

#[test]
fn version_names_the_build() {
    let out = helper(&tempdir(), &["version"], "");
    assert!(out.status.success());
    // Built by the same cargo invocation as this test, with the same ATCR_COMMIT.
    let commit = option_env!("ATCR_COMMIT")
        .filter(|c| !c.is_empty())
        .unwrap_or("unknown");
    assert_eq!(
        stdout(&out),
        format!(
            "docker-credential-atcr {} (commit {commit})",
            env!("CARGO_PKG_VERSION")
        )
    );
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "atcr-helper-test-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}
