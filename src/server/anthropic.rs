//! Anthropic's Messages API on the same engine: `POST /v1/messages` (system, text, `tool_use`
//! and `tool_result` blocks, thinking, streaming events in Anthropic's shape) and
//! `POST /v1/messages/count_tokens`. A request is read into a [`Conversation`]; errors come in
//! Anthropic's shape, `{"type": "error", "error": {"type", "message"}}`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::Event as SseEvent;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Map, Value};
use strata_run::chat::tools::{Tool, ToolChoice};
use strata_run::chat::{Message, ToolCall};
use strata_run::engine::{Event, StopReason, Summary};
use tokio::sync::mpsc;

use super::access_log::Tokens;
use super::answer::{event_stream, whole, EventStream, Reader};
use super::conversation::Conversation;
use super::openai::{self, ApiError, Fields};
use super::{request, submit, AppState, ReasoningOut};

/// `POST /v1/messages`.
pub async fn messages(
    State(s): State<Arc<AppState>>,
    Extension(counts): Extension<Tokens>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(create(&s, &headers, body, counts).await)
}

/// `POST /v1/messages/count_tokens`: the prompt's tokens, as the model's template makes them.
pub async fn count_tokens(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    respond(
        async {
            let (r, f) = request(&s, &headers, body).await?;
            let (conv, _) = conversation(&f)?;
            let prompt = r.prompt(conv)?;
            Ok(Json(json!({"input_tokens": prompt.input.tokens.len()})).into_response())
        }
        .await,
    )
}

/// An error in Anthropic's shape.
fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(|e| {
        let kind = match e.status {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::FORBIDDEN => "permission_error",
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::SERVICE_UNAVAILABLE => "overloaded_error",
            s if s.is_server_error() => "api_error",
            _ => "invalid_request_error",
        };
        let body = json!({"type": "error", "error": {"type": kind, "message": e.message}});
        let mut response = (e.status, Json(body)).into_response();
        if let Some(seconds) = e.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    })
}

async fn create(s: &Arc<AppState>, headers: &HeaderMap, body: Body, counts: Tokens) -> Result<Response, ApiError> {
    let (r, f) = request(s, headers, body).await?;
    if !f.get("max_tokens").is_some_and(Value::is_u64) {
        return Err(ApiError::bad("max_tokens: a whole number of tokens is required"));
    }
    let (conv, thinking) = conversation(&f)?;
    let mut opts = openai::options(&sampling_fields(&f)?, r)?;
    let prompt = r.prompt(conv)?;
    opts.constraint = prompt.constraint;
    let input_tokens = prompt.input.tokens.len();
    let stream = opts.stream;
    let events = submit(r, prompt.input, opts)?;
    let reasoning = if thinking == Some(false) { ReasoningOut::Hide } else { ReasoningOut::Split };
    let answer = Answer {
        id: format!("msg_{}", s.next_id("").trim_start_matches('-')),
        model: r.alias.clone(),
        input_tokens,
        reader: Reader::new(reasoning, prompt.calls.as_ref(), prompt.thinking),
        counts,
    };
    if stream {
        Ok(answer.stream(events).into_response())
    } else {
        answer.collect(events).await
    }
}

/// The request's sampling fields under OpenAI's names, for [`openai::options`].
fn sampling_fields(f: &Fields) -> Result<Fields, ApiError> {
    let mut out = Map::new();
    for name in ["temperature", "top_p", "top_k"] {
        if let Some(v) = f.get(name) {
            out.insert(name.into(), v.clone());
        }
    }
    if let Some(t) = f.get("temperature").and_then(Value::as_f64) {
        if !(0.0..=1.0).contains(&t) {
            return Err(ApiError::bad(format!("temperature is {t}, outside [0, 1]")));
        }
    }
    out.insert("max_tokens".into(), f["max_tokens"].clone());
    if let Some(stop) = f.get("stop_sequences") {
        out.insert("stop".into(), stop.clone());
    }
    if let Some(stream) = f.get("stream") {
        out.insert("stream".into(), stream.clone());
    }
    Ok(out)
}

