//! Reading a model's output back into its text and its calls.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;

use regex::{Captures, Regex};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{gemma, ToolFormat};
use crate::chat::ToolCall;

/// Thinking segments: a call written inside one is a thought, not a call.
const THINKING: &[(&str, &str)] = &[("<think>", "</think>"), ("<|channel>", "<channel|>"), ("[THINK]", "[/THINK]")];

/// Where a call may start: Hermes' `<tool_call>`, and what llama.cpp also accepts from Hermes
/// models (`<function=name>`, other wrapping tags, code fences, a bare call object).
static HERMES: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?P<fence>```(?:json|xml)?\n\s*)?",
        r"(?:<(?P<tag>tool_call|function_call|tools?|response|json|xml|JSON)>\s*)?",
        r#"\{\s*"name"\s*:"#,
        r#"|<function=(?P<eq>[^>\n]+)>|<function\s+name="(?P<named>[^"]+)"\s*>"#,
    ))
    .expect("valid regex")
});

/// Llama 3.x: a built-in tool's `<|python_tag|>name.call(`, or a call object.
static LLAMA3: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"<\|python_tag\|>\s*(?P<builtin>[A-Za-z_]\w*)\.call\(",
        r#"|(?:<\|python_tag\|>\s*)?\{\s*(?:"type"\s*:\s*"function"\s*,\s*)?"name"\s*:"#,
    ))
    .expect("valid regex")
});

static MISTRAL: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\[TOOL_CALLS\]").expect("valid regex"));

static GEMMA4: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"<\|tool_call>").expect("valid regex"));

/// Reads the call(s) at a start the format's regex matched: where they end, and the calls.
type Read = fn(&str, &Captures) -> Option<(usize, Vec<ToolCall>)>;

/// The model's whole output split into text and calls; never fails: text that does not parse as
/// a call (an unknown shape, JSON cut short, a call inside a thinking segment) stays content.
/// When there are calls, the content is the text around them, trimmed, pieces joined by a
/// newline; without, the output unchanged. Thinking segments stay in the content.
///
/// Call ids: the model's where the format writes one (Mistral's `[CALL_ID]` and `"id"`, the
/// generic JSON's `"id"`), else 9 random letters and digits, fresh on each call of `parse` (as
/// llama.cpp's; Mistral's templates reject ids of another shape).
pub fn parse(format: ToolFormat, output: &str) -> (String, Vec<ToolCall>) {
    let (content, mut calls) = match format {
        ToolFormat::Generic => generic(output),
        ToolFormat::Hermes => find(output, &HERMES, hermes),
        ToolFormat::Llama3 => find(output, &LLAMA3, llama3),
        ToolFormat::Mistral => find(output, &MISTRAL, mistral),
        ToolFormat::Gemma4 => find(output, &GEMMA4, gemma4),
    };
    for call in calls.iter_mut().filter(|c| c.id.is_empty()) {
        call.id = new_id();
    }
    (content, calls)
}

/// The calls `read` finds where `start` matches outside thinking segments, and the text around
/// them. One scan, left to right: what a call holds (a marker in its arguments) is not looked at
/// again.
fn find(output: &str, start: &Regex, read: Read) -> (String, Vec<ToolCall>) {
    let mut calls = Vec::new();
    let mut text = Vec::new();
    let mut copied = 0;
    let mut at = prompt_thinking(output, start);
    while let Some(m) = start.captures_at(output, at) {
        let whole = m.get(0).expect("the whole match");
        if let Some(thought) = thinking_at(output, at).filter(|t| t.start < whole.start()) {
            at = thought.end;
            continue;
        }
        match read(output, &m) {
            Some((end, found)) => {
                text.push(&output[copied..whole.start()]);
                calls.extend(found);
                (copied, at) = (end, end);
            }
            None => at = whole.end(),
        }
    }
    if calls.is_empty() {
        return (output.to_string(), calls);
    }
    text.push(&output[copied..]);
    let content: Vec<&str> = text.into_iter().map(str::trim).filter(|t| !t.is_empty()).collect();
    (content.join("\n"), calls)
}

/// The first thinking segment from `from` on: to its closing marker, or to the end.
fn thinking_at(output: &str, from: usize) -> Option<Range<usize>> {
    let (start, open, close) = THINKING
        .iter()
        .filter_map(|(open, close)| output[from..].find(open).map(|i| (from + i, open, close)))
        .min_by_key(|(i, ..)| *i)?;
    let body = start + open.len();
    Some(start..output[body..].find(close).map_or(output.len(), |i| body + i + close.len()))
}

/// Where a thinking segment the prompt opened (QwQ's `<think>\n`) ends: after a closing marker
/// that comes before any opening marker and any call; 0 when there is none.
fn prompt_thinking(output: &str, start: &Regex) -> usize {
    let first_call = start.find(output).map_or(output.len(), |m| m.start());
    let first = THINKING.iter().filter_map(|(open, _)| output.find(open)).fold(first_call, usize::min);
    THINKING.iter().filter_map(|(_, close)| output[..first].find(close).map(|i| i + close.len())).min().unwrap_or(0)
}

/// `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`, or a variant llama.cpp reads
/// too: another wrapping tag, a code fence, a bare object, `<function=name>{...}</function>`.
fn hermes(output: &str, m: &Captures) -> Option<(usize, Vec<ToolCall>)> {
    let whole = m.get(0)?;
    let mut c = Cursor::new(output, whole.end());
    let call = match m.name("eq").or(m.name("named")) {
        Some(name) => {
            let arguments = arguments(&c.json()?)?;
            c.close("</function>")?;
            ToolCall { id: String::new(), name: name.as_str().trim().to_string(), arguments }
        }
        None => {
            c.at = whole.start() + whole.as_str().find('{')?;
            let call = json_call(&c.json()?, &["arguments", "parameters"])?;
            if let Some(tag) = m.name("tag") {
                c.close(&format!("</{}>", tag.as_str()))?;
            }
            call
        }
    };
    if m.name("fence").is_some() {
        c.close("```")?;
    }
    Some((c.at, vec![call]))
}

