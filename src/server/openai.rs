//! The OpenAI request and response shapes: each request field read and checked (an error names
//! the field and why), and the JSON strata answers with, in OpenAI's and llama-server's shapes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use strata_run::chat::Message;
use strata_run::engine::check_stop_strings;
use strata_run::sampling::{random_seed, SamplingParams};

use strata_run::engine::Summary;

/// An error in OpenAI's shape: `{"error": {"message", "type", "code"}}`; a 503 says when to try
/// again (`Retry-After`).
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Seconds, for a 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), retry_after: None }
    }

    /// A 503: the server cannot take the request now; try again in `seconds`.
    pub fn unavailable(message: impl Into<String>, seconds: u64) -> ApiError {
        ApiError { retry_after: Some(seconds), ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message) }
    }

    /// The 503 while the model loads (both processes answer it: the supervisor before the
    /// child listens, the child before its model is ready).
    pub fn loading() -> ApiError {
        ApiError::unavailable("Loading model", 5)
    }

    fn kind(&self) -> &'static str {
        match self.status {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::FORBIDDEN => "permission_error",
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable_error",
            s if s.is_server_error() => "server_error",
            _ => "invalid_request_error",
        }
    }

    /// The error object, as responses and server-sent events carry it.
    pub fn body(&self) -> Value {
        json!({"error": {"message": self.message, "type": self.kind(), "code": self.status.as_u16()}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

/// A request body's fields.
pub type Fields = Map<String, Value>;

/// The body as a JSON object.
pub fn object(body: &[u8]) -> Result<Fields, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad("the request body must be a JSON object")),
        Err(e) => Err(ApiError::bad(format!("the request body is not valid JSON: {e}"))),
    }
}

fn field<'a>(f: &'a Fields, name: &str) -> Option<&'a Value> {
    f.get(name).filter(|v| !v.is_null())
}

fn number(f: &Fields, name: &str, ok: impl Fn(f64) -> bool, range: &str) -> Result<Option<f64>, ApiError> {
    match field(f, name) {
        None => Ok(None),
        Some(v) => match v.as_f64() {
            Some(x) if x.is_finite() && ok(x) => Ok(Some(x)),
            Some(x) => Err(ApiError::bad(format!("{name} is {x}, outside {range}"))),
            None => Err(ApiError::bad(format!("{name} must be a number, not {v}"))),
        },
    }
}

fn whole(f: &Fields, name: &str, min: i64) -> Result<Option<i64>, ApiError> {
    match field(f, name) {
        None => Ok(None),
        Some(v) => match v.as_i64() {
            Some(n) if n >= min => Ok(Some(n)),
            Some(n) => Err(ApiError::bad(format!("{name} is {n}; it must be at least {min}"))),
            None => Err(ApiError::bad(format!("{name} must be a whole number, not {v}"))),
        },
    }
}

fn boolean(f: &Fields, name: &str) -> Result<Option<bool>, ApiError> {
    match field(f, name) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(ApiError::bad(format!("{name} must be true or false, not {v}"))),
    }
}

/// What every completion request sets, beside its prompt.
pub struct Options {
    pub params: SamplingParams,
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
    /// Keep generating past end-of-generation tokens (llama-server's `ignore_eos`).
    pub ignore_eos: bool,
    pub stream: bool,
    pub include_usage: bool,
}

/// The most logit biases a request may give.
const MAX_LOGIT_BIAS: usize = 1024;

/// Fields that would change the answer in ways strata does not do: refused, never ignored.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("tools", "tool calling is not supported"),
    ("tool_choice", "tool calling is not supported"),
    ("functions", "function calling is not supported"),
    ("function_call", "function calling is not supported"),
    ("logprobs", "logprobs are not supported"),
    ("top_logprobs", "logprobs are not supported"),
    ("echo", "echo is not supported"),
    ("suffix", "suffix (insertion) is not supported"),
    ("audio", "audio output is not supported"),
    ("modalities", "output modalities are not supported"),
    ("prediction", "predicted outputs are not supported"),
];

