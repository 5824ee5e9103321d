//! Images through the projector file: the gemma3-vision and gemma4-cg fixtures
//! (tests/fixtures/models: tiny random-weight Gemma 3 with a SigLIP tower, Gemma 4 with its
//! vision tower) converted by strata to a model and its projector, run by `strata generate
//! --image` and by llama.cpp's own `llama-mtmd-cli` on the same files: the same greedy tokens. And the media a user may get wrong: a missing projector, a truncated,
//! empty, oversized or mislabelled file, markers that do not match the media; each a one-line
//! error and a non-zero exit, never a crash.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use common::{repo, scratch_dir, strata, strata_ok};

fn media(name: &str) -> String {
    repo().join("tests/fixtures/media").join(name).to_str().unwrap().to_string()
}

/// A fixture converted once: the model (F32) and its projector beside it, under llama.cpp's
/// name (`mmproj-model.gguf`), as `strata convert` writes it.
fn converted_fixture(name: &str) -> (PathBuf, PathBuf) {
    static FILES: Mutex<Option<HashMap<String, (PathBuf, PathBuf)>>> = Mutex::new(None);
    let mut files = FILES.lock().unwrap_or_else(|e| e.into_inner());
    let files = files.get_or_insert_with(HashMap::new);
    files
        .entry(name.to_string())
        .or_insert_with(|| {
            let dir = scratch_dir(&format!("multimodal-{name}"));
            let model = dir.join("model.gguf");
            let fixture = repo().join("tests/fixtures/models").join(name);
            strata_ok(&["convert", fixture.to_str().unwrap(), "-o", model.to_str().unwrap(), "--type", "f32"]);
            (model, dir.join("mmproj-model.gguf"))
        })
        .clone()
}

/// The Gemma 3 fixture, which most tests here use.
fn converted() -> (PathBuf, PathBuf) {
    converted_fixture("gemma3-vision")
}

/// strata's greedy answer to one user message with `media` (images; `--audio` in `extra` for
/// a clip), through the chat template.
fn strata_answer(model: &Path, extra: &[&str], media: &[&str], prompt: &str, n: &str) -> String {
    let mut args = vec!["generate", model.to_str().unwrap(), "--chat", "-p", prompt, "-n", n, "--temp", "0", "-t", "2"];
    args.extend_from_slice(extra);
    for image in media {
        args.extend(["--image", image]);
    }
    strata_ok(&args).trim_end_matches('\n').to_string()
}

/// `strata generate --json`'s report for a raw prompt with one image, greedy, 8 tokens.
fn raw_answer(model: &Path, prompt: &str, image: &str) -> serde_json::Value {
    let out = strata_ok(&[
        "generate",
        model.to_str().unwrap(),
        "--json",
        "-p",
        prompt,
        "--image",
        image,
        "-n",
        "8",
        "--temp",
        "0",
    ]);
    serde_json::from_str(&out).unwrap()
}

/// llama-mtmd-cli's: its stdout is the answer, raw bytes, read as strata prints text (see
/// [`as_strata_prints`]).
fn mtmd_cli_answer(model: &Path, mmproj: &Path, images: &[&str], prompt: &str, n: &str) -> String {
    let mut args = vec!["-m", model.to_str().unwrap(), "--mmproj", mmproj.to_str().unwrap()];
    args.extend(["-p", prompt, "-n", n, "--temp", "0", "-t", "2"]);
    for image in images {
        args.extend(["--image", image]);
    }
    let out = common::llama_tool_output("mtmd-cli", &args);
    assert!(out.status.success(), "llama-mtmd-cli failed: {}", String::from_utf8_lossy(&out.stderr));
    // The answer between the newlines llama-mtmd-cli writes before and after it.
    let answer = out.stdout.strip_prefix(b"\n").unwrap_or(&out.stdout);
    let answer = answer.strip_suffix(b"\n\n").unwrap_or(answer);
    as_strata_prints(answer)
}

