//! Tiny random-weight Gemma 4 (PLE, KV sharing, two head dims), Gemma 3n (PLE, AltUp, LAuReL,
//! activation sparsity, embeddings padded to vocab_size), Gemma 4 saved as the multimodal
//! Gemma4ForConditionalGeneration (text under `model.language_model.`, a vision tower, and in
//! gemma4-av an audio tower too, whose projector file is held to llama.cpp's converter's),
//! Gemma 4 mixture of experts (26B-A4B's layout: router and packed experts beside the dense MLP,
//! no PLE, full layers whose keys are their values),
//! Gemma 3 (also as published with its SigLIP vision tower, whose projector file is held to
//! llama.cpp's converter's `--mmproj` file), Qwen 3 and Llama checkpoints (Llama: grouped-query attention, so the Q/K row
//! permutation llama.cpp's converter applies is checked against that converter's bytes and
//! transformers' logits, not against our own export script)
//! (tests/fixtures/models, made by scripts/fixtures/make_fixtures.py), converted by strata and
//! checked against what we did not write: the GGUF llama.cpp's own convert_hf_to_gguf.py makes
//! from the same folder (metadata, names, shapes, bytes), transformers' float32 logits at every
//! position of a prompt, and llama.cpp's converter + llama-quantize's Q8_0 files (KL divergence
//! from transformers no more than 1.5 times theirs).

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{repo, scratch_dir, strata_ok, tensor_data};
use strata_gguf::{GgufFile, Value};

const FIXTURES: &[&str] =
    &["gemma4", "gemma3n", "gemma4-cg", "gemma4-av", "gemma4-moe", "gemma3", "gemma3-vision", "qwen3", "llama"];

fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures/models").join(name)
}

/// Converts a fixture into a scratch folder of its own: tests run in parallel and convert the
/// same fixture alike, and `scratch_dir` empties a folder it is given.
fn convert(name: &str, preset: &str, extra: &[&str]) -> PathBuf {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let out = scratch_dir(&format!("fixture-{name}-{preset}-{}-{call}", extra.join("-"))).join("out.gguf");
    let dir = fixture(name);
    let mut args = vec!["convert", dir.to_str().unwrap(), "-o", out.to_str().unwrap(), "--type", preset];
    args.extend_from_slice(extra);
    strata_ok(&args);
    out
}

/// `strata perplexity --kl-base` of a GGUF against the fixture's transformers logits.
fn against_transformers(name: &str, gguf: &Path) -> serde_json::Value {
    against(name, "reference.logits", gguf)
}

/// `strata perplexity --kl-base` of a GGUF against one of the fixture's logits files.
fn against(name: &str, reference: &str, gguf: &Path) -> serde_json::Value {
    let base = fixture(name).join(reference);
    let out =
        strata_ok(&["perplexity", gguf.to_str().unwrap(), "--kl-base", base.to_str().unwrap(), "--json", "-t", "2"]);
    serde_json::from_str(&out).expect("perplexity --json")
}

fn f(v: &serde_json::Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("no {key} in {v}"))
}

fn sorted_metadata(path: &Path) -> Vec<(String, Value)> {
    let mut m: Vec<(String, Value)> = GgufFile::open(path)
        .unwrap()
        .metadata
        .into_iter()
        // Labels llama.cpp derives from the model card or the folder's name.
        .filter(|(k, _)| {
            !k.starts_with("strata.") && !matches!(k.as_str(), "general.name" | "general.basename" | "general.finetune")
        })
        .collect();
    m.sort_by(|a, b| a.0.cmp(&b.0));
    m
}

#[test]
fn f32_conversion_equals_llama_cpp_converter_byte_for_byte() {
    for name in FIXTURES {
        let ours = convert(name, "f32", &[]);
        assert_same_file(name, &ours, &fixture(name).join("llamacpp-f32.gguf"));
    }
}

