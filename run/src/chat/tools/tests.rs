use super::*;
use crate::chat::{Message, ToolCall};
use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use serde::Deserialize;
use serde_json::json;
use toktrie::ApproximateTokEnv;
use ToolFormat::*;

/// Recorded model outputs and what they hold, per format: llama.cpp's `tests/test-chat.cpp`
/// (today's and the one before its autoparser) and cases of our own (`source` says which).
const PARSE_CASES: &str = include_str!("testdata/parse_cases.json");

#[derive(Deserialize)]
struct Case {
    format: String,
    source: String,
    output: String,
    content: String,
    calls: Vec<ExpectedCall>,
}

#[derive(Deserialize)]
struct ExpectedCall {
    name: String,
    arguments: Value,
    id: Option<String>,
}

fn format_named(name: &str) -> ToolFormat {
    [Generic, Hermes, Llama3, Mistral, Gemma4].into_iter().find(|f| f.name() == name).expect("a format's name")
}

fn is_generated_id(id: &str) -> bool {
    id.len() == 9 && id.chars().all(|c| c.is_ascii_alphanumeric())
}

/// What differs between `calls` and `expected` (names, arguments as JSON, ids the model wrote);
/// empty when they agree.
fn call_differences(calls: &[ToolCall], expected: &[ExpectedCall]) -> Vec<String> {
    let mut out = Vec::new();
    if calls.len() != expected.len() {
        out.push(format!("{} calls, expected {}: {calls:?}", calls.len(), expected.len()));
        return out;
    }
    for (i, (call, want)) in calls.iter().zip(expected).enumerate() {
        let args: Result<Value, _> = serde_json::from_str(&call.arguments);
        if call.name != want.name || args.as_ref().ok() != Some(&want.arguments) {
            out.push(format!(
                "call {i}: {}({}), expected {}({})",
                call.name, call.arguments, want.name, want.arguments
            ));
        }
        match &want.id {
            Some(id) if &call.id != id => out.push(format!("call {i}: id {:?}, expected {id:?}", call.id)),
            None if !is_generated_id(&call.id) => out.push(format!("call {i}: generated id {:?}", call.id)),
            _ => {}
        }
    }
    out
}

