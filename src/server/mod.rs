//! `strata serve`: an OpenAI-compatible HTTP server over the slots of [`engine`]. Requests are
//! read and checked in [`openai`]; llama.cpp runs on the engine's own thread, never on the async
//! runtime. The server listens before the model loads: `/health` answers 503 until it is ready.
//! It runs in a child process of [`supervisor`], which faces the clients.

pub mod access_log;
mod answer;
mod anthropic;
mod conversation;
pub mod cors;
pub mod engine;
mod introspection;
pub mod media_urls;
mod native;
pub mod openai;
mod responses;
mod slot_files;
pub mod supervisor;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures_util::StreamExt;
use serde_json::{json, Value};
use strata_run::chat::template::{ChatTemplate, RenderOptions};
use strata_run::chat::tools::ToolFormat;
use strata_run::constraint::Compiler;
use strata_run::sampling::SamplingParams;
use tokio::sync::mpsc;

use crate::llama::Model;
use access_log::{Entry, LogFormat, Tokens};
use answer::{Kind, Shape};
use conversation::Conversation;
use engine::ClientSink;
use openai::ApiError;
use strata_run::engine::{Event, Handle, Job, Prompt as EnginePrompt, Refused};

/// The largest request body accepted.
pub const BODY_LIMIT: usize = 8 << 20;
/// How long a client may take to send a request's body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// What the thinking segment of a chat answer becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReasoningOut {
    /// In `reasoning_content`, apart from `content` (llama-server's default, "deepseek").
    Split,
    /// Left in `content`, markers and all ("none").
    Inline,
    /// Dropped.
    Hide,
}

/// A loaded model, ready to serve.
pub struct Ready {
    pub model: Arc<Model>,
    pub engine: Handle,
    pub n_slots: usize,
    pub template: ChatTemplate,
    /// BOS/EOS text and the server's `enable_thinking`.
    pub render: RenderOptions,
    pub sampling: SamplingParams,
    pub max_tokens: Option<usize>,
    pub reasoning: ReasoningOut,
    /// The model's name in responses and `/v1/models`: the first of its aliases in sorted order.
    pub alias: String,
    /// Every name the model answers to (`--alias a,b`), sorted.
    pub aliases: Vec<String>,
    /// Labels listed with the model in `/v1/models` (`--tags`).
    pub tags: Vec<String>,
    pub created: u64,
    /// How the model's template writes tool calls.
    pub tool_format: ToolFormat,
    /// Grammars over the model's vocabulary: built by the first request that needs one.
    pub compiler: OnceLock<Result<Arc<Compiler>, String>>,
    /// Thinking tokens an answer may spend (`--reasoning-budget`); a request may set its own.
    pub reasoning_budget: Option<usize>,
    /// The server's `--seed`: the seed of requests that give none (else one each).
    pub seed: Option<u64>,
    /// The model's end-of-generation tokens: banned (a bias of -inf) by `ignore_eos`.
    pub eog: Vec<u32>,
    /// `--verbose`: every whole answer carries `__verbose` (the prompt as the model saw it), as
    /// llama-server's do; a request's `verbose: true` asks the same.
    pub verbose: bool,
}

/// What the model's process serves beside the completions.
#[derive(Clone, Debug)]
pub struct Options {
    pub log_format: LogFormat,
    /// `/metrics` (`--metrics`).
    pub metrics: bool,
    /// `/slots` (`--slots`).
    pub slots: bool,
    /// Where `POST /slots/{id}` saves and restores slots (`--slot-save-path`).
    pub slot_save_path: Option<std::path::PathBuf>,
    /// Image URLs in requests are fetched (`--allow-media-urls`).
    pub media_urls: Option<Arc<media_urls::MediaUrls>>,
}

/// The server's state: the model once loaded, the API key and the options.
pub struct AppState {
    pub ready: OnceLock<Ready>,
    pub api_key: Option<String>,
    pub options: Options,
    ids: AtomicU64,
    /// When this process started (Unix seconds): `/metrics`' `Process-Start-Time-Unix`.
    pub started: u64,
}

impl AppState {
    pub fn new(api_key: Option<String>, options: Options) -> Arc<AppState> {
        Arc::new(AppState { ready: OnceLock::new(), api_key, options, ids: AtomicU64::new(0), started: now() })
    }

