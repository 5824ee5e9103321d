//! The GGUF container: reading, writing and verifying llama.cpp's model files, and what
//! llama.cpp's conventions say about their contents: each tensor's class by its name
//! ([`TensorClass`]) and a model's shape from its metadata ([`ModelShape`]); and llama.cpp's
//! importance-matrix files ([`Imatrix`]), GGUF and legacy.
//!
//! What it is not: a converter or a runner. It depends on nothing of ours but the block
//! formats' sizes (`strata-quantize`), so `inspect`, the runner and the GGUF fuzz target use it
//! without the tokenizer stack or llama.cpp.
//!
//! Ours rather than gguf-rs: gguf-rs 0.1.8 mis-sizes BF16 and other types, panics on newer type
//! ids and truncates `tokenizer.*` arrays, so it can neither check nor produce our files.

pub mod imatrix;
mod read;
pub mod shape;
mod tensor_class;
mod value;
mod verify;
mod write;

use std::path::Path;

use anyhow::{Context, Result};
use strata_quantize::GgmlType;

pub use imatrix::{Imatrix, ImatrixEntry, ImatrixFormat};
pub use read::{parse, parse_keeping, GgufError};
pub use shape::{LayerShape, ModelShape, TensorSpec};
pub use tensor_class::{block_index, is_per_expert, TensorClass};
pub use value::{Value, ValueType};
pub use verify::{verify, Verified};
pub use write::{
    encode_header, layout, remove_partial_files, write_gguf, Header, PendingFile, DATA_SHA256_KEY,
    DATA_SHA256_PLACEHOLDER,
};

/// The four bytes every GGUF file starts with.
pub const MAGIC: &[u8; 4] = b"GGUF";
/// Tensor data alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// A tensor's entry in the file's tensor table.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub ty: GgmlType,
    /// Dimensions in ggml order: `shape[0]` is the row width (contiguous).
    pub shape: Vec<u64>,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// Number of elements. Infos come from [`parse`] or [`layout`], which both refuse a shape
    /// whose size overflows.
    pub fn n_elements(&self) -> u64 {
        read::shape_elements(&self.shape).expect("checked by parse or layout")
    }

    /// Bytes of data (checked, as [`TensorInfo::n_elements`]).
    pub fn n_bytes(&self) -> u64 {
        self.n_bytes_checked().expect("checked by parse or layout")
    }

    /// Bytes of data, or `None` when the shape is empty, its rows don't divide into the type's
    /// blocks, or its element count or size overflows.
    fn n_bytes_checked(&self) -> Option<u64> {
        read::shape_elements(&self.shape)?;
        let (&width, rows) = self.shape.split_first()?;
        self.ty.bytes_for(width)?.checked_mul(read::shape_elements(rows)?)
    }
}

/// A parsed GGUF file: header, metadata in file order, and the tensor table.
#[derive(Clone, Debug)]
pub struct GgufFile {
    pub version: u32,
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Where the tensor data section starts in the file.
    pub data_offset: u64,
    pub file_size: u64,
}

impl GgufFile {
    /// Reads and checks the GGUF file at `path`. Errors name the file and what is wrong with it.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_keeping(path, |_| true)
    }

    /// Reads and checks the file's tensor table and only the metadata whose key `keep` accepts
    /// ([`parse_keeping`]): its layout without the cost of its vocabulary.
    pub fn open_keeping(path: &Path, keep: impl Fn(&str) -> bool) -> Result<Self> {
        let file = std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            anyhow::bail!("{}: is a directory, not a GGUF file", path.display());
        }
        // SAFETY: the map is read-only and dropped before returning; a file truncated by another
        // process meanwhile is the caller's problem, as for every mmap-based reader.
        let map = unsafe { memmap2::Mmap::map(&file) }.with_context(|| format!("{}: cannot map", path.display()))?;
        parse_keeping(&map, keep).map_err(|e| anyhow::anyhow!("{}: not a valid GGUF file: {e}", path.display()))
    }

    /// The metadata value for `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// `general.architecture`, if present.
    pub fn architecture(&self) -> Option<&str> {
        self.get("general.architecture").and_then(Value::as_str)
    }

    /// Total bytes of tensor data.
    pub fn tensor_bytes(&self) -> u64 {
        self.tensors.iter().map(TensorInfo::n_bytes).sum()
    }
}