/// A tied Gemma checkpoint that also carries `lm_head.weight` (AutoAWQ and some fine-tune
/// exports write one) converts as llama.cpp's converter converts it: the extra tensor skipped,
/// the file byte for byte the one made without it.
#[test]
fn a_tied_checkpoint_with_an_lm_head_converts_as_without_it() {
    for (name, embedding) in [
        ("gemma4", "model.embed_tokens.weight"),
        ("gemma4-cg", "model.language_model.embed_tokens.weight"),
        ("gemma3", "model.embed_tokens.weight"),
    ] {
        let dir = common::with_lm_head(&fixture(name), embedding, &format!("lm-head-{name}"));
        let out = dir.join("out.gguf");
        strata_ok(&["convert", dir.to_str().unwrap(), "-o", out.to_str().unwrap(), "--type", "f32"]);
        // Converted here, not by `convert`: its scratch folder is shared with the other tests.
        let without = dir.join("without.gguf");
        strata_ok(&["convert", fixture(name).to_str().unwrap(), "-o", without.to_str().unwrap(), "--type", "f32"]);
        assert_eq!(sorted_metadata(&out), sorted_metadata(&without), "{name}: metadata");
        assert!(
            tensor_data(&out) == tensor_data(&without),
            "{name}: tensors differ from the conversion without lm_head"
        );
        assert!(!tensor_data(&out).iter().any(|t| t.0 == "output.weight"), "{name}: output.weight written");
    }
}

/// Metadata and tensors (name, shape, type, bytes) of two GGUF files, in name order, must be equal.
fn assert_same_file(what: &str, ours: &Path, theirs: &Path) {
    let (mo, mt) = (sorted_metadata(ours), sorted_metadata(theirs));
    let keys = |m: &[(String, Value)]| m.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&mo), keys(&mt), "{what}: metadata keys");
    for ((k, a), (_, b)) in mo.iter().zip(&mt) {
        assert_eq!(a, b, "{what}: metadata {k}");
    }
    let (mut to, mut tt) = (tensor_data(ours), tensor_data(theirs));
    to.sort_by(|a, b| a.0.cmp(&b.0));
    tt.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(to.len(), tt.len(), "{what}: tensor count");
    for (a, b) in to.iter().zip(&tt) {
        assert_eq!((&a.0, &a.1, &a.2), (&b.0, &b.1, &b.2), "{what}: tensor name, shape, type");
        assert!(a.3 == b.3, "{what}: {} differs in its data", a.0);
    }
}

/// The projector file (mmproj) of Gemma 3 with its SigLIP tower, of Gemma 4 with its vision
/// tower, and of Gemma 4 with both towers (gemma4-av) is, at each type llama.cpp's converter
/// offers, that converter's `--mmproj` file for the same folder: metadata, names, shapes, types
/// (Gemma 3: the patch and position embeddings F32, the input projection F16, Q8_0 falling back
/// to F16 on 48-wide rows; Gemma 4: the position table F32, the patch embedding F16 only in an
/// F16 file, and its columns reordered channel first; the audio tower's convolutions F32, its
/// scalar clipping bounds as one-value tensors, its depthwise kernels squeezed, its attention
/// scale through softplus) and bytes, the Q8_0 blocks included. Without --mmproj-type it is that converter's
/// `--outtype auto` (F16 for an F32 checkpoint).
#[test]
fn the_projector_file_is_llama_cpp_converters_at_each_type() {
    for name in ["gemma3-vision", "gemma4-cg", "gemma4-av"] {
        projector_types(name);
    }
}

fn projector_types(name: &str) {
    let dir = fixture(name);
    let scratch = scratch_dir(&format!("mmproj-types-{name}"));
    for ty in ["f32", "f16", "bf16", "q8_0", "default"] {
        let (out, mmproj) = (scratch.join(format!("{ty}.gguf")), scratch.join(format!("mmproj-{ty}.gguf")));
        let mut args = vec!["convert", dir.to_str().unwrap(), "-o", out.to_str().unwrap(), "--type", "q8_0"];
        args.extend(["--mmproj", mmproj.to_str().unwrap()]);
        if ty != "default" {
            args.extend(["--mmproj-type", ty]);
        }
        strata_ok(&args);
        let theirs = if ty == "default" { "f16" } else { ty };
        assert_same_file(&format!("{name} mmproj {ty}"), &mmproj, &dir.join(format!("mmproj-llamacpp-{theirs}.gguf")));
    }
    // Beside the model under llama.cpp's name when --mmproj is not given.
    let out = scratch.join("model.gguf");
    let said = strata_ok(&["convert", dir.to_str().unwrap(), "-o", out.to_str().unwrap(), "--type", "f32"]);
    assert!(said.contains("mmproj-model.gguf"), "{said}");
    assert_same_file("mmproj beside", &scratch.join("mmproj-model.gguf"), &dir.join("mmproj-llamacpp-f16.gguf"));
    // --no-mmproj: the text model alone.
    let out = scratch.join("text-only.gguf");
    strata_ok(&["convert", dir.to_str().unwrap(), "-o", out.to_str().unwrap(), "--no-mmproj"]);
    assert!(!scratch.join("mmproj-text-only.gguf").exists());
}

