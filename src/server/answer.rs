//! A completion's answer, from the engine's events: one JSON object, or server-sent events as
//! the text settles, in OpenAI's shapes. A chat answer's thinking goes to `reasoning_content`;
//! where tools were offered, the calls the model wrote become `tool_calls`.

use std::convert::Infallible;

use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;
use strata_run::chat::reasoning::{ReasoningSplitter, Split};
use strata_run::chat::tools::{self, ToolFormat};
use strata_run::chat::ToolCall;

use strata_run::engine::{Event, Generated, Summary};
use tokio::sync::mpsc;

use super::access_log::Tokens;
use super::openai::{self, ApiError, Telemetry};
use super::ReasoningOut;
use crate::llama::Model;

/// Which endpoint a completion answers.
#[derive(Clone)]
pub enum Kind {
    /// `thinking`: the thinking segment the prompt opened, if any.
    Chat {
        reasoning: ReasoningOut,
        calls: Option<Calls>,
        thinking: Option<usize>,
    },
    Completion,
}

/// The tool calls a chat answer may hold: their format, and the markers that open one (none:
/// the whole answer is a call, or the format's JSON).
#[derive(Clone)]
pub struct Calls {
    pub format: ToolFormat,
    pub triggers: Vec<String>,
}

/// What every chunk and response of one completion carries.
pub struct Shape {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub kind: Kind,
    /// The access log's token counts, set when the job ends.
    pub counts: Tokens,
    /// The vocabulary, when the request asked for logprobs (the alternatives' text).
    pub logprobs: Option<Arc<Model>>,
    /// The choice's index (`n` above 1).
    pub index: usize,
    /// `__verbose` for a whole answer, when asked ([`super::Ready::verbose`]).
    pub verbose: Option<Value>,
    /// llama-server's progress events and per-token timings, when asked.
    pub telemetry: Telemetry,
}

/// A token's probabilities, for OpenAI's `logprobs.content`: `token`, its `logprob`, `bytes` and
/// the likeliest alternatives in `top_logprobs`. With `ids`, llama.cpp's `completion_probabilities`
/// (`/completion`): each entry's `id` too, and after sampling `prob` and `top_probs` instead.
pub fn token_probs(model: &Model, g: &Generated, ids: bool) -> Option<Value> {
    let p = g.probs.as_ref()?;
    let probs = ids && p.post;
    let entry = |id: u32, bytes: &[u8], value: f32| {
        let mut e = json!({"token": String::from_utf8_lossy(bytes), "bytes": bytes});
        if ids {
            e["id"] = json!(id);
        }
        e[if probs { "prob" } else { "logprob" }] = json!(value);
        e
    };
    let mut e = entry(g.id as u32, &g.piece, if probs { p.logprob.exp() } else { p.logprob });
    // After sampling the alternatives hold probabilities, which OpenAI's shape gives as logs.
    let top = p
        .top
        .iter()
        .map(|&(id, v)| entry(id, &model.piece(id as i32, true), if p.post && !probs { v.ln() } else { v }));
    e[if probs { "top_probs" } else { "top_logprobs" }] = top.collect();
    Some(e)
}

/// An answer's text so far: content and reasoning, and the calls once the answer is whole.
#[derive(Default)]
pub struct Piece {
    pub text: Split,
    pub calls: Vec<ToolCall>,
}