    fn ready(&self) -> Result<&Ready, ApiError> {
        self.ready.get().ok_or_else(ApiError::loading)
    }

    fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        authorize(self.api_key.as_deref(), headers)
    }

    fn next_id(&self, prefix: &str) -> String {
        let n = self.ids.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}-{:x}{n:06x}", now())
    }
}

/// Checks the key in constant time, when the server has one: `Authorization: Bearer KEY`
/// (OpenAI's clients) or `x-api-key: KEY` (Anthropic's).
fn authorize(api_key: Option<&str>, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = api_key else { return Ok(()) };
    let header = |name| headers.get(name).and_then(|v: &header::HeaderValue| v.to_str().ok());
    let bearer = header(header::AUTHORIZATION).and_then(|v| v.strip_prefix("Bearer "));
    let given = bearer.or_else(|| header(header::HeaderName::from_static("x-api-key"))).unwrap_or("");
    if constant_time_eq(given.as_bytes(), key.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid or missing API key (Authorization: Bearer KEY, or x-api-key: KEY)",
        ))
    }
}

/// Equal bytes, compared without stopping at the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff));
    }
    diff == 0
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The routes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/health", get(health))
        // The OpenAI routes also without `/v1`, as llama-server serves them (clients given a
        // base URL without it).
        .route("/v1/models", get(models))
        .route("/models", get(models))
        .route("/v1/models/{id}", get(model))
        .route("/models/{id}", get(model))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/chat/completions", post(chat_completions))
        .route("/v1/chat/completions/input_tokens", post(chat_input_tokens))
        .route("/chat/completions/input_tokens", post(chat_input_tokens))
        .route("/v1/completions", post(completions))
        // llama-server's own API at /completions; OpenAI's only under /v1.
        .route("/completions", post(native::completion))
        .route("/v1/responses", post(responses::responses))
        .route("/responses", post(responses::responses))
        .route("/v1/responses/input_tokens", post(responses::input_tokens))
        .route("/responses/input_tokens", post(responses::input_tokens))
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens))
        .route("/completion", post(native::completion))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .route("/apply-template", post(apply_template))
        .route("/props", get(introspection::props))
        .route("/slots", get(introspection::slots))
        .route("/slots/{id}", post(slot_files::action))
        .route("/metrics", get(introspection::metrics))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route").into_response() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "this route does not take that method").into_response()
        })
        .layer(axum::middleware::from_fn_with_state(state.clone(), log_request))
        .with_state(state)
}

/// The access-log line of every request the model's process answers, written when its answer
/// ends ([`access_log::Entry`]); handlers that generate fill in the tokens.
async fn log_request(State(s): State<Arc<AppState>>, mut request: axum::extract::Request, next: Next) -> Response {
    let tokens = Tokens::default();
    request.extensions_mut().insert(tokens.clone());
    let (method, path) = (request.method().to_string(), request.uri().path().to_string());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let entry =
        Entry { format: s.options.log_format, method, path, status: response.status().as_u16(), started, tokens };
    if !is_event_stream(response.headers()) {
        return response; // the entry, dropped here, writes the line
    }
    // Server-sent events: the line when the stream ends (or the client hangs up).
    let (parts, body) = response.into_parts();
    let events = body.into_data_stream().map(move |chunk| {
        let _ = &entry;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(events))
}

/// Whether an answer is server-sent events.
fn is_event_stream(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|t| t.starts_with("text/event-stream"))
}

/// Serves `app` on `listener` until the process ends: one task per connection, a request's
/// headers due within `header_timeout` (slow-loris), which is also how long an idle keep-alive
/// connection stays open.
pub async fn serve(listener: tokio::net::TcpListener, app: Router, header_timeout: Duration) -> Result<()> {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            // Out of file descriptors and the like: wait a little rather than spin.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            // Header names as llama-server writes them (`Process-Start-Time-Unix`): some clients
            // read them from a case-sensitive map.
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                .title_case_headers(true);
            let _ = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
        });
    }
}

/// Binds `host:port`.
pub async fn bind(host: &str, port: u16) -> Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener =
        tokio::net::TcpListener::bind((host, port)).await.with_context(|| format!("cannot listen on {host}:{port}"))?;
    let addr = listener.local_addr().context("no local address")?;
    Ok((listener, addr))
}

