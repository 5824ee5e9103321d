//! llama-server's own completion API, `POST /completion`: a prompt as text, token ids, a mix of
//! both, or a list of such prompts (one answer each), answered with llama.cpp's fields
//! (`content`, `tokens`, `stop`, `stop_type`, `timings`, `generation_settings`,
//! `completion_probabilities`, ...), whole or as server-sent events of one token each.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::Event as SseEvent;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Map, Value};
use strata_run::engine::{Detail, Event, Generated, Probs, Prompt as EnginePrompt, StopReason, Summary};
use tokio::sync::mpsc;

use super::access_log::Tokens;
use super::answer::{token_probs, EventStream};
use super::openai::{self, boolean, field, whole, ApiError, Fields};
use super::{request, respond, submit, AppState, Ready};
use crate::llama::Medium;

/// The media of a prompt object: base64 images or audio clips, one per media marker of its text.
const MULTIMODAL_KEY: &str = "multimodal_data";
/// The text of a prompt object.
const PROMPT_STRING_KEY: &str = "prompt_string";
/// The most `n_probs` a request may ask for.
const MAX_N_PROBS: i64 = 100;

pub async fn completion(
    State(s): State<Arc<AppState>>,
    Extension(counts): Extension<Tokens>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(answer(&s, &headers, body, counts).await)
}

/// What a request asks beside the sampling: how the answer is written.
#[derive(Clone)]
struct Asked {
    n_probs: Option<Probs>,
    return_tokens: bool,
    response_fields: Vec<String>,
    settings: Value,
    telemetry: openai::Telemetry,
}

async fn answer(s: &Arc<AppState>, headers: &HeaderMap, body: Body, counts: Tokens) -> Result<Response, ApiError> {
    let (r, f) = request(s, headers, body).await?;
    let prompts = prompts(r, &f)?;
    let mut opts = openai::options(&f, r)?;
    // llama-server's n_predict (max_tokens too); -1 or none: the server's -n.
    if let Some(n) = whole(&f, "n_predict", -1)? {
        opts.max_tokens = usize::try_from(n).ok().or(r.max_tokens);
    }
    let n_probs = match whole(&f, "n_probs", 0)? {
        Some(n) if n > MAX_N_PROBS => return Err(ApiError::bad(format!("n_probs is {n}; at most {MAX_N_PROBS}"))),
        Some(n) if n > 0 => {
            Some(Probs { n: n as usize, post_sampling: boolean(&f, "post_sampling_probs")?.unwrap_or(false) })
        }
        _ => None,
    };
    let response_fields = match field(&f, "response_fields") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(String::from).ok_or_else(|| ApiError::bad("response_fields must hold strings")))
            .collect::<Result<_, _>>()?,
        Some(v) => return Err(ApiError::bad(format!("response_fields must be a list of strings, not {v}"))),
    };
    let mut settings = openai::sampling_json(&opts.params);
    let more = json!({
        "n_predict": opts.max_tokens.map_or(-1, |n| n as i64),
        "max_tokens": opts.max_tokens.map_or(-1, |n| n as i64),
        "seed": opts.params.seed,
        "stop": opts.stop,
        "logit_bias": opts.params.logit_bias.iter().map(|&(token, bias)| {
            json!({"token": token, "bias": if bias.is_finite() { json!(bias) } else { Value::Null }})
        }).collect::<Vec<_>>(),
        "ignore_eos": opts.ignore_eos,
        "stream": opts.stream,
        "n_probs": n_probs.map_or(0, |p| p.n),
        "post_sampling_probs": n_probs.is_some_and(|p| p.post_sampling),
        "samplers": ["logit_bias", "penalties", "top_k", "typ_p", "top_p", "min_p", "temperature"],
        // llama.cpp's adaptive-p sampler, which strata does not have: disabled, as llama.cpp's default.
        "adaptive_target": -1.0,
        "adaptive_decay": 0.9,
    });
    if let (Some(all), Value::Object(more)) = (settings.as_object_mut(), more) {
        all.extend(more);
    }
    let asked = Asked {
        n_probs,
        return_tokens: boolean(&f, "return_tokens")?.unwrap_or(false),
        response_fields,
        settings,
        telemetry: opts.telemetry,
    };
    opts.detail = Detail { tokens: true, probs: n_probs, ..opts.detail };
    if let Some(g) = opts.grammar.take() {
        opts.constraint = Some(r.constraint(&g, Vec::new(), "the request's grammar")?);
    }
    let stream = opts.stream;
    if prompts.len() == 1 {
        let prompt = prompts.into_iter().next().unwrap_or_default();
        let prompt_text = r.model.detokenize(&prompt.tokens);
        let events = submit(r, prompt, opts)?;
        let shape = Answer { model: r.alias.clone(), prompt: prompt_text, asked, index: 0 };
        return if stream {
            Ok(shape.stream(r.model.clone(), events).into_response())
        } else {
            let (body, summary) = shape.collect(r, events).await?;
            counts.set(summary.prompt_tokens, summary.completion_tokens);
            Ok(Json(body).into_response())
        };
    }
    if stream {
        return Err(ApiError::bad("stream with several prompts is not supported: send them one per request"));
    }
    // Several prompts: a job each, all queued before any is awaited, so they share the batch.
    let mut jobs = Vec::new();
    if opts.constraint.is_some() {
        return Err(ApiError::bad("a grammar with several prompts is not supported: send them one per request"));
    }
    for (index, prompt) in prompts.into_iter().enumerate() {
        let prompt_text = r.model.detokenize(&prompt.tokens);
        let events = submit(r, prompt, opts.for_choice(0))?;
        jobs.push((Answer { model: r.alias.clone(), prompt: prompt_text, asked: asked.clone(), index }, events));
    }
    let mut bodies = Vec::new();
    let (mut prompt_tokens, mut completion_tokens) = (0, 0);
    for (shape, events) in jobs {
        let (body, summary) = shape.collect(r, events).await?;
        prompt_tokens += summary.prompt_tokens;
        completion_tokens += summary.completion_tokens;
        bodies.push(body);
    }
    counts.set(prompt_tokens, completion_tokens);
    Ok(Json(Value::Array(bodies)).into_response())
}

