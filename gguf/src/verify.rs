//! Integrity of a GGUF file: every tensor inside the file and none overlapping another, and,
//! for files strata wrote, the SHA-256 of the data section against the one kept in the header.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};

use super::write::hex;
use super::{parse, GgufFile, DATA_SHA256_KEY};

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
    check_layout(&gguf).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let data = &map[gguf.data_offset as usize..];
    let sha256 = match gguf.get(DATA_SHA256_KEY) {
        None => None,
        Some(v) => {
            let recorded = v.as_str().ok_or_else(|| anyhow!("{}: {DATA_SHA256_KEY} is not a string", path.display()))?;
            let actual = hex(&Sha256::digest(data));
            if actual != recorded {
                bail!("{}: the tensor data's SHA-256 is {actual}, but the file records {recorded}: the data changed after it was written", path.display());
            }
            Some(actual)
        }
    };
    Ok(Verified { tensors: gguf.tensors.len(), data_bytes: data.len() as u64, sha256 })
}

/// Every tensor's bytes (as its type and shape size them) lie inside the data section, at
/// offsets that respect the alignment, and no two tensors share a byte.
fn check_layout(gguf: &GgufFile) -> Result<()> {
    let data_len = gguf.file_size.saturating_sub(gguf.data_offset);
    let mut spans: Vec<(u64, u64, &str)> = Vec::with_capacity(gguf.tensors.len());
    for t in &gguf.tensors {
        let end = t.offset.checked_add(t.n_bytes()).filter(|&e| e <= data_len);
        let end = end.ok_or_else(|| anyhow!("tensor {} ({} bytes at data offset {}) runs past the end of the file", t.name, t.n_bytes(), t.offset))?;
        if t.offset % gguf.alignment != 0 {
            bail!("tensor {} starts at data offset {}, not a multiple of the alignment {}", t.name, t.offset, gguf.alignment);
        }
        spans.push((t.offset, end, &t.name));
    }
    spans.sort();
    if let Some(w) = spans.windows(2).find(|w| w[1].0 < w[0].1) {
        bail!("tensors {} and {} overlap (data offsets {}..{} and {}..)", w[0].2, w[1].2, w[0].0, w[0].1, w[1].0);
    }
    Ok(())
}
