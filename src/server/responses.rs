//! OpenAI's Responses API on the same engine, stateless: `POST /v1/responses` with text and
//! function calls in and out, `text.format` for structured output, and streaming events. Nothing
//! is stored, so `previous_response_id` is refused with a 400 that says so.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::Event as SseEvent;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Map, Value};
use strata_run::chat::{Message, ToolCall};
use strata_run::engine::{Event, StopReason, Summary};
use tokio::sync::mpsc;

use super::access_log::Tokens;
use super::answer::{event_stream, whole, EventStream, Piece, Reader};
use super::conversation::Conversation;
use super::openai::{self, ApiError, Fields};
use super::{now, request, respond, submit, AppState, ReasoningOut};
use crate::llama::Medium;

/// `POST /v1/responses`.
pub async fn responses(
    State(s): State<Arc<AppState>>,
    Extension(counts): Extension<Tokens>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(create(&s, &headers, body, counts).await)
}

/// `POST /v1/responses/input_tokens`: how many tokens a request's prompt is.
pub async fn input_tokens(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    respond(
        async {
            let (r, f) = request(&s, &headers, body).await?;
            let (prompt, _) = prompt(r, &f)?;
            Ok(Json(json!({"object": "response.input_tokens", "input_tokens": prompt.input.tokens.len()}))
                .into_response())
        }
        .await,
    )
}

async fn create(s: &Arc<AppState>, headers: &HeaderMap, body: Body, counts: Tokens) -> Result<Response, ApiError> {
    let (r, f) = request(s, headers, body).await?;
    let (prompt, mut opts) = prompt(r, &f)?;
    opts.constraint = prompt.constraint;
    let (stream, telemetry) = (opts.stream, opts.telemetry);
    let events = submit(r, prompt.input, opts)?;
    let answer = Answer {
        // OpenAI's ids: `resp_…` (its SDK's tests and clients check the prefix).
        id: s.next_id("resp").replacen('-', "_", 1),
        created: now(),
        model: r.alias.clone(),
        reader: Reader::new(ReasoningOut::Split, prompt.calls.as_ref(), prompt.thinking),
        counts,
        sequence: 0,
        telemetry,
    };
    if stream {
        Ok(answer.stream(events).into_response())
    } else {
        answer.collect(events).await
    }
}

/// A request's prompt and options.
fn prompt(r: &super::Ready, f: &openai::Fields) -> Result<(super::conversation::Prompt, openai::Options), ApiError> {
    if f.get("previous_response_id").is_some_and(|v| !v.is_null()) {
        return Err(ApiError::bad(
            "previous_response_id: this server stores no responses; send the whole conversation in input",
        ));
    }
    let chat = chat_fields(f)?;
    let mut opts = openai::options(&chat, r)?;
    let tools = openai::tools(&chat)?;
    let (messages, media) = input(f)?;
    let conv = Conversation {
        messages,
        media,
        choice: openai::tool_choice(&chat, &tools)?,
        tools,
        parallel: openai::parallel_tool_calls(&chat)?,
        enable_thinking: match f.get("reasoning").and_then(|r| r.get("effort")).and_then(Value::as_str) {
            None => None,
            Some("none") => Some(false),
            Some(_) => Some(true),
        },
        reasoning_budget: None,
        grammar: opts.grammar.take(),
        continue_final: None,
    };
    Ok((r.prompt(conv)?, opts))
}