impl Shape {
    fn object(&self, chunk: bool) -> &'static str {
        match (&self.kind, chunk) {
            (Kind::Chat { .. }, false) => "chat.completion",
            (Kind::Chat { .. }, true) => "chat.completion.chunk",
            (Kind::Completion, _) => "text_completion",
        }
    }

    /// A choice holding `piece` (for chat: content, reasoning and calls).
    fn choice(&self, piece: Piece, finish: Option<&str>, chunk: bool) -> Value {
        let Piece { text, calls } = piece;
        if let Kind::Completion = self.kind {
            return json!({"index": self.index, "text": text.content, "logprobs": null, "finish_reason": finish});
        }
        let mut message = json!({});
        if !chunk {
            message["role"] = "assistant".into();
        }
        if !text.content.is_empty() {
            message["content"] = text.content.into();
        } else if !chunk {
            message["content"] = if calls.is_empty() { "".into() } else { Value::Null };
        }
        if !text.reasoning.is_empty() {
            message["reasoning_content"] = text.reasoning.into();
        }
        if !calls.is_empty() {
            message["tool_calls"] = calls.iter().enumerate().map(|(i, c)| call_json(i, c, chunk)).collect();
        }
        json!({"index": self.index, if chunk { "delta" } else { "message" }: message, "finish_reason": finish})
    }

    /// `choice` with the logprobs of `tokens`, when the request asked for them.
    fn choice_with(&self, piece: Piece, finish: Option<&str>, chunk: bool, tokens: &mut Vec<Generated>) -> Value {
        let mut c = self.choice(piece, finish, chunk);
        if let Some(model) = &self.logprobs {
            let content: Vec<Value> = tokens.iter().filter_map(|g| token_probs(model, g, false)).collect();
            c["logprobs"] = json!({ "content": content });
        }
        tokens.clear();
        c
    }

    /// The shape of choice `index` of the same answer (the access log's counts and `__verbose`
    /// stay with the answer).
    pub fn for_choice(&self, index: usize) -> Shape {
        Shape {
            id: self.id.clone(),
            created: self.created,
            model: self.model.clone(),
            kind: self.kind.clone(),
            counts: Tokens::default(),
            logprobs: self.logprobs.clone(),
            index,
            verbose: None,
            telemetry: self.telemetry,
        }
    }

    /// A stream's empty chunk: chat's opening delta (the role), a completion's empty text.
    fn opening(&self) -> Value {
        match self.kind {
            Kind::Chat { .. } => {
                json!({"index": self.index, "delta": {"role": "assistant", "content": null}, "finish_reason": null})
            }
            Kind::Completion => json!({"index": self.index, "text": "", "logprobs": null, "finish_reason": null}),
        }
    }

    pub fn body(&self, choices: Vec<Value>, chunk: bool) -> Value {
        json!({"id": self.id, "object": self.object(chunk), "created": self.created, "model": self.model, "choices": choices})
    }

    fn reader(&self) -> Reader {
        match &self.kind {
            Kind::Chat { reasoning, calls, thinking } => Reader::new(*reasoning, calls.as_ref(), *thinking),
            Kind::Completion => Reader::new(ReasoningOut::Inline, None, None),
        }
    }
}