/// The body, at most [`BODY_LIMIT`] bytes, within [`BODY_TIMEOUT`].
async fn read_body(body: Body) -> Result<axum::body::Bytes, ApiError> {
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, BODY_LIMIT)).await {
        Err(_) => Err(ApiError::new(StatusCode::REQUEST_TIMEOUT, "the request body did not arrive in time")),
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) if format!("{e:#}").contains("length limit") => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {} MiB", BODY_LIMIT >> 20),
        )),
        Ok(Err(e)) => Err(ApiError::bad(format!("cannot read the request body: {e}"))),
    }
}

fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn health(State(s): State<Arc<AppState>>) -> Response {
    respond(s.ready().map(|_| Json(json!({"status": "ok"})).into_response()))
}

async fn models(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    respond((|| {
        s.authorize(&headers)?;
        let r = s.ready()?;
        Ok(Json(json!({"object": "list", "data": [model_object(r)]})).into_response())
    })())
}

/// `GET /v1/models/{id}`: the model, when `id` is its name (the SDKs' `models.retrieve`).
async fn model(State(s): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    respond((|| {
        s.authorize(&headers)?;
        let r = s.ready()?;
        if !r.aliases.contains(&id) {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no model {id:?}: this server serves {:?}", r.alias),
            ));
        }
        Ok(Json(model_object(r)).into_response())
    })())
}

fn model_object(r: &Ready) -> Value {
    json!({
        "id": r.alias,
        "object": "model",
        "created": r.created,
        "owned_by": "strata",
        "aliases": r.aliases,
        "tags": r.tags,
    })
}

/// Authorization, readiness and the body as a JSON object: what every POST starts with.
async fn request<'a>(
    s: &'a AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(&'a Ready, openai::Fields), ApiError> {
    s.authorize(headers)?;
    let ready = s.ready()?;
    let bytes = read_body(body).await?;
    let mut fields = openai::object(&bytes)?;
    if let Some(fetcher) = &s.options.media_urls {
        fetcher.inline(&mut fields).await?;
    }
    Ok((ready, fields))
}

async fn chat_completions(
    State(s): State<Arc<AppState>>,
    Extension(counts): Extension<Tokens>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(chat(&s, &headers, body, counts).await)
}

async fn chat(s: &Arc<AppState>, headers: &HeaderMap, body: Body, counts: Tokens) -> Result<Response, ApiError> {
    let (r, f) = request(s, headers, body).await?;
    let (prompt, opts, kind) = chat_prompt(r, &f)?;
    run(s, r, prompt, opts, kind, counts).await
}

/// `POST /chat/completions/input_tokens`: how many tokens a chat request's prompt is, as
/// llama-server counts them (the rendered template, tools and all).
async fn chat_input_tokens(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    respond(
        async {
            let (r, f) = request(&s, &headers, body).await?;
            let (prompt, _, _) = chat_prompt(r, &f)?;
            Ok(Json(json!({"input_tokens": prompt.tokens.len()})).into_response())
        }
        .await,
    )
}

/// `continue_final_message` (vLLM's and transformers' name for continuing a last assistant
/// message), which `add_generation_prompt: true` contradicts.
fn continue_final(f: &openai::Fields) -> Result<Option<bool>, ApiError> {
    match (openai::boolean(f, "continue_final_message")?, openai::boolean(f, "add_generation_prompt")?) {
        (Some(true), Some(true)) => {
            Err(ApiError::bad("continue_final_message and add_generation_prompt cannot both be true"))
        }
        (c, _) => Ok(c),
    }
}

/// A chat request's prompt (tokens and media), options and answer kind.
fn chat_prompt(r: &Ready, f: &openai::Fields) -> Result<(EnginePrompt, openai::Options, Kind), ApiError> {
    let mut opts = openai::options(f, r)?;
    let tools = openai::tools(f)?;
    let (messages, media) = openai::messages(f)?;
    let conv = Conversation {
        messages,
        media,
        choice: openai::tool_choice(f, &tools)?,
        tools,
        parallel: openai::parallel_tool_calls(f)?,
        enable_thinking: openai::enable_thinking(f)?,
        reasoning_budget: openai::reasoning_budget(f)?,
        grammar: opts.grammar.take(),
        continue_final: continue_final(f)?,
    };
    let reasoning = match f.get("reasoning_format").and_then(Value::as_str) {
        None => r.reasoning,
        Some("none") => ReasoningOut::Inline,
        Some("deepseek" | "auto") => ReasoningOut::Split,
        Some(other) => {
            return Err(ApiError::bad(format!("reasoning_format {other:?} is not one of none, deepseek, auto")))
        }
    };
    let prompt = r.prompt(conv)?;
    opts.constraint = prompt.constraint;
    let kind = Kind::Chat { reasoning, calls: prompt.calls, thinking: prompt.thinking };
    Ok((prompt.input, opts, kind))
}