/// Raw bytes as strata prints them: llama-mtmd-cli prints each token's bytes as they are, where
/// strata prints U+FFFD for each sequence that can never be UTF-8 and holds back the start of a
/// character the answer ends in.
fn as_strata_prints(mut bytes: &[u8]) -> String {
    let mut out = String::new();
    loop {
        match std::str::from_utf8(bytes) {
            Ok(s) => return out + s,
            Err(e) => {
                out += std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap();
                let Some(bad) = e.error_len() else { return out };
                out.push('\u{fffd}');
                bytes = &bytes[e.valid_up_to() + bad..];
            }
        }
    }
}

#[test]
fn an_answer_about_images_is_llama_mtmd_clis() {
    for name in ["gemma3-vision", "gemma4-cg"] {
        answers_as_mtmd_cli(name);
    }
}

fn answers_as_mtmd_cli(name: &str) {
    let (model, mmproj) = converted_fixture(name);
    let (model, mmproj) = (&model, &mmproj);
    let (gradient, checkers) = (media("gradient.png"), media("checkers.png"));
    let cases: &[(&[&str], &str)] = &[
        // One image, placed before the text (no marker in the prompt, as llama-mtmd-cli places it).
        (&[&gradient], "Describe this image."),
        // Two images where the prompt's markers put them.
        (&[&checkers, &gradient], "First <__media__> then <__media__>: which is brighter?"),
    ];
    for (images, prompt) in cases {
        // The projector found beside the model, and given with --mmproj: the same answer.
        let ours = strata_answer(model, &[], images, prompt, "24");
        let given = strata_answer(model, &["--mmproj", mmproj.to_str().unwrap()], images, prompt, "24");
        let theirs = mtmd_cli_answer(model, mmproj, images, prompt, "24");
        assert_eq!(ours, theirs, "{name}: {images:?} {prompt:?}");
        assert_eq!(given, ours);
        assert!(ours.chars().count() >= 12, "too short to tell anything: {ours:?}");
    }
    // The image changes the answer.
    let other = strata_answer(model, &[], &[&checkers], "Describe this image.", "24");
    assert_ne!(other, strata_answer(model, &[], &[&gradient], "Describe this image.", "24"));
}

/// Gemma 4 with both towers (gemma4-av, E2B's layout): an audio clip, and an image beside it,
/// answered as llama-mtmd-cli answers them.
#[test]
fn an_answer_about_audio_is_llama_mtmd_clis() {
    let (model, mmproj) = converted_fixture("gemma4-av");
    let (tone, gradient) = (media("tone.wav"), media("gradient.png"));
    let prompt = "What do you hear?";
    let ours = strata_answer(&model, &["--audio", &tone], &[], prompt, "24");
    let theirs = mtmd_cli_answer(&model, &mmproj, &[&tone], prompt, "24");
    assert_eq!(ours, theirs);
    assert!(ours.chars().count() >= 12, "too short to tell anything: {ours:?}");
    let image = strata_answer(&model, &[], &[&gradient], prompt, "24");
    assert_eq!(image, mtmd_cli_answer(&model, &mmproj, &[&gradient], prompt, "24"));
    assert_ne!(image, ours, "the clip and the image give different answers");
}

#[test]
fn raw_prompts_place_images_at_their_marker_or_before_the_text() {
    let (model, _) = &converted();
    let gradient = media("gradient.png");
    let run = |prompt: &str| raw_answer(model, prompt, &gradient);
    let (before, marked) = (run("A picture"), run("<__media__>A picture"));
    assert_eq!(before["text"], marked["text"], "no marker: the image goes before the text");
    // BOS, 16 image tokens pooled from its 8 x 8 patches, the text's tokens.
    let text_only = strata_ok(&["tokenize", model.to_str().unwrap(), "--json", "-p", "A picture"]);
    let n_text = serde_json::from_str::<Vec<i64>>(text_only.trim()).unwrap().len() as u64;
    assert!(before["prompt_tokens"].as_u64().unwrap() >= 16 + n_text, "{before}");
    assert_ne!(run("A <__media__>picture")["text"], before["text"], "the marker moves the image");
}

