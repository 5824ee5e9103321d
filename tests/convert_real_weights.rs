//! `strata convert` on real weights: SmolLM2-135M-Instruct and Gemma 3 270M exported from their
//! GGUFs back into Hugging Face folders (scripts/fixtures/export_gguf_to_hf.py, run by scripts/setup/setup.sh),
//! converted again.

mod common;

use std::path::{Path, PathBuf};

use serde_json::Value;

fn hf_folder() -> PathBuf {
    let dir = common::repo().join(".models/SmolLM2-135M-Instruct-hf");
    assert!(dir.join("model.safetensors").is_file(), "{} is missing: run scripts/setup/setup.sh first", dir.display());
    dir
}

fn convert(out: &Path, extra: &[&str]) -> Value {
    let mut args = vec![
        "convert",
        hf_folder().to_str().unwrap().to_string().leak() as &str,
        "-o",
        out.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    serde_json::from_str(&common::strata_ok(&args)).unwrap()
}

/// Token ids of a varied conversation as each model's tokenizer (llama.cpp's) sees it.
fn token_ids(model: &Path) -> String {
    let messages = common::scratch_dir("messages").join("m.json");
    std::fs::write(
        &messages,
        r#"[{"role":"system","content":"Numbers 1234567 and 3.14; unicode: héllo wörld — 日本語 🦙; code: fn main() { println!(\"x\"); }"},
            {"role":"user","content":"  Several   spaces\n\n\nand newlines\tand tabs <|im_end|> inside"}]"#,
    )
    .unwrap();
    let out = common::strata_ok(&[
        "template",
        model.to_str().unwrap(),
        "--messages",
        messages.to_str().unwrap(),
        "--add-generation-prompt",
        "--tokens",
    ]);
    out.lines().last().unwrap().to_string()
}

#[test]
fn q8_0_answers_paris_and_tokenizes_like_the_original() {
    let dir = common::scratch_dir("q8");
    let out = dir.join("smollm2-q8_0.gguf");
    let report = convert(&out, &["--type", "q8_0"]);
    assert_eq!(report["preset"], "q8_0");
    let answer = common::ask_capital_of_france(&out);
    assert!(answer["text"].as_str().unwrap().contains("Paris"), "{answer}");
    assert_eq!(token_ids(&out), token_ids(&common::model(common::SMOLLM2)), "llama.cpp tokenizes both files alike");
    // The tokenizer metadata llama.cpp reads is the original's.
    let ours: Value = serde_json::from_str(&common::strata_ok(&["inspect", "--json", out.to_str().unwrap()])).unwrap();
    let orig: Value = serde_json::from_str(&common::strata_ok(&[
        "inspect",
        "--json",
        common::model(common::SMOLLM2).to_str().unwrap(),
    ]))
    .unwrap();
    for key in [
        "tokenizer.ggml.model",
        "tokenizer.ggml.pre",
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.add_bos_token",
        "tokenizer.chat_template",
        "llama.rope.dimension_count",
        "llama.attention.head_count_kv",
    ] {
        assert_eq!(ours["metadata"][key], orig["metadata"][key], "{key}");
    }
}

/// SmolLM2 ties its output to the embedding (llama architecture): a copy of its folder that
/// also carries `lm_head.weight` converts to the same bytes as the folder without it.
#[test]
fn a_tied_llama_checkpoint_with_an_lm_head_converts_as_without_it() {
    let dir = common::with_lm_head(&hf_folder(), "model.embed_tokens.weight", "lm-head-smollm2");
    let with = dir.join("with.gguf");
    common::strata_ok(&["convert", dir.to_str().unwrap(), "-o", with.to_str().unwrap(), "--type", "q8_0"]);
    let without = dir.join("without.gguf");
    convert(&without, &["--type", "q8_0"]);
    let tensors = |p: &Path| common::tensor_data(p);
    assert!(tensors(&with) == tensors(&without), "the tensors differ from the conversion without lm_head");
}

#[test]
fn same_input_same_bytes_and_mixes() {
    let dir = common::scratch_dir("mixes");
    let a = dir.join("a.gguf");
    let b = dir.join("b.gguf");
    convert(&a, &["--type", "q4_k_m"]);
    convert(&b, &["--type", "q4_k_m", "--threads", "1"]);
    assert!(
        std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
        "identical inputs and options give identical bytes"
    );
    let report = convert(&dir.join("c.gguf"), &["--type", "q4_k_m", "--tensor-type", r"ffn_up=Q8_0"]);
    let plan = report["plan"].as_array().unwrap();
    let row = |class: &str, ty: &str| {
        plan.iter().find(|r| r["class"] == class && r["type"] == ty).map(|r| r["count"].as_u64().unwrap())
    };
    assert_eq!(row("ffn_up", "Q8_0"), Some(30));
    // SmolLM2's rows are 576 wide: not a multiple of 256, so Q4_K falls back to Q5_0 and says so.
    assert_eq!(row("attn_q", "Q5_0"), Some(30));
    assert!(report["fallbacks"].as_array().unwrap().iter().any(|f| f.as_str().unwrap().contains("Q4_K -> Q5_0")));
}

