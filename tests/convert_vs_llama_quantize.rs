//! `strata convert` against llama.cpp's llama-quantize (built by scripts/setup/build_llama_tools.sh
//! against the very llama.cpp strata links): from the same weights, with the same importance
//! matrix or without one, every preset gives the same tensor types and the same bytes, and the
//! same `quantize.imatrix.*` record. llama-quantize reads strata's own F32 conversion, so both
//! quantize the same values (the checkpoints are F16 or BF16, exact in F32).
//!
//! The importance matrices come from `strata imatrix` (tests/imatrix.rs checks it against
//! llama-imatrix) over tests/fixtures/imatrix/calibration.txt.

mod common;

use std::path::{Path, PathBuf};

use common::{
    assert_clean_failure, llama_tool, model, repo, scratch_dir, strata, strata_ok, tensor_data, GEMMA3, SMOLLM2,
};
use strata_gguf::GgufFile;

const CALIBRATION: &str = "tests/fixtures/imatrix/calibration.txt";

/// `strata imatrix` of a GGUF model over `chunks` chunks of 128 tokens.
fn imatrix_of(gguf: &Path, chunks: u32, out: &Path) {
    strata_ok(&[
        "imatrix",
        gguf.to_str().unwrap(),
        "-f",
        CALIBRATION,
        "-c",
        "128",
        "--chunks",
        &chunks.to_string(),
        "-t",
        "2",
        "-o",
        out.to_str().unwrap(),
    ]);
}

fn convert(model: &Path, out: &Path, extra: &[&str]) {
    strata_ok(&[&["convert", model.to_str().unwrap(), "-o", out.to_str().unwrap()], extra].concat());
}

/// The `quantize.imatrix.*` metadata of a GGUF file.
fn imatrix_record(path: &Path) -> Vec<(String, strata_gguf::Value)> {
    GgufFile::open(path).unwrap().metadata.into_iter().filter(|(k, _)| k.starts_with("quantize.imatrix.")).collect()
}

/// For each preset (with its extra flags, which are also llama-quantize's): strata's conversion
/// of `model` and llama-quantize's of `f32` (strata's F32 conversion of it), both weighted by
/// `imatrix` or both without one, hold the same tensors, types and bytes, and record the
/// imatrix alike.
fn same_as_llama_quantize(model: &Path, f32: &Path, imatrix: Option<&Path>, dir: &Path, cases: &[(&str, &[&str])]) {
    let name = model.file_name().unwrap().to_str().unwrap();
    let with: Vec<&str> = imatrix.map_or(vec![], |i| vec!["--imatrix", i.to_str().unwrap()]);
    for (preset, extra) in cases {
        let label = format!("{name} {preset} {extra:?} {with:?}");
        let ours = dir.join(format!("ours-{preset}-{}-{}.gguf", extra.len(), with.len()));
        let theirs = dir.join(format!("theirs-{preset}-{}-{}.gguf", extra.len(), with.len()));
        convert(model, &ours, &[&["--type", preset], *extra, &with].concat());
        llama_tool(
            "quantize",
            &[*extra, &with, &[f32.to_str().unwrap(), theirs.to_str().unwrap(), preset, "2"]].concat(),
        );
        // By name: llama-quantize writes the tensors in its loader's order.
        let sorted = |p: &Path| {
            let mut v = tensor_data(p);
            v.sort();
            v
        };
        let (o, t) = (sorted(&ours), sorted(&theirs));
        assert_eq!(
            o.iter().map(|x| &x.0).collect::<Vec<_>>(),
            t.iter().map(|x| &x.0).collect::<Vec<_>>(),
            "{label}: tensor names"
        );
        for ((n, shape, ty, bytes), (_, tshape, tty, tbytes)) in o.iter().zip(&t) {
            assert_eq!((shape, ty), (tshape, tty), "{label}: {n}'s shape and type");
            assert!(bytes == tbytes, "{label}: {n} ({ty}) holds other bytes than llama-quantize's");
        }
        let record = imatrix_record(&ours);
        assert_eq!(record.len(), 2 * with.len(), "{label}: {record:?}");
        assert_eq!(record, imatrix_record(&theirs), "{label}: the quantize.imatrix record");
        // Gemma 3's files are 0.2-0.5 GB each: keep the disk for the next case.
        std::fs::remove_file(&ours).unwrap();
        std::fs::remove_file(&theirs).unwrap();
    }
}

