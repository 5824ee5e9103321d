//! Helpers shared by the end-to-end tests: where the binary, the real models and the
//! reference Python are. `scripts/setup/setup.sh` provides the models and the Python; a test that
//! finds them missing fails and says so (it never skips).

#![allow(dead_code)]

pub mod serve;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
pub const GEMMA3: &str = "gemma-3-270m-q4_k_m.gguf";

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A real model from `.models/` (fetched by scripts/setup/setup.sh).
pub fn model(name: &str) -> PathBuf {
    let path = repo().join(".models").join(name);
    assert!(path.is_file(), "{} is missing: run scripts/setup/setup.sh first", path.display());
    path
}

/// The Python with `gguf` installed (scripts/setup/setup.sh makes `.venv`).
pub fn python() -> PathBuf {
    let path = repo().join(".venv/bin/python");
    assert!(path.is_file(), "{} is missing: run scripts/setup/setup.sh first", path.display());
    path
}

/// The strata binary, ready for arguments. Tests run side by side on few cores, and
/// llama.cpp's OpenMP threads spin while they wait, so each busy-waits on the others' cores:
/// the passive wait policy took the real-model runner tests from 222 s to 24 s on two cores.
pub fn strata_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
    command.env("OMP_WAIT_POLICY", "PASSIVE");
    command
}

/// Runs the strata binary with `args`.
pub fn strata(args: &[&str]) -> Output {
    strata_command().args(args).output().expect("run strata")
}

/// Runs strata and returns its stdout, failing the test with its stderr if it failed.
pub fn strata_ok(args: &[&str]) -> String {
    let out = strata(args);
    assert!(out.status.success(), "strata {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Asserts that a run failed cleanly: exit status 1, exactly one line on stderr that starts
/// with "error: " and contains each of `needles`, and no panic.
pub fn assert_clean_failure(out: &Output, needles: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "expected exit 1, got {:?}; stderr: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    for needle in needles {
        assert!(lines[0].contains(needle), "error line lacks {needle:?}: {stderr}");
    }
    stderr
}

/// A fresh, empty scratch folder for this test process.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("strata-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A scratch file holding `bytes`.
pub fn scratch_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("strata-test-{}-files", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// `strata generate --json` for "What is the capital of France?" through the model's chat
/// template, greedy, with a plain system prompt (see the README on SmolLM2's default one).
pub fn ask_capital_of_france(model: &Path) -> serde_json::Value {
    let out = strata_ok(&[
        "generate",
        model.to_str().unwrap(),
        "--chat",
        "--system",
        "You are a helpful assistant.",
        "-p",
        "What is the capital of France?",
        "--temp",
        "0",
        "-n",
        "32",
        "--json",
    ]);
    serde_json::from_str(&out).expect("generate --json prints one JSON object")
}

/// Runs one of llama.cpp's own tools built by scripts/setup/build_llama_tools.sh (`imatrix`,
/// `quantize`); returns its output (stdout and stderr), failing the test with it if it failed.
pub fn llama_tool(tool: &str, args: &[&str]) -> String {
    let out = llama_tool_output(tool, args);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "llama-{tool} {args:?} failed: {text}");
    text
}

/// Runs one of llama.cpp's own tools (see [`llama_tool`]), whatever its exit status.
pub fn llama_tool_output(tool: &str, args: &[&str]) -> Output {
    let path = repo().join(".llama-tools/bin").join(format!("llama-{tool}"));
    assert!(path.is_file(), "{} is missing: run scripts/setup/build_llama_tools.sh", path.display());
    Command::new(&path).args(args).env("OMP_WAIT_POLICY", "PASSIVE").output().unwrap()
}

/// Each tensor of a GGUF file: name, shape, type name and data bytes, in file order.
pub fn tensor_data(path: &Path) -> Vec<(String, Vec<u64>, String, Vec<u8>)> {
    let g = strata_gguf::GgufFile::open(path).unwrap();
    let data = std::fs::read(path).unwrap();
    g.tensors
        .iter()
        .map(|t| {
            let start = (g.data_offset + t.offset) as usize;
            (
                t.name.clone(),
                t.shape.clone(),
                t.ty.name().to_string(),
                data[start..start + t.n_bytes() as usize].to_vec(),
            )
        })
        .collect()
}

/// A copy of the Hugging Face folder `dir` (in a scratch folder named `name`) whose
/// model.safetensors also holds `lm_head.weight`, a copy of the tensor `embedding`: what AutoAWQ
/// and some fine-tune exports write for a model that ties its output to the embedding.
pub fn with_lm_head(dir: &Path, embedding: &str, name: &str) -> PathBuf {
    with_tensors(dir, name, |n| n.to_string(), &[("lm_head.weight", embedding)])
}

/// A copy of the Hugging Face folder `dir` (in a scratch folder named `name`) whose
/// model.safetensors holds each tensor under the name `rename` gives it, and the `extra` tensors
/// `(name, the tensor whose bytes it copies)`, named as they are given.
pub fn with_tensors(dir: &Path, name: &str, rename: impl Fn(&str) -> String, extra: &[(&str, &str)]) -> PathBuf {
    let out = scratch_dir(name);
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() && path.file_name().unwrap() != "model.safetensors" {
            std::fs::copy(&path, out.join(path.file_name().unwrap())).unwrap();
        }
    }
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let mut data = bytes[8 + n..].to_vec();
    let mut renamed: serde_json::Map<String, serde_json::Value> = header
        .iter()
        .map(|(k, v)| if k == "__metadata__" { (k.clone(), v.clone()) } else { (rename(k), v.clone()) })
        .collect();
    for (extra_name, source) in extra {
        let mut entry = header[*source].clone();
        let offsets: Vec<usize> =
            entry["data_offsets"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let start = data.len();
        entry["data_offsets"] = serde_json::json!([start, start + offsets[1] - offsets[0]]);
        data.extend_from_within(offsets[0]..offsets[1]);
        renamed.insert(extra_name.to_string(), entry);
    }
    let mut head = serde_json::to_vec(&renamed).unwrap();
    head.resize(head.len().div_ceil(8) * 8, b' ');
    let mut file = Vec::with_capacity(8 + head.len() + data.len());
    file.extend_from_slice(&(head.len() as u64).to_le_bytes());
    file.extend_from_slice(&head);
    file.extend_from_slice(&data);
    std::fs::write(out.join("model.safetensors"), file).unwrap();
    out
}
