//! Object keys in a hold's bucket: the only place that names them.
//!
//! Blobs use CNCF distribution's layout, by default under its root, so a
//! bucket that already backs a distribution registry can become a hold as it
//! is:
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

/// Distribution's root: the default, so a distribution bucket serves as is.
pub const DISTRIBUTION_ROOT: &str = "docker/registry/v2";

/// The keys of one hold's bucket, under a root prefix (the hold's
/// `HOLD_KEY_PREFIX`, default [`DISTRIBUTION_ROOT`]; empty for the bucket's
/// top). Holds sharing a bucket use different roots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLayout {
    /// Empty, or the prefix with one trailing `/`.
    root: String,
}

impl Default for KeyLayout {
    fn default() -> Self {
        KeyLayout::new(DISTRIBUTION_ROOT)
    }
}

impl KeyLayout {
    pub fn new(prefix: &str) -> Self {
        let prefix = prefix.trim_matches('/');
        KeyLayout {
            root: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
        }
    }

    /// Where the verified bytes of `digest` live.
    pub fn blob_key(&self, digest: &Digest) -> String {
        let hex = digest.hex();
        format!(
            "{}blobs/{}/{}/{hex}/data",
            self.root,
            digest.algorithm().as_str(),
            &hex[..2]
        )
    }

    /// Where an upload session's bytes wait for verification. `session` must
    /// be URL-safe (the hold generates it).
    pub fn upload_key(&self, session: &str) -> String {
        format!("{}atcr-uploads/{session}/data", self.root)
    }

    /// The prefix every verified blob's key starts with.
    pub fn blobs_prefix(&self) -> String {
        format!("{}blobs/", self.root)
    }

    /// The prefix every upload staging key starts with.
    pub fn uploads_prefix(&self) -> String {
        format!("{}atcr-uploads/", self.root)
    }

    /// Whether `key` lies under the blob prefix (a digest's key or not).
    pub fn is_blob_key(&self, key: &str) -> bool {
        key.starts_with(&self.blobs_prefix())
    }

    /// The digest whose verified bytes live at `key`: the inverse of
    /// [`KeyLayout::blob_key`], `None` for any other key.
    pub fn blob_digest(&self, key: &str) -> Option<Digest> {
        let rest = key
            .strip_prefix(&self.blobs_prefix())?
            .strip_suffix("/data")?;
        let mut parts = rest.split('/');
        let (algorithm, shard, hex) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || !hex.starts_with(shard) || shard.len() != 2 {
            return None;
        }
        let digest: Digest = format!("{algorithm}:{hex}").parse().ok()?;
        (self.blob_key(&digest) == key).then_some(digest)
    }

    /// Whether `key` is an upload staging key (and not a verified blob).
    pub fn is_upload_key(&self, key: &str) -> bool {
        key.starts_with(&self.uploads_prefix()) && key.ends_with("/data") && !key.contains("..")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distribution() -> KeyLayout {
        KeyLayout::default()
    }

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
            assert_eq!(distribution().blob_key(&digest.parse().unwrap()), key);
        }
    }

    #[test]
    fn upload_keys_are_apart_from_blobs() {
        let key = distribution().upload_key("01HZX");
        assert_eq!(key, "docker/registry/v2/atcr-uploads/01HZX/data");
        assert!(distribution().is_upload_key(&key));
        assert!(!distribution().is_upload_key("docker/registry/v2/blobs/sha256/e3/e3/data"));
        assert!(key.starts_with(&distribution().uploads_prefix()));
    }

    #[test]
    fn blob_keys_map_back_to_their_digests() {
        for digest in [
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".to_string(),
            format!("sha512:{}", "0f".repeat(64)),
        ] {
            let digest: Digest = digest.parse().unwrap();
            assert_eq!(
                distribution().blob_digest(&distribution().blob_key(&digest)),
                Some(digest)
            );
        }
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        for key in [
            format!("docker/registry/v2/blobs/sha256/aa/{hex}/data"),
            format!("docker/registry/v2/blobs/sha256/e3/{hex}/data/x"),
            format!("docker/registry/v2/blobs/sha256/e3/{hex}/link"),
            format!("docker/registry/v2/blobs/md5/e3/{hex}/data"),
            distribution().upload_key("e3"),
        ] {
            assert_eq!(distribution().blob_digest(&key), None, "{key}");
        }
        assert!(
            distribution().is_blob_key(&format!("docker/registry/v2/blobs/sha256/aa/{hex}/data"))
        );
    }

    #[test]
    fn a_root_prefix_moves_every_key_and_an_empty_one_uses_the_top() {
        let digest: Digest = format!("sha512:{}", "0f".repeat(64)).parse().unwrap();
        let shared = KeyLayout::new("/holds/alice/");
        assert_eq!(
            shared.blob_key(&digest),
            format!("holds/alice/blobs/sha512/0f/{}/data", "0f".repeat(64))
        );
        assert_eq!(shared.upload_key("s"), "holds/alice/atcr-uploads/s/data");
        assert_eq!(
            shared.blob_digest(&shared.blob_key(&digest)),
            Some(digest.clone())
        );
        assert_eq!(distribution().blob_digest(&shared.blob_key(&digest)), None);
        let top = KeyLayout::new("");
        assert_eq!(
            top.blob_key(&digest),
            format!("blobs/sha512/0f/{}/data", "0f".repeat(64))
        );
        assert!(top.is_upload_key("atcr-uploads/s/data"));
        assert_eq!(top.blob_digest(&top.blob_key(&digest)), Some(digest));
    }
}
