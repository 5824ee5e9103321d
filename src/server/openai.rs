//! The OpenAI request and response shapes: each request field read and checked (an error names
//! the field and why), and the JSON strata answers with, in OpenAI's and llama-server's shapes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use strata_run::chat::tools::{Tool, ToolChoice};
use strata_run::chat::{Message, ToolCall};
use strata_run::constraint::{check_schema_size, Grammar};
use strata_run::engine::{check_stop_strings, Constraint, Detail, Probs, Progress};
use strata_run::sampling::{random_seed, SamplingParams};

use crate::llama::Medium;

use strata_run::engine::Summary;

/// An error in OpenAI's shape: `{"error": {"message", "type", "code"}}`; a 503 says when to try
/// again (`Retry-After`).
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Seconds, for a 503.
    pub retry_after: Option<u64>,
    /// A prompt longer than a slot's context: its tokens and the slot's (llama-server's
    /// `exceed_context_size_error`, with `n_prompt_tokens` and `n_ctx`).
    pub exceeded: Option<(usize, usize)>,
}

impl ApiError {
    pub fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), retry_after: None, exceeded: None }
    }

    /// A 400 for a prompt of `tokens` that a slot's context of `n_ctx` cannot hold.
    pub fn exceeds_context(message: impl Into<String>, tokens: usize, n_ctx: usize) -> ApiError {
        ApiError { exceeded: Some((tokens, n_ctx)), ..ApiError::bad(message) }
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
        if self.exceeded.is_some() {
            return "exceed_context_size_error";
        }
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
        let mut error = json!({"message": self.message, "type": self.kind(), "code": self.status.as_u16()});
        if let Some((tokens, n_ctx)) = self.exceeded {
            error["n_prompt_tokens"] = json!(tokens);
            error["n_ctx"] = json!(n_ctx);
        }
        json!({ "error": error })
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

pub(crate) fn field<'a>(f: &'a Fields, name: &str) -> Option<&'a Value> {
    f.get(name).filter(|v| !v.is_null())
}

pub(crate) fn number(f: &Fields, name: &str, ok: impl Fn(f64) -> bool, range: &str) -> Result<Option<f64>, ApiError> {
    match field(f, name) {
        None => Ok(None),
        Some(v) => match v.as_f64() {
            Some(x) if x.is_finite() && ok(x) => Ok(Some(x)),
            Some(x) => Err(ApiError::bad(format!("{name} is {x}, outside {range}"))),
            None => Err(ApiError::bad(format!("{name} must be a number, not {v}"))),
        },
    }
}

pub(crate) fn whole(f: &Fields, name: &str, min: i64) -> Result<Option<i64>, ApiError> {
    match field(f, name) {
        None => Ok(None),
        Some(v) => match v.as_i64() {
            Some(n) if n >= min => Ok(Some(n)),
            Some(n) => Err(ApiError::bad(format!("{name} is {n}; it must be at least {min}"))),
            None => Err(ApiError::bad(format!("{name} must be a whole number, not {v}"))),
        },
    }
}

pub(crate) fn boolean(f: &Fields, name: &str) -> Result<Option<bool>, ApiError> {
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
    /// What the text must match: `response_format`'s JSON mode or schema, or llama-server's
    /// `json_schema` and `grammar` (GBNF) fields.
    pub grammar: Option<Grammar>,
    /// The grammar (or the tools' calls) compiled for this request's job.
    pub constraint: Option<Box<dyn Constraint>>,
    /// The tokens and probabilities reported beside the text (logprobs, `n_probs`).
    pub detail: Detail,
    /// Choices asked (`n`): a job each.
    pub n: usize,
    /// llama-server's `verbose`: the answer carries `__verbose`.
    pub verbose: bool,
    /// llama-server's `return_progress` and `timings_per_token`.
    pub telemetry: Telemetry,
    /// llama-server's `id_slot`: the slot to run in (none: the one holding the longest prefix).
    pub slot: Option<usize>,
}

impl Options {
    /// The options of choice `i` of `n`: the same, with seed `seed + i` (so choices differ when
    /// sampling) and no grammar (one compiled constraint serves one job).
    pub fn for_choice(&self, i: usize) -> Options {
        let mut params = self.params.clone();
        params.seed = params.seed.wrapping_add(i as u64);
        Options {
            params,
            max_tokens: self.max_tokens,
            stop: self.stop.clone(),
            ignore_eos: self.ignore_eos,
            stream: self.stream,
            include_usage: self.include_usage,
            grammar: None,
            constraint: None,
            detail: self.detail,
            n: 1,
            verbose: self.verbose,
            telemetry: self.telemetry,
            slot: self.slot,
        }
    }
}