/// Every quantized preset, llama-quantize's names.
const PRESETS: &[&str] = &[
    "q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k_s", "q3_k_m", "q3_k_l", "q4_k_s", "q4_k_m", "q5_k_s", "q5_k_m",
    "q6_k", "iq4_nl", "iq4_xs",
];

/// SmolLM2's F16 checkpoint folder, its F32 conversion for llama-quantize, and strata's imatrix
/// of the published GGUF, in `dir`.
fn smollm2(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let hf = repo().join(".models/SmolLM2-135M-Instruct-hf");
    let imatrix = dir.join("smollm2.imatrix");
    imatrix_of(&model(SMOLLM2), 3, &imatrix);
    let f32 = dir.join("f32.gguf");
    convert(&hf, &f32, &["--type", "f32"]);
    (hf, f32, imatrix)
}

#[test]
fn smollm2_every_preset_matches_llama_quantize_without_an_imatrix() {
    let dir = scratch_dir("convert-smollm2-plain");
    let (hf, f32, _) = smollm2(&dir);
    let cases: Vec<(&str, &[&str])> = PRESETS.iter().map(|p| (*p, &[][..])).collect();
    same_as_llama_quantize(&hf, &f32, None, &dir, &cases);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn smollm2_every_preset_matches_llama_quantize_with_an_imatrix() {
    let dir = scratch_dir("convert-imatrix-smollm2");
    let (hf, f32, imatrix) = smollm2(&dir);
    // The rows are 576 wide (K-quants fall back to 32-blocks) except ffn_down's 1536: the
    // overrides give it the 2- and 3-bit K-quants, the attention their fallback.
    let low_bits: &[&str] =
        &["--tensor-type", "ffn_down=q2_k", "--tensor-type", "attn_[qk]=q3_k", "--tensor-type", "ffn_up=q3_k"];
    let mut cases: Vec<(&str, &[&str])> = PRESETS.iter().map(|p| (*p, &[][..])).collect();
    cases.extend([("q2_k_s", &[][..]), ("q4_k_m", low_bits)]);
    same_as_llama_quantize(&hf, &f32, Some(&imatrix), &dir, &cases);

    // The weights matter: without them, the weighted tensors' bytes differ, the others' do not.
    let plain = dir.join("plain.gguf");
    convert(&hf, &plain, &["--type", "q4_k_m"]);
    let report: serde_json::Value = serde_json::from_str(&strata_ok(&[
        "convert",
        hf.to_str().unwrap(),
        "--type",
        "q4_k_m",
        "--imatrix",
        imatrix.to_str().unwrap(),
        "--dry-run",
        "--json",
    ]))
    .unwrap();
    let tensors = report["tensors"].as_array().unwrap();
    let weighted: Vec<&str> =
        tensors.iter().filter(|t| t["imatrix"] == "weighted").map(|t| t["name"].as_str().unwrap()).collect();
    // Every matrix of the 30 blocks but the Q8_0 ones (attn_v's Q6_K falls back to Q8_0).
    let q8_0 = tensors.iter().filter(|t| t["type"] == "Q8_0" && t["class"] == "attn_v").count();
    assert!(
        q8_0 > 0 && tensors.iter().filter(|t| t["type"] == "Q8_0").all(|t| t["imatrix"] == "type takes no weights"),
        "{report}"
    );
    assert_eq!(weighted.len(), 30 * 7 - q8_0, "{report}");
    let with = dir.join("weighted.gguf");
    convert(&hf, &with, &["--type", "q4_k_m", "--imatrix", imatrix.to_str().unwrap()]);
    for ((n, _, ty, a), (_, _, _, b)) in tensor_data(&plain).iter().zip(&tensor_data(&with)) {
        assert_eq!(a != b, weighted.contains(&n.as_str()), "{n} ({ty}): bytes changed by the imatrix");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn gemma3_matches_llama_quantize() {
    let dir = scratch_dir("convert-imatrix-gemma3");
    let hf = repo().join(".models/gemma-3-270m-hf");
    let imatrix = dir.join("gemma3.imatrix");
    imatrix_of(&model(GEMMA3), 2, &imatrix);
    let f32 = dir.join("f32.gguf");
    convert(&hf, &f32, &["--type", "f32"]);
    // Its 4 query heads share one KV head: the rules for grouped attention apply (q2_k, iq4_*).
    same_as_llama_quantize(
        &hf,
        &f32,
        Some(&imatrix),
        &dir,
        &[("q4_0", &[]), ("q4_k_m", &[]), ("q2_k", &[]), ("iq4_xs", &[])],
    );
    same_as_llama_quantize(&hf, &f32, None, &dir, &[("iq4_nl", &[]), ("q3_k_m", &[])]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn experts_are_weighted_each_by_their_own_entry_as_llama_quantize_does() {
    let dir = scratch_dir("convert-imatrix-moe");
    let fixture = repo().join("tests/fixtures/models/gemma4-moe");
    let f32 = dir.join("f32.gguf");
    convert(&fixture, &f32, &["--type", "f32"]);
    let imatrix = dir.join("moe.imatrix");
    imatrix_of(&f32, 2, &imatrix);
    // 3-D expert tensors: one row of weights per expert; its ffn_down rules place experts by layer.
    let entry = strata_gguf::Imatrix::read(&imatrix).unwrap();
    assert_eq!(
        entry.weights("blk.0.ffn_down_exps.weight").unwrap().len(),
        32 * 4,
        "one row of 32 per expert, 4 experts"
    );
    same_as_llama_quantize(
        &fixture,
        &f32,
        Some(&imatrix),
        &dir,
        &[("q4_0", &[]), ("q5_1", &[]), ("q4_k_m", &[]), ("q3_k_m", &[])],
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn explain_says_what_the_imatrix_weights() {
    let dir = scratch_dir("convert-imatrix-explain");
    let imatrix = dir.join("smollm2.imatrix");
    imatrix_of(&model(SMOLLM2), 1, &imatrix);
    let hf = repo().join(".models/SmolLM2-135M-Instruct-hf");
    // The tied embedding at Q4_0 (as the output projection it would be Q8_0, whose quantizer
    // takes no weights).
    let text = strata_ok(&[
        "convert",
        hf.to_str().unwrap(),
        "--type",
        "q4_0",
        "--tensor-type",
        "token_embd=q4_0",
        "--imatrix",
        imatrix.to_str().unwrap(),
        "--dry-run",
        "--explain",
    ]);
    assert!(text.contains(&format!("imatrix {}: weights 210 tensors", imatrix.display())), "{text}");
    assert!(text.contains("read with get_rows, never multiplied by an activation, so no imatrix covers them (their types are the policy's alone): token_embd.weight"), "{text}");
    let line = |name: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .to_string()
    };
    assert!(
        line("blk.0.ffn_down.weight").contains("Q4_1")
            && line("blk.0.ffn_down.weight").contains("when an imatrix is given"),
        "{text}"
    );
    assert!(
        line("blk.4.ffn_down.weight").contains("Q4_0")
            && line("blk.4.ffn_down.weight").ends_with("weighted by the imatrix"),
        "{text}"
    );
    assert!(
        line("token_embd.weight")
            .ends_with("read with get_rows, never multiplied by an activation: no imatrix covers it"),
        "{text}"
    );
    assert!(line("blk.0.attn_norm.weight").ends_with("a vector: always F32"), "{text}");
    let q8 = strata_ok(&[
        "convert",
        hf.to_str().unwrap(),
        "--type",
        "q8_0",
        "--imatrix",
        imatrix.to_str().unwrap(),
        "--dry-run",
        "--explain",
    ]);
    assert!(
        q8.lines().any(|l| l.trim_start().starts_with("blk.0.attn_q.weight")
            && l.ends_with("its type's quantizer takes no imatrix weights")),
        "{q8}"
    );
    assert!(q8.contains("weights 0 tensors"), "{q8}");
}

#[test]
fn a_wrong_or_broken_imatrix_is_one_clear_error_and_no_file() {
    let dir = scratch_dir("convert-imatrix-errors");
    let hf = repo().join(".models/SmolLM2-135M-Instruct-hf");
    let out = dir.join("out.gguf");
    let run = |imatrix: &Path| {
        strata(&[
            "convert",
            hf.to_str().unwrap(),
            "--type",
            "q4_k_m",
            "--imatrix",
            imatrix.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
    };

    // Gemma 3's matrix on SmolLM2: other widths.
    let gemma = dir.join("gemma3.imatrix");
    imatrix_of(&model(GEMMA3), 1, &gemma);
    let g = gemma.to_str().unwrap();
    assert_clean_failure(
        &run(&gemma),
        &[g, "blk.0.attn_k.weight has 640 importance values, but the tensor's rows are 576 wide", "another model"],
    );

    // Truncated, and missing.
    let bytes = std::fs::read(&gemma).unwrap();
    let cut = dir.join("cut.imatrix");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    assert_clean_failure(&run(&cut), &[cut.to_str().unwrap()]);
    let missing: PathBuf = dir.join("missing.imatrix");
    assert_clean_failure(&run(&missing), &[missing.to_str().unwrap()]);
    assert!(!out.exists(), "no output after an error");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2, "no partial files beside the inputs");
}

#[test]
fn q2_k_s_is_refused_without_importance_weights_as_llama_quantize_refuses_it() {
    let dir = scratch_dir("convert-q2_k_s");
    let (hf, f32, imatrix) = smollm2(&dir);
    let out = dir.join("out.gguf");
    let run = |extra: &[&str]| {
        strata(&[&["convert", hf.to_str().unwrap(), "--type", "q2_k_s", "-o", out.to_str().unwrap()], extra].concat())
    };
    assert_clean_failure(
        &run(&[]),
        &[hf.to_str().unwrap(), "q2_k_s needs an importance matrix (--imatrix)", "blk.3.ffn_down.weight first"],
    );
    let llama_quantize_fails = |extra: &[&str], needle: &str| {
        let out = common::llama_tool_output(
            "quantize",
            &[extra, &[f32.to_str().unwrap(), dir.join("theirs.gguf").to_str().unwrap(), "q2_k_s", "2"]].concat(),
        );
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(
            !out.status.success() && said.contains(needle),
            "llama-quantize {extra:?} did not fail with {needle:?}: {said}"
        );
    };
    llama_quantize_fails(&[], "this quantization requires an imatrix");

    // An imatrix without the entry of a Q2_K tensor (576-wide rows fall back to Q4_0; ffn_down
    // is 1536 wide, Q4_K in the first eighth of the layers).
    let mut partial = strata_gguf::Imatrix::read(&imatrix).unwrap();
    partial.entries.remove("blk.5.ffn_down.weight").unwrap();
    let partial_path = dir.join("partial.imatrix");
    partial.write(&partial_path, strata_gguf::ImatrixFormat::Gguf).unwrap();
    let p = partial_path.to_str().unwrap();
    assert_clean_failure(&run(&["--imatrix", p]), &[p, "no entry for blk.5.ffn_down.weight, which q2_k_s makes Q2_K"]);
    llama_quantize_fails(&["--imatrix", p], "Missing importance matrix for tensor blk.5.ffn_down.weight");
    assert!(!out.exists(), "no output after an error");
    std::fs::remove_dir_all(&dir).unwrap();
}
