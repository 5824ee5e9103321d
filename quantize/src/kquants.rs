//! The K-quant 256-element super-block formats: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K
//! (ggml's `quantize_row_q*_K_ref`).

use bytemuck::{Pod, Zeroable};
use half::f16;

use crate::block::BlockFormat;
use crate::lanes::{make_q3_quants_rmse_each, make_qkx2_quants_each, make_qx_quants_each};
use crate::rounding::{
    from_f16, get_scale_min_k4, make_qp_quants, make_qx_quants, nearest_int, pack_k4_scales, pack_scale_min_k4,
    signed_max, to_f16, Qkx2Search, GROUP_MAX_EPS, QKX3_SEARCH,
};
use crate::GgmlType;

const QK_K: usize = 256;

/// How `quantize_row_q2_K_ref` searches each sub-block's scale and min.
pub(crate) const Q2_K_SEARCH: Qkx2Search =
    Qkx2Search { rmin: -0.5, rdelta: 0.1, nstep: 15, use_mad: true, clamp_before_rounding: false };
/// How `quantize_row_q4_K_ref` searches.
pub(crate) const Q4_K_SEARCH: Qkx2Search =
    Qkx2Search { rmin: -1.0, rdelta: 0.1, nstep: 20, use_mad: false, clamp_before_rounding: false };
/// How `quantize_row_q5_K_ref` searches.
pub(crate) const Q5_K_SEARCH: Qkx2Search =
    Qkx2Search { rmin: -0.5, rdelta: 0.1, nstep: 15, use_mad: false, clamp_before_rounding: false };

/// Q2_K: 16 sub-blocks of 16, 2-bit quants, 4-bit scales and mins; `x = d*sc*q - dmin*m`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ2K {
    /// Low nibble: scale of sub-block `j`; high nibble: its min.
    pub scales: [u8; QK_K / 16],
    /// Four 2-bit quants per byte: elements `l`, `l+32`, `l+64`, `l+96` of each 128-half.
    pub qs: [u8; QK_K / 4],
    pub d: f16,
    pub dmin: f16,
}

/// Q3_K: 16 sub-blocks of 16, 3-bit quants (2 low bits in `qs`, high bit in `hmask`),
/// 6-bit signed scales; `x = d*(sc-32)*(q-4)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ3K {
    pub hmask: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 4],
    /// Sixteen 6-bit scales: low nibbles in bytes 0..8, high 2 bits in bytes 8..12.
    pub scales: [u8; 12],
    pub d: f16,
}

/// Q4_K: 8 sub-blocks of 32, 4-bit quants, 6-bit scales and mins; `x = d*sc*q - dmin*m`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qs: [u8; QK_K / 2],
}

/// Q5_K: as Q4_K with a fifth bit per quant in `qh`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; 12],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}

/// Q6_K: 16 sub-blocks of 16, 6-bit quants (4 low bits in `ql`, 2 high in `qh`), 8-bit scales;
/// `x = d*sc*(q-32)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: f16,
}

/// Packs 2-bit values the way Q2_K and Q3_K store `qs`.
fn pack_2bit(l: &[u8; QK_K]) -> [u8; QK_K / 4] {
    let mut qs = [0u8; QK_K / 4];
    for j in (0..QK_K).step_by(128) {
        for k in 0..32 {
            qs[j / 4 + k] = l[j + k] | (l[j + k + 32] << 2) | (l[j + k + 64] << 4) | (l[j + k + 96] << 6);
        }
    }
    qs
}

/// The 2-bit value of element `i` in a Q2_K/Q3_K `qs`.
#[inline(always)]
fn unpack_2bit(qs: &[u8; QK_K / 4], i: usize) -> u8 {
    let (half, r) = (i / 128, i % 128);
    (qs[half * 32 + r % 32] >> (2 * (r / 32))) & 3
}