/// The conversation a Messages request holds, and its `thinking` switch (`{"type": "enabled"}`
/// or `"disabled"`) when it has one.
fn conversation(f: &Fields) -> Result<(Conversation, Option<bool>), ApiError> {
    let mut messages = Vec::new();
    match f.get("system") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => messages.push(Message::new("system", s)),
        Some(Value::Array(blocks)) => messages.push(Message::new("system", &text_blocks(blocks, "system")?)),
        Some(v) => return Err(ApiError::bad(format!("system must be a string or text blocks, not {v}"))),
    }
    let list = f
        .get("messages")
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| ApiError::bad("messages must be a non-empty list of {\"role\", \"content\"} objects"))?;
    let mut calls: Vec<ToolCall> = Vec::new();
    let mut media = Vec::new();
    for (i, m) in list.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if role != "user" && role != "assistant" {
            return Err(ApiError::bad(format!("messages.{i}.role must be user or assistant, not {role:?}")));
        }
        let blocks = match m.get("content") {
            Some(Value::String(s)) => vec![json!({"type": "text", "text": s})],
            Some(Value::Array(b)) => b.clone(),
            _ => return Err(ApiError::bad(format!("messages.{i}.content must be a string or a list of blocks"))),
        };
        let mut text = String::new();
        let mut made = Vec::new();
        let mut thinking = String::new();
        for (j, b) in blocks.iter().enumerate() {
            let at = format!("messages.{i}.content.{j}");
            match (role, b.get("type").and_then(Value::as_str)) {
                (_, Some("text")) => text += str_field(b, "text", &at)?,
                // An image: where it stands among the message's blocks, as a media marker.
                ("user", Some("image")) => {
                    let source = &b["source"];
                    match source["type"].as_str() {
                        Some("base64") => {
                            media
                                .push(openai::base64_medium(str_field(source, "data", &format!("{at}.source"))?, &at)?);
                            text += crate::llama::media_marker();
                        }
                        Some("url") => {
                            return Err(ApiError::bad(format!(
                                "{at}: the server fetches no URLs (unless started with --allow-media-urls): send the image itself, as a base64 source"
                            )))
                        }
                        t => return Err(ApiError::bad(format!("{at}.source.type {t:?} is not base64"))),
                    }
                }
                // Earlier thinking goes to the template as the message's reasoning_content
                // (templates that render it keep it for the turns since the last user message).
                ("assistant", Some("thinking")) => thinking += str_field(b, "thinking", &at)?,
                ("assistant", Some("redacted_thinking")) => {}
                ("assistant", Some("tool_use")) => {
                    let input = b.get("input").filter(|v| v.is_object()).cloned().unwrap_or_else(|| json!({}));
                    let call = ToolCall {
                        id: str_field(b, "id", &at)?.to_string(),
                        name: str_field(b, "name", &at)?.to_string(),
                        arguments: input.to_string(),
                    };
                    made.push(call);
                }
                ("user", Some("tool_result")) => {
                    let id = str_field(b, "tool_use_id", &at)?;
                    let call = calls.iter().find(|c| c.id == id).ok_or_else(|| {
                        ApiError::bad(format!("{at}.tool_use_id {id:?} answers no tool_use an earlier message made"))
                    })?;
                    let mut result = match b.get("content") {
                        None | Some(Value::Null) => String::new(),
                        Some(Value::String(s)) => s.clone(),
                        Some(Value::Array(parts)) => text_blocks(parts, &format!("{at}.content"))?,
                        Some(v) => return Err(ApiError::bad(format!("{at}.content must be text, not {v}"))),
                    };
                    if b.get("is_error").and_then(Value::as_bool) == Some(true) {
                        result = format!("Error: {result}");
                    }
                    let answer = Message {
                        tool_call_id: Some(id.to_string()),
                        name: Some(call.name.clone()),
                        ..Message::new("tool", &result)
                    };
                    messages.push(answer);
                }
                (_, Some(kind)) => {
                    return Err(ApiError::bad(format!("{at}: {kind} blocks are not supported in {role} messages")))
                }
                (_, None) => return Err(ApiError::bad(format!("{at} has no type"))),
            }
        }
        if role == "assistant" || !text.is_empty() {
            let reasoning_content = (!thinking.is_empty()).then(|| thinking.clone());
            messages.push(Message { tool_calls: made.clone(), reasoning_content, ..Message::new(role, &text) });
        }
        calls.extend(made);
    }
    let tools = tools(f)?;
    let (choice, parallel) = tool_choice(f, &tools)?;
    let thinking = match f.get("thinking").and_then(|t| t.get("type")).and_then(Value::as_str) {
        None => None,
        Some("enabled" | "adaptive") => Some(true),
        Some("disabled") => Some(false),
        Some(other) => return Err(ApiError::bad(format!("thinking.type {other:?} is not enabled or disabled"))),
    };
    // `budget_tokens` bounds the thinking as --reasoning-budget does.
    let budget =
        f.get("thinking").and_then(|t| t.get("budget_tokens")).and_then(Value::as_u64).map(|n| Some(n as usize));
    let conv = Conversation {
        media,
        messages,
        tools,
        choice,
        parallel,
        enable_thinking: thinking,
        reasoning_budget: budget,
        grammar: None,
        continue_final: None,
    };
    Ok((conv, thinking))
}

