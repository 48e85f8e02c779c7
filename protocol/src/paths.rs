//! Object keys in a hold's bucket: the only place that names them.
//!
//! Blobs use CNCF distribution's layout, so a bucket that already backs a
//! distribution registry can become a hold as it is:
//!
//! ```text
//! docker/registry/v2/
//! ├── blobs/
//! │   └── sha256/
//! │       └── ab/                      first two hex characters
//! │           └── abcdef…/             the whole hex digest
//! │               └── data             the blob's bytes
//! └── atcr-uploads/
//!     └── <session id>/data            an upload before its digest is verified
//! ```
//!
//! Uploads land under `atcr-uploads/` and are copied to their digest's key
//! only after the bytes were hashed and matched, so nobody can make a blob
//! visible under a digest it does not have.

use crate::digest::Digest;

const ROOT: &str = "docker/registry/v2";

/// Where the verified bytes of `digest` live.
pub fn blob_key(digest: &Digest) -> String {
    let hex = digest.hex();
    format!(
        "{ROOT}/blobs/{}/{}/{hex}/data",
        digest.algorithm().as_str(),
        &hex[..2]
    )
}

/// Where an upload session's bytes wait for verification. `session` must be
/// URL-safe (the hold generates it).
pub fn upload_key(session: &str) -> String {
    format!("{ROOT}/atcr-uploads/{session}/data")
}

/// The prefix every verified blob's key starts with.
pub fn blobs_prefix() -> String {
    format!("{ROOT}/blobs/")
}

/// The prefix every upload staging key starts with.
pub fn uploads_prefix() -> String {
    format!("{ROOT}/atcr-uploads/")
}

/// Whether `key` lies under the blob prefix (a digest's key or not).
pub fn is_blob_key(key: &str) -> bool {
    key.starts_with(&blobs_prefix())
}

/// The digest whose verified bytes live at `key`: the inverse of
/// [`blob_key`], `None` for any other key.
pub fn blob_digest(key: &str) -> Option<Digest> {
    let rest = key.strip_prefix(&blobs_prefix())?.strip_suffix("/data")?;
    let mut parts = rest.split('/');
    let (algorithm, shard, hex) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !hex.starts_with(shard) || shard.len() != 2 {
        return None;
    }
    let digest: Digest = format!("{algorithm}:{hex}").parse().ok()?;
    (blob_key(&digest) == key).then_some(digest)
}

/// Whether `key` is an upload staging key (and not a verified blob).
pub fn is_upload_key(key: &str) -> bool {
    key.starts_with(&format!("{ROOT}/atcr-uploads/"))
        && key.ends_with("/data")
        && !key.contains("..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_keys_follow_the_distribution_layout() {
        let cases = [
            (
                "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "docker/registry/v2/blobs/sha256/e3/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/data",
            ),
            (
                &format!("sha512:{}", "0f".repeat(64)),
                &format!("docker/registry/v2/blobs/sha512/0f/{}/data", "0f".repeat(64)),
            ),
        ];
        for (digest, key) in cases {
            assert_eq!(blob_key(&digest.parse().unwrap()), key);
        }
    }

    #[test]
    fn upload_keys_are_apart_from_blobs() {
        let key = upload_key("01HZX");
        assert_eq!(key, "docker/registry/v2/atcr-uploads/01HZX/data");
        assert!(is_upload_key(&key));
        assert!(!is_upload_key("docker/registry/v2/blobs/sha256/e3/e3/data"));
        assert!(key.starts_with(&uploads_prefix()));
    }

    #[test]
    fn blob_keys_map_back_to_their_digests() {
        for digest in [
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".to_string(),
            format!("sha512:{}", "0f".repeat(64)),
        ] {
            let digest: Digest = digest.parse().unwrap();
            assert_eq!(blob_digest(&blob_key(&digest)), Some(digest));
        }
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        for key in [
            format!("docker/registry/v2/blobs/sha256/aa/{hex}/data"),
            format!("docker/registry/v2/blobs/sha256/e3/{hex}/data/x"),
            format!("docker/registry/v2/blobs/sha256/e3/{hex}/link"),
            format!("docker/registry/v2/blobs/md5/e3/{hex}/data"),
            upload_key("e3"),
        ] {
            assert_eq!(blob_digest(&key), None, "{key}");
        }
        assert!(is_blob_key(&format!(
            "docker/registry/v2/blobs/sha256/aa/{hex}/data"
        )));
    }
}
