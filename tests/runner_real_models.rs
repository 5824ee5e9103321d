//! `strata generate` and `strata chat` on the two real models: answers, KV-cache reuse between
//! chat turns, determinism, and the JSON interface.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

fn generate_json(args: &[&str]) -> Value {
    let mut full = vec!["generate", "--json"];
    full.extend_from_slice(args);
    serde_json::from_str(&common::strata_ok(&full)).expect("generate --json prints one JSON object")
}

#[test]
fn smollm2_answers_paris_through_its_chat_template() {
    let model = common::model(common::SMOLLM2);
    let out = common::ask_capital_of_france(&model);
    let text = out["text"].as_str().unwrap();
    assert!(text.contains("Paris"), "answer: {text:?}");
    assert_eq!(out["stop_reason"], "eog", "{out}");
    for key in ["prompt_tokens", "generated_tokens", "prompt_tokens_per_second", "generation_tokens_per_second"] {
        assert!(out[key].as_f64().unwrap() > 0.0, "{key} in {out}");
    }
}

#[test]
fn gemma3_completes_paris_and_france() {
    let model = common::model(common::GEMMA3);
    for (prompt, expected) in [("The Eiffel Tower is located in the city of", "Paris"), ("Paris is the capital of", "France")] {
        let out = generate_json(&[model.to_str().unwrap(), "-p", prompt, "--temp", "0", "-n", "8"]);
        let text = out["text"].as_str().unwrap();
        assert!(text.contains(expected), "{prompt:?} -> {text:?}");
        assert_eq!(out["generated_tokens"], 8);
        assert_eq!(out["stop_reason"], "limit");
    }
}

#[test]
fn same_seed_same_text() {
    let model = common::model(common::SMOLLM2);
    let run = |seed: &str| {
        generate_json(&[model.to_str().unwrap(), "-p", "Once upon a time", "--temp", "0.9", "--seed", seed, "-n", "24"])["text"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(run("7"), run("7"));
    assert_ne!(run("7"), run("8"));
}

#[test]
fn stop_strings_end_the_text() {
    let model = common::model(common::GEMMA3);
    let out = generate_json(&[model.to_str().unwrap(), "-p", "Paris is the capital of", "--temp", "0", "-n", "16", "--stop", "France"]);
    assert_eq!(out["stop_reason"], "stop_string", "{out}");
    assert!(!out["text"].as_str().unwrap().contains("France"));
}

/// Runs `strata chat` with the given lines on standard input; returns stdout and stderr.
fn chat(model: &str, lines: &str, extra: &[&str]) -> (String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["chat", model, "--temp", "0", "-n", "24"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(lines.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "chat failed: {}", String::from_utf8_lossy(&out.stderr));
    (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

/// (prompt tokens, evaluated, from cache) for each "[turn N: ...]" line.
fn turns(stderr: &str) -> Vec<(usize, usize, usize)> {
    stderr
        .lines()
        .filter(|l| l.starts_with("[turn "))
        .map(|l| {
            let nums: Vec<usize> = l.split(|c: char| !c.is_ascii_digit()).filter_map(|w| w.parse().ok()).collect();
            (nums[1], nums[2], nums[3])
        })
        .collect()
}

#[test]
fn chat_reuses_the_kv_cache_between_turns() {
    for name in [common::SMOLLM2, common::GEMMA3] {
        let model = common::model(name);
        let (stdout, stderr) = chat(model.to_str().unwrap(), "What is the capital of France?\nAnd of Germany?\nThanks!\n", &[]);
        let t = turns(&stderr);
        assert_eq!(t.len(), 3, "{name}: {stderr}");
        assert_eq!(t[0].2, 0, "{name}: the first turn starts from an empty cache");
        for (i, &(prompt, evaluated, cached)) in t.iter().enumerate().skip(1) {
            assert_eq!(prompt, evaluated + cached, "{name} turn {}", i + 1);
            // Everything up to the previous answer is reused; only the new turn (and any
            // re-tokenized tail of the answer) is evaluated.
            assert!(cached >= t[i - 1].0, "{name} turn {}: {cached} from cache, previous prompt {}", i + 1, t[i - 1].0);
            assert!(evaluated < prompt / 2, "{name} turn {}: evaluated {evaluated} of {prompt}", i + 1);
        }
        assert!(!stdout.trim().is_empty(), "{name}: answers were printed");
    }
}

#[test]
fn chat_reset_starts_over() {
    let model = common::model(common::SMOLLM2);
    let (_, stderr) = chat(model.to_str().unwrap(), "Hi\n/reset\nHi\n", &[]);
    assert!(stderr.contains("[conversation reset]"), "{stderr}");
    let t = turns(&stderr);
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].0, t[1].0, "the same first turn after a reset");
}
