//! Byte identity with ggml itself: every supported type, quantized by us and by
//! `ggml_quantize_chunk` on the same rows, without an importance matrix and with several, must
//! give the same bytes, and dequantizing those bytes must give the same floats, bit for bit.

use std::ffi::CStr;

use llama_cpp_sys_2 as sys;
use strata_quantize::{dequantize_row, quantize_rows, quantize_rows_weighted, row_size, GgmlType, QuantizeError};

/// A small deterministic generator (xorshift64*), so the cases need no extra crate.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    }
    fn normal(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }
    fn normals(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.normal() * scale).collect()
    }
}

fn ggml_quantize(ty: GgmlType, src: &[f32], n_per_row: usize, weights: Option<&[f32]>) -> Vec<u8> {
    let rows = src.len() / n_per_row;
    let mut dst = vec![0u8; rows * row_size(ty, n_per_row).unwrap()];
    let written = unsafe {
        sys::ggml_quantize_chunk(
            ty.id() as sys::ggml_type,
            src.as_ptr(),
            dst.as_mut_ptr().cast(),
            0,
            rows as i64,
            n_per_row as i64,
            weights.map_or(std::ptr::null(), <[f32]>::as_ptr),
        )
    };
    assert_eq!(written, dst.len());
    dst
}

fn ggml_dequantize(ty: GgmlType, src: &[u8], n: usize) -> Vec<f32> {
    if ty == GgmlType::F32 {
        // ggml has no to_float for F32: its data is the floats themselves.
        return src.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    }
    let mut out = vec![0f32; n];
    unsafe {
        let traits = &*sys::ggml_get_type_traits(ty.id() as sys::ggml_type);
        let to_float = traits.to_float.expect("ggml has a to_float for every supported type");
        to_float(src.as_ptr().cast(), out.as_mut_ptr(), n as i64);
    }
    out
}

/// The named input cases, each a set of rows of `n_per_row` values.
fn cases(n_per_row: usize) -> Vec<(&'static str, Vec<f32>)> {
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let rows = 4;
    let n = rows * n_per_row;
    let mut outliers = rng.normals(n, 0.02);
    for i in (0..n).step_by(97) {
        outliers[i] = if i % 2 == 0 { 40.0 } else { -25.0 } * rng.uniform();
    }
    let mut mixed = Vec::with_capacity(n);
    for (i, v) in rng.normals(n, 1.0).into_iter().enumerate() {
        let block_scale = [1e-30, 1e-6, 1.0, 1e6, 1e30, 1e-40][(i / 16) % 6];
        mixed.push(v * block_scale);
    }
    let mut sparse = vec![0f32; n];
    for i in (0..n).step_by(13) {
        sparse[i] = rng.normal();
    }
    vec![
        ("normal", rng.normals(n, 1.0)),
        ("normal small", rng.normals(n, 0.01)),
        ("outliers", outliers),
        ("zeros", vec![0.0; n]),
        ("constant positive", vec![0.75; n]),
        ("constant negative", vec![-3.5; n]),
        ("near 1e-30", rng.normals(n, 1e-30)),
        ("near 1e30", rng.normals(n, 1e30)),
        ("subnormal", rng.normals(n, 1e-40)),
        (
            "largest finite",
            (0..n).map(|i| if i % 3 == 0 { f32::MAX } else { -f32::MAX / (i % 7 + 1) as f32 }).collect(),
        ),
        ("mixed magnitudes", mixed),
        ("sparse", sparse),
        ("uniform positive", (0..n).map(|_| rng.uniform() * 5.0).collect()),
        ("integers", (0..n).map(|i| ((i * 7919) % 33) as f32 - 16.0).collect()),
    ]
}

/// Importance weights as an imatrix gives them (mean squared activations per column: positive,
/// spread over orders of magnitude), with some zero columns, and constant.
fn weight_cases(n_per_row: usize) -> Vec<(&'static str, Vec<f32>)> {
    let mut rng = Rng(0x1A7E_55ED_0000_0002);
    let imatrix: Vec<f32> =
        (0..n_per_row).map(|_| rng.normal().powi(2) * 10f32.powf(4.0 * rng.uniform() - 2.0)).collect();
    let mut with_zeros = imatrix.clone();
    for w in with_zeros.iter_mut().step_by(5) {
        *w = 0.0;
    }
    vec![("imatrix-like", imatrix), ("some zero", with_zeros), ("constant", vec![0.37; n_per_row])]
}

