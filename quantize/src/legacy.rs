//! The legacy 32-element formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (ggml's `quantize_row_q*_ref`).

use bytemuck::{Pod, Zeroable};
use half::f16;

use crate::block::BlockFormat;
use crate::lanes::{make_qkx2_quants_each, make_qx_quants_each};
#[cfg(not(target_arch = "x86_64"))]
use crate::rounding::c_trunc;
use crate::rounding::{from_f16, to_f16, QKX3_SEARCH};
use crate::GgmlType;

const QK: usize = 32;

/// Q4_0: 4-bit quants `q` with one scale; `x = (q - 8) * d`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4_0 {
    pub d: f16,
    /// Element `j` in the low nibble of byte `j`, element `j + 16` in the high nibble.
    pub qs: [u8; QK / 2],
}

/// Q4_1: 4-bit quants with a scale and a minimum; `x = q * d + m`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4_1 {
    pub d: f16,
    pub m: f16,
    pub qs: [u8; QK / 2],
}

/// Q5_0: 5-bit quants (low nibbles in `qs`, fifth bits in `qh`); `x = (q - 16) * d`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5_0 {
    pub d: f16,
    /// Bit `j` is the fifth bit of element `j` (little-endian u32).
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}

/// Q5_1: 5-bit quants with a scale and a minimum; `x = q * d + m`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5_1 {
    pub d: f16,
    pub m: f16,
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}

/// Q8_0: 8-bit quants with one scale; `x = q * d`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; QK],
}

/// The value of largest magnitude, the first one found on ties (ggml's `amax`/`max` loop).
#[inline(always)]
fn signed_absmax(x: &[f32; QK]) -> f32 {
    let amax = abs_max(x);
    if amax == 0.0 {
        return 0.0;
    }
    *x.iter().find(|v| v.abs() == amax).expect("the maximum is an element")
}

/// The largest magnitude. For non-negative floats the bit patterns order as the values do, so an
/// integer maximum (which vectorizes) is exact.
#[inline(always)]
fn abs_max(x: &[f32; QK]) -> f32 {
    f32::from_bits(x.iter().fold(0u32, |m, v| m.max(v.to_bits() & 0x7fff_ffff)))
}

/// A float's bits as an integer that orders as the floats do (-0.0 just below +0.0).
#[inline(always)]
fn order_key(v: f32) -> i32 {
    let b = v.to_bits() as i32;
    b ^ (((b >> 31) as u32) >> 1) as i32
}

#[inline(always)]
fn from_order_key(k: i32) -> f32 {
    f32::from_bits((k ^ (((k >> 31) as u32) >> 1) as i32) as u32)
}

/// ggml's running minimum and maximum (from ±FLT_MAX, strict comparisons). Computed with
/// integer keys, which is exact but for the sign of a zero: there ggml keeps the block's first zero.
#[inline(always)]
fn min_max(x: &[f32; QK]) -> (f32, f32) {
    let first_of = |m: f32| if m == 0.0 { *x.iter().find(|&&v| v == 0.0).expect("an element") } else { m };
    let min = x.iter().fold(i32::MAX, |m, &v| m.min(order_key(v)));
    let max = x.iter().fold(i32::MIN, |m, &v| m.max(order_key(v)));
    (first_of(from_order_key(min)), first_of(from_order_key(max)))
}

/// `c_trunc(f(v))` for each element, four at a time where the CPU converts four at once with
/// the same semantics (`cvttps2dq`).
#[inline(always)]
fn trunc_each(x: &[f32; QK], f: impl Fn(f32) -> f32) -> [i32; QK] {
    let v = x.map(f);
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_cvttps_epi32, _mm_loadu_ps, _mm_storeu_si128};
        let mut out = [0i32; QK];
        for (o, c) in out.chunks_exact_mut(4).zip(v.chunks_exact(4)) {
            // SAFETY: SSE2 is part of the x86-64 baseline; both chunks hold exactly four lanes.
            unsafe { _mm_storeu_si128(o.as_mut_ptr().cast(), _mm_cvttps_epi32(_mm_loadu_ps(c.as_ptr()))) };
        }
        out
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        v.map(c_trunc)
    }
}