/// The block and its importance weights as arrays, and the block's mean square times `factor`
/// (ggml's `sigma2` in the weighted K-quants: the weights are `qw[i]·√(σ² + x[i]²)`).
#[inline(always)]
fn weighted_block<'a>(x: &'a [f32], qw: &'a [f32], factor: f32) -> (&'a [f32; QK_K], &'a [f32; QK_K], f32) {
    let x: &[f32; QK_K] = x.try_into().expect("one block");
    let qw: &[f32; QK_K] = qw.try_into().expect("one block of weights");
    let mut sum_x2 = 0.0f32;
    for &v in x {
        sum_x2 += v * v;
    }
    (x, qw, factor * sum_x2 / QK_K as f32)
}

/// The weights `qw[i]·√(σ² + x[i]²)`, and the sum of each sub-block of `N`'s into `sums`.
#[inline(always)]
fn search_weights<const N: usize>(x: &[f32; QK_K], qw: &[f32; QK_K], sigma2: f32, sums: &mut [f32]) -> [f32; QK_K] {
    let weights: [f32; QK_K] = std::array::from_fn(|i| qw[i] * (sigma2 + x[i] * x[i]).sqrt());
    for (sum, ws) in sums.iter_mut().zip(weights.chunks_exact(N)) {
        *sum = 0.0;
        for &w in ws {
            *sum += w;
        }
    }
    weights
}

/// The largest of `v`, or 0 (ggml's running `max_scale` / `max_min`).
fn positive_max(v: &[f32]) -> f32 {
    v.iter().fold(0.0f32, |m, &s| if s > m { s } else { m })
}

impl BlockFormat for BlockQ2K {
    const TYPE: GgmlType = GgmlType::Q2_K;

    fn quantize(x: &[f32]) -> Self {
        const Q4SCALE: f32 = 15.0;
        let x: &[f32; QK_K] = x.try_into().expect("one block");
        let mut l = [0u8; QK_K];
        let mut scales = [0f32; QK_K / 16];
        let mut mins = [0f32; QK_K / 16];
        make_qkx2_quants_each::<16>(3, x, &x.map(f32::abs), &mut l, &Q2_K_SEARCH, &mut scales, &mut mins);
        let max_scale = positive_max(&scales);
        let max_min = positive_max(&mins);

        let mut b = BlockQ2K::zeroed();
        if max_scale > 0.0 {
            let iscale = Q4SCALE / max_scale;
            for j in 0..QK_K / 16 {
                b.scales[j] = nearest_int(iscale * scales[j]) as u8;
            }
            b.d = to_f16(max_scale / Q4SCALE);
        }
        if max_min > 0.0 {
            let iscale = Q4SCALE / max_min;
            for j in 0..QK_K / 16 {
                b.scales[j] |= (nearest_int(iscale * mins[j]) << 4) as u8;
            }
            b.dmin = to_f16(max_min / Q4SCALE);
        }
        for j in 0..QK_K / 16 {
            let d = from_f16(b.d) * (b.scales[j] & 0xF) as f32;
            if d == 0.0 {
                continue;
            }
            let dm = from_f16(b.dmin) * (b.scales[j] >> 4) as f32;
            for ii in 0..16 {
                l[16 * j + ii] = nearest_int((x[16 * j + ii] + dm) / d).clamp(0, 3) as u8;
            }
        }
        b.qs = pack_2bit(&l);
        b
    }