/// The request's prompts as token ids: llama-server's rules. A string, an object with
/// `prompt_string`, or a list holding any number (one sequence of ids and strings) is one
/// prompt; any other list is a prompt per element.
fn prompts(r: &Ready, f: &Fields) -> Result<Vec<EnginePrompt>, ApiError> {
    let prompt =
        field(f, "prompt").or_else(|| field(f, "content")).ok_or_else(|| ApiError::bad("prompt is missing"))?;
    let list = match prompt {
        Value::Array(items) if !items.iter().any(Value::is_number) => {
            if items.is_empty() {
                return Err(ApiError::bad("prompt is an empty list"));
            }
            items.iter().map(|p| one_prompt(r, p)).collect::<Result<Vec<_>, _>>()?
        }
        p => vec![one_prompt(r, p)?],
    };
    Ok(list)
}

/// One prompt: a string (with the model's BOS), an object with `prompt_string` (and its media
/// in `multimodal_data`), or a list of token ids and strings (strings tokenized without BOS, as
/// llama-server does after the first).
fn one_prompt(r: &Ready, p: &Value) -> Result<EnginePrompt, ApiError> {
    let n_vocab = r.model.n_vocab();
    match p {
        Value::String(s) => Ok(r.model.tokenize(s, true, true).into()),
        Value::Object(o) => {
            let text = o
                .get(PROMPT_STRING_KEY)
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::bad(format!("a prompt object needs {PROMPT_STRING_KEY} as a string")))?;
            let media = match o.get(MULTIMODAL_KEY) {
                None | Some(Value::Null) => return Ok(r.model.tokenize(text, true, true).into()),
                Some(Value::Array(items)) => items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let at = format!("prompt.{MULTIMODAL_KEY}[{i}]");
                        let data = v.as_str().ok_or_else(|| ApiError::bad(format!("{at} must be a base64 string")))?;
                        openai::base64_medium(data, &at)
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                Some(v) => return Err(ApiError::bad(format!("prompt.{MULTIMODAL_KEY} must be a list, not {v}"))),
            };
            if !r.model.has_projector() {
                return Err(ApiError::bad(format!(
                    "prompt.{MULTIMODAL_KEY}: this model was loaded without a projector file (--mmproj): it takes no images or audio"
                )));
            }
            let media: Vec<&Medium> = media.iter().collect();
            r.model.media_prompt(text, &media, true, true).map_err(|e| ApiError::bad(format!("{e:#}")))
        }
        Value::Array(items) => {
            let mut tokens = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) => tokens.extend(r.model.tokenize(s, i == 0, true)),
                    Value::Number(n) => {
                        let id = n.as_u64().filter(|&id| (id as usize) < n_vocab);
                        let id = id.ok_or_else(|| {
                            ApiError::bad(format!("prompt[{i}] is {n}, not a token id below {n_vocab}"))
                        })?;
                        tokens.push(id as i32);
                    }
                    v => return Err(ApiError::bad(format!("prompt[{i}] must be a token id or a string, not {v}"))),
                }
            }
            Ok(tokens.into())
        }
        v => Err(ApiError::bad(format!("prompt must be a string, token ids or a list of prompts, not {v}"))),
    }
}

/// How one prompt's answer is written.
struct Answer {
    model: String,
    prompt: String,
    asked: Asked,
    index: usize,
}