/// The most choices (`n`) a request may ask for.
const MAX_CHOICES: usize = 16;
/// The most alternatives (`top_logprobs`) per token, as OpenAI allows.
const MAX_TOP_LOGPROBS: i64 = 20;

/// The most logit biases a request may give.
const MAX_LOGIT_BIAS: usize = 1024;

/// Fields that would change the answer in ways strata does not do: refused, never ignored.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("functions", "function calling is not supported"),
    ("function_call", "function calling is not supported"),
    ("echo", "echo is not supported"),
    ("suffix", "suffix (insertion) is not supported"),
    ("audio", "audio output is not supported"),
    ("modalities", "output modalities are not supported"),
    ("prediction", "predicted outputs are not supported"),
];

/// llama.cpp's samplers that strata does not have, by the field that switches each on: a value
/// above 0 changes the answer, so it is refused, never ignored (0, or llama.cpp's default -1 for
/// `top_n_sigma`, leaves it off).
const OTHER_SAMPLERS: &[(&str, &str)] = &[
    ("mirostat", "mirostat sampling"),
    ("dry_multiplier", "DRY sampling"),
    ("xtc_probability", "XTC sampling"),
    ("top_n_sigma", "top-n-sigma sampling"),
    ("dynatemp_range", "dynamic temperature"),
];

/// The stages of strata's sampler chain under llama.cpp's names (`samplers`), in the order the
/// chain applies them: llama.cpp's default order.
const STAGES: [&str; 6] = ["penalties", "top_k", "typ_p", "top_p", "min_p", "temperature"];

/// llama.cpp's samplers that strata lacks but that do nothing unless their fields switch them on
/// ([`OTHER_SAMPLERS`]): naming them in `samplers` changes nothing.
const IDLE_SAMPLERS: [&str; 4] = ["dry", "top_n_sigma", "xtc", "adaptive_p"];

/// A sampler's canonical name from llama.cpp's names and aliases (`top-k`, `topk`, `nucleus`,
/// `temp`, `typ`, any case) or its letter (`kypmt`).
fn sampler_name(name: &str) -> Option<&'static str> {
    let name = name.to_lowercase().replace('-', "_");
    let canonical = match name.as_str() {
        "nucleus" | "p" => "top_p",
        "temp" | "t" => "temperature",
        "typ" | "y" => "typ_p",
        "k" => "top_k",
        "m" => "min_p",
        "e" => "penalties",
        "d" => "dry",
        "s" => "top_n_sigma",
        "x" => "xtc",
        "a" => "adaptive_p",
        "i" => "infill",
        other => other,
    };
    let known = STAGES.iter().chain(&IDLE_SAMPLERS).chain(&["infill"]);
    known.copied().find(|&k| k == canonical || k.replace('_', "") == canonical)
}

/// llama-server's `samplers` (names, or a string of letters): the chain's stages that are not
/// named are switched off; those named must come in the chain's order ([`STAGES`]).
fn apply_samplers(p: &mut SamplingParams, v: &Value) -> Result<(), ApiError> {
    let names: Vec<String> = match v {
        Value::String(letters) => letters.chars().map(String::from).collect(),
        Value::Array(items) => items
            .iter()
            .map(|n| {
                n.as_str().map(String::from).ok_or_else(|| ApiError::bad(format!("samplers holds {n}, not a name")))
            })
            .collect::<Result<_, _>>()?,
        other => {
            return Err(ApiError::bad(format!("samplers must be a list of names or a string of letters, not {other}")))
        }
    };
    let mut stages = Vec::new();
    for name in &names {
        match sampler_name(name) {
            Some(s) if STAGES.contains(&s) => stages.push(s),
            Some("infill") => return Err(ApiError::bad("samplers: the infill sampler is not supported")),
            Some(_) => {}
            None => {
                return Err(ApiError::bad(format!(
                    "samplers: {name:?} is not a sampler (strata's: {})",
                    STAGES.join(", ")
                )))
            }
        }
    }
    let position = |s: &&str| STAGES.iter().position(|x| x == s);
    if !stages.windows(2).all(|w| position(&w[0]) < position(&w[1])) {
        return Err(ApiError::bad(format!(
            "samplers: strata's chain applies its samplers in one order, {}; name them in that order",
            STAGES.join(", ")
        )));
    }
    let off = |stage: &str| !stages.contains(&stage);
    if off("penalties") {
        (p.repeat_penalty, p.presence_penalty, p.frequency_penalty) = (1.0, 0.0, 0.0);
    }
    if off("top_k") {
        p.top_k = 0;
    }
    if off("typ_p") {
        p.typical_p = 1.0;
    }
    if off("top_p") {
        p.top_p = 1.0;
    }
    if off("min_p") {
        p.min_p = 0.0;
    }
    if off("temperature") {
        p.temperature = 1.0; // the distribution as the model gives it, as llama.cpp's chain without it
    }
    Ok(())
}

