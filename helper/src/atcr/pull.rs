//! `atcr pull REGISTRY/NAME:TAG DEST`: the manifests through the appview,
//! each blob streamed from storage (the appview's `307`) to a file beside
//! its place in an OCI layout, hashed on the way and renamed into place
//! only when its digest matches. Blobs already in the layout are kept.
//! An archive is the layout put in a tar (`oci-archive:`) or converted by
//! skopeo (`docker-archive:`).

use crate::image::{hex, OCI_INDEX};
use crate::progress::Progress;
use crate::registry::{Registry, Target};
use crate::retry::{retry, Failure};
use crate::source::Place;
use crate::Options;
use atcr_helper::store::CredentialStore;
use indicatif::HumanBytes;
use sha2::{Digest as _, Sha256};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Mutex;

const REF_NAME: &str = "org.opencontainers.image.ref.name";

pub fn pull(
    store: &CredentialStore,
    target: &str,
    dest: &str,
    opts: &Options,
) -> Result<String, String> {
    let target = Target::parse(target)?;
    let creds = store.get(&target.registry)?;
    let registry = Registry::new(target.clone(), creds, false);
    let place = Place::parse(dest).unwrap_or_else(|_| Place::Layout {
        dir: dest.into(),
        tag: None,
    });
    let default_tag = (!target.reference.contains(':')).then(|| target.reference.clone());
    let (digest, blobs, bytes) = match &place {
        Place::Layout { dir, tag } => {
            write_layout(&registry, dir, tag.clone().or(default_tag), opts.parallel)?
        }
        Place::OciArchive { file, tag } => {
            let temp = tempfile::tempdir().map_err(|e| e.to_string())?;
            let layout = temp.path().join("layout");
            let pulled = write_layout(
                &registry,
                &layout,
                tag.clone().or(default_tag),
                opts.parallel,
            )?;
            let out = std::fs::File::create(file)
                .map_err(|e| format!("cannot create {}: {e}", file.display()))?;
            let mut builder = tar::Builder::new(out);
            builder
                .append_dir_all(".", &layout)
                .and_then(|_| builder.finish())
                .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
            pulled
        }
        Place::DockerArchive { .. } | Place::Engine { .. } => {
            let temp = tempfile::tempdir().map_err(|e| e.to_string())?;
            let layout = temp.path().join("layout");
            let pulled = write_layout(&registry, &layout, Some("pulled".into()), opts.parallel)?;
            let status = std::process::Command::new("skopeo")
                .args([
                    "copy",
                    "--quiet",
                    &format!("oci:{}:pulled", layout.display()),
                    dest,
                ])
                .status()
                .map_err(|e| format!("{dest} needs skopeo: {e}"))?;
            if !status.success() {
                return Err(format!("skopeo could not write {dest}"));
            }
            pulled
        }
    };
    Ok(format!(
        "pulled {}/{}:{} {digest} into {dest}: {blobs} blobs fetched, {} bytes",
        target.registry, target.name, target.reference, bytes
    ))
}