/// llama.cpp's `stop_type`.
fn stop_type(reason: StopReason) -> &'static str {
    match reason {
        StopReason::Eog | StopReason::Constraint => "eos",
        StopReason::Limit | StopReason::Context => "limit",
        StopReason::StopString => "word",
        StopReason::Interrupted => "none",
    }
}

impl Answer {
    /// The final object: the whole answer (`stream` false) or the last event's.
    fn last(&self, content: &str, tokens: &[i32], probs: Vec<Value>, s: &Summary, stopping_word: &str) -> Value {
        let mut v = json!({
            "index": self.index,
            "content": content,
            "tokens": if self.asked.return_tokens { json!(tokens) } else { json!([]) },
            "id_slot": s.slot,
            "stop": true,
            "model": self.model,
            "tokens_predicted": s.completion_tokens,
            "tokens_evaluated": s.prompt_tokens,
            "generation_settings": self.asked.settings,
            "prompt": self.prompt,
            "has_new_line": content.contains('\n'),
            "truncated": false,
            "stop_type": stop_type(s.stop_reason),
            "stopping_word": stopping_word,
            "tokens_cached": s.prompt_tokens + s.completion_tokens,
            "timings": openai::timings(&s.progress()),
        });
        if self.asked.n_probs.is_some() {
            v["completion_probabilities"] = Value::Array(probs);
        }
        if !self.asked.response_fields.is_empty() {
            return pick(&v, &self.asked.response_fields);
        }
        v
    }

    async fn collect(
        &self,
        r: &Ready,
        mut events: mpsc::UnboundedReceiver<Event>,
    ) -> Result<(Value, Summary), ApiError> {
        let (mut content, mut tokens, mut probs) = (String::new(), Vec::new(), Vec::new());
        while let Some(event) = events.recv().await {
            match event {
                Event::Token(g) => {
                    tokens.push(g.id);
                    probs.extend(token_probs(&r.model, &g, true));
                }
                Event::Text(t) => content += &t,
                Event::Progress(_) => {}
                Event::Done(summary) => return Ok((self.last(&content, &tokens, probs, &summary, ""), summary)),
                Event::Failed(message) => {
                    return Err(ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, message))
                }
            }
        }
        Err(ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, "the engine dropped the request"))
    }

    /// Server-sent events: one per settled piece of text with the tokens it came from, then
    /// the final object (content empty: it was sent).
    fn stream(self, model: Arc<crate::llama::Model>, events: mpsc::UnboundedReceiver<Event>) -> EventStream {
        let data = |v: Value| SseEvent::default().data(v.to_string());
        let mut pending: Vec<Generated> = Vec::new();
        let mut predicted = 0;
        let mut telemetry = self.asked.telemetry;
        super::answer::event_stream(events, Vec::new(), move |event| match event {
            Some(Event::Progress(p)) => match telemetry.update(p) {
                None => Vec::new(),
                Some(progress) => {
                    let mut v = json!({
                        "index": self.index,
                        "content": "",
                        "tokens": [],
                        "stop": false,
                        "id_slot": p.slot,
                        "tokens_predicted": 0,
                        "tokens_evaluated": p.prompt_tokens,
                        "prompt_progress": progress,
                    });
                    telemetry.stamp(&mut v);
                    vec![data(v)]
                }
            },
            Some(Event::Token(g)) => {
                pending.push(g);
                Vec::new()
            }
            Some(Event::Text(t)) => {
                predicted += pending.len();
                let mut v = json!({
                    "index": self.index,
                    "content": t,
                    "tokens": pending.iter().map(|g| g.id).collect::<Vec<_>>(),
                    "stop": false,
                    "id_slot": -1,
                    "tokens_predicted": predicted,
                });
                if self.asked.n_probs.is_some() {
                    v["completion_probabilities"] =
                        Value::Array(pending.iter().filter_map(|g| token_probs(&model, g, true)).collect());
                }
                pending.clear();
                telemetry.stamp(&mut v);
                vec![data(v)]
            }
            Some(Event::Done(summary)) => {
                let probs = pending.iter().filter_map(|g| token_probs(&model, g, true)).collect();
                let tokens: Vec<i32> = pending.iter().map(|g| g.id).collect();
                vec![data(self.last("", &tokens, probs, &summary, ""))]
            }
            Some(Event::Failed(message)) => {
                vec![data(ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, message).body())]
            }
            None => Vec::new(),
        })
    }
}

/// `response_fields`: only these fields, each a path (`generation_settings/n_predict`) kept
/// under its path as the key, as llama-server writes them.
fn pick(v: &Value, fields: &[String]) -> Value {
    let mut out = Map::new();
    for path in fields {
        if let Some(found) = v.pointer(&format!("/{path}")) {
            out.insert(path.clone(), found.clone());
        }
    }
    Value::Object(out)
}
