//! The trait every block format implements, and the loops that run it over rows.

use bytemuck::Pod;

use crate::GgmlType;

/// One ggml block: a fixed number of elements encoded in a fixed `#[repr(C)]` layout.
pub trait BlockFormat: Pod {
    /// The ggml type this block belongs to.
    const TYPE: GgmlType;
    /// Elements per block.
    const ELEMENTS: usize = Self::TYPE.block_size();

    /// Encodes exactly [`Self::ELEMENTS`] finite values, as ggml's reference quantizer does.
    fn quantize(x: &[f32]) -> Self;

    /// Encodes with importance weights `qw` (one per element, from an imatrix), as ggml's
    /// `quantize_row_*_impl` does when given them; `row_sigma2` is the mean square of the whole
    /// row the block is in, which the 32-element formats weight with. Formats without a weighted
    /// path ignore the weights, as ggml does.
    fn quantize_weighted(x: &[f32], qw: &[f32], row_sigma2: f32) -> Self {
        let _ = (qw, row_sigma2);
        Self::quantize(x)
    }

    /// Encodes whole blocks, `x` into `out` (exactly their bytes), as [`Self::quantize`] does
    /// one at a time; a format that searches several blocks at once overrides it.
    fn quantize_run(x: &[f32], out: &mut [u8]) {
        for (x, o) in x.chunks_exact(Self::ELEMENTS).zip(out.chunks_exact_mut(std::mem::size_of::<Self>())) {
            o.copy_from_slice(bytemuck::bytes_of(&Self::quantize(x)));
        }
    }

    /// As [`Self::quantize_run`] with importance weights `qw` (as many as `x`), as
    /// [`Self::quantize_weighted`] does one block at a time.
    fn quantize_run_weighted(x: &[f32], qw: &[f32], row_sigma2: f32, out: &mut [u8]) {
        let size = std::mem::size_of::<Self>();
        for ((x, w), o) in
            x.chunks_exact(Self::ELEMENTS).zip(qw.chunks_exact(Self::ELEMENTS)).zip(out.chunks_exact_mut(size))
        {
            o.copy_from_slice(bytemuck::bytes_of(&Self::quantize_weighted(x, w, row_sigma2)));
        }
    }

    /// Decodes into the first [`Self::ELEMENTS`] values of `y`, as ggml's `dequantize_row_*` does.
    fn dequantize(&self, y: &mut [f32]);
}

/// Quantizes one row `src` with importance weights `qw` (as many) into `dst`: ggml's
/// `quantize_*` with `quant_weights`, whose 32-element formats weight by the row's mean square.
pub(crate) fn quantize_row_weighted<B: BlockFormat>(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    let mut sum_x2 = 0.0f32;
    for &v in src {
        sum_x2 += v * v;
    }
    B::quantize_run_weighted(src, qw, sum_x2 / src.len() as f32, dst);
}

/// Dequantizes `src` (whole blocks) into `dst` (as many elements).
pub(crate) fn dequantize_blocks<B: BlockFormat>(src: &[u8], dst: &mut [f32]) {
    let size = std::mem::size_of::<B>();
    for (bytes, y) in src.chunks_exact(size).zip(dst.chunks_exact_mut(B::ELEMENTS)) {
        bytemuck::pod_read_unaligned::<B>(bytes).dequantize(y);
    }
}
