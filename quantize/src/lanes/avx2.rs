//! The lane code for x86-64 with AVX2: eight sub-blocks in the eight `f32` lanes of a 256-bit
//! register. Every operation is the IEEE single-precision operation the scalar code performs
//! (`vaddps`, `vmulps`, `vdivps` round as `+`, `*`, `/` do; comparisons are ordered where Rust's
//! are, unordered for `!=`), and no multiply is fused with an add.

use std::arch::x86_64::*;

use super::LANES;
use crate::rounding::{Qkx2Search, GROUP_MAX_EPS};

/// One `f32` per sub-block.
#[derive(Clone, Copy)]
struct F(__m256);

/// One `i32` per sub-block.
#[derive(Clone, Copy)]
struct I(__m256i);

/// One condition per sub-block: all bits set where it holds.
#[derive(Clone, Copy)]
struct M(__m256);

impl F {
    #[inline]
    #[target_feature(enable = "avx2")]
    fn splat(v: f32) -> F {
        F(_mm256_set1_ps(v))
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn add(self, o: F) -> F {
        F(_mm256_add_ps(self.0, o.0))
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn sub(self, o: F) -> F {
        F(_mm256_sub_ps(self.0, o.0))
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn mul(self, o: F) -> F {
        F(_mm256_mul_ps(self.0, o.0))
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn div(self, o: F) -> F {
        F(_mm256_div_ps(self.0, o.0))
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn abs(self) -> F {
        F(_mm256_and_ps(self.0, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff))))
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn neg(self) -> F {
        F(_mm256_xor_ps(self.0, _mm256_set1_ps(-0.0)))
    }
    /// `self.min(o)` where `self` is not NaN: `self < o ? self : o`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn min(self, o: F) -> F {
        F(_mm256_min_ps(self.0, o.0))
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn gt(self, o: F) -> M {
        M(_mm256_cmp_ps::<_CMP_GT_OQ>(self.0, o.0))
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn lt(self, o: F) -> M {
        M(_mm256_cmp_ps::<_CMP_LT_OQ>(self.0, o.0))
    }
    /// `self != o`, true where either is NaN, as Rust's `!=`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn ne(self, o: F) -> M {
        M(_mm256_cmp_ps::<_CMP_NEQ_UQ>(self.0, o.0))
    }
    /// `!(self >= o)`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn not_ge(self, o: F) -> M {
        M(_mm256_cmp_ps::<_CMP_NGE_UQ>(self.0, o.0))
    }
    /// [`crate::rounding::nearest_int`], lane by lane.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn nearest_int(self) -> I {
        let bits = _mm256_castps_si256(_mm256_add_ps(self.0, _mm256_set1_ps(12_582_912.0)));
        I(_mm256_sub_epi32(_mm256_and_si256(bits, _mm256_set1_epi32(0x007f_ffff)), _mm256_set1_epi32(0x0040_0000)))
    }
    /// Each lane's element `i` of `N`-element sub-blocks laid out one after another from `x`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn gather<const N: usize>(x: &[f32], i: usize) -> F {
        assert!(x.len() >= LANES * N && i < N);
        let offsets = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(N as i32));
        // SAFETY: lane k reads x[N * k + i], in bounds by the assertion.
        F(unsafe { _mm256_i32gather_ps::<4>(x.as_ptr().add(i), offsets) })
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn to_array(self) -> [f32; LANES] {
        let mut out = [0.0; LANES];
        // SAFETY: `out` holds eight f32.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), self.0) };
        out
    }
}

impl I {
    #[inline]
    #[target_feature(enable = "avx2")]
    fn splat(v: i32) -> I {
        I(_mm256_set1_epi32(v))
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn clamp(self, lo: i32, hi: i32) -> I {
        I(_mm256_min_epi32(_mm256_max_epi32(self.0, _mm256_set1_epi32(lo)), _mm256_set1_epi32(hi)))
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn to_f32(self) -> F {
        F(_mm256_cvtepi32_ps(self.0))
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn ne(self, o: I) -> M {
        let eq = _mm256_cmpeq_epi32(self.0, o.0);
        M(_mm256_castsi256_ps(_mm256_xor_si256(eq, _mm256_set1_epi32(-1))))
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn to_array(self) -> [i32; LANES] {
        let mut out = [0; LANES];
        // SAFETY: `out` holds eight i32.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), self.0) };
        out
    }
}

impl M {
    #[inline]
    #[target_feature(enable = "avx2")]
    fn and(self, o: M) -> M {
        M(_mm256_and_ps(self.0, o.0))
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn not(self) -> M {
        M(_mm256_xor_ps(self.0, _mm256_castsi256_ps(_mm256_set1_epi32(-1))))
    }
    #[inline]
    #[target_feature(enable = "avx2")]
    fn any(self) -> bool {
        _mm256_movemask_ps(self.0) != 0
    }
    /// `a` where the condition holds, `b` elsewhere.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn f(self, a: F, b: F) -> F {
        F(_mm256_blendv_ps(b.0, a.0, self.0))
    }
    /// As [`M::f`], for integers.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn i(self, a: I, b: I) -> I {
        I(_mm256_blendv_epi8(b.0, a.0, _mm256_castps_si256(self.0)))
    }
}

/// Each lane's sub-block transposed: element `i` of every sub-block in row `i`.
#[inline]
#[target_feature(enable = "avx2")]
fn transpose<const N: usize>(x: &[f32]) -> [F; N] {
    let mut t = [F(_mm256_setzero_ps()); N];
    for (i, ti) in t.iter_mut().enumerate() {
        *ti = F::gather::<N>(x, i);
    }
    t
}

/// Lane `k` of `q` (plus `offset` where `keep` holds, else 0) into sub-block `k` of `l`.
#[inline]
#[target_feature(enable = "avx2")]
fn store<const N: usize, T>(q: &[I; N], l: &mut [T], keep: M, offset: i32, cast: impl Fn(i32) -> T) {
    let keep = keep.f(F::splat(1.0), F::splat(0.0)).to_array();
    for (i, qi) in q.iter().enumerate() {
        let qi = qi.to_array();
        for k in 0..LANES {
            l[N * k + i] = cast(if keep[k] != 0.0 { qi[k] + offset } else { 0 });
        }
    }
}

/// The value of largest magnitude in each lane (the first on ties), and the lanes that are
/// all zero (`signed_max_or_zero` in rounding.rs).
#[inline]
#[target_feature(enable = "avx2")]
fn signed_max<const N: usize>(x: &[F; N]) -> (F, M) {
    let (mut amax, mut max) = (F::splat(0.0), F::splat(0.0));
    for &v in x {
        let ax = v.abs();
        let bigger = ax.gt(amax);
        amax = bigger.f(ax, amax);
        max = bigger.f(v, max);
    }
    (max, amax.not_ge(F::splat(GROUP_MAX_EPS)))
}

/// `make_qkx2_quants` (rounding.rs) on eight sub-blocks of `N`: `(scale, -min)` of each.
#[target_feature(enable = "avx2")]
pub(super) fn make_qkx2_quants<const N: usize>(
    nmax: i32,
    x: &[f32],
    w: &[f32],
    l: &mut [u8],
    search: &Qkx2Search,
) -> ([f32; LANES], [f32; LANES]) {
    let (x, w) = (transpose::<N>(x), transpose::<N>(w));
    let zero = F::splat(0.0);
    let (mut min, mut max, mut sum_w) = (x[0], x[0], w[0]);
    let mut sum_x = sum_w.mul(x[0]);
    for i in 1..N {
        min = x[i].lt(min).f(x[i], min);
        max = x[i].gt(max).f(x[i], max);
        sum_w = sum_w.add(w[i]);
        sum_x = sum_x.add(w[i].mul(x[i]));
    }
    min = min.gt(zero).f(zero, min);
    let searched = max.ne(min);
    let first_min = min;
    let nmaxf = F::splat(nmax as f32);
    let err = |diff: F| if search.use_mad { diff.abs() } else { diff.mul(diff) };
    let mut iscale = nmaxf.div(max.sub(min));
    let mut scale = F::splat(1.0).div(iscale);
    let mut best_error = zero;
    let mut q = [I::splat(0); N];
    for i in 0..N {
        q[i] = iscale.mul(x[i].sub(min)).nearest_int().clamp(0, nmax);
        let diff = scale.mul(q[i].to_f32()).add(min).sub(x[i]);
        best_error = best_error.add(w[i].mul(err(diff)));
    }
    let mut laux = [I::splat(0); N];
    for is in 0..=search.nstep {
        iscale = F::splat(search.rmin + search.rdelta * is as f32 + nmax as f32).div(max.sub(min));
        let (mut sum_l, mut sum_l2, mut sum_xl) = (zero, zero, zero);
        for i in 0..N {
            let v = iscale.mul(x[i].sub(min));
            laux[i] = match search.clamp_before_rounding {
                true => v.gt(zero).i(v.min(nmaxf).nearest_int(), I::splat(0)),
                false => v.nearest_int().clamp(0, nmax),
            };
            let qf = laux[i].to_f32();
            sum_l = sum_l.add(w[i].mul(qf));
            sum_l2 = sum_l2.add(w[i].mul(qf).mul(qf));
            sum_xl = sum_xl.add(w[i].mul(qf).mul(x[i]));
        }
        let d = sum_w.mul(sum_l2).sub(sum_l.mul(sum_l));
        let this_scale = sum_w.mul(sum_xl).sub(sum_x.mul(sum_l)).div(d);
        let this_min = sum_l2.mul(sum_x).sub(sum_l.mul(sum_xl)).div(d);
        let clamped = this_min.gt(zero);
        let this_scale = clamped.f(sum_xl.div(sum_l2), this_scale);
        let this_min = clamped.f(zero, this_min);
        let mut cur_error = zero;
        for i in 0..N {
            let diff = this_scale.mul(laux[i].to_f32()).add(this_min).sub(x[i]);
            cur_error = cur_error.add(w[i].mul(err(diff)));
        }
        let better = d.gt(zero).and(cur_error.lt(best_error));
        if better.any() {
            for i in 0..N {
                q[i] = better.i(laux[i], q[i]);
            }
            best_error = better.f(cur_error, best_error);
            scale = better.f(this_scale, scale);
            min = better.f(this_min, min);
        }
    }
    store(&q, l, searched, 0, |q| q as u8);
    (searched.f(scale, zero).to_array(), searched.f(min, first_min).neg().to_array())
}

/// `make_qx_quants` (rounding.rs) on eight sub-blocks of `N`: the scale of each.
#[target_feature(enable = "avx2")]
pub(super) fn make_qx_quants<const N: usize>(nmax: i32, x: &[f32], l: &mut [i8], w: &[f32]) -> [f32; LANES] {
    let (x, w) = (transpose::<N>(x), transpose::<N>(w));
    let zero = F::splat(0.0);
    let (max, empty) = signed_max(&x);
    let nmaxf = nmax as f32;
    let quant = |iscale: F, q: &mut [I; N]| {
        let (mut sumlx, mut suml2) = (zero, zero);
        for i in 0..N {
            q[i] = iscale.mul(x[i]).nearest_int().clamp(-nmax, nmax - 1);
            let qf = q[i].to_f32();
            sumlx = sumlx.add(w[i].mul(x[i]).mul(qf));
            suml2 = suml2.add(w[i].mul(qf).mul(qf));
        }
        (sumlx, suml2)
    };
    let mut q = [I::splat(0); N];
    let (sumlx, suml2) = quant(F::splat(-nmaxf).div(max), &mut q);
    let mut scale = suml2.ne(zero).f(sumlx.div(suml2), zero);
    let mut best = scale.mul(sumlx);
    let mut trial = [I::splat(0); N];
    for is in (-9..=9).filter(|&is| is != 0) {
        let (sumlx, suml2) = quant(F::splat(-(nmaxf + 0.1f32 * is as f32)).div(max), &mut trial);
        let better = suml2.gt(zero).and(sumlx.mul(sumlx).gt(best.mul(suml2)));
        if better.any() {
            for i in 0..N {
                q[i] = better.i(trial[i], q[i]);
            }
            scale = better.f(sumlx.div(suml2), scale);
            best = better.f(scale.mul(sumlx), best);
        }
    }
    store(&q, l, empty.not(), nmax, |q| q as i8);
    empty.not().f(scale, zero).to_array()
}

/// `make_q3_quants_rmse` (rounding.rs) on eight sub-blocks of `N`: the scale of each.
#[target_feature(enable = "avx2")]
pub(super) fn make_q3_quants_rmse<const N: usize>(nmax: i32, x: &[f32], l: &mut [i8]) -> [f32; LANES] {
    let x = transpose::<N>(x);
    let zero = F::splat(0.0);
    let (max, empty) = signed_max(&x);
    let iscale = F::splat(-(nmax as f32)).div(max);
    let mut q = [I::splat(0); N];
    let (mut sumlx, mut suml2) = (zero, zero);
    for i in 0..N {
        q[i] = iscale.mul(x[i]).nearest_int().clamp(-nmax, nmax - 1);
        let (v, qf) = (x[i], q[i].to_f32());
        let w = v.mul(v);
        sumlx = sumlx.add(w.mul(v).mul(qf));
        suml2 = suml2.add(w.mul(qf).mul(qf));
    }
    for _ in 0..5 {
        let mut changed = false;
        for i in 0..N {
            let v = x[i];
            let w = v.mul(v);
            let cur = q[i].to_f32();
            let slx = sumlx.sub(w.mul(v).mul(cur));
            let sl2 = suml2.sub(w.mul(cur).mul(cur));
            let new_l = v.mul(sl2).div(slx).nearest_int().clamp(-nmax, nmax - 1);
            let nf = new_l.to_f32();
            let (slx2, sl22) = (slx.add(w.mul(v).mul(nf)), sl2.add(w.mul(nf).mul(nf)));
            let better = slx
                .gt(zero)
                .and(new_l.ne(q[i]))
                .and(sl22.gt(zero))
                .and(slx2.mul(slx2).mul(suml2).gt(sumlx.mul(sumlx).mul(sl22)));
            if better.any() {
                q[i] = better.i(new_l, q[i]);
                sumlx = better.f(slx2, sumlx);
                suml2 = better.f(sl22, suml2);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    store(&q, l, empty.not(), nmax, |q| q as i8);
    empty.not().and(suml2.gt(zero)).f(sumlx.div(suml2), zero).to_array()
}

/// The IQ4 level nearest each lane of `x` and its index (iquants.rs's `best_index`: ties go
/// up). The binary search's answer is the first level above `x`, which is one plus the number
/// of inner levels at or below it.
#[inline]
#[target_feature(enable = "avx2")]
fn iq4_nearest(x: F, levels: &[f32; 16]) -> (I, F) {
    // SAFETY: `levels` holds sixteen f32.
    let (low, high) = unsafe { (_mm256_loadu_ps(levels.as_ptr()), _mm256_loadu_ps(levels.as_ptr().add(8))) };
    let level = |i: I| {
        F(_mm256_blendv_ps(
            _mm256_permutevar8x32_ps(low, i.0),
            _mm256_permutevar8x32_ps(high, i.0),
            _mm256_castsi256_ps(_mm256_cmpgt_epi32(i.0, _mm256_set1_epi32(7))),
        ))
    };
    let mut below = _mm256_setzero_si256();
    for &l in &levels[1..15] {
        below = _mm256_sub_epi32(below, _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LE_OQ>(_mm256_set1_ps(l), x.0)));
    }
    let (lo, hi) = (I(below), I(_mm256_add_epi32(below, _mm256_set1_epi32(1))));
    let (l_lo, l_hi) = (level(lo), level(hi));
    let nearer_lo = x.sub(l_lo).lt(l_hi.sub(x));
    let (mut i, mut v) = (nearer_lo.i(lo, hi), nearer_lo.f(l_lo, l_hi));
    let first = M(_mm256_cmp_ps::<_CMP_LE_OQ>(x.0, _mm256_set1_ps(levels[0])));
    (i, v) = (first.i(I::splat(0), i), first.f(F::splat(levels[0]), v));
    let last = M(_mm256_cmp_ps::<_CMP_GE_OQ>(x.0, _mm256_set1_ps(levels[15])));
    (last.i(I::splat(15), i), last.f(F::splat(levels[15]), v))
}

/// iquants.rs's `block_scale` on eight consecutive blocks of 32 (weights `w`): the scale of each.
#[target_feature(enable = "avx2")]
pub(super) fn iq4_block_scale(x: &[f32], w: &[f32], levels: &[f32; 16], ntry: i32) -> [f32; LANES] {
    const N: usize = 32;
    let (x, w) = (transpose::<N>(x), transpose::<N>(w));
    let zero = F::splat(0.0);
    let (max, empty) = signed_max(&x);
    let sums = |id: F| {
        let (mut sumqx, mut sumq2) = (zero, zero);
        for i in 0..N {
            let (_, q) = iq4_nearest(id.mul(x[i]), levels);
            sumqx = sumqx.add(w[i].mul(q).mul(x[i]));
            sumq2 = sumq2.add(w[i].mul(q).mul(q));
        }
        (sumqx, sumq2)
    };
    let (sumqx, sumq2) = sums(F::splat(1.0).div(max.neg().div(F::splat(levels[0]))));
    let mut d = sumq2.gt(zero).f(sumqx.div(sumq2), zero);
    let mut best = d.mul(sumqx);
    for itry in -ntry..=ntry {
        let (sumqx, sumq2) = sums(F::splat((itry + levels[0] as i32) as f32).div(max));
        let better = sumq2.gt(zero).and(sumqx.mul(sumqx).gt(best.mul(sumq2)));
        d = better.f(sumqx.div(sumq2), d);
        best = better.f(d.mul(sumqx), best);
    }
    empty.not().f(d, zero).to_array()
}