/// One call as OpenAI writes it: whole in a message; in a stream, each call's first delta.
fn call_json(index: usize, call: &ToolCall, chunk: bool) -> Value {
    let mut v =
        json!({"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}});
    if chunk {
        v["index"] = index.into();
    }
    v
}

/// Reads generated text into content, reasoning and calls, as the request asked.
pub struct Reader {
    reasoning: ReasoningOut,
    splitter: ReasoningSplitter,
    calls: Option<CallText>,
    /// Generated tokens not yet given with a piece of text (when the job reports them).
    pub tokens: Vec<Generated>,
}

impl Reader {
    /// A reader for an answer that starts inside thinking segment `thinking`, if given.
    pub fn new(reasoning: ReasoningOut, calls: Option<&Calls>, thinking: Option<usize>) -> Reader {
        Reader {
            reasoning,
            splitter: thinking.map_or_else(ReasoningSplitter::default, ReasoningSplitter::inside),
            calls: calls.map(|c| CallText {
                format: c.format,
                holding: c.triggers.is_empty(),
                triggers: c.triggers.clone(),
                text: String::new(),
                emitted: 0,
                sent: Vec::new(),
            }),
            tokens: Vec::new(),
        }
    }

    /// What of `text` can be shown now.
    pub fn push(&mut self, text: &str) -> Split {
        let split = match self.reasoning {
            ReasoningOut::Inline => Split { content: text.to_string(), reasoning: String::new() },
            _ => self.splitter.push(text),
        };
        self.route(split)
    }

    /// Calls complete so far (each with its index among the answer's calls), not given before:
    /// a stream sends each call once it is whole, before the answer ends.
    pub fn new_calls(&mut self) -> Vec<(usize, ToolCall)> {
        self.calls.as_mut().map_or_else(Vec::new, CallText::new_calls)
    }

    /// How many calls [`Reader::new_calls`] has given.
    pub fn calls_given(&self) -> usize {
        self.calls.as_ref().map_or(0, |c| c.sent.len())
    }

    /// The rest, and the calls the whole answer holds.
    pub fn finish(&mut self) -> Piece {
        let rest = self.splitter.finish();
        let mut split = self.route(rest);
        let mut calls = Vec::new();
        if let Some(c) = &mut self.calls {
            let (content, found) = c.finish();
            split.content.push_str(&content);
            calls = found;
        }
        Piece { text: split, calls }
    }

    fn route(&mut self, mut split: Split) -> Split {
        if self.reasoning == ReasoningOut::Hide {
            split.reasoning.clear();
        }
        if let Some(c) = &mut self.calls {
            split.content = c.push(&split.content);
        }
        split
    }
}

/// The content of an answer that may hold calls: shown as it comes until a call may have begun
/// (the start of a trigger), then held, and read for calls when the answer is whole.
struct CallText {
    format: ToolFormat,
    triggers: Vec<String>,
    /// The content so far.
    text: String,
    /// How much of it has been shown.
    emitted: usize,
    /// A call has begun (or the whole answer is one): nothing more is shown until the end.
    holding: bool,
    /// The calls already streamed (complete before the answer was).
    sent: Vec<ToolCall>,
}

impl CallText {
    fn push(&mut self, content: &str) -> String {
        self.text.push_str(content);
        if self.holding {
            return String::new();
        }
        let rest = &self.text[self.emitted..];
        let safe = match self.triggers.iter().filter_map(|t| rest.find(t.as_str())).min() {
            Some(at) => {
                self.holding = true;
                at
            }
            // A trigger's beginning at the end may be the start of a call: held back.
            None => {
                let partial = self
                    .triggers
                    .iter()
                    .flat_map(|t| (1..t.len()).filter(|&n| t.is_char_boundary(n) && rest.ends_with(&t[..n])))
                    .max()
                    .unwrap_or(0);
                rest.len() - partial
            }
        };
        let shown = rest[..safe].to_string();
        self.emitted += safe;
        shown
    }

    /// Calls complete since the last look, each with its index, while calls are being written.
    fn new_calls(&mut self) -> Vec<(usize, ToolCall)> {
        if !self.holding {
            return Vec::new();
        }
        let (_, calls) = tools::parse(self.format, &self.text);
        let new: Vec<(usize, ToolCall)> = calls.into_iter().enumerate().skip(self.sent.len()).collect();
        self.sent.extend(new.iter().map(|(_, c)| c.clone()));
        new
    }

    /// The content not yet shown, and the calls, from the whole answer (those already streamed
    /// keep their ids).
    fn finish(&mut self) -> (String, Vec<ToolCall>) {
        let (content, mut calls) = tools::parse(self.format, &self.text);
        if calls.len() < self.sent.len() {
            calls = self.sent.clone();
        }
        for (call, sent) in calls.iter_mut().zip(&self.sent) {
            call.id = sent.id.clone();
        }
        let shown = &self.text[..self.emitted];
        let rest = match content.strip_prefix(shown) {
            Some(rest) => rest.to_string(),
            None if self.emitted == 0 => content,
            None => String::new(),
        };
        (rest, calls)
    }
}

/// The finish reason: `tool_calls` when the answer made calls.
pub fn finish_reason(summary: &Summary, calls: &[ToolCall]) -> &'static str {
    if calls.is_empty() {
        summary.stop_reason.finish_reason()
    } else {
        "tool_calls"
    }
}

/// Waits for the whole answer: its content, reasoning and calls, and the job's summary (the
/// access log's counts set from it).
pub async fn whole(
    mut events: mpsc::UnboundedReceiver<Event>,
    reader: &mut Reader,
    counts: &Tokens,
) -> Result<(Piece, Summary), ApiError> {
    let mut all = Split::default();
    while let Some(event) = events.recv().await {
        match event {
            Event::Text(t) => {
                let part = reader.push(&t);
                all.content += &part.content;
                all.reasoning += &part.reasoning;
            }
            Event::Done(summary) => {
                counts.set(summary.prompt_tokens, summary.completion_tokens);
                let rest = reader.finish();
                all.content += &rest.text.content;
                all.reasoning += &rest.text.reasoning;
                return Ok((Piece { text: all, calls: rest.calls }, summary));
            }
            Event::Failed(message) => return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)),
            Event::Token(g) => reader.tokens.push(g),
            Event::Progress(_) => {}
        }
    }
    Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the engine dropped the request"))
}