#[inline(always)]
fn inverse(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

/// Splits 5-bit quants into the low-nibble bytes and the 32 fifth bits, as Q5_0/Q5_1 store them.
#[inline(always)]
fn pack_q5(q: impl Fn(usize) -> u8) -> ([u8; 4], [u8; QK / 2]) {
    let mut qs = [0u8; QK / 2];
    let mut qh = 0u32;
    for j in 0..QK / 2 {
        let (a, b) = (q(j), q(j + QK / 2));
        qs[j] = (a & 0x0F) | ((b & 0x0F) << 4);
        qh |= (((a & 0x10) >> 4) as u32) << j;
        qh |= (((b & 0x10) >> 4) as u32) << (j + QK / 2);
    }
    (qh.to_le_bytes(), qs)
}

/// The 5-bit quant of element `j` in a Q5 block.
#[inline(always)]
fn unpack_q5(qh: [u8; 4], qs: &[u8; QK / 2], j: usize) -> i32 {
    let qh = u32::from_le_bytes(qh);
    let (nibble, high) = if j < QK / 2 {
        (qs[j] & 0x0F, ((qh >> j) << 4) & 0x10)
    } else {
        (qs[j - QK / 2] >> 4, (qh >> (j - QK / 2 + 12)) & 0x10)
    };
    (nibble as u32 | high) as i32
}

/// The grid a weighted search fits: symmetric on `-nmax..nmax-1` (stored `+ nmax`, no minimum)
/// or asymmetric on `0..=nmax` with a minimum.
#[derive(Clone, Copy)]
enum Grid {
    Symmetric(i32),
    Asymmetric(i32),
}

/// ggml's weighted search (`quantize_row_q4_0_impl` and its siblings: importance
/// `qw[j]·√(σ² + x[j]²)` with σ² the row's mean square) on a run of blocks, eight searched at
/// once ([`crate::lanes`]); `block` builds each block from its quants, scale and minimum.
fn weighted_run<B: BlockFormat>(
    x: &[f32],
    qw: &[f32],
    row_sigma2: f32,
    grid: Grid,
    out: &mut [u8],
    block: impl Fn(&[u8; QK], f16, f16) -> B,
) {
    const GROUP: usize = 8 * QK;
    let size = std::mem::size_of::<B>();
    for ((xg, qg), og) in x.chunks(GROUP).zip(qw.chunks(GROUP)).zip(out.chunks_mut(8 * size)) {
        let n = xg.len();
        let mut w = [0.0f32; GROUP];
        for ((w, &x), &q) in w.iter_mut().zip(xg).zip(qg) {
            *w = q * (row_sigma2 + x * x).sqrt();
        }
        let (mut d, mut neg_min) = ([0.0f32; 8], [0.0f32; 8]);
        let mut l = [0u8; GROUP];
        match grid {
            Grid::Symmetric(nmax) => {
                let mut signed = [0i8; GROUP];
                make_qx_quants_each::<QK>(nmax, xg, &mut signed[..n], &w[..n], &mut d);
                l = signed.map(|q| q as u8);
            }
            Grid::Asymmetric(nmax) => {
                make_qkx2_quants_each::<QK>(nmax, xg, &w[..n], &mut l[..n], &QKX3_SEARCH, &mut d, &mut neg_min)
            }
        }
        for (b, ob) in og.chunks_exact_mut(size).enumerate() {
            let lb = l[b * QK..(b + 1) * QK].try_into().expect("one block");
            ob.copy_from_slice(bytemuck::bytes_of(&block(lb, to_f16(d[b]), to_f16(-neg_min[b]))));
        }
    }
}

/// One block through its format's [`BlockFormat::quantize_run_weighted`].
fn one_block_via_run<B: BlockFormat>(x: &[f32], qw: &[f32], row_sigma2: f32) -> B {
    let mut b = B::zeroed();
    B::quantize_run_weighted(x, qw, row_sigma2, bytemuck::bytes_of_mut(&mut b));
    b
}

/// Two 4-bit quants per byte: element `j` low, element `j + 16` high.
#[inline(always)]
fn pack_q4(l: &[u8; QK]) -> [u8; QK / 2] {
    std::array::from_fn(|j| l[j] | (l[j + QK / 2] << 4))
}

impl BlockFormat for BlockQ4_0 {
    const TYPE: GgmlType = GgmlType::Q4_0;

    fn quantize(x: &[f32]) -> Self {
        let x: &[f32; QK] = x.try_into().expect("one block");
        let d = signed_absmax(x) / -8.0;
        let id = inverse(d);
        let t = trunc_each(x, |v| v * id + 8.5);
        let qs = pack_q4(&t.map(|t| (t as i8).min(15) as u8));
        BlockQ4_0 { d: to_f16(d), qs }
    }

    fn quantize_weighted(x: &[f32], qw: &[f32], row_sigma2: f32) -> Self {
        one_block_via_run(x, qw, row_sigma2)
    }

    fn quantize_run_weighted(x: &[f32], qw: &[f32], row_sigma2: f32, out: &mut [u8]) {
        weighted_run(x, qw, row_sigma2, Grid::Symmetric(8), out, |l, d, _| BlockQ4_0 { d, qs: pack_q4(l) });
    }

    fn dequantize(&self, y: &mut [f32]) {
        let d = from_f16(self.d);
        for j in 0..QK / 2 {
            y[j] = ((self.qs[j] & 0x0F) as i32 - 8) as f32 * d;
            y[j + QK / 2] = ((self.qs[j] >> 4) as i32 - 8) as f32 * d;
        }
    }
}

impl BlockFormat for BlockQ4_1 {
    const TYPE: GgmlType = GgmlType::Q4_1;

    fn quantize(x: &[f32]) -> Self {
        let x: &[f32; QK] = x.try_into().expect("one block");
        let (min, max) = min_max(x);
        let d = (max - min) / 15.0;
        let id = inverse(d);
        let t = trunc_each(x, |v| (v - min) * id + 0.5);
        let qs = pack_q4(&t.map(|t| (t as i8).min(15) as u8));
        BlockQ4_1 { d: to_f16(d), m: to_f16(min), qs }
    }

    fn quantize_weighted(x: &[f32], qw: &[f32], row_sigma2: f32) -> Self {
        one_block_via_run(x, qw, row_sigma2)
    }

    fn quantize_run_weighted(x: &[f32], qw: &[f32], row_sigma2: f32, out: &mut [u8]) {
        weighted_run(x, qw, row_sigma2, Grid::Asymmetric(15), out, |l, d, m| BlockQ4_1 { d, m, qs: pack_q4(l) });
    }

    fn dequantize(&self, y: &mut [f32]) {
        let (d, m) = (from_f16(self.d), from_f16(self.m));
        for j in 0..QK / 2 {
            y[j] = (self.qs[j] & 0x0F) as f32 * d + m;
            y[j + QK / 2] = (self.qs[j] >> 4) as f32 * d + m;
        }
    }
}

impl BlockFormat for BlockQ5_0 {
    const TYPE: GgmlType = GgmlType::Q5_0;

    fn quantize(x: &[f32]) -> Self {
        let x: &[f32; QK] = x.try_into().expect("one block");
        let d = signed_absmax(x) / -16.0;
        let id = inverse(d);
        let t = trunc_each(x, |v| v * id + 16.5);
        let (qh, qs) = pack_q5(|j| (t[j] as i8).min(31) as u8);
        BlockQ5_0 { d: to_f16(d), qh, qs }
    }

    fn quantize_weighted(x: &[f32], qw: &[f32], row_sigma2: f32) -> Self {
        one_block_via_run(x, qw, row_sigma2)
    }

    fn quantize_run_weighted(x: &[f32], qw: &[f32], row_sigma2: f32, out: &mut [u8]) {
        weighted_run(x, qw, row_sigma2, Grid::Symmetric(16), out, |l, d, _| {
            let (qh, qs) = pack_q5(|j| l[j]);
            BlockQ5_0 { d, qh, qs }
        });
    }

    fn dequantize(&self, y: &mut [f32]) {
        let d = from_f16(self.d);
        for (j, out) in y.iter_mut().enumerate().take(QK) {
            *out = (unpack_q5(self.qh, &self.qs, j) - 16) as f32 * d;
        }
    }
}

impl BlockFormat for BlockQ5_1 {
    const TYPE: GgmlType = GgmlType::Q5_1;

    fn quantize(x: &[f32]) -> Self {
        let x: &[f32; QK] = x.try_into().expect("one block");
        let (min, max) = min_max(x);
        let d = (max - min) / 31.0;
        let id = inverse(d);
        let t = trunc_each(x, |v| (v - min) * id + 0.5);
        let (qh, qs) = pack_q5(|j| t[j] as u8);
        BlockQ5_1 { d: to_f16(d), m: to_f16(min), qh, qs }
    }

    fn quantize_weighted(x: &[f32], qw: &[f32], row_sigma2: f32) -> Self {
        one_block_via_run(x, qw, row_sigma2)
    }

    fn quantize_run_weighted(x: &[f32], qw: &[f32], row_sigma2: f32, out: &mut [u8]) {
        weighted_run(x, qw, row_sigma2, Grid::Asymmetric(31), out, |l, d, m| {
            let (qh, qs) = pack_q5(|j| l[j]);
            BlockQ5_1 { d, m, qh, qs }
        });
    }

    fn dequantize(&self, y: &mut [f32]) {
        let (d, m) = (from_f16(self.d), from_f16(self.m));
        for (j, out) in y.iter_mut().enumerate().take(QK) {
            *out = unpack_q5(self.qh, &self.qs, j) as f32 * d + m;
        }
    }
}

impl BlockFormat for BlockQ8_0 {
    const TYPE: GgmlType = GgmlType::Q8_0;

    fn quantize(x: &[f32]) -> Self {
        let x: &[f32; QK] = x.try_into().expect("one block");
        let d = abs_max(x) / 127.0;
        let id = inverse(d);
        let t = trunc_each(x, |v| (v * id).round());
        let qs = t.map(|q| q as i8);
        BlockQ8_0 { d: to_f16(d), qs }
    }

    fn dequantize(&self, y: &mut [f32]) {
        let d = from_f16(self.d);
        for (out, &q) in y.iter_mut().zip(&self.qs) {
            *out = q as f32 * d;
        }
    }
}