fn str_field<'a>(v: &'a Value, name: &str, at: &str) -> Result<&'a str, ApiError> {
    v.get(name).and_then(Value::as_str).ok_or_else(|| ApiError::bad(format!("{at}.{name} must be a string")))
}

/// The text of a list of text blocks.
fn text_blocks(blocks: &[Value], at: &str) -> Result<String, ApiError> {
    let mut text = String::new();
    for (j, b) in blocks.iter().enumerate() {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => text += str_field(b, "text", &format!("{at}.{j}"))?,
            Some(kind) => return Err(ApiError::bad(format!("{at}.{j}: {kind} blocks are not supported here"))),
            None => return Err(ApiError::bad(format!("{at}.{j} has no type"))),
        }
    }
    Ok(text)
}

/// `tools`: `[{"name", "description", "input_schema"}]`, read as OpenAI's are.
fn tools(f: &Fields) -> Result<Vec<Tool>, ApiError> {
    let Some(list) = f.get("tools").filter(|v| !v.is_null()) else { return Ok(Vec::new()) };
    let list = list.as_array().ok_or_else(|| ApiError::bad("tools must be a list"))?;
    let mut as_openai = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        match t.get("type").and_then(Value::as_str) {
            None | Some("custom") => {}
            Some(kind) => return Err(ApiError::bad(format!("tools.{i}: {kind} tools are not supported"))),
        }
        let mut function = json!({"name": t.get("name"), "parameters": t.get("input_schema")});
        if let Some(d) = t.get("description") {
            function["description"] = d.clone();
        }
        as_openai.push(json!({"type": "function", "function": function}));
    }
    let fields = Map::from_iter([("tools".to_string(), Value::Array(as_openai))]);
    openai::tools(&fields)
}

/// `tool_choice`: `{"type": "auto" | "any" | "tool" | "none", "name", "disable_parallel_tool_use"}`.
fn tool_choice(f: &Fields, tools: &[Tool]) -> Result<(ToolChoice, bool), ApiError> {
    let choice = f.get("tool_choice").filter(|v| !v.is_null());
    let openai_choice = match choice.and_then(|c| c.get("type")).and_then(Value::as_str) {
        None => Value::Null,
        Some("auto") => "auto".into(),
        Some("any") => "required".into(),
        Some("none") => "none".into(),
        Some("tool") => json!({"type": "function", "function": {"name": choice.and_then(|c| c.get("name"))}}),
        Some(other) => return Err(ApiError::bad(format!("tool_choice.type {other:?} is not auto, any, tool or none"))),
    };
    let fields = Map::from_iter([("tool_choice".to_string(), openai_choice)]);
    let parallel = choice.and_then(|c| c.get("disable_parallel_tool_use")).and_then(Value::as_bool) != Some(true);
    Ok((openai::tool_choice(&fields, tools)?, parallel))
}

/// One answer being written in Anthropic's shape.
struct Answer {
    id: String,
    model: String,
    input_tokens: usize,
    reader: Reader,
    counts: Tokens,
}

/// `stop_reason`: `tool_use` when the answer made calls.
fn stop_reason(summary: &Summary, calls: &[ToolCall]) -> &'static str {
    if !calls.is_empty() {
        return "tool_use";
    }
    match summary.stop_reason {
        StopReason::StopString => "stop_sequence",
        StopReason::Limit | StopReason::Context => "max_tokens",
        _ => "end_turn",
    }
}

