//! The grammar that constrains a call while it is generated, in llguidance's Lark dialect:
//! each format's markers as literals around the arguments, which follow the function's JSON
//! Schema (`%json`, or Gemma 4's own syntax).

use crate::constraint::compiled_schema;
use serde_json::{json, Value};

use super::{gemma, offered, Tool, ToolChoice, ToolFormat};

/// What constrains the output when tools are offered: a Lark grammar in llguidance's dialect,
/// applied from the start of the output, or only once one of `triggers` has been generated (a
/// "lazy" grammar: free text stays free until the model starts a call; the grammar then covers
/// what follows the trigger text).
///
/// Markers are literal text: a vocabulary that makes one a control token must let that token
/// match its text (the triggers are matched on text too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallGrammar {
    pub lark: String,
    pub triggers: Vec<String>,
}

/// The grammar for `choice` (None for ToolChoice::None, for a choice that names no offered
/// tool, and for Auto in formats where no trigger can be known: Llama 3's calls are bare JSON).
/// Required/Named: the output must be call(s), after an optional thinking segment (only the
/// named function for Named); `parallel`: more than one call allowed (Llama 3.x's template
/// takes one call per message, so there it allows one).
pub fn grammar(format: ToolFormat, tools: &[Tool], choice: &ToolChoice, parallel: bool) -> Option<CallGrammar> {
    let tools = offered(tools, choice);
    if tools.is_empty() {
        return None;
    }
    let lazy = *choice == ToolChoice::Auto;
    let (trigger, call, separator, thinking) = match format {
        ToolFormat::Generic => {
            let lark = format!("start: {}", json_rule(generic_schema(&tools, lazy, parallel)));
            return Some(CallGrammar { lark, triggers: Vec::new() });
        }
        ToolFormat::Llama3 if lazy => return None,
        ToolFormat::Llama3 => return Some(CallGrammar { lark: llama3(&tools), triggers: Vec::new() }),
        ToolFormat::Hermes => ("<tool_call>", hermes(&tools), "\n<tool_call>", ("<think>", "</think>")),
        ToolFormat::Mistral => ("[TOOL_CALLS]", mistral(&tools, parallel), "[TOOL_CALLS]", ("[THINK]", "[/THINK]")),
        ToolFormat::Gemma4 => ("<|tool_call>", gemma4(&tools), "<|tool_call>", ("<|channel>", "<channel|>")),
    };
    // `call` defines `call`, what follows the trigger.
    let calls = if parallel { format!("call ({} call)*", lit(separator)) } else { "call".to_string() };
    let start = if lazy {
        format!("start: {calls}")
    } else {
        // A thinking segment may come first: the lazy regex ends it at the first closing marker.
        let (open, close) = thinking;
        let segment = format!("/{}(.|\\n)*{}/", regex_escape(open), regex_escape(close));
        format!(
            "start: thinking? {} {calls}\nthinking: thinking-text /[ \\n]{{1,8}}/?\nthinking-text[lazy]: {segment}",
            lit(trigger)
        )
    };
    let triggers = if lazy { vec![trigger.to_string()] } else { Vec::new() };
    Some(CallGrammar { lark: format!("{start}\n{call}"), triggers })
}

/// After `<tool_call>`: `\n{"name": "NAME", "arguments": {...}}\n</tool_call>`.
fn hermes(tools: &[&Tool]) -> String {
    let fns = alternatives(tools, |t| named(t, "arguments"));
    format!("call: \"\\n\"? \"{{\\\"name\\\": \" function \"}}\" \"\\n\"? \"</tool_call>\"\nfunction: {fns}")
}

/// The whole output: `{"name": "NAME", "parameters": {...}}`.
fn llama3(tools: &[&Tool]) -> String {
    let fns = alternatives(tools, |t| named(t, "parameters"));
    format!("start: \"{{\\\"name\\\": \" function \"}}\"\nfunction: {fns}")
}