/// The sampling and length options of a request over the server's defaults.
pub fn options(f: &Fields, r: &super::Ready) -> Result<Options, ApiError> {
    let (defaults, default_max_tokens, n_vocab) = (&r.sampling, r.max_tokens, r.model.n_vocab());
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
    let n = whole(f, "n", 1)?.unwrap_or(1) as usize;
    if n > MAX_CHOICES {
        return Err(ApiError::bad(format!("n is {n}; at most {MAX_CHOICES} choices per request")));
    }
    let top = whole(f, "top_logprobs", 0)?;
    if top.is_some_and(|t| t > MAX_TOP_LOGPROBS) {
        return Err(ApiError::bad(format!("top_logprobs is more than {MAX_TOP_LOGPROBS}")));
    }
    // Chat's `logprobs: true` (with `top_logprobs`), or the completions' `logprobs: N`.
    let probs = match field(f, "logprobs") {
        None | Some(Value::Bool(false)) => None,
        Some(Value::Bool(true)) => Some(top.unwrap_or(0) as usize),
        Some(Value::Number(k)) => match k.as_u64() {
            Some(k) if k <= MAX_TOP_LOGPROBS as u64 => Some(k as usize),
            _ => return Err(ApiError::bad(format!("logprobs is {k}; a whole number up to {MAX_TOP_LOGPROBS}"))),
        },
        Some(v) => return Err(ApiError::bad(format!("logprobs must be true, false or a number, not {v}"))),
    };
    if let Some(n) = whole(f, "best_of", 1)? {
        if n != 1 {
            return Err(ApiError::bad(format!("best_of is {n}: only 1 is supported")));
        }
    }
    for (name, what) in OTHER_SAMPLERS {
        if let Some(v) = field(f, name).filter(|v| v.as_f64().is_none_or(|x| x > 0.0)) {
            return Err(ApiError::bad(format!("{name} is {v}: {what} is not supported")));
        }
    }
    let grammar = grammar(f)?;
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
        // The server's --seed, as llama-server; else a new one per request.
        None => p.seed = r.seed.unwrap_or_else(random_seed),
        Some(v) => match v.as_i64() {
            Some(-1) => p.seed = random_seed(),
            Some(s) if s >= 0 => p.seed = s as u64,
            _ => match v.as_u64() {
                Some(s) => p.seed = s,
                None => return Err(ApiError::bad(format!("seed must be a whole number (-1: random), not {v}"))),
            },
        },
    }
    if let Some(v) = field(f, "samplers") {
        apply_samplers(&mut p, v)?;
    }
    if let Some(bias) = field(f, "logit_bias") {
        p.logit_bias = logit_bias(bias, n_vocab, &|text| r.model.tokenize(text, false, false))?;
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
    if ignore_eos {
        // As llama-server: the end-of-generation tokens banned, so the answer runs to its limit.
        p.logit_bias.extend(r.eog.iter().map(|&t| (t, f32::NEG_INFINITY)));
    }
    let telemetry = Telemetry::read(f)?;
    let probs_detail = probs.map(|n| Probs { n, post_sampling: false });
    Ok(Options {
        params: p,
        max_tokens,
        stop,
        ignore_eos,
        stream,
        include_usage,
        grammar,
        constraint: None,
        detail: Detail { tokens: probs.is_some(), probs: probs_detail, progress: telemetry.wanted(stream) },
        n,
        verbose: boolean(f, "verbose")?.unwrap_or(false),
        telemetry,
        slot: whole(f, "id_slot", -1)?.and_then(|id| usize::try_from(id).ok()),
    })
}

