//! ggml's per-sub-block searches (rounding.rs) on eight sub-blocks at once.
//!
//! A K-quant super-block holds 8 or 16 sub-blocks whose searches are independent, and each
//! search is a fixed sequence of float operations. With AVX2 ([`avx2`]), lane `k` of every vector
//! operation belongs to sub-block `k` and performs that sub-block's scalar operation (no
//! reassociation, no fused multiply-add), so every rounding, comparison and result is the scalar
//! one and the bytes stay ggml's. Where the scalar code branches, both sides are computed and
//! each lane keeps its own; a loop that the scalar code leaves early runs until every lane is
//! done (a pass that changed nothing changes nothing when repeated). Without AVX2 (chosen at run
//! time) the entry points run rounding.rs's scalar functions one sub-block after another.

#[cfg(target_arch = "x86_64")]
mod avx2;

use std::ops::Range;

use crate::iquants::{block_scale, BLOCK as IQ4_BLOCK, LEVELS, NTRY};
use crate::rounding::{make_q3_quants_rmse, make_qkx2_quants, make_qx_quants, Qkx2Search};

/// Sub-blocks searched at once.
const LANES: usize = 8;

/// The element range and the sub-block range of each group of [`LANES`] sub-blocks of `N` in
/// `len` elements.
#[cfg(target_arch = "x86_64")]
fn groups<const N: usize>(len: usize) -> impl Iterator<Item = (Range<usize>, Range<usize>)> {
    (0..len / (LANES * N)).map(|g| (g * LANES * N..(g + 1) * LANES * N, g * LANES..(g + 1) * LANES))
}

/// [`make_qkx2_quants`] on each sub-block of `N` in `x` (weights `w`, quants into `l`): each
/// one's scale into `scales` and `-min` into `mins`. Groups of [`LANES`] run in lanes; a
/// remainder, one by one.
pub(crate) fn make_qkx2_quants_each<const N: usize>(
    nmax: i32,
    x: &[f32],
    w: &[f32],
    l: &mut [u8],
    search: &Qkx2Search,
    scales: &mut [f32],
    mins: &mut [f32],
) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        for (e, s) in groups::<N>(x.len()) {
            // SAFETY: the CPU has AVX2.
            let (sc, mn) =
                unsafe { avx2::make_qkx2_quants::<N>(nmax, &x[e.clone()], &w[e.clone()], &mut l[e], search) };
            scales[s.clone()].copy_from_slice(&sc);
            mins[s.clone()].copy_from_slice(&mn);
            done = s.end;
        }
    }
    for k in done..x.len() / N {
        let r = N * k..N * (k + 1);
        (scales[k], mins[k]) = make_qkx2_quants::<N>(
            nmax,
            x[r.clone()].try_into().unwrap(),
            w[r.clone()].try_into().unwrap(),
            (&mut l[r]).try_into().unwrap(),
            search,
        );
    }
}

/// [`make_qx_quants`] on each sub-block of `N` in `x` (weights `w`, quants into `l`): each
/// one's scale into `scales`. Groups of [`LANES`] run in lanes; a remainder, one by one.
pub(crate) fn make_qx_quants_each<const N: usize>(nmax: i32, x: &[f32], l: &mut [i8], w: &[f32], scales: &mut [f32]) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        for (e, s) in groups::<N>(x.len()) {
            // SAFETY: the CPU has AVX2.
            scales[s.clone()]
                .copy_from_slice(&unsafe { avx2::make_qx_quants::<N>(nmax, &x[e.clone()], &mut l[e.clone()], &w[e]) });
            done = s.end;
        }
    }
    for k in done..x.len() / N {
        let r = N * k..N * (k + 1);
        scales[k] = make_qx_quants::<N>(
            nmax,
            x[r.clone()].try_into().unwrap(),
            (&mut l[r.clone()]).try_into().unwrap(),
            w[r].try_into().unwrap(),
        );
    }
}