/// `{"name": ..., "parameters": {...}}`, or a built-in tool's `<|python_tag|>name.call(k="v")`.
fn llama3(output: &str, m: &Captures) -> Option<(usize, Vec<ToolCall>)> {
    let whole = m.get(0)?;
    let Some(name) = m.name("builtin") else {
        let mut c = Cursor::new(output, whole.start() + whole.as_str().find('{')?);
        let call = json_call(&c.json()?, &["parameters", "arguments"])?;
        return Some((c.at, vec![call]));
    };
    let mut c = Cursor::new(output, whole.end());
    let mut args = Map::new();
    if !c.eat(")") {
        loop {
            c.skip_space();
            let key = c.word(|ch| !(ch.is_alphanumeric() || ch == '_'))?.to_string();
            if !c.eat("=") {
                return None;
            }
            c.skip_space();
            let value = if c.rest().starts_with(['"', '{', '[']) {
                c.json()?
            } else {
                // A number, true/false/null: JSON's reader wants a delimiter after it, not `)`.
                serde_json::from_str(c.word(|ch| ch == ',' || ch == ')')?).ok()?
            };
            args.insert(key, value);
            if c.eat(")") {
                break;
            }
            if !c.eat(",") {
                return None;
            }
        }
    }
    let call =
        ToolCall { id: String::new(), name: name.as_str().to_string(), arguments: Value::from(args).to_string() };
    Some((c.at, vec![call]))
}

/// After `[TOOL_CALLS]`: a JSON array of `{"name", "arguments", "id"}` (Nemo), or
/// `name[CALL_ID]id[ARGS]{...}` / `name[ARGS]{...}`.
fn mistral(output: &str, m: &Captures) -> Option<(usize, Vec<ToolCall>)> {
    let mut c = Cursor::new(output, m.get(0)?.end());
    c.skip_space();
    if c.rest().starts_with('[') {
        let Value::Array(items) = c.json()? else { return None };
        let calls = items.iter().map(|i| json_call(i, &["arguments"])).collect::<Option<Vec<_>>>()?;
        return Some((c.at, calls)).filter(|(_, calls)| !calls.is_empty());
    }
    let head = c.until("[ARGS]")?;
    let (name, id) = head.split_once("[CALL_ID]").unwrap_or((head, ""));
    let (name, id) = (name.trim(), id.trim());
    if !is_name(name) || id.contains(char::is_whitespace) {
        return None;
    }
    let arguments = arguments(&c.json()?)?;
    Some((c.at, vec![ToolCall { id: id.to_string(), name: name.to_string(), arguments }]))
}

/// After `<|tool_call>`: `call:name{key:value,...}<tool_call|>`.
fn gemma4(output: &str, m: &Captures) -> Option<(usize, Vec<ToolCall>)> {
    let mut c = Cursor::new(output, m.get(0)?.end());
    if !c.eat("call:") {
        return None;
    }
    let name = c.word(|ch| ch == '{').filter(|n| is_name(n))?.to_string();
    let arguments = gemma::read_value(&mut c).filter(Value::is_object)?.to_string();
    c.close("<tool_call|>")?;
    Some((c.at, vec![ToolCall { id: String::new(), name, arguments }]))
}

