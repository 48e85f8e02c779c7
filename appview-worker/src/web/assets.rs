//! The URLs of the stylesheet and scripts, named by their content
//! (`build.rs` publishes them under `web/assets/`).
include!(concat!(env!("OUT_DIR"), "/assets.rs"));
