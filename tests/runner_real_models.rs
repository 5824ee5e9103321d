//! `strata generate` and `strata chat` on the two real models: answers, KV-cache reuse between
//! chat turns, Ctrl-C in chat, determinism, and the JSON interface.

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
    for (prompt, expected) in
        [("The Eiffel Tower is located in the city of", "Paris"), ("Paris is the capital of", "France")]
    {
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
        generate_json(&[model.to_str().unwrap(), "-p", "Once upon a time", "--temp", "0.9", "--seed", seed, "-n", "24"])
            ["text"]
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
    let out = generate_json(&[
        model.to_str().unwrap(),
        "-p",
        "Paris is the capital of",
        "--temp",
        "0",
        "-n",
        "16",
        "--stop",
        "France",
    ]);
    assert_eq!(out["stop_reason"], "stop_string", "{out}");
    assert!(!out["text"].as_str().unwrap().contains("France"));
}

/// Runs greedy `strata chat MODEL ARGS` with the given lines on standard input.
fn chat_output(model: &str, lines: &str, args: &[&str]) -> std::process::Output {
    let mut child = common::strata_command()
        .args(["chat", model, "--temp", "0"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(lines.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Runs `strata chat` (24-token answers) with the given lines on standard input; returns
/// stdout and stderr.
fn chat(model: &str, lines: &str, extra: &[&str]) -> (String, String) {
    let out = chat_output(model, lines, &[&["-n", "24"], extra].concat());
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
        let (stdout, stderr) =
            chat(model.to_str().unwrap(), "What is the capital of France?\nAnd of Germany?\nThanks!\n", &[]);
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
        // The first answer is the one a single turn gets: the cache does not change it.
        let alone = common::strata_ok(&[
            "generate",
            model.to_str().unwrap(),
            "--chat",
            "-p",
            "What is the capital of France?",
            "--temp",
            "0",
            "-n",
            "24",
            "--json",
        ]);
        let alone = serde_json::from_str::<serde_json::Value>(&alone).unwrap()["text"].as_str().unwrap().to_string();
        assert!(
            !alone.trim().is_empty() && stdout.starts_with(&alone),
            "{name}: chat's first answer {stdout:?} is not generate's {alone:?}"
        );
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

/// `strata chat` on piped input whose output the test reads while it runs, to signal it mid-answer.
struct LiveChat {
    child: std::process::Child,
    stdout: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    stderr: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl LiveChat {
    /// Greedy chat on SmolLM2 with its end-of-generation tokens banned, so answers run to `-n`.
    fn start(n_predict: &str) -> LiveChat {
        let model = common::model(common::SMOLLM2);
        let mut child = common::strata_command()
            .args(["chat", model.to_str().unwrap(), "--temp", "0", "-n", n_predict])
            .args(["--logit-bias", "0=-100", "--logit-bias", "2=-100"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
            let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let sink = buf.clone();
            std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                    sink.lock().unwrap().extend_from_slice(&chunk[..n]);
                }
            });
            buf
        };
        let stdout = drain(Box::new(child.stdout.take().unwrap()));
        let stderr = drain(Box::new(child.stderr.take().unwrap()));
        LiveChat { child, stdout, stderr }
    }

    fn say(&mut self, line: &str) {
        writeln!(self.child.stdin.as_mut().unwrap(), "{line}").unwrap();
    }

    fn stdout_len(&self) -> usize {
        self.stdout.lock().unwrap().len()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Waits (at most 60 s) until `done` holds.
    fn wait_for(&self, what: &str, done: impl Fn(&LiveChat) -> bool) {
        let start = std::time::Instant::now();
        while !done(self) {
            assert!(start.elapsed().as_secs() < 60, "waited 60 s for {what}; stderr: {}", self.stderr());
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Waits until the answer now streaming has printed `bytes` more bytes.
    fn wait_for_answer_bytes(&self, bytes: usize) {
        let start = self.stdout_len();
        self.wait_for("the answer to stream", |c| c.stdout_len() >= start + bytes);
    }

    /// Waits for turn `n`'s whole summary line; returns it.
    fn turn_summary(&self, n: usize) -> String {
        let prefix = format!("[turn {n}:");
        let find = |c: &LiveChat| {
            c.stderr().split_inclusive('\n').find(|l| l.starts_with(&prefix) && l.ends_with('\n')).map(str::to_string)
        };
        self.wait_for(&format!("turn {n} to end"), |c| find(c).is_some());
        find(self).unwrap()
    }

    fn interrupt(&self) {
        self.signal("-INT");
    }

    fn signal(&self, signal: &str) {
        Command::new("kill").args([signal, &self.child.id().to_string()]).status().unwrap();
    }

    /// Waits for the program to end; returns its exit code (None: ended by a signal).
    fn exit_code(&mut self) -> Option<i32> {
        self.exit_status().code()
    }

    fn exit_status(&mut self) -> std::process::ExitStatus {
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed().as_secs() < 30, "still running 30 s after the signal");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

#[test]
fn chat_ctrl_c_stops_the_answer_and_a_second_one_exits() {
    // Ctrl-C mid-answer ends that answer and the chat goes on; Ctrl-C at the prompt leaves.
    let mut chat = LiveChat::start("100000");
    chat.say("Tell me a long story.");
    chat.wait_for_answer_bytes(20);
    chat.interrupt();
    assert!(chat.turn_summary(1).contains("stop: interrupted]"), "{}", chat.stderr());
    assert!(chat.child.try_wait().unwrap().is_none(), "one Ctrl-C ended the program");
    chat.say("Go on.");
    chat.wait_for_answer_bytes(20);
    chat.interrupt();
    assert!(chat.turn_summary(2).contains("stop: interrupted]"), "{}", chat.stderr());
    let t = turns(&chat.stderr());
    assert!(t[1].2 >= t[0].0, "turn 2 reuses the interrupted turn's cache: {t:?}");
    chat.interrupt();
    assert_eq!(chat.exit_code(), Some(130), "Ctrl-C at the prompt exits with 130; stderr: {}", chat.stderr());

    // Ctrl-C pressed again and again from the middle of an answer (the signals land in decodes,
    // between tokens and at the prompt): the program ends with 130, never dies of a signal.
    let mut chat = LiveChat::start("100000");
    chat.say("Tell me a long story.");
    chat.wait_for_answer_bytes(20);
    let start = std::time::Instant::now();
    while chat.child.try_wait().unwrap().is_none() {
        assert!(start.elapsed().as_secs() < 30, "still running after 30 s of Ctrl-C");
        chat.interrupt();
        std::thread::sleep(std::time::Duration::from_millis(3));
    }
    assert_eq!(chat.exit_code(), Some(130), "stderr: {}", chat.stderr());
    assert!(!chat.stderr().contains("panicked"), "{}", chat.stderr());

    // SIGTERM is not Ctrl-C: it ends the chat, mid-answer too.
    let mut chat = LiveChat::start("100000");
    chat.say("Tell me a long story.");
    chat.wait_for_answer_bytes(20);
    chat.signal("-TERM");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(chat.exit_status().signal(), Some(15), "stderr: {}", chat.stderr());
}

#[test]
fn generation_stops_at_the_context() {
    let model = common::model(common::SMOLLM2);
    let out =
        generate_json(&[model.to_str().unwrap(), "-p", "Once upon a time", "--temp", "0", "-c", "256", "--ignore-eos"]);
    assert_eq!(out["stop_reason"], "context", "{out}");
    // Every position holds a token; the last token is sampled from the last position's logits
    // and needs no room of its own.
    let used = out["prompt_tokens"].as_u64().unwrap() + out["generated_tokens"].as_u64().unwrap();
    assert_eq!(used, 257, "{out}");
}

#[test]
fn chat_stops_or_drops_old_turns_when_the_context_fills() {
    let model = common::model(common::SMOLLM2);
    let lines = "Tell me a story.\nAnother one.\nAnd one more.\nThe last one.\nReally the last.\n";
    let no_eos = ["-c", "256", "--logit-bias", "0=-100", "--logit-bias", "2=-100"];
    let run = |extra: &[&str]| chat_output(model.to_str().unwrap(), lines, &[&no_eos[..], extra].concat());
    // Without -n the first answer runs to the end of the context; the next turn cannot fit.
    let out = run(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("stop: context]") && stderr.contains("[the context of 256 tokens is full"), "{stderr}");
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("error: the conversation is ")
            && last.ends_with("the context is 256 (raise -c, or use --drop-old-turns)"),
        "{stderr}"
    );
    // With --drop-old-turns and 80-token answers, every turn is answered within the context.
    let out = run(&["-n", "80", "--drop-old-turns"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let t = turns(&stderr);
    assert_eq!(t.len(), 5, "{stderr}");
    assert!(t.iter().all(|&(prompt, _, _)| prompt + 80 <= 256), "{t:?}");
    assert!(t.windows(2).any(|w| w[1].0 < w[0].0), "old turns were dropped: {t:?}");
}

/// On the CPU, the file pages of the weights llama.cpp repacks are released as it repacks them:
/// as many bytes as its CPU_REPACK buffer holds (less the partial pages at each weight's ends).
#[test]
fn repacked_weights_file_pages_are_released() {
    let model = common::model(common::GEMMA3);
    let out = common::strata(&["generate", model.to_str().unwrap(), "-p", "Hi", "-n", "1", "-v"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.lines().find(|l| l.starts_with("[loaded ")).unwrap_or_else(|| panic!("no load line: {stderr}"));
    let part = |needle: &str| {
        line.split(['[', ';', ',', ']'])
            .find(|p| p.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in {line}"))
    };
    let mib = |p: &str| -> f64 {
        p.split_whitespace().find_map(|w| w.parse().ok()).unwrap_or_else(|| panic!("no number in {p:?}"))
    };
    let repack = mib(part("CPU_REPACK"));
    let released = mib(part("of repacked weights' file pages released"));
    let repacked = stderr.matches("repack: repack tensor ").count() as f64;
    // Up to a page at each end of each weight stays.
    assert!(released <= repack + 0.05 && released >= repack - repacked * 2.0 * 4096.0 / 1048576.0 - 0.05, "{line}");
}

/// A model without a chat template (Gemma 3 270M is a base model) gets the built-in template of
/// its architecture, and stderr says so once; a model with one is silent about it.
#[test]
fn a_borrowed_chat_template_is_announced() {
    let gemma = common::model(common::GEMMA3);
    let out = common::strata(&["generate", gemma.to_str().unwrap(), "--chat", "-p", "hi", "-n", "2", "--temp", "0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let notes: Vec<&str> = stderr.lines().filter(|l| l.contains("has no chat template")).collect();
    assert_eq!(notes.len(), 1, "{stderr}");
    assert!(notes[0].contains("built-in gemma template") && notes[0].contains("--chat-template"), "{stderr}");
    let smol = common::model(common::SMOLLM2);
    let out = common::strata(&["generate", smol.to_str().unwrap(), "--chat", "-p", "hi", "-n", "2", "--temp", "0"]);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("chat template"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A chat prompt starts with the BOS token exactly once where the model wants one (Gemma), whether
/// the template writes `bos_token` (Gemma's own) or not (chatml borrowed for a base model), as
/// llama-server tokenizes it; a model that wants none (SmolLM2) gets none added.
#[test]
fn chat_prompts_start_with_one_bos_where_the_model_wants_it() {
    let messages = common::scratch_file("bos-messages.json", br#"[{"role": "user", "content": "Hi"}]"#);
    let ids = |model: &str, extra: &[&str]| -> Vec<i64> {
        let path = common::model(model);
        let args =
            [&["template", path.to_str().unwrap(), "--messages", messages.to_str().unwrap(), "--tokens"][..], extra]
                .concat();
        common::strata_ok(&args).lines().last().unwrap().split_whitespace().map(|t| t.parse().unwrap()).collect()
    };
    for extra in [&[][..], &["--builtin", "chatml"]] {
        let tokens = ids(common::GEMMA3, extra);
        assert_eq!(tokens[0], 2, "{extra:?}: {tokens:?}");
        assert_ne!(tokens[1], 2, "{extra:?}: BOS twice: {tokens:?}");
    }
    // SmolLM2's BOS is <|im_start|>, which its template writes first: nothing is added before it.
    let smol = ids(common::SMOLLM2, &[]);
    assert_eq!(smol[0], 1, "{smol:?}");
    assert_ne!(smol[1], 1, "{smol:?}");
}
