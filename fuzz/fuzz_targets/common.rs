//! Helpers the targets share (included with `#[path]`; not every target uses every one).
#![allow(dead_code)]

use std::path::PathBuf;

/// Splits a fuzz input into parts at NUL bytes (no JSON, TOML or Jinja text holds a raw NUL,
/// so the seeds are the real files joined by NULs).
pub fn parts(data: &[u8]) -> Vec<&[u8]> {
    data.split(|&b| b == 0).collect()
}

/// A folder of this process's own, emptied, for the readers that take a model folder.
pub fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("strata-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the scratch folder");
    dir
}
