//! `strata perplexity MODEL.gguf -f TEXT | --kl-base FILE.logits`: how well a model predicts a
//! text, and how far its next-token distributions are from a base model's saved logits (KL
//! divergence, top-1 agreement), as llama-perplexity measures quantization loss.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;

use super::run_args::ModelArgs;
use crate::llama::LlamaDecoder;
use strata_run::engine::{logits_each, Decoder};
use strata_run::logits_file::{compare, log_softmax, Logits};

#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("input").required(true).args(["file", "kl_base"]))]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The text to score; read in chunks of the context size, each scored on its second half
    /// (as llama-perplexity does).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Compare with a base model's saved logits (tokens are taken from the file).
    #[arg(long = "kl-base", value_name = "FILE.logits")]
    pub kl_base: Option<PathBuf>,
    /// Save this model's tokens and logits (the text must fit one context).
    #[arg(long = "save-logits", value_name = "FILE.logits")]
    pub save_logits: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let (model, context) = args.model.load(false)?;
    let mut decoder = model.decoder(&context, 1)?;
    let n_vocab = model.n_vocab();
    let mut report = serde_json::Map::new();
    report.insert("model".into(), json!(model.path.display().to_string()));

    let saved = if let Some(base_path) = &args.kl_base {
        let base = Logits::read(base_path)?;
        if base.n_vocab != n_vocab {
            bail!("{}: logits over {} tokens, the model's vocabulary has {n_vocab}", base_path.display(), base.n_vocab);
        }
        if let Some(t) = base.tokens.iter().find(|&&t| t < 0 || t as usize >= n_vocab) {
            bail!("{}: token id {t} is outside the model's vocabulary of {n_vocab}", base_path.display());
        }
        let values = logits_all(&mut decoder, &base.tokens)?;
        let ours = Logits { n_vocab, tokens: base.tokens.clone(), values };
        let c = compare(&base, &ours)?;
        report.insert("tokens".into(), json!(c.tokens));
        report.insert("ppl".into(), json!(c.ppl));
        report.insert("base_ppl".into(), json!(c.base_ppl));
        report.insert("kl_mean".into(), json!(c.kl_mean));
        report.insert("kl_max".into(), json!(c.kl_max));
        report.insert("top1_agreement".into(), json!(c.top1_agreement));
        report.insert("max_abs_logit_diff".into(), json!(c.max_abs_logit_diff));
        report.insert("max_abs_base_logit".into(), json!(c.max_abs_base_logit));
        report.insert("relative_max_diff".into(), json!(c.relative_max_diff));
        ours
    } else {
        let path = args.file.as_ref().expect("clap requires --file or --kl-base");
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let tokens = model.tokenize(&text, true, false);
        if tokens.len() < 2 {
            bail!("{}: the text is {} token(s); at least 2 are needed", path.display(), tokens.len());
        }
        let n_ctx = decoder.n_ctx_seq();
        if args.save_logits.is_some() && tokens.len() > n_ctx {
            bail!(
                "{}: {} tokens do not fit one context of {n_ctx} for --save-logits (raise -c)",
                path.display(),
                tokens.len()
            );
        }
        let (mut nll, mut count) = (0.0f64, 0usize);
        let mut last = None;
        for chunk in tokens.chunks(n_ctx).filter(|c| c.len() >= 2) {
            let values = logits_all(&mut decoder, chunk)?;
            let logits = Logits { n_vocab, tokens: chunk.to_vec(), values };
            let first = if chunk.len() == tokens.len() { 0 } else { chunk.len() / 2 };
            for j in first..chunk.len() - 1 {
                nll -= log_softmax(logits.row(j))[chunk[j + 1] as usize];
                count += 1;
            }
            last = Some(logits);
        }
        report.insert("tokens".into(), json!(tokens.len()));
        report.insert("scored".into(), json!(count));
        report.insert("ppl".into(), json!((nll / count as f64).exp()));
        last.ok_or_else(|| anyhow!("{}: no chunk of at least 2 tokens", path.display()))?
    };
    if let Some(out) = &args.save_logits {
        saved.write(out)?;
    }
    if args.json {
        return super::print(&serde_json::to_string_pretty(&report)?);
    }
    let lines: Vec<String> = report.iter().map(|(k, v)| format!("{k:>20}: {v}")).collect();
    super::print(&lines.join("\n"))
}

/// The logits after every one of `tokens` (`tokens.len() × n_vocab`, position-major), from an
/// empty cache.
fn logits_all(decoder: &mut LlamaDecoder<'_>, tokens: &[i32]) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(tokens.len() * decoder.n_vocab());
    logits_each(decoder, tokens, |_, logits| out.extend_from_slice(logits))?;
    Ok(out)
}
