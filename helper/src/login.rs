//! `login`, `logout` and `status`: the device login with an appview
//! (RFC 8628 in shape) and what became of it.
//!
//! `login` asks `/auth/device/code` for a code, shows the user code and the
//! approval page (opening a browser only where one can show: a desktop
//! session, not over SSH), polls `/auth/device/token` at the interval the
//! appview names (5 s more after each `slow_down`) and stores the device
//! secret it is finally given. Nothing here runs during `get`: Docker never
//! waits on a browser.

use crate::http::{base_url, get_basic, post_form, Answer};
use crate::store::CredentialStore;
use crate::Credentials;
use atcr_protocol::device::{is_device_secret, GRANT_TYPE, SLOW_DOWN_SECS};
use std::time::{Duration, Instant};

fn refusal(answer: &Answer, what: &str) -> String {
    let error = answer.json["error"].as_str().unwrap_or("");
    let description = answer.json["error_description"].as_str().unwrap_or("");
    format!(
        "{what} failed (HTTP {}): {error} {description}",
        answer.status
    )
    .trim_end()
    .to_string()
}

/// This machine's name, the default name of the device.
fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "docker-credential-atcr".into())
}

/// Whether a browser opened here would be seen: not over SSH, not with
/// `ATCR_NO_BROWSER` set, and on Linux only in a graphical session.
fn can_open_browser() -> bool {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    if set("ATCR_NO_BROWSER") || set("SSH_CONNECTION") || set("SSH_TTY") {
        return false;
    }
    cfg!(target_os = "macos") || set("DISPLAY") || set("WAYLAND_DISPLAY")
}

fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    // Not waited for: a browser that fails to start leaves the printed URL.
    let _ = std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

/// Prints a line now (the user acts on it while the helper waits).
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// `login [registry] [--device-name NAME]`.
pub fn login(
    store: &CredentialStore,
    registry: &str,
    device_name: Option<&str>,
) -> Result<String, String> {
    let base = base_url(registry);
    let name = device_name.map(str::to_string).unwrap_or_else(host_name);
    let started = post_form(
        &format!("{base}/auth/device/code"),
        &[("device_name", &name)],
        None,
    )?;
    if started.status != 200 {
        return Err(refusal(&started, "starting the login"));
    }
    let field = |k: &str| started.json[k].as_str().unwrap_or_default().to_string();
    let (device_code, user_code) = (field("device_code"), field("user_code"));
    let (uri, complete) = (
        field("verification_uri"),
        field("verification_uri_complete"),
    );
    if device_code.is_empty() || user_code.is_empty() {
        return Err(format!("{base} answered no device code"));
    }
    let mut interval = started.json["interval"].as_u64().unwrap_or(5).max(1);
    let expires_in = started.json["expires_in"].as_u64().unwrap_or(600);
    say(&format!(
        "To sign in to {registry}, open {uri} and enter the code:\n\n    {user_code}\n"
    ));
    if !complete.is_empty() {
        say(&format!("(or open {complete})"));
    }
    if can_open_browser() {
        open_browser(if complete.is_empty() { &uri } else { &complete });
    }
    say("Waiting for approval…");
    let deadline = Instant::now() + Duration::from_secs(expires_in + interval);
    loop {
        std::thread::sleep(Duration::from_secs(interval));
        let polled = post_form(
            &format!("{base}/auth/device/token"),
            &[("grant_type", GRANT_TYPE), ("device_code", &device_code)],
            None,
        )?;
        if polled.status == 200 {
            let got = |k: &str| polled.json[k].as_str().unwrap_or_default().to_string();
            let secret = got("device_secret");
            if !is_device_secret(&secret) {
                return Err(format!("{base} answered no device secret"));
            }
            let username = Some(got("handle"))
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| got("did"));
            let device_name = got("device_name");
            store.save(Credentials {
                server_url: registry.trim().to_string(),
                username: username.clone(),
                secret,
                device_name: Some(device_name.clone()),
            })?;
            return Ok(format!(
                "Signed in to {registry} as {username} (device \"{device_name}\")."
            ));
        }
        match polled.json["error"].as_str() {
            Some("authorization_pending") => {}
            Some("slow_down") => interval += SLOW_DOWN_SECS,
            Some("expired_token") => {
                return Err(format!(
                    "The code {user_code} expired before it was approved: run login again."
                ))
            }
            Some("access_denied") => return Err(format!("The login was denied at {uri}.")),
            _ => return Err(refusal(&polled, "the login")),
        }
        if Instant::now() > deadline {
            return Err(format!(
                "The code {user_code} expired before it was approved: run login again."
            ));
        }
    }
}

/// The stored login of `registry`, or the only one when none is named.
fn chosen(store: &CredentialStore, registry: Option<&str>) -> Result<Credentials, String> {
    match registry {
        Some(r) => store.get(r)?.ok_or_else(|| format!("not logged in to {r}")),
        None => {
            let mut all = store.all()?;
            match all.len() {
                1 => Ok(all.remove(0)),
                0 => Err("not logged in to any registry".into()),
                _ => Err("logged in to several registries: name one".into()),
            }
        }
    }
}

/// `logout [registry]`: revokes the device at the appview (when the secret
/// is a device secret), then forgets the login here either way.
pub fn logout(store: &CredentialStore, registry: Option<&str>) -> Result<String, String> {
    let creds = chosen(store, registry)?;
    let mut said = String::new();
    if is_device_secret(&creds.secret) {
        let url = format!("{}/auth/device/revoke", base_url(&creds.server_url));
        said = match post_form(&url, &[], Some((&creds.username, &creds.secret))) {
            Ok(a) if a.status == 200 => "The device was revoked. ".into(),
            Ok(a) if a.status == 401 => "The device was revoked already. ".into(),
            Ok(a) => format!(
                "The appview did not revoke the device ({}); revoke it on its devices page. ",
                refusal(&a, "revoking")
            ),
            Err(e) => format!("{e}; revoke the device on the appview's devices page. "),
        };
    }
    store.erase(&creds.server_url)?;
    Ok(format!("{said}Logged out of {}.", creds.server_url))
}

/// Whether a login still works, as `/auth/token` says.
fn check(creds: &Credentials) -> String {
    if !is_device_secret(&creds.secret) {
        return "stored by docker login (not checked)".into();
    }
    let url = format!("{}/auth/token", base_url(&creds.server_url));
    match get_basic(&url, &creds.username, &creds.secret) {
        Ok(a) if a.status == 200 => "valid".into(),
        Ok(a) if a.status == 401 => "revoked: run `docker-credential-atcr login` again".into(),
        Ok(a) => format!("unknown (HTTP {})", a.status),
        Err(e) => format!("unknown ({e})"),
    }
}

/// `status`: each registry logged in to, who, the device, and whether it works.
pub fn status(store: &CredentialStore) -> Result<String, String> {
    let all = store.all()?;
    if all.is_empty() {
        return Ok("Not logged in to any registry.".into());
    }
    Ok(all
        .iter()
        .map(|c| {
            let device = c
                .device_name
                .as_deref()
                .map(|d| format!(" device \"{d}\""))
                .unwrap_or_default();
            format!("{}: {}{device}: {}", c.server_url, c.username, check(c))
        })
        .collect::<Vec<_>>()
        .join("\n"))
}