/// Roles a message may have (`developer` is OpenAI's newer name for `system`).
const ROLES: &[&str] = &["system", "developer", "user", "assistant", "tool"];

/// `messages`: role and content (a string, or parts: text, `image_url` with a `data:` URL,
/// `input_audio` with base64 `data`); an assistant's `tool_calls`, and `tool` messages answering
/// them by `tool_call_id` (an id no earlier call has is refused). Each image or clip becomes a
/// media marker in its message's text, and the media come back in order.
pub fn messages(f: &Fields) -> Result<(Vec<Message>, Vec<Medium>), ApiError> {
    let list = field(f, "messages")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::bad("messages must be a list of {\"role\", \"content\"} objects"))?;
    if list.is_empty() {
        return Err(ApiError::bad("messages is empty"));
    }
    let mut calls: Vec<ToolCall> = Vec::new();
    let mut out = Vec::with_capacity(list.len());
    let mut media = Vec::new();
    for (i, m) in list.iter().enumerate() {
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad(format!("messages[{i}].role must be a string")))?;
        let role = match role {
            "developer" => "system",
            r if ROLES.contains(&r) => r,
            "function" => return Err(ApiError::bad(format!("messages[{i}].role \"function\": use \"tool\""))),
            r => {
                return Err(ApiError::bad(format!(
                    "messages[{i}].role {r:?} is not one of system, developer, user, assistant, tool"
                )))
            }
        };
        let tool_calls = match m.get("tool_calls").filter(|t| !t.is_null()) {
            None => Vec::new(),
            Some(_) if role != "assistant" => {
                return Err(ApiError::bad(format!("messages[{i}].tool_calls: only assistant messages make calls")))
            }
            Some(t) => message_calls(t, i)?,
        };
        // An assistant message that only calls may have no content.
        let content = match m.get("content") {
            None | Some(Value::Null) if !tool_calls.is_empty() => String::new(),
            c => content(c, i, &mut media)?,
        };
        let mut message = Message { tool_calls: tool_calls.clone(), ..Message::new(role, &content) };
        match m.get("reasoning_content") {
            None | Some(Value::Null) => {}
            Some(Value::String(r)) if role == "assistant" => message.reasoning_content = Some(r.clone()),
            Some(v) => {
                return Err(ApiError::bad(format!(
                    "messages[{i}].reasoning_content must be text, in an assistant message, not {v}"
                )))
            }
        }
        calls.extend(tool_calls);
        if role == "tool" {
            let id = m.get("tool_call_id").and_then(Value::as_str).ok_or_else(|| {
                ApiError::bad(format!("messages[{i}].tool_call_id must be the id of the call it answers"))
            })?;
            let call = calls.iter().find(|c| c.id == id).ok_or_else(|| {
                ApiError::bad(format!("messages[{i}].tool_call_id {id:?} answers no call an earlier message made"))
            })?;
            message.tool_call_id = Some(id.to_string());
            message.name = Some(call.name.clone());
        }
        out.push(message);
    }
    Ok((out, media))
}

/// An assistant message's `tool_calls`: `[{"id", "type": "function", "function": {"name", "arguments"}}]`.
fn message_calls(v: &Value, i: usize) -> Result<Vec<ToolCall>, ApiError> {
    let list = v.as_array().ok_or_else(|| ApiError::bad(format!("messages[{i}].tool_calls must be a list")))?;
    list.iter()
        .enumerate()
        .map(|(j, c)| {
            let at = format!("messages[{i}].tool_calls[{j}]");
            let function = c.get("function").ok_or_else(|| ApiError::bad(format!("{at}.function is missing")))?;
            let name = function
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::bad(format!("{at}.function.name must be a string")))?;
            let arguments = match function.get("arguments") {
                Some(Value::String(s)) => s.clone(),
                Some(v @ Value::Object(_)) => v.to_string(),
                None | Some(Value::Null) => "{}".to_string(),
                Some(v) => {
                    return Err(ApiError::bad(format!("{at}.function.arguments must be a JSON string, not {v}")))
                }
            };
            let id = c.get("id").and_then(Value::as_str).map_or_else(|| format!("call_{i}_{j}"), String::from);
            Ok(ToolCall { id, name: name.to_string(), arguments })
        })
        .collect()
}

