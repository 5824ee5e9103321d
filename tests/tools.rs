//! Tool calls and structured output on the real models, through clients no one here wrote (the
//! official `openai` and `anthropic` packages, outputs checked by `jsonschema`), the CLI's
//! `--json-schema` and `--grammar`, and hostile schemas and tools: each a clear 400, the server
//! serving on.

mod common;

use common::serve::Server;

use std::process::Command;

use serde_json::{json, Value};

/// The client script's checks pass on `model`: eight schemas validate, a required call is valid
/// and its result leads to a text answer, Anthropic's API answers plainly, streamed and with a
/// tool.
fn clients_pass(model: &str) -> Value {
    let model = common::model(model);
    let server = Server::start(model.to_str().unwrap(), &["-c", "4096"]);
    let script = common::repo().join("tests/support/tools_client.py");
    let out = Command::new(common::python()).arg(&script).arg(server.base()).output().unwrap();
    assert!(
        out.status.success(),
        "tools_client.py failed:\n{}\nserver:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.stderr.lock().unwrap().join("\n")
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["schemas"].as_object().unwrap().len(), 8, "{seen}");
    assert_eq!(seen["call"]["name"], "get_weather");
    assert!(seen["call"]["arguments"]["city"].is_string(), "{seen}");
    seen
}

#[test]
fn smollm2_schemas_tools_and_messages_through_real_clients() {
    clients_pass(common::SMOLLM2);
}

#[test]
fn gemma3_schemas_tools_and_messages_through_real_clients() {
    clients_pass(common::GEMMA3);
}