/// The request's options under the chat API's names, for [`openai`]'s readers: sampling,
/// `max_output_tokens`, tools (`{"type": "function", "name", ...}` flattened in this API),
/// `tool_choice`, and `text.format` as `response_format`.
fn chat_fields(f: &Fields) -> Result<Fields, ApiError> {
    let mut out = Map::new();
    for name in
        ["temperature", "top_p", "stream", "parallel_tool_calls", "seed", "return_progress", "timings_per_token"]
    {
        if let Some(v) = f.get(name) {
            out.insert(name.into(), v.clone());
        }
    }
    if let Some(n) = f.get("max_output_tokens") {
        out.insert("max_tokens".into(), n.clone());
    }
    if let Some(Value::Array(tools)) = f.get("tools") {
        let tools = tools
            .iter()
            .map(|t| {
                let mut function = t.clone();
                if let Some(o) = function.as_object_mut() {
                    o.remove("type");
                    o.remove("strict");
                }
                json!({"type": t.get("type"), "function": function})
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
    }
    match f.get("tool_choice") {
        Some(Value::Object(c)) if c.get("type").and_then(Value::as_str) == Some("function") => {
            out.insert("tool_choice".into(), json!({"type": "function", "function": {"name": c.get("name")}}));
        }
        Some(c) => {
            out.insert("tool_choice".into(), c.clone());
        }
        None => {}
    }
    if let Some(format) = f.get("text").and_then(|t| t.get("format")) {
        let format = match format.get("type").and_then(Value::as_str) {
            Some("json_schema") => json!({"type": "json_schema", "json_schema": {"schema": format.get("schema")}}),
            _ => format.clone(),
        };
        out.insert("response_format".into(), format);
    }
    Ok(out)
}

/// `instructions` and `input`: a string, or items — messages (text and `input_image` content),
/// `function_call`s and their `function_call_output`s; earlier reasoning items are passed over.
/// The images come back in order.
fn input(f: &Fields) -> Result<(Vec<Message>, Vec<Medium>), ApiError> {
    let mut messages = Vec::new();
    if let Some(Value::String(i)) = f.get("instructions") {
        messages.push(Message::new("system", i));
    }
    let items = match f.get("input") {
        Some(Value::String(s)) => return Ok(([messages, vec![Message::new("user", s)]].concat(), Vec::new())),
        Some(Value::Array(items)) if !items.is_empty() => items,
        _ => return Err(ApiError::bad("input must be a string or a non-empty list of items")),
    };
    let mut as_chat: Vec<Value> = messages.iter().map(|m| json!({"role": m.role, "content": m.content})).collect();
    for (i, item) in items.iter().enumerate() {
        let field = |name: &str| {
            item.get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::bad(format!("input[{i}].{name} must be a string")))
        };
        match item.get("type").and_then(Value::as_str) {
            None | Some("message") => {
                let content = match item.get("content") {
                    Some(Value::Array(parts)) => Value::Array(
                        parts
                            .iter()
                            .map(|p| match p.get("type").and_then(Value::as_str) {
                                Some("input_text" | "output_text") => json!({"type": "text", "text": p.get("text")}),
                                Some("input_image") => json!({"type": "image_url", "image_url": p.get("image_url")}),
                                _ => p.clone(),
                            })
                            .collect(),
                    ),
                    other => other.cloned().unwrap_or(Value::Null),
                };
                as_chat.push(json!({"role": item.get("role"), "content": content}));
            }
            Some("function_call") => {
                let call = json!({"id": field("call_id")?, "type": "function",
                                  "function": {"name": field("name")?, "arguments": field("arguments")?}});
                // Consecutive calls are one assistant turn.
                match as_chat.last_mut() {
                    Some(last) if last["role"] == "assistant" && last.get("tool_calls").is_some() => {
                        last["tool_calls"].as_array_mut().expect("a list").push(call)
                    }
                    _ => as_chat.push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
                }
            }
            Some("function_call_output") => {
                let output = match item.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                    None => String::new(),
                };
                as_chat.push(json!({"role": "tool", "tool_call_id": field("call_id")?, "content": output}));
            }
            Some("reasoning") => {}
            Some(kind) => return Err(ApiError::bad(format!("input[{i}]: {kind} items are not supported"))),
        }
    }
    openai::messages(&Map::from_iter([("messages".to_string(), Value::Array(as_chat))]))
}

/// One response being written.
struct Answer {
    id: String,
    created: u64,
    model: String,
    reader: Reader,
    counts: Tokens,
    /// The next streamed event's number.
    sequence: u64,
    /// llama-server's progress events and per-token timings, when asked.
    telemetry: openai::Telemetry,
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({"type": "message", "id": id, "status": status, "role": "assistant",
           "content": [{"type": "output_text", "text": text, "annotations": []}]})
}

fn reasoning_item(id: &str, text: &str) -> Value {
    json!({"type": "reasoning", "id": id, "summary": [], "content": [{"type": "reasoning_text", "text": text}]})
}

fn call_item(call: &ToolCall, status: &str) -> Value {
    json!({"type": "function_call", "id": format!("fc_{}", call.id), "call_id": call.id, "name": call.name,
           "arguments": call.arguments, "status": status})
}

