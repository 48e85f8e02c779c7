//! Where an image to push comes from, and where a pulled one goes, as
//! containers' transport names say it: `oci:`, `oci-archive:`,
//! `docker-archive:` are read and written here; `docker-daemon:` and
//! `containers-storage:` are exported first into a temporary OCI layout
//! by the tools already installed (skopeo, else `docker save` / `podman
//! save`), which stream to disk.

use crate::image::{self, Image};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A place named `transport:path[:tag]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    Layout {
        dir: PathBuf,
        tag: Option<String>,
    },
    OciArchive {
        file: PathBuf,
        tag: Option<String>,
    },
    DockerArchive {
        file: PathBuf,
        tag: Option<String>,
    },
    /// An image held by an engine: `docker-daemon:IMAGE`, `containers-storage:IMAGE`.
    Engine {
        transport: String,
        image: String,
    },
}

/// `path[:tag]`: the tag is what follows the last `:` when no `/` does.
fn path_and_tag(s: &str) -> (PathBuf, Option<String>) {
    match s.rsplit_once(':') {
        Some((path, tag)) if !tag.contains('/') && !path.is_empty() && !tag.is_empty() => {
            (PathBuf::from(path), Some(tag.to_string()))
        }
        _ => (PathBuf::from(s), None),
    }
}

impl Place {
    pub fn parse(s: &str) -> Result<Place, String> {
        let (transport, rest) = s.split_once(':').unwrap_or(("", s));
        Ok(match transport {
            "oci" => {
                let (dir, tag) = path_and_tag(rest);
                Place::Layout { dir, tag }
            }
            "oci-archive" => {
                let (file, tag) = path_and_tag(rest);
                Place::OciArchive { file, tag }
            }
            "docker-archive" => {
                let (file, tag) = path_and_tag(rest);
                Place::DockerArchive { file, tag }
            }
            "docker-daemon" | "containers-storage" if !rest.is_empty() => Place::Engine {
                transport: transport.to_string(),
                image: rest.to_string(),
            },
            _ => {
                // A bare path: a layout directory or an archive.
                let path = Path::new(s);
                if path.is_dir() {
                    Place::Layout {
                        dir: path.to_path_buf(),
                        tag: None,
                    }
                } else if path.is_file() {
                    Place::OciArchive {
                        file: path.to_path_buf(),
                        tag: None,
                    }
                } else {
                    return Err(format!(
                        "{s}: expected oci:DIR[:TAG], oci-archive:FILE[:TAG], \
                         docker-archive:FILE[:REF], docker-daemon:IMAGE or containers-storage:IMAGE"
                    ));
                }
            }
        })
    }
}

/// An image to push, and the temporary folder it was exported to (removed
/// when this is dropped).
pub struct Source {
    pub image: Image,
    _temp: Option<tempfile::TempDir>,
}

fn installed(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{shown} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

pub fn open(place: &Place) -> Result<Source, String> {
    match place {
        Place::Layout { dir, tag } => Ok(Source {
            image: image::from_layout_dir(dir, tag.as_deref())?,
            _temp: None,
        }),
        Place::OciArchive { file, tag } | Place::DockerArchive { file, tag } => Ok(Source {
            image: image::from_archive(file, tag.as_deref())?,
            _temp: None,
        }),
        Place::Engine { transport, image } => {
            let temp = tempfile::Builder::new()
                .prefix("atcr-export-")
                .tempdir()
                .map_err(|e| format!("cannot make a temporary folder: {e}"))?;
            let layout = temp.path().join("layout");
            if installed("skopeo") {
                run(Command::new("skopeo").args([
                    "copy",
                    "--quiet",
                    &format!("{transport}:{image}"),
                    &format!("oci:{}:export", layout.display()),
                ]))?;
                return Ok(Source {
                    image: image::from_layout_dir(&layout, Some("export"))?,
                    _temp: Some(temp),
                });
            }
            let engine = if transport == "docker-daemon" {
                "docker"
            } else {
                "podman"
            };
            let archive = temp.path().join("image.tar");
            let mut save = Command::new(engine);
            save.arg("save").arg("-o").arg(&archive);
            if engine == "podman" {
                save.args(["--format", "oci-archive"]);
            }
            run(save.arg(image)).map_err(|e| {
                format!("{e} (install skopeo, or {engine}, to push from {transport}:)")
            })?;
            Ok(Source {
                image: image::from_archive(&archive, None)?,
                _temp: Some(temp),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_named_as_containers_tools_name_them() {
        assert_eq!(
            Place::parse("oci:./img:v1").unwrap(),
            Place::Layout {
                dir: "./img".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            Place::parse("oci:/tmp/a:b/img").unwrap(),
            Place::Layout {
                dir: "/tmp/a:b/img".into(),
                tag: None
            }
        );
        assert_eq!(
            Place::parse("docker-archive:app.tar:app:v1").unwrap(),
            Place::DockerArchive {
                file: "app.tar:app".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            Place::parse("oci-archive:/x/app.tar").unwrap(),
            Place::OciArchive {
                file: "/x/app.tar".into(),
                tag: None
            }
        );
        assert_eq!(
            Place::parse("docker-daemon:nginx:latest").unwrap(),
            Place::Engine {
                transport: "docker-daemon".into(),
                image: "nginx:latest".into()
            }
        );
        assert!(Place::parse("/no/such/path").is_err());
    }
}