#[test]
fn bad_input_fails_cleanly_and_leaves_nothing() {
    let dir = common::scratch_dir("bad");
    let out = dir.join("out.gguf");
    let o = out.to_str().unwrap();
    // No config.json.
    let empty = common::scratch_dir("empty");
    let r = common::strata(&["convert", empty.to_str().unwrap(), "-o", o]);
    common::assert_clean_failure(&r, &["no config.json"]);
    // Unknown architecture.
    let weird = common::scratch_dir("weird");
    std::fs::write(weird.join("config.json"), r#"{"architectures": ["FrobnicatorForCausalLM"]}"#).unwrap();
    let r = common::strata(&["convert", weird.to_str().unwrap(), "-o", o]);
    common::assert_clean_failure(&r, &["FrobnicatorForCausalLM", "not supported", "LlamaForCausalLM"]);
    // A truncated shard.
    let cut = common::scratch_dir("cut");
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(hf_folder().join(f), cut.join(f)).unwrap();
    }
    let st = std::fs::read(hf_folder().join("model.safetensors")).unwrap();
    std::fs::write(cut.join("model.safetensors"), &st[..st.len() / 2]).unwrap();
    let r = common::strata(&["convert", cut.to_str().unwrap(), "-o", o]);
    common::assert_clean_failure(&r, &["model.safetensors", "outside the"]);
    // Options that cannot be honoured.
    let h = hf_folder();
    let r = common::strata(&["convert", h.to_str().unwrap(), "-o", o, "--tensor-type", "nothing=Q8_0"]);
    common::assert_clean_failure(&r, &["matches no tensor"]);
    let r = common::strata(&["convert", h.to_str().unwrap(), "-o", o, "--type", "q9_9"]);
    common::assert_clean_failure(&r, &["unknown preset \"q9_9\""]);
    let r = common::strata(&["convert", h.to_str().unwrap(), "-o", o, "--ple-type", "IQ1_S"]);
    common::assert_clean_failure(&r, &["--ple-type", "unsupported type"]);
    let r = common::strata(&["convert", h.to_str().unwrap(), "-o", "/nonexistent-dir/out.gguf"]);
    common::assert_clean_failure(&r, &["/nonexistent-dir/out.gguf", "cannot create"]);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "nothing is left behind");
}

