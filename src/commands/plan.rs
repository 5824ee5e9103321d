//! `strata plan MODEL [--device NAME|auto] [--device rpc:NAME]... [--ctx N] [--json]`: the
//! quantization mixes of a model (a models.toml name, a Hugging Face folder or a GGUF file) on a
//! device, or on one with others lending memory over RPC, what each needs in GPU (or lent)
//! memory and RAM, and which to use.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;
use strata_gguf::ModelShape;
use strata_run::catalog::{Catalog, KnownModel};
use strata_run::media_cost::MediaCost;
use strata_run::planning::{self, Budget, LazyMode, Mix, Offload};

use super::{device_budget, human_bytes};

#[derive(clap::Args)]
pub struct Args {
    /// A models.toml name (gemma-4-e2b), a Hugging Face model folder, or a GGUF file.
    pub model: String,
    /// A models.toml device profile, or "auto" for this machine's free memory; again as
    /// `rpc:PROFILE` for each machine that lends its memory over RPC (`--rpc`).
    #[arg(long, default_value = "auto")]
    pub device: Vec<String>,
    /// Context size in tokens the KV cache must hold.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 4096)]
    pub ctx_size: u64,
    /// Tokens per batch (sizes the compute buffers).
    #[arg(short = 'b', long = "batch-size", default_value_t = 512)]
    pub batch_size: u64,
    /// How the runner will read the PLE table (gemma4 reads it lazily unless off): on (strata's
    /// default), auto, off; lazily read, it costs disk, not RAM.
    #[arg(long = "lazy-mode", value_name = "on|auto|off", default_value = "on")]
    pub lazy_mode: LazyMode,
    /// The mixes will be converted with an importance matrix (`convert --imatrix`): show the
    /// quality measured that way (models.toml's `[quality.NAME.imatrix]`).
    #[arg(long)]
    pub imatrix: bool,
    /// The projector file (mmproj) whose towers to count; by default the one beside a GGUF
    /// under llama.cpp's name, the towers convert writes from a folder, or a known model's.
    #[arg(long, value_name = "FILE", conflicts_with = "no_mmproj")]
    pub mmproj: Option<std::path::PathBuf>,
    /// Plan without the vision and audio towers (the text model alone).
    #[arg(long)]
    pub no_mmproj: bool,
    /// Read device profiles and models from this file instead of the built-in models.toml.
    #[arg(long, value_name = "FILE")]
    pub catalog: Option<std::path::PathBuf>,
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    if args.ctx_size == 0 || args.batch_size == 0 {
        bail!("--ctx-size and --batch-size must be at least 1");
    }
    let catalog = match &args.catalog {
        Some(path) => {
            Catalog::parse(&std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?)
                .with_context(|| path.display().to_string())?
        }
        None => Catalog::builtin()?,
    };
    let shape = planning::model_shape(&args.model, &catalog)?;
    let known = catalog.models.get(&args.model).filter(|_| !Path::new(&args.model).exists());
    let (local, remotes) = args.device.split_first().expect("clap gives the default");
    if local.starts_with("rpc:") {
        bail!("--device {local}: the first --device is the machine that runs the model; machines lending memory over RPC come after it");
    }
    let remotes = remotes
        .iter()
        .map(|d| match d.strip_prefix("rpc:") {
            Some(name) if name != "auto" => Ok(Budget::profile(name, catalog.device(name)?)),
            _ => bail!("--device {d}: after the first, each --device is rpc:PROFILE (a models.toml device profile)"),
        })
        .collect::<Result<Vec<_>>>()?;
    let budget = device_budget(local, &catalog)?.with_remotes(&remotes)?;
    let towers = media_cost(args, known)?;
    let plan = |towers| planning::mixes(&shape, &budget, args.ctx_size, args.batch_size, args.lazy_mode, towers);
    let mut mixes = plan(towers.as_ref())?;
    let quality = catalog.quality.get(&args.model).filter(|_| known.is_some());
    let quality = if args.imatrix { quality.and_then(|q| q.with_imatrix.as_deref()) } else { quality };
    if let Some(q) = quality {
        for m in &mut mixes {
            let base = m.key() == q.base;
            m.kl_mean = q.kl_mean.get(&m.key()).copied().or(base.then_some(0.0));
            m.top1 = q.top1.get(&m.key()).copied().or(base.then_some(1.0));
        }
    }
    let recommended = planning::recommend(&mixes, &budget);
    // What leaving the towers out would change.
    let without = match &towers {
        Some(_) => {
            let mixes = plan(None)?;
            planning::recommend(&mixes, &budget).map(|(i, _)| mixes[i].clone())
        }
        None => None,
    };
    if args.json {
        let out = json!({
            "model": args.model,
            "architecture": shape.arch,
            "repo": known.map(|m| &m.repo),
            "config_source": known.map(|m| &m.source),
            "gguf_package": known.and_then(|m| m.gguf_package.as_ref()),
            "quality_source": quality.map(|q| &q.source),
            "imatrix": args.imatrix,
            "device": budget,
            "ctx_size": args.ctx_size,
            "mixes": mixes,
            "recommended": recommended.as_ref().map(|(i, _)| i),
            "reason": recommended.as_ref().map_or_else(|| planning::shortfall(&mixes, &budget), |(_, r)| r.clone()),
            "towers": towers,
            "recommended_without_towers": without,
        });
        super::print(&serde_json::to_string_pretty(&out)?)?;
    } else {
        let mut text = table(args, &shape, &budget, &mixes, recommended.as_ref().map(|(i, _)| *i));
        if let Some(m) = known {
            text += &format!(
                "\n  model: {} ({}); sizes from its config.json: {} (sources in full: --json)",
                args.model,
                m.repo,
                abridged(&m.source)
            );
        }
        match quality {
            Some(q) => {
                text += &format!("\n  KL: mean KL divergence from {}, measured: {}", q.base, abridged(&q.source))
            }
            None if args.imatrix && known.is_some() => {
                text += "\n  KL: not measured with an importance matrix for this model"
            }
            None => {}
        }
        text += &format!("\n  device: {}", budget.description);
        if let Some(t) = &towers {
            text += &towers_note(t, recommended.as_ref().map(|(i, _)| &mixes[*i]), without.as_ref());
        }
        // The answer, on stdout with the table (`plan X > file` keeps it).
        if let Some((i, reason)) = &recommended {
            text += &format!("\nrecommended: {}: {reason}", mixes[*i].convert_flags());
        }
        super::print(&text)?;
    }
    match recommended {
        Some(_) => Ok(()),
        None => Err(anyhow!("{}", planning::shortfall(&mixes, &budget))),
    }
}

