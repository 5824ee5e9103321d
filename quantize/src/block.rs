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

    /// Decodes into the first [`Self::ELEMENTS`] values of `y`, as ggml's `dequantize_row_*` does.
    fn dequantize(&self, y: &mut [f32]);
}

/// Quantizes `src` (a whole number of blocks) into `dst` (exactly as many blocks' bytes).
pub(crate) fn quantize_blocks<B: BlockFormat>(src: &[f32], dst: &mut [u8]) {
    let size = std::mem::size_of::<B>();
    for (x, out) in src.chunks_exact(B::ELEMENTS).zip(dst.chunks_exact_mut(size)) {
        out.copy_from_slice(bytemuck::bytes_of(&B::quantize(x)));
    }
}

/// Dequantizes `src` (whole blocks) into `dst` (as many elements).
pub(crate) fn dequantize_blocks<B: BlockFormat>(src: &[u8], dst: &mut [f32]) {
    let size = std::mem::size_of::<B>();
    for (bytes, y) in src.chunks_exact(size).zip(dst.chunks_exact_mut(B::ELEMENTS)) {
        bytemuck::pod_read_unaligned::<B>(bytes).dequantize(y);
    }
}
