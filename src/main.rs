//! strata: convert Hugging Face checkpoints to GGUF with per-class quantization, and run them.
//!
//! This file only parses arguments and dispatches; each subcommand lives in `commands/`.

mod commands;
mod http_client;
mod hub;
mod llama;
mod server;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The system allocator, holding template rendering to a memory budget.
#[global_allocator]
static ALLOCATOR: strata_run::memory_budget::Allocator = strata_run::memory_budget::Allocator;

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "Convert, inspect and run GGUF models",
    propagate_version = true,
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Convert a Hugging Face safetensors folder to GGUF in one pass.
    Convert(commands::convert::Args),
    /// Show a GGUF file's header, metadata, tensors and bytes per tensor class.
    Inspect(commands::inspect::Args),
    /// Generate text from a prompt (raw completion, or one chat turn with --chat).
    Generate(commands::generate::Args),
    /// Chat with a model, keeping the conversation in the KV cache between turns.
    Chat(commands::chat::Args),
    /// Show exactly what a chat template makes of a conversation.
    Template(commands::template::Args),
    /// Print the token ids llama.cpp's tokenizer gives for a text.
    Tokenize(commands::tokenize::Args),
    /// Collect an importance matrix (activation statistics) for quantizing, as llama-imatrix does.
    Imatrix(commands::imatrix::Args),
    /// Measure prompt processing and generation speed, as llama-bench does.
    Bench(commands::bench::Args),
    /// Perplexity of a text, or KL divergence from a base model's saved logits.
    Perplexity(commands::perplexity::Args),
    /// List the compute devices llama.cpp sees, with free memory, and system RAM.
    Devices(commands::devices::Args),
    /// Which quantization mix of a model fits a device, and what each needs.
    Plan(commands::plan::Args),
    /// List the GGUF models in the Hugging Face cache, or remove one (`models rm hf:OWNER/NAME:QUANT`).
    Models(commands::models::Args),
    /// Fetch a GGUF model from the Hugging Face Hub into its cache (`pull OWNER/NAME:QUANT`).
    Pull(commands::pull::Args),
    /// Serve a model over an OpenAI-compatible HTTP API.
    Serve(commands::serve::Args),
    /// Serve this machine's CPU (or a GPU) to other machines' `--rpc`, as llama.cpp's rpc-server.
    RpcServer(commands::rpc_server::Args),
}

fn main() -> ExitCode {
    // Writes past the file-size limit (`ulimit -f`) then fail with EFBIG, which the writers
    // turn into an error that removes the partial output, instead of the signal killing the
    // process with a temporary file left behind.
    strata_run::signals::ignore(strata_run::signals::SIGXFSZ);
    // llama.cpp's three-letter short flags, accepted as people type them.
    let argv = std::env::args_os().map(|a| match a.to_str() {
        Some("-ngl") => "--n-gpu-layers".into(),
        Some("-ctk") => "--cache-type-k".into(),
        Some("-ctv") => "--cache-type-v".into(),
        Some("-np") => "--parallel".into(),
        Some("-ts") => "--tensor-split".into(),
        _ => a,
    });
    // clap's whole message (what is wrong, the usage, a hint), or the help; exit status 2 on errors.
    let cli = Cli::try_parse_from(argv).unwrap_or_else(|e| e.exit());
    let result = match cli.command {
        Command::Convert(args) => commands::convert::run(&args),
        Command::Inspect(args) => commands::inspect::run(&args),
        Command::Generate(args) => commands::generate::run(&args),
        Command::Chat(args) => commands::chat::run(&args),
        Command::Template(args) => commands::template::run(&args),
        Command::Bench(args) => commands::bench::run(&args),
        Command::Imatrix(args) => commands::imatrix::run(&args),
        Command::Tokenize(args) => commands::tokenize::run(&args),
        Command::Perplexity(args) => commands::perplexity::run(&args),
        Command::Devices(args) => commands::devices::run(&args),
        Command::RpcServer(args) => commands::rpc_server::run(&args),
        Command::Plan(args) => commands::plan::run(&args),
        Command::Models(args) => commands::models::run(&args),
        Command::Pull(args) => commands::pull::run(&args),
        Command::Serve(args) => commands::serve::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, outermost first.
fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}
