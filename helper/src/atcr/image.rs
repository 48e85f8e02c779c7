//! Images on disk, read where they lie: an OCI layout directory, an
//! `oci-archive` tar, or a `docker save` / `podman save` tar. Nothing is
//! unpacked: a blob is a file (or a range of an archive) read at an offset
//! when it is sent, so no layer is ever held in memory whole.

use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Where a blob's bytes are: `len` bytes of `path` from `offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub path: PathBuf,
    pub offset: u64,
    pub len: u64,
}

impl Located {
    /// Reads `len` bytes from `start` within the blob.
    pub fn read_range(&self, start: u64, len: u64) -> std::io::Result<Vec<u8>> {
        let mut file = File::open(&self.path)?;
        file.seek(SeekFrom::Start(self.offset + start))?;
        let mut buf = vec![0; len as usize];
        file.read_exact(&mut buf)?;
        Ok(buf)
    }

    pub fn read_all(&self) -> std::io::Result<Vec<u8>> {
        self.read_range(0, self.len)
    }

    /// The SHA-256 of the bytes, read in a stream.
    pub fn sha256(&self) -> std::io::Result<String> {
        let mut file = File::open(&self.path)?;
        file.seek(SeekFrom::Start(self.offset))?;
        let mut hasher = Sha256::new();
        std::io::copy(&mut file.take(self.len), &mut hasher)?;
        Ok(format!("sha256:{}", hex(&hasher.finalize())))
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A blob an image needs: config or layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    pub digest: String,
    pub size: u64,
}

/// A manifest to push: its exact bytes and media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestBlob {
    pub digest: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// An image ready to push: its blobs (each once) and its manifests, the
/// children of an index before it, the one to tag last.
#[derive(Debug)]
pub struct Image {
    pub blobs: Vec<BlobRef>,
    pub manifests: Vec<ManifestBlob>,
    located: HashMap<String, Located>,
}

impl Image {
    pub fn locate(&self, digest: &str) -> Result<&Located, String> {
        self.located
            .get(digest)
            .ok_or_else(|| format!("the image has no blob {digest}"))
    }

    pub fn top(&self) -> &ManifestBlob {
        self.manifests.last().expect("an image has a manifest")
    }
}

/// Blobs of an OCI layout: files in a directory, or entries of a tar.
enum Layout {
    Dir(PathBuf),
    Tar {
        path: PathBuf,
        entries: HashMap<String, (u64, u64)>,
    },
}

impl Layout {
    fn file(&self, name: &str) -> Result<Located, String> {
        match self {
            Layout::Dir(dir) => {
                let path = dir.join(name);
                let len = std::fs::metadata(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))?
                    .len();
                Ok(Located {
                    path,
                    offset: 0,
                    len,
                })
            }
            Layout::Tar { path, entries } => {
                let (offset, len) = entries
                    .get(name.trim_start_matches("./"))
                    .ok_or_else(|| format!("{} has no {name}", path.display()))?;
                Ok(Located {
                    path: path.clone(),
                    offset: *offset,
                    len: *len,
                })
            }
        }
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, String> {
        self.file(name)?
            .read_all()
            .map_err(|e| format!("cannot read {name}: {e}"))
    }

    fn blob(&self, digest: &str) -> Result<Located, String> {
        let (alg, hex) = digest
            .split_once(':')
            .ok_or_else(|| format!("not a digest: {digest}"))?;
        self.file(&format!("blobs/{alg}/{hex}"))
    }
}

/// The regular files of a tar, by path: where each one's bytes start and
/// how long they are.
pub fn index_tar(path: &Path) -> Result<HashMap<String, (u64, u64)>, String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut archive = tar::Archive::new(file);
    let mut entries = HashMap::new();
    for entry in archive
        .entries()
        .map_err(|e| format!("{}: {e}", path.display()))?
    {
        let entry = entry.map_err(|e| format!("{}: {e}", path.display()))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .map_err(|e| format!("{}: {e}", path.display()))?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        entries.insert(name, (entry.raw_file_position(), entry.size()));
    }
    Ok(entries)
}