/// The whole answer in OpenAI's shape.
pub async fn collect(shape: Shape, events: mpsc::UnboundedReceiver<Event>) -> Result<Response, ApiError> {
    let (choice, summary) = collect_choice(&shape, events).await?;
    let mut body = shape.body(vec![choice], false);
    if let Some(v) = &shape.verbose {
        body["__verbose"] = v.clone();
    }
    body["usage"] = openai::usage(&summary);
    body["timings"] = openai::timings(&summary.progress());
    Ok(Json(body).into_response())
}

/// One whole choice and its job's summary.
pub async fn collect_choice(
    shape: &Shape,
    events: mpsc::UnboundedReceiver<Event>,
) -> Result<(Value, Summary), ApiError> {
    let mut reader = shape.reader();
    let (piece, summary) = whole(events, &mut reader, &shape.counts).await?;
    let finish = finish_reason(&summary, &piece.calls);
    Ok((shape.choice_with(piece, Some(finish), false, &mut reader.tokens), summary))
}

/// The stream of server-sent events every API answers with: `first`'s events at once, then
/// `step`'s for each of the job's events until it ends. A client that hangs up drops the
/// receiver, which the engine sees at its next step.
pub type EventStream =
    Sse<axum::response::sse::KeepAliveStream<futures_util::stream::BoxStream<'static, Result<SseEvent, Infallible>>>>;

/// Runs `step` over the job's `events` on a task of its own, sending what it makes.
pub fn event_stream(
    mut events: mpsc::UnboundedReceiver<Event>,
    first: Vec<SseEvent>,
    mut step: impl FnMut(Option<Event>) -> Vec<SseEvent> + Send + 'static,
) -> EventStream {
    let (tx, mut rx) = mpsc::channel::<SseEvent>(64);
    tokio::spawn(async move {
        for e in first {
            if tx.send(e).await.is_err() {
                return;
            }
        }
        loop {
            let event = tokio::select! {
                event = events.recv() => event,
                // The client hung up: dropping `events` tells the engine.
                () = tx.closed() => return,
            };
            let done = !matches!(event, Some(Event::Text(_) | Event::Token(_) | Event::Progress(_)));
            for e in step(event) {
                if tx.send(e).await.is_err() {
                    return;
                }
            }
            if done {
                return;
            }
        }
    });
    let events = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|e| e.map(Ok)));
    Sse::new(futures_util::StreamExt::boxed(events)).keep_alive(KeepAlive::default())
}

/// Server-sent events in OpenAI's shape: a chunk per settled piece of text, the calls, the
/// finish reason, usage when asked, then `[DONE]`; llama-server's progress chunks and timings
/// when asked.
pub fn stream(shape: Shape, events: mpsc::UnboundedReceiver<Event>, include_usage: bool) -> EventStream {
    let data = |v: Value| SseEvent::default().data(v.to_string());
    let mut first = Vec::new();
    if let Kind::Chat { .. } = shape.kind {
        first.push(data(shape.body(vec![shape.opening()], true)));
    }
    let mut reader = shape.reader();
    let mut telemetry = shape.telemetry;
    event_stream(events, first, move |event| match event {
        Some(Event::Progress(p)) => match telemetry.update(p) {
            None => Vec::new(),
            Some(progress) => {
                let mut chunk = shape.body(vec![shape.opening()], true);
                chunk["prompt_progress"] = progress;
                telemetry.stamp(&mut chunk);
                vec![data(chunk)]
            }
        },
        Some(Event::Text(t)) => {
            let text = reader.push(&t);
            let mut out = Vec::new();
            if !text.content.is_empty() || !text.reasoning.is_empty() {
                let piece = Piece { text, calls: Vec::new() };
                let mut chunk = shape.body(vec![shape.choice_with(piece, None, true, &mut reader.tokens)], true);
                telemetry.stamp(&mut chunk);
                out.push(data(chunk));
            }
            for (i, call) in reader.new_calls() {
                out.extend(call_deltas(&shape, i, &call));
            }
            out
        }
        Some(Event::Done(summary)) => {
            shape.counts.set(summary.prompt_tokens, summary.completion_tokens);
            let given = reader.calls_given();
            let rest = reader.finish();
            finish_events(&shape, rest, &mut reader.tokens, given, &summary, include_usage)
        }
        Some(Event::Failed(message)) => {
            vec![data(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message).body())]
        }
        Some(Event::Token(g)) => {
            reader.tokens.push(g);
            Vec::new()
        }
        None => Vec::new(),
    })
}