async fn completions(
    State(s): State<Arc<AppState>>,
    Extension(counts): Extension<Tokens>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(completion(&s, &headers, body, counts).await)
}

async fn completion(s: &Arc<AppState>, headers: &HeaderMap, body: Body, counts: Tokens) -> Result<Response, ApiError> {
    let (r, f) = request(s, headers, body).await?;
    let prompt = openai::prompt(&f)?;
    let mut opts = openai::options(&f, r)?;
    if let Some(g) = opts.grammar.take() {
        opts.constraint = Some(r.constraint(&g, Vec::new(), "the request's grammar")?);
    }
    let tokens = r.model.tokenize(&prompt, true, false);
    run(s, r, tokens.into(), opts, Kind::Completion, counts).await
}

/// Queues the job and answers: one JSON object, or server-sent events as the text settles.
async fn run(
    s: &Arc<AppState>,
    r: &Ready,
    prompt: EnginePrompt,
    opts: openai::Options,
    kind: Kind,
    counts: Tokens,
) -> Result<Response, ApiError> {
    let stream = opts.stream;
    let include_usage = opts.include_usage;
    let (id, created) = (s.next_id(if matches!(kind, Kind::Chat { .. }) { "chatcmpl" } else { "cmpl" }), now());
    let logprobs = opts.detail.probs.map(|_| r.model.clone());
    let verbose = (r.verbose || opts.verbose).then(|| json!({"prompt": r.model.detokenize(&prompt.tokens)}));
    let telemetry = opts.telemetry;
    let shape = Shape { id, created, model: r.alias.clone(), kind, counts, logprobs, index: 0, verbose, telemetry };
    if opts.n > 1 {
        return choices(r, prompt, opts, shape).await;
    }
    let events = submit(r, prompt, opts)?;
    if stream {
        Ok(answer::stream(shape, events, include_usage).into_response())
    } else {
        answer::collect(shape, events).await
    }
}

/// `n` choices for one prompt: a job each (seeds `seed`, `seed + 1`, ...), all queued before any
/// is awaited so they share the batch; one answer with every choice, usage summed.
async fn choices(r: &Ready, prompt: EnginePrompt, opts: openai::Options, shape: Shape) -> Result<Response, ApiError> {
    if opts.stream {
        return Err(ApiError::bad("n above 1 is answered whole: stream is not supported with it"));
    }
    if opts.constraint.is_some() {
        return Err(ApiError::bad("n above 1 with a grammar, a schema or tools is not supported"));
    }
    let mut jobs = Vec::new();
    for i in 0..opts.n {
        jobs.push(submit(r, prompt.clone(), opts.for_choice(i))?);
    }
    let mut choices = Vec::new();
    let mut total: Option<strata_run::engine::Summary> = None;
    for (index, events) in jobs.into_iter().enumerate() {
        let (choice, summary) = answer::collect_choice(&shape.for_choice(index), events).await?;
        choices.push(choice);
        // The prompt counted once, the choices' tokens summed.
        let t = total.get_or_insert(strata_run::engine::Summary { completion_tokens: 0, ..summary });
        t.completion_tokens += summary.completion_tokens;
    }
    let total = total.ok_or_else(|| ApiError::bad("n must be at least 1"))?;
    shape.counts.set(total.prompt_tokens, total.completion_tokens);
    let mut body = shape.body(choices, false);
    if let Some(v) = &shape.verbose {
        body["__verbose"] = v.clone();
    }
    body["usage"] = openai::usage(&total);
    body["timings"] = openai::timings(&total.progress());
    Ok(Json(body).into_response())
}

