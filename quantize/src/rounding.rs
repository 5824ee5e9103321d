//! The scalar helpers that ggml's reference quantizers share (ggml/src/ggml-quants.c), kept in
//! ggml's exact order of float operations so that the bytes they lead to are ggml's bytes.
//!
//! ggml-quants.c is compiled without `-march` (it lives in ggml-base), so its float arithmetic is
//! plain IEEE single precision with no fused multiply-add; Rust never fuses either.

use half::f16;

/// ggml's `nearest_int`: round to nearest (ties to even) by the 1.5·2^23 trick.
///
/// Past |x| > 4194303 ggml's assert is compiled out and the trick returns garbage; this returns
/// the same garbage, bit for bit.
#[inline(always)]
pub(crate) fn nearest_int(fval: f32) -> i32 {
    let val = fval + 12_582_912.0f32;
    (val.to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

/// C's float-to-integer conversion as x86-64 performs it (`cvttss2si`): truncation toward zero,
/// and `i32::MIN` for NaN and anything outside the 32-bit range. ggml casts floats to `int8_t`
/// and `uint8_t` through this instruction and keeps the low byte. On x86-64 the quantizers use
/// the instruction itself (legacy.rs, four lanes at a time); this is its definition elsewhere.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub(crate) fn c_trunc(f: f32) -> i32 {
    if (-2_147_483_648.0..2_147_483_648.0).contains(&f) {
        f as i32
    } else {
        i32::MIN
    }
}

/// `GGML_FP32_TO_FP16`: round to nearest even.
#[inline(always)]
pub(crate) fn to_f16(x: f32) -> f16 {
    f16::from_f32(x)
}

/// `GGML_FP16_TO_FP32`.
#[inline(always)]
pub(crate) fn from_f16(h: f16) -> f32 {
    h.to_f32()
}

/// The value of largest magnitude (the first on ties) and that magnitude; `(0, 0)` for none.
#[inline(always)]
pub(crate) fn signed_max(x: &[f32]) -> (f32, f32) {
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    (max, amax)
}

/// The value of largest magnitude (the first on ties), or `None` when the group is all zero
/// (below `GROUP_MAX_EPS`), as `make_qx_quants` and `make_q3_quants` begin.
#[inline(always)]
fn signed_max_or_zero(x: &[f32]) -> Option<f32> {
    let (max, amax) = signed_max(x);
    (amax >= GROUP_MAX_EPS).then_some(max)
}

/// ggml's `make_qx_quants` with `rmse_type == 1`: a symmetric scale for `x` on the grid
/// `-nmax..nmax-1`, refined over 18 trial scales by the error weighted with `w` (ggml's `qw`, or
/// `x[i]²` where it passes none). Writes `L[i] + nmax` to `l`.
pub(crate) fn make_qx_quants<const N: usize>(nmax: i32, x: &[f32; N], l: &mut [i8; N], w: &[f32; N]) -> f32 {
    let Some(max) = signed_max_or_zero(x) else {
        l.fill(0);
        return 0.0;
    };
    let nmaxf = nmax as f32;
    let quant = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    let mut iscale = -nmaxf / max;
    let mut sumlx = 0.0f32;
    let mut suml2 = 0.0f32;
    for ((li, &v), &w) in l.iter_mut().zip(x).zip(w) {
        let q = quant(iscale, v);
        *li = (q + nmax) as i8;
        sumlx += w * v * q as f32;
        suml2 += w * q as f32 * q as f32;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in (-9..=9).filter(|&is| is != 0) {
        iscale = -(nmaxf + 0.1f32 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for (&v, &w) in x.iter().zip(w) {
            let q = quant(iscale, v);
            sumlx += w * v * q as f32;
            suml2 += w * q as f32 * q as f32;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (li, &v) in l.iter_mut().zip(x) {
                *li = (quant(iscale, v) + nmax) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// ggml's `make_q3_quants` with `do_rmse`: a symmetric scale on `-nmax..nmax-1`, then up to five
/// passes that move single quants while the weighted error drops. Writes `L[i] + nmax` to `l`.
pub(crate) fn make_q3_quants_rmse<const N: usize>(nmax: i32, x: &[f32; N], l: &mut [i8; N]) -> f32 {
    let Some(max) = signed_max_or_zero(x) else {
        l.fill(0);
        return 0.0;
    };
    let iscale = -(nmax as f32) / max;
    let mut sumlx = 0.0f32;
    let mut suml2 = 0.0f32;
    for (li, &v) in l.iter_mut().zip(x) {
        let q = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
        *li = q as i8;
        let w = v * v;
        sumlx += w * v * q as f32;
        suml2 += w * q as f32 * q as f32;
    }
    for _ in 0..5 {
        let mut n_changed = 0;
        for (li, &v) in l.iter_mut().zip(x) {
            let w = v * v;
            let cur = *li as f32;
            let mut slx = sumlx - w * v * cur;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * cur * cur;
                let new_l = nearest_int(v * sl2 / slx).clamp(-nmax, nmax - 1);
                if new_l != *li as i32 {
                    slx += w * v * new_l as f32;
                    sl2 += w * new_l as f32 * new_l as f32;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        *li = new_l as i8;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed += 1;
                    }
                }
            }
        }
        if n_changed == 0 {
            break;
        }
    }
    for li in l.iter_mut() {
        *li += nmax as i8;
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

/// How [`make_qkx2_quants`] searches: ggml passes these as arguments.
pub(crate) struct Qkx2Search {
    pub rmin: f32,
    pub rdelta: f32,
    pub nstep: i32,
    pub use_mad: bool,
    /// Trial quants clamp to `0..=nmax` before rounding (`make_qkx3_quants`), not after.
    pub clamp_before_rounding: bool,
}

/// ggml's `make_qkx2_quants`: an asymmetric scale and minimum for `x` on `0..=nmax`, chosen by
/// weighted least squares over `nstep + 1` trial scales. Returns `(scale, -min)`.
pub(crate) fn make_qkx2_quants<const N: usize>(
    nmax: i32,
    x: &[f32; N],
    weights: &[f32; N],
    l: &mut [u8; N],
    search: &Qkx2Search,
) -> (f32, f32) {
    let n = N;
    let mut laux = [0u8; N];
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l.fill(0);
        return (0.0, -min);
    }
    let nmaxf = nmax as f32;
    let err = |diff: f32| if search.use_mad { diff.abs() } else { diff * diff };
    let mut iscale = nmaxf / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax) as u8;
        l[i] = q;
        let diff = scale * q as f32 + min - x[i];
        best_error += weights[i] * err(diff);
    }
    for is in 0..=search.nstep {
        iscale = (search.rmin + search.rdelta * is as f32 + nmaxf) / (max - min);
        let mut sum_l = 0.0f32;
        let mut sum_l2 = 0.0f32;
        let mut sum_xl = 0.0f32;
        for i in 0..n {
            let v = iscale * (x[i] - min);
            let q = match search.clamp_before_rounding {
                true if v > 0.0 => nearest_int(v.min(nmaxf)),
                true => 0,
                false => nearest_int(v).clamp(0, nmax),
            };
            laux[i] = q as u8;
            let w = weights[i];
            let qf = q as f32;
            sum_l += w * qf;
            sum_l2 += w * qf * qf;
            sum_xl += w * qf * x[i];
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                let diff = this_scale * laux[i] as f32 + this_min - x[i];
                cur_error += weights[i] * err(diff);
            }
            if cur_error < best_error {
                *l = laux;
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// ggml's `make_qkx3_quants` as its callers call it (importance weights, `use_mad` false): the
/// [`make_qkx2_quants`] search over 37 trial scales with quants clamped before rounding.
pub(crate) const QKX3_SEARCH: Qkx2Search =
    Qkx2Search { rmin: -0.9, rdelta: 0.05, nstep: 36, use_mad: false, clamp_before_rounding: true };

/// ggml's `make_qp_quants`: a scale for non-negative `x` (sub-block scales or mins) on
/// `0..=nmax`, the best of nine trial scales by the error weighted with `w`, then up to five
/// passes that move single quants while the weighted fit improves. Writes the quants to `l`.
pub(crate) fn make_qp_quants<const N: usize>(nmax: i32, x: &[f32; N], l: &mut [u8; N], w: &[f32; N]) -> f32 {
    let max = x.iter().fold(0.0f32, |m, &v| if v > m { v } else { m });
    if max < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let nmaxf = nmax as f32;
    let mut iscale = nmaxf / max;
    for i in 0..N {
        l[i] = nearest_int(iscale * x[i]) as u8;
    }
    let scale = 1.0 / iscale;
    let mut best_mse = 0.0f32;
    for i in 0..N {
        let diff = x[i] - scale * l[i] as f32;
        best_mse += w[i] * diff * diff;
    }
    for is in (-4..=4).filter(|&is| is != 0) {
        let iscale_is = (0.1f32 * is as f32 + nmaxf) / max;
        let scale_is = 1.0 / iscale_is;
        let mut mse = 0.0f32;
        for i in 0..N {
            let q = nearest_int(iscale_is * x[i]).min(nmax);
            let diff = x[i] - scale_is * q as f32;
            mse += w[i] * diff * diff;
        }
        if mse < best_mse {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    let mut li = [0i32; N];
    for i in 0..N {
        let q = nearest_int(iscale * x[i]).min(nmax);
        li[i] = q;
        sumlx += w[i] * x[i] * q as f32;
        suml2 += w[i] * q as f32 * q as f32;
    }
    for _ in 0..5 {
        let mut n_changed = 0;
        for i in 0..N {
            // ggml keeps the quants as uint8_t: a negative one reads back modulo 256.
            let cur = li[i] as u8 as f32;
            let mut slx = sumlx - w[i] * x[i] * cur;
            let mut sl2 = suml2 - w[i] * cur * cur;
            if slx > 0.0 && sl2 > 0.0 {
                let new_l = nearest_int(x[i] * sl2 / slx).min(nmax);
                if new_l != li[i] as u8 as i32 {
                    slx += w[i] * x[i] * new_l as f32;
                    sl2 += w[i] * new_l as f32 * new_l as f32;
                    if slx * slx * suml2 > sumlx * sumlx * sl2 {
                        li[i] = new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed += 1;
                    }
                }
            }
        }
        if n_changed == 0 {
            break;
        }
    }
    for i in 0..N {
        l[i] = li[i] as u8;
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

/// ggml's `GROUP_MAX_EPS`: a group whose largest magnitude is below this is all zero.
pub(crate) const GROUP_MAX_EPS: f32 = 1e-15;

/// ggml's `get_scale_min_k4`: the 6-bit scale and min of sub-block `j` in a Q4_K/Q5_K block.
#[inline(always)]
pub(crate) fn get_scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// Quantizes eight sub-blocks' scales and mins to 6 bits against their maxima and packs them
/// the way Q4_K and Q5_K store them.
pub(crate) fn pack_scale_min_k4(scales: &[f32; 8], mins: &[f32; 8], max_scale: f32, max_min: f32) -> [u8; 12] {
    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let ls = scales.map(|s| (nearest_int(inv_scale * s) as u8).min(63));
    let lm = mins.map(|m| (nearest_int(inv_min * m) as u8).min(63));
    pack_k4_scales(&ls, &lm)
}

/// Packs eight 6-bit scales and mins the way Q4_K and Q5_K store them (bits above the sixth
/// dropped as ggml's `uint8_t` stores drop them).
pub(crate) fn pack_k4_scales(ls: &[u8; 8], lm: &[u8; 8]) -> [u8; 12] {
    let mut out = [0u8; 12];
    for j in 0..8 {
        let (ls, lm) = (ls[j], lm[j]);
        if j < 4 {
            out[j] = ls;
            out[j + 4] = lm;
        } else {
            out[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            out[j - 4] |= (ls >> 4) << 6;
            out[j] |= (lm >> 4) << 6;
        }
    }
    out
}
