//! `strata convert MODEL_DIR -o OUT.gguf --type PRESET`: a Hugging Face folder to GGUF in one
//! pass, with the per-layer embedding table's type chosen on its own (`--ple-type`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::json;
use strata_convert::convert::{plan, Options};
use strata_convert::policy::{quantizable_type, Preset};

use super::inspect::human_bytes;

#[derive(clap::Args)]
pub struct Args {
    /// The Hugging Face model folder (config.json, *.safetensors, tokenizer.json).
    #[arg(value_name = "MODEL_DIR")]
    pub model: PathBuf,
    /// The GGUF file to write.
    #[arg(short = 'o', long = "outfile", value_name = "OUT.gguf")]
    pub out: PathBuf,
    /// The mix: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k_s, q4_k_m, q5_k_m, q6_k.
    #[arg(long = "type", default_value = "q8_0")]
    pub preset: String,
    /// Type of the per-layer embedding table (default: the preset's base type).
    #[arg(long = "ple-type", value_name = "TYPE")]
    pub ple_type: Option<String>,
    /// REGEX=TYPE: give matching tensors (GGUF names) this type (repeatable; first match wins).
    #[arg(long = "tensor-type", value_name = "REGEX=TYPE")]
    pub tensor_type: Vec<String>,
    /// Threads for quantizing (default: all cores).
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
    /// Print the plan and the output path as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let opts = Options {
        preset: Preset::from_name(&args.preset)?,
        ple_type: args.ple_type.as_deref().map(quantizable_type).transpose().map_err(|e| e.context("--ple-type"))?,
        tensor_types: args.tensor_type.clone(),
    };
    let plan = plan(&args.model, &opts)?;

    // The table: class -> type -> count, bytes.
    let mut table: BTreeMap<(&str, &str), (usize, u64)> = BTreeMap::new();
    for t in &plan.tensors {
        let e = table.entry((t.choice.class.name(), t.info.ty.name())).or_default();
        e.0 += 1;
        e.1 += t.info.n_bytes();
    }
    let fallbacks: Vec<String> = plan
        .tensors
        .iter()
        .filter_map(|t| t.choice.fell_back_from.map(|from| format!("{} ({} columns): {from} -> {}", t.info.name, t.info.shape[0], t.info.ty)))
        .collect();
    let total: u64 = plan.tensors.iter().map(|t| t.info.n_bytes()).sum();
    if !args.json {
        let mut text = format!("{} -> {} ({}):\n", args.model.display(), args.out.display(), opts.preset);
        text += &format!("  {:22} {:8} {:>6} {:>12}\n", "class", "type", "count", "bytes");
        for ((class, ty), (count, bytes)) in &table {
            text += &format!("  {class:22} {ty:8} {count:>6} {:>12}\n", human_bytes(*bytes));
        }
        text += &format!("  total {} in {} tensors\n", human_bytes(total), plan.tensors.len());
        if !fallbacks.is_empty() {
            text += &format!("  {} tensors fall back to a type whose blocks fit their rows:\n", fallbacks.len());
            for f in &fallbacks {
                text += &format!("    {f}\n");
            }
        }
        if let Some(first) = plan.skipped.first() {
            text += &format!("  skipped {} checkpoint tensors llama.cpp does not use (first: {first})\n", plan.skipped.len());
        }
        super::print(&text)?;
    }

    let pool = rayon::ThreadPoolBuilder::new().num_threads(args.threads.unwrap_or(0)).build().context("cannot start threads")?;
    let bar = indicatif::ProgressBar::with_draw_target(Some(plan.tensors.len() as u64), indicatif::ProgressDrawTarget::stderr());
    bar.set_style(indicatif::ProgressStyle::with_template("converting [{bar:30}] {pos}/{len} tensors, {elapsed}").expect("valid").progress_chars("=> "));
    let signals = strata_convert::gguf::remove_partial_files;
    ctrlc::set_handler(move || {
        signals();
        eprintln!("\ninterrupted: no output written");
        std::process::exit(130);
    })
    .context("cannot install the Ctrl-C handler")?;
    pool.install(|| plan.write(&args.out, |_| bar.inc(1)))?;
    bar.finish_and_clear();

    if args.json {
        let rows: Vec<_> = table.iter().map(|((class, ty), (count, bytes))| json!({"class": class, "type": ty, "count": count, "bytes": bytes})).collect();
        let report = json!({"output": args.out, "preset": opts.preset.name(), "plan": rows, "fallbacks": fallbacks, "skipped": plan.skipped, "total_bytes": total});
        super::print(&serde_json::to_string_pretty(&report)?)
    } else {
        super::print(&format!("wrote {}", args.out.display()))
    }
}