fn tool_use(call: &ToolCall) -> Value {
    json!({"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments_value()})
}

impl Answer {
    /// The message; `cached`: prompt tokens the slot's cache held (Anthropic counts them apart
    /// from `input_tokens`, as `cache_read_input_tokens`).
    fn message(&self, content: Vec<Value>, stop: Option<&str>, output_tokens: usize, cached: usize) -> Value {
        json!({
            "id": self.id, "type": "message", "role": "assistant", "model": self.model, "content": content,
            "stop_reason": stop, "stop_sequence": null,
            "usage": {
                "input_tokens": self.input_tokens - cached.min(self.input_tokens),
                "cache_read_input_tokens": cached,
                "cache_creation_input_tokens": 0,
                "output_tokens": output_tokens,
            },
        })
    }

    async fn collect(mut self, events: mpsc::UnboundedReceiver<Event>) -> Result<Response, ApiError> {
        let (piece, summary) = whole(events, &mut self.reader, &self.counts).await?;
        let mut content = Vec::new();
        if !piece.text.reasoning.is_empty() {
            content.push(json!({"type": "thinking", "thinking": piece.text.reasoning, "signature": ""}));
        }
        if !piece.text.content.is_empty() {
            content.push(json!({"type": "text", "text": piece.text.content}));
        }
        content.extend(piece.calls.iter().map(tool_use));
        let stop = stop_reason(&summary, &piece.calls);
        Ok(Json(self.message(content, Some(stop), summary.completion_tokens, summary.cached_tokens)).into_response())
    }

    /// Anthropic's events: `message_start`, then per block `content_block_start`, its deltas and
    /// `content_block_stop` (thinking, text, then each `tool_use` with its input as one
    /// `input_json_delta`), `message_delta` with the stop reason, `message_stop`.
    fn stream(mut self, events: mpsc::UnboundedReceiver<Event>) -> EventStream {
        let start = json!({"type": "message_start", "message": self.message(Vec::new(), None, 0, 0)});
        let mut blocks = Blocks::default();
        event_stream(events, vec![event(start)], move |next| {
            let mut out = Vec::new();
            match next {
                Some(Event::Text(t)) => {
                    let split = self.reader.push(&t);
                    blocks.text("thinking", &split.reasoning, &mut out);
                    blocks.text("text", &split.content, &mut out);
                }
                Some(Event::Done(summary)) => {
                    self.counts.set(summary.prompt_tokens, summary.completion_tokens);
                    let rest = self.reader.finish();
                    blocks.text("thinking", &rest.text.reasoning, &mut out);
                    blocks.text("text", &rest.text.content, &mut out);
                    for call in &rest.calls {
                        blocks.close(&mut out);
                        let opening = json!({"type": "tool_use", "id": call.id, "name": call.name, "input": {}});
                        out.push(blocks.open(opening));
                        let delta = json!({"type": "input_json_delta", "partial_json": call.arguments});
                        out.push(blocks.delta(delta));
                    }
                    blocks.close(&mut out);
                    let stop = stop_reason(&summary, &rest.calls);
                    out.push(event(json!({
                        "type": "message_delta",
                        "delta": {"stop_reason": stop, "stop_sequence": null},
                        "usage": {"output_tokens": summary.completion_tokens},
                    })));
                    out.push(event(json!({"type": "message_stop"})));
                }
                Some(Event::Failed(message)) => {
                    out.push(event(json!({"type": "error", "error": {"type": "api_error", "message": message}})));
                }
                Some(Event::Token(_) | Event::Progress(_)) | None => {}
            }
            out
        })
    }
}

/// A server-sent event named by its `type`.
fn event(v: Value) -> SseEvent {
    let name = v["type"].as_str().unwrap_or("message").to_string();
    SseEvent::default().event(name).data(v.to_string())
}

/// The content blocks of a streamed answer: which is open, and the next index.
#[derive(Default)]
struct Blocks {
    open: Option<&'static str>,
    next: usize,
}

impl Blocks {
    /// Text for a `thinking` or `text` block: opens one of that kind if another is open.
    fn text(&mut self, kind: &'static str, text: &str, out: &mut Vec<SseEvent>) {
        if text.is_empty() {
            return;
        }
        if self.open != Some(kind) {
            self.close(out);
            let block = if kind == "thinking" {
                json!({"type": "thinking", "thinking": "", "signature": ""})
            } else {
                json!({"type": "text", "text": ""})
            };
            out.push(self.open(block));
            self.open = Some(kind);
        }
        let delta = if kind == "thinking" {
            json!({"type": "thinking_delta", "thinking": text})
        } else {
            json!({"type": "text_delta", "text": text})
        };
        out.push(self.delta(delta));
    }

    fn open(&mut self, block: Value) -> SseEvent {
        self.open = Some("tool_use");
        event(json!({"type": "content_block_start", "index": self.next, "content_block": block}))
    }

    fn delta(&self, delta: Value) -> SseEvent {
        event(json!({"type": "content_block_delta", "index": self.next, "delta": delta}))
    }

    fn close(&mut self, out: &mut Vec<SseEvent>) {
        if self.open.take().is_some() {
            out.push(event(json!({"type": "content_block_stop", "index": self.next})));
            self.next += 1;
        }
    }
}