/// The generic format's JSON answer: `{"tool_call": {...}}`, `{"tool_calls": [...]}` (with the
/// text in `"content"`), or `{"response": "..."}`; anything else is text.
fn generic(output: &str) -> (String, Vec<ToolCall>) {
    let unchanged = || (output.to_string(), Vec::new());
    let Ok(Value::Object(answer)) = serde_json::from_str::<Value>(output.trim()) else { return unchanged() };
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        v => serde_json::to_string_pretty(v).expect("a JSON value"),
    };
    let calls = match (answer.get("tool_call"), answer.get("tool_calls")) {
        (Some(call), _) => json_call(call, &["arguments"]).map(|c| vec![c]),
        (None, Some(Value::Array(calls))) => calls.iter().map(|c| json_call(c, &["arguments"])).collect(),
        _ => None,
    };
    match (calls, answer.get("response")) {
        (Some(calls), _) if !calls.is_empty() => (answer.get("content").map(text).unwrap_or_default(), calls),
        (_, Some(response)) => (text(response), Vec::new()),
        _ => unchanged(),
    }
}

/// A call written as a JSON object: a `"name"`, the arguments under the first of `args_keys`
/// present, and the model's `"id"` if any.
fn json_call(v: &Value, args_keys: &[&str]) -> Option<ToolCall> {
    let name = v.get("name")?.as_str().filter(|n| !n.trim().is_empty())?.trim().to_string();
    let arguments = arguments(args_keys.iter().find_map(|k| v.get(*k))?)?;
    let id = v.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
    Some(ToolCall { id, name, arguments })
}

/// Arguments as JSON text: an object, or a string holding one (nothing, or null, is `{}`).
fn arguments(v: &Value) -> Option<String> {
    match v {
        Value::Object(_) => Some(v.to_string()),
        Value::Null => Some("{}".to_string()),
        Value::String(s) if s.trim().is_empty() => Some("{}".to_string()),
        Value::String(s) => serde_json::from_str::<Value>(s).ok().filter(Value::is_object).map(|o| o.to_string()),
        _ => None,
    }
}

/// Whether `s` can be a function's name where the format writes it bare.
fn is_name(s: &str) -> bool {
    !s.is_empty() && !s.contains(|c: char| c.is_whitespace() || "[]{}<>\"".contains(c))
}

/// A fresh call id: 9 random letters and digits.
fn new_id() -> String {
    const ALNUM: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    static COUNT: AtomicU64 = AtomicU64::new(0);
    // Each RandomState has its own keys (random per thread, then counted up).
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNT.fetch_add(1, Ordering::Relaxed));
    let mut n = hasher.finish();
    (0..9)
        .map(|_| {
            let c = ALNUM[(n % 62) as usize] as char;
            n /= 62;
            c
        })
        .collect()
}

/// A position in a model's output, read forward.
pub(super) struct Cursor<'a> {
    text: &'a str,
    pub(super) at: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(text: &'a str, at: usize) -> Self {
        Cursor { text, at }
    }

    pub(super) fn rest(&self) -> &'a str {
        &self.text[self.at..]
    }

    pub(super) fn skip_space(&mut self) {
        self.at = self.text.len() - self.rest().trim_start().len();
    }

    /// `s`, after any whitespace: whether it was there (and is now read).
    pub(super) fn eat(&mut self, s: &str) -> bool {
        self.skip_space();
        let found = self.rest().starts_with(s);
        if found {
            self.at += s.len();
        }
        found
    }

    /// A JSON value, after any whitespace.
    pub(super) fn json<T: DeserializeOwned>(&mut self) -> Option<T> {
        self.skip_space();
        let mut values = serde_json::Deserializer::from_str(self.rest()).into_iter::<T>();
        let v = values.next()?.ok()?;
        self.at += values.byte_offset();
        Some(v)
    }

    /// The text up to the first character `end` accepts (or the end), trimmed; None if empty.
    pub(super) fn word(&mut self, end: impl Fn(char) -> bool) -> Option<&'a str> {
        let rest = self.rest();
        let len = rest.find(end).unwrap_or(rest.len());
        self.at += len;
        Some(rest[..len].trim()).filter(|w| !w.is_empty())
    }

    /// The text up to `marker`, which is read too.
    fn until(&mut self, marker: &str) -> Option<&'a str> {
        let rest = self.rest();
        let len = rest.find(marker)?;
        self.at += len + marker.len();
        Some(&rest[..len])
    }

    /// A call's closing `marker`, after any whitespace; the end of the output stands for it (a
    /// model stopped by the marker's token).
    fn close(&mut self, marker: &str) -> Option<()> {
        if self.eat(marker) || self.rest().is_empty() {
            Some(())
        } else {
            None
        }
    }
}
