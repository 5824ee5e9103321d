//! `strata imatrix` against llama.cpp's llama-imatrix, built by scripts/setup/build_llama_tools.sh
//! against the very llama.cpp strata links: on the two real models, the same text, context and
//! chunks give the same tensors and values (within 1e-4 relative; in practice identical), and
//! each tool reads the other's files, in both formats.
//!
//! The text is tests/fixtures/imatrix/calibration.txt (the first 6000 characters of Python
//! 3.11's pydoc topics, sorted by name), in 6 chunks of 128 tokens. llama-imatrix runs with
//! `-b 128`, one chunk per batch as strata runs them: at its default batch of 2048 it packs 16
//! chunks into one batch as parallel sequences, whose attention is computed in another order;
//! that moved SmolLM2's perplexity from 11.8262 to 11.8604 and late layers' ffn_down sums by up
//! to 7% (measured), a difference of batching, not of collection.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{assert_clean_failure, model, python, scratch_dir, scratch_file, strata, strata_ok, GEMMA3, SMOLLM2};
use strata_gguf::{Imatrix, ImatrixEntry, ImatrixFormat};

/// Relative to the repository (the tests' working folder), so both tools record the same name.
const CALIBRATION: &str = "tests/fixtures/imatrix/calibration.txt";

/// Runs llama.cpp's llama-imatrix.
fn llama_imatrix(args: &[&str]) -> String {
    common::llama_tool("imatrix", args)
}