/// [`make_q3_quants_rmse`] on each sub-block of `N` in `x` (quants into `l`): each one's scale
/// into `scales`. Groups of [`LANES`] run in lanes; a remainder, one by one.
pub(crate) fn make_q3_quants_rmse_each<const N: usize>(nmax: i32, x: &[f32], l: &mut [i8], scales: &mut [f32]) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        for (e, s) in groups::<N>(x.len()) {
            // SAFETY: the CPU has AVX2.
            scales[s.clone()]
                .copy_from_slice(&unsafe { avx2::make_q3_quants_rmse::<N>(nmax, &x[e.clone()], &mut l[e]) });
            done = s.end;
        }
    }
    for k in done..x.len() / N {
        let r = N * k..N * (k + 1);
        scales[k] = make_q3_quants_rmse::<N>(nmax, x[r.clone()].try_into().unwrap(), (&mut l[r]).try_into().unwrap());
    }
}

/// iquants.rs's [`block_scale`] on each block of 32 in `x` (weights `w`): each one's scale into
/// `scales`. Groups of [`LANES`] blocks run in lanes; a remainder, one by one.
pub(crate) fn iq4_block_scale_each(x: &[f32], w: &[f32], scales: &mut [f32]) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        let levels = LEVELS.map(|l| l as f32);
        for (e, s) in groups::<IQ4_BLOCK>(x.len()) {
            // SAFETY: the CPU has AVX2.
            scales[s.clone()].copy_from_slice(&unsafe { avx2::iq4_block_scale(&x[e.clone()], &w[e], &levels, NTRY) });
            done = s.end;
        }
    }
    for k in done..x.len() / IQ4_BLOCK {
        let r = IQ4_BLOCK * k..IQ4_BLOCK * (k + 1);
        scales[k] = block_scale(&x[r.clone()], w[r].try_into().unwrap());
    }
}

