//! Bad input to the runner: one clear error line, exit status 1, never a panic.

mod common;

#[test]
fn missing_and_non_gguf_models() {
    let out = common::strata(&["generate", "/nonexistent/m.gguf", "-p", "hi"]);
    common::assert_clean_failure(&out, &["/nonexistent/m.gguf", "no such file"]);
    let junk = common::scratch_file("junk.gguf", b"this is not a model at all, just some text\n");
    let out = common::strata(&["generate", junk.to_str().unwrap(), "-p", "hi"]);
    common::assert_clean_failure(&out, &[junk.to_str().unwrap(), "not a valid GGUF file", "bad magic"]);
    // A well-formed GGUF that is no model: llama.cpp refuses it, and says why.
    let empty = common::scratch_file(
        "empty.gguf",
        &[&b"GGUF"[..], &3u32.to_le_bytes(), &0u64.to_le_bytes(), &0u64.to_le_bytes()].concat(),
    );
    let out = common::strata(&["generate", empty.to_str().unwrap(), "-p", "hi"]);
    common::assert_clean_failure(&out, &[empty.to_str().unwrap(), "could not load the model", "llama.cpp says"]);
}

#[test]
fn invalid_sampling_values() {
    let model = common::model(common::SMOLLM2);
    let m = model.to_str().unwrap();
    for (flag, value, line) in [
        ("--temp", "-1", "error: --temp -1 is outside [0, inf)"),
        ("--top-p", "0", "error: --top-p 0 is outside (0, 1]"),
        ("--top-p", "1.5", "error: --top-p 1.5 is outside (0, 1]"),
        ("--min-p", "2", "error: --min-p 2 is outside [0, 1]"),
        (
            "--logit-bias",
            "99999999=1",
            "error: --logit-bias \"99999999=1\": expected TOKEN_ID=BIAS with a token below 49152",
        ),
        ("--logit-bias", "5", "error: --logit-bias \"5\": expected TOKEN_ID=BIAS with a token below 49152"),
        ("--logit-bias", "5=x", "error: --logit-bias \"5=x\": expected TOKEN_ID=BIAS with a token below 49152"),
    ] {
        let out = common::strata(&["generate", m, "-p", "hi", flag, value]);
        assert_eq!(common::assert_clean_failure(&out, &[]).trim_end(), line, "{flag} {value}");
    }
}

/// `-ngl 10`: a CPU build refuses it; a CUDA build without a CUDA device refuses it saying so;
/// a CUDA build with one offloads the layers and says how many in the load line.
#[test]
fn gpu_layers_need_a_gpu() {
    let model = common::model(common::SMOLLM2);
    let out = common::strata(&["generate", model.to_str().unwrap(), "-p", "hi", "-n", "1", "-ngl", "10"]);
    let devices: serde_json::Value = serde_json::from_str(&common::strata_ok(&["devices", "--json"])).unwrap();
    let has_gpu = devices["devices"].as_array().unwrap().iter().any(|d| d["kind"] == "GPU");
    match (cfg!(feature = "cuda"), has_gpu) {
        (false, _) => {
            assert!(!has_gpu, "a CPU build lists a GPU: {devices}");
            let line = common::assert_clean_failure(&out, &[]);
            assert_eq!(
                line.trim_end(),
                "error: --n-gpu-layers 10: this build of strata has no GPU backend (build with --features cuda)"
            );
        }
        (true, false) => {
            let line = common::assert_clean_failure(&out, &[]);
            assert_eq!(
                line.trim_end(),
                "error: --n-gpu-layers 10: llama.cpp finds no CUDA device (see strata devices)"
            );
        }
        (true, true) => {
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let out = common::strata(&["generate", model.to_str().unwrap(), "-p", "hi", "-n", "1", "-ngl", "10", "-v"]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains("[loaded ") && stderr.contains("10/31 layers on the GPU"), "{stderr}");
        }
    }
}

#[test]
fn kv_cache_types() {
    let model = common::model(common::SMOLLM2);
    let m = model.to_str().unwrap();
    let out = common::strata(&["generate", m, "-p", "hi", "-ctk", "q9_9"]);
    common::assert_clean_failure(&out, &["--cache-type-k", "unknown KV cache type \"q9_9\""]);
    // A Q8_0 key cache, as llama.cpp's -ctk q8_0: greedy text close to the F16 cache's.
    let gen = |extra: &[&str]| -> String {
        let out = common::strata_ok(
            &[&["generate", m, "-p", "The capital of France is", "-n", "6", "--temp", "0", "--json"], extra].concat(),
        );
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["text"].as_str().unwrap().to_string()
    };
    let q8 = gen(&["-ctk", "q8_0"]);
    assert!(!q8.trim().is_empty());
    assert_eq!(q8.split_whitespace().next(), gen(&[]).split_whitespace().next(), "first word with a Q8_0 key cache");
}

#[test]
fn prompt_longer_than_the_context() {
    let model = common::model(common::SMOLLM2);
    // llama.cpp rounds small contexts up (to 256 here): the prompt is far longer than that.
    let long = "word ".repeat(2000);
    let out = common::strata(&["generate", model.to_str().unwrap(), "-p", &long, "-c", "64"]);
    common::assert_clean_failure(&out, &["tokens, more than the context of 256", "-c/--ctx-size"]);
}