/// The same checkpoint in the two other layouts Gemma 3 checkpoints are saved in gives the same
/// two files: transformers 5's (the tower under `vision_tower.`, which llama.cpp's converter
/// cannot map) and transformers 4.52-4.57's (everything under `model.`).
#[test]
fn every_gemma3_layout_gives_the_same_projector_and_text_model() {
    let dir = fixture("gemma3-vision");
    let reference = scratch_dir("mmproj-layouts").join("reference.gguf");
    strata_ok(&["convert", dir.to_str().unwrap(), "-o", reference.to_str().unwrap(), "--type", "f32"]);
    type Rename = fn(&str) -> String;
    let layouts: [(&str, Rename); 2] = [
        ("transformers-5", |n| n.replacen("vision_tower.vision_model.", "vision_tower.", 1)),
        ("transformers-4.52", |n| {
            let n = n.replacen("language_model.model.", "model.language_model.", 1);
            if n.starts_with("vision_tower.") || n.starts_with("multi_modal_projector.") {
                format!("model.{n}")
            } else {
                n
            }
        }),
    ];
    for (name, rename) in layouts {
        let copy = common::with_tensors(&dir, &format!("gemma3-layout-{name}"), rename, &[]);
        let out = copy.join("out.gguf");
        strata_ok(&["convert", copy.to_str().unwrap(), "-o", out.to_str().unwrap(), "--type", "f32"]);
        assert_same_file(name, &out, &reference);
        let mmproj = reference.with_file_name("mmproj-reference.gguf");
        assert_same_file(&format!("{name} mmproj"), &copy.join("mmproj-out.gguf"), &mmproj);
    }
}