    fn quantize_weighted(x: &[f32], qw: &[f32], _row_sigma2: f32) -> Self {
        let (x, qw, sigma2) = weighted_block(x, qw, 1.0);
        let mut l = [0u8; QK_K];
        let (mut scales, mut mins, mut sw) = ([0f32; QK_K / 16], [0f32; QK_K / 16], [0f32; QK_K / 16]);
        let weights = search_weights::<16>(x, qw, sigma2, &mut sw);
        make_qkx2_quants_each::<16>(3, x, &weights, &mut l, &QKX3_SEARCH, &mut scales, &mut mins);
        let (mut ls, mut lm) = ([0u8; QK_K / 16], [0u8; QK_K / 16]);
        let dm = make_qp_quants(15, &scales, &mut ls, &sw);
        let mm = make_qp_quants(15, &mins, &mut lm, &sw);
        let mut b = BlockQ2K::zeroed();
        b.d = to_f16(dm);
        b.dmin = to_f16(mm);
        let (dm, mm) = (from_f16(b.d), from_f16(b.dmin));
        for j in 0..QK_K / 16 {
            b.scales[j] = ls[j] | (lm[j] << 4);
        }
        for j in 0..QK_K / 16 {
            let d = dm * (b.scales[j] & 0xF) as f32;
            if d == 0.0 {
                continue;
            }
            let m = mm * (b.scales[j] >> 4) as f32;
            for ii in 0..16 {
                l[16 * j + ii] = nearest_int((x[16 * j + ii] + m) / d).clamp(0, 3) as u8;
            }
        }
        b.qs = pack_2bit(&l);
        b
    }

    fn dequantize(&self, y: &mut [f32]) {
        let (d, min) = (from_f16(self.d), from_f16(self.dmin));
        for (i, out) in y.iter_mut().enumerate().take(QK_K) {
            let sc = self.scales[i / 16];
            let dl = d * (sc & 0xF) as f32;
            let ml = min * (sc >> 4) as f32;
            *out = dl * unpack_2bit(&self.qs, i) as f32 - ml;
        }
    }
}

impl BlockQ3K {
    /// The signed 6-bit scale of sub-block `j`.
    #[inline(always)]
    fn scale(&self, j: usize) -> i8 {
        let low = if j < 8 { self.scales[j] & 0xF } else { self.scales[j - 8] >> 4 };
        let high = (self.scales[8 + j % 4] >> (2 * (j / 4))) & 3;
        (low | (high << 4)) as i8 - 32
    }
}

impl BlockFormat for BlockQ3K {
    const TYPE: GgmlType = GgmlType::Q3_K;

    fn quantize(x: &[f32]) -> Self {
        let x: &[f32; QK_K] = x.try_into().expect("one block");
        let mut l = [0i8; QK_K];
        let mut scales = [0f32; QK_K / 16];
        make_q3_quants_rmse_each::<16>(4, x, &mut l, &mut scales);
        let (max_scale, _) = signed_max(&scales);

        let mut b = BlockQ3K::zeroed();
        if max_scale != 0.0 {
            let iscale = -32.0 / max_scale;
            b.set_scales(&scales.map(|s| ((nearest_int(iscale * s) as i8).clamp(-32, 31) + 32) as u8));
            b.d = to_f16(1.0 / iscale);
        }
        b.finish(x, l)
    }

    fn quantize_weighted(x: &[f32], qw: &[f32], _row_sigma2: f32) -> Self {
        let (x, qw, sigma2) = weighted_block(x, qw, 2.0);
        let mut l = [0i8; QK_K];
        let (mut scales, mut sw) = ([0f32; QK_K / 16], [0f32; QK_K / 16]);
        let weights = search_weights::<16>(x, qw, sigma2, &mut sw);
        make_qx_quants_each::<16>(4, x, &mut l, &weights, &mut scales);
        let mut ls = [0i8; QK_K / 16];
        let d_block = make_qx_quants(32, &scales, &mut ls, &sw);
        let mut b = BlockQ3K::zeroed();
        b.set_scales(&ls.map(|q| q as u8));
        b.d = to_f16(d_block);
        b.finish(x, l)
    }

    fn dequantize(&self, y: &mut [f32]) {
        let d_all = from_f16(self.d);
        for (i, out) in y.iter_mut().enumerate().take(QK_K) {
            let dl = d_all * self.scale(i / 16) as f32;
            let high = self.hmask[i % 32] & (1 << (i / 32)) != 0;
            let q = unpack_2bit(&self.qs, i) as i8 - if high { 0 } else { 4 };
            *out = dl * q as f32;
        }
    }
}

