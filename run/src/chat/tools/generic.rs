//! Tools for a template that has none: the system text that lists them and asks for a JSON
//! answer, and the conversation's calls and results rewritten as text, as llama.cpp's generic
//! handler (and minja's polyfills) do.

use serde_json::{json, Map, Value};

use super::{offered, Tool, ToolChoice};
use crate::chat::Message;

/// For Generic: the system text telling the model to answer with JSON (llama.cpp's generic
/// handler: `{"tool_call": {"name", "arguments"}}`, `{"tool_calls": [...]}` when parallel, or
/// `{"response": "..."}` when the choice is Auto), listing the tools the choice offers (only the
/// named one for Named); empty when it offers none.
pub fn generic_system_prompt(tools: &[Tool], choice: &ToolChoice, parallel: bool) -> String {
    let tools = offered(tools, choice);
    if tools.is_empty() {
        return String::new();
    }
    let list: Vec<Value> = tools.iter().map(|t| t.to_openai()).collect();
    let list = serde_json::to_string_pretty(&list).expect("JSON values");
    let (key, shape) = if parallel {
        ("tool_calls", r#"{"tool_calls": [{"name": "<tool name>", "arguments": {<arguments>}}, ...]}"#)
    } else {
        ("tool_call", r#"{"tool_call": {"name": "<tool name>", "arguments": {<arguments>}}}"#)
    };
    let answer = if *choice == ToolChoice::Auto {
        format!(
            "Respond in JSON format, either with `{key}` (a request to call tools) or with `response` reply to the \
             user's request:\n{shape}\nor\n{{\"response\": \"<your reply>\"}}"
        )
    } else {
        format!("Respond in JSON format with `{key}` (a request to call tools):\n{shape}")
    };
    format!("You can call any of the following tools to satisfy the user's requests: {list}\n\n{answer}")
}

/// The messages rewritten for a template without tool support: an assistant's calls become its
/// content, `{"tool_call": {...}}` (or `{"tool_calls": [...]}` for several, with any text under
/// `"content"`), and a `tool` message becomes a `user` one holding
/// `{"tool_response": {"tool", "content", "tool_call_id"}}`, as llama.cpp's polyfill writes it.
pub fn generic_messages(messages: &[Message]) -> Vec<Message> {
    messages
        .iter()
        .map(|m| {
            if m.role == "tool" {
                let mut response = Map::new();
                if let Some(name) = &m.name {
                    response.insert("tool".into(), json!(name));
                }
                response.insert("content".into(), json!(m.content));
                if let Some(id) = &m.tool_call_id {
                    response.insert("tool_call_id".into(), json!(id));
                }
                Message::new("user", &pretty(&json!({"tool_response": response})))
            } else if !m.tool_calls.is_empty() {
                let calls: Vec<Value> = m
                    .tool_calls
                    .iter()
                    .map(|c| {
                        let mut call = json!({"name": c.name, "arguments": c.arguments_value()});
                        if !c.id.is_empty() {
                            call["id"] = json!(c.id);
                        }
                        call
                    })
                    .collect();
                let mut answer = match <[Value; 1]>::try_from(calls) {
                    Ok([call]) => json!({"tool_call": call}),
                    Err(calls) => json!({"tool_calls": calls}),
                };
                if !m.content.is_empty() {
                    answer["content"] = json!(m.content);
                }
                Message::new(&m.role, &pretty(&answer))
            } else {
                m.clone()
            }
        })
        .collect()
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).expect("a JSON value")
}