/// The most functions one request may offer (OpenAI's limit).
const MAX_TOOLS: usize = 128;

/// `tools`: the functions the model may call, each `{"type": "function", "function": {"name",
/// "description", "parameters"}}`; a name is 1-64 letters, digits, `_` or `-` (OpenAI's rule),
/// given once; parameters are a JSON Schema object.
pub fn tools(f: &Fields) -> Result<Vec<Tool>, ApiError> {
    let Some(list) = field(f, "tools") else { return Ok(Vec::new()) };
    let list = list.as_array().ok_or_else(|| ApiError::bad("tools must be a list of function tools"))?;
    if list.len() > MAX_TOOLS {
        return Err(ApiError::bad(format!("tools has {} functions; at most {MAX_TOOLS}", list.len())));
    }
    let mut tools: Vec<Tool> = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        if t.get("type").and_then(Value::as_str) != Some("function") {
            return Err(ApiError::bad(format!("tools[{i}].type must be \"function\"")));
        }
        let function = t
            .get("function")
            .and_then(Value::as_object)
            .ok_or_else(|| ApiError::bad(format!("tools[{i}].function must be an object")))?;
        let name = function.get("name").and_then(Value::as_str).unwrap_or("");
        let valid =
            (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(ApiError::bad(format!(
                "tools[{i}].function.name {name:?}: a name is 1 to 64 letters, digits, _ or -"
            )));
        }
        if tools.iter().any(|t| t.name == name) {
            return Err(ApiError::bad(format!("tools[{i}].function.name {name:?} is given twice")));
        }
        let parameters = match function.get("parameters") {
            None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
            Some(p @ Value::Object(_)) => p.clone(),
            Some(p) => {
                return Err(ApiError::bad(format!(
                    "tools[{i}].function.parameters must be a JSON Schema object, not {p}"
                )))
            }
        };
        check_schema_size(&parameters).map_err(|e| ApiError::bad(format!("tools[{i}].function.parameters: {e}")))?;
        let description = function.get("description").and_then(Value::as_str).map(String::from);
        tools.push(Tool { name: name.to_string(), description, parameters });
    }
    Ok(tools)
}

/// `tool_choice`: "auto" (the default with tools), "none" (the default without), "required",
/// or `{"type": "function", "function": {"name"}}` naming one of `tools`.
pub fn tool_choice(f: &Fields, tools: &[Tool]) -> Result<ToolChoice, ApiError> {
    let choice = match field(f, "tool_choice") {
        None if tools.is_empty() => ToolChoice::None,
        None => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => {
                return Err(ApiError::bad(format!(
                    "tool_choice {other:?} is not one of auto, none, required, or a named function"
                )))
            }
        },
        Some(v) => match v.pointer("/function/name").and_then(Value::as_str) {
            Some(name) => ToolChoice::Named(name.to_string()),
            None => return Err(ApiError::bad(format!("tool_choice {v} names no function"))),
        },
    };
    match &choice {
        ToolChoice::Required | ToolChoice::Named(_) if tools.is_empty() => {
            Err(ApiError::bad("tool_choice asks for a call, but no tools are given"))
        }
        ToolChoice::Named(name) if !tools.iter().any(|t| &t.name == name) => {
            Err(ApiError::bad(format!("tool_choice names {name:?}, which is not one of the tools")))
        }
        _ => Ok(choice),
    }
}

/// `parallel_tool_calls` (default true): whether one answer may make several calls.
pub fn parallel_tool_calls(f: &Fields) -> Result<bool, ApiError> {
    Ok(boolean(f, "parallel_tool_calls")?.unwrap_or(true))
}