impl BlockQ3K {
    /// Stores sixteen 6-bit scales (each `+ 32`) in ggml's packing.
    fn set_scales(&mut self, q: &[u8; QK_K / 16]) {
        for (j, &q) in q.iter().enumerate() {
            if j < 8 {
                self.scales[j] = q & 0xF;
            } else {
                self.scales[j - 8] |= (q & 0xF) << 4;
            }
            self.scales[j % 4 + 8] |= (q >> 4) << (2 * (j / 4));
        }
    }

    /// With the scales set: requantizes `x` against them (keeping `l` where a scale is zero)
    /// and stores the quants.
    fn finish(mut self, x: &[f32; QK_K], mut l: [i8; QK_K]) -> Self {
        for j in 0..QK_K / 16 {
            let d = from_f16(self.d) * self.scale(j) as f32;
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                l[16 * j + ii] = (nearest_int(x[16 * j + ii] / d).clamp(-4, 3) + 4) as i8;
            }
        }
        // The high bit of element `32·g + m` is bit `g` of `hmask[m]` (branch-free, so it vectorizes).
        let mut low = [0u8; QK_K];
        for (g, (ls, lows)) in l.chunks_exact(QK_K / 8).zip(low.chunks_exact_mut(QK_K / 8)).enumerate() {
            for ((&q, lo), hm) in ls.iter().zip(lows).zip(self.hmask.iter_mut()) {
                let high = (q > 3) as u8;
                *hm |= high << g;
                *lo = q as u8 - (high << 2);
            }
        }
        self.qs = pack_2bit(&low);
        self
    }
}

/// The per-sub-block scales and mins of Q4_K and Q5_K (`nmax` 15 or 31), packed, and the quants.
fn quantize_k4_family(x: &[f32], nmax: i32, search: &Qkx2Search) -> (f16, f16, [u8; 12], [u8; QK_K]) {
    let x: &[f32; QK_K] = x.try_into().expect("one block");
    let mut l = [0u8; QK_K];
    let mut weights = [0f32; QK_K];
    for (ws, xs) in weights.chunks_exact_mut(32).zip(x.chunks_exact(32)) {
        let mut sum_x2 = 0.0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        for (w, &v) in ws.iter_mut().zip(xs) {
            *w = av_x + v.abs();
        }
    }
    let mut scales = [0f32; 8];
    let mut mins = [0f32; 8];
    make_qkx2_quants_each::<32>(nmax, x, &weights, &mut l, search, &mut scales, &mut mins);
    let max_scale = positive_max(&scales);
    let max_min = positive_max(&mins);
    let packed = pack_scale_min_k4(&scales, &mins, max_scale, max_min);
    k4_requantize(x, to_f16(max_scale / 63.0), to_f16(max_min / 63.0), packed, nmax, l)
}

/// Q4_K's and Q5_K's search with importance weights (`quantize_row_q4_K_impl`): each
/// sub-block's scale and min weighted, then the scales and mins themselves quantized by
/// [`make_qp_quants`] weighted with the sub-blocks' total weights. Q5_K clamps the 6-bit
/// values (`clamp_63`); Q4_K stores them as they come.
fn quantize_k4_family_weighted(x: &[f32], qw: &[f32], nmax: i32, clamp_63: bool) -> (f16, f16, [u8; 12], [u8; QK_K]) {
    let (x, qw, sigma2) = weighted_block(x, qw, 2.0);
    let mut l = [0u8; QK_K];
    let (mut scales, mut mins, mut sw) = ([0f32; 8], [0f32; 8], [0f32; 8]);
    let weights = search_weights::<32>(x, qw, sigma2, &mut sw);
    make_qkx2_quants_each::<32>(nmax, x, &weights, &mut l, &QKX3_SEARCH, &mut scales, &mut mins);
    let (mut ls, mut lm) = ([0u8; 8], [0u8; 8]);
    let d_block = make_qp_quants(63, &scales, &mut ls, &sw);
    let m_block = make_qp_quants(63, &mins, &mut lm, &sw);
    if clamp_63 {
        ls = ls.map(|v| v.min(63));
        lm = lm.map(|v| v.min(63));
    }
    k4_requantize(x, to_f16(d_block), to_f16(m_block), pack_k4_scales(&ls, &lm), nmax, l)
}