fn check_type(ty: GgmlType) {
    let block = ty.block_size();
    // Whether weights ever changed ggml's bytes: they must for every type with a weighted path,
    // or these comparisons would not be testing it.
    let mut weights_matter = false;
    // One block per row, a few blocks, and many blocks.
    for n_per_row in [block.max(32), block * 3, block * 64] {
        for (name, src) in cases(n_per_row) {
            let expected = ggml_quantize(ty, &src, n_per_row, None);
            let mut ours = vec![0u8; expected.len()];
            quantize_rows(ty, &src, n_per_row, &mut ours).unwrap_or_else(|e| panic!("{ty} {name}: {e}"));
            assert_same_bytes(ty, &format!("'{name}' (row width {n_per_row})"), &ours, &expected);
            for (weights_name, weights) in weight_cases(n_per_row) {
                let expected = ggml_quantize(ty, &src, n_per_row, Some(&weights));
                let mut ours = vec![0u8; expected.len()];
                quantize_rows_weighted(ty, &src, n_per_row, &weights, &mut ours)
                    .unwrap_or_else(|e| panic!("{ty} {name}: {e}"));
                weights_matter |= expected != ggml_quantize(ty, &src, n_per_row, None);
                assert_same_bytes(
                    ty,
                    &format!("'{name}' with {weights_name} weights (row width {n_per_row})"),
                    &ours,
                    &expected,
                );
            }
            let theirs = ggml_dequantize(ty, &expected, src.len());
            let mut back = vec![0f32; src.len()];
            dequantize_row(ty, &expected, &mut back).unwrap();
            if let Some(i) = back.iter().zip(&theirs).position(|(a, b)| a.to_bits() != b.to_bits()) {
                panic!("{ty} on '{name}': dequantized value {i} is {} here, {} in ggml", back[i], theirs[i]);
            }
        }
    }
    assert_eq!(
        weights_matter,
        ty.uses_importance(),
        "{ty}: importance weights {} ggml's bytes",
        if weights_matter { "changed" } else { "never changed" }
    );
}

fn assert_same_bytes(ty: GgmlType, case: &str, ours: &[u8], expected: &[u8]) {
    if let Some(at) = ours.iter().zip(expected).position(|(a, b)| a != b) {
        let (b, size) = (at / ty.type_size(), ty.type_size());
        panic!(
            "{ty} on {case}: bytes differ first at byte {at} (block {b}):\n ours {:?}\n ggml {:?}",
            &ours[b * size..(b + 1) * size],
            &expected[b * size..(b + 1) * size]
        );
    }
}

/// One test per type, and [`COVERED`]: the types those tests check.
macro_rules! byte_identity_tests {
    ($($test:ident => $ty:ident,)*) => {
        $(
            #[test]
            fn $test() {
                check_type(GgmlType::$ty);
            }
        )*
        const COVERED: &[GgmlType] = &[$(GgmlType::$ty),*];
    };
}

byte_identity_tests! {
    f32_matches_ggml => F32,
    f16_matches_ggml => F16,
    bf16_matches_ggml => BF16,
    q8_0_matches_ggml => Q8_0,
    q4_0_matches_ggml => Q4_0,
    q4_1_matches_ggml => Q4_1,
    q5_0_matches_ggml => Q5_0,
    q5_1_matches_ggml => Q5_1,
    q2_k_matches_ggml => Q2_K,
    q3_k_matches_ggml => Q3_K,
    q4_k_matches_ggml => Q4_K,
    q5_k_matches_ggml => Q5_K,
    q6_k_matches_ggml => Q6_K,
    iq4_nl_matches_ggml => IQ4_NL,
    iq4_xs_matches_ggml => IQ4_XS,
}