/// After `[TOOL_CALLS]`: Nemo's `[{"name": "NAME", "arguments": {...}, "id": "ID"}, ...]`, or the
/// later templates' `NAME[CALL_ID]ID[ARGS]{...}` / `NAME[ARGS]{...}` (one call per marker).
fn mistral(tools: &[&Tool], parallel: bool) -> String {
    let json_fns = alternatives(tools, |t| named(t, "arguments"));
    let tagged_fns = alternatives(tools, |t| {
        let with_id = format!("{} CALL_ID {}", lit(&format!("{}[CALL_ID]", t.name)), lit("[ARGS]"));
        format!("({with_id} | {}) {}", lit(&format!("{}[ARGS]", t.name)), args(t))
    });
    let more = if parallel { r#"(", " item)*"# } else { "" };
    [
        format!(r#"call: "[" item {more} "]" | tagged"#),
        r#"item: "{\"name\": " json-function ", \"id\": \"" CALL_ID "\"}""#.to_string(),
        format!("json-function: {json_fns}"),
        format!("tagged: {tagged_fns}"),
        "CALL_ID: /[a-zA-Z0-9]{9}/".to_string(),
    ]
    .join("\n")
}

/// After `<|tool_call>`: `call:NAME{key:value,...}<tool_call|>`.
fn gemma4(tools: &[&Tool]) -> String {
    let mut rules = gemma::Rules::new();
    let fns = alternatives(tools, |t| format!("{} {}", lit(&t.name), rules.object(&t.parameters_schema())));
    let mut lark = vec![format!(r#"call: "call:" function "<tool_call|>""#), format!("function: {fns}")];
    lark.extend(rules.into_lark());
    lark.join("\n")
}

/// One alternative per tool.
fn alternatives(tools: &[&Tool], mut each: impl FnMut(&Tool) -> String) -> String {
    tools.iter().map(|t| format!("({})", each(t))).collect::<Vec<_>>().join(" | ")
}

/// The rest of a call object after `{"name": `: `"NAME", "<args_key>": ` and the arguments.
fn named(tool: &Tool, args_key: &str) -> String {
    format!("{} {}", lit(&format!("{}, \"{args_key}\": ", json!(tool.name))), args(tool))
}

/// A tool's arguments, as its schema says.
fn args(tool: &Tool) -> String {
    json_rule(tool.parameters_schema())
}

/// `%json` for `schema`, as strata compiles every schema ([`compiled_schema`]: one space after
/// `,` and `:`, no other whitespace, numbers bounded).
pub(super) fn json_rule(schema: Value) -> String {
    let schema = if schema.is_object() { schema } else { json!({"type": "object"}) };
    format!("%json {}", compiled_schema(&schema))
}

/// The JSON answer of the generic format: `{"tool_call": {"name", "arguments"}}`, `{"tool_calls":
/// [...]}` when `parallel`, or (when `with_response`) `{"response": "..."}`.
fn generic_schema(tools: &[&Tool], with_response: bool, parallel: bool) -> Value {
    let calls: Vec<Value> = tools
        .iter()
        .map(|t| {
            json!({
                "type": "object",
                "properties": {"name": {"const": t.name}, "arguments": t.parameters_schema()},
                "required": ["name", "arguments"],
                "additionalProperties": false,
            })
        })
        .collect();
    let call = if calls.len() == 1 { calls[0].clone() } else { json!({"anyOf": calls}) };
    let (key, value) = if parallel {
        ("tool_calls", json!({"type": "array", "items": call, "minItems": 1}))
    } else {
        ("tool_call", call)
    };
    let answer = object(key, value);
    if with_response {
        json!({"anyOf": [answer, object("response", json!({"type": "string"}))]})
    } else {
        answer
    }
}

/// `{key: value}`, the one key required.
fn object(key: &str, value: Value) -> Value {
    json!({"type": "object", "properties": {key: value}, "required": [key], "additionalProperties": false})
}

/// A Lark string literal for `s`.
pub(super) fn lit(s: &str) -> String {
    Value::from(s).to_string()
}

/// `s` as a literal inside a Lark `/regex/`.
fn regex_escape(s: &str) -> String {
    s.chars().map(|c| if r"\.+*?()|[]{}^$/-".contains(c) { format!("\\{c}") } else { c.to_string() }).collect()
}