fn bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The GGUF file's metadata and tensor table as gguf-py's GGUFReader sees them.
fn gguf_py_structure(path: &Path) -> serde_json::Value {
    let script = r#"
import json, sys
from gguf import GGUFReader
r = GGUFReader(sys.argv[1])
fields = {k: [int(t) for t in f.types] for k, f in r.fields.items()}
fields["general.type"] = bytes(r.fields["general.type"].parts[-1]).decode()
fields["imatrix.datasets"] = [bytes(r.fields["imatrix.datasets"].parts[i]).decode() for i in r.fields["imatrix.datasets"].data]
for k in ("imatrix.chunk_count", "imatrix.chunk_size"):
    fields[k] = int(r.fields[k].parts[-1][0])
tensors = [[t.name, t.tensor_type.name, [int(d) for d in t.shape], int(t.data_offset)] for t in r.tensors]
print(json.dumps({"fields": fields, "tensors": tensors}))
"#;
    let out = Command::new(python()).args(["-c", script, path.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "GGUFReader on {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Both tools on one model: collection and perplexity over `chunks` chunks, and (`exchange`)
/// each reading the other's files.
fn same_as_llama_imatrix(model_path: &Path, chunks: u32, exchange: bool) -> Imatrix {
    let model_file = model_path.file_name().unwrap().to_str().unwrap();
    let dir = scratch_dir(&format!("imatrix-{model_file}"));
    let at = |name: &str| -> PathBuf { dir.join(name) };
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();
    let m = model_path.to_str().unwrap();
    let chunks = chunks.to_string();
    let run = ["-f", CALIBRATION, "-c", "128", "--chunks", &chunks, "-t", "2"];

    let said = llama_imatrix(&[&["-m", m, "-b", "128", "-o", &s(&at("theirs.gguf"))], &run[..]].concat());
    let report = strata_ok(&[&["imatrix", m, "-o", &s(&at("ours.gguf")), "--json"], &run[..]].concat());
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();

    // The same file structure, read by gguf-py; the same counts; the same sums.
    assert_eq!(
        gguf_py_structure(&at("ours.gguf")),
        gguf_py_structure(&at("theirs.gguf")),
        "{model_file}: the files' structure differs"
    );
    let (ours, theirs) = (Imatrix::read(&at("ours.gguf")).unwrap(), Imatrix::read(&at("theirs.gguf")).unwrap());
    assert_eq!(
        (ours.chunk_count.to_string(), ours.chunk_size, &ours.datasets),
        (chunks.clone(), 128, &vec![CALIBRATION.to_string()])
    );
    assert_eq!(ours.entries.keys().collect::<Vec<_>>(), theirs.entries.keys().collect::<Vec<_>>());
    let mut worst = (0.0f64, String::new());
    for (tensor, t) in &theirs.entries {
        let o = &ours.entries[tensor];
        assert_eq!(o.counts, t.counts, "{model_file}: {tensor}'s counts");
        for (&a, &b) in o.sums.iter().zip(&t.sums) {
            let rel = (a as f64 - b as f64).abs() / (b as f64).abs().max(1e-30);
            if rel > worst.0 {
                worst = (rel, format!("{tensor}: strata {a}, llama-imatrix {b}"));
            }
        }
    }
    assert!(worst.0 <= 1e-4, "{model_file}: largest relative difference {:.2e} at {}", worst.0, worst.1);

    // The perplexity llama-imatrix printed, to its four decimals.
    let printed = said
        .lines()
        .find_map(|l| l.split_once("Final estimate: PPL = "))
        .map(|(_, r)| r.to_string())
        .expect("llama-imatrix prints its estimate");
    let (ppl, error) = printed.split_once(" +/- ").unwrap();
    for (ours, printed, unit) in
        [(report["ppl"].as_f64().unwrap(), ppl, 1e-4), (report["ppl_error"].as_f64().unwrap(), error.trim(), 1e-5)]
    {
        assert!(
            (ours - printed.parse::<f64>().unwrap()).abs() <= 0.51 * unit,
            "{model_file}: strata's {ours}, llama-imatrix printed {printed}"
        );
    }
    if !exchange {
        return ours;
    }

    // Each tool reads the other's files and writes them back unchanged: GGUF through both, and
    // the legacy format as llama-imatrix writes it from the GGUF one.
    let combine = |tool: &str, input: &PathBuf, output: &PathBuf| {
        let args = ["--in-file", &s(input), "-c", "128", "-o", &s(output)];
        match tool {
            "strata" => drop(strata_ok(&[&["imatrix", m], &args[..]].concat())),
            _ => drop(llama_imatrix(
                &[&["-m", m, "--output-format", if s(output).ends_with(".dat") { "dat" } else { "gguf" }], &args[..]]
                    .concat(),
            )),
        }
    };
    combine("llama", &at("theirs.gguf"), &at("theirs.dat"));
    combine("strata", &at("theirs.gguf"), &at("strata-from-theirs.gguf"));
    combine("strata", &at("theirs.gguf"), &at("strata-from-theirs.dat"));
    combine("llama", &at("ours.gguf"), &at("llama-from-ours.gguf"));
    assert!(
        bytes(&at("strata-from-theirs.gguf")) == bytes(&at("theirs.gguf")),
        "{model_file}: strata rewrote llama-imatrix's GGUF file differently"
    );
    assert!(
        bytes(&at("strata-from-theirs.dat")) == bytes(&at("theirs.dat")),
        "{model_file}: strata's legacy file differs from llama-imatrix's"
    );
    assert!(
        bytes(&at("llama-from-ours.gguf")) == bytes(&at("ours.gguf")),
        "{model_file}: llama-imatrix rewrote strata's GGUF file differently"
    );
    combine("strata", &at("theirs.dat"), &at("strata-from-dat.dat"));
    combine("llama", &at("theirs.dat"), &at("llama-from-dat.dat"));
    assert!(
        bytes(&at("strata-from-dat.dat")) == bytes(&at("llama-from-dat.dat")),
        "{model_file}: the tools read the legacy file differently"
    );

    // A quantizer's weights are the same from either format.
    let dat = Imatrix::read(&at("theirs.dat")).unwrap();
    assert!(dat.legacy && dat.chunk_count == 6 && dat.datasets == theirs.datasets);
    for tensor in theirs.entries.keys() {
        let (a, b) = (theirs.weights(tensor).unwrap(), dat.weights(tensor).unwrap());
        assert!(
            a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= 1e-6 * x.abs().max(1e-30)),
            "{model_file}: {tensor}'s weights differ between the formats"
        );
    }

    // Two files combine as llama-imatrix combines them.
    let twice = |tool: &str, output: &PathBuf| {
        let args =
            ["--in-file", &s(&at("theirs.gguf")), "--in-file", &s(&at("theirs.gguf")), "-c", "128", "-o", &s(output)];
        match tool {
            "strata" => drop(strata_ok(&[&["imatrix", m], &args[..]].concat())),
            _ => drop(llama_imatrix(&[&["-m", m], &args[..]].concat())),
        }
    };
    twice("strata", &at("strata-twice.gguf"));
    twice("llama", &at("llama-twice.gguf"));
    assert!(bytes(&at("strata-twice.gguf")) == bytes(&at("llama-twice.gguf")), "{model_file}: combined files differ");
    assert_eq!(Imatrix::read(&at("strata-twice.gguf")).unwrap().chunk_count, 12);
    ours
}

#[test]
fn imatrix_is_llama_imatrix_on_smollm2() {
    same_as_llama_imatrix(&model(SMOLLM2), 6, true);
}

#[test]
fn imatrix_is_llama_imatrix_on_gemma3() {
    same_as_llama_imatrix(&model(GEMMA3), 6, true);
}

/// Expert products (MUL_MAT_ID): one row of sums and one count per expert, on the tiny random
/// Gemma 4 mixture-of-experts fixture as llama.cpp converted it.
#[test]
fn imatrix_is_llama_imatrix_per_expert() {
    let fixture = common::repo().join("tests/fixtures/models/gemma4-moe/llamacpp-f32.gguf");
    let ours = same_as_llama_imatrix(&fixture, 4, false);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.with_file_name("config.json")).unwrap()).unwrap();
    let (n_experts, per_token) = (config["num_experts"].as_u64().unwrap(), config["top_k_experts"].as_u64().unwrap());
    let experts = &ours.entries["blk.0.ffn_down_exps.weight"];
    assert_eq!(experts.counts.len() as u64, n_experts);
    let tokens = ours.entries["blk.0.ffn_down.weight"].counts[0];
    assert_eq!(experts.counts.iter().sum::<u64>(), tokens * per_token, "each token routed to {per_token} experts");
}