/// The request's grammar: `response_format` (`text`, `json_object` (with llama-server's optional
/// `schema`), or `json_schema` with its `schema`), or llama-server's `json_schema` (a schema) and `grammar` (GBNF); one at most.
fn grammar(f: &Fields) -> Result<Option<Grammar>, ApiError> {
    let mut found = Vec::new();
    if let Some(format) = field(f, "response_format") {
        let kind = format.get("type").and_then(Value::as_str);
        match kind {
            Some("text") => {}
            // llama-server's extension: json_object with a `schema` is that schema.
            Some("json_object") => match format.get("schema").filter(|s| !s.is_null()) {
                Some(schema) => found.push(Grammar::JsonSchema(schema.clone())),
                None => found.push(Grammar::JsonObject),
            },
            Some("json_schema") => {
                let schema =
                    format.pointer("/json_schema/schema").or_else(|| format.get("schema")).ok_or_else(|| {
                        ApiError::bad("response_format json_schema needs {\"json_schema\": {\"name\", \"schema\"}}")
                    })?;
                found.push(Grammar::JsonSchema(schema.clone()));
            }
            _ => {
                return Err(ApiError::bad(format!(
                    "response_format {format}: type must be one of text, json_object, json_schema"
                )))
            }
        }
    }
    if let Some(schema) = field(f, "json_schema") {
        found.push(Grammar::JsonSchema(schema.clone()));
    }
    match field(f, "grammar") {
        None => {}
        Some(Value::String(g)) if g.trim().is_empty() => {}
        Some(Value::String(g)) => found.push(Grammar::Gbnf(g.clone())),
        Some(v) => return Err(ApiError::bad(format!("grammar must be a GBNF string, not {v}"))),
    }
    if found.len() > 1 {
        return Err(ApiError::bad("give one of response_format, json_schema and grammar, not several"));
    }
    Ok(found.pop())
}

fn content(v: Option<&Value>, i: usize, media: &mut Vec<Medium>) -> Result<String, ApiError> {
    match v {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (j, part) in parts.iter().enumerate() {
                let at = format!("messages[{i}].content[{j}]");
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => text.push_str(
                        part.get("text")
                            .and_then(Value::as_str)
                            .ok_or_else(|| ApiError::bad(format!("{at}.text must be a string")))?,
                    ),
                    Some(kind @ ("image_url" | "input_audio")) => {
                        media.push(medium(part, kind, &at)?);
                        text.push_str(crate::llama::media_marker());
                    }
                    Some(kind) => {
                        return Err(ApiError::bad(format!(
                            "{at}: {kind} parts are not supported (text, image_url, input_audio)"
                        )))
                    }
                    None => return Err(ApiError::bad(format!("{at} has no type"))),
                }
            }
            Ok(text)
        }
        _ => Err(ApiError::bad(format!("messages[{i}].content must be a string or a list of parts"))),
    }
}

/// An `image_url` part's image (`{"url": "data:image/png;base64,..."}`, or the URL alone) or an
/// `input_audio` part's clip (`{"data": BASE64, "format": "wav" | "mp3"}`), decoded and checked.
/// An `http(s)` URL is refused: the server has fetched those it may (`--allow-media-urls`).
fn medium(part: &Value, kind: &str, at: &str) -> Result<Medium, ApiError> {
    let data = if kind == "image_url" {
        let url = match &part["image_url"] {
            Value::String(url) => url.as_str(),
            v => v["url"].as_str().ok_or_else(|| ApiError::bad(format!("{at}.image_url.url must be a string")))?,
        };
        if crate::http_client::is_http_url(url) {
            return Err(ApiError::bad(format!(
                "{at}: the server fetches no URLs (unless started with --allow-media-urls): send the image itself, as a data:image/...;base64, URL"
            )));
        }
        let (_, data) = url
            .strip_prefix("data:")
            .and_then(|rest| rest.split_once(";base64,"))
            .ok_or_else(|| ApiError::bad(format!("{at}.image_url.url must be a data: URL with base64 data")))?;
        data
    } else {
        let audio = &part["input_audio"];
        match audio["format"].as_str() {
            Some("wav" | "mp3") => {}
            f => return Err(ApiError::bad(format!("{at}.input_audio.format {f:?} is not wav or mp3"))),
        }
        audio["data"].as_str().ok_or_else(|| ApiError::bad(format!("{at}.input_audio.data must be a base64 string")))?
    };
    base64_medium(data, at)
}

/// An image or audio clip sent as base64 (`at` says where, in errors), decoded and checked.
pub fn base64_medium(data: &str, at: &str) -> Result<Medium, ApiError> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| ApiError::bad(format!("{at}: the data is not valid base64 ({e})")))?;
    Medium::new(at.to_string(), bytes).map_err(|e| ApiError::bad(format!("{e:#}")))
}

/// `reasoning_budget`: thinking tokens the answer may spend (-1: no limit).
pub fn reasoning_budget(f: &Fields) -> Result<Option<Option<usize>>, ApiError> {
    Ok(whole(f, "reasoning_budget", -1)?.map(|n| usize::try_from(n).ok()))
}

