//! `strata chat MODEL`: interactive multi-turn chat that keeps the KV cache between turns, and
//! the template options `generate --chat` and `template` share.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};

use anyhow::{bail, Context, Result};

use super::run_args::{
    single_engine, with_hint, with_media_markers, GrammarArgs, MediaArgs, ModelArgs, Reasoning, SamplingArgs,
    TemplateArgs, TokenLimit,
};
use strata_run::chat::reasoning::ThinkingFilter;
use strata_run::chat::template::RenderOptions;
use strata_run::chat::Message;
use strata_run::constraint::both;
use strata_run::engine::{Limits, Prompt, StopReason};

use crate::llama::Medium;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// The projector, and the images and audio of the first message (then `/image PATH` and
    /// `/audio PATH` attach media to the next one).
    #[command(flatten)]
    pub media: MediaArgs,
    #[command(flatten)]
    pub template: TemplateArgs,
    #[command(flatten)]
    pub grammar: GrammarArgs,
    /// A system message for the conversation.
    #[arg(long)]
    pub system: Option<String>,
    /// Answer this one message and exit.
    #[arg(short = 'p', long = "prompt")]
    pub prompt: Option<String>,
    /// Most tokens per answer (-1: until the context is full).
    #[arg(short = 'n', long = "n-predict", value_name = "N", default_value = "-1", allow_negative_numbers = true)]
    pub n_predict: TokenLimit,
    /// When the conversation (with room for the answer) outgrows the context, drop the oldest turns instead of stopping.
    #[arg(long = "drop-old-turns")]
    pub drop_old_turns: bool,
}

/// Where a Ctrl-C finds the chat: at the prompt it ends the program at once (without teardown,
/// as llama.cpp's own CLI does); during an answer the first stops the answer and a second ends
/// the program once the answer has stopped.
static CTRL_C: AtomicU8 = AtomicU8::new(AT_PROMPT);
const AT_PROMPT: u8 = 0;
const ANSWERING: u8 = 1;
const ANSWER_STOPPED: u8 = 2;
const QUIT_AFTER_ANSWER: u8 = 3;

/// The exit status after Ctrl-C, as shells report a SIGINT.
const INTERRUPTED_EXIT: i32 = 130;

fn on_ctrl_c() {
    loop {
        let (from, to) = match CTRL_C.load(Ordering::SeqCst) {
            AT_PROMPT => {
                let _ = std::io::stdout().flush();
                eprintln!();
                strata_run::signals::exit_now(INTERRUPTED_EXIT);
            }
            ANSWERING => (ANSWERING, ANSWER_STOPPED),
            ANSWER_STOPPED => (ANSWER_STOPPED, QUIT_AFTER_ANSWER),
            _ => return,
        };
        if CTRL_C.compare_exchange(from, to, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            return;
        }
    }
}

