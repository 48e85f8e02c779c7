//! The stylesheet and scripts of `web/`, embedded in the Worker and served
//! under names that carry their content's hash (`build.rs` names them), so
//! browsers may keep each one for a year: a changed file gets a new URL.

use worker::{Response, Result};

/// One embedded file of `web/`.
pub struct Asset {
    /// Where it is served: `/assets/<stem>.<hash>.<ext>`.
    pub path: &'static str,
    pub media_type: &'static str,
    pub bytes: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// The file served at `path`, if one is: its bytes, or for a HEAD only
/// their length.
pub fn serve(path: &str, head: bool) -> Option<Result<Response>> {
    let asset = FILES.iter().find(|a| a.path == path)?;
    let answer = if head {
        Response::empty().and_then(|mut resp| {
            let length = asset.bytes.len().to_string();
            resp.headers_mut().set("Content-Length", &length)?;
            Ok(resp)
        })
    } else {
        Response::from_bytes(asset.bytes.to_vec())
    };
    Some(answer.and_then(|mut resp| {
        let headers = resp.headers_mut();
        headers.set("Content-Type", asset.media_type)?;
        headers.set("Cache-Control", "public, max-age=31536000, immutable")?;
        Ok(resp)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_is_served_under_its_linked_name() {
        for linked in [STYLE_CSS, COPY_JS, STAR_JS] {
            let asset = FILES.iter().find(|a| a.path == linked).expect("embedded");
            assert!(!asset.bytes.is_empty());
            assert!(linked.starts_with("/assets/"));
        }
    }
}