/// The sampling and length options of a request over the server's defaults.
pub fn options(
    f: &Fields,
    defaults: &SamplingParams,
    default_max_tokens: Option<usize>,
    n_vocab: usize,
) -> Result<Options, ApiError> {
    for (name, why) in UNSUPPORTED {
        let given = match field(f, name) {
            None | Some(Value::Bool(false)) => false,
            Some(Value::Array(a)) => !a.is_empty(),
            // Clients send these by default: with no tools to call, they change nothing.
            Some(Value::String(s)) if *name == "tool_choice" => !matches!(s.as_str(), "none" | "auto"),
            Some(_) => true,
        };
        if given {
            return Err(ApiError::bad(format!("{name}: {why}")));
        }
    }
    if let Some(n) = whole(f, "n", 1)? {
        if n != 1 {
            return Err(ApiError::bad(format!("n is {n}: only one choice per request is supported")));
        }
    }
    if let Some(n) = whole(f, "best_of", 1)? {
        if n != 1 {
            return Err(ApiError::bad(format!("best_of is {n}: only 1 is supported")));
        }
    }
    if let Some(format) = field(f, "response_format") {
        if format.get("type").and_then(Value::as_str) != Some("text") {
            return Err(ApiError::bad(format!(
                "response_format {format}: only {{\"type\": \"text\"}} is supported (no JSON mode or schema)"
            )));
        }
    }
    let mut p = defaults.clone();
    if let Some(t) = number(f, "temperature", |x| x >= 0.0, "[0, inf)")? {
        p.temperature = t as f32;
    }
    if let Some(t) = number(f, "top_p", |x| x > 0.0 && x <= 1.0, "(0, 1]")? {
        p.top_p = t as f32;
    }
    if let Some(k) = whole(f, "top_k", 0)? {
        p.top_k = k as usize;
    }
    if let Some(m) = number(f, "min_p", |x| (0.0..=1.0).contains(&x), "[0, 1]")? {
        p.min_p = m as f32;
    }
    if let Some(t) = number(f, "typical_p", |x| x > 0.0 && x <= 1.0, "(0, 1]")? {
        p.typical_p = t as f32;
    }
    if let Some(x) = number(f, "presence_penalty", |x| (-2.0..=2.0).contains(&x), "[-2, 2]")? {
        p.presence_penalty = x as f32;
    }
    if let Some(x) = number(f, "frequency_penalty", |x| (-2.0..=2.0).contains(&x), "[-2, 2]")? {
        p.frequency_penalty = x as f32;
    }
    if let Some(x) = number(f, "repeat_penalty", |x| x > 0.0, "(0, inf)")? {
        p.repeat_penalty = x as f32;
    }
    if let Some(n) = whole(f, "repeat_last_n", 0)? {
        p.repeat_last_n = n as usize;
    }
    match field(f, "seed") {
        None => p.seed = random_seed(),
        Some(v) => match v.as_i64() {
            Some(-1) => p.seed = random_seed(),
            Some(s) if s >= 0 => p.seed = s as u64,
            _ => match v.as_u64() {
                Some(s) => p.seed = s,
                None => return Err(ApiError::bad(format!("seed must be a whole number (-1: random), not {v}"))),
            },
        },
    }
    if let Some(bias) = field(f, "logit_bias") {
        let map = bias.as_object().ok_or_else(|| {
            ApiError::bad(format!("logit_bias must be an object of token ids to numbers, not {bias}"))
        })?;
        if map.len() > MAX_LOGIT_BIAS {
            return Err(ApiError::bad(format!("logit_bias has {} entries; at most {MAX_LOGIT_BIAS}", map.len())));
        }
        p.logit_bias.clear();
        for (token, value) in map {
            let id = token.parse::<u32>().ok().filter(|&t| (t as usize) < n_vocab);
            let id =
                id.ok_or_else(|| ApiError::bad(format!("logit_bias: {token:?} is not a token id below {n_vocab}")))?;
            let v = value.as_f64().filter(|v| (-100.0..=100.0).contains(v));
            let v = v.ok_or_else(|| {
                ApiError::bad(format!("logit_bias[{token}] is {value}; it must be a number in [-100, 100]"))
            })?;
            p.logit_bias.push((id, v as f32));
        }
    }
    let max_tokens = match (whole(f, "max_completion_tokens", 1)?, whole(f, "max_tokens", 1)?) {
        (Some(n), _) | (None, Some(n)) => Some(n as usize),
        (None, None) => default_max_tokens,
    };
    let stop = match field(f, "stop") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|s| {
                s.as_str().map(String::from).ok_or_else(|| ApiError::bad(format!("stop must hold strings, not {s}")))
            })
            .collect::<Result<_, _>>()?,
        Some(v) => return Err(ApiError::bad(format!("stop must be a string or a list of strings, not {v}"))),
    };
    check_stop_strings(&stop).map_err(|e| ApiError::bad(format!("stop: {e}")))?;
    let stream = boolean(f, "stream")?.unwrap_or(false);
    let include_usage = match field(f, "stream_options") {
        None => false,
        Some(Value::Object(o)) => boolean(o, "include_usage")?.unwrap_or(false),
        Some(v) => return Err(ApiError::bad(format!("stream_options must be an object, not {v}"))),
    };
    let ignore_eos = boolean(f, "ignore_eos")?.unwrap_or(false);
    Ok(Options { params: p, max_tokens, stop, ignore_eos, stream, include_usage })
}