/// Asking for a projector a checkpoint cannot give, or a type a projector file does not take,
/// is a one-line error naming what is wrong, and nothing is written; so is a checkpoint whose
/// tower lacks a tensor or whose image normalization is missing.
#[test]
fn projector_errors_name_the_problem_and_write_nothing() {
    let scratch = scratch_dir("mmproj-errors");
    let out = scratch.join("out.gguf");
    let run = |dir: &Path, extra: &[&str]| {
        let mut args = vec!["convert", dir.to_str().unwrap(), "-o", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        let o = common::strata(&args);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(!out.exists() && !scratch.join("mmproj-out.gguf").exists(), "{args:?} left a file");
        String::from_utf8_lossy(&o.stderr).trim().to_string()
    };
    let err = run(&fixture("gemma3"), &["--mmproj", scratch.join("m.gguf").to_str().unwrap()]);
    assert!(err.ends_with("no projector to write: config.json names no vision or audio tower"), "{err}");
    let err = run(&fixture("gemma3-vision"), &["--mmproj-type", "q4_0"]);
    assert!(err.contains("--mmproj-type q4_0: a projector file is f32, f16, bf16 or q8_0"), "{err}");
    // Gemma 3n with its towers (the fixture's text model saved as Gemma3nForConditionalGeneration).
    let gemma3n = common::with_tensors(
        &fixture("gemma3n"),
        "gemma3n-conditional-generation",
        |n| n.replacen("model.", "model.language_model.", 1),
        &[],
    );
    let text_config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(gemma3n.join("config.json")).unwrap()).unwrap();
    let config = serde_json::json!({"architectures": ["Gemma3nForConditionalGeneration"], "text_config": text_config});
    std::fs::write(gemma3n.join("config.json"), config.to_string()).unwrap();
    let err = run(&gemma3n, &["--mmproj-type", "f16"]);
    assert!(
        err.ends_with("strata does not convert Gemma 3n's MobileNetV5 vision and USM conformer audio towers yet"),
        "{err}"
    );
    // An audio tower whose first convolution is not as wide as the mel bins: llama.cpp's audio
    // graph would stop on an assertion.
    let narrow = common::with_tensors(&fixture("gemma4-av"), "gemma4-av-narrow", |n| n.into(), &[]);
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(narrow.join("config.json")).unwrap()).unwrap();
    config["audio_config"]["subsampling_conv_channels"] = serde_json::json!([64, 4]);
    std::fs::write(narrow.join("config.json"), config.to_string()).unwrap();
    let err = run(&narrow, &[]);
    assert!(
        err.ends_with(
            "subsampling_conv_channels[0] is 64, not the 128 mel bins, which llama.cpp's audio graph assumes"
        ),
        "{err}"
    );
    let missing = common::with_tensors(
        &fixture("gemma3-vision"),
        "gemma3-vision-no-post-ln",
        |n| n.replace("post_layernorm.bias", "head.unused"),
        &[],
    );
    let err = run(&missing, &[]);
    assert!(err.ends_with("the checkpoint has no tensor for the projector's v.post_ln.bias"), "{err}");
    let unnormalized =
        common::with_tensors(&fixture("gemma3-vision"), "gemma3-vision-no-preprocessor", |n| n.into(), &[]);
    std::fs::remove_file(unnormalized.join("preprocessor_config.json")).unwrap();
    let err = run(&unnormalized, &[]);
    assert!(err.contains("image_mean is null, not three numbers"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // Towers strata does not convert yet are said, and the text model is written.
    let text = strata_ok(&["convert", gemma3n.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(
        text.contains("no projector file: strata does not convert Gemma 3n's MobileNetV5 vision and USM conformer audio towers yet"),
        "{text}"
    );
    assert!(out.exists());
}

/// Where llama.cpp computes a fixture's model otherwise than transformers: the logits file
/// transformers makes when patched to llama.cpp's convention (scripts/fixtures/make_fixtures.py,
/// LLAMA_CPP_CONVENTIONS), which the F32 and F16 conversions must match as closely as the other
/// fixtures match transformers; and bounds on the F32 file against unpatched transformers, a
/// little above what was measured.
///
/// gemma3n: llama.cpp's activation sparsity (gaussian_topk, src/models/gemma3n.cpp) divides the
/// variance by n - 1 where transformers divides by n (torch.std(unbiased=False)). On this
/// fixture's 96-wide FFN that moves each cut-off by sqrt(96/95) - 1 = 0.5% of a standard
/// deviation, and the logits by up to 4.9% of the largest (measured: relative 0.0491, top-1 1.0,
/// max KL 2.3e-4, mean KL 9.5e-6); with llama.cpp's convention in transformers the same file
/// agrees to 0.0012 (max KL 1.6e-7). Gemma 3n E2B's and E4B's FFNs are 8192 and 16384 wide:
/// there the factor is 6e-5 and 3e-5. (llama.cpp also hard-codes the 0.95 quantile as
/// 1.6448533, 2 ulp from torch's float32 1.6448536; that moves the logits by under 1e-6.)
///
/// gemma4-moe: not the layout but llama.cpp's CPU arithmetic, in every model, whatever the
/// weights' type: flash attention gets its keys and values in F16 (src/llama-graph.cpp casts
/// an F32 cache to F16 before ggml_flash_attn_ext, so `--cache-type-k f32` changes nothing),
/// and GELU is read from a table of F16 values at the input rounded to F16 (GGML_GELU_FP16 in
/// ggml/src/ggml-cpu/vec.h). This fixture has two GELUs per layer (dense MLP and experts) and
/// reaches relative 0.0066 against plain transformers (top-1 1.0, max KL 3.9e-6, mean KL
/// 4.7e-7), over the 5e-3 the others meet (the dense gemma4 fixture: 0.0037); with both
/// roundings in transformers the same file agrees to 0.00084 (max KL 6.3e-8). Either rounding
/// alone does not explain it (F16 K/V only: 0.0040; F16 GELU only: 0.0075). The MoE part itself
/// (router, per-expert scales, packed gate_up, the three extra norms) computes alike.
///
/// gemma3-vision: the same two roundings, in a dense Gemma 3 whose random weights put two logits
/// of one position within them: against plain transformers relative 0.0120, top-1 74 of 75, max
/// KL 3.7e-5; with both roundings in transformers relative 0.00074, max KL 2.0e-7. (Its file is
/// byte for byte llama.cpp's converter's, so llama.cpp computes the same.) gemma4-av, gemma4-cg's
/// text model with other random weights: relative 0.0055 against plain transformers (top-1 75 of
/// 75, max KL 2.3e-6), 0.00042 with both roundings (max KL 1.4e-8).
const LLAMA_CPP_CONVENTIONS: &[(&str, &str, Bounds)] = &[
    ("gemma3n", "reference-unbiased-std.logits", Bounds { relative: 0.06, top1: 1.0, kl_max: 5e-4 }),
    ("gemma4-moe", "reference-llama-cpp-cpu.logits", Bounds { relative: 0.008, top1: 1.0, kl_max: 1e-5 }),
    ("gemma3-vision", "reference-llama-cpp-cpu.logits", Bounds { relative: 0.015, top1: 0.98, kl_max: 5e-5 }),
    ("gemma4-av", "reference-llama-cpp-cpu.logits", Bounds { relative: 0.007, top1: 1.0, kl_max: 1e-5 }),
];

/// The logits the F32 and F16 files must match tightly: transformers', or where llama.cpp
/// computes the model otherwise, transformers' with llama.cpp's convention.
fn tight_reference(name: &str) -> &'static str {
    LLAMA_CPP_CONVENTIONS.iter().find(|(n, _, _)| *n == name).map_or("reference.logits", |(_, reference, _)| reference)
}

/// Bounds on logits against a reference: largest difference relative to the largest reference
/// logit, least top-1 agreement, largest KL divergence.
struct Bounds {
    relative: f64,
    top1: f64,
    kl_max: f64,
}

/// What an F32 conversion must meet against the reference it computes alike.
const F32_BOUNDS: Bounds = Bounds { relative: 5e-3, top1: 1.0, kl_max: 1e-4 };

fn assert_within(what: &str, r: &serde_json::Value, b: &Bounds) {
    assert!(
        f(r, "relative_max_diff") <= b.relative,
        "{what}: logits differ by {} (relative)",
        f(r, "relative_max_diff")
    );
    assert!(f(r, "top1_agreement") >= b.top1, "{what}: top-1 agreement {}", f(r, "top1_agreement"));
    assert!(f(r, "kl_max") <= b.kl_max, "{what}: max KL {}", f(r, "kl_max"));
}

#[test]
fn f32_logits_match_transformers_at_every_position() {
    for name in FIXTURES {
        let gguf = convert(name, "f32", &[]);
        let reference = tight_reference(name);
        let r = against(name, reference, &gguf);
        eprintln!("{name} f32 against {reference}: {r}");
        assert_within(&format!("{name} against {reference}"), &r, &F32_BOUNDS);
        if let Some((_, _, measured)) = LLAMA_CPP_CONVENTIONS.iter().find(|(n, _, _)| n == name) {
            let r = against_transformers(name, &gguf);
            eprintln!("{name} f32 against transformers: {r}");
            assert_within(&format!("{name} against transformers"), &r, measured);
        }
    }
}

#[test]
fn f16_logits_stay_within_a_stated_bound() {
    for name in FIXTURES {
        let r = against(name, tight_reference(name), &convert(name, "f16", &[]));
        eprintln!("{name} f16: {r}");
        // F16 weights: 11-bit mantissas, so about 1e-3 relative error per weight.
        assert!(f(&r, "relative_max_diff") <= 5e-2, "{name}: {}", f(&r, "relative_max_diff"));
        assert!(f(&r, "kl_max") <= 1e-3, "{name}: {}", f(&r, "kl_max"));
    }
}

#[test]
fn q8_0_is_no_further_from_transformers_than_llama_cpp_two_steps() {
    let cases: &[(&str, &[&str], &str)] = &[
        ("gemma4", &["--ple-type", "q8_0"], "llamacpp-q8_0.gguf"),
        ("gemma4", &["--ple-type", "q4_0"], "llamacpp-q8_0-ple-q4_0.gguf"),
        ("gemma3n", &["--ple-type", "q8_0"], "llamacpp-q8_0.gguf"),
        ("gemma3n", &["--ple-type", "q4_0"], "llamacpp-q8_0-ple-q4_0.gguf"),
        // Its PLE rows (3 layers x 8) are 24 wide: no 32-block type fits, both fall back to F16.
        ("gemma4-cg", &[], "llamacpp-q8_0.gguf"),
        ("gemma4-av", &[], "llamacpp-q8_0.gguf"),
        ("gemma4-moe", &[], "llamacpp-q8_0.gguf"),
        ("gemma3", &[], "llamacpp-q8_0.gguf"),
        ("gemma3-vision", &[], "llamacpp-q8_0.gguf"),
        ("qwen3", &[], "llamacpp-q8_0.gguf"),
        ("llama", &[], "llamacpp-q8_0.gguf"),
    ];
    for (name, extra, reference) in cases {
        let ours_path = convert(name, "q8_0", extra);
        let theirs_path = fixture(name).join(reference);
        let types = |p: &Path| {
            tensor_data(p).into_iter().map(|(n, s, t, _)| (n, s, t)).collect::<std::collections::BTreeSet<_>>()
        };
        assert_eq!(
            types(&ours_path),
            types(&theirs_path),
            "{name} {extra:?}: tensor types differ from llama-quantize's"
        );
        let (ours, theirs) = (against_transformers(name, &ours_path), against_transformers(name, &theirs_path));
        eprintln!("{name} q8_0 {extra:?}: ours {ours}\n  llama.cpp {theirs}");
        assert!(
            f(&ours, "kl_max") <= 1.5 * f(&theirs, "kl_max"),
            "{name} {extra:?}: max KL {} vs llama.cpp's {}",
            f(&ours, "kl_max"),
            f(&theirs, "kl_max")
        );
        assert!(
            f(&ours, "kl_mean") <= 1.5 * f(&theirs, "kl_mean"),
            "{name} {extra:?}: mean KL {} vs llama.cpp's {}",
            f(&ours, "kl_mean"),
            f(&theirs, "kl_mean")
        );
    }
}

#[test]
fn converted_tokenizer_gives_transformers_ids() {
    // The prompt of scripts/fixtures/make_fixtures.py; its ids (with BOS) head reference.logits.
    const PROMPT: &str = "<start_of_turn>user\nWhat does llama.cpp do with 4096 tokens?  Tabs\tand    spaces,\n\nand ünïcödé — 日本語.<end_of_turn>\n<start_of_turn>model\n";
    // Not qwen3 nor llama: their fixtures borrow the Gemma SentencePiece model (no dummy prefix),
    // for which llama.cpp (given no add_space_prefix=false, as its converter writes none for Qwen
    // or Llama) adds a space after special tokens; released Qwen and Llama 3 models ship a
    // byte-level BPE tokenizer.json, the path that convert_real_weights.rs checks with SmolLM2's,
    // and Llama 2's SentencePiece model has the dummy prefix llama.cpp assumes.
    for name in ["gemma4", "gemma3n", "gemma4-cg", "gemma4-moe", "gemma3"] {
        let logits = std::fs::read(fixture(name).join("reference.logits")).unwrap();
        let n = u32::from_le_bytes(logits[12..16].try_into().unwrap()) as usize;
        let expected: Vec<i64> =
            (0..n).map(|i| u32::from_le_bytes(logits[16 + 4 * i..20 + 4 * i].try_into().unwrap()) as i64).collect();
        let gguf = convert(name, "f32", &[]);
        let out = strata_ok(&["tokenize", gguf.to_str().unwrap(), "--add-special", "--json", "-p", PROMPT]);
        let ids: Vec<i64> = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(ids, expected, "{name}");
    }
}