/// With the scales and mins set: requantizes `x` against them (keeping `l` where a scale is
/// zero); returns the block's fields.
fn k4_requantize(
    x: &[f32; QK_K],
    d: f16,
    dmin: f16,
    packed: [u8; 12],
    nmax: i32,
    mut l: [u8; QK_K],
) -> (f16, f16, [u8; 12], [u8; QK_K]) {
    for j in 0..QK_K / 32 {
        let (sc, m) = get_scale_min_k4(j, &packed);
        let dj = from_f16(d) * sc as f32;
        if dj == 0.0 {
            continue;
        }
        let dm = from_f16(dmin) * m as f32;
        for ii in 0..32 {
            l[32 * j + ii] = nearest_int((x[32 * j + ii] + dm) / dj).clamp(0, nmax) as u8;
        }
    }
    (d, dmin, packed, l)
}

impl BlockQ4K {
    fn from_parts((d, dmin, scales, l): (f16, f16, [u8; 12], [u8; QK_K])) -> Self {
        let mut qs = [0u8; QK_K / 2];
        for j in (0..QK_K).step_by(64) {
            for k in 0..32 {
                qs[j / 2 + k] = l[j + k] | (l[j + k + 32] << 4);
            }
        }
        BlockQ4K { d, dmin, scales, qs }
    }
}

impl BlockFormat for BlockQ4K {
    const TYPE: GgmlType = GgmlType::Q4_K;

    fn quantize(x: &[f32]) -> Self {
        BlockQ4K::from_parts(quantize_k4_family(x, 15, &Q4_K_SEARCH))
    }

    fn quantize_weighted(x: &[f32], qw: &[f32], _row_sigma2: f32) -> Self {
        BlockQ4K::from_parts(quantize_k4_family_weighted(x, qw, 15, false))
    }

    fn dequantize(&self, y: &mut [f32]) {
        let (d, min) = (from_f16(self.d), from_f16(self.dmin));
        for (i, out) in y.iter_mut().enumerate().take(QK_K) {
            let (sc, m) = get_scale_min_k4(i / 32, &self.scales);
            let byte = self.qs[(i / 64) * 32 + i % 32];
            let q = if (i / 32) % 2 == 0 { byte & 0xF } else { byte >> 4 };
            *out = d * sc as f32 * q as f32 - min * m as f32;
        }
    }
}

impl BlockFormat for BlockQ5K {
    const TYPE: GgmlType = GgmlType::Q5_K;

    fn quantize(x: &[f32]) -> Self {
        BlockQ5K::from_parts(quantize_k4_family(x, 31, &Q5_K_SEARCH))
    }

    fn quantize_weighted(x: &[f32], qw: &[f32], _row_sigma2: f32) -> Self {
        BlockQ5K::from_parts(quantize_k4_family_weighted(x, qw, 31, true))
    }

    fn dequantize(&self, y: &mut [f32]) {
        let (d, min) = (from_f16(self.d), from_f16(self.dmin));
        for (i, out) in y.iter_mut().enumerate().take(QK_K) {
            let sub = i / 32;
            let (sc, m) = get_scale_min_k4(sub, &self.scales);
            let byte = self.qs[(i / 64) * 32 + i % 32];
            let low = if sub % 2 == 0 { byte & 0xF } else { byte >> 4 };
            let high = if self.qh[i % 32] & (1 << sub) != 0 { 16 } else { 0 };
            *out = d * sc as f32 * (low + high) as f32 - min * m as f32;
        }
    }
}