/// Writes the image into the layout at `dir`, tagged `tag` in its
/// `index.json`. Answers the manifest's digest, the blobs fetched and their bytes.
fn write_layout(
    registry: &Registry,
    dir: &Path,
    tag: Option<String>,
    parallel: usize,
) -> Result<(String, usize, u64), String> {
    let fail = |e: Failure| e.message;
    std::fs::create_dir_all(dir.join("blobs/sha256"))
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let (media_type, bytes) = registry
        .get_manifest(&registry.target.reference)
        .map_err(fail)?;
    let digest = format!("sha256:{}", hex(&Sha256::digest(&bytes)));
    if registry.target.reference.starts_with("sha256:") && registry.target.reference != digest {
        return Err(format!(
            "the registry answered a manifest whose digest is {digest}"
        ));
    }
    let mut blobs: Vec<(String, u64)> = Vec::new();
    let mut manifests = vec![(digest.clone(), media_type.clone(), bytes)];
    let mut i = 0;
    while i < manifests.len() {
        let manifest: serde_json::Value = serde_json::from_slice(&manifests[i].2)
            .map_err(|e| format!("manifest {} is not JSON: {e}", manifests[i].0))?;
        i += 1;
        for child in manifest["manifests"].as_array().into_iter().flatten() {
            let d = child["digest"].as_str().unwrap_or_default().to_string();
            let (mt, b) = registry.get_manifest(&d).map_err(fail)?;
            if format!("sha256:{}", hex(&Sha256::digest(&b))) != d {
                return Err(format!("manifest {d} does not have its digest"));
            }
            manifests.push((d, mt, b));
        }
        let descriptors = manifest["config"]
            .is_object()
            .then_some(&manifest["config"])
            .into_iter()
            .chain(manifest["layers"].as_array().into_iter().flatten());
        for d in descriptors {
            let digest = d["digest"].as_str().unwrap_or_default().to_string();
            if !blobs.iter().any(|(b, _)| b == &digest) {
                blobs.push((digest, d["size"].as_u64().unwrap_or(0)));
            }
        }
    }
    for (d, _, b) in &manifests {
        std::fs::write(blob_path(dir, d)?, b).map_err(|e| e.to_string())?;
    }
    let wanted: VecDeque<(String, u64)> = blobs
        .into_iter()
        .filter(|(d, size)| {
            blob_path(dir, d)
                .ok()
                .and_then(|p| std::fs::metadata(p).ok())
                .is_none_or(|m| m.len() != *size)
        })
        .collect();
    let fetched = wanted.len();
    let fetched_bytes: u64 = wanted.iter().map(|(_, s)| s).sum();
    let queue = Mutex::new(wanted);
    let failure = Mutex::new(None::<String>);
    let progress = Progress::new();
    std::thread::scope(|scope| {
        for _ in 0..parallel.clamp(1, 64) {
            scope.spawn(|| loop {
                if failure.lock().unwrap().is_some() {
                    return;
                }
                let Some((digest, size)) = queue.lock().unwrap().pop_front() else {
                    return;
                };
                if let Err(e) = fetch_blob(registry, dir, &digest, size, &progress) {
                    failure.lock().unwrap().get_or_insert(e);
                    return;
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().unwrap() {
        return Err(e);
    }
    let top = &manifests[0];
    let index_path = dir.join("index.json");
    let mut index: serde_json::Value = std::fs::read(&index_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| serde_json::json!({ "schemaVersion": 2, "manifests": [] }));
    let entries = index["manifests"]
        .as_array_mut()
        .ok_or("the layout's index.json lists no manifests")?;
    if let Some(tag) = &tag {
        entries.retain(|e| e["annotations"][REF_NAME].as_str() != Some(tag));
    }
    let mut entry = serde_json::json!({
        "mediaType": if top.1.is_empty() { OCI_INDEX.to_string() } else { top.1.clone() },
        "digest": top.0,
        "size": top.2.len(),
    });
    if let Some(tag) = &tag {
        entry["annotations"] = serde_json::json!({ REF_NAME: tag });
    }
    entries.push(entry);
    std::fs::write(&index_path, serde_json::to_vec_pretty(&index).unwrap())
        .and_then(|_| std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#))
        .map_err(|e| format!("cannot write {}: {e}", dir.display()))?;
    Ok((digest, fetched, fetched_bytes))
}

fn blob_path(dir: &Path, digest: &str) -> Result<std::path::PathBuf, String> {
    match digest.split_once(':') {
        Some((alg, hex)) if !hex.contains('/') && !alg.contains('/') && !hex.is_empty() => {
            let folder = dir.join("blobs").join(alg);
            std::fs::create_dir_all(&folder).map_err(|e| e.to_string())?;
            Ok(folder.join(hex))
        }
        _ => Err(format!("not a digest: {digest}")),
    }
}

/// Streams one blob to a file beside its place, hashing it; renames it into
/// place only when the digest matches. Retried whole.
fn fetch_blob(
    registry: &Registry,
    dir: &Path,
    digest: &str,
    size: u64,
    progress: &Progress,
) -> Result<(), String> {
    let path = blob_path(dir, digest)?;
    if !digest.starts_with("sha256:") {
        return Err(format!("{digest}: only sha256 blobs are pulled"));
    }
    let short = &digest[..digest.len().min(19)];
    retry("blob", || {
        let bar = progress.bar(short, size, 0);
        let mut body = registry.get_blob(digest)?;
        let tmp = path.with_extension(format!("part{}", std::process::id()));
        let mut out = std::fs::File::create(&tmp)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = body.read(&mut buf).map_err(Failure::transport)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])?;
            total += n as u64;
            bar.add(n as u64);
        }
        bar.finish();
        let got = format!("sha256:{}", hex(&hasher.finalize()));
        if got != digest || total != size {
            let _ = std::fs::remove_file(&tmp);
            return Err(Failure::transport(format!(
                "{digest}: received {total} bytes hashing to {got}"
            )));
        }
        std::fs::rename(&tmp, &path)?;
        progress.say(&format!("{short}: {} pulled", HumanBytes(size)));
        Ok(())
    })
    .map_err(|e| e.message)
}
