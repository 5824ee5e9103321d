//! Integrity of a GGUF file: its layout (every tensor inside the file, aligned, none overlapping
//! another: [`parse`] checks that for every file it reads) and, for files strata wrote, the
//! SHA-256 of the data section against the one kept in the header.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};

use super::write::hex;
use super::{parse, DATA_SHA256_KEY};

/// What [`verify`] checked.
#[derive(Debug, PartialEq, Eq)]
pub struct Verified {
    pub tensors: usize,
    pub data_bytes: u64,
    /// The data section's SHA-256, when the file records one (it matched).
    pub sha256: Option<String>,
}

/// Checks a GGUF file's layout and, where it has [`DATA_SHA256_KEY`], its data checksum.
/// Errors name the file and the first thing wrong.
pub fn verify(path: &Path) -> Result<Verified> {
    let file = std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    // SAFETY: a read-only map, dropped before returning.
    let map = unsafe { memmap2::Mmap::map(&file) }.with_context(|| format!("{}: cannot map", path.display()))?;
    let gguf = parse(&map).map_err(|e| anyhow!("{}: not a valid GGUF file: {e}", path.display()))?;
    // A file without tensors may end before the aligned start of its (empty) data section.
    let data = map.get(gguf.data_offset as usize..).unwrap_or_default();
    let sha256 = match gguf.get(DATA_SHA256_KEY) {
        None => None,
        Some(v) => {
            let recorded =
                v.as_str().ok_or_else(|| anyhow!("{}: {DATA_SHA256_KEY} is not a string", path.display()))?;
            let actual = hex(&Sha256::digest(data));
            if actual != recorded {
                bail!("{}: the tensor data's SHA-256 is {actual}, but the file records {recorded}: the data changed after it was written", path.display());
            }
            Some(actual)
        }
    };
    Ok(Verified { tensors: gguf.tensors.len(), data_bytes: data.len() as u64, sha256 })
}
