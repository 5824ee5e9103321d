//! `strata serve` driven by clients no one here wrote (the official `openai` Python package and
//! curl) and by raw HTTP: answers, streaming, usage, slots and their prefix cache, concurrency,
//! cancellation, and hostile requests.

mod common;

use common::serve::Server;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn ask(question: &str, max_tokens: u32) -> Value {
    json!({"messages": [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": question}], "temperature": 0, "max_tokens": max_tokens})
}

fn content(v: &Value) -> String {
    v["choices"][0]["message"]["content"].as_str().unwrap_or_else(|| panic!("no content in {v}")).to_string()
}

/// The official `openai` client: models, chat (whole and streamed), a completion; the usage it
/// reports equals the token counts `strata generate` reports for the same turn.
#[test]
fn openai_client_chats_streams_and_completes() {
    let model = common::model(common::SMOLLM2);
    let server = Server::start(model.to_str().unwrap(), &["--alias", "smol"]);
    let script = common::repo().join("tests/support/openai_client.py");
    let out = Command::new(common::python()).arg(&script).arg(format!("{}/v1", server.base())).output().unwrap();
    assert!(out.status.success(), "openai_client.py: {}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["models"], json!(["smol"]));
    assert!(r["chat"]["content"].as_str().unwrap().contains("Paris"), "{r}");
    assert_eq!(r["chat"]["finish_reason"], "stop");
    assert_eq!(r["stream"]["content"], r["chat"]["content"], "streamed text equals the whole answer");
    assert_eq!(r["stream"]["usage"], r["chat"]["usage"]);
    assert!(r["completion"]["text"].as_str().is_some_and(|t| !t.is_empty()), "{r}");
    assert_eq!(r["completion"]["usage"]["completion_tokens"], 8);
    // The same turn through `strata generate`: the same text and the same token counts.
    let alone = common::ask_capital_of_france(&model);
    assert_eq!(r["chat"]["content"], alone["text"]);
    assert_eq!(r["chat"]["usage"]["prompt_tokens"], alone["prompt_tokens"]);
    assert_eq!(r["chat"]["usage"]["completion_tokens"], alone["generated_tokens"]);
}

/// curl's view of the raw stream: `data:` lines of JSON chunks, `[DONE]` last, usage on request.
#[test]
fn curl_sees_server_sent_events() {
    let model = common::model(common::SMOLLM2);
    let server = Server::start(model.to_str().unwrap(), &[]);
    let body = json!({"messages": [{"role": "user", "content": "Say hi"}], "temperature": 0, "max_tokens": 6, "stream": true, "stream_options": {"include_usage": true}});
    let out = Command::new("curl")
        .args([
            "-sN",
            "-i",
            &format!("{}/v1/chat/completions", server.base()),
            "-H",
            "Content-Type: application/json",
            "-d",
            &body.to_string(),
        ])
        .output()
        .expect("curl");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.to_ascii_lowercase().contains("content-type: text/event-stream"), "{text}");
    let data: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{text}");
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let finish: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .map(|c| &c["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, [&json!("length")]);
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens"], 6, "{text}");
    assert_eq!(chunks.last().unwrap()["choices"], json!([]));
}

/// A conversation's second turn evaluates only its new tokens: the slot kept the first.
#[test]
fn a_follow_up_turn_reuses_the_slots_cache() {
    let model = common::model(common::SMOLLM2);
    let server = Server::start(model.to_str().unwrap(), &["-np", "2"]);
    let first = server.chat(&ask("What is the capital of France?", 16));
    let answer = content(&first);
    let mut follow = ask("What is the capital of France?", 16);
    follow["messages"].as_array_mut().unwrap().extend([
        json!({"role": "assistant", "content": answer}),
        json!({"role": "user", "content": "And of Germany?"}),
    ]);
    let second = server.chat(&follow);
    let (t1, t2) = (&first["timings"], &second["timings"]);
    let p1 = first["usage"]["prompt_tokens"].as_u64().unwrap();
    let p2 = second["usage"]["prompt_tokens"].as_u64().unwrap();
    assert_eq!(t2["slot"], t1["slot"], "the same slot");
    assert!(
        t2["cache_n"].as_u64().unwrap() >= p1,
        "second turn reused {} tokens of the first's {p1}: {second}",
        t2["cache_n"]
    );
    assert_eq!(t2["cache_n"].as_u64().unwrap() + t2["prompt_n"].as_u64().unwrap(), p2);
    assert!(t2["prompt_n"].as_u64().unwrap() < p2 / 2, "{second}");
    assert_eq!(second["usage"]["prompt_tokens_details"]["cached_tokens"], t2["cache_n"]);
}

/// 8 clients at once against 4 slots: every answer is the one the same request gets alone (greedy).
#[test]
fn concurrent_requests_get_the_answers_they_get_alone() {
    let model = common::model(common::SMOLLM2);
    let server = Server::start(model.to_str().unwrap(), &["-np", "4", "-c", "4096"]);
    let questions: Vec<String> = ["France", "Germany", "Italy", "Spain", "Japan", "Canada", "Egypt", "Peru"]
        .iter()
        .map(|c| format!("What is the capital of {c}?"))
        .collect();
    let alone: Vec<String> = questions.iter().map(|q| content(&server.chat(&ask(q, 24)))).collect();
    let together: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = questions.iter().map(|q| s.spawn(|| content(&server.chat(&ask(q, 24))))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, (a, t)) in alone.iter().zip(&together).enumerate() {
        assert_eq!(a, t, "question {i}: alone vs 8 at once");
    }
}

/// A client that hangs up mid-stream frees its slot: with one slot, the next request is served
/// at once instead of after the first one's 2000 tokens.
#[test]
fn a_client_that_hangs_up_frees_its_slot() {
    let model = common::model(common::SMOLLM2);
    let server = Server::start(model.to_str().unwrap(), &["-np", "1"]);
    // End-of-generation ignored, so the first request would run its whole 2000 tokens.
    let long =
        json!({"prompt": "Once upon a time", "max_tokens": 2000, "temperature": 0, "stream": true, "ignore_eos": true});
    let mut stream = TcpStream::connect(&server.addr).unwrap();
    let body = long.to_string();
    write!(stream, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while String::from_utf8_lossy(&seen).matches("data: ").count() < 5 {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended early");
        seen.extend_from_slice(&buf[..n]);
    }
    drop(stream);
    let start = Instant::now();
    let next = server.chat(&ask("What is the capital of France?", 8));
    assert!(start.elapsed() < Duration::from_secs(20), "the next request waited {:?}", start.elapsed());
    assert!(next["usage"]["completion_tokens"].as_u64().unwrap() <= 8);
}

/// Hostile and malformed requests: each gets its status and a message in OpenAI's shape, the
/// server never panics, and a streaming request in flight meanwhile completes as it would alone.
#[test]
fn bad_requests_get_clear_errors_and_do_not_disturb_others() {
    let model = common::model(common::SMOLLM2);
    let server = Server::start(model.to_str().unwrap(), &["-np", "2", "-c", "2048", "--api-key", "sekret"]);
    let auth = "Authorization: Bearer sekret\r\n";
    let stream_body =
        json!({"prompt": "The first ten prime numbers are", "max_tokens": 48, "temperature": 0, "stream": true});
    let expected_stream = {
        let (status, text) = server.post_raw("/v1/completions", auth, stream_body.to_string().as_bytes());
        assert_eq!(status, 200, "{text}");
        text
    };
    let in_flight = std::thread::scope(|s| {
        let streaming = s.spawn(|| server.post_raw("/v1/completions", auth, stream_body.to_string().as_bytes()));
        let long_prompt = "word ".repeat(3000);
        let cases: Vec<(&str, String, String, u16, &str)> = vec![
            ("malformed JSON", "/v1/chat/completions".into(), "{\"messages\": [".into(), 400, "not valid JSON"),
            ("not an object", "/v1/chat/completions".into(), "[1, 2]".into(), 400, "must be a JSON object"),
            ("no messages", "/v1/chat/completions".into(), "{}".into(), 400, "messages must be a list"),
            ("empty messages", "/v1/chat/completions".into(), json!({"messages": []}).to_string(), 400, "messages is empty"),
            ("unknown role", "/v1/chat/completions".into(), json!({"messages": [{"role": "wizard", "content": "hi"}]}).to_string(), 400, "messages[0].role \"wizard\""),
            ("content of wrong type", "/v1/chat/completions".into(), json!({"messages": [{"role": "user", "content": 42}]}).to_string(), 400, "messages[0].content must be"),
            ("image part", "/v1/chat/completions".into(), json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}).to_string(), 400, "image_url.url must be a data: URL with base64 data"),
            ("negative max_tokens", "/v1/chat/completions".into(), json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": -5}).to_string(), 400, "max_tokens is -5"),
            ("max_tokens as text", "/v1/chat/completions".into(), json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": "ten"}).to_string(), 400, "max_tokens must be a whole number"),
            ("temperature negative", "/v1/chat/completions".into(), json!({"messages": [{"role": "user", "content": "hi"}], "temperature": -1}).to_string(), 400, "temperature is -1"),
            ("top_p zero", "/v1/chat/completions".into(), json!({"messages": [{"role": "user", "content": "hi"}], "top_p": 0}).to_string(), 400, "top_p is 0"),
            ("huge logit_bias", "/v1/chat/completions".into(), json!({"messages": [{"role": "user", "content": "hi"}], "logit_bias": {"5": 1e30}}).to_string(), 400, "logit_bias[5] is"),
            ("logit_bias token out of range", "/v1/chat/completions".into(), json!({"messages": [{"role": "user", "content": "hi"}], "logit_bias": {"99999999": 1}}).to_string(), 400, "not a token id below 49152"),
            ("n of 17", "/v1/chat/completions".into(), json!({"messages": [{"role": "user", "content": "hi"}], "n": 17}).to_string(), 400, "n is 17; at most 16"),
            ("n with stream", "/v1/chat/completions".into(), json!({"messages": [{"role": "user", "content": "hi"}], "n": 2, "stream": true}).to_string(), 400, "stream is not supported with it"),
            ("top_logprobs of 21", "/v1/chat/completions".into(), json!({"messages": [{"role": "user", "content": "hi"}], "logprobs": true, "top_logprobs": 21}).to_string(), 400, "top_logprobs is more than 20"),
            ("n_probs of 101", "/completion".into(), json!({"prompt": "hi", "n_probs": 101}).to_string(), 400, "n_probs is 101; at most 100"),
            ("completion token out of range", "/completion".into(), json!({"prompt": [1, 99999999]}).to_string(), 400, "prompt[1] is 99999999, not a token id below 49152"),
            ("completion with a slot it lacks", "/completion".into(), json!({"prompt": "hi", "id_slot": 2}).to_string(), 400, "id_slot: there is no slot 2"),
            ("mirostat", "/completion".into(), json!({"prompt": "hi", "mirostat": 2}).to_string(), 400, "mirostat is 2: mirostat sampling is not supported"),
            ("samplers out of order", "/v1/chat/completions".into(), json!({"messages": [{"role": "user", "content": "hi"}], "samplers": ["temperature", "top_k"]}).to_string(), 400, "name them in that order"),
            ("tool with a bad name", "/v1/chat/completions".into(), json!({"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {"name": "f g"}}]}).to_string(), 400, "a name is 1 to 64"),
            ("legacy functions", "/v1/chat/completions".into(), json!({"messages": [{"role": "user", "content": "hi"}], "functions": [{"name": "f"}]}).to_string(), 400, "functions: function calling is not supported"),
            ("json schema", "/v1/chat/completions".into(), json!({"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_schema"}}).to_string(), 400, "response_format"),
            ("stop of wrong type", "/v1/chat/completions".into(), json!({"messages": [{"role": "user", "content": "hi"}], "stop": 7}).to_string(), 400, "stop must be a string or a list"),
            ("prompt over the context", "/v1/completions".into(), json!({"prompt": long_prompt}).to_string(), 400, "a slot's context holds 1024"),
            ("completion without prompt", "/v1/completions".into(), json!({"max_tokens": 3}).to_string(), 400, "prompt must be a string"),
            ("detokenize bad id", "/detokenize".into(), json!({"tokens": [1, -3]}).to_string(), 400, "tokens[1] is -3"),
            ("unknown route", "/v1/embeddings".into(), "{}".into(), 404, "no such route"),
        ];
        for (name, path, body, status, needle) in &cases {
            let (got, text) = server.post_raw(path, auth, body.as_bytes());
            let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{name}: not JSON: {text}"));
            assert_eq!(got, *status, "{name}: {text}");
            let message = v["error"]["message"].as_str().unwrap_or_else(|| panic!("{name}: no error.message: {text}"));
            assert!(message.contains(needle), "{name}: {message:?} lacks {needle:?}");
            assert_eq!(v["error"]["code"], *status, "{name}");
        }
        // Wrong and missing keys.
        let chat = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}).to_string();
        for header in ["Authorization: Bearer wrong\r\n", "", "Authorization: sekret\r\n"] {
            let (got, text) = server.post_raw("/v1/chat/completions", header, chat.as_bytes());
            assert_eq!(got, 401, "{header:?}: {text}");
            assert!(text.contains("authentication_error"), "{text}");
        }
        assert_eq!(server.try_get("/health").unwrap().0, 200, "/health needs no key");
        // A body over the limit.
        let big = vec![b'x'; 9 << 20];
        let (got, text) = server.post_raw("/v1/chat/completions", auth, &big);
        assert_eq!(got, 413, "{text}");
        // A slow-loris client: headers never finished; the server drops it and serves others.
        let mut slow = TcpStream::connect(&server.addr).unwrap();
        slow.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n").unwrap();
        let (got, _) = server.post_raw("/tokenize", auth, json!({"content": "hi"}).to_string().as_bytes());
        assert_eq!(got, 200, "served beside a slow client");
        slow.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut rest = Vec::new();
        let started = Instant::now();
        let _ = slow.read_to_end(&mut rest);
        assert!(started.elapsed() < Duration::from_secs(25), "the slow client was not dropped");
        streaming.join().unwrap()
    });
    assert_eq!(in_flight.0, 200);
    let text = |sse: &str| -> String {
        sse.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str::<Value>(d).unwrap()["choices"][0]["text"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(text(&in_flight.1), text(&expected_stream), "the stream in flight beside the bad requests");
}

/// /v1/models, /tokenize, /detokenize and /apply-template agree with the CLI.
#[test]
fn tokenize_detokenize_and_apply_template() {
    let model = common::model(common::SMOLLM2);
    let server = Server::start(model.to_str().unwrap(), &[]);
    let (_, tok) = server.post("/tokenize", &json!({"content": "Hello world"}));
    let cli: Value =
        serde_json::from_str(&common::strata_ok(&["tokenize", model.to_str().unwrap(), "-p", "Hello world", "--json"]))
            .unwrap();
    assert_eq!(tok["tokens"], cli, "the server and strata tokenize");
    let (_, detok) = server.post("/detokenize", &json!({"tokens": tok["tokens"]}));
    assert_eq!(detok["content"], "Hello world");
    let messages = json!([{"role": "user", "content": "Hi"}]);
    let (_, applied) = server.post("/apply-template", &json!({"messages": messages}));
    let file = common::scratch_file("server-messages.json", messages.to_string().as_bytes());
    let cli = common::strata_ok(&[
        "template",
        model.to_str().unwrap(),
        "--messages",
        file.to_str().unwrap(),
        "--add-generation-prompt",
    ]);
    assert_eq!(applied["prompt"], cli);
}

/// Requests that arrive as the model's process closes an idle pooled connection (its --timeout)
/// are forwarded on a fresh one: a client polling at that interval sees no 503. With a 1 s
/// timeout, 21 requests at intervals from 0.9 s to 1.1 s, 10 ms apart.
#[test]
fn requests_at_the_childs_idle_timeout_get_no_503() {
    let model = common::model(common::SMOLLM2);
    let server = Server::start(model.to_str().unwrap(), &["--timeout", "1"]);
    let mut failures = Vec::new();
    for i in 0..=20u64 {
        let (status, body) = server.try_get("/v1/models").expect("request");
        if status != 200 {
            failures.push(format!("request {i}: {status} {body}"));
        }
        std::thread::sleep(Duration::from_millis(900 + 10 * i));
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A raw request with `headers` ("Name: value\r\n" each) and `body`: status, head, body.
fn raw(server: &Server, method: &str, path: &str, headers: &str, body: &str) -> (u16, String, String) {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n{body}",
        body.len()
    );
    common::serve::exchange(&server.addr, request.as_bytes()).expect("request")
}

/// Browsers: an allowed origin (loopback by default) gets its preflight and CORS headers; any
/// other origin is refused; a POST that is not JSON is refused (a page's plain-text form post
/// cannot make the server generate). Errors keep OpenAI's shape: 405, 415, 403, 404.
#[test]
fn cors_json_bodies_and_error_shapes() {
    let model = common::model(common::SMOLLM2);
    let server = Server::start(model.to_str().unwrap(), &["--alias", "smol"]);
    let hi = r#"{"prompt": "Hi", "max_tokens": 1}"#;
    let json = "Content-Type: application/json\r\n";
    // A preflight from a page on localhost:5173, then its request.
    let (status, head, _) = raw(
        &server,
        "OPTIONS",
        "/v1/completions",
        "Origin: http://localhost:5173\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type, authorization\r\n",
        "",
    );
    assert_eq!(status, 204, "{head}");
    assert!(head.contains("access-control-allow-origin: http://localhost:5173"), "{head}");
    assert!(head.contains("access-control-allow-methods: get, post, options"), "{head}");
    assert!(head.contains("access-control-allow-headers: content-type, authorization"), "{head}");
    let (status, head, _) =
        raw(&server, "POST", "/v1/completions", &format!("Origin: http://localhost:5173\r\n{json}"), hi);
    assert_eq!(status, 200);
    assert!(head.contains("access-control-allow-origin: http://localhost:5173"), "{head}");
    // Another origin: refused, preflight or not, and nothing generated.
    for method in ["OPTIONS", "POST"] {
        let (status, head, body) =
            raw(&server, method, "/v1/completions", &format!("Origin: https://evil.example\r\n{json}"), hi);
        assert_eq!(status, 403, "{method}: {body}");
        assert!(!head.contains("access-control-allow-origin"), "{head}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(v["error"]["message"].as_str().unwrap().contains("--cors-origin https://evil.example"), "{v}");
    }
    // Not JSON: 415, whatever the origin.
    for headers in ["Content-Type: text/plain\r\n", ""] {
        let (status, _, body) = raw(&server, "POST", "/v1/completions", headers, hi);
        assert_eq!(status, 415, "{headers:?}: {body}");
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"]["code"], 415);
    }
    let (status, _, _) =
        raw(&server, "POST", "/v1/completions", "Content-Type: application/json; charset=utf-8\r\n", hi);
    assert_eq!(status, 200);
    // A wrong method, an unknown route: OpenAI's error shape.
    let (status, _, body) = raw(&server, "GET", "/v1/chat/completions", "", "");
    assert_eq!(status, 405, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["error"]["type"], "invalid_request_error");
    let (status, _, body) = raw(&server, "GET", "/nowhere", "", "");
    assert_eq!((status, serde_json::from_str::<Value>(&body).unwrap()["error"]["code"].clone()), (404, json!(404)));
    // The SDK's models.retrieve, and tool_choice "none" as clients send it by default.
    let (status, _, body) = raw(&server, "GET", "/v1/models/smol", "", "");
    assert_eq!((status, serde_json::from_str::<Value>(&body).unwrap()["id"].clone()), (200, json!("smol")));
    let (status, _, _) = raw(&server, "GET", "/v1/models/other", "", "");
    assert_eq!(status, 404);
    let mut with_choice = ask("Hi", 1);
    with_choice["tool_choice"] = json!("none");
    server.chat(&with_choice);
    with_choice["tool_choice"] = json!("required");
    assert_eq!(server.post("/v1/chat/completions", &with_choice).0, 400);
    // The OpenAI routes without `/v1`, as llama-server serves them.
    let (status, _, body) = raw(&server, "GET", "/models", "", "");
    assert_eq!((status, serde_json::from_str::<Value>(&body).unwrap()["data"][0]["id"].clone()), (200, json!("smol")));
    let (status, v) = server.post("/chat/completions", &ask("Hi", 2));
    assert_eq!((status, v["object"].clone()), (200, json!("chat.completion")), "{v}");
    // `/completions` is llama-server's own completion API there, as `/completion`: token ids in,
    // llama.cpp's fields out.
    let (status, v) = server.post("/completions", &json!({"prompt": "The sky is", "n_predict": 2}));
    assert_eq!((status, v["stop_type"].clone(), v["tokens_predicted"].clone()), (200, json!("limit"), json!(2)), "{v}");
    let (status, v) = server.post("/completion", &json!({"prompt": [504, 3658, 314], "n_predict": 2, "n_probs": 3}));
    assert_eq!((status, v["tokens_evaluated"].clone()), (200, json!(3)), "{v}");
    let probs = v["completion_probabilities"].as_array().unwrap();
    assert_eq!(probs.len(), 2, "{v}");
    assert!(probs
        .iter()
        .all(|p| p["logprob"].as_f64().unwrap() <= 0.0 && p["top_logprobs"].as_array().unwrap().len() == 3));
    // OpenAI's logprobs and n choices on the chat route.
    let mut two = ask("Hi", 3);
    two["n"] = json!(2);
    two["logprobs"] = json!(true);
    two["top_logprobs"] = json!(2);
    let (status, v) = server.post("/v1/chat/completions", &two);
    assert_eq!(status, 200, "{v}");
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], json!(i));
        let tokens = c["logprobs"]["content"].as_array().unwrap();
        let text: String = tokens.iter().map(|t| t["token"].as_str().unwrap()).collect();
        assert_eq!(text, c["message"]["content"].as_str().unwrap(), "the tokens spell the content");
        assert!(tokens.iter().all(|t| t["top_logprobs"].as_array().unwrap().len() == 2));
    }
}

/// --cors-origin replaces the default list.
#[test]
fn cors_origins_from_the_command_line() {
    let model = common::model(common::SMOLLM2);
    let server = Server::start(model.to_str().unwrap(), &["--cors-origin", "https://chat.example.com"]);
    let preflight = |origin: &str| {
        let headers = format!("Origin: {origin}\r\nAccess-Control-Request-Method: POST\r\n");
        raw(&server, "OPTIONS", "/v1/chat/completions", &headers, "").0
    };
    assert_eq!(preflight("https://chat.example.com"), 204);
    assert_eq!(preflight("http://localhost:3000"), 403);
    let out = common::strata(&["serve", model.to_str().unwrap(), "--cors-origin", "example.com"]);
    common::assert_clean_failure(&out, &["--cors-origin \"example.com\""]);
}

/// /props always; /slots and /metrics when asked for; one access-log line per request, with the
/// tokens of generations.
#[test]
fn props_slots_metrics_and_the_access_log() {
    let model = common::model(common::SMOLLM2);
    let server =
        Server::start(model.to_str().unwrap(), &["-np", "2", "-c", "1024", "--metrics", "--slots", "--alias", "smol"]);
    let (status, props) = server.try_get("/props").unwrap();
    let props: Value = serde_json::from_str(&props).unwrap();
    assert_eq!(status, 200, "{props}");
    assert_eq!((&props["total_slots"], &props["default_generation_settings"]["n_ctx"]), (&json!(2), &json!(512)));
    assert!(props["chat_template"].as_str().unwrap().contains("<|im_start|>"), "{props}");
    assert_eq!(props["model_alias"], "smol");
    let completion =
        json!({"prompt": "The capital of France is", "max_tokens": 8, "ignore_eos": true, "temperature": 0});
    let (status, answer) = server.post("/v1/completions", &completion);
    assert_eq!(status, 200, "{answer}");
    let (status, slots) = server.try_get("/slots").unwrap();
    let slots: Value = serde_json::from_str(&slots).unwrap();
    assert_eq!(status, 200);
    assert_eq!(slots.as_array().unwrap().len(), 2, "{slots}");
    let used = &slots[answer["timings"]["slot"].as_u64().unwrap() as usize];
    assert_eq!(used["is_processing"], false);
    assert!(used["n_cached"].as_u64().unwrap() >= answer["usage"]["prompt_tokens"].as_u64().unwrap(), "{slots}");
    let (status, metrics) = server.try_get("/metrics").unwrap();
    assert_eq!(status, 200);
    let prompt = answer["usage"]["prompt_tokens"].as_u64().unwrap();
    for line in [
        format!("strata_prompt_tokens_total {prompt}"),
        "strata_generated_tokens_total 8".to_string(),
        "strata_generations_total{stop_reason=\"limit\"} 1".to_string(),
        "strata_time_to_first_token_seconds_count 1".to_string(),
        "strata_time_per_token_seconds_count 7".to_string(),
        "strata_slots 2".to_string(),
        "strata_slots_busy 0".to_string(),
        "strata_queue_depth 0".to_string(),
    ] {
        assert!(metrics.lines().any(|l| l == line), "no {line:?} in\n{metrics}");
    }
    // The log: the chat with its tokens, the GETs, each once.
    std::thread::sleep(Duration::from_millis(300));
    let log = server.stderr.lock().unwrap().clone();
    let posts: Vec<&String> = log.iter().filter(|l| l.starts_with("POST /v1/completions 200 ")).collect();
    assert_eq!(posts.len(), 1, "{log:#?}");
    assert!(posts[0].ends_with(&format!(" ms {prompt}+8 tokens")), "{log:#?}");
    for path in ["/props", "/slots", "/metrics"] {
        assert_eq!(log.iter().filter(|l| l.starts_with(&format!("GET {path} 200 "))).count(), 1, "{path}: {log:#?}");
    }
    // Without the flags the two are off.
    let plain = Server::start(model.to_str().unwrap(), &["--log-format", "json"]);
    assert_eq!(plain.try_get("/slots").unwrap().0, 501);
    assert_eq!(plain.try_get("/metrics").unwrap().0, 501);
    std::thread::sleep(Duration::from_millis(300));
    let log = plain.stderr.lock().unwrap().clone();
    let line = log.iter().find(|l| l.contains("\"/metrics\"")).unwrap_or_else(|| panic!("{log:#?}"));
    let v: Value = serde_json::from_str(line).unwrap();
    assert_eq!((&v["method"], &v["status"]), (&json!("GET"), &json!(501)));
}

/// serve checks what it can before it says it listens: a missing or broken model file, a
/// context that leaves a slot so far under 256 tokens that llama.cpp's raise would more than
/// double it (up to double, it starts with a warning).
#[test]
fn serve_refuses_before_listening() {
    let model = common::model(common::SMOLLM2);
    let junk = common::scratch_file("junk-serve.gguf", b"not a model");
    for (args, needles) in [
        (vec!["serve", "/nonexistent/m.gguf"], vec!["/nonexistent/m.gguf", "no such file"]),
        (vec!["serve", junk.to_str().unwrap()], vec!["not a valid GGUF file"]),
        (
            vec!["serve", model.to_str().unwrap(), "-c", "64", "-np", "64"],
            vec!["-c 64 over 64 slots leaves 1 tokens each", "raise -c to 16384"],
        ),
        (vec!["serve", model.to_str().unwrap(), "-np", "64"], vec!["-c 4096 over 64 slots leaves 64 tokens each"]),
    ] {
        let out = common::strata(&args);
        let stderr = common::assert_clean_failure(&out, &needles);
        assert!(!stderr.contains("listening on"), "{stderr}");
    }
    let server = Server::start(model.to_str().unwrap(), &["-np", "1", "-c", "512"]);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        server.stderr.lock().unwrap().iter().any(|l| l == "model loaded: 1 slot of 512 tokens"),
        "{:#?}",
        server.stderr
    );
    // Twice the context asked: a warning, and four slots of 256.
    let server = Server::start(model.to_str().unwrap(), &["-np", "4", "-c", "512"]);
    std::thread::sleep(Duration::from_millis(200));
    let log = server.stderr.lock().unwrap().clone();
    assert!(log.iter().any(|l| l.starts_with("warning: -c 512 over 4 slots leaves 128 tokens each")), "{log:#?}");
    assert!(log.iter().any(|l| l == "model loaded: 4 slots of 256 tokens"), "{log:#?}");
}

/// A full queue and a loading model answer 503 with Retry-After.
#[test]
fn unavailable_answers_say_when_to_retry() {
    let model = common::model(common::SMOLLM2);
    let server = Server::start(model.to_str().unwrap(), &["-np", "1", "--max-queue", "1", "--metrics"]);
    let long = r#"{"prompt": "Once upon a time", "max_tokens": 400, "ignore_eos": true, "temperature": 0}"#;
    let json = "Content-Type: application/json\r\n";
    std::thread::scope(|s| {
        let busy: Vec<_> = (0..2).map(|_| s.spawn(|| raw(&server, "POST", "/v1/completions", json, long).0)).collect();
        // Once one runs and the other waits, a third is refused at once.
        let start = Instant::now();
        loop {
            let metrics = server.try_get("/metrics").unwrap().1;
            let has = |line: &str| metrics.lines().any(|l| l == line);
            if has("strata_slots_busy 1") && has("strata_queue_depth 1") {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "the queue never filled: {metrics}");
            std::thread::sleep(Duration::from_millis(20));
        }
        let (status, head, body) =
            raw(&server, "POST", "/v1/completions", json, r#"{"prompt": "Hi", "max_tokens": 1}"#);
        assert_eq!(status, 503, "{body}");
        assert!(head.contains("retry-after: 1"), "{head}");
        assert!(body.contains("the queue is full"), "{body}");
        for b in busy {
            assert_eq!(b.join().unwrap(), 200);
        }
    });
}

/// A conversation whose slot another request took comes back from host memory (--cache-ram):
/// its next turn evaluates only its new tokens, and answers as it would have without the cache.
#[test]
fn a_conversation_comes_back_from_the_prompt_cache() {
    let model = common::model(common::SMOLLM2);
    let turns = |server: &Server| {
        let first = server.chat(&ask("What is the capital of France?", 16));
        server.chat(&ask("Name a large animal that lives in the sea.", 16));
        let mut follow = ask("What is the capital of France?", 16);
        follow["messages"].as_array_mut().unwrap().extend([
            json!({"role": "assistant", "content": content(&first)}),
            json!({"role": "user", "content": "And of Germany?"}),
        ]);
        (first, server.chat(&follow))
    };
    let (first, second) = turns(&Server::start(model.to_str().unwrap(), &["-np", "1"]));
    let p1 = first["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(second["timings"]["cache_n"].as_u64().unwrap() >= p1, "restored: {second}");
    let (_, without) = turns(&Server::start(model.to_str().unwrap(), &["-np", "1", "--cache-ram", "0"]));
    assert!(without["timings"]["cache_n"].as_u64().unwrap() < p1, "only the shared system prompt: {without}");
    assert_eq!(content(&second), content(&without), "the cache changes the cost, not the answer");
}

/// llama-server's slot files: a conversation's slot saved under `--slot-save-path`, then
/// restored into a new server, costs that server only the conversation's new tokens, with the
/// same answer as without it; `erase` empties a slot. Without the flag the route is off (501);
/// a path in the file name, a missing file, an unknown action or slot (`id_slot` too) are 400s.
#[test]
fn a_slot_saved_to_a_file_comes_back_in_another_server() {
    let model = common::model(common::SMOLLM2);
    let dir = common::scratch_dir("slot-files");
    let flags = ["-np", "1", "--cache-ram", "0", "--slots", "--slot-save-path", dir.to_str().unwrap()];
    let first = ask("What is the capital of France?", 16);
    let follow_up = |answer: &Value| {
        let mut follow = first.clone();
        follow["messages"].as_array_mut().unwrap().extend([
            json!({"role": "assistant", "content": content(answer)}),
            json!({"role": "user", "content": "And of Germany?"}),
        ]);
        follow
    };
    let (answer, saved) = {
        let server = Server::start(model.to_str().unwrap(), &flags);
        let answer = server.chat(&first);
        let (status, saved) = server.post("/slots/0?action=save", &json!({"filename": "conversation.bin"}));
        assert_eq!(status, 200, "{saved}");
        assert_eq!((saved["id_slot"].as_u64(), saved["filename"].as_str()), (Some(0), Some("conversation.bin")));
        assert!(saved["n_written"].as_u64().unwrap() > 0 && saved["timings"]["save_ms"].is_number(), "{saved}");
        (answer, saved)
    };
    let n_saved = saved["n_saved"].as_u64().unwrap();
    let prompt_tokens = answer["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(n_saved >= prompt_tokens, "the prompt and the answer: {saved}");

    let server = Server::start(model.to_str().unwrap(), &flags);
    let (status, restored) = server.post("/slots/0?action=restore", &json!({"filename": "conversation.bin"}));
    assert_eq!(status, 200, "{restored}");
    assert_eq!(restored["n_restored"].as_u64(), Some(n_saved), "{restored}");
    assert_eq!(restored["n_read"], saved["n_written"]);
    let continued = server.chat(&follow_up(&answer));
    assert!(continued["timings"]["cache_n"].as_u64().unwrap() >= prompt_tokens, "restored: {continued}");
    let (status, erased) = server.post("/slots/0?action=erase", &json!({}));
    assert_eq!((status, erased["n_erased"].as_u64().unwrap() > n_saved), (200, true), "{erased}");
    let (_, slots) = server.try_get("/slots").unwrap();
    assert_eq!(serde_json::from_str::<Value>(&slots).unwrap()[0]["n_cached"], 0, "{slots}");
    let fresh = server.chat(&follow_up(&answer));
    assert!(fresh["timings"]["cache_n"].as_u64().unwrap() < prompt_tokens, "erased: {fresh}");
    assert_eq!(content(&continued), content(&fresh), "the file changes the cost, not the answer");

    for (path, body, needle) in [
        ("/slots/0?action=save", json!({"filename": "../escape.bin"}), "plain file name"),
        ("/slots/0?action=restore", json!({"filename": "missing.bin"}), "cannot restore slot 0"),
        ("/slots/0?action=rename", json!({}), "save, restore or erase"),
        ("/slots/3?action=erase", json!({}), "no slot 3"),
        ("/completion", json!({"prompt": "Hi", "id_slot": 3}), "no slot 3"),
    ] {
        let (status, v) = server.post(path, &body);
        assert_eq!(status, 400, "{path}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(needle), "{path}: {v}");
    }
    assert!(!dir.join("../escape.bin").exists());
    let off = Server::start(model.to_str().unwrap(), &["-np", "1"]);
    let (status, v) = off.post("/slots/0?action=erase", &json!({}));
    assert_eq!(status, 501, "{v}");
}

/// The processes whose parent is `pid` (from /proc).
fn children_of(pid: u32) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    dir.filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        // pid (comm) state ppid ...: comm may hold spaces, so read after its closing parenthesis.
        .filter_map(|stat| stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok()))
        .filter(|&ppid: &u32| ppid == pid)
        .count()
}

/// `--sleep-idle-seconds`: after the idle time the model's process ends (all its memory given
/// back); `/health`, `/props` and `/v1/models` answer without waking it; a completion does.
#[test]
fn an_idle_model_sleeps_and_a_request_wakes_it() {
    let model = common::model(common::SMOLLM2);
    let server = Server::start(model.to_str().unwrap(), &["--sleep-idle-seconds", "1", "-np", "1", "-c", "512"]);
    let pid = server.child.id();
    assert_eq!(children_of(pid), 1, "the model's process runs");
    let sleeping = || {
        let (status, body) = server.try_get("/props").unwrap();
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["is_sleeping"].as_bool().unwrap()
    };
    let start = Instant::now();
    while !sleeping() {
        assert!(start.elapsed() < Duration::from_secs(10), "no sleep after 10 s idle");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Asleep: the model's process ends as soon as its stdin closes.
    while children_of(pid) > 0 {
        assert!(start.elapsed() < Duration::from_secs(15), "the model's process did not end");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(server.try_get("/health").unwrap().0, 200);
    let (status, models) = server.try_get("/v1/models").unwrap();
    assert!(status == 200 && models.contains("SmolLM2"), "{models}");
    assert!(sleeping(), "read-only routes don't wake it");
    let (status, body) = server.post("/v1/completions", &json!({"prompt": "Once upon a time", "max_tokens": 4}));
    assert_eq!(status, 200, "{body}");
    assert!(!body["choices"][0]["text"].as_str().unwrap().is_empty());
    assert!(!sleeping());
    assert_eq!(children_of(pid), 1, "awake again");
}