impl Answer {
    /// The response object; `done` carries the summary of a finished one.
    fn response(&self, output: Vec<Value>, done: Option<&Summary>) -> Value {
        let (status, incomplete, usage) = match done {
            None => ("in_progress", Value::Null, Value::Null),
            Some(s) => {
                let cut = matches!(s.stop_reason, StopReason::Limit | StopReason::Context);
                let usage = json!({
                    "input_tokens": s.prompt_tokens, "input_tokens_details": {"cached_tokens": s.cached_tokens},
                    "output_tokens": s.completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                    "total_tokens": s.prompt_tokens + s.completion_tokens,
                });
                let incomplete = if cut { json!({"reason": "max_output_tokens"}) } else { Value::Null };
                (if cut { "incomplete" } else { "completed" }, incomplete, usage)
            }
        };
        json!({"id": self.id, "object": "response", "created_at": self.created, "status": status, "model": self.model,
               "output": output, "incomplete_details": incomplete, "error": null, "usage": usage,
               "parallel_tool_calls": true, "tool_choice": "auto", "tools": [], "metadata": {}})
    }

    /// The output items of a finished answer.
    fn output(&self, reasoning: &str, text: &str, calls: &[ToolCall]) -> Vec<Value> {
        let mut output = Vec::new();
        if !reasoning.is_empty() {
            output.push(reasoning_item(&format!("rs_{}", self.id), reasoning));
        }
        if !text.is_empty() || calls.is_empty() {
            output.push(message_item(&format!("msg_{}", self.id), text, "completed"));
        }
        output.extend(calls.iter().map(|c| call_item(c, "completed")));
        output
    }

    async fn collect(mut self, events: mpsc::UnboundedReceiver<Event>) -> Result<Response, ApiError> {
        let (piece, summary) = whole(events, &mut self.reader, &self.counts).await?;
        let output = self.output(&piece.text.reasoning, &piece.text.content, &piece.calls);
        Ok(Json(self.response(output, Some(&summary))).into_response())
    }

    /// A numbered event named by its `type`.
    fn event(&mut self, mut v: Value) -> SseEvent {
        v["sequence_number"] = self.sequence.into();
        self.sequence += 1;
        let name = v["type"].as_str().unwrap_or("message").to_string();
        SseEvent::default().event(name).data(v.to_string())
    }

    /// `response.created`, then the message's text as `response.output_text.delta`s (its item
    /// and part opened first, closed at the end), each call as an item with its arguments in one
    /// delta, and `response.completed` with the whole response. Reasoning is in the last one.
    fn stream(mut self, events: mpsc::UnboundedReceiver<Event>) -> EventStream {
        let created = self.response(Vec::new(), None);
        let first = vec![
            self.event(json!({"type": "response.created", "response": created.clone()})),
            self.event(json!({"type": "response.in_progress", "response": created})),
        ];
        let mut streamed =
            Streamed { msg_id: format!("msg_{}", self.id), rs_id: format!("rs_{}", self.id), ..Streamed::default() };
        event_stream(events, first, move |next| {
            let mut out = Vec::new();
            match next {
                Some(Event::Progress(p)) => {
                    if let Some(progress) = self.telemetry.update(p) {
                        let response = self.response(Vec::new(), None);
                        let mut v = json!({"type": "response.in_progress", "response": response,
                                           "prompt_progress": progress});
                        self.telemetry.stamp(&mut v);
                        out.push(self.event(v));
                    }
                }
                Some(Event::Text(t)) => {
                    let split = self.reader.push(&t);
                    streamed.reasoning(&mut self, &split.reasoning, &mut out);
                    streamed.text(&mut self, &split.content, &mut out);
                }
                Some(Event::Done(summary)) => {
                    self.counts.set(summary.prompt_tokens, summary.completion_tokens);
                    let Piece { text: rest, calls } = self.reader.finish();
                    streamed.reasoning(&mut self, &rest.reasoning, &mut out);
                    streamed.text(&mut self, &rest.content, &mut out);
                    streamed.finish(&mut self, &calls, &summary, &mut out);
                }
                Some(Event::Failed(message)) => {
                    out.push(self.event(json!({"type": "error", "code": "server_error", "message": message})));
                }
                Some(Event::Token(_)) | None => {}
            }
            out
        })
    }
}

/// What a streamed response has sent: its reasoning item, then its message, then its calls,
/// each at the next output index.
#[derive(Default)]
struct Streamed {
    msg_id: String,
    rs_id: String,
    text: String,
    reasoning: String,
    /// The output index of the reasoning item and of the message, once opened.
    reasoning_at: Option<usize>,
    message_at: Option<usize>,
    reasoning_done: bool,
    next: usize,
}

