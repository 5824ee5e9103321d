//! ggml's block quantization formats in pure Rust.
//!
//! What it is for: turning rows of `f32` into the bytes of a ggml tensor type (and back), with
//! exactly the bytes ggml's quantizers produce (`ggml_quantize_chunk`, without an importance
//! matrix or with one: [`quantize_rows_weighted`]), so a GGUF written with this crate is the GGUF
//! llama.cpp would write.
//! Formats: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS.
//!
//! What it is not: a file reader or writer, or an inference kernel. It knows blocks and bytes only.
//!
//! Blocks are independent, so [`quantize_rows`] runs them in parallel on the current rayon pool;
//! within a block, the searches of the K-quant and IQ4 formats run eight sub-blocks at a time
//! where the CPU has AVX2 (lanes.rs), with the same bytes.
//! Byte order is little-endian, as in GGUF.

// The block math indexes several arrays in step, as ggml's C does, so that it reads line by line
// beside ggml-quants.c; iterator chains would hide that correspondence.
#![allow(clippy::needless_range_loop)]

mod block;
mod float;
mod iquants;
mod kquants;
mod lanes;
mod legacy;
mod rounding;
mod types;

use std::fmt;

use rayon::prelude::*;

pub use block::BlockFormat;
pub use iquants::{BlockIq4Nl, BlockIq4Xs};
pub use kquants::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K};
pub use legacy::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0};
pub use types::GgmlType;

/// Why a row could not be quantized or dequantized.
#[derive(Clone, Debug, PartialEq)]
pub enum QuantizeError {
    /// This crate has no quantizer for the type.
    Unsupported(GgmlType),
    /// The row width is not a whole number of the type's blocks.
    RowWidth { ty: GgmlType, n_per_row: usize },
    /// The input holds NaN or an infinity.
    NotFinite { row: usize, column: usize, value: f32 },
    /// The buffers do not hold whole rows of the sizes the type needs.
    BufferSize { what: &'static str, expected: usize, actual: usize },
}

impl fmt::Display for QuantizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuantizeError::Unsupported(ty) => {
                write!(f, "cannot quantize to {ty}: supported types are {}", supported_names())
            }
            QuantizeError::RowWidth { ty, n_per_row } => {
                write!(f, "row width {n_per_row} is not a multiple of {ty}'s block size {}", ty.block_size())
            }
            QuantizeError::NotFinite { row, column, value } => {
                write!(f, "row {row}, column {column}: value {value} is not finite")
            }
            QuantizeError::BufferSize { what, expected, actual } => {
                write!(f, "{what} holds {actual} elements or bytes, expected {expected}")
            }
        }
    }
}

impl std::error::Error for QuantizeError {}

fn supported_names() -> String {
    GgmlType::QUANTIZABLE.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
}

/// Bytes taken by one row of `n_per_row` elements of type `ty`.
pub fn row_size(ty: GgmlType, n_per_row: usize) -> Result<usize, QuantizeError> {
    if !n_per_row.is_multiple_of(ty.block_size()) {
        return Err(QuantizeError::RowWidth { ty, n_per_row });
    }
    Ok(n_per_row / ty.block_size() * ty.type_size())
}

type QuantizeFn = fn(&[f32], &mut [u8]);
type DequantizeFn = fn(&[u8], &mut [f32]);
/// One row with its importance weights.
type WeightedFn = fn(&[f32], &[f32], &mut [u8]);

/// A type's quantizer, dequantizer and weighted row quantizer (the float types ignore weights,
/// as ggml does).
fn kernels(ty: GgmlType) -> Result<(QuantizeFn, DequantizeFn, WeightedFn), QuantizeError> {
    use block::{dequantize_blocks as dq, quantize_row_weighted as w};
    fn q<B: BlockFormat>(src: &[f32], dst: &mut [u8]) {
        B::quantize_run(src, dst)
    }
    Ok(match ty {
        GgmlType::F32 => (float::quantize_f32, float::dequantize_f32, |x, _, out| float::quantize_f32(x, out)),
        GgmlType::F16 => (float::quantize_f16, float::dequantize_f16, |x, _, out| float::quantize_f16(x, out)),
        GgmlType::BF16 => (float::quantize_bf16, float::dequantize_bf16, |x, _, out| float::quantize_bf16(x, out)),
        GgmlType::Q4_0 => (q::<BlockQ4_0>, dq::<BlockQ4_0>, w::<BlockQ4_0>),
        GgmlType::Q4_1 => (q::<BlockQ4_1>, dq::<BlockQ4_1>, w::<BlockQ4_1>),
        GgmlType::Q5_0 => (q::<BlockQ5_0>, dq::<BlockQ5_0>, w::<BlockQ5_0>),
        GgmlType::Q5_1 => (q::<BlockQ5_1>, dq::<BlockQ5_1>, w::<BlockQ5_1>),
        GgmlType::Q8_0 => (q::<BlockQ8_0>, dq::<BlockQ8_0>, w::<BlockQ8_0>),
        GgmlType::Q2_K => (q::<BlockQ2K>, dq::<BlockQ2K>, w::<BlockQ2K>),
        GgmlType::Q3_K => (q::<BlockQ3K>, dq::<BlockQ3K>, w::<BlockQ3K>),
        GgmlType::Q4_K => (q::<BlockQ4K>, dq::<BlockQ4K>, w::<BlockQ4K>),
        GgmlType::Q5_K => (q::<BlockQ5K>, dq::<BlockQ5K>, w::<BlockQ5K>),
        GgmlType::Q6_K => (q::<BlockQ6K>, dq::<BlockQ6K>, w::<BlockQ6K>),
        GgmlType::IQ4_NL => (q::<BlockIq4Nl>, dq::<BlockIq4Nl>, w::<BlockIq4Nl>),
        GgmlType::IQ4_XS => (q::<BlockIq4Xs>, dq::<BlockIq4Xs>, w::<BlockIq4Xs>),
        other => return Err(QuantizeError::Unsupported(other)),
    })
}