fn table(args: &Args, shape: &ModelShape, budget: &Budget, mixes: &[Mix], recommended: Option<usize>) -> String {
    let gib = |b: u64| human_bytes(b);
    let mut out = format!(
        "{} ({}, {} layers) on {}: {} {}, RAM {}{}, context {}\n",
        args.model,
        shape.arch,
        shape.layers.len(),
        budget.name,
        if budget.rpc_machines > 0 { "GPU and lent over RPC" } else { "GPU" },
        gib(budget.gpu_bytes),
        gib(budget.ram_bytes),
        if budget.shared { " (shared)" } else { "" },
        args.ctx_size
    );
    out += &format!(
        "  {:<7} {:<5} {:>10} {:>15} {:>10} {:>10} {:>10} {:<9} {:>9} {:>8}  fits\n",
        "body", "PLE", "file", "PLE table", "GPU", "RAM", "KV cache", "offload", "tg bound", "KL"
    );
    for (i, m) in mixes.iter().enumerate() {
        let offload = match m.offload {
            Offload::Full => "all".to_string(),
            Offload::Partial(n) => format!("{n}/{}", shape.layers.len()),
            Offload::Cpu => "CPU".to_string(),
        };
        out += &format!(
            "{} {:<7} {:<5} {:>10} {:>15} {:>10} {:>10} {:>10} {:<9} {:>9} {:>8}  {}\n",
            if Some(i) == recommended { "*" } else { " " },
            m.body.name(),
            m.ple.map_or("-", |t| t.name()),
            gib(m.file_bytes),
            match (m.ple, m.ple_lazy) {
                (None, _) => "-".into(),
                (Some(_), false) => gib(m.ple_bytes),
                (Some(_), true) => format!("{} lazy", gib(m.ple_bytes)),
            },
            gib(m.gpu_bytes),
            gib(m.ram_bytes),
            gib(m.kv_bytes),
            offload,
            m.tokens_per_s_bound.map_or("-".into(), |t| format!("{t:.0} t/s")),
            m.kl_mean.map_or("-".into(), |k| format!("{k:.4}")),
            if m.fits { "yes" } else { "no" }
        );
    }
    out += "  (tg bound: generation speed if every weight byte read per token came at the memory's full bandwidth; llama.cpp reaches roughly half to four fifths of it.";
    if mixes.iter().any(|m| m.ple_lazy) {
        out += "\n   A lazy PLE table is read from the file a row per token: RAM counts only the rows a context can touch.";
    }
    out + ")"
}