/// Every mistake with media is a one-line error on stderr and a non-zero exit.
#[test]
fn media_mistakes_are_one_line_errors() {
    let (model, _) = &converted();
    let dir = scratch_dir("multimodal-bad-media");
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_string()
    };
    let png = std::fs::read(media("gradient.png")).unwrap();
    let truncated = write("truncated.png", &png[..png.len() / 2]);
    let text = write("notes.png", b"not an image at all\n");
    let png_header = |w: u32, h: u32| {
        let mut b = png[..16].to_vec();
        b.extend_from_slice(&w.to_be_bytes());
        b.extend_from_slice(&h.to_be_bytes());
        b.extend_from_slice(&png[24..]);
        b
    };
    let bomb = write("bomb.png", &png_header(100_000, 100_000));
    let empty = write("empty.png", &png_header(0, 48));
    let mut wav = b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0\x80\x3e\0\0\0\x7d\0\0\x02\0\x10\0data".to_vec();
    wav.extend_from_slice(&(32_000u32 * 3 * 3600).to_le_bytes());
    let three_hours = write("long.wav", &wav);
    let model = model.to_str().unwrap();
    let gradient = media("gradient.png");
    let cases: &[(&[&str], &str)] = &[
        (&["--image", &truncated], "truncated.png: not an image or audio file this model reads"),
        (&["--image", &text], "notes.png: not an image or audio file this model reads"),
        (&["--image", &bomb], "bomb.png: a 100000 x 100000 image, more than 16384 pixels a side"),
        (&["--image", &empty], "empty.png: a 0 x 48 image has no pixels"),
        (&["--audio", &three_hours], "long.wav: 10800 s of audio, more than 1800 s"),
        (&["--image", "/nonexistent/cat.png"], "/nonexistent/cat.png: cannot read"),
        (&["--image", &gradient, "--no-mmproj"], "images and audio need the model's projector file"),
        (&["--image", &gradient, "-p", "<__media__> and <__media__>"], "the prompt has 2 media markers"),
        (&["--mmproj", "/nonexistent/mmproj.gguf"], "/nonexistent/mmproj.gguf: no such file"),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["generate", model, "-n", "4", "--temp", "0"];
        if !extra.contains(&"-p") {
            args.extend(["-p", "Describe."]);
        }
        args.extend_from_slice(extra);
        let out = strata(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra:?} succeeded");
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(lines.len(), 1, "{extra:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{extra:?}: {stderr}");
    }
}

/// In chat, `/image PATH` attaches an image to the next message; a follow-up turn keeps the
/// image's encoded tokens in the cache and evaluates only what is new; a path
/// that cannot be read is an error line, and the chat goes on.
#[test]
fn chat_attaches_images_and_reuses_them_in_later_turns() {
    use std::io::Write;
    let (model, _) = &converted();
    let input = format!(
        "Describe.\n/image {}\nWhat is this?\n/image /nonexistent/cat.png\nAnd again?\n",
        media("gradient.png")
    );
    let mut child = common::strata_command()
        .args(["chat", model.to_str().unwrap(), "-n", "6", "--temp", "0", "-t", "2"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("gradient.png attached to the next message"), "{stderr}");
    assert!(stderr.contains("error: /nonexistent/cat.png: cannot read"), "{stderr}");
    // [turn N: P prompt tokens, E evaluated, C from cache; ...]
    let turns: Vec<(u64, u64, u64)> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("[turn "))
        .map(|l| {
            let n: Vec<u64> = l.split([' ', ',', ';', ':']).filter_map(|w| w.parse().ok()).collect();
            (n[1], n[2], n[3])
        })
        .collect();
    assert_eq!(turns.len(), 3, "{stderr}");
    let (image_turn, follow_up) = (turns[1], turns[2]);
    assert!(image_turn.1 >= 16, "the image's 16 tokens were evaluated in its turn: {image_turn:?}");
    // The cache holds the whole image turn (a cache is never cut inside an image, so the image
    // is in it whole), and only the rest was evaluated.
    assert!(follow_up.2 >= image_turn.0, "the follow-up kept the image's turn in the cache: {follow_up:?}");
    assert_eq!(follow_up.1, follow_up.0 - follow_up.2, "{follow_up:?}");
}

