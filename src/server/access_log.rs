//! One line on stderr per request: method, path, status, milliseconds and, for generations, the
//! prompt and generated tokens; as text or as JSON (`--log-format`).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::json;

/// How access-log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// A generation's token counts, filled in by the handler when it knows them.
#[derive(Clone, Default)]
pub struct Tokens(Arc<Mutex<Option<(usize, usize)>>>);

impl Tokens {
    pub fn set(&self, prompt: usize, generated: usize) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((prompt, generated));
    }

    fn get(&self) -> Option<(usize, usize)> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One request's line, written when the entry is dropped: after the last byte of its answer,
/// or when the client hangs up.
pub struct Entry {
    pub format: LogFormat,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub started: Instant,
    pub tokens: Tokens,
}

impl Entry {
    /// The line.
    pub fn line(&self) -> String {
        let ms = self.started.elapsed().as_secs_f64() * 1e3;
        let tokens = self.tokens.get();
        match self.format {
            LogFormat::Text => {
                let counts = tokens.map_or(String::new(), |(p, g)| format!(" {p}+{g} tokens"));
                format!("{} {} {} {ms:.0} ms{counts}", self.method, self.path, self.status)
            }
            LogFormat::Json => {
                let mut v = json!({"method": self.method, "path": self.path, "status": self.status, "ms": (ms * 10.0).round() / 10.0});
                if let Some((p, g)) = tokens {
                    v["prompt_tokens"] = p.into();
                    v["completion_tokens"] = g.into();
                }
                v.to_string()
            }
        }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "{}", self.line());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let tokens = Tokens::default();
        let entry = |format| Entry {
            format,
            method: "POST".into(),
            path: "/v1/chat/completions".into(),
            status: 200,
            started: Instant::now(),
            tokens: tokens.clone(),
        };
        let text = entry(LogFormat::Text);
        assert!(text.line().starts_with("POST /v1/chat/completions 200 "), "{}", text.line());
        assert!(text.line().ends_with(" ms"));
        tokens.set(25, 8);
        assert!(text.line().ends_with(" ms 25+8 tokens"), "{}", text.line());
        let v: serde_json::Value = serde_json::from_str(&entry(LogFormat::Json).line()).unwrap();
        assert_eq!(
            (&v["method"], &v["status"], &v["prompt_tokens"], &v["completion_tokens"]),
            (&json!("POST"), &json!(200), &json!(25), &json!(8))
        );
        std::mem::forget(text);
    }
}