pub fn run(args: &Args) -> Result<()> {
    if args.prompt.as_deref().is_some_and(|p| p.trim().is_empty()) {
        bail!("-p/--prompt is empty: give the message to answer, or leave -p out to chat");
    }
    // A full-size sliding-window cache, so each turn can reuse the conversation so far.
    let grammar = args.grammar.read()?;
    let (mut model, context) = args.model.load(true)?;
    args.media.attach(&mut model, &context)?;
    let compiler = grammar.as_ref().map(|g| g.compiler(&model)).transpose()?;
    let template = args.template.resolve(&model)?;
    let base_opts = RenderOptions { add_generation_prompt: true, ..args.template.render_options(&model) };
    let params = args.sampling.params(&model)?;
    let mut engine = single_engine(&model, &context)?;
    ctrlc::set_handler(on_ctrl_c).context("cannot install the Ctrl-C handler")?;
    // The handler above also takes SIGTERM and SIGHUP; those should end a chat, not an answer.
    strata_run::signals::restore_default(strata_run::signals::SIGTERM);
    strata_run::signals::restore_default(strata_run::signals::SIGHUP);

    let mut messages: Vec<Message> = args.system.iter().map(|s| Message::new("system", s)).collect();
    // Each message's images and audio, in order (parallel to `messages`), and those the next
    // user message gets.
    let mut media_of: Vec<Vec<Medium>> = messages.iter().map(|_| Vec::new()).collect();
    let mut pending = args.media.read()?;
    let interactive = args.prompt.is_none() && std::io::stdin().is_terminal();
    if interactive {
        let media = if model.has_projector() { ", /image PATH or /audio PATH for the next message" } else { "" };
        eprintln!(
            "strata chat: {} (/reset to start over, /exit or Ctrl-D to leave{media}, Ctrl-C stops an answer)",
            model.path.display()
        );
    }
    let mut lines = std::io::stdin().lock().lines();
    // -p is the one message: taken once, whatever it holds.
    let mut one_message = args.prompt.clone();
    let mut turn = 0;
    loop {
        let input = match (&args.prompt, one_message.take()) {
            (Some(_), Some(p)) => p,
            (Some(_), None) => break,
            (None, _) => {
                if interactive {
                    eprint!("> ");
                    std::io::stderr().flush().ok();
                }
                match lines.next() {
                    None => break,
                    Some(line) => line.context("cannot read standard input")?,
                }
            }
        };
        let input = input.trim();
        match input {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                let system = messages.iter().filter(|m| m.role == "system").count();
                messages.retain(|m| m.role == "system");
                media_of.truncate(system);
                pending.clear();
                engine.clear();
                eprintln!("[conversation reset]");
                continue;
            }
            _ => {}
        }
        if let Some((kind, path)) = media_command(input) {
            if !model.has_projector() {
                eprintln!("error: {kind} needs the model's projector file: restart with --mmproj MMPROJ.gguf");
            } else {
                match Medium::read(Path::new(path)) {
                    Ok(medium) => {
                        pending.push(medium);
                        eprintln!("[{path} attached to the next message]");
                    }
                    Err(e) => eprintln!("error: {e:#}"),
                }
            }
            continue;
        }
        turn += 1;
        let attached = std::mem::take(&mut pending);
        messages.push(Message::new("user", &with_media_markers(input, attached.len())));
        media_of.push(attached);
        // With --drop-old-turns, old turns make way for the answer too: for -n tokens of it, or
        // (without -n, or for a larger one) half the context.
        let answer_room =
            if args.drop_old_turns { args.n_predict.0.unwrap_or(usize::MAX).min(engine.n_ctx_slot() / 2) } else { 0 };
        let (prompt, text) = loop {
            let text = template.render(&messages, &base_opts)?;
            let prompt = match chat_prompt(&model, &text, &media_of) {
                Ok(prompt) => prompt,
                // A medium libmtmd cannot read: the message is dropped, the chat goes on.
                Err(e) if interactive => {
                    messages.pop();
                    media_of.pop();
                    eprintln!("error: {e:#}");
                    break (None, text);
                }
                Err(e) => return Err(e),
            };
            let tokens = &prompt.tokens;
            if tokens.len() + answer_room < engine.n_ctx_slot() {
                break (Some(prompt), text);
            }
            let first_turn = messages.iter().position(|m| m.role != "system").unwrap_or(0);
            if messages.len() - first_turn <= 1 && tokens.len() < engine.n_ctx_slot() {
                break (Some(prompt), text); // only this turn is left: answer as much as fits
            }
            if !args.drop_old_turns || messages.len() - first_turn <= 1 {
                messages.pop();
                let advice = if args.drop_old_turns { "raise -c" } else { "raise -c, or use --drop-old-turns" };
                bail!("the conversation is {} tokens, the context is {} ({advice})", tokens.len(), engine.n_ctx_slot());
            }
            let old = first_turn..(first_turn + 2).min(messages.len() - 1);
            messages.drain(old.clone());
            media_of.drain(old);
        };
        let Some(prompt) = prompt else { continue };
        // -1: no limit; generation stops when the context is full.
        let constraint = match (&grammar, &compiler) {
            (Some(g), Some(c)) => Some(g.constraint(c)?),
            _ => None,
        };
        let constraint = both(constraint, args.template.thinking_budget(&model, &text));
        let limits = Limits { max_tokens: args.n_predict.0, constraint, ..Limits::default() };
        let mut filter = ThinkingFilter::new(args.template.reasoning == Reasoning::Hide);
        let mut stdout = std::io::stdout();
        CTRL_C.store(ANSWERING, Ordering::SeqCst);
        let out = engine.generate(
            prompt,
            params.clone(),
            limits,
            |piece| {
                let _ = stdout.write_all(filter.push(piece).as_bytes());
                let _ = stdout.flush();
            },
            || CTRL_C.load(Ordering::SeqCst) == ANSWERING,
        );
        let quit = CTRL_C.swap(AT_PROMPT, Ordering::SeqCst) == QUIT_AFTER_ANSWER;
        let (text, out) = out.map_err(with_hint)?;
        println!();
        if quit {
            std::process::exit(INTERRUPTED_EXIT);
        }
        eprintln!(
            "[turn {turn}: {} prompt tokens, {} evaluated, {} from cache; {} generated at {:.1} t/s; stop: {}]",
            out.prompt_tokens,
            out.progress().prompt_evaluated(),
            out.cached_tokens,
            out.completion_tokens,
            out.progress().generation_tokens_per_second(),
            out.stop_reason.name()
        );
        if out.stop_reason == StopReason::Context {
            eprintln!("[the context of {} tokens is full: /reset, or restart with a larger -c]", engine.n_ctx_slot());
        }
        messages.push(Message::new("assistant", &text));
        media_of.push(Vec::new());
    }
    Ok(())
}

/// `/image PATH` or `/audio PATH`: what it attaches and the path.
fn media_command(input: &str) -> Option<(&'static str, &str)> {
    for kind in ["/image", "/audio"] {
        if let Some(path) = input.strip_prefix(kind).and_then(|rest| rest.strip_prefix(' ')) {
            return Some((kind, path.trim()));
        }
    }
    None
}

/// The conversation's prompt: through the projector when the model has one (each message's
/// media at its markers), else the template's text tokenized.
fn chat_prompt(model: &crate::llama::Model, text: &str, media_of: &[Vec<Medium>]) -> Result<Prompt> {
    if !model.has_projector() {
        return Ok(model.tokenize_chat(text).into());
    }
    let media: Vec<&Medium> = media_of.iter().flatten().collect();
    model.media_prompt_chat(text, &media)
}