/// The official `openai` client sends images to `strata serve` as `data:` URLs, and the
/// `anthropic` client as base64 image blocks: the answer (whole, streamed, through the Responses
/// API and through Anthropic's Messages API) is llama-mtmd-cli's for the same files; a
/// second request about the same image finds it in the slot's cache. The server fetches no URLs,
/// and refuses bad media with a 400 that says why, and keeps serving.
#[test]
fn the_openai_client_sends_images_to_the_server() {
    let (model, mmproj) = &converted();
    let server = common::serve::Server::start(model.to_str().unwrap(), &[]);
    let (_, props) = server.try_get("/props").unwrap();
    let props: serde_json::Value = serde_json::from_str(&props).unwrap();
    assert_eq!(props["modalities"], serde_json::json!({"vision": true, "audio": false}));
    let gradient = media("gradient.png");
    let prompt = "Describe this image.";
    let script = repo().join("tests/support/vision_client.py");
    let out = std::process::Command::new(common::python())
        .args([script.to_str().unwrap(), &format!("{}/v1", server.base()), prompt, &gradient])
        .output()
        .unwrap();
    assert!(out.status.success(), "vision_client.py: {}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let theirs = mtmd_cli_answer(model, mmproj, &[&gradient], prompt, "24");
    assert_eq!(r["chat"], theirs.as_str(), "{r}");
    assert_eq!(r["stream"], r["chat"]);
    assert_eq!(r["responses"], r["chat"]);
    assert_eq!(r["messages"], r["chat"], "Anthropic's Messages API");
    // The same request again: the image is in the slot's cache.
    let png = std::fs::read(&gradient).unwrap();
    let url = format!("data:image/png;base64,{}", STANDARD.encode(&png));
    let request = |url: &str| {
        serde_json::json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": prompt}]}],
            "temperature": 0, "max_tokens": 4})
    };
    let mut verbose = request(&url);
    verbose["verbose"] = serde_json::json!(true);
    let (status, again) = server.post("/v1/chat/completions", &verbose);
    assert_eq!(status, 200, "{again}");
    // The prompt as the model saw it: the image where its marker was.
    let seen = again["__verbose"]["prompt"].as_str().unwrap_or_default();
    assert_eq!(seen.matches("<__media__>").count(), 1, "{again}");
    let cached = again["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap_or(0);
    assert!(cached > 16, "the image was evaluated again: {again}");
    for (url, expected) in [
        (
            "https://example.com/cat.png".to_string(),
            "the server fetches no URLs (unless started with --allow-media-urls)",
        ),
        ("data:image/png;base64,@@@@".to_string(), "is not valid base64"),
        (
            format!("data:image/png;base64,{}", STANDARD.encode(&png[..40])),
            "not an image or audio file this model reads",
        ),
    ] {
        let (status, body) = server.post("/v1/chat/completions", &request(&url));
        assert_eq!(status, 400, "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(expected), "{body}");
    }
    let (status, _) = server.post("/v1/chat/completions", &request(&url));
    assert_eq!(status, 200, "the server still answers");
    // llama-server's own API: a prompt object with its media in `multimodal_data`, placed at the
    // markers of its text, as `strata generate` places them in a raw prompt.
    let raw = "<__media__>A picture of";
    let body = serde_json::json!({"prompt": {"prompt_string": raw, "multimodal_data": [STANDARD.encode(&png)]},
                                  "n_predict": 8, "temperature": 0});
    let (status, answer) = server.post("/completion", &body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["content"], raw_answer(model, raw, &gradient)["text"], "{answer}");
}

/// A stand-in web server on a loopback port: `/gradient.png` the image, `/moved` a redirect
/// to it, `/missing` a 404, `/huge` a body announced past the limit, `/slow` no answer for 15 s.
fn image_host(png: Vec<u8>) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let png = png.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap_or(0);
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let mut stream = stream;
                let head = |status: &str, extra: &str, length: usize| {
                    format!("HTTP/1.1 {status}\r\n{extra}Content-Length: {length}\r\nConnection: close\r\n\r\n")
                };
                let _ = match path.as_str() {
                    "/gradient.png" => stream
                        .write_all(head("200 OK", "Content-Type: image/png\r\n", png.len()).as_bytes())
                        .and_then(|_| stream.write_all(&png)),
                    "/moved" => stream.write_all(head("302 Found", "Location: /gradient.png\r\n", 0).as_bytes()),
                    "/huge" => stream.write_all(head("200 OK", "", 200 << 20).as_bytes()),
                    "/slow" => {
                        std::thread::sleep(std::time::Duration::from_secs(15));
                        Ok(())
                    }
                    _ => stream.write_all(head("404 Not Found", "", 0).as_bytes()),
                };
            });
        }
    });
    base
}

