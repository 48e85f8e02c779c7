//! Publishes the files of `web/` under content-hashed names.
//!
//! Each stylesheet and script is copied to `web/assets/<stem>.<hash>.<ext>`
//! (the hash is the start of its SHA-256), which the Workers asset server
//! serves with a year-long, immutable cache lifetime (`web/_headers`). The
//! pages link those names through the constants written to
//! `$OUT_DIR/assets.rs` (`web::assets`), so a changed file gets a new URL and
//! no browser keeps an old copy. The copies are written here, next to the
//! sources, because `wrangler dev` and `wrangler deploy` serve one directory.
use sha2::{Digest, Sha256};
use std::{fmt::Write as _, fs, path::Path};

/// The published files: (constant name, file in `web/`).
const ASSETS: &[(&str, &str)] = &[
    ("STYLE_CSS", "style.css"),
    ("COPY_JS", "copy.js"),
    ("STAR_JS", "star.js"),
];

fn main() {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web");
    let published = web.join("assets");
    fs::create_dir_all(&published).expect("create web/assets");
    let mut constants = String::new();
    for (constant, file) in ASSETS {
        let source = web.join(file);
        println!("cargo:rerun-if-changed={}", source.display());
        let bytes = fs::read(&source).unwrap_or_else(|e| panic!("read {}: {e}", source.display()));
        let hash = hex_prefix(&Sha256::digest(&bytes), 10);
        let (stem, ext) = file
            .rsplit_once('.')
            .expect("asset names have an extension");
        let name = format!("{stem}.{hash}.{ext}");
        remove_stale(&published, stem, ext, &name);
        let target = published.join(&name);
        if fs::read(&target).ok().as_deref() != Some(bytes.as_slice()) {
            fs::write(&target, &bytes)
                .unwrap_or_else(|e| panic!("write {}: {e}", target.display()));
        }
        writeln!(
            constants,
            "pub const {constant}: &str = \"/assets/{name}\";"
        )
        .unwrap();
    }
    let out = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("assets.rs");
    fs::write(out, constants).expect("write assets.rs");
}

/// Earlier copies of one file, so `web/assets` holds only what the pages link.
fn remove_stale(dir: &Path, stem: &str, ext: &str, keep: &str) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let hashed_copy =
            name.starts_with(&format!("{stem}.")) && name.ends_with(&format!(".{ext}"));
        if hashed_copy && name != keep {
            let _ = fs::remove_file(entry.path());
        }
    }
}

fn hex_prefix(digest: &[u8], chars: usize) -> String {
    digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..chars]
        .to_string()
}
