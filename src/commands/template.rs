//! `strata template MODEL|--file T.jinja --messages M.json`: exactly what the model will see.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use super::run_args::{Reasoning, TemplateArgs, TokenLimit};
use crate::llama::Model;
use strata_run::chat::template::{ChatTemplate, RenderOptions};
use strata_run::chat::Message;

#[derive(clap::Args)]
pub struct Args {
    /// The GGUF model whose template (and tokenizer, with --tokens) to use.
    #[arg(value_name = "MODEL.gguf", required_unless_present_any = ["file", "builtin"], value_parser = super::run_args::model_file)]
    pub model: Option<PathBuf>,
    /// A Jinja template file instead of a model's.
    #[arg(long = "file", value_name = "T.jinja")]
    pub file: Option<PathBuf>,
    /// A built-in template by name: any of llama.cpp's (chatml, llama2, llama3, mistral-v7, gemma,
    /// phi3, command-r, ...; an unknown name lists them all).
    #[arg(long = "builtin", value_name = "NAME")]
    pub builtin: Option<String>,
    /// The conversation: a JSON array of {"role", "content"}.
    #[arg(long = "messages", value_name = "M.json")]
    pub messages: PathBuf,
    #[arg(long = "add-generation-prompt")]
    pub add_generation_prompt: bool,
    /// Also print the token ids (needs a model).
    #[arg(long)]
    pub tokens: bool,
    /// Set enable_thinking.
    #[arg(long = "think", value_name = "BOOL")]
    pub think: Option<bool>,
    #[arg(long = "bos-token", default_value = "")]
    pub bos_token: String,
    #[arg(long = "eos-token", default_value = "")]
    pub eos_token: String,
}

pub fn run(args: &Args) -> Result<()> {
    let raw =
        std::fs::read_to_string(&args.messages).with_context(|| format!("{}: cannot read", args.messages.display()))?;
    let expected =
        || format!("{}: expected a JSON array of {{\"role\", \"content\"}} objects", args.messages.display());
    let list: serde_json::Value = serde_json::from_str(&raw).with_context(expected)?;
    let fields = serde_json::Map::from_iter([("messages".to_string(), list)]);
    // Read as the server reads a request's messages (tool calls and tool results included).
    let (messages, _): (Vec<Message>, _) = crate::server::openai::messages(&fields)
        .map_err(|e| anyhow::anyhow!("{}: {}", args.messages.display(), e.message))?;
    let mut opts = RenderOptions {
        add_generation_prompt: args.add_generation_prompt,
        bos_token: args.bos_token.clone(),
        eos_token: args.eos_token.clone(),
        enable_thinking: args.think,
        tools: None,
        llama_cpp_variables: true,
    };
    let (text, model) = if let Some(path) = &args.model {
        let model = Model::load_vocab(path)?;
        let template_args = TemplateArgs {
            chat_template: args.builtin.clone(),
            chat_template_file: args.file.clone(),
            think: args.think,
            reasoning: Reasoning::Show,
            reasoning_budget: TokenLimit(None),
        };
        let template = template_args.resolve(&model)?;
        let defaults = template_args.render_options(&model);
        opts.bos_token = defaults.bos_token;
        opts.eos_token = defaults.eos_token;
        (template.render(&messages, &opts)?, Some(model))
    } else {
        let template = match (&args.file, &args.builtin) {
            (Some(file), _) => {
                let source =
                    std::fs::read_to_string(file).with_context(|| format!("{}: cannot read", file.display()))?;
                ChatTemplate::new(&source, &file.display().to_string())?
            }
            (None, Some(name)) => ChatTemplate::builtin(name)?,
            (None, None) => unreachable!("clap requires one"),
        };
        (template.render(&messages, &opts)?, None)
    };
    print!("{text}");
    if args.tokens {
        let Some(model) = model else { bail!("--tokens needs a model to tokenize with") };
        let ids = model.tokenize_chat(&text);
        println!("\n{}", ids.iter().map(i32::to_string).collect::<Vec<_>>().join(" "));
    }
    Ok(())
}