impl Streamed {
    /// A piece of the reasoning, opening its item first.
    fn reasoning(&mut self, a: &mut Answer, piece: &str, out: &mut Vec<SseEvent>) {
        if piece.is_empty() || self.reasoning_done {
            return;
        }
        let id = &self.rs_id;
        let at = *self.reasoning_at.get_or_insert_with(|| {
            let at = self.next;
            self.next += 1;
            let item = reasoning_item(id, "");
            out.push(a.event(json!({"type": "response.output_item.added", "output_index": at, "item": item})));
            at
        });
        self.reasoning += piece;
        out.push(a.event(json!({"type": "response.reasoning_text.delta", "item_id": id, "output_index": at,
                                "content_index": 0, "delta": piece})));
    }

    /// The reasoning item closed, if one is open.
    fn close_reasoning(&mut self, a: &mut Answer, out: &mut Vec<SseEvent>) {
        let Some(at) = self.reasoning_at.filter(|_| !self.reasoning_done) else { return };
        self.reasoning_done = true;
        let (id, text) = (&self.rs_id, &self.reasoning);
        out.push(a.event(json!({"type": "response.reasoning_text.done", "item_id": id, "output_index": at,
                                "content_index": 0, "text": text})));
        let item = reasoning_item(id, text);
        out.push(a.event(json!({"type": "response.output_item.done", "output_index": at, "item": item})));
    }

    /// A piece of the message's text, opening its item and part first.
    fn text(&mut self, a: &mut Answer, piece: &str, out: &mut Vec<SseEvent>) {
        if piece.is_empty() {
            return;
        }
        self.close_reasoning(a, out);
        let id = &self.msg_id;
        let at = *self.message_at.get_or_insert_with(|| {
            let at = self.next;
            self.next += 1;
            let item = message_item(id, "", "in_progress");
            out.push(a.event(json!({"type": "response.output_item.added", "output_index": at, "item": item})));
            let part = json!({"type": "output_text", "text": "", "annotations": []});
            out.push(a.event(json!({"type": "response.content_part.added", "item_id": id, "output_index": at,
                                    "content_index": 0, "part": part})));
            at
        });
        self.text += piece;
        let mut delta = json!({"type": "response.output_text.delta", "item_id": id, "output_index": at,
                               "content_index": 0, "delta": piece, "logprobs": []});
        a.telemetry.stamp(&mut delta);
        out.push(a.event(delta));
    }

    /// The open items closed, each call as an item, and the whole response.
    fn finish(&mut self, a: &mut Answer, calls: &[ToolCall], summary: &Summary, out: &mut Vec<SseEvent>) {
        self.close_reasoning(a, out);
        let (id, text) = (&self.msg_id, &self.text);
        if let Some(at) = self.message_at {
            let part = json!({"type": "output_text", "text": text, "annotations": []});
            out.push(a.event(json!({"type": "response.output_text.done", "item_id": id, "output_index": at,
                                    "content_index": 0, "text": text, "logprobs": []})));
            out.push(a.event(json!({"type": "response.content_part.done", "item_id": id, "output_index": at,
                                    "content_index": 0, "part": part})));
            let item = message_item(id, text, "completed");
            out.push(a.event(json!({"type": "response.output_item.done", "output_index": at, "item": item})));
        }
        for (index, call) in (self.next..).zip(calls) {
            let item = call_item(&ToolCall { arguments: String::new(), ..call.clone() }, "in_progress");
            let item_id = item["id"].clone();
            out.push(a.event(json!({"type": "response.output_item.added", "output_index": index, "item": item})));
            out.push(a.event(json!({"type": "response.function_call_arguments.delta", "item_id": item_id,
                                    "output_index": index, "delta": call.arguments})));
            out.push(a.event(json!({"type": "response.function_call_arguments.done", "item_id": item_id,
                                    "output_index": index, "arguments": call.arguments})));
            out.push(a.event(json!({"type": "response.output_item.done", "output_index": index,
                                    "item": call_item(call, "completed")})));
        }
        let output = a.output(&self.reasoning, text, calls);
        let response = a.response(output, Some(summary));
        // llama-server's timings, beside the response.
        let timings = openai::timings(&summary.progress());
        out.push(a.event(json!({"type": "response.completed", "response": response, "timings": timings})));
    }
}
