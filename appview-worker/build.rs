//! Names the files of `web/` by their content and embeds them in the Worker.
//!
//! Each stylesheet and script is served at `/assets/<stem>.<hash>.<ext>`
//! (the hash is the start of its SHA-256) with a year-long, immutable cache
//! lifetime (`web::assets`). The pages link those names through the
//! constants written to `$OUT_DIR/assets.rs`, so a changed file gets a new
//! URL and no browser keeps an old copy. The files are embedded rather than
//! served by the Workers asset binding: with one, every request (registry
//! calls too) passes through the asset router before the Worker.
use sha2::{Digest, Sha256};
use std::{fmt::Write as _, fs, path::Path};

/// The served files: (constant name, file in `web/`, media type).
const ASSETS: &[(&str, &str, &str)] = &[
    ("STYLE_CSS", "style.css", "text/css; charset=utf-8"),
    ("COPY_JS", "copy.js", "text/javascript; charset=utf-8"),
    ("STAR_JS", "star.js", "text/javascript; charset=utf-8"),
];

fn main() {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web");
    let mut constants = String::new();
    let mut files = String::from("pub const FILES: &[Asset] = &[\n");
    for (constant, file, media_type) in ASSETS {
        let source = web.join(file);
        println!("cargo:rerun-if-changed={}", source.display());
        let bytes = fs::read(&source).unwrap_or_else(|e| panic!("read {}: {e}", source.display()));
        let hash = hex_prefix(&Sha256::digest(&bytes), 10);
        let (stem, ext) = file
            .rsplit_once('.')
            .expect("asset names have an extension");
        let url = format!("/assets/{stem}.{hash}.{ext}");
        writeln!(constants, "pub const {constant}: &str = {url:?};").unwrap();
        writeln!(
            files,
            "    Asset {{ path: {url:?}, media_type: {media_type:?}, bytes: include_bytes!({:?}) }},",
            source.display().to_string()
        )
        .unwrap();
    }
    files.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("assets.rs");
    fs::write(out, constants + &files).expect("write assets.rs");
}

fn hex_prefix(digest: &[u8], chars: usize) -> String {
    digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..chars]
        .to_string()
}