/// A schema that is invalid, recursive, huge or uses an unsupported keyword, a tool with a bad
/// name, a result answering no call: each a 400 that says what is wrong; the server answers the
/// next request.
#[test]
fn hostile_schemas_and_tools_are_clear_400s() {
    let model = common::model(common::SMOLLM2);
    let server = Server::start(model.to_str().unwrap(), &[]);
    let user = json!([{"role": "user", "content": "Hi"}]);
    let schema_request = |schema: Value| {
        json!({"messages": user, "max_tokens": 8,
               "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}})
    };
    let huge: serde_json::Map<String, Value> =
        (0..10_000).map(|i| (format!("p{i}"), json!({"type": "integer"}))).collect();
    let cases = [
        (schema_request(json!({"type": "strnig"})), "strnig"),
        (schema_request(json!({"type": "array", "uniqueItems": true})), "uniqueItems"),
        (schema_request(json!({"$ref": "#/$defs/nowhere"})), "nowhere"),
        (schema_request(json!([1, 2])), "must be an object"),
        (json!({"messages": user, "response_format": {"type": "json_schema"}}), "json_schema"),
        (json!({"messages": user, "response_format": {"type": "xml"}}), "response_format"),
        (json!({"messages": user, "grammar": "root ::= \"a"}), "grammar"),
        (json!({"messages": user, "tools": [{"type": "function", "function": {"name": "bad name!"}}]}), "bad name!"),
        (
            json!({"messages": user, "tools": [{"type": "function", "function": {"name": "f"}}],
                   "tool_choice": {"type": "function", "function": {"name": "g"}}}),
            "\"g\"",
        ),
        (json!({"messages": user, "tool_choice": "required"}), "no tools"),
        (
            json!({"messages": [{"role": "user", "content": "Hi"},
                                {"role": "tool", "tool_call_id": "call_9", "content": "18C"}]}),
            "call_9",
        ),
        (
            json!({"messages": user, "response_format": {"type": "json_object"},
                   "tools": [{"type": "function", "function": {"name": "f"}}]}),
            "cannot be combined",
        ),
    ];
    for (body, needle) in cases {
        let (status, v) = server.post("/v1/chat/completions", &body);
        assert_eq!(status, 400, "{body}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{needle:?} not in {message:?}");
    }
    // A huge schema is refused before it is compiled (compiling is quadratic in the properties).
    let (status, v) =
        server.post("/v1/chat/completions", &schema_request(json!({"type": "object", "properties": huge})));
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("10000 properties in one object"), "{v}");
    // A recursive schema is fine.
    let tree = json!({"$defs": {"n": {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/n"}}}}},
                      "$ref": "#/$defs/n"});
    let v = server.chat(&schema_request(tree));
    assert!(v["choices"][0]["message"]["content"].as_str().unwrap().starts_with('{'), "{v}");
    // Still serving.
    let v = server.chat(&json!({"messages": user, "max_tokens": 4, "temperature": 0}));
    assert!(v["choices"][0]["message"]["content"].is_string());
    // Anthropic's errors come in Anthropic's shape.
    let (status, v) = server.post("/v1/messages", &json!({"messages": user}));
    assert_eq!(status, 400);
    assert_eq!(v["type"], "error");
    assert!(v["error"]["message"].as_str().unwrap().contains("max_tokens"), "{v}");
}

/// `generate --json-schema` and `--grammar` (GBNF) hold the answer to the file's shape; a bad
/// file is a one-line error naming it.
#[test]
fn generate_follows_a_schema_file_and_a_gbnf_file() {
    let model = common::model(common::SMOLLM2);
    let schema = json!({"type": "object", "properties": {"answer": {"type": "string", "maxLength": 30},
                        "confidence": {"type": "integer", "minimum": 0, "maximum": 100}},
                        "required": ["answer", "confidence"], "additionalProperties": false});
    let schema_file = common::scratch_file("answer.schema.json", schema.to_string().as_bytes());
    let model = model.to_str().unwrap();
    let out = common::strata_ok(&[
        "generate",
        model,
        "--chat",
        "-p",
        "What is the capital of France?",
        "--temp",
        "0",
        "-n",
        "64",
        "--json-schema",
        schema_file.to_str().unwrap(),
        "--json",
    ]);
    let r: Value = serde_json::from_str(&out).unwrap();
    let answer: Value = serde_json::from_str(r["text"].as_str().unwrap()).unwrap();
    assert!(answer["answer"].is_string() && answer["confidence"].as_i64().is_some_and(|c| (0..=100).contains(&c)));

    let gbnf = "root ::= answer \".\"\nanswer ::= \"yes\" | \"no\"\n";
    let gbnf_file = common::scratch_file("yes-no.gbnf", gbnf.as_bytes());
    let out = common::strata_ok(&[
        "generate",
        model,
        "--chat",
        "-p",
        "Is Paris in France?",
        "--temp",
        "0",
        "-n",
        "16",
        "--grammar",
        gbnf_file.to_str().unwrap(),
        "--json",
    ]);
    let r: Value = serde_json::from_str(&out).unwrap();
    assert!(["yes.", "no."].contains(&r["text"].as_str().unwrap()), "{r}");

    let bad = common::scratch_file("bad.gbnf", b"root ::= missing\n");
    let out = common::strata(&["generate", model, "-p", "x", "--grammar", bad.to_str().unwrap()]);
    common::assert_clean_failure(&out, &["bad.gbnf", "missing"]);
    let bad = common::scratch_file("bad.schema.json", b"{\"type\": ");
    let out = common::strata(&["generate", model, "-p", "x", "--json-schema", bad.to_str().unwrap()]);
    common::assert_clean_failure(&out, &["bad.schema.json", "not valid JSON"]);
}

/// The real chat templates of Gemma 4, Qwen 3, Llama 3.1 and Mistral over tiny random-weight
/// models: with `required` (or a named function) the constrained output is a call in the
/// template's own format, which parses back into a call whose arguments fit the schema, whatever
/// the weights (a thinking segment, which the formats allow before a call, is closed at once by a
/// reasoning budget of 0); with `auto` the answer is text or well-formed calls, never an error.
#[test]
fn real_templates_give_valid_calls_from_random_weights() {
    let templates = common::repo().join("tests/fixtures/templates/llama.cpp");
    let cases = [
        ("gemma4", "google-gemma-4-31B-it.jinja"),
        ("qwen3", "Qwen-Qwen3-0.6B.jinja"),
        ("llama", "meta-llama-Llama-3.1-8B-Instruct.jinja"),
        ("qwen3", "mistralai-Mistral-Nemo-Instruct-2407.jinja"),
    ];
    let weather = json!({"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "maxLength": 12},
            "unit": {"enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 7}},
        "required": ["city", "unit"], "additionalProperties": false}}});
    let time = json!({"type": "function", "function": {"name": "get_time", "parameters": {"type": "object",
        "properties": {"zone": {"type": "string", "maxLength": 8}}, "required": ["zone"], "additionalProperties": false}}});
    for (fixture, template) in cases {
        let model = common::repo().join(format!("tests/fixtures/models/{fixture}/llamacpp-q8_0.gguf"));
        let template = templates.join(template);
        let server = Server::start(model.to_str().unwrap(), &["--chat-template-file", template.to_str().unwrap()]);
        let choices = [json!("required"), json!({"type": "function", "function": {"name": "get_time"}})];
        for (seed, choice) in (0..6).zip(choices.iter().cycle()) {
            let body = json!({"messages": [{"role": "user", "content": "Weather in Paris, and the time?"}],
                "tools": [weather, time], "tool_choice": choice, "parallel_tool_calls": false,
                "temperature": 1.0, "seed": seed, "max_tokens": 300, "reasoning_budget": 0});
            let v = server.chat(&body);
            let what = format!("{} seed {seed}: {v}", template.display());
            assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{what}");
            let calls = v["choices"][0]["message"]["tool_calls"].as_array().unwrap();
            assert_eq!(calls.len(), 1, "{what}");
            let thought = v["choices"][0]["message"]["reasoning_content"].as_str().unwrap_or("");
            assert!(thought.trim().is_empty(), "{what}");
            let name = calls[0]["function"]["name"].as_str().unwrap();
            let args: Value = serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
            match name {
                "get_weather" => {
                    assert!(choice == "required", "{what}");
                    assert!(args["city"].as_str().is_some_and(|c| c.chars().count() <= 12), "{what}");
                    assert!(args["unit"] == "celsius" || args["unit"] == "fahrenheit", "{what}");
                    assert!(
                        args.get("days").is_none_or(|d| d.as_i64().is_some_and(|d| (1..=7).contains(&d))),
                        "{what}"
                    );
                    assert!(args.as_object().unwrap().keys().all(|k| ["city", "unit", "days"].contains(&k.as_str())));
                }
                "get_time" => {
                    assert!(args["zone"].as_str().is_some_and(|z| z.chars().count() <= 8), "{what}");
                    assert_eq!(args.as_object().unwrap().len(), 1, "{what}");
                }
                other => panic!("{other}: {what}"),
            }
        }
        for seed in 0..3 {
            let body = json!({"messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": [weather],
                "tool_choice": "auto", "temperature": 1.0, "seed": seed, "max_tokens": 60});
            let v = server.chat(&body);
            let message = &v["choices"][0]["message"];
            assert!(message["content"].is_string() || message["tool_calls"].is_array(), "{v}");
        }
    }
}

/// `strata bench --json-schema` generates under the schema beside the free generation and reports
/// the constraint's time per token.
#[test]
fn bench_reports_the_constraints_cost() {
    let model = common::model(common::SMOLLM2);
    let schema = common::repo().join("scripts/bench/person.schema.json");
    let out = common::strata_ok(&[
        "bench",
        model.to_str().unwrap(),
        "-p",
        "0",
        "-n",
        "16",
        "-r",
        "1",
        "--json-schema",
        schema.to_str().unwrap(),
        "--json",
    ]);
    let r: Value = serde_json::from_str(&out).unwrap();
    let tests: Vec<&str> = r["tests"].as_array().unwrap().iter().map(|t| t["test"].as_str().unwrap()).collect();
    assert_eq!(tests, ["tg16", "tg16 (json-schema)"]);
    assert!(r["tests"][1]["tokens_per_second"].as_f64().is_some_and(|t| t > 0.0), "{r}");
    assert!(r["constraint_ms_per_token"].as_f64().is_some_and(|ms| ms > 0.0), "{r}");
}

/// The `data:` JSON objects of a server-sent event stream.
fn events(body: &str) -> Vec<Value> {
    body.lines().filter_map(|l| l.strip_prefix("data: ")).filter_map(|d| serde_json::from_str(d).ok()).collect()
}

/// A template that opens the thinking segment in the prompt (DeepSeek R1's) over a tiny
/// random-weight model, which never closes it by itself: a reasoning budget closes it by forcing
/// `</think>`, and every API keeps the thinking apart — chat's `reasoning_content`, the Responses
/// API's reasoning item (streamed before the message, at output index 0), Anthropic's thinking
/// block; a budget of 0 leaves no thinking at all.
#[test]
fn a_budget_ends_thinking_and_every_api_keeps_it_apart() {
    let model = common::repo().join("tests/fixtures/models/qwen3/llamacpp-q8_0.gguf");
    let template =
        common::repo().join("tests/fixtures/templates/llama.cpp/deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja");
    let server = Server::start(
        model.to_str().unwrap(),
        &["--chat-template-file", template.to_str().unwrap(), "--think", "true", "--reasoning-budget", "6", "-np", "1"],
    );
    let user = json!([{"role": "user", "content": "Hi"}]);
    let chat = |budget: Option<i64>| {
        let mut body = json!({"messages": user, "max_tokens": 40, "temperature": 1.0, "seed": 7});
        if let Some(b) = budget {
            body["reasoning_budget"] = b.into();
        }
        server.chat(&body)
    };
    // The server's budget: some thinking, closed, then an answer.
    let v = chat(None);
    let message = &v["choices"][0]["message"];
    assert!(message["reasoning_content"].as_str().is_some_and(|r| !r.is_empty()), "{v}");
    assert!(message["content"].as_str().is_some_and(|c| !c.contains("</think>")), "{v}");
    // Without a budget the model thinks until it stops: everything is reasoning.
    let v = chat(Some(-1));
    assert_eq!(v["choices"][0]["message"]["content"], "", "{v}");
    assert!(v["choices"][0]["message"]["reasoning_content"].as_str().is_some_and(|r| !r.is_empty()), "{v}");
    // A budget of 0: closed at once.
    let v = chat(Some(0));
    let thought = v["choices"][0]["message"]["reasoning_content"].as_str().unwrap_or("");
    assert!(thought.trim().is_empty(), "{v}");

    let body = json!({"input": "Hi", "max_output_tokens": 40, "temperature": 1.0, "seed": 7, "stream": true});
    let (status, text) = server.post_raw("/v1/responses", "", body.to_string().as_bytes());
    assert_eq!(status, 200, "{text}");
    let kinds: Vec<Value> = events(&text);
    let first_reasoning = kinds.iter().position(|e| e["type"] == "response.reasoning_text.delta");
    let first_text = kinds.iter().position(|e| e["type"] == "response.output_text.delta");
    assert!(first_reasoning.is_some() && first_text.is_some() && first_reasoning < first_text, "{text}");
    let done = kinds.iter().find(|e| e["type"] == "response.completed").unwrap();
    assert_eq!(done["response"]["output"][0]["type"], "reasoning", "{done}");
    assert_eq!(done["response"]["output"][1]["type"], "message", "{done}");
    let at = |kind: &str| kinds.iter().find(|e| e["type"] == kind).unwrap()["output_index"].clone();
    assert_eq!((at("response.reasoning_text.delta"), at("response.output_text.delta")), (json!(0), json!(1)));
    let numbers: Vec<u64> = kinds.iter().filter_map(|e| e["sequence_number"].as_u64()).collect();
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "sequence numbers count up: {numbers:?}");

    let body = json!({"messages": user, "max_tokens": 40, "temperature": 1.0, "seed": 7});
    let (status, v) = server.post("/v1/messages", &body);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["content"][0]["type"], "thinking", "{v}");
    assert_eq!(v["content"][1]["type"], "text", "{v}");
}