/// With `--allow-media-urls` the server fetches the image URLs a request names (OpenAI's
/// `image_url`, Anthropic's url source), following a redirect, and answers as for the same image
/// sent as data; a missing, oversized, slow or unreachable URL is a 400 that says which and why.
#[test]
fn the_server_fetches_image_urls_when_allowed() {
    let (model, _) = &converted();
    let png = std::fs::read(media("gradient.png")).unwrap();
    let host = image_host(png.clone());
    let server = common::serve::Server::start(model.to_str().unwrap(), &["--allow-media-urls"]);
    let chat = |url: &str| {
        serde_json::json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "Describe this image."}]}],
            "temperature": 0, "max_tokens": 8})
    };
    let answer = |url: &str| {
        let (status, body) = server.post("/v1/chat/completions", &chat(url));
        assert_eq!(status, 200, "{url}: {body}");
        body["choices"][0]["message"]["content"].as_str().unwrap().to_string()
    };
    let sent = answer(&format!("data:image/png;base64,{}", STANDARD.encode(&png)));
    assert_eq!(answer(&format!("{host}/gradient.png")), sent);
    assert_eq!(answer(&format!("{host}/moved")), sent, "a redirect followed");
    let anthropic = serde_json::json!({"model": "m", "max_tokens": 8, "temperature": 0, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": format!("{host}/gradient.png")}},
        {"type": "text", "text": "Describe this image."}]}]});
    let (status, body) = server.post("/v1/messages", &anthropic);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["content"][0]["text"], sent.as_str(), "{body}");
    let https = host.replace("http://", "https://");
    for (url, expected) in [
        (format!("{host}/missing"), "the server answered 404 Not Found"),
        (format!("{host}/huge"), "more than the 104857600 bytes a medium may have"),
        (format!("{host}/slow"), "took more than 10 s"),
        (format!("{https}/gradient.png"), "cannot fetch it"),
    ] {
        let (status, body) = server.post("/v1/chat/completions", &chat(&url));
        assert_eq!(status, 400, "{url}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(&format!("image URL {url}: ")) && message.contains(expected), "{body}");
    }
    assert_eq!(answer(&format!("{host}/gradient.png")), sent, "the server still answers");
}

/// A model served without a projector answers images with a 400 that says so.
#[test]
fn a_server_without_a_projector_refuses_images() {
    let (model, _) = &converted();
    let server = common::serve::Server::start(model.to_str().unwrap(), &["--no-mmproj"]);
    let png = std::fs::read(media("gradient.png")).unwrap();
    let url = format!("data:image/png;base64,{}", STANDARD.encode(&png));
    let body = serde_json::json!({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "What is it?"}]}], "max_tokens": 2});
    let (status, answer) = server.post("/v1/chat/completions", &body);
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("loaded without a projector file"), "{answer}");
}

/// `bench --image` times the image: its tokens per second through the projector and the
/// decoding of its embeddings, and its milliseconds, over the repetitions.
#[test]
fn bench_times_the_image() {
    let (model, _) = &converted();
    let gradient = media("gradient.png");
    let out = strata_ok(&[
        "bench",
        model.to_str().unwrap(),
        "-p",
        "16",
        "-n",
        "4",
        "-r",
        "2",
        "--image",
        &gradient,
        "--json",
        "-t",
        "2",
    ]);
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let image = r["tests"].as_array().unwrap().iter().find(|t| t["test"] == "image (16 tokens)").expect("image row");
    assert_eq!(image["samples"].as_array().unwrap().len(), 2, "{r}");
    assert!(image["tokens_per_second"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["image_ms"]["ms"].as_f64().unwrap() > 0.0, "{r}");
    let err = common::strata(&["bench", model.to_str().unwrap(), "--image", &gradient, "--no-mmproj", "-r", "1"]);
    assert!(String::from_utf8_lossy(&err.stderr).contains("has no projector file"), "{err:?}");
}
