//! The 4-bit non-linear formats IQ4_NL (blocks of 32) and IQ4_XS (super-blocks of 256 with 6-bit
//! scales per 32): each quant indexes ggml's table of 16 levels (ggml's `quantize_row_iq4_nl_impl`,
//! as `quantize_iq4_nl` / `quantize_iq4_xs` call it: a search over 15 scales, weighted by `x²`
//! or by the importance matrix).

use bytemuck::{Pod, Zeroable};
use half::f16;

use crate::block::BlockFormat;
use crate::lanes::iq4_block_scale_each;
use crate::rounding::{from_f16, nearest_int, signed_max, to_f16, GROUP_MAX_EPS};
use crate::GgmlType;

const QK_K: usize = 256;
pub(crate) const BLOCK: usize = 32;
/// The scales tried on either side of the first guess (ggml's `ntry`).
pub(crate) const NTRY: i32 = 7;

/// ggml's `kvalues_iq4nl`: the 16 levels a quant indexes.
pub(crate) const LEVELS: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/// IQ4_NL: 32 4-bit indices into [`LEVELS`] with one scale; `x = d * LEVELS[q]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockIq4Nl {
    pub d: f16,
    /// Element `j` in the low nibble of byte `j`, element `j + 16` in the high nibble.
    pub qs: [u8; BLOCK / 2],
}

/// IQ4_XS: 8 blocks of 32 indices, each with a 6-bit scale (low 4 bits in `scales_l`, high 2 in
/// `scales_h`); `x = d * (scale - 32) * LEVELS[q]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockIq4Xs {
    pub d: f16,
    pub scales_h: u16,
    pub scales_l: [u8; QK_K / 64],
    pub qs: [u8; QK_K / 2],
}