#[test]
fn every_supported_type_is_covered() {
    for ty in GgmlType::QUANTIZABLE {
        assert!(COVERED.contains(ty), "{ty} can be quantized but no test compares it with ggml");
    }
    for ty in COVERED {
        assert!(GgmlType::QUANTIZABLE.contains(ty), "{ty} is tested but not listed as quantizable");
    }
    assert_eq!(COVERED.len(), GgmlType::QUANTIZABLE.len(), "a type is tested twice");
}

#[test]
fn type_table_matches_ggml() {
    for &ty in GgmlType::ALL {
        let t = ty.id() as sys::ggml_type;
        let name = unsafe { CStr::from_ptr(sys::ggml_type_name(t)) }.to_str().unwrap();
        assert!(name.eq_ignore_ascii_case(ty.name()), "{ty}: ggml calls id {} {name}", ty.id());
        assert_eq!(unsafe { sys::ggml_blck_size(t) } as usize, ty.block_size(), "{ty} block size");
        assert_eq!(unsafe { sys::ggml_type_size(t) }, ty.type_size(), "{ty} type size");
    }
}

#[test]
fn non_finite_input_names_row_and_column() {
    for &ty in GgmlType::QUANTIZABLE {
        let n_per_row = 256;
        let mut src = vec![0.5f32; 3 * n_per_row];
        src[2 * n_per_row + 17] = f32::NAN;
        src[2 * n_per_row + 40] = f32::INFINITY;
        let mut dst = vec![0u8; 3 * row_size(ty, n_per_row).unwrap()];
        let err = quantize_rows(ty, &src, n_per_row, &mut dst).unwrap_err();
        assert!(matches!(err, QuantizeError::NotFinite { row: 2, column: 17, .. }), "{ty}: {err}");
        assert_eq!(err.to_string(), "row 2, column 17: value NaN is not finite");
        src[2 * n_per_row + 17] = 0.0;
        let err = quantize_rows(ty, &src, n_per_row, &mut dst).unwrap_err();
        assert_eq!(err.to_string(), "row 2, column 40: value inf is not finite");
    }
}

#[test]
fn weights_must_cover_the_row() {
    let err = quantize_rows_weighted(GgmlType::Q4_K, &[0.5; 512], 256, &[1.0; 255], &mut [0; 288]).unwrap_err();
    assert!(
        matches!(err, QuantizeError::BufferSize { what: "importance weights", expected: 256, actual: 255 }),
        "{err}"
    );
    let mut src = vec![0.5f32; 512];
    src[300] = f32::NAN;
    let err = quantize_rows_weighted(GgmlType::Q4_K, &src, 256, &[1.0; 256], &mut [0; 288]).unwrap_err();
    assert_eq!(err.to_string(), "row 1, column 44: value NaN is not finite");
}

#[test]
fn row_width_not_a_multiple_of_the_block_is_an_error() {
    for &ty in GgmlType::QUANTIZABLE.iter().filter(|t| t.block_size() > 1) {
        let n_per_row = ty.block_size() + 16;
        let err = quantize_rows(ty, &vec![1.0; n_per_row], n_per_row, &mut []).unwrap_err();
        assert_eq!(err, QuantizeError::RowWidth { ty, n_per_row });
        assert!(err.to_string().contains("not a multiple"), "{err}");
    }
}

#[test]
fn unsupported_types_and_wrong_buffers_are_errors() {
    let err = quantize_rows(GgmlType::IQ2_XXS, &[0.0; 256], 256, &mut [0; 66]).unwrap_err();
    assert_eq!(err, QuantizeError::Unsupported(GgmlType::IQ2_XXS));
    let err = quantize_rows(GgmlType::Q8_0, &[0.0; 64], 32, &mut [0; 35]).unwrap_err();
    assert!(matches!(err, QuantizeError::BufferSize { expected: 68, actual: 35, .. }), "{err}");
    let err = dequantize_row(GgmlType::Q8_0, &[0; 33], &mut [0.0; 32]).unwrap_err();
    assert!(matches!(err, QuantizeError::BufferSize { expected: 34, actual: 33, .. }), "{err}");
}
