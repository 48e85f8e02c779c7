//! Repository names, tags and references, by the OCI distribution grammar.
//!
//! A name is `<owner>/<repo path>`: the owner is an ATProto handle
//! (`alice.bsky.social`) or a DID in a form Docker's reference grammar
//! accepts (`did-plc-ewvi7nxzyoun6zhxrhs64oiz`, since `:` may not appear in
//! a name), and the rest follows the OCI path-component grammar.

use crate::digest::Digest;
use crate::identity::{Did, Handle};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("'{0}' is not a valid repository name: use <handle or did>/<repository>, lowercase letters, digits and . _ - separators")]
    Invalid(String),
    #[error("'{0}' is not a valid tag (letters, digits, . _ -, up to 128 characters)")]
    InvalidTag(String),
}

/// Who owns a repository, as written in its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Owner {
    Handle(Handle),
    Did(Did),
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Handle(h) => write!(f, "{h}"),
            Owner::Did(d) => write!(f, "{d}"),
        }
    }
}

/// `<owner>/<repository>`, validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepoName {
    text: String,
    owner: Owner,
    /// Byte offset where the repository part begins (after `owner/`).
    split: usize,
}

impl RepoName {
    pub fn as_str(&self) -> &str {
        &self.text
    }
    pub fn owner(&self) -> &Owner {
        &self.owner
    }
    /// The repository path under the owner (`app` in `alice.test/app`).
    pub fn repository(&self) -> &str {
        &self.text[self.split..]
    }
}

/// The grammar-safe form of a DID, usable as the first component of a name.
pub fn did_to_name_component(did: &Did) -> String {
    did.as_str().replace(':', "-").to_ascii_lowercase()
}

fn owner_from_component(component: &str) -> Option<Owner> {
    for method in ["plc", "web"] {
        if let Some(id) = component.strip_prefix(&format!("did-{method}-")) {
            return format!("did:{method}:{id}").parse().ok().map(Owner::Did);
        }
        if component.starts_with(&format!("did:{method}:")) {
            return component.parse().ok().map(Owner::Did);
        }
    }
    component.parse().ok().map(Owner::Handle)
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    if bytes.is_empty() || !is_alnum(bytes[0]) || !is_alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if is_alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !is_alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-')) {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

impl FromStr for RepoName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || NameError::Invalid(s.chars().take(300).collect());
        if s.len() > 255 {
            return Err(invalid());
        }
        let (first, rest) = s.split_once('/').ok_or_else(invalid)?;
        let owner = owner_from_component(first).ok_or_else(invalid)?;
        if !rest.split('/').all(valid_path_component) {
            return Err(invalid());
        }
        // DIDs typed with colons are accepted in URLs but named canonically.
        Ok(RepoName {
            text: s.to_string(),
            owner,
            split: first.len() + 1,
        })
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A repository path under its owner (`app`, `team/app`), as records name
/// it: OCI path components joined by `/`, the whole name within 255 bytes.
pub fn parse_repository(s: &str) -> Result<&str, NameError> {
    if s.len() <= 200 && s.split('/').all(valid_path_component) {
        Ok(s)
    } else {
        Err(NameError::Invalid(s.chars().take(300).collect()))
    }
}

/// A manifest reference: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

pub fn parse_tag(s: &str) -> Result<String, NameError> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c));
    if ok {
        Ok(s.to_string())
    } else {
        Err(NameError::InvalidTag(s.chars().take(200).collect()))
    }
}

/// As typed after the name: the tag, or the digest.
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(tag) => f.write_str(tag),
            Reference::Digest(digest) => write!(f, "{digest}"),
        }
    }
}

impl FromStr for Reference {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains(':') {
            s.parse()
                .map(Reference::Digest)
                .map_err(|e: crate::digest::DigestError| e.to_string())
        } else {
            parse_tag(s).map(Reference::Tag).map_err(|e| e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names() {
        let cases = [
            ("alice.test/app", "alice.test", "app"),
            (
                "alice.bsky.social/team/web-app",
                "alice.bsky.social",
                "team/web-app",
            ),
            ("alice.test/a__b/c.d/e---f", "alice.test", "a__b/c.d/e---f"),
            (
                "did-plc-ewvi7nxzyoun6zhxrhs64oiz/app",
                "did:plc:ewvi7nxzyoun6zhxrhs64oiz",
                "app",
            ),
            (
                "did:plc:ewvi7nxzyoun6zhxrhs64oiz/app",
                "did:plc:ewvi7nxzyoun6zhxrhs64oiz",
                "app",
            ),
        ];
        for (name, owner, repo) in cases {
            let n: RepoName = name.parse().unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(n.owner().to_string(), owner, "{name}");
            assert_eq!(n.repository(), repo, "{name}");
        }
    }

    #[test]
    fn invalid_names() {
        for name in [
            "",
            "app",
            "alice.test/",
            "alice.test/App",
            "alice.test/-app",
            "alice.test/app-",
            "alice.test/a..b",
            "alice.test/a___b",
            "alice.test//app",
            "alice.test/a b",
            "not_a_handle/app",
            "did-key-z6mk/app",
        ] {
            assert!(name.parse::<RepoName>().is_err(), "{name}");
        }
        assert!(format!("alice.test/{}", "a".repeat(250))
            .parse::<RepoName>()
            .is_err());
    }

    #[test]
    fn did_name_components_round_trip() {
        let did: Did = "did:plc:ewvi7nxzyoun6zhxrhs64oiz".parse().unwrap();
        let component = did_to_name_component(&did);
        assert_eq!(component, "did-plc-ewvi7nxzyoun6zhxrhs64oiz");
        let name: RepoName = format!("{component}/app").parse().unwrap();
        assert_eq!(name.owner(), &Owner::Did(did));
    }

    #[test]
    fn tags_and_references() {
        for tag in ["latest", "v1.2.3", "_x", "A-b_c.d"] {
            assert_eq!(parse_tag(tag).unwrap(), tag);
        }
        for tag in ["", ".x", "-x", "a/b", "a:b", &"a".repeat(129)] {
            assert!(parse_tag(tag).is_err(), "{tag}");
        }
        assert!(matches!(
            "latest".parse::<Reference>(),
            Ok(Reference::Tag(_))
        ));
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(matches!(d.parse::<Reference>(), Ok(Reference::Digest(_))));
        assert!("sha256:nope".parse::<Reference>().is_err());
    }
}