/// Call `i` as OpenAI streams one: its id and name with empty arguments, then the arguments.
fn call_deltas(shape: &Shape, i: usize, call: &ToolCall) -> Vec<SseEvent> {
    let opening = ToolCall { arguments: String::new(), ..call.clone() };
    let deltas = [
        json!({"tool_calls": [call_json(i, &opening, true)]}),
        json!({"tool_calls": [{"index": i, "function": {"arguments": call.arguments}}]}),
    ];
    let chunk = |delta| json!({"index": 0, "delta": delta, "finish_reason": null});
    deltas.into_iter().map(|d| SseEvent::default().data(shape.body(vec![chunk(d)], true).to_string())).collect()
}

/// The last text, the calls not yet streamed ([`call_deltas`]), the finish reason, usage if
/// asked, `[DONE]`.
fn finish_events(
    shape: &Shape,
    rest: Piece,
    tokens: &mut Vec<Generated>,
    given: usize,
    summary: &Summary,
    include_usage: bool,
) -> Vec<SseEvent> {
    let data = |v: Value| SseEvent::default().data(v.to_string());
    let mut out = Vec::new();
    let finish = finish_reason(summary, &rest.calls);
    if !rest.text.content.is_empty() || !rest.text.reasoning.is_empty() {
        let piece = Piece { text: rest.text, calls: Vec::new() };
        out.push(data(shape.body(vec![shape.choice_with(piece, None, true, tokens)], true)));
    }
    for (i, call) in rest.calls.iter().enumerate().skip(given) {
        out.extend(call_deltas(shape, i, call));
    }
    let timings = openai::timings(&summary.progress());
    let mut last = shape.body(vec![shape.choice(Piece::default(), Some(finish), true)], true);
    last["timings"] = timings.clone();
    out.push(data(last));
    if include_usage {
        let mut usage = shape.body(Vec::new(), true);
        usage["usage"] = openai::usage(summary);
        usage["timings"] = timings;
        out.push(data(usage));
    }
    out.push(SseEvent::default().data("[DONE]"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream gives each call as soon as it is whole, with the id the answer's end keeps;
    /// text before the trigger is shown as it comes, and a trigger's first bytes are held.
    #[test]
    fn calls_are_given_as_they_complete() {
        let calls = Calls { format: ToolFormat::Hermes, triggers: vec!["<tool_call>".into()] };
        let mut reader = Reader::new(ReasoningOut::Split, Some(&calls), None);
        assert_eq!(reader.push("Let me look.").content, "Let me look.");
        assert_eq!(reader.push(" <tool_").content, " ");
        assert!(reader.new_calls().is_empty());
        assert_eq!(reader.push("call>\n{\"name\": \"f\", \"arguments\": {\"a\": ").content, "");
        assert!(reader.new_calls().is_empty(), "the first call is not whole yet");
        reader.push("1}}\n</tool_call>\n<tool_call>\n{\"name\": \"g\", ");
        let first = reader.new_calls();
        assert_eq!(first.len(), 1);
        assert_eq!((first[0].0, first[0].1.name.as_str(), first[0].1.arguments.as_str()), (0, "f", "{\"a\":1}"));
        reader.push("\"arguments\": {}}\n</tool_call>");
        assert_eq!(reader.calls_given(), 1);
        let end = reader.finish();
        assert_eq!(end.calls.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["f", "g"]);
        assert_eq!(end.calls[0].id, first[0].1.id, "a streamed call keeps its id");
        assert_eq!(end.text.content, "");
    }
}