/// Roles a message may have (`developer` is OpenAI's newer name for `system`).
const ROLES: &[&str] = &["system", "developer", "user", "assistant"];

/// `messages`: role and content (a string, or text parts); anything that is not text is refused.
pub fn messages(f: &Fields) -> Result<Vec<Message>, ApiError> {
    let list = field(f, "messages")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::bad("messages must be a list of {\"role\", \"content\"} objects"))?;
    if list.is_empty() {
        return Err(ApiError::bad("messages is empty"));
    }
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            let role = m
                .get("role")
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::bad(format!("messages[{i}].role must be a string")))?;
            let role = match role {
                "developer" => "system",
                r if ROLES.contains(&r) => r,
                "tool" | "function" => {
                    return Err(ApiError::bad(format!("messages[{i}].role {role:?}: tool calling is not supported")))
                }
                r => {
                    return Err(ApiError::bad(format!(
                        "messages[{i}].role {r:?} is not one of system, developer, user, assistant"
                    )))
                }
            };
            if m.get("tool_calls").is_some_and(|t| !t.is_null()) {
                return Err(ApiError::bad(format!("messages[{i}].tool_calls: tool calling is not supported")));
            }
            Ok(Message::new(role, &content(m.get("content"), i)?))
        })
        .collect()
}

fn content(v: Option<&Value>, i: usize) -> Result<String, ApiError> {
    match v {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (j, part) in parts.iter().enumerate() {
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        text.push_str(part.get("text").and_then(Value::as_str).ok_or_else(|| {
                            ApiError::bad(format!("messages[{i}].content[{j}].text must be a string"))
                        })?)
                    }
                    Some(kind) => {
                        return Err(ApiError::bad(format!(
                            "messages[{i}].content[{j}]: {kind} parts are not supported (text only)"
                        )))
                    }
                    None => return Err(ApiError::bad(format!("messages[{i}].content[{j}] has no type"))),
                }
            }
            Ok(text)
        }
        _ => Err(ApiError::bad(format!("messages[{i}].content must be a string or a list of text parts"))),
    }
}

/// `chat_template_kwargs`: only `enable_thinking` (Qwen3, Gemma 4) is passed to templates.
pub fn enable_thinking(f: &Fields) -> Result<Option<bool>, ApiError> {
    match field(f, "chat_template_kwargs") {
        None => Ok(None),
        Some(Value::Object(kw)) => {
            if let Some(k) = kw.keys().find(|k| *k != "enable_thinking") {
                return Err(ApiError::bad(format!("chat_template_kwargs.{k} is not supported (only enable_thinking)")));
            }
            boolean(kw, "enable_thinking")
        }
        Some(v) => Err(ApiError::bad(format!("chat_template_kwargs must be an object, not {v}"))),
    }
}

/// `prompt` of /v1/completions: a string, or a list holding one.
pub fn prompt(f: &Fields) -> Result<String, ApiError> {
    match field(f, "prompt") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(items)) if items.len() == 1 && items[0].is_string() => {
            Ok(items[0].as_str().unwrap_or_default().to_string())
        }
        Some(Value::Array(_)) => Err(ApiError::bad("prompt: only one prompt string per request is supported")),
        _ => Err(ApiError::bad("prompt must be a string")),
    }
}

/// `usage` and llama-server's `timings`, from a finished job.
pub fn usage(s: &Summary) -> Value {
    json!({
        "prompt_tokens": s.prompt_tokens,
        "completion_tokens": s.completion_tokens,
        "total_tokens": s.prompt_tokens + s.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": s.cached_tokens},
    })
}

pub fn timings(s: &Summary) -> Value {
    json!({
        "slot": s.slot,
        "cache_n": s.cached_tokens,
        "prompt_n": s.prompt_tokens - s.cached_tokens,
        "prompt_ms": s.prompt_ms,
        "predicted_n": s.completion_tokens,
        "predicted_ms": s.generation_ms,
    })
}