/// Reads an OCI layout directory.
pub fn from_layout_dir(dir: &Path, tag: Option<&str>) -> Result<Image, String> {
    from_layout(Layout::Dir(dir.to_path_buf()), tag)
}

/// Reads an archive: an OCI layout in a tar (`oci-archive`, and `docker
/// save` since Docker 25, which carries one), else a `docker save` /
/// `podman save` tar with a `manifest.json`.
pub fn from_archive(path: &Path, tag: Option<&str>) -> Result<Image, String> {
    let entries = index_tar(path)?;
    let layout = Layout::Tar {
        path: path.to_path_buf(),
        entries,
    };
    let Layout::Tar { entries, .. } = &layout else {
        unreachable!()
    };
    if entries.contains_key("index.json") {
        return from_layout(layout, tag);
    }
    if entries.contains_key("manifest.json") {
        return from_docker_save(layout, tag);
    }
    Err(format!(
        "{} is neither an OCI archive (index.json) nor a docker save archive (manifest.json)",
        path.display()
    ))
}

fn json(bytes: &[u8], what: &str) -> Result<serde_json::Value, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("{what} is not JSON: {e}"))
}

fn from_layout(layout: Layout, tag: Option<&str>) -> Result<Image, String> {
    let index = json(&layout.read("index.json")?, "index.json")?;
    let descriptors = index["manifests"].as_array().cloned().unwrap_or_default();
    let chosen = match tag {
        Some(tag) => descriptors
            .iter()
            .find(|d| d["annotations"][REF_NAME].as_str() == Some(tag))
            .ok_or_else(|| format!("the layout has no image tagged {tag}"))?,
        None if descriptors.len() == 1 => &descriptors[0],
        None => {
            return Err(format!(
                "the layout has {} images: name one (oci:DIR:TAG)",
                descriptors.len()
            ))
        }
    };
    let digest = chosen["digest"]
        .as_str()
        .ok_or("index.json names a manifest without a digest")?
        .to_string();
    let mut image = Image {
        blobs: Vec::new(),
        manifests: Vec::new(),
        located: HashMap::new(),
    };
    add_manifest(&layout, &digest, chosen["mediaType"].as_str(), &mut image)?;
    Ok(image)
}

/// Adds a manifest (and, for an index, its children first) and its blobs.
fn add_manifest(
    layout: &Layout,
    digest: &str,
    media_type: Option<&str>,
    image: &mut Image,
) -> Result<(), String> {
    let located = layout.blob(digest)?;
    let bytes = located
        .read_all()
        .map_err(|e| format!("cannot read manifest {digest}: {e}"))?;
    let manifest = json(&bytes, digest)?;
    let media_type = manifest["mediaType"]
        .as_str()
        .or(media_type)
        .unwrap_or(OCI_MANIFEST)
        .to_string();
    if let Some(children) = manifest["manifests"].as_array() {
        for child in children {
            let child_digest = child["digest"]
                .as_str()
                .ok_or("an index entry lacks its digest")?;
            if image.manifests.iter().any(|m| m.digest == child_digest) {
                continue;
            }
            add_manifest(layout, child_digest, child["mediaType"].as_str(), image)?;
        }
    }
    let mut blobs: Vec<&serde_json::Value> = Vec::new();
    if manifest["config"].is_object() {
        blobs.push(&manifest["config"]);
    }
    if let Some(layers) = manifest["layers"].as_array() {
        blobs.extend(layers.iter());
    }
    for blob in blobs {
        // Layers that live elsewhere (`urls`) are not pushed.
        if blob["urls"].as_array().is_some_and(|u| !u.is_empty()) {
            continue;
        }
        let digest = blob["digest"]
            .as_str()
            .ok_or("a descriptor lacks its digest")?;
        if image.located.contains_key(digest) {
            continue;
        }
        let located = layout.blob(digest)?;
        image.blobs.push(BlobRef {
            digest: digest.to_string(),
            size: located.len,
        });
        image.located.insert(digest.to_string(), located);
    }
    image.manifests.push(ManifestBlob {
        digest: digest.to_string(),
        media_type,
        bytes,
    });
    Ok(())
}

