//! The registry's routes as data: `Route::parse` maps a `/v2/...` path to
//! the endpoint it names. Repository names may have any number of segments,
//! so the endpoint suffix is found from the right.

use crate::digest::Digest;
use crate::reference::{Reference, RepoName};

#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/manifests/<reference>`
    Manifest {
        name: RepoName,
        reference: Reference,
    },
    /// `/v2/<name>/blobs/<digest>`
    Blob { name: RepoName, digest: Digest },
    /// `/v2/<name>/blobs/uploads/`
    UploadStart { name: RepoName },
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload { name: RepoName, id: String },
    /// `/v2/<name>/tags/list`
    Tags { name: RepoName },
    /// `/v2/<name>/referrers/<digest>`
    Referrers { name: RepoName, digest: Digest },
}

/// Why a path names no route: unknown shape (404) or a bad part (400).
#[derive(Debug, Clone, PartialEq)]
pub enum RouteError {
    NotFound,
    NameInvalid(String),
    DigestInvalid(String),
    ReferenceInvalid(String),
}

impl Route {
    pub fn parse(path: &str) -> Result<Route, RouteError> {
        let rest = match path {
            "/v2" | "/v2/" => return Ok(Route::Base),
            "/v2/_catalog" => return Ok(Route::Catalog),
            p => p.strip_prefix("/v2/").ok_or(RouteError::NotFound)?,
        };
        let name = |s: &str| {
            s.parse::<RepoName>()
                .map_err(|e| RouteError::NameInvalid(e.to_string()))
        };
        let digest = |s: &str| {
            s.parse::<Digest>()
                .map_err(|e| RouteError::DigestInvalid(e.to_string()))
        };

        if let Some(n) = rest.strip_suffix("/tags/list") {
            return Ok(Route::Tags { name: name(n)? });
        }
        if let Some(n) = rest
            .strip_suffix("/blobs/uploads/")
            .or_else(|| rest.strip_suffix("/blobs/uploads"))
        {
            return Ok(Route::UploadStart { name: name(n)? });
        }
        if let Some((n, id)) = rest.rsplit_once("/blobs/uploads/") {
            return Ok(Route::Upload {
                name: name(n)?,
                id: id.to_string(),
            });
        }
        if let Some((n, d)) = rest.rsplit_once("/blobs/") {
            return Ok(Route::Blob {
                name: name(n)?,
                digest: digest(d)?,
            });
        }
        if let Some((n, r)) = rest.rsplit_once("/manifests/") {
            let reference = r.parse().map_err(RouteError::ReferenceInvalid)?;
            return Ok(Route::Manifest {
                name: name(n)?,
                reference,
            });
        }
        if let Some((n, d)) = rest.rsplit_once("/referrers/") {
            return Ok(Route::Referrers {
                name: name(n)?,
                digest: digest(d)?,
            });
        }
        Err(RouteError::NotFound)
    }

    /// The repository a route touches, if any (for scopes and auth).
    pub fn name(&self) -> Option<&RepoName> {
        match self {
            Route::Base | Route::Catalog => None,
            Route::Manifest { name, .. }
            | Route::Blob { name, .. }
            | Route::UploadStart { name }
            | Route::Upload { name, .. }
            | Route::Tags { name }
            | Route::Referrers { name, .. } => Some(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn routes_table() {
        let cases: Vec<(String, &str)> = vec![
            ("/v2/".into(), "Base"),
            ("/v2".into(), "Base"),
            ("/v2/_catalog".into(), "Catalog"),
            (
                "/v2/alice.test/app/manifests/latest".into(),
                "Manifest alice.test/app",
            ),
            (
                format!("/v2/alice.test/a/b/c/manifests/{D}"),
                "Manifest alice.test/a/b/c",
            ),
            (
                format!("/v2/alice.test/foo/bar/baz/blobs/{D}"),
                "Blob alice.test/foo/bar/baz",
            ),
            (
                "/v2/alice.test/app/blobs/uploads/".into(),
                "UploadStart alice.test/app",
            ),
            (
                "/v2/alice.test/app/blobs/uploads/abc123".into(),
                "Upload alice.test/app",
            ),
            ("/v2/alice.test/app/tags/list".into(), "Tags alice.test/app"),
            (
                format!("/v2/alice.test/app/referrers/{D}"),
                "Referrers alice.test/app",
            ),
            // A repository may itself be called "manifests" or "blobs".
            (
                "/v2/alice.test/manifests/manifests/v1".into(),
                "Manifest alice.test/manifests",
            ),
            (
                format!("/v2/alice.test/blobs/blobs/{D}"),
                "Blob alice.test/blobs",
            ),
        ];
        for (path, expected) in cases {
            let route = Route::parse(&path).unwrap_or_else(|e| panic!("{path}: {e:?}"));
            let got = match &route {
                Route::Base => "Base".to_string(),
                Route::Catalog => "Catalog".to_string(),
                Route::Manifest { name, .. } => format!("Manifest {name}"),
                Route::Blob { name, .. } => format!("Blob {name}"),
                Route::UploadStart { name } => format!("UploadStart {name}"),
                Route::Upload { name, .. } => format!("Upload {name}"),
                Route::Tags { name } => format!("Tags {name}"),
                Route::Referrers { name, .. } => format!("Referrers {name}"),
            };
            assert_eq!(got, expected, "{path}");
        }
    }

    #[test]
    fn bad_parts_are_told_apart_from_unknown_paths() {
        assert_eq!(
            Route::parse("/v2/alice.test/app/whatever"),
            Err(RouteError::NotFound)
        );
        assert_eq!(Route::parse("/v3/"), Err(RouteError::NotFound));
        assert!(matches!(
            Route::parse("/v2/alice.test/App/tags/list"),
            Err(RouteError::NameInvalid(_))
        ));
        assert!(matches!(
            Route::parse("/v2/alice.test/app/blobs/sha256:zz"),
            Err(RouteError::DigestInvalid(_))
        ));
        assert!(matches!(
            Route::parse("/v2/alice.test/app/manifests/-bad"),
            Err(RouteError::ReferenceInvalid(_))
        ));
    }
}
