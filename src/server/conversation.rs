//! A chat request in strata's terms, whichever API it came through (OpenAI's chat completions,
//! Anthropic's Messages, OpenAI's Responses): the messages, the tools and how they may be used.
//! Made into the prompt's tokens and the job's constraint here, once for every API.

use std::sync::Arc;

use axum::http::StatusCode;
use strata_run::chat::reasoning::open_segment;
use strata_run::chat::template::RenderOptions;
use strata_run::chat::tools::{self, Tool, ToolChoice};
use strata_run::chat::Message;
use strata_run::constraint::{both, Compiler, Grammar};
use strata_run::engine::{self, Constraint};

use super::answer::Calls;
use super::openai::ApiError;
use super::Ready;
use crate::commands::run_args::thinking_budget;
use crate::llama::Medium;

/// What a chat request asks, beside its sampling options.
pub struct Conversation {
    pub messages: Vec<Message>,
    /// The messages' images and audio, in the order of their media markers.
    pub media: Vec<Medium>,
    pub tools: Vec<Tool>,
    pub choice: ToolChoice,
    /// More than one call per answer.
    pub parallel: bool,
    /// The template's `enable_thinking`, when the request sets it.
    pub enable_thinking: Option<bool>,
    /// Thinking tokens the answer may spend, when the request sets it (`Some(None)`: no limit).
    pub reasoning_budget: Option<Option<usize>>,
    /// A grammar the answer must match (not with tools).
    pub grammar: Option<Grammar>,
    /// Whether a last assistant message is continued (its text ends the prompt, the answer
    /// goes on from it) rather than closed: `None` continues it, as llama-server's prefill and
    /// Anthropic's Messages do; `continue_final_message` says so explicitly.
    pub continue_final: Option<bool>,
}

/// A conversation ready to generate.
pub struct Prompt {
    /// The tokens, and the runs of them that are images or audio.
    pub input: engine::Prompt,
    pub constraint: Option<Box<dyn Constraint>>,
    /// Where tools were offered: how to read the calls in the answer.
    pub calls: Option<Calls>,
    /// The thinking segment the prompt opened for the answer, if any.
    pub thinking: Option<usize>,
}

impl Ready {
    /// The prompt for `conv`: tools reach the model through its template (or, for a template
    /// without tools, through a system message of strata's, as llama.cpp's generic format does);
    /// a call is constrained from the answer's start (`required`, a named function) or from the
    /// format's marker (`auto`), so free text stays free.
    pub fn prompt(&self, conv: Conversation) -> Result<Prompt, ApiError> {
        let Conversation {
            mut messages,
            media,
            tools,
            choice,
            parallel,
            enable_thinking,
            reasoning_budget,
            grammar,
            continue_final,
        } = conv;
        // A last assistant message without calls is the start of the answer: the prompt ends
        // with the template's opening of an assistant turn, then its text.
        let prefill = match messages.last() {
            Some(m) if m.role == "assistant" && m.tool_calls.is_empty() && continue_final != Some(false) => {
                messages.pop().map(|m| m.content)
            }
            _ => None,
        };
        if prefill.is_some() && messages.last().is_some_and(|m| m.role == "assistant") {
            return Err(ApiError::bad(
                "two assistant messages end the conversation: only the last one can be continued",
            ));
        }
        let mut render = RenderOptions {
            add_generation_prompt: true,
            enable_thinking: enable_thinking.or(self.render.enable_thinking),
            ..self.render.clone()
        };
        let mut constraint = match &grammar {
            Some(g) => Some(self.constraint(g, Vec::new(), "the request's grammar")?),
            None => None,
        };
        let format = self.tool_format;
        let has_calls = messages.iter().any(|m| !m.tool_calls.is_empty() || m.role == "tool");
        if has_calls && !format.template_renders_tools() {
            // Earlier calls and their results, written as the generic format writes them.
            messages = tools::generic_messages(&messages);
        }
        let mut calls = None;
        if choice != ToolChoice::None {
            if grammar.is_some() {
                return Err(ApiError::bad("tools cannot be combined with response_format, json_schema or grammar"));
            }
            if format.template_renders_tools() {
                render.tools = Some(tools.iter().map(Tool::to_openai).collect());
            } else {
                let system = tools::generic_system_prompt(&tools, &choice, parallel);
                match messages.first_mut() {
                    Some(first) if first.role == "system" => first.content = format!("{}\n\n{system}", first.content),
                    _ => messages.insert(0, Message::new("system", &system)),
                }
            }
            let mut triggers = Vec::new();
            if let Some(g) = tools::grammar(format, &tools, &choice, parallel) {
                triggers = g.triggers.clone();
                constraint = Some(self.constraint(&Grammar::Lark(g.lark), g.triggers, "tools")?);
            }
            calls = Some(Calls { format, triggers });
        }
        let mut text = self
            .template
            .render(&messages, &render)
            .map_err(|e| ApiError::bad(format!("the chat template failed on these messages: {e:#}")))?;
        text.push_str(prefill.as_deref().unwrap_or_default());
        if let Some(budget) = reasoning_budget.unwrap_or(self.reasoning_budget) {
            constraint = both(constraint, thinking_budget(&self.model, budget, &text));
        }
        let input = match (media.is_empty(), self.model.has_projector()) {
            (true, _) => self.model.tokenize_chat(&text).into(),
            (false, false) => {
                return Err(ApiError::bad(
                    "this model was loaded without a projector file (--mmproj): it takes no images or audio",
                ))
            }
            (false, true) => {
                let media: Vec<&Medium> = media.iter().collect();
                self.model.media_prompt_chat(&text, &media).map_err(|e| ApiError::bad(format!("{e:#}")))?
            }
        };
        Ok(Prompt { input, constraint, calls, thinking: open_segment(&text) })
    }

    /// A grammar's constraint, from the first token, or from one of `triggers` on; a grammar
    /// that does not compile is the request's error, naming `what` and what is wrong.
    pub fn constraint(
        &self,
        grammar: &Grammar,
        triggers: Vec<String>,
        what: &str,
    ) -> Result<Box<dyn Constraint>, ApiError> {
        // Building the vocabulary's trie (a second or two for 262k tokens, once) and compiling a
        // grammar are CPU work: the runtime's other tasks move to another worker meanwhile.
        tokio::task::block_in_place(|| {
            let compiler = self
                .compiler
                .get_or_init(|| Compiler::new(&self.model.constraint_vocabulary()).map(Arc::new))
                .as_ref()
                .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("constrained sampling: {e}")))?;
            let made =
                if triggers.is_empty() { compiler.constraint(grammar) } else { compiler.lazy(grammar, triggers) };
            made.map_err(|e| ApiError::bad(format!("{what}: {e}")))
        })
    }
}