/// A `docker save` / `podman save` archive of the classic kind: a
/// `manifest.json` naming each image's config file and layer tars. Its
/// image manifest is made here: the config as it is, each layer as it lies
/// in the archive (an uncompressed tar, or gzip when it starts like one),
/// digests hashed from the archive's bytes.
fn from_docker_save(layout: Layout, tag: Option<&str>) -> Result<Image, String> {
    let list = json(&layout.read("manifest.json")?, "manifest.json")?;
    let images = list.as_array().cloned().unwrap_or_default();
    let chosen = match tag {
        Some(tag) => images
            .iter()
            .find(|i| {
                i["RepoTags"].as_array().is_some_and(|tags| {
                    tags.iter()
                        .filter_map(|t| t.as_str())
                        .any(|t| t == tag || t.rsplit_once(':').is_some_and(|(_, t)| t == tag))
                })
            })
            .ok_or_else(|| format!("the archive has no image tagged {tag}"))?,
        None => images
            .first()
            .ok_or("the archive's manifest.json is empty")?,
    };
    let config_name = chosen["Config"]
        .as_str()
        .ok_or("manifest.json names no Config")?;
    let mut image = Image {
        blobs: Vec::new(),
        manifests: Vec::new(),
        located: HashMap::new(),
    };
    let mut descriptor = |name: &str, kind: Option<&str>| -> Result<serde_json::Value, String> {
        let located = layout.file(name)?;
        let digest = located
            .sha256()
            .map_err(|e| format!("cannot read {name}: {e}"))?;
        let media_type = match kind {
            Some(kind) => kind.to_string(),
            None => {
                let head = located
                    .read_range(0, located.len.min(2))
                    .map_err(|e| format!("cannot read {name}: {e}"))?;
                if head == [0x1f, 0x8b] {
                    OCI_LAYER_GZIP
                } else {
                    OCI_LAYER_TAR
                }
                .to_string()
            }
        };
        let size = located.len;
        if !image.located.contains_key(&digest) {
            image.blobs.push(BlobRef {
                digest: digest.clone(),
                size,
            });
            image.located.insert(digest.clone(), located);
        }
        Ok(serde_json::json!({ "mediaType": media_type, "digest": digest, "size": size }))
    };
    let config = descriptor(config_name, Some(OCI_CONFIG))?;
    let layers = chosen["Layers"]
        .as_array()
        .ok_or("manifest.json names no Layers")?
        .iter()
        .map(|l| descriptor(l.as_str().unwrap_or_default(), None))
        .collect::<Result<Vec<_>, _>>()?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": layers,
    });
    let bytes = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
    image.manifests.push(ManifestBlob {
        digest: format!("sha256:{}", hex(&Sha256::digest(&bytes))),
        media_type: OCI_MANIFEST.into(),
        bytes,
    });
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(bytes: &[u8]) -> String {
        format!("sha256:{}", hex(&Sha256::digest(bytes)))
    }

    /// Writes an OCI layout with one image (a config and two layers) into
    /// `dir`, tagged `v1`; returns the manifest digest and the blobs.
    fn write_layout(dir: &Path) -> (String, Vec<Vec<u8>>) {
        let layer1 = vec![7u8; 3000];
        let layer2 = b"second layer".to_vec();
        let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
        let blobs = vec![config.clone(), layer1.clone(), layer2.clone()];
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        for b in &blobs {
            let d = sha(b);
            std::fs::write(dir.join("blobs/sha256").join(&d[7..]), b).unwrap();
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha(&config), "size": config.len()},
            "layers": [
                {"mediaType": OCI_LAYER_TAR, "digest": sha(&layer1), "size": layer1.len()},
                {"mediaType": OCI_LAYER_TAR, "digest": sha(&layer2), "size": layer2.len()},
                {"mediaType": OCI_LAYER_TAR, "digest": sha(&layer1), "size": layer1.len()},
            ]
        });
        let mbytes = serde_json::to_vec(&manifest).unwrap();
        let md = sha(&mbytes);
        std::fs::write(dir.join("blobs/sha256").join(&md[7..]), &mbytes).unwrap();
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": md, "size": mbytes.len(),
             "annotations": {REF_NAME: "v1"}}]});
        std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        (md, blobs)
    }

    fn tar_dir(dir: &Path, out: &Path) {
        let mut builder = tar::Builder::new(File::create(out).unwrap());
        builder.append_dir_all(".", dir).unwrap();
        builder.finish().unwrap();
    }

    fn check(image: &Image, manifest: &str, blobs: &[Vec<u8>]) {
        assert_eq!(image.top().digest, manifest);
        assert_eq!(image.manifests.len(), 1);
        // Each blob once, in the manifest's order; the bytes read back whole
        // and by range.
        let digests: Vec<&str> = image.blobs.iter().map(|b| b.digest.as_str()).collect();
        let want: Vec<String> = blobs.iter().map(|b| sha(b)).collect();
        assert_eq!(digests, want);
        for (blob, bytes) in image.blobs.iter().zip(blobs) {
            let located = image.locate(&blob.digest).unwrap();
            assert_eq!(blob.size, bytes.len() as u64);
            assert_eq!(&located.read_all().unwrap(), bytes);
            assert_eq!(located.sha256().unwrap(), blob.digest);
            let len = bytes.len().min(5) as u64;
            assert_eq!(
                located.read_range(1, len - 1).unwrap(),
                &bytes[1..len as usize]
            );
        }
    }

    #[test]
    fn layouts_are_read_in_place_from_a_directory_and_a_tar() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("layout");
        let (manifest, blobs) = write_layout(&dir);
        check(
            &from_layout_dir(&dir, Some("v1")).unwrap(),
            &manifest,
            &blobs,
        );
        check(&from_layout_dir(&dir, None).unwrap(), &manifest, &blobs);
        assert!(from_layout_dir(&dir, Some("v2"))
            .unwrap_err()
            .contains("v2"));

        let archive = tmp.path().join("image.tar");
        tar_dir(&dir, &archive);
        let image = from_archive(&archive, Some("v1")).unwrap();
        check(&image, &manifest, &blobs);
        // Nothing was copied: the blob is a range of the archive.
        assert_eq!(image.locate(&sha(&blobs[1])).unwrap().path, archive);
    }

    #[test]
    fn docker_save_archives_get_a_manifest_made_from_their_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("save");
        std::fs::create_dir_all(dir.join("abc")).unwrap();
        let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers"}}"#;
        let layer = vec![1u8; 2048];
        std::fs::write(dir.join("cfg.json"), config).unwrap();
        std::fs::write(dir.join("abc/layer.tar"), &layer).unwrap();
        let list = serde_json::json!([{"Config": "cfg.json", "RepoTags": ["app:v1"], "Layers": ["abc/layer.tar"]}]);
        std::fs::write(
            dir.join("manifest.json"),
            serde_json::to_vec(&list).unwrap(),
        )
        .unwrap();
        let archive = tmp.path().join("save.tar");
        tar_dir(&dir, &archive);

        let image = from_archive(&archive, Some("v1")).unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(&image.top().bytes).unwrap();
        assert_eq!(manifest["config"]["digest"], sha(config));
        assert_eq!(manifest["layers"][0]["digest"], sha(&layer));
        assert_eq!(manifest["layers"][0]["mediaType"], OCI_LAYER_TAR);
        assert_eq!(image.top().digest, sha(&image.top().bytes));
        assert_eq!(image.blobs.len(), 2);
        assert_eq!(
            image.locate(&sha(&layer)).unwrap().read_all().unwrap(),
            layer
        );
        assert!(from_archive(&archive, Some("v9")).is_err());
    }
}
