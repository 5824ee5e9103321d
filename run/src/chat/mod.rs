//! Chat: messages, templates (Jinja, rendered in Rust), the thinking segment of answers, and
//! tool calls (how each model family writes them, read back into calls).

pub mod builtin_templates;
pub mod reasoning;
pub mod template;
pub mod tools;

use serde::ser::{Serialize, SerializeMap, Serializer};

/// Markers the chat layer reads in generated text: thinking segments and tool calls. A model
/// whose vocabulary has them as control tokens still shows them in its text (llama-server's
/// preserved tokens), so the reasoning split, the call parsers and the call grammars see them.
pub const PRESERVED_MARKERS: &[&str] = &[
    "<think>",
    "</think>",
    "<|channel>",
    "<channel|>",
    "[THINK]",
    "[/THINK]",
    "<tool_call>",
    "</tool_call>",
    "<|tool_call>",
    "<tool_call|>",
    "<|\"|>",
    "[TOOL_CALLS]",
    "[ARGS]",
    "[CALL_ID]",
    "<|python_tag|>",
];

/// One message of a conversation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Message {
    pub role: String,
    pub content: String,
    /// The calls an assistant message made.
    pub tool_calls: Vec<ToolCall>,
    /// The call a `tool` message answers.
    pub tool_call_id: Option<String>,
    /// The function a `tool` message answers for (templates that name it).
    pub name: Option<String>,
    /// An assistant message's thinking, apart from its content (templates that render it, as
    /// Qwen3's does for the turns since the last user message).
    pub reasoning_content: Option<String>,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Self {
        Message { role: role.to_string(), content: content.to_string(), ..Message::default() }
    }
}

/// A function call the model made: its arguments are JSON text (OpenAI's `arguments` string).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

impl ToolCall {
    /// The arguments as a JSON value (an object, for templates that read its keys); text that
    /// is not JSON stays a string.
    pub fn arguments_value(&self) -> serde_json::Value {
        serde_json::from_str(&self.arguments).unwrap_or_else(|_| serde_json::Value::String(self.arguments.clone()))
    }
}

/// As transformers' templates read a message: `role`, `content`, and `tool_calls`,
/// `tool_call_id`, `name`, `reasoning_content` when present.
impl Serialize for Message {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("role", &self.role)?;
        m.serialize_entry("content", &self.content)?;
        if !self.tool_calls.is_empty() {
            m.serialize_entry("tool_calls", &self.tool_calls)?;
        }
        if let Some(id) = &self.tool_call_id {
            m.serialize_entry("tool_call_id", id)?;
        }
        if let Some(name) = &self.name {
            m.serialize_entry("name", name)?;
        }
        if let Some(reasoning) = &self.reasoning_content {
            m.serialize_entry("reasoning_content", reasoning)?;
        }
        m.end()
    }
}

/// OpenAI's shape, `{"id", "type": "function", "function": {"name", "arguments"}}`, with the
/// arguments as an object (what Qwen's, Llama's and Gemma's templates iterate or `tojson`).
impl Serialize for ToolCall {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("id", &self.id)?;
        m.serialize_entry("type", "function")?;
        m.serialize_entry("function", &serde_json::json!({"name": self.name, "arguments": self.arguments_value()}))?;
        m.end()
    }
}