#[test]
fn broken_templates_name_the_line() {
    let model = common::model(common::SMOLLM2);
    let bad = common::scratch_file("bad.jinja", b"{% for m in messages %}\n{{ m.content }\n{% endfor %}");
    let out = common::strata(&[
        "generate",
        model.to_str().unwrap(),
        "--chat",
        "-p",
        "hi",
        "--chat-template-file",
        bad.to_str().unwrap(),
    ]);
    common::assert_clean_failure(&out, &[bad.to_str().unwrap(), "chat template: line 2"]);
    let out = common::strata(&["generate", model.to_str().unwrap(), "--chat", "-p", "hi", "--chat-template", "nope"]);
    common::assert_clean_failure(&out, &["unknown built-in template \"nope\""]);
    let raising = common::scratch_file("raise.jinja", b"{{ raise_exception('System role not supported') }}");
    let out = common::strata(&[
        "generate",
        model.to_str().unwrap(),
        "--chat",
        "-p",
        "hi",
        "--chat-template-file",
        raising.to_str().unwrap(),
    ]);
    common::assert_clean_failure(&out, &[raising.to_str().unwrap(), "System role not supported"]);
}

/// Strings doubled forty times would ask for terabytes: the render's memory budget ends it
/// with one error line naming the template, not an abort.
#[test]
fn templates_that_grow_strings_without_bound_fail_cleanly() {
    let model = common::model(common::SMOLLM2);
    let messages = common::scratch_file("grow-messages.json", br#"[{"role": "user", "content": "hi"}]"#);
    for (name, step) in [("concat", "ns.s ~ ns.s"), ("plus", "ns.s + ns.s"), ("replace", "ns.s.replace('a', 'aaaa')")] {
        let source = format!("{{% set ns = namespace(s='ab') %}}{{% for i in range(40) %}}{{% set ns.s = {step} %}}{{% endfor %}}{{{{ ns.s|length }}}}");
        let file = common::scratch_file(&format!("grow-{name}.jinja"), source.as_bytes());
        let file = file.to_str().unwrap();
        let expected = [file, "chat template: rendering needs more than 1024 MiB of memory"];
        common::assert_clean_failure(
            &common::strata(&["template", "--file", file, "--messages", messages.to_str().unwrap()]),
            &expected,
        );
        if name == "concat" {
            let out = common::strata(&[
                "generate",
                model.to_str().unwrap(),
                "--chat",
                "-p",
                "hi",
                "--chat-template-file",
                file,
            ]);
            common::assert_clean_failure(&out, &expected);
        }
    }
}

/// `chat -p ""` (or only spaces) is a clear error, at once: it once re-read the same empty
/// message forever at full CPU.
#[test]
fn chat_with_an_empty_message_fails_at_once() {
    let model = common::model(common::SMOLLM2);
    for prompt in ["", " ", "\n\t"] {
        let start = std::time::Instant::now();
        let out = common::strata(&["chat", model.to_str().unwrap(), "-p", prompt]);
        common::assert_clean_failure(&out, &["-p/--prompt is empty"]);
        assert!(start.elapsed() < std::time::Duration::from_secs(30), "took {:?}", start.elapsed());
    }
}

/// Argument errors show clap's whole message: what is missing, the usage, the hint; exit 2.
/// Bare `strata` prints the help.
#[test]
fn argument_errors_say_what_is_wrong_in_full() {
    let out = common::strata(&["generate", "-p", "hi"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("the following required arguments were not provided"), "{stderr}");
    assert!(stderr.contains("<MODEL.gguf>"), "the missing argument is named: {stderr}");
    assert!(stderr.contains("Usage: strata generate"), "{stderr}");
    let out = common::strata(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for needle in ["Usage: strata <COMMAND>", "Commands:", "convert", "serve", "--help"] {
        assert!(stderr.contains(needle), "bare strata prints the help ({needle:?}): {stderr}");
    }
}

/// Negative numbers as llama.cpp takes them: `-n -1` no limit, `--seed -1` random; other
/// negatives are refused, naming the option.
#[test]
fn negative_counts_and_seeds() {
    let model = common::model(common::SMOLLM2);
    let m = model.to_str().unwrap();
    for (flag, value) in [("-n", "-5"), ("-n", "-2"), ("--seed", "-2"), ("--seed", "x")] {
        let out = common::strata(&["generate", m, "-p", "hi", flag, value]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(&format!("invalid value '{value}'")), "{flag} {value}: {stderr}");
    }
    // --seed -1 draws a seed per run: two runs at temperature 1.5 over 24 tokens differ.
    let run = || {
        let args = ["generate", m, "-p", "Once upon a time", "--seed", "-1", "--temp", "1.5", "-n", "24", "--json"];
        let v: serde_json::Value = serde_json::from_str(&common::strata_ok(&args)).unwrap();
        v["text"].as_str().unwrap().to_string()
    };
    assert_ne!(run(), run(), "--seed -1 gave the same text twice");
    let v: serde_json::Value = serde_json::from_str(&common::strata_ok(&[
        "generate",
        m,
        "-p",
        "Once upon a time",
        "-n",
        "-1",
        "-c",
        "256",
        "--ignore-eos",
        "--temp",
        "0",
        "--json",
    ]))
    .unwrap();
    assert_eq!(v["stop_reason"], "context", "-n -1 runs to the end of the context: {v}");
}

/// An empty stop string is refused on the command line as the server refuses it.
#[test]
fn an_empty_stop_string_is_refused() {
    let model = common::model(common::SMOLLM2);
    let out = common::strata(&["generate", model.to_str().unwrap(), "-p", "hi", "--stop", ""]);
    assert_eq!(common::assert_clean_failure(&out, &[]).trim_end(), "error: --stop: a stop string is empty");
}