/// The towers to count: none with `--no-mmproj`; the `--mmproj` file; else the projector beside
/// a GGUF under llama.cpp's name, the towers convert writes from a folder, or a known model's.
fn media_cost(args: &Args, known: Option<&KnownModel>) -> Result<Option<MediaCost>> {
    if args.no_mmproj {
        return Ok(None);
    }
    if let Some(file) = &args.mmproj {
        return MediaCost::from_file(file).map(Some);
    }
    let path = Path::new(&args.model);
    if path.is_dir() {
        return MediaCost::from_folder(path, None);
    }
    if path.is_file() {
        let beside = super::convert::default_mmproj_path(path);
        return beside.is_file().then(|| MediaCost::from_file(&beside)).transpose();
    }
    known.map_or(Ok(None), KnownModel::media_cost)
}

/// The towers' line under the table: what they hold and cost, what a medium costs in context,
/// and what leaving them out would change.
fn towers_note(t: &MediaCost, with: Option<&Mix>, without: Option<&Mix>) -> String {
    let mut parts = Vec::new();
    for (what, bytes) in [("vision", t.vision_bytes), ("audio", t.audio_bytes), ("projector", t.projector_bytes)] {
        if bytes > 0 {
            parts.push(format!("{what} {}", human_bytes(bytes)));
        }
    }
    let mut text = format!(
        "\n  towers at {}: {}, and about {} of encoder buffers (estimated); counted above, where the text model runs\n  towers from: {}",
        t.ty.name(),
        parts.join(", "),
        human_bytes(t.vision_buffer_bytes + t.audio_buffer_bytes),
        abridged(&t.source)
    );
    match t.image_tokens {
        Some((lo, hi)) if lo == hi => text += &format!("\n  an image takes {lo} tokens of the context"),
        Some((lo, hi)) => text += &format!("\n  an image takes {lo} to {hi} tokens of the context, by its size"),
        None => {}
    }
    if let Some(per_s) = t.audio_tokens_per_second {
        text += &format!("; a second of audio {per_s:.0} (a minute: {:.0})", per_s * 60.0);
    }
    let leave_out = format!("leaving the towers out (--no-mmproj) frees {}", human_bytes(t.total_bytes()));
    text += &match (with, without) {
        (Some(w), Some(wo)) if w.key() != wo.key() => {
            format!("\n  {leave_out}: then {} fits instead", wo.convert_flags())
        }
        (None, Some(wo)) => format!("\n  nothing fits with the towers; {leave_out}, and {} fits", wo.convert_flags()),
        _ => format!("\n  {leave_out}; the recommendation stays the same"),
    };
    text
}

/// The first 160 characters of a source note, for the table.
fn abridged(text: &str) -> String {
    match text.char_indices().nth(160) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}