#[test]
fn a_full_disk_fails_cleanly_and_leaves_nothing() {
    // The file-size limit (ulimit -f, in 512-byte blocks: 1 MiB here) stands in for a full disk.
    let dir = common::scratch_dir("full");
    let out = dir.join("out.gguf");
    let r = std::process::Command::new("sh")
        .args(["-c", "ulimit -f 2048 && exec \"$0\" \"$@\"", env!("CARGO_BIN_EXE_strata"), "convert"])
        .args([hf_folder().to_str().unwrap(), "-o", out.to_str().unwrap(), "--type", "q8_0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    let last = stderr.lines().last().unwrap_or("");
    assert_eq!(r.status.code(), Some(1), "{stderr}");
    assert!(
        last.starts_with("error: ") && last.contains(out.to_str().unwrap()) && last.contains("File too large"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "nothing is left behind");
}

#[test]
fn interrupting_a_conversion_leaves_nothing() {
    for signal in ["-INT", "-TERM"] {
        let dir = common::scratch_dir(&format!("signal{signal}"));
        let out = dir.join("out.gguf");
        let h = hf_folder();
        let mut child = common::strata_command()
            .args(["convert", h.to_str().unwrap(), "-o", out.to_str().unwrap(), "--type", "q4_k_m", "--threads", "1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until the partial file exists, then signal.
        let start = std::time::Instant::now();
        while std::fs::read_dir(&dir).unwrap().count() == 0 {
            assert!(start.elapsed().as_secs() < 30, "the conversion never started writing");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        std::process::Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "{signal}: the interrupted conversion reports failure");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "{signal}: left behind {left:?}");
    }
}

#[test]
fn generation_config_becomes_the_default_sampling() {
    let dir = common::scratch_dir("genconfig");
    let src = hf_folder();
    for f in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
        std::os::unix::fs::symlink(src.join(f), dir.join(f)).unwrap();
    }
    std::fs::write(
        dir.join("generation_config.json"),
        r#"{"temperature": 0.0, "top_k": 20, "top_p": 0.9, "repetition_penalty": 1.1}"#,
    )
    .unwrap();
    let out = common::scratch_dir("genconfig-out").join("m.gguf");
    common::strata_ok(&["convert", dir.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    let meta: Value = serde_json::from_str(&common::strata_ok(&["inspect", "--json", out.to_str().unwrap()])).unwrap();
    let m = &meta["metadata"];
    assert_eq!(m["general.sampling.temp"], 0.0);
    assert_eq!(m["general.sampling.top_k"], 20);
    assert!((m["general.sampling.top_p"].as_f64().unwrap() - 0.9).abs() < 1e-6);
    assert!((m["general.sampling.penalty_repeat"].as_f64().unwrap() - 1.1).abs() < 1e-6);
    // The runner takes them as defaults: temperature 0 is greedy, so seeds do not matter.
    let run = |seed: &str| {
        common::strata_ok(&[
            "generate",
            out.to_str().unwrap(),
            "-p",
            "Once upon a time",
            "-n",
            "12",
            "--seed",
            seed,
            "--json",
        ])
    };
    let (a, b): (Value, Value) = (serde_json::from_str(&run("1")).unwrap(), serde_json::from_str(&run("2")).unwrap());
    assert_eq!(a["text"], b["text"]);

    // A value GGUF's i32 cannot hold is an error, not a wrapped or dropped value.
    std::fs::remove_file(&out).unwrap();
    for bad in ["4294967336", "40.5", "\"40\""] {
        std::fs::write(dir.join("generation_config.json"), format!(r#"{{"top_k": {bad}}}"#)).unwrap();
        let failed = common::strata(&["convert", dir.to_str().unwrap(), "-o", out.to_str().unwrap()]);
        common::assert_clean_failure(
            &failed,
            &[&format!("generation_config.json: top_k {bad} is not a whole number in i32's range")],
        );
        assert!(!out.exists());
    }
}

#[test]
fn token_ids_match_hugging_face_tokenizers() {
    let text =
        "Hello world! Numbers 1234567 and 3.14159; unicode: héllo wörld — 日本語 🦙🦙\n\n\n   spaces   and\ttabs\n\
                fn main() { println!(\"{}\", x.len()); } // code\n<|im_start|>user\nHi<|im_end|>\n'''``` I've you're";
    let hf = tokenizers::Tokenizer::from_file(hf_folder().join("tokenizer.json")).unwrap();
    let expected: Vec<u32> = hf.encode(text, false).unwrap().get_ids().to_vec();
    let dir = common::scratch_dir("tok");
    let out = dir.join("m.gguf");
    convert(&out, &["--type", "q8_0"]);
    for model in [out, common::model(common::SMOLLM2)] {
        let ids: Vec<u32> =
            serde_json::from_str(&common::strata_ok(&["tokenize", model.to_str().unwrap(), "-p", text, "--json"]))
                .unwrap();
        assert_eq!(ids, expected, "{}: llama.cpp's ids vs Hugging Face tokenizers'", model.display());
    }
}

/// Gemma 3 270M (SentencePiece vocabulary of 262144, norms stored as 1 + w, 5:1 sliding
/// layers) from its Hugging Face export back to Q4_K_M: the published file's mix tensor by
/// tensor, llama.cpp's tokenizer giving the original's ids, and the original's greedy answer.
#[test]
fn gemma3_270m_round_trip_matches_the_published_q4_k_m() {
    let hf = common::repo().join(".models/gemma-3-270m-hf");
    assert!(hf.join("model.safetensors").is_file(), "{} is missing: run scripts/setup/setup.sh first", hf.display());
    let out = common::scratch_dir("gemma3").join("gemma3-q4_k_m.gguf");
    common::strata_ok(&["convert", hf.to_str().unwrap(), "-o", out.to_str().unwrap(), "--type", "q4_k_m"]);
    let original = common::model(common::GEMMA3);
    let types = |m: &Path| -> Vec<(String, String)> {
        let v: Value = serde_json::from_str(&common::strata_ok(&["inspect", "--json", m.to_str().unwrap()])).unwrap();
        let mut t: Vec<(String, String)> = v["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (t["name"].as_str().unwrap().into(), t["type"].as_str().unwrap().into()))
            .collect();
        t.sort();
        t
    };
    assert_eq!(types(&out), types(&original));
    let text = "Hello  world!\n\tThe Eiffel Tower, 1889 — très ünïcödé 日本語 <start_of_turn>user\n";
    let ids = |m: &Path| common::strata_ok(&["tokenize", m.to_str().unwrap(), "-p", text, "--add-special", "--json"]);
    assert_eq!(ids(&out), ids(&original));
    let answer = |m: &Path| -> String {
        let out = common::strata_ok(&[
            "generate",
            m.to_str().unwrap(),
            "-p",
            "The Eiffel Tower is located in the city of",
            "-n",
            "8",
            "--temp",
            "0",
            "--json",
        ]);
        serde_json::from_str::<Value>(&out).unwrap()["text"].as_str().unwrap().to_string()
    };
    let ours = answer(&out);
    assert!(ours.contains("Paris"), "{ours}");
    assert_eq!(ours, answer(&original));
}