impl BlockQ5K {
    fn from_parts((d, dmin, scales, l): (f16, f16, [u8; 12], [u8; QK_K])) -> Self {
        let mut qs = [0u8; QK_K / 2];
        let mut qh = [0u8; QK_K / 8];
        let (mut m1, mut m2) = (1u8, 2u8);
        for n in (0..QK_K).step_by(64) {
            for j in 0..32 {
                let mut l1 = l[n + j];
                if l1 > 15 {
                    l1 -= 16;
                    qh[j] |= m1;
                }
                let mut l2 = l[n + j + 32];
                if l2 > 15 {
                    l2 -= 16;
                    qh[j] |= m2;
                }
                qs[n / 2 + j] = l1 | (l2 << 4);
            }
            m1 <<= 2;
            m2 <<= 2;
        }
        BlockQ5K { d, dmin, scales, qh, qs }
    }
}

impl BlockFormat for BlockQ6K {
    const TYPE: GgmlType = GgmlType::Q6_K;

    fn quantize(x: &[f32]) -> Self {
        let x: &[f32; QK_K] = x.try_into().expect("one block");
        BlockQ6K::quantize_with(x, &x.map(|v| v * v))
    }

    fn quantize_weighted(x: &[f32], qw: &[f32], _row_sigma2: f32) -> Self {
        let x: &[f32; QK_K] = x.try_into().expect("one block");
        BlockQ6K::quantize_with(x, qw.try_into().expect("one block of weights"))
    }

    fn dequantize(&self, y: &mut [f32]) {
        let d = from_f16(self.d);
        for (i, out) in y.iter_mut().enumerate().take(QK_K) {
            let (half, r) = (i / 128, i % 128);
            let (quarter, k) = (r / 32, r % 32);
            let byte = self.ql[half * 64 + (quarter % 2) * 32 + k];
            let low = if quarter < 2 { byte & 0xF } else { byte >> 4 };
            let high = (self.qh[half * 32 + k] >> (2 * quarter)) & 3;
            let q = (low | (high << 4)) as i8 - 32;
            let sc = self.scales[half * 8 + quarter * 2 + k / 16];
            *out = d * sc as f32 * q as f32;
        }
    }
}

impl BlockQ6K {
    /// ggml's Q6_K search with the error weighted by `weights` (`x²`, or the importance
    /// matrix's values as they come: ggml's `quantize_row_q6_K_impl` does not scale them).
    fn quantize_with(x: &[f32; QK_K], weights: &[f32; QK_K]) -> Self {
        let mut l = [0i8; QK_K];
        let mut scales = [0f32; QK_K / 16];
        make_qx_quants_each::<16>(32, x, &mut l, weights, &mut scales);
        let (max_scale, max_abs_scale) = signed_max(&scales);
        let mut b = BlockQ6K::zeroed();
        if max_abs_scale < GROUP_MAX_EPS {
            return b;
        }
        let iscale = -128.0 / max_scale;
        b.d = to_f16(1.0 / iscale);
        for ib in 0..QK_K / 16 {
            b.scales[ib] = nearest_int(iscale * scales[ib]).min(127) as i8;
        }
        for j in 0..QK_K / 16 {
            let d = from_f16(b.d) * b.scales[j] as f32;
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                l[16 * j + ii] = (nearest_int(x[16 * j + ii] / d).clamp(-32, 31) + 32) as i8;
            }
        }
        for j in (0..QK_K).step_by(128) {
            let (ql, qh) = (&mut b.ql[j / 2..j / 2 + 64], &mut b.qh[j / 4..j / 4 + 32]);
            for k in 0..32 {
                let q = |o: usize| l[j + k + o] as u8;
                ql[k] = (q(0) & 0xF) | ((q(64) & 0xF) << 4);
                ql[k + 32] = (q(32) & 0xF) | ((q(96) & 0xF) << 4);
                qh[k] = (q(0) >> 4) | ((q(32) >> 4) << 2) | ((q(64) >> 4) << 4) | ((q(96) >> 4) << 6);
            }
        }
        b
    }
}
