//! `strata generate MODEL -p PROMPT`: one completion for scripts, raw or through the chat template.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;

use super::run_args::{
    single_engine, with_hint, with_media_markers, GrammarArgs, MediaArgs, ModelArgs, Reasoning, SamplingArgs,
    TemplateArgs, TokenLimit,
};
use strata_run::chat::reasoning::ThinkingFilter;
use strata_run::chat::template::RenderOptions;
use strata_run::chat::Message;
use strata_run::constraint::both;
use strata_run::engine::{check_stop_strings, Limits};
use strata_run::system_memory::ProcessMemory;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub media: MediaArgs,
    /// The prompt ("-" or none: read standard input).
    #[arg(short = 'p', long = "prompt")]
    pub prompt: Option<String>,
    /// Read the prompt from a file.
    #[arg(short = 'f', long = "file", conflicts_with = "prompt")]
    pub file: Option<PathBuf>,
    /// Tokens to generate at most (-1: until the context is full).
    #[arg(short = 'n', long = "n-predict", value_name = "N", default_value = "256", allow_negative_numbers = true)]
    pub n_predict: TokenLimit,
    /// Apply the chat template to the prompt as one user message.
    #[arg(long)]
    pub chat: bool,
    /// A system message (with --chat).
    #[arg(long, requires = "chat")]
    pub system: Option<String>,
    #[command(flatten)]
    pub template: TemplateArgs,
    #[command(flatten)]
    pub grammar: GrammarArgs,
    /// Stop when this text appears (repeatable; not included in the output).
    #[arg(long = "stop", value_name = "TEXT")]
    pub stop: Vec<String>,
    /// Keep generating past end-of-generation tokens.
    #[arg(long = "ignore-eos")]
    pub ignore_eos: bool,
    /// Print one JSON object: text, token counts, speeds, stop reason.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    check_stop_strings(&args.stop).map_err(|e| anyhow!("--stop: {e}"))?;
    let prompt = read_prompt(args)?;
    let grammar = args.grammar.read()?;
    let (mut model, context) = args.model.load(false)?;
    args.media.attach(&mut model, &context)?;
    let media = args.media.read()?;
    let media: Vec<_> = media.iter().collect();
    let prompt = with_media_markers(&prompt, media.len());
    let constraint = match &grammar {
        Some(g) => Some(g.constraint(&g.compiler(&model)?)?),
        None => None,
    };
    let params = args.sampling.params(&model)?;
    let (tokens, constraint) = if args.chat {
        let template = args.template.resolve(&model)?;
        let mut messages = Vec::new();
        if let Some(system) = &args.system {
            messages.push(Message::new("system", system));
        }
        messages.push(Message::new("user", &prompt));
        let opts = RenderOptions { add_generation_prompt: true, ..args.template.render_options(&model) };
        let text = template.render(&messages, &opts)?;
        let constraint = both(constraint, args.template.thinking_budget(&model, &text));
        if model.has_projector() {
            (model.media_prompt_chat(&text, &media)?, constraint)
        } else {
            (model.tokenize_chat(&text).into(), constraint)
        }
    } else if model.has_projector() {
        (model.media_prompt(&prompt, &media, true, false)?, constraint)
    } else {
        (model.tokenize(&prompt, true, false).into(), constraint)
    };
    let mut engine = single_engine(&model, &context)?;
    let limits =
        Limits { max_tokens: args.n_predict.0, stop: args.stop.clone(), ignore_eos: args.ignore_eos, constraint };
    let mut stdout = std::io::stdout();
    let stream = !args.json;
    let hide = args.template.reasoning == Reasoning::Hide;
    let mut filter = ThinkingFilter::new(hide);
    let on_text = |piece: &str| {
        if stream {
            let _ = stdout.write_all(filter.push(piece).as_bytes());
            let _ = stdout.flush();
        }
    };
    let (text, out) = engine.generate(tokens, params, limits, on_text, || true).map_err(with_hint)?;
    if args.json {
        let report = json!({
            "text": ThinkingFilter::new(hide).push(&text),
            "prompt_tokens": out.prompt_tokens,
            "generated_tokens": out.completion_tokens,
            "prompt_tokens_per_second": out.progress().prompt_tokens_per_second(),
            "generation_tokens_per_second": out.progress().generation_tokens_per_second(),
            "stop_reason": out.stop_reason.name(),
            "memory": ProcessMemory::read()?,
        });
        super::print(&serde_json::to_string_pretty(&report)?)?;
    } else {
        println!();
        if args.model.verbose || std::io::stderr().is_terminal() {
            eprintln!(
                "[{} prompt tokens at {:.1} t/s, {} generated at {:.1} t/s, stop: {}]",
                out.prompt_tokens,
                out.progress().prompt_tokens_per_second(),
                out.completion_tokens,
                out.progress().generation_tokens_per_second(),
                out.stop_reason.name()
            );
        }
    }
    Ok(())
}

fn read_prompt(args: &Args) -> Result<String> {
    let prompt = match (&args.prompt, &args.file) {
        (_, Some(file)) => {
            std::fs::read_to_string(file).with_context(|| format!("{}: cannot read the prompt", file.display()))?
        }
        (Some(p), None) if p != "-" => p.clone(),
        _ => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).context("cannot read the prompt from standard input")?;
            s
        }
    };
    if prompt.is_empty() {
        bail!("the prompt is empty (give -p, -f or standard input)");
    }
    Ok(prompt)
}
