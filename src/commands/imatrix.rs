//! `strata imatrix MODEL.gguf -f TEXT [-o imatrix.gguf]`: runs the model over a text and saves,
//! for every weight matrix multiplied by activations, the per-input-channel sum of squared
//! activations — the importance matrix that `convert --imatrix` and llama-quantize weight their
//! quantizers with. Flags, chunking and files are llama-imatrix's.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::json;

use strata_gguf::{Imatrix, ImatrixFormat};
use strata_run::engine::logits_each;
use strata_run::logits_file::log_softmax;

use super::run_args::ModelArgs;
use crate::llama::imatrix::Collector;

/// llama-imatrix's chunk size.
const DEFAULT_CHUNK_SIZE: u32 = 512;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The calibration text; read in chunks of the context size (-c, default 512), each run
    /// from an empty cache and starting with BOS where the model wants one.
    #[arg(short = 'f', long = "file", required_unless_present = "in_files")]
    pub file: Option<PathBuf>,
    /// Where to save the matrix.
    #[arg(short = 'o', long = "output-file", default_value = "imatrix.gguf")]
    pub output: PathBuf,
    /// gguf (llama.cpp's current format) or dat (its legacy one) [default: dat for a .dat
    /// output, else gguf].
    #[arg(long = "output-format", value_parser = ["gguf", "dat"])]
    pub output_format: Option<String>,
    /// Run at most this many chunks (default: all the text gives).
    #[arg(long = "chunks")]
    pub chunks: Option<usize>,
    /// Skip this many chunks at the start of the text.
    #[arg(long = "chunk", default_value_t = 0)]
    pub skip_chunks: usize,
    /// Add these matrices' statistics (repeatable); without -f, only combine them.
    #[arg(long = "in-file", value_name = "FILE")]
    pub in_files: Vec<PathBuf>,
    /// Collect for the output projection (`output.weight`) too.
    #[arg(long = "process-output")]
    pub process_output: bool,
    /// Do not compute the text's perplexity along the way.
    #[arg(long = "no-ppl")]
    pub no_ppl: bool,
    /// Turn special-token text in the file into those tokens.
    #[arg(long = "parse-special")]
    pub parse_special: bool,
    /// Print a summary as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let format = match args.output_format.as_deref() {
        Some("dat") => ImatrixFormat::Dat,
        Some(_) => ImatrixFormat::Gguf,
        None if args.output.extension().is_some_and(|e| e == "dat") => ImatrixFormat::Dat,
        None => ImatrixFormat::Gguf,
    };
    let mut model_args = args.model.clone();
    let chunk_size = *model_args.ctx_size.get_or_insert(DEFAULT_CHUNK_SIZE);
    if chunk_size == 0 {
        bail!("-c/--ctx-size must be at least 1 for imatrix (it is the chunk size)");
    }
    let mut imatrix = Imatrix { chunk_size, ..Imatrix::default() };
    for path in &args.in_files {
        imatrix.merge(&Imatrix::read(path)?, path)?;
    }
    let mut report = serde_json::Map::new();
    if let Some(text_path) = &args.file {
        let (collected, ppl) = collect(args, &model_args, text_path, chunk_size)?;
        report.insert("chunks".into(), json!(collected.chunk_count));
        if let Some((ppl, error)) = ppl {
            report.insert("ppl".into(), json!(ppl));
            report.insert("ppl_error".into(), json!(error));
        }
        imatrix.merge(&collected, text_path)?;
    }
    imatrix.write(&args.output, format)?;
    report.insert("output".into(), json!(args.output.display().to_string()));
    report.insert("entries".into(), json!(imatrix.entries.len()));
    report.insert("chunk_size".into(), json!(chunk_size));
    report.insert("datasets".into(), json!(imatrix.datasets));
    if args.json {
        return super::print(&serde_json::to_string_pretty(&report)?);
    }
    let ppl = report
        .get("ppl")
        .map(|p| {
            format!(
                "; perplexity {:.4} ± {:.5}",
                p.as_f64().unwrap_or(f64::NAN),
                report["ppl_error"].as_f64().unwrap_or(f64::NAN)
            )
        })
        .unwrap_or_default();
    super::print(&format!(
        "{}: {} entries, {} chunks of {chunk_size} tokens{ppl}",
        args.output.display(),
        imatrix.entries.len(),
        imatrix.chunk_count
    ))
}

/// Runs the model over `text_path` chunk by chunk, collecting; returns the matrix and, unless
/// `--no-ppl`, the text's perplexity over each chunk's second half with its standard error.
fn collect(
    args: &Args,
    model_args: &ModelArgs,
    text_path: &Path,
    chunk_size: u32,
) -> Result<(Imatrix, Option<(f64, f64)>)> {
    let text = std::fs::read_to_string(text_path).with_context(|| format!("{}: cannot read", text_path.display()))?;
    let (model, context) = model_args.load(false)?;
    let collector = Collector::new(args.process_output);
    let mut decoder = model.collecting_decoder(&context, &collector)?;
    let n_ctx = chunk_size as usize;
    let mut tokens = model.tokenize(&text, true, args.parse_special);
    let skipped = args.skip_chunks.saturating_mul(n_ctx);
    if args.skip_chunks > 0 && (args.skip_chunks + 2).saturating_mul(n_ctx) >= tokens.len() {
        bail!(
            "{}: {} tokens leave too few after skipping {} chunks of {n_ctx}",
            text_path.display(),
            tokens.len(),
            args.skip_chunks
        );
    }
    tokens.drain(..skipped.min(tokens.len()));
    if tokens.len() < 2 * n_ctx {
        bail!(
            "{}: {} tokens; chunks of {n_ctx} need at least {} (llama-imatrix's rule; lower -c)",
            text_path.display(),
            tokens.len(),
            2 * n_ctx
        );
    }
    let n_chunks = (tokens.len() / n_ctx).min(args.chunks.unwrap_or(usize::MAX));
    if n_chunks == 0 {
        bail!("--chunks 0: nothing to run");
    }
    let bar = indicatif::ProgressBar::with_draw_target(Some(n_chunks as u64), indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template("imatrix [{bar:30}] {pos}/{len} chunks, {eta} left {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let bos = model.bos_added();
    let (mut nll, mut nll2, mut count) = (0.0f64, 0.0f64, 0usize);
    for chunk in tokens.chunks_exact(n_ctx).take(n_chunks) {
        let mut input = chunk.to_vec();
        if let Some(bos) = bos {
            input[0] = bos;
        }
        let first = n_ctx / 2;
        let scored = logits_each(&mut decoder, &input, |i, logits| {
            if !args.no_ppl && i >= first && i + 1 < n_ctx {
                let v = -log_softmax(logits)[chunk[i + 1] as usize];
                nll += v;
                nll2 += v * v;
                count += 1;
            }
        });
        if let Err(e) = scored {
            bar.finish_and_clear();
            return Err(collector.take_error().map_or(e, |said| anyhow::anyhow!("{}: {said}", model.path.display())));
        }
        if count > 0 {
            bar.set_message(format!("perplexity {:.4}", (nll / count as f64).exp()));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    drop(decoder);
    let ppl = (count > 1).then(|| {
        let (mean, mean2) = (nll / count as f64, nll2 / count as f64);
        let ppl = mean.exp();
        (ppl, ((mean2 - mean * mean).max(0.0) / (count - 1) as f64).sqrt() * ppl)
    });
    Ok((collector.into_imatrix(&text_path.display().to_string(), n_chunks as u32, chunk_size), ppl))
}
