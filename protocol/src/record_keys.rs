//! Record keys derived from what a record is about, so writing it again
//! replaces it and deleting it needs no search through the user's records.

use sha2::{Digest as _, Sha256};

/// `text` itself when it is a valid record key (1–512 of `A-Za-z0-9.-_:~`,
/// not `.` or `..`), else the first 16 bytes of its SHA-256 in hex: a
/// `did:web` with a port holds `%`, which record keys may not.
pub fn record_key_for(text: &str) -> String {
    let valid = (1..=512).contains(&text.len())
        && text != "."
        && text != ".."
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:~".contains(&b));
    if valid {
        return text.to_string();
    }
    Sha256::digest(text.as_bytes())[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The key of the `io.atcr.repo.page` record describing `repository`: its
/// name, `/` written `~` (never in repository names).
pub fn repo_page_record_key(repository: &str) -> String {
    repository.replace('/', "~")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_keys_stay_readable_and_others_are_hashed() {
        assert_eq!(
            record_key_for("did:plc:ewvi7nxzyoun6zhxrhs64oiz"),
            "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
        );
        let web = record_key_for("did:web:localhost%3A8789");
        assert_eq!(web.len(), 32);
        assert!(web.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(web, record_key_for("did:web:localhost%3A8789"));
        assert_ne!(record_key_for(".."), "..");
        assert_ne!(record_key_for(""), "");
        assert_eq!(repo_page_record_key("tools/web"), "tools~web");
    }
}