/// A one-entry matrix of `width` channels.
fn tiny(width: usize) -> Imatrix {
    let entry = ImatrixEntry { sums: (0..width).map(|i| i as f32).collect(), counts: vec![128] };
    Imatrix {
        entries: [("blk.0.attn_k.weight".to_string(), entry)].into(),
        datasets: vec!["t.txt".into()],
        chunk_count: 1,
        chunk_size: 128,
        legacy: false,
    }
}

#[test]
fn imatrix_bad_input_fails_cleanly() {
    let dir = scratch_dir("imatrix-bad");
    let out = dir.join("out.gguf");
    let (model_path, o) = (model(SMOLLM2), out.to_str().unwrap());
    let m = model_path.to_str().unwrap();
    let (narrow, wide, legacy) = (dir.join("narrow.gguf"), dir.join("wide.gguf"), dir.join("tiny.dat"));
    tiny(576).write(&narrow, ImatrixFormat::Gguf).unwrap();
    tiny(640).write(&wide, ImatrixFormat::Gguf).unwrap();
    tiny(576).write(&legacy, ImatrixFormat::Dat).unwrap();
    let dat = bytes(&legacy);
    let truncated = scratch_file("truncated.dat", &dat[..dat.len() / 2]);
    let cases: Vec<(Vec<&str>, Vec<String>)> = vec![
        (
            vec!["--in-file", truncated.to_str().unwrap()],
            vec![truncated.display().to_string(), "truncated at byte".into()],
        ),
        (
            vec!["--in-file", m],
            vec![
                m.to_string(),
                "not a valid imatrix file".into(),
                "it is a llama model, not an importance matrix".into(),
            ],
        ),
        (
            vec!["--in-file", narrow.to_str().unwrap(), "--in-file", wide.to_str().unwrap()],
            vec![wide.display().to_string(), "blk.0.attn_k.weight has 640 values, the others have 576".into()],
        ),
        (vec!["-f", CALIBRATION, "-c", "4096"], vec![CALIBRATION.into(), "need at least 8192".into()]),
        (
            vec!["-f", CALIBRATION, "-c", "128", "--chunk", "100"],
            vec![CALIBRATION.into(), "skipping 100 chunks".into()],
        ),
        (vec!["-f", "/nonexistent.txt"], vec!["/nonexistent.txt".into(), "cannot read".into()]),
    ];
    for (extra, needles) in cases {
        let mut args = vec!["imatrix", m, "-o", o];
        args.extend(extra);
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        assert_clean_failure(&strata(&args), &needles);
        assert!(!out.exists(), "{args:?} left an output behind");
    }
}