/// The AVX2 lanes against rounding.rs's scalar searches, sub-block by sub-block, bit for bit.
/// `tests/ggml_oracle.rs` checks what this machine runs against ggml; this checks that the
/// other path (the scalar fallback, or the lanes where the oracle ran the fallback) agrees.
#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::kquants::{Q2_K_SEARCH, Q4_K_SEARCH, Q5_K_SEARCH};
    use crate::rounding::QKX3_SEARCH;

    /// Eight sub-blocks of `n`, each of a different kind: the edge cases the searches branch on
    /// (all zero, flat, one value, all of one sign, tiny, huge, integers) beside plain noise.
    fn group(seed: u64, n: usize) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut uniform = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let mut x = Vec::with_capacity(LANES * n);
        for k in 0..LANES {
            let kind = (seed as usize + k) % 10;
            for i in 0..n {
                let u = uniform();
                x.push(match kind {
                    0 => 0.0,
                    1 => 0.25,
                    2 if i == 3 => -1.5,
                    2 => 0.0,
                    3 => u.abs() + 0.01,
                    4 => -(u.abs() + 0.01),
                    5 => u * 1e-12,
                    6 => u * 1e4,
                    7 => (u * 16.0).round(),
                    _ => u * 0.1,
                });
            }
        }
        x
    }

    /// Runs `lanes` and the scalar `one` on 300 groups of sub-blocks of `N` with weights from
    /// `weights`, and asserts equal quants and results, bit for bit.
    fn check<const N: usize, T: PartialEq + Default + Copy + std::fmt::Debug>(
        name: &str,
        weights: impl Fn(&[f32], u64) -> Vec<f32>,
        lanes: impl Fn(&[f32], &[f32], &mut [T]) -> [[f32; LANES]; 2],
        one: impl Fn(&[f32; N], &[f32; N], &mut [T; N]) -> [f32; 2],
    ) {
        assert!(std::is_x86_feature_detected!("avx2"), "this test needs an AVX2 CPU");
        for seed in 0..300 {
            let x = group(seed, N);
            let w = weights(&x, seed);
            let mut l = vec![T::default(); LANES * N];
            let got = lanes(&x, &w, &mut l);
            for k in 0..LANES {
                let r = N * k..N * (k + 1);
                let mut lk = [T::default(); N];
                let want = one(x[r.clone()].try_into().unwrap(), w[r.clone()].try_into().unwrap(), &mut lk);
                assert_eq!(&l[r], &lk[..], "{name}: quants of sub-block {k}, seed {seed}");
                for (g, w) in [got[0][k], got[1][k]].iter().zip(want) {
                    assert_eq!(
                        g.to_bits(),
                        w.to_bits(),
                        "{name}: result of sub-block {k}, seed {seed}: {g} against {w}"
                    );
                }
            }
        }
    }

    fn squares(x: &[f32], _: u64) -> Vec<f32> {
        x.iter().map(|v| v * v).collect()
    }

    fn abs(x: &[f32], _: u64) -> Vec<f32> {
        x.iter().map(|v| v.abs()).collect()
    }

    /// Importance-like weights: positive, over two orders of magnitude, some zero.
    fn importance(x: &[f32], seed: u64) -> Vec<f32> {
        (0..x.len())
            .map(|i| {
                if (i as u64 + seed).is_multiple_of(13) {
                    0.0
                } else {
                    0.01 + ((i as u64 * 7 + seed) % 97) as f32 / 3.0
                }
            })
            .collect()
    }

    fn qkx2<const N: usize>(name: &str, nmax: i32, search: &Qkx2Search, weights: impl Fn(&[f32], u64) -> Vec<f32>) {
        check::<N, u8>(
            name,
            weights,
            |x, w, l| {
                // SAFETY: `check` asserted AVX2.
                let (s, m) = unsafe { avx2::make_qkx2_quants::<N>(nmax, x, w, l, search) };
                [s, m]
            },
            |x, w, l| {
                let (s, m) = make_qkx2_quants(nmax, x, w, l, search);
                [s, m]
            },
        );
    }

    #[test]
    fn qkx2_lanes_equal_the_scalar_search() {
        qkx2::<16>("Q2_K", 3, &Q2_K_SEARCH, abs);
        qkx2::<32>("Q4_K", 15, &Q4_K_SEARCH, abs);
        qkx2::<32>("Q5_K", 31, &Q5_K_SEARCH, abs);
        qkx2::<16>("Q2_K weighted", 3, &QKX3_SEARCH, importance);
        qkx2::<32>("Q4_K weighted", 15, &QKX3_SEARCH, importance);
        qkx2::<32>("Q5_K weighted", 31, &QKX3_SEARCH, importance);
    }

    #[test]
    fn qx_lanes_equal_the_scalar_search() {
        for (name, nmax, weights) in [
            ("Q6_K", 32, squares as fn(&[f32], u64) -> Vec<f32>),
            ("Q6_K weighted", 32, importance),
            ("Q3_K weighted", 4, importance),
        ] {
            check::<16, i8>(
                name,
                weights,
                // SAFETY: `check` asserted AVX2.
                |x, w, l| [unsafe { avx2::make_qx_quants::<16>(nmax, x, l, w) }, [0.0; LANES]],
                |x, w, l| [make_qx_quants(nmax, x, l, w), 0.0],
            );
        }
        for (name, nmax) in [("Q4_0 weighted", 8), ("Q5_0 weighted", 16)] {
            check::<32, i8>(
                name,
                importance,
                // SAFETY: `check` asserted AVX2.
                |x, w, l| [unsafe { avx2::make_qx_quants::<32>(nmax, x, l, w) }, [0.0; LANES]],
                |x, w, l| [make_qx_quants(nmax, x, l, w), 0.0],
            );
        }
    }

    #[test]
    fn q3_rmse_lanes_equal_the_scalar_search() {
        check::<16, i8>(
            "Q3_K",
            abs,
            // SAFETY: `check` asserted AVX2.
            |x, _, l| [unsafe { avx2::make_q3_quants_rmse::<16>(4, x, l) }, [0.0; LANES]],
            |x, _, l| [make_q3_quants_rmse(4, x, l), 0.0],
        );
    }

    #[test]
    fn iq4_lanes_equal_the_scalar_search() {
        let levels = LEVELS.map(|l| l as f32);
        for (name, weights) in [("IQ4", squares as fn(&[f32], u64) -> Vec<f32>), ("IQ4 weighted", importance)] {
            check::<32, u8>(
                name,
                weights,
                // SAFETY: `check` asserted AVX2.
                |x, w, _| [unsafe { avx2::iq4_block_scale(x, w, &levels, NTRY) }, [0.0; LANES]],
                |x, w, _| [block_scale(x, w), 0.0],
            );
        }
    }
}
