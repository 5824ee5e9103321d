//! Tool calls: how each model family writes them. [`ToolFormat::detect`] reads the family from
//! the chat template, [`grammar`] builds what constrains a call while it is generated, [`parse`]
//! reads the output back into text and calls, and [`generic_system_prompt`] /
//! [`generic_messages`] stand in for a template that has no tool support.
//!
//! The formats follow llama.cpp's `common/chat.cpp`: Hermes' `<tool_call>` JSON (Qwen 2.5/3,
//! Hermes 2/3), Llama 3.x's bare JSON and `<|python_tag|>`, Mistral's `[TOOL_CALLS]` (the JSON
//! array and the `name[ARGS]{...}` form), Gemma 4's `<|tool_call>call:name{...}<tool_call|>`, and
//! the generic JSON answer for everything else.

mod gemma;
mod generic;
mod grammar;
mod parse;

#[cfg(test)]
mod tests;

pub use generic::{generic_messages, generic_system_prompt};
pub use grammar::{grammar, CallGrammar};
pub use parse::parse;

use serde_json::{json, Value};

/// How a model family writes tool calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolFormat {
    /// No tool support in the template: the model answers with a JSON object.
    Generic,
    /// `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>` (Qwen 2.5/3, Hermes 2/3).
    Hermes,
    /// `{"name": ..., "parameters": {...}}`, or `<|python_tag|>name.call(k="v")` (Llama 3.1-3.3).
    Llama3,
    /// `[TOOL_CALLS][{"name", "arguments", "id"}]` (Nemo) or `[TOOL_CALLS]name[CALL_ID]id[ARGS]{...}`.
    Mistral,
    /// `<|tool_call>call:name{key:value,...}<tool_call|>`, strings quoted by `<|"|>`.
    Gemma4,
}

impl ToolFormat {
    /// The format a chat template writes calls in, from its source, by the markers llama.cpp
    /// looks for; `Generic` for a template without tool support or with a format not listed here
    /// (Qwen3-Coder's XML, GLM's `<arg_key>`, functionary...).
    pub fn detect(template_source: &str) -> ToolFormat {
        let has = |marker: &str| template_source.contains(marker);
        if has("<|tool_call>call:") {
            ToolFormat::Gemma4
        } else if has("[TOOL_CALLS]") {
            ToolFormat::Mistral
        } else if has("<tool_call>") && has("\"arguments\"") && !has("<tool_calls>") {
            // JSON inside `<tool_call>`, not Qwen3-Coder's `<function=...><parameter=...>`,
            // GLM's `<arg_key>` or Apriel's `<tool_calls>[...]`.
            ToolFormat::Hermes
        } else if has("<|start_header_id|>ipython<|end_header_id|>") && !has("<function=") {
            // Not functionary v3.1, a Llama 3.1 fine-tune with `<function=name>` calls.
            ToolFormat::Llama3
        } else {
            ToolFormat::Generic
        }
    }

    /// A short name, for logs: `generic`, `hermes`, `llama3`, `mistral`, `gemma4`.
    pub fn name(self) -> &'static str {
        match self {
            ToolFormat::Generic => "generic",
            ToolFormat::Hermes => "hermes",
            ToolFormat::Llama3 => "llama3",
            ToolFormat::Mistral => "mistral",
            ToolFormat::Gemma4 => "gemma4",
        }
    }

    /// Whether the template itself renders `tools` (false for Generic: strata then adds
    /// [`generic_system_prompt`] as a system message).
    pub fn template_renders_tools(self) -> bool {
        self != ToolFormat::Generic
    }
}

/// A function the model may call (OpenAI's `tools[i].function`).
#[derive(Clone, Debug, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// A JSON Schema for the arguments; null or `{}` takes any object.
    pub parameters: Value,
}

impl Tool {
    /// As OpenAI's request and transformers' templates take it:
    /// `{"type": "function", "function": {"name", "description", "parameters"}}`.
    pub fn to_openai(&self) -> Value {
        let mut function = json!({"name": self.name});
        if let Some(d) = &self.description {
            function["description"] = json!(d);
        }
        function["parameters"] = self.parameters_schema();
        json!({"type": "function", "function": function})
    }

    /// The arguments' schema, an object schema when none is given (as llama.cpp's
    /// `common_chat_tool_parameters`).
    fn parameters_schema(&self) -> Value {
        match &self.parameters {
            Value::Object(o) if !o.is_empty() => self.parameters.clone(),
            _ => json!({"type": "object", "properties": {}}),
        }
    }
}

/// Which function(s) the model may or must call.
#[derive(Clone, Debug, PartialEq)]
pub enum ToolChoice {
    /// Text or calls, as the model decides.
    Auto,
    /// No calls.
    None,
    /// At least one call.
    Required,
    /// A call to this function.
    Named(String),
}

/// The tools `choice` lets the model call: none for `None`, only the named one for `Named`.
fn offered<'a>(tools: &'a [Tool], choice: &ToolChoice) -> Vec<&'a Tool> {
    match choice {
        ToolChoice::None => Vec::new(),
        ToolChoice::Named(name) => tools.iter().filter(|t| &t.name == name).collect(),
        ToolChoice::Auto | ToolChoice::Required => tools.iter().collect(),
    }
}
