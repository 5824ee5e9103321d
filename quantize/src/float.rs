//! The float formats: F32 (copied), F16 (round to nearest even) and BF16 (ggml's rounding).

use crate::rounding::to_f16;

/// `ggml_compute_fp32_to_bf16` for finite input: round to nearest even on the top 16 bits.
#[inline(always)]
pub(crate) fn to_bf16_bits(x: f32) -> u16 {
    let u = x.to_bits();
    ((u + (0x7fff + ((u >> 16) & 1))) >> 16) as u16
}

pub(crate) fn quantize_f32(src: &[f32], dst: &mut [u8]) {
    dst.copy_from_slice(bytemuck::cast_slice(src));
}

pub(crate) fn quantize_f16(src: &[f32], dst: &mut [u8]) {
    for (v, out) in src.iter().zip(dst.chunks_exact_mut(2)) {
        out.copy_from_slice(&to_f16(*v).to_le_bytes());
    }
}

pub(crate) fn quantize_bf16(src: &[f32], dst: &mut [u8]) {
    for (v, out) in src.iter().zip(dst.chunks_exact_mut(2)) {
        out.copy_from_slice(&to_bf16_bits(*v).to_le_bytes());
    }
}

pub(crate) fn dequantize_f32(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(4).zip(dst) {
        *y = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}

pub(crate) fn dequantize_f16(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(2).zip(dst) {
        *y = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
    }
}

pub(crate) fn dequantize_bf16(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(2).zip(dst) {
        *y = f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16);
    }
}
