//! `strata tokenize MODEL.gguf -p TEXT`: the token ids llama.cpp's tokenizer gives for a text,
//! as llama.cpp's llama-tokenize prints them.

use anyhow::Result;

use super::run_args::ModelArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The text to tokenize.
    #[arg(short = 'p', long = "prompt")]
    pub prompt: String,
    /// Add BOS/EOS as the model asks.
    #[arg(long = "add-special")]
    pub add_special: bool,
    /// Treat special-token text (`<|im_start|>`) as plain text.
    #[arg(long = "no-parse-special")]
    pub no_parse_special: bool,
    /// Print a JSON array of ids.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let (model, _) = args.model.load(false)?;
    let ids = model.tokenize(&args.prompt, args.add_special, !args.no_parse_special);
    if args.json {
        super::print(&serde_json::to_string(&ids)?)
    } else {
        super::print(&ids.iter().map(i32::to_string).collect::<Vec<_>>().join(" "))
    }
}