/// Queues a job for `prompt`; its events come on the channel returned.
fn submit(
    r: &Ready,
    prompt: impl Into<EnginePrompt>,
    opts: openai::Options,
) -> Result<mpsc::UnboundedReceiver<Event>, ApiError> {
    let (events_tx, events) = mpsc::unbounded_channel();
    let EnginePrompt { tokens, media } = prompt.into();
    let job = Job {
        prompt: tokens,
        media,
        params: opts.params,
        max_tokens: opts.max_tokens,
        stop: opts.stop,
        ignore_eos: opts.ignore_eos,
        constraint: opts.constraint,
        detail: opts.detail,
        slot: opts.slot,
        sink: Box::new(ClientSink(events_tx)),
    };
    r.engine.submit(job).map_err(|e| match e {
        Refused::QueueFull => ApiError::unavailable("every slot is busy and the queue is full: try again later", 1),
        Refused::PromptTooLong { tokens, n_ctx_slot } => ApiError::exceeds_context(
            format!(
                "the prompt is {tokens} tokens; a slot's context holds {n_ctx_slot} (the total context split over {} \
                 slots): shorten the prompt, or raise -c or lower --parallel",
                r.n_slots
            ),
            tokens,
            n_ctx_slot,
        ),
        Refused::EmptyPrompt => ApiError::bad("the prompt is empty"),
        Refused::NoSuchSlot { .. } => ApiError::bad(format!("id_slot: {e}")),
        Refused::BadMedia(_) => ApiError::bad(e.to_string()),
    })?;
    Ok(events)
}

async fn tokenize(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    respond(
        async {
            let (r, f) = request(&s, &headers, body).await?;
            let content =
                f.get("content").and_then(Value::as_str).ok_or_else(|| ApiError::bad("content must be a string"))?;
            let flag = |name: &str, default: bool| match f.get(name) {
                None | Some(Value::Null) => Ok(default),
                Some(Value::Bool(b)) => Ok(*b),
                Some(v) => Err(ApiError::bad(format!("{name} must be true or false, not {v}"))),
            };
            let tokens = r.model.tokenize(content, flag("add_special", false)?, flag("parse_special", true)?);
            let tokens: Vec<Value> = if flag("with_pieces", false)? {
                tokens
                    .iter()
                    .map(|&t| json!({"id": t, "piece": String::from_utf8_lossy(&r.model.piece(t, true))}))
                    .collect()
            } else {
                tokens.iter().map(|&t| json!(t)).collect()
            };
            Ok(Json(json!({"tokens": tokens})).into_response())
        }
        .await,
    )
}

async fn detokenize(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    respond(
        async {
            let (r, f) = request(&s, &headers, body).await?;
            let list = f
                .get("tokens")
                .and_then(Value::as_array)
                .ok_or_else(|| ApiError::bad("tokens must be a list of token ids"))?;
            let mut ids = Vec::with_capacity(list.len());
            for (i, t) in list.iter().enumerate() {
                let id = t.as_u64().filter(|&id| (id as usize) < r.model.n_vocab());
                let id = id.ok_or_else(|| {
                    ApiError::bad(format!("tokens[{i}] is {t}, not a token id below {}", r.model.n_vocab()))
                })?;
                ids.push(id as i32);
            }
            Ok(Json(json!({"content": r.model.detokenize(&ids)})).into_response())
        }
        .await,
    )
}

async fn apply_template(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    respond(
        async {
            let (r, f) = request(&s, &headers, body).await?;
            let (messages, _) = openai::messages(&f)?;
            let add = openai::boolean(&f, "add_generation_prompt")?.unwrap_or(true);
            // Tools as the chat completion would give them to a template that renders them.
            let tools = openai::tools(&f)?;
            let render = RenderOptions {
                add_generation_prompt: add,
                enable_thinking: openai::enable_thinking(&f)?.or(r.render.enable_thinking),
                tools: (!tools.is_empty() && r.tool_format.template_renders_tools())
                    .then(|| tools.iter().map(strata_run::chat::tools::Tool::to_openai).collect()),
                ..r.render.clone()
            };
            let prompt = r
                .template
                .render(&messages, &render)
                .map_err(|e| ApiError::bad(format!("the chat template failed on these messages: {e:#}")))?;
            Ok(Json(json!({"prompt": prompt})).into_response())
        }
        .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
