//! What an interrupted upload leaves behind so the next push resumes it: the
//! hold's upload session and the ETag of every part storage confirmed, in a
//! small file per hold and digest under the user's cache folder
//! (`$XDG_CACHE_HOME/atcr/uploads/`, else `~/.cache/atcr/uploads/`),
//! rewritten (atomically) after each part and removed once the blob is in.

use atcr_helper::store::replace_private;
use atcr_protocol::chunking::PlannedPart;
use atcr_protocol::hold_api::CompletedPart;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A session this close to its end is not resumed: the parts left might
/// not make it in time.
const SESSION_MARGIN_SECS: u64 = 15 * 60;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadState {
    pub hold: String,
    pub digest: String,
    pub size: u64,
    pub part_size: u64,
    /// The hold's sealed session (`startUpload`).
    pub session: String,
    pub expires_at: u64,
    /// Part number → the ETag storage answered its PUT with.
    #[serde(default)]
    pub parts: BTreeMap<u32, String>,
}

impl UploadState {
    /// Whether this state can continue an upload of `size` bytes to `hold`
    /// at `now` (unix seconds).
    pub fn resumable(&self, hold: &str, digest: &str, size: u64, now: u64) -> bool {
        self.hold == hold
            && self.digest == digest
            && self.size == size
            && self.expires_at > now + SESSION_MARGIN_SECS
    }

    /// The parts of `plan` storage has not confirmed.
    pub fn missing(&self, plan: &[PlannedPart]) -> Vec<PlannedPart> {
        plan.iter()
            .filter(|p| !self.parts.contains_key(&p.number))
            .copied()
            .collect()
    }

    /// Every confirmed part, for `completeUpload`.
    pub fn completed(&self) -> Vec<CompletedPart> {
        self.parts
            .iter()
            .map(|(n, etag)| CompletedPart {
                part_number: *n,
                etag: etag.clone(),
            })
            .collect()
    }
}

/// The state file of one blob's upload to one hold.
pub struct StateFile {
    path: PathBuf,
}

/// `$XDG_CACHE_HOME/atcr/uploads`, else `~/.cache/atcr/uploads`.
pub fn default_dir() -> Result<PathBuf, String> {
    Ok(atcr_helper::xdg_dir("XDG_CACHE_HOME", ".cache")?
        .join("atcr")
        .join("uploads"))
}

/// A file name from any string: letters, digits, `.`, `-` kept, the rest `_`.
fn file_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl StateFile {
    pub fn new(dir: &Path, hold: &str, digest: &str) -> StateFile {
        StateFile {
            path: dir.join(format!("{}@{}.json", file_safe(digest), file_safe(hold))),
        }
    }

    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved state; none when absent or unreadable (then the upload
    /// starts over).
    pub fn load(&self) -> Option<UploadState> {
        let bytes = std::fs::read(&self.path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn save(&self, state: &UploadState) -> Result<(), String> {
        let json = serde_json::to_vec(state).map_err(|e| e.to_string())?;
        replace_private(&self.path, &json)
    }

    /// Forgets the upload: its state, and any copy a process killed while
    /// saving it left half-written (`<state>.tmp<pid>`).
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
        let (Some(dir), Some(name)) = (self.path.parent(), self.path.file_name()) else {
            return;
        };
        let unfinished = format!("{}.tmp", name.to_string_lossy());
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with(&unfinished) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atcr_protocol::chunking::plan_parts;

    fn state() -> UploadState {
        UploadState {
            hold: "did:web:hold.example".into(),
            digest: "sha256:ab".into(),
            size: 25,
            part_size: 10,
            session: "sealed".into(),
            expires_at: 100_000,
            parts: BTreeMap::new(),
        }
    }

    #[test]
    fn removing_an_upload_also_removes_a_half_written_save() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path(), "did:web:hold.example", "sha256:ab");
        file.save(&state()).unwrap();
        let stale = format!("{}.tmp4242", file.path().display());
        std::fs::write(&stale, b"{").unwrap();
        let other = StateFile::new(dir.path(), "did:web:hold.example", "sha256:cd");
        other.save(&state()).unwrap();
        file.remove();
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(
            left,
            [other.path().to_path_buf()],
            "only the other upload's state is left"
        );
    }

    #[test]
    fn a_saved_upload_resumes_with_only_the_parts_storage_lacks() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path(), "did:web:hold.example", "sha256:ab");
        assert_eq!(file.load(), None);
        let mut s = state();
        s.parts.insert(1, "\"e1\"".into());
        s.parts.insert(3, "\"e3\"".into());
        file.save(&s).unwrap();
        let loaded = file.load().unwrap();
        assert_eq!(loaded, s);
        let plan = plan_parts(25, 10);
        let missing: Vec<u32> = loaded.missing(&plan).iter().map(|p| p.number).collect();
        assert_eq!(missing, [2]);
        let done: Vec<u32> = loaded.completed().iter().map(|p| p.part_number).collect();
        assert_eq!(done, [1, 3]);
        file.remove();
        assert_eq!(file.load(), None);
    }

    #[test]
    fn only_the_same_blob_to_the_same_hold_in_time_resumes() {
        let s = state();
        assert!(s.resumable("did:web:hold.example", "sha256:ab", 25, 1_000));
        assert!(!s.resumable("did:web:other.example", "sha256:ab", 25, 1_000));
        assert!(!s.resumable("did:web:hold.example", "sha256:cd", 25, 1_000));
        assert!(!s.resumable("did:web:hold.example", "sha256:ab", 26, 1_000));
        // The session ends within the margin.
        assert!(!s.resumable("did:web:hold.example", "sha256:ab", 25, 99_500));
    }

    #[test]
    fn state_files_are_named_by_digest_and_hold() {
        let dir = Path::new("/c");
        let f = StateFile::new(dir, "did:web:localhost%3A8788", "sha256:0123");
        assert_eq!(
            f.path(),
            Path::new("/c/sha256_0123@did_web_localhost_3A8788.json")
        );
    }
}