/// The index of the level nearest `x` (ggml's `best_index_int8`: ties go up).
fn best_index(x: f32) -> u8 {
    let level = |i: usize| LEVELS[i] as f32;
    if x <= level(0) {
        return 0;
    }
    if x >= level(15) {
        return 15;
    }
    let (mut lo, mut hi) = (0, 15);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if x < level(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    if x - level(hi - 1) < level(hi) - x {
        hi as u8 - 1
    } else {
        hi as u8
    }
}

/// The search weights of a block: the importance `qw[j] * sqrt(sigma2 + x²)`, or `x²` without.
fn block_weights(x: &[f32], qw: Option<&[f32]>, sigma2: f32) -> [f32; BLOCK] {
    std::array::from_fn(|j| match qw {
        Some(qw) => qw[j] * (sigma2 + x[j] * x[j]).sqrt(),
        None => x[j] * x[j],
    })
}

/// ggml's `sigma2`: twice the mean square of the (super-)block.
fn sigma2(x: &[f32]) -> f32 {
    let mut sum = 0.0f32;
    for &v in x {
        sum += v * v;
    }
    sum * (2.0 / x.len() as f32)
}

/// The weighted sums of `q·x` and `q²` over a block quantized at inverse scale `id`.
fn sums(x: &[f32], w: &[f32; BLOCK], id: f32) -> (f32, f32) {
    let (mut sumqx, mut sumq2) = (0.0f32, 0.0f32);
    for j in 0..BLOCK {
        let q = LEVELS[best_index(id * x[j]) as usize] as f32;
        sumqx += w[j] * q * x[j];
        sumq2 += w[j] * q * q;
    }
    (sumqx, sumq2)
}

/// The best scale for one block of 32 (0 for an all-but-zero block): the least-squares scale at
/// ggml's first guess, then at each of `2·NTRY + 1` inverse scales, kept where it fits better.
pub(crate) fn block_scale(x: &[f32], w: &[f32; BLOCK]) -> f32 {
    let (max, amax) = signed_max(x);
    if amax < GROUP_MAX_EPS {
        return 0.0;
    }
    let (sumqx, sumq2) = sums(x, w, 1.0 / (-max / LEVELS[0] as f32));
    let mut d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
    let mut best = d * sumqx;
    for itry in -NTRY..=NTRY {
        let (sumqx, sumq2) = sums(x, w, (itry + LEVELS[0] as i32) as f32 / max);
        if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    d
}

/// Packs 32 indices per block: element `j` low nibble, `j + 16` high nibble.
fn pack<const N: usize, const H: usize>(l: &[u8; N]) -> [u8; H] {
    std::array::from_fn(|i| {
        let (b, j) = (i / 16, i % 16);
        l[32 * b + j] | (l[32 * b + 16 + j] << 4)
    })
}

/// Decodes one block of 32 with scale `d`.
fn decode(d: f32, qs: &[u8], y: &mut [f32]) {
    for j in 0..BLOCK / 2 {
        y[j] = d * LEVELS[(qs[j] & 0xf) as usize] as f32;
        y[j + BLOCK / 2] = d * LEVELS[(qs[j] >> 4) as usize] as f32;
    }
}

impl BlockIq4Nl {
    fn quantize_with(x: &[f32], qw: Option<&[f32]>) -> Self {
        Self::from_scale(x, block_scale(x, &block_weights(x, qw, sigma2(x))))
    }

    /// The block with its scale found: each element's nearest level.
    fn from_scale(x: &[f32], d: f32) -> Self {
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let l: [u8; BLOCK] = std::array::from_fn(|j| best_index(id * x[j]));
        BlockIq4Nl { d: to_f16(d), qs: pack(&l) }
    }

    /// Whole blocks, eight searched at once ([`iq4_block_scale_each`]): `x` (weights `qw`, as
    /// many) into `out`.
    fn run_with(x: &[f32], qw: Option<&[f32]>, out: &mut [u8]) {
        const GROUP: usize = 8 * BLOCK;
        let size = std::mem::size_of::<Self>();
        for (g, (xg, og)) in x.chunks(GROUP).zip(out.chunks_mut(8 * size)).enumerate() {
            let mut w = [0.0f32; GROUP];
            for (b, (ws, xb)) in w.chunks_exact_mut(BLOCK).zip(xg.chunks_exact(BLOCK)).enumerate() {
                let qb = qw.map(|qw| &qw[g * GROUP + b * BLOCK..g * GROUP + (b + 1) * BLOCK]);
                ws.copy_from_slice(&block_weights(xb, qb, sigma2(xb)));
            }
            let mut d = [0.0f32; 8];
            iq4_block_scale_each(xg, &w[..xg.len()], &mut d);
            for ((xb, ob), &d) in xg.chunks_exact(BLOCK).zip(og.chunks_exact_mut(size)).zip(&d) {
                ob.copy_from_slice(bytemuck::bytes_of(&Self::from_scale(xb, d)));
            }
        }
    }
}

impl BlockFormat for BlockIq4Nl {
    const TYPE: GgmlType = GgmlType::IQ4_NL;

    /// As `ggml_quantize_chunk` without an imatrix (`quantize_iq4_nl`, which searches; ggml's
    /// `_ref` row function skips the search, but nothing writes files with it).
    fn quantize(x: &[f32]) -> Self {
        Self::quantize_with(x, None)
    }

    fn quantize_weighted(x: &[f32], qw: &[f32], _row_sigma2: f32) -> Self {
        Self::quantize_with(x, Some(qw))
    }

    fn quantize_run(x: &[f32], out: &mut [u8]) {
        Self::run_with(x, None, out);
    }

    fn quantize_run_weighted(x: &[f32], qw: &[f32], _row_sigma2: f32, out: &mut [u8]) {
        Self::run_with(x, Some(qw), out);
    }

    fn dequantize(&self, y: &mut [f32]) {
        decode(from_f16(self.d), &self.qs, y);
    }
}

impl BlockIq4Xs {
    fn quantize_with(x: &[f32], qw: Option<&[f32]>) -> Self {
        let sigma2 = sigma2(x);
        let mut w = [0.0f32; QK_K];
        for (ib, (ws, xb)) in w.chunks_exact_mut(BLOCK).zip(x.chunks_exact(BLOCK)).enumerate() {
            ws.copy_from_slice(&block_weights(xb, qw.map(|qw| &qw[ib * BLOCK..(ib + 1) * BLOCK]), sigma2));
        }
        let mut scales = [0.0f32; QK_K / BLOCK];
        iq4_block_scale_each(x, &w, &mut scales);
        let (max_scale, _) = signed_max(&scales);
        let d = -max_scale / 32.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut b = BlockIq4Xs { d: to_f16(d), scales_h: 0, scales_l: [0; QK_K / 64], qs: [0; QK_K / 2] };
        let mut l = [0u8; QK_K];
        for (ib, xb) in x.chunks_exact(BLOCK).enumerate() {
            let ls = nearest_int(id * scales[ib]).clamp(-32, 31);
            let dl = d * ls as f32;
            let idl = if dl != 0.0 { 1.0 / dl } else { 0.0 };
            for (lj, &v) in l[ib * BLOCK..(ib + 1) * BLOCK].iter_mut().zip(xb) {
                *lj = best_index(idl * v);
            }
            let ls = (ls + 32) as u8;
            b.scales_l[ib / 2] |= (ls & 0xf) << (4 * (ib % 2));
            b.scales_h |= ((ls >> 4) as u16) << (2 * ib);
        }
        b.qs = pack(&l);
        b
    }
}

impl BlockFormat for BlockIq4Xs {
    const TYPE: GgmlType = GgmlType::IQ4_XS;

    /// As `ggml_quantize_chunk` without an imatrix (`quantize_iq4_xs`).
    fn quantize(x: &[f32]) -> Self {
        Self::quantize_with(x, None)
    }

    fn quantize_weighted(x: &[f32], qw: &[f32], _row_sigma2: f32) -> Self {
        Self::quantize_with(x, Some(qw))
    }

    fn dequantize(&self, y: &mut [f32]) {
        let d = from_f16(self.d);
        for ib in 0..QK_K / BLOCK {
            let ls = ((self.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xf) as i32
                | ((((self.scales_h >> (2 * ib)) & 3) as i32) << 4);
            decode(d * (ls - 32) as f32, &self.qs[ib * 16..(ib + 1) * 16], &mut y[ib * BLOCK..(ib + 1) * BLOCK]);
        }
    }
}