/// The template's `enable_thinking`: `chat_template_kwargs.enable_thinking` (Qwen3, Gemma 4;
/// the only key passed to templates), else `reasoning_effort` (`none` turns thinking off, any
/// other effort on).
pub fn enable_thinking(f: &Fields) -> Result<Option<bool>, ApiError> {
    let effort = match field(f, "reasoning_effort") {
        None => None,
        Some(Value::String(e)) if e == "none" => Some(false),
        Some(Value::String(e)) if ["minimal", "low", "medium", "high"].contains(&e.as_str()) => Some(true),
        Some(v) => {
            return Err(ApiError::bad(format!("reasoning_effort {v} is not one of none, minimal, low, medium, high")))
        }
    };
    match field(f, "chat_template_kwargs") {
        None => Ok(effort),
        Some(Value::Object(kw)) => {
            if let Some(k) = kw.keys().find(|k| *k != "enable_thinking") {
                return Err(ApiError::bad(format!("chat_template_kwargs.{k} is not supported (only enable_thinking)")));
            }
            Ok(boolean(kw, "enable_thinking")?.or(effort))
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

/// `logit_bias`: OpenAI's object of token ids to biases, or llama-server's forms too: a list of
/// `[token, bias]` pairs, and strings in place of token ids (the bias applies to each of the
/// string's tokens); a bias of `false` bans the token.
fn logit_bias(bias: &Value, n_vocab: usize, tokenize: &dyn Fn(&str) -> Vec<i32>) -> Result<Vec<(u32, f32)>, ApiError> {
    let pairs: Vec<(Key, &Value)> = match bias {
        Value::Object(map) => map.iter().map(|(k, v)| (Key::Text(k), v)).collect(),
        Value::Array(items) => items
            .iter()
            .map(|item| match item.as_array().map(Vec::as_slice) {
                Some([Value::String(s), value]) => Ok((Key::Text(s), value)),
                Some([Value::Number(n), value]) => Ok((Key::Id(n), value)),
                Some([other, _]) => {
                    Err(ApiError::bad(format!("logit_bias: a token must be an id or a string, not {other}")))
                }
                _ => Err(ApiError::bad(format!("logit_bias: each entry must be [token, bias], not {item}"))),
            })
            .collect::<Result<_, _>>()?,
        v => return Err(ApiError::bad(format!("logit_bias must be an object or a list of [token, bias], not {v}"))),
    };
    let mut out = Vec::new();
    for (key, value) in pairs {
        let name = match &key {
            Key::Id(n) => n.to_string(),
            Key::Text(s) if s.parse::<i64>().is_ok() => s.to_string(),
            Key::Text(s) => format!("{s:?}"),
        };
        let bias = match value {
            Value::Bool(false) => f32::NEG_INFINITY,
            v => {
                let b = v.as_f64().filter(|b| (-100.0..=100.0).contains(b));
                b.ok_or_else(|| {
                    ApiError::bad(format!("logit_bias[{name}] is {v}; it must be a number in [-100, 100] or false"))
                })? as f32
            }
        };
        let ids: Vec<i64> = match key {
            Key::Id(n) => vec![n.as_i64().unwrap_or(-1)],
            Key::Text(s) => match s.parse::<i64>() {
                Ok(id) => vec![id],
                Err(_) => tokenize(s).into_iter().map(i64::from).collect(),
            },
        };
        for id in ids {
            let id = u32::try_from(id).ok().filter(|&t| (t as usize) < n_vocab);
            let id =
                id.ok_or_else(|| ApiError::bad(format!("logit_bias: {name} is not a token id below {n_vocab}")))?;
            out.push((id, bias));
        }
        if out.len() > MAX_LOGIT_BIAS {
            return Err(ApiError::bad(format!("logit_bias has more than {MAX_LOGIT_BIAS} tokens")));
        }
    }
    Ok(out)
}

/// A `logit_bias` key: a token id, or text (an id written as a string, or text to tokenize).
enum Key<'a> {
    Id(&'a serde_json::Number),
    Text(&'a str),
}

/// The sampler's settings as llama-server reports them (`/props`, `generation_settings`).
pub fn sampling_json(p: &SamplingParams) -> Value {
    json!({
        "temperature": p.temperature,
        "top_k": p.top_k,
        "top_p": p.top_p,
        "min_p": p.min_p,
        "typical_p": p.typical_p,
        "repeat_last_n": p.repeat_last_n,
        "repeat_penalty": p.repeat_penalty,
        "presence_penalty": p.presence_penalty,
        "frequency_penalty": p.frequency_penalty,
    })
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

/// llama-server's `timings`, of a finished job ([`Summary::progress`]) or a running one.
pub fn timings(p: &Progress) -> Value {
    json!({
        "slot": p.slot,
        "cache_n": p.cached_tokens,
        "prompt_n": p.prompt_evaluated(),
        "prompt_ms": p.prompt_ms,
        "prompt_per_token_ms": p.prompt_ms / p.prompt_evaluated().max(1) as f64,
        "prompt_per_second": p.prompt_tokens_per_second(),
        "predicted_n": p.completion_tokens,
        "predicted_ms": p.generation_ms,
        "predicted_per_token_ms": p.generation_ms_per_token(),
        "predicted_per_second": p.generation_tokens_per_second(),
    })
}

/// llama-server's extras in a stream, as a request asks: `return_progress` (an event as the
/// prompt's evaluation begins and after each of its batches, with `prompt_progress`) and
/// `timings_per_token` (the timings of the moment with each piece of text). The job reports its
/// progress ([`Detail::progress`]); this keeps the latest.
#[derive(Clone, Copy, Debug, Default)]
pub struct Telemetry {
    pub progress: bool,
    pub timings: bool,
    latest: Option<Progress>,
}

impl Telemetry {
    fn read(f: &Fields) -> Result<Telemetry, ApiError> {
        Ok(Telemetry {
            progress: boolean(f, "return_progress")?.unwrap_or(false),
            timings: boolean(f, "timings_per_token")?.unwrap_or(false),
            latest: None,
        })
    }

    /// Whether the job must report its progress (only a stream has somewhere to send it).
    fn wanted(&self, stream: bool) -> bool {
        stream && (self.progress || self.timings)
    }

    /// Takes the job's progress: the `prompt_progress` of an event to send, while the prompt is
    /// read and when the request asked for them.
    pub fn update(&mut self, p: Progress) -> Option<Value> {
        self.latest = Some(p);
        (self.progress && p.completion_tokens == 0).then(|| {
            json!({"total": p.prompt_tokens, "cache": p.cached_tokens, "processed": p.prompt_done,
                   "time_ms": p.prompt_ms as u64})
        })
    }

    /// Adds the latest `timings` to an event, when the request asked for them.
    pub fn stamp(&self, v: &mut Value) {
        if let Some(p) = self.latest.as_ref().filter(|_| self.timings) {
            v["timings"] = timings(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `samplers`, as llama-server reads it: names (aliases, any case) or letters; the stages not
    /// named are switched off; strata's own order only; samplers strata lacks are idle unless
    /// their fields switch them on, and infill is refused.
    #[test]
    fn samplers_switch_the_chains_stages() {
        let base = SamplingParams { repeat_penalty: 1.1, temperature: 0.5, ..SamplingParams::default() };
        let with = |v: Value| {
            let mut p = base.clone();
            apply_samplers(&mut p, &v).map(|()| p)
        };
        let all = with(json!(["penalties", "Top-K", "typ", "nucleus", "minp", "temp"])).unwrap();
        assert_eq!(all, base);
        assert_eq!(with(json!("ekypmt")).unwrap(), base, "letters");
        let some = with(json!(["dry", "top_k", "xtc", "temperature"])).unwrap();
        assert_eq!((some.top_k, some.temperature), (base.top_k, 0.5));
        assert_eq!((some.top_p, some.min_p, some.typical_p, some.repeat_penalty), (1.0, 0.0, 1.0, 1.0));
        assert_eq!(with(json!(["top_k"])).unwrap().temperature, 1.0, "no temperature stage: the model's distribution");
        for (v, needle) in [
            (json!(["temperature", "top_k"]), "in that order"),
            (json!(["top_k", "beam"]), "\"beam\" is not a sampler"),
            (json!(["infill"]), "infill"),
            (json!("kq"), "\"q\" is not a sampler"),
            (json!([3]), "not a name"),
            (json!(true), "list of names"),
        ] {
            let e = with(v.clone()).unwrap_err();
            assert!(e.message.contains(needle), "{v}: {}", e.message);
        }
    }
}
