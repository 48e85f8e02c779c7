//! The OAuth scope the appview asks for: `atproto` plus exactly what it
//! writes, in atproto's granular permission syntax
//! (atproto.com/specs/permission): `repo:<collection>` (all of create,
//! update, delete) for each `io.atcr.*` record it writes, and `blob` for the
//! uploads it makes (manifest bytes are `application/…`, repository avatars
//! `image/…`). Nothing of the user's other data.

use crate::collections;

pub const ATPROTO: &str = "atproto";

/// Kept in sync with [`collections`] by a test.
pub const APPVIEW: &str = "atproto repo:io.atcr.manifest repo:io.atcr.tag \
repo:io.atcr.sailor.profile repo:io.atcr.sailor.star repo:io.atcr.repo.page \
repo:io.atcr.hold repo:io.atcr.hold.crew blob?accept=application/*&accept=image/*";

/// Whether a granted scope (space-separated) contains `value`.
pub fn contains(scope: &str, value: &str) -> bool {
    scope.split(' ').any(|s| s == value)
}

/// The collections the appview writes, as `repo:` scopes.
pub fn written_collections() -> [&'static str; 7] {
    [
        collections::MANIFEST,
        collections::TAG,
        collections::PROFILE,
        collections::STAR,
        collections::REPO_PAGE,
        // Settings: the holds a user runs and their crew.
        collections::HOLD,
        collections::HOLD_CREW,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_for_atproto_and_each_written_collection() {
        assert!(contains(APPVIEW, ATPROTO));
        for collection in written_collections() {
            assert!(
                contains(APPVIEW, &format!("repo:{collection}")),
                "{collection}"
            );
        }
        assert!(!APPVIEW.contains("transition:"));
        assert!(!contains("atprotox", ATPROTO));
    }
}