#[test]
fn parses_the_recorded_outputs() {
    let cases: Vec<Case> = serde_json::from_str(PARSE_CASES).unwrap();
    assert_eq!(cases.len(), 102);
    let mut failures = Vec::new();
    for case in &cases {
        let (content, calls) = parse(format_named(&case.format), &case.output);
        let mut wrong = call_differences(&calls, &case.calls);
        if content != case.content {
            wrong.push(format!("content {content:?}, expected {:?}", case.content));
        }
        if !wrong.is_empty() {
            failures.push(format!("{} / {}: {:?}\n  {}", case.format, case.source, case.output, wrong.join("\n  ")));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases fail:\n{}", failures.len(), cases.len(), failures.join("\n"));
    for format in [Generic, Hermes, Llama3, Mistral, Gemma4] {
        let n = cases.iter().filter(|c| c.format == format.name()).count();
        assert!(n >= 9, "{} cases for {}", n, format.name());
    }
}

#[test]
fn outputs_cut_anywhere_parse_without_panic() {
    let cases: Vec<Case> = serde_json::from_str(PARSE_CASES).unwrap();
    let mut cut_calls = 0;
    for case in &cases {
        let cuts = case.output.char_indices().map(|(i, _)| i);
        for prefix in cuts.map(|i| &case.output[..i]) {
            for format in [Generic, Hermes, Llama3, Mistral, Gemma4] {
                let (content, calls) = parse(format, prefix);
                if calls.is_empty() {
                    assert_eq!(content, prefix, "{}", format.name());
                }
                assert!(calls
                    .iter()
                    .all(|c| !c.name.is_empty() && serde_json::from_str::<Value>(&c.arguments).is_ok()));
                cut_calls += calls.len();
            }
        }
    }
    // Some prefixes end right after a complete call (a closing marker left out at the end).
    assert!(cut_calls > 0);
}

#[test]
fn generated_ids_are_fresh() {
    let output = "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>\n\
                  <tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>";
    let (_, first) = parse(Hermes, output);
    let (_, again) = parse(Hermes, output);
    let ids: Vec<&str> = first.iter().chain(&again).map(|c| c.id.as_str()).collect();
    assert_eq!(ids.len(), 4);
    assert!(ids.iter().all(|id| is_generated_id(id)), "{ids:?}");
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 4, "{ids:?}");
}

#[test]
fn detects_the_format_of_real_templates() {
    let templates: &[(&str, &str, ToolFormat)] = &[
        (
            "Qwen 2.5",
            include_str!("../../../../tests/fixtures/templates/llama.cpp/Qwen-Qwen2.5-7B-Instruct.jinja"),
            Hermes,
        ),
        ("Qwen 3", include_str!("../../../../tests/fixtures/templates/llama.cpp/Qwen-Qwen3-0.6B.jinja"), Hermes),
        (
            "Hermes 2 Pro",
            include_str!(
                "../../../../tests/fixtures/templates/llama.cpp/NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja"
            ),
            Hermes,
        ),
        (
            "Hermes 3",
            include_str!(
                "../../../../tests/fixtures/templates/llama.cpp/NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja"
            ),
            Hermes,
        ),
        (
            "Llama 3.1",
            include_str!("../../../../tests/fixtures/templates/llama.cpp/meta-llama-Llama-3.1-8B-Instruct.jinja"),
            Llama3,
        ),
        (
            "Llama 3.2",
            include_str!("../../../../tests/fixtures/templates/llama.cpp/meta-llama-Llama-3.2-3B-Instruct.jinja"),
            Llama3,
        ),
        (
            "Llama 3.3",
            include_str!("../../../../tests/fixtures/templates/llama.cpp/meta-llama-Llama-3.3-70B-Instruct.jinja"),
            Llama3,
        ),
        (
            "Mistral Nemo",
            include_str!("../../../../tests/fixtures/templates/llama.cpp/mistralai-Mistral-Nemo-Instruct-2407.jinja"),
            Mistral,
        ),
        (
            "Mistral Small 3.2",
            include_str!("../../../../tests/fixtures/templates/llama.cpp/Mistral-Small-3.2-24B-Instruct-2506.jinja"),
            Mistral,
        ),
        (
            "Devstral",
            include_str!("../../../../tests/fixtures/templates/llama.cpp/unsloth-mistral-Devstral-Small-2507.jinja"),
            Mistral,
        ),
        (
            "Ministral 3",
            include_str!(
                "../../../../tests/fixtures/templates/llama.cpp/mistralai-Ministral-3-14B-Reasoning-2512.jinja"
            ),
            Mistral,
        ),
        ("Gemma 4", include_str!("../../../../tests/fixtures/templates/llama.cpp/google-gemma-4-31B-it.jinja"), Gemma4),
        // No tool support.
        (
            "SmolLM2",
            include_str!("../../../../tests/fixtures/templates/HuggingFaceTB-SmolLM2-135M-Instruct.jinja"),
            Generic,
        ),
        ("Gemma 3", include_str!("../../../../tests/fixtures/templates/google-gemma-3-it.jinja"), Generic),
        ("Gemma 2", include_str!("../../../../tests/fixtures/templates/llama.cpp/google-gemma-2-2b-it.jinja"), Generic),
        // Tools, in a format not handled here: `<tool_call>` or `<|python_tag|>` but not their JSON.
        ("Qwen3-Coder", include_str!("../../../../tests/fixtures/templates/llama.cpp/Qwen3-Coder.jinja"), Generic),
        ("GLM 4.6", include_str!("../../../../tests/fixtures/templates/llama.cpp/GLM-4.6.jinja"), Generic),
        (
            "functionary v3.1",
            include_str!("../../../../tests/fixtures/templates/llama.cpp/meetkai-functionary-medium-v3.1.jinja"),
            Generic,
        ),
    ];
    for (model, source, format) in templates {
        assert_eq!(ToolFormat::detect(source), *format, "{model}");
    }
    assert_eq!(ToolFormat::detect(""), Generic);
}

#[test]
fn names_and_who_renders_tools() {
    let formats = [Generic, Hermes, Llama3, Mistral, Gemma4];
    let names: Vec<&str> = formats.iter().map(|f| f.name()).collect();
    assert_eq!(names, ["generic", "hermes", "llama3", "mistral", "gemma4"]);
    let rendered: Vec<bool> = formats.iter().map(|f| f.template_renders_tools()).collect();
    assert_eq!(rendered, [false, true, true, true, true]);
}

fn tool(name: &str, parameters: Value) -> Tool {
    Tool { name: name.to_string(), description: Some(format!("The {name} tool.")), parameters }
}

/// The tools the grammars are built for: llama.cpp's test tools, and one with nested arrays.
fn tools() -> Vec<Tool> {
    vec![
        tool(
            "special_function",
            json!({"type": "object", "properties": {"arg1": {"type": "integer"}}, "required": ["arg1"]}),
        ),
        tool(
            "special_function_with_opt",
            json!({"type": "object", "properties": {"arg1": {"type": "integer"}, "arg2": {"type": "integer"}},
                   "required": ["arg1"]}),
        ),
        tool(
            "get_weather",
            json!({"type": "object", "properties": {"city": {"type": "string"},
                   "unit": {"enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}),
        ),
        tool(
            "nested_args",
            json!({"type": "object", "properties": {
                "tags": {"type": "array", "items": {"type": "string"}},
                "entries": {"type": "array", "items": {"type": "object",
                    "properties": {"id": {"type": "integer"}, "label": {"type": "string"}},
                    "required": ["id", "label"]}}},
                "required": ["tags", "entries"]}),
        ),
        tool(
            "set_config",
            json!({"type": "object", "properties": {"config": {"type": "object"}}, "required": ["config"]}),
        ),
        tool("empty_args", json!({})),
    ]
}

/// Outputs the grammars should accept, with the calls they hold, and outputs every grammar of the
/// format rejects (unknown functions, arguments against the schema), for the tools of [`tools`].
const GRAMMAR_CASES: &str = include_str!("testdata/grammar_cases.json");

#[derive(Deserialize)]
struct GrammarCases {
    accepted: Vec<Accepted>,
    rejected: Vec<Rejected>,
}

#[derive(Deserialize)]
struct Accepted {
    format: String,
    output: String,
    calls: Vec<ExpectedCall>,
}

#[derive(Deserialize)]
struct Rejected {
    format: String,
    output: String,
    why: String,
}

fn matcher(lark: &str) -> Matcher {
    let mut factory = ParserFactory::new_simple(&ApproximateTokEnv::single_byte_env()).unwrap();
    factory.quiet();
    let parser = factory.create_parser(TopLevelGrammar::from_lark(lark.to_string()));
    if let Err(e) = &parser {
        panic!("the grammar does not compile: {e}\n{lark}");
    }
    let matcher = Matcher::new(parser);
    assert!(matcher.get_error().is_none(), "{:?}\n{lark}", matcher.get_error());
    matcher
}

/// Whether the grammar takes `text` whole, fed byte by byte (a byte's token id is its value).
fn accepts(lark: &str, text: &str) -> bool {
    let mut m = matcher(lark);
    text.bytes().all(|b| m.consume_token(b as u32).is_ok()) && m.is_accepting().unwrap()
}

/// The grammar's input for an output: what follows the trigger for a lazy grammar (None when the
/// output does not start with one).
fn input<'a>(g: &CallGrammar, output: &'a str) -> Option<&'a str> {
    if g.triggers.is_empty() {
        return Some(output);
    }
    g.triggers.iter().find_map(|t| output.strip_prefix(t.as_str()))
}

#[test]
fn grammars_take_calls_and_reject_the_rest() {
    let cases: GrammarCases = serde_json::from_str(GRAMMAR_CASES).unwrap();
    let tools = tools();
    let choices = [ToolChoice::Auto, ToolChoice::Required, ToolChoice::Named("special_function".into())];
    let mut checked = 0;
    for format in [Generic, Hermes, Llama3, Mistral, Gemma4] {
        for choice in &choices {
            for parallel in [false, true] {
                let mode = format!("{} {choice:?} parallel={parallel}", format.name());
                let Some(g) = grammar(format, &tools, choice, parallel) else {
                    assert_eq!((format, choice), (Llama3, &ToolChoice::Auto), "{mode}: no grammar");
                    continue;
                };
                let lazy = *choice == ToolChoice::Auto && format != Generic;
                let trigger = match format {
                    Hermes => "<tool_call>",
                    Mistral => "[TOOL_CALLS]",
                    Gemma4 => "<|tool_call>",
                    _ => "",
                };
                assert_eq!(g.triggers, if lazy { vec![trigger.to_string()] } else { vec![] }, "{mode}");
                for case in cases.accepted.iter().filter(|c| c.format == format.name()) {
                    let Some(text) = input(&g, &case.output) else { continue };
                    let named_ok = match choice {
                        ToolChoice::Named(n) => case.calls.iter().all(|c| &c.name == n),
                        _ => true,
                    };
                    let count_ok = if format == Generic {
                        case.output.contains("\"tool_calls\"") == parallel
                    } else {
                        case.calls.len() == 1 || (parallel && format != Llama3)
                    };
                    let allowed =
                        if case.calls.is_empty() { *choice == ToolChoice::Auto } else { named_ok && count_ok };
                    assert_eq!(accepts(&g.lark, text), allowed, "{mode}: {:?}\n{}", case.output, g.lark);
                    checked += 1;
                    if allowed {
                        let (_, calls) = parse(format, &case.output);
                        let wrong = call_differences(&calls, &case.calls);
                        assert!(wrong.is_empty(), "{mode}: {:?}: {}", case.output, wrong.join("; "));
                    }
                }
                for case in cases.rejected.iter().filter(|c| c.format == format.name()) {
                    if let Some(text) = input(&g, &case.output) {
                        assert!(
                            !accepts(&g.lark, text),
                            "{mode}: accepts {:?} ({})\n{}",
                            case.output,
                            case.why,
                            g.lark
                        );
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked > 250, "{checked} checks");
}

#[test]
fn no_grammar_without_a_call_to_make() {
    let tools = tools();
    for format in [Generic, Hermes, Llama3, Mistral, Gemma4] {
        assert_eq!(grammar(format, &tools, &ToolChoice::None, true), None);
        assert_eq!(grammar(format, &[], &ToolChoice::Required, true), None);
        assert_eq!(grammar(format, &tools, &ToolChoice::Named("not_offered".into()), false), None);
    }
}

#[test]
fn a_tool_without_parameters_takes_an_object() {
    let tools = [Tool { name: "ping".into(), description: None, parameters: Value::Null }];
    let g = grammar(Hermes, &tools, &ToolChoice::Required, false).unwrap();
    assert!(accepts(&g.lark, "<tool_call>\n{\"name\": \"ping\", \"arguments\": {}}\n</tool_call>"));
    assert!(!accepts(&g.lark, "<tool_call>\n{\"name\": \"ping\", \"arguments\": []}\n</tool_call>"));
    assert_eq!(
        tools[0].to_openai(),
        json!({"type": "function", "function": {"name": "ping", "parameters": {"type": "object", "properties": {}}}})
    );
}

#[test]
fn generic_system_prompt_lists_tools_and_the_answer() {
    let tools = [tool("special_function", json!({"type": "object", "properties": {"arg1": {"type": "integer"}}}))];
    let expected = concat!(
        r#"You can call any of the following tools to satisfy the user's requests: [
  {
    "type": "function",
    "function": {
      "name": "special_function",
      "description": "The special_function tool.",
      "parameters": {
        "type": "object",
        "properties": {
          "arg1": {
            "type": "integer"
          }
        }
      }
    }
  }
]

Respond in JSON format, either with `tool_call` (a request to call tools) or with `response` "#,
        r#"reply to the user's request:
{"tool_call": {"name": "<tool name>", "arguments": {<arguments>}}}
or
{"response": "<your reply>"}"#
    );
    assert_eq!(generic_system_prompt(&tools, &ToolChoice::Auto, false), expected);

    let required = generic_system_prompt(&tools, &ToolChoice::Required, true);
    assert!(required.ends_with(
        "Respond in JSON format with `tool_calls` (a request to call tools):\n\
         {\"tool_calls\": [{\"name\": \"<tool name>\", \"arguments\": {<arguments>}}, ...]}"
    ));
    let two = [tools[0].clone(), tool("get_weather", json!({}))];
    let named = generic_system_prompt(&two, &ToolChoice::Named("get_weather".into()), false);
    assert!(named.contains("\"name\": \"get_weather\"") && !named.contains("special_function"), "{named}");
    assert_eq!(generic_system_prompt(&two, &ToolChoice::None, false), "");
}

fn call(id: &str, name: &str, arguments: &str) -> ToolCall {
    ToolCall { id: id.into(), name: name.into(), arguments: arguments.into() }
}

#[test]
fn generic_messages_write_calls_and_results_as_text() {
    let messages = vec![
        Message::new("system", "Be brief."),
        Message::new("user", "Weather in Paris and Oslo?"),
        Message {
            tool_calls: vec![call("call_1", "get_weather", r#"{"city":"Paris"}"#)],
            ..Message::new("assistant", "Checking.")
        },
        Message {
            tool_call_id: Some("call_1".into()),
            name: Some("get_weather".into()),
            ..Message::new("tool", r#"{"temp": 18}"#)
        },
        Message {
            tool_calls: vec![call("", "get_weather", r#"{"city":"Oslo"}"#), call("b", "get_time", "{}")],
            ..Message::new("assistant", "")
        },
        Message { tool_call_id: Some("b".into()), ..Message::new("tool", "12:00") },
        Message::new("assistant", "Paris 18°C, Oslo later."),
    ];
    let out = generic_messages(&messages);
    let expected = vec![
        messages[0].clone(),
        messages[1].clone(),
        Message::new(
            "assistant",
            r#"{
  "tool_call": {
    "name": "get_weather",
    "arguments": {
      "city": "Paris"
    },
    "id": "call_1"
  },
  "content": "Checking."
}"#,
        ),
        Message::new(
            "user",
            r#"{
  "tool_response": {
    "tool": "get_weather",
    "content": "{\"temp\": 18}",
    "tool_call_id": "call_1"
  }
}"#,
        ),
        Message::new(
            "assistant",
            r#"{
  "tool_calls": [
    {
      "name": "get_weather",
      "arguments": {
        "city": "Oslo"
      }
    },
    {
      "name": "get_time",
      "arguments": {},
      "id": "b"
    }
  ]
}"#,
        ),
        Message::new(
            "user",
            r#"{
  "tool_response": {
    "content": "12:00",
    "tool_call_id": "b"
  }
}"#,
        ),
        messages[6].clone(),
    ];
    assert_eq!(out, expected);

    // What the history shows, the generic parser reads back.
    let (content, calls) = parse(Generic, &out[2].content);
    assert_eq!((content.as_str(), calls), ("Checking.", vec![call("call_1", "get_weather", r#"{"city":"Paris"}"#)]));
    let (content, calls) = parse(Generic, &out[4].content);
    assert_eq!(content, "");
    assert_eq!(calls[1], call("b", "get_time", "{}"));
    assert_eq!((calls[0].name.as_str(), calls[0].arguments.as_str()), ("get_weather", r#"{"city":"Oslo"}"#));
}
