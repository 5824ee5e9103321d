//! The file pages of weights llama.cpp repacks, released as it repacks them.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Result;

/// The file pages of repacked weights, released as llama.cpp repacks them. Its kernels read the
/// repacked copy only, so the originals, read once to make it, would otherwise stay resident
/// beside it: the same bytes twice. Each weight's pages are released when llama.cpp logs that it
/// repacks the next one (the log comes before the repack), the last when the load ends. Were a
/// weight read again after all, its pages would fault back in from the file: nothing but memory
/// changes. llama.h says nothing of repacking; its log is the one place that names the weights.
pub(super) struct Releaser {
    path: PathBuf,
    /// File byte ranges of the model's weights, by name.
    ranges: std::collections::HashMap<String, std::ops::Range<u64>>,
    /// The weight being repacked now.
    current: Option<String>,
    released: u64,
}

pub(super) static RELEASER: Mutex<Option<Releaser>> = Mutex::new(None);

impl Releaser {
    /// Releases the pages of the weight repacked last, if any.
    fn release_current(&mut self) {
        if let Some(range) = self.current.take().and_then(|name| self.ranges.get(&name).cloned()) {
            self.released += strata_run::system_memory::release_mapped_pages(&self.path, &[range]).unwrap_or(0);
        }
    }
}

/// From the log callback: llama.cpp is about to repack `name`, so the previous one is done.
pub(super) fn repacking(name: &str) {
    if let Some(r) = RELEASER.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        r.release_current();
        r.current = Some(name.to_string());
    }
}

/// Arms the [`Releaser`] for a load of `path`: the weights' byte ranges, from the file's tensor
/// table (its metadata stepped over, not built).
pub(super) fn arm_releaser(path: &Path) -> Result<()> {
    let file = strata_gguf::GgufFile::open_keeping(path, |_| false)?;
    let ranges = file
        .tensors
        .iter()
        .map(|t| (t.name.clone(), file.data_offset + t.offset..file.data_offset + t.offset + t.n_bytes()))
        .collect();
    *RELEASER.lock().unwrap_or_else(|e| e.into_inner()) =
        Some(Releaser { path: path.to_path_buf(), ranges, current: None, released: 0 });
    Ok(())
}

/// Disarms the [`Releaser`] after a load, releasing the last weight; the bytes released.
pub(super) fn disarm_releaser() -> u64 {
    let mut slot = RELEASER.lock().unwrap_or_else(|e| e.into_inner());
    let mut r = match slot.take() {
        Some(r) => r,
        None => return 0,
    };
    r.release_current();
    r.released
}