/// Elements handed to one parallel task: large enough to amortise scheduling, small enough to
/// spread a single row over all threads.
const TASK_ELEMENTS: usize = 16 * 1024;

/// Checks that `src` is whole rows of `n_per_row` and `dst` is exactly their encoded size;
/// returns the number of rows.
fn check_buffers(ty: GgmlType, src_len: usize, n_per_row: usize, dst_len: usize) -> Result<usize, QuantizeError> {
    let row_bytes = row_size(ty, n_per_row)?;
    if n_per_row == 0 || !src_len.is_multiple_of(n_per_row) {
        return Err(QuantizeError::BufferSize { what: "input", expected: n_per_row, actual: src_len });
    }
    let rows = src_len / n_per_row;
    if dst_len != rows * row_bytes {
        return Err(QuantizeError::BufferSize { what: "output", expected: rows * row_bytes, actual: dst_len });
    }
    Ok(rows)
}

/// The index of the first NaN or infinity in `x`. Checks 64 values at a time without branching,
/// so the common all-finite case runs at memory speed.
fn first_non_finite(x: &[f32]) -> Option<usize> {
    // Exponent bits all set means NaN or infinity; an integer maximum over them vectorizes.
    let all_finite = |c: &[f32]| c.iter().fold(0u32, |m, v| m.max(v.to_bits() & 0x7f80_0000)) != 0x7f80_0000;
    let chunk = x.chunks(64).position(|c| !all_finite(c))?;
    x[chunk * 64..].iter().position(|v| !v.is_finite()).map(|i| chunk * 64 + i)
}

/// Quantizes rows of `n_per_row` values from `src` into `dst`, which must hold exactly
/// `rows * row_size(ty, n_per_row)` bytes. Runs in parallel on the current rayon pool.
///
/// The bytes are those of ggml's `ggml_quantize_chunk(ty, src, dst, 0, rows, n_per_row, NULL)`.
/// NaN or infinite input is an error naming the first such row and column; on error the
/// contents of `dst` are unspecified.
pub fn quantize_rows(ty: GgmlType, src: &[f32], n_per_row: usize, dst: &mut [u8]) -> Result<(), QuantizeError> {
    let (quantize, _, _) = kernels(ty)?;
    check_buffers(ty, src.len(), n_per_row, dst.len())?;
    let blocks_per_task = (TASK_ELEMENTS / ty.block_size()).max(1);
    in_parallel(src, n_per_row, blocks_per_task * ty.block_size(), dst, blocks_per_task * ty.type_size(), quantize)
}

/// Runs `quantize` over tasks of `task_elements` values of `src` and `task_bytes` of `dst` in
/// parallel, skipping any task that holds a NaN or infinity; the first of those is the error.
fn in_parallel(
    src: &[f32],
    n_per_row: usize,
    task_elements: usize,
    dst: &mut [u8],
    task_bytes: usize,
    quantize: impl Fn(&[f32], &mut [u8]) + Sync,
) -> Result<(), QuantizeError> {
    let first_bad = src
        .par_chunks(task_elements)
        .zip(dst.par_chunks_mut(task_bytes))
        .enumerate()
        .filter_map(|(task, (x, out))| match first_non_finite(x) {
            Some(i) => Some(task * task_elements + i),
            None => {
                quantize(x, out);
                None
            }
        })
        .min();
    match first_bad {
        Some(i) => Err(QuantizeError::NotFinite { row: i / n_per_row, column: i % n_per_row, value: src[i] }),
        None => Ok(()),
    }
}

/// Quantizes rows as [`quantize_rows`] does, each weighted by `weights`: one importance per
/// column (`n_per_row` of them, from an importance matrix). The bytes are those of ggml's
/// `ggml_quantize_chunk(ty, src, dst, 0, rows, n_per_row, weights)`. Runs rows in parallel.
pub fn quantize_rows_weighted(
    ty: GgmlType,
    src: &[f32],
    n_per_row: usize,
    weights: &[f32],
    dst: &mut [u8],
) -> Result<(), QuantizeError> {
    let (_, _, quantize) = kernels(ty)?;
    check_buffers(ty, src.len(), n_per_row, dst.len())?;
    if weights.len() != n_per_row {
        return Err(QuantizeError::BufferSize {
            what: "importance weights",
            expected: n_per_row,
            actual: weights.len(),
        });
    }
    let row_bytes = row_size(ty, n_per_row)?;
    let rows_per_task = (TASK_ELEMENTS / n_per_row).max(1);
    in_parallel(src, n_per_row, rows_per_task * n_per_row, dst, rows_per_task * row_bytes, |x, out| {
        for (row, o) in x.chunks_exact(n_per_row).zip(out.chunks_exact_mut(row_bytes)) {
            quantize(row, weights, o);
        }
    })
}

/// Decodes `dst.len()` elements (whole blocks) of type `ty` from `src`, which must hold exactly
/// their bytes, as ggml's `dequantize_row_*` functions do.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), QuantizeError> {
    let (_, dequantize, _) = kernels(ty)?;
    let expected = row_size(ty, dst.len())?;
    if src.len() != expected {
        return Err(QuantizeError::BufferSize { what: "input", expected, actual: src.len() });
    }
    dequantize(src, dst);
    Ok(())
}
