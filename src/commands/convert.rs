//! `strata convert MODEL_DIR -o OUT.gguf --type PRESET`: a Hugging Face folder to GGUF in one
//! pass, with the per-layer embedding table's type chosen on its own (`--ple-type`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;
use strata_convert::convert::{plan, plan_mmproj, Options, Plan};
use strata_convert::importance::{ImatrixInput, Importance};
use strata_convert::mmproj::{self, Found, Towers};
use strata_convert::policy::{quantizable_type, Preset};
use strata_quantize::GgmlType;

use super::human_bytes;
use strata_run::catalog::Catalog;
use strata_run::hub_cache::{self, HubModel};
use strata_run::media_cost::MediaCost;
use strata_run::planning;

#[derive(clap::Args)]
pub struct Args {
    /// The Hugging Face model folder (config.json, *.safetensors, tokenizer.json), or
    /// hf:OWNER/NAME, the repository's snapshot in the Hugging Face cache.
    #[arg(value_name = "MODEL_DIR", value_parser = checkpoint_dir)]
    pub model: PathBuf,
    /// The GGUF file to write.
    #[arg(short = 'o', long = "outfile", value_name = "OUT.gguf", required_unless_present = "dry_run")]
    pub out: Option<PathBuf>,
    /// The mix: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q2_k_s, q3_k_s, q3_k_m, q3_k_l, q4_k_s, q4_k_m, q5_k_s, q5_k_m, q6_k, iq4_nl, iq4_xs
    /// (default: q8_0, or what `strata plan` recommends for --device).
    #[arg(long = "type")]
    pub preset: Option<String>,
    /// Type of the per-layer embedding table (default: the preset's base type).
    #[arg(long = "ple-type", value_name = "TYPE")]
    pub ple_type: Option<String>,
    /// REGEX=TYPE: give matching tensors (GGUF names) this type (repeatable; first match wins).
    #[arg(long = "tensor-type", value_name = "REGEX=TYPE")]
    pub tensor_type: Vec<String>,
    /// Weight the quantizers with this importance matrix (`strata imatrix` or llama-imatrix;
    /// GGUF or legacy .dat), as llama-quantize --imatrix does.
    #[arg(long, value_name = "FILE")]
    pub imatrix: Option<PathBuf>,
    /// Threads for quantizing (default: all cores).
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
    /// Choose --type and --ple-type as `strata plan` recommends for this models.toml device
    /// profile, or "auto" for this machine (flags given explicitly still win).
    #[arg(long, value_name = "NAME|auto")]
    pub device: Option<String>,
    /// Context size the --device recommendation leaves room for.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 4096)]
    pub ctx_size: u64,
    /// Where to write the projector file (llama.cpp's mmproj) of a checkpoint with a vision or
    /// audio tower (default: mmproj-OUT.gguf beside OUT.gguf).
    #[arg(long, value_name = "MMPROJ.gguf", conflicts_with = "no_mmproj")]
    pub mmproj: Option<PathBuf>,
    /// Write the text model only, without the projector file.
    #[arg(long)]
    pub no_mmproj: bool,
    /// The projector file's type: f32, f16, bf16 or q8_0 (default: the checkpoint's float type,
    /// F16 for F32 checkpoints, as llama.cpp's converter; some tensors keep the type that
    /// converter forces, which --explain says).
    #[arg(long, value_name = "TYPE", conflicts_with = "no_mmproj")]
    pub mmproj_type: Option<String>,
    /// Print the plan without writing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Also list every tensor with its type and the rule that chose it (as llama-quantize's
    /// per-tensor log).
    #[arg(long)]
    pub explain: bool,
    /// Print the plan and the output path as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The preset and PLE type: the flags, else the device plan's recommendation, else q8_0.
fn choose_types(args: &Args) -> Result<(Preset, Option<GgmlType>)> {
    let flag_ple = args.ple_type.as_deref().map(quantizable_type).transpose().map_err(|e| e.context("--ple-type"))?;
    let flag_preset = args.preset.as_deref().map(Preset::from_name).transpose()?;
    let Some(device) = &args.device else {
        return Ok((flag_preset.unwrap_or(Preset::Q8_0), flag_ple));
    };
    let catalog = Catalog::builtin()?;
    let shape = strata_convert::convert::folder_shape(&args.model)?;
    let budget = super::device_budget(device, &catalog)?;
    // As the runner will load it: lazy mode on (its default).
    // With the towers convert writes beside the model, unless told not to.
    let towers = if args.no_mmproj { None } else { MediaCost::from_folder(&args.model, mmproj_type(args)?)? };
    let mixes = planning::mixes(&shape, &budget, args.ctx_size, 512, planning::LazyMode::On, towers.as_ref())?;
    let (i, reason) = planning::recommend(&mixes, &budget)
        .ok_or_else(|| anyhow!("--device {device}: {}", planning::shortfall(&mixes, &budget)))?;
    let m = &mixes[i];
    eprintln!("--device {device}: {}: {reason}", m.convert_flags());
    Ok((flag_preset.unwrap_or(m.body), flag_ple.or(m.ple)))
}

/// The checkpoint folder: a path, or `hf:OWNER/NAME` in the Hugging Face cache.
fn checkpoint_dir(arg: &str) -> Result<PathBuf, String> {
    match HubModel::parse(arg) {
        None => Ok(PathBuf::from(arg)),
        Some(model) => model?.checkpoint(&hub_cache::cache_dir()?),
    }
}

pub fn run(args: &Args) -> Result<()> {
    let (preset, ple_type) = choose_types(args)?;
    let imatrix = args
        .imatrix
        .as_ref()
        .map(|path| {
            Ok::<_, anyhow::Error>(ImatrixInput { path: path.clone(), imatrix: strata_gguf::Imatrix::read(path)? })
        })
        .transpose()?;
    let opts = Options { preset, ple_type, tensor_types: args.tensor_type.clone(), imatrix };
    let mut plan = plan(&args.model, &opts)?;
    let projector = projector_plan(args)?;
    if let Projector::Planned(_, towers) = &projector {
        plan.skipped.retain(|name| towers.map(name).is_none());
    }
    let mmproj_out = match (&projector, &args.out) {
        (Projector::Planned(..), Some(out)) => Some(args.mmproj.clone().unwrap_or_else(|| default_mmproj_path(out))),
        _ => None,
    };

    if !args.json {
        let out = args.out.as_ref().map_or("(dry run)".to_string(), |o| o.display().to_string());
        let mut text = describe(&plan, &format!("{} -> {out} ({})", args.model.display(), opts.preset), args.explain);
        if let Some(imatrix) = &opts.imatrix {
            text += &importance_summary(&imatrix.path, &plan.tensors);
        }
        if let Some(first) = plan.skipped.first() {
            text += &format!(
                "  skipped {} checkpoint tensors llama.cpp does not use (first: {first})\n",
                plan.skipped.len()
            );
        }
        match &projector {
            Projector::Planned(mmproj, _) => {
                let out = mmproj_out.as_ref().map_or("(dry run)".to_string(), |o| o.display().to_string());
                text += &describe(mmproj, &format!("projector -> {out}"), args.explain);
            }
            Projector::NotYet(what) => text += &format!("  no projector file: strata does not convert {what} yet\n"),
            Projector::None => {}
        }
        super::print(&text)?;
    }
    let report = |output: Option<&PathBuf>, mmproj_output: Option<&PathBuf>| {
        let mut r = json_report(&plan, output);
        r["preset"] = json!(opts.preset.name());
        r["skipped"] = json!(plan.skipped);
        r["mmproj"] = match &projector {
            Projector::Planned(mmproj, _) => json_report(mmproj, mmproj_output),
            Projector::NotYet(what) => json!({"unsupported": what}),
            Projector::None => serde_json::Value::Null,
        };
        r
    };
    let Some(out) = args.out.as_ref().filter(|_| !args.dry_run) else {
        return if args.json { super::print(&serde_json::to_string_pretty(&report(None, None))?) } else { Ok(()) };
    };

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads.unwrap_or(0))
        .build()
        .context("cannot start threads")?;
    let mmproj = match &projector {
        Projector::Planned(mmproj, _) => Some(mmproj),
        _ => None,
    };
    let n_tensors = plan.tensors.len() + mmproj.map_or(0, |p| p.tensors.len());
    let bar = indicatif::ProgressBar::with_draw_target(Some(n_tensors as u64), indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template("converting [{bar:30}] {pos}/{len} tensors, {elapsed}")
            .expect("valid")
            .progress_chars("=> "),
    );
    let signals = strata_gguf::remove_partial_files;
    ctrlc::set_handler(move || {
        signals();
        eprintln!("\ninterrupted: no output written");
        std::process::exit(130);
    })
    .context("cannot install the Ctrl-C handler")?;
    // The projector first (it is small), and removed again if the text model cannot be written:
    // a failed conversion leaves no file.
    if let (Some(mmproj), Some(path)) = (mmproj, &mmproj_out) {
        pool.install(|| mmproj.write(path, |_| bar.inc(1)))?;
    }
    if let Err(e) = pool.install(|| plan.write(out, |_| bar.inc(1))) {
        if let Some(path) = &mmproj_out {
            let _ = std::fs::remove_file(path);
        }
        return Err(e);
    }
    bar.finish_and_clear();

    if args.json {
        super::print(&serde_json::to_string_pretty(&report(Some(out), mmproj_out.as_ref()))?)
    } else {
        let also = mmproj_out.map(|p| format!(" and {}", p.display())).unwrap_or_default();
        super::print(&format!("wrote {}{also}", out.display()))
    }
}

/// The projector file a conversion writes, if any.
enum Projector {
    None,
    /// The checkpoint has towers strata does not convert yet (what they are).
    NotYet(&'static str),
    Planned(Plan, Box<dyn Towers>),
}

/// The projector plan for `--mmproj`, `--no-mmproj` and `--mmproj-type`: towers strata converts
/// are planned unless `--no-mmproj`; asking for a projector a checkpoint cannot give is an error.
fn projector_plan(args: &Args) -> Result<Projector> {
    let ty = mmproj_type(args)?;
    if args.no_mmproj {
        return Ok(Projector::None);
    }
    let asked = args.mmproj.is_some() || ty.is_some();
    let dir = &args.model;
    match mmproj::for_folder(dir)? {
        Found::Towers(towers) => Ok(Projector::Planned(plan_mmproj(dir, towers.as_ref(), ty)?, towers)),
        Found::NotYet(what) if asked => bail!("{}: strata does not convert {what} yet", dir.display()),
        Found::NotYet(what) => Ok(Projector::NotYet(what)),
        Found::None if asked => {
            bail!("{}: no projector to write: config.json names no vision or audio tower", dir.display())
        }
        Found::None => Ok(Projector::None),
    }
}

/// `--mmproj-type`, checked.
fn mmproj_type(args: &Args) -> Result<Option<GgmlType>> {
    args.mmproj_type
        .as_deref()
        .map(|name| match quantizable_type(name) {
            Ok(t @ (GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 | GgmlType::Q8_0)) => Ok(t),
            _ => Err(anyhow!("--mmproj-type {name}: a projector file is f32, f16, bf16 or q8_0")),
        })
        .transpose()
}

/// llama.cpp's name for a model's projector: `mmproj-` before the model's file name, beside it
/// (where convert writes it, and where the runners look for it).
pub fn default_mmproj_path(model: &Path) -> PathBuf {
    let name = model.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    model.with_file_name(format!("mmproj-{name}"))
}

/// A plan as text: class -> type -> count and bytes, the fallbacks, and with `explain` every
/// tensor with its type and the rule that chose it.
fn describe(plan: &Plan, title: &str, explain: bool) -> String {
    let mut text = format!("{title}:\n");
    text += &format!("  {:22} {:8} {:>6} {:>12}\n", "class", "type", "count", "bytes");
    for ((class, ty), (count, bytes)) in &class_table(plan) {
        text += &format!("  {class:22} {ty:8} {count:>6} {:>12}\n", human_bytes(*bytes));
    }
    let total: u64 = plan.tensors.iter().map(|t| t.info.n_bytes()).sum();
    text += &format!("  total {} in {} tensors\n", human_bytes(total), plan.tensors.len());
    let fallbacks = fallbacks(plan);
    if !fallbacks.is_empty() {
        text += &format!("  {} tensors fall back to a type whose blocks fit their rows:\n", fallbacks.len());
        for f in &fallbacks {
            text += &format!("    {f}\n");
        }
    }
    if explain {
        let width = plan.tensors.iter().map(|t| t.info.name.len()).max().unwrap_or(0);
        text += &format!("  {:width$}  {:22} {:8} why\n", "tensor", "class", "type");
        for t in &plan.tensors {
            // Float tensors are never weighted; saying so on each line would be noise.
            let silent = t.importance == Importance::NotGiven || t.info.ty.block_size() == 1;
            let importance = if silent { String::new() } else { format!("; {}", t.importance) };
            text += &format!(
                "  {:width$}  {:22} {:8} {}{importance}\n",
                t.info.name,
                t.choice.class.name(),
                t.info.ty.name(),
                t.choice.reason(t.info.shape[0])
            );
        }
    }
    text
}

/// class -> type -> (count, bytes).
fn class_table(plan: &Plan) -> BTreeMap<(&'static str, &'static str), (usize, u64)> {
    let mut table: BTreeMap<(&str, &str), (usize, u64)> = BTreeMap::new();
    for t in &plan.tensors {
        let e = table.entry((t.choice.class.name(), t.info.ty.name())).or_default();
        e.0 += 1;
        e.1 += t.info.n_bytes();
    }
    table
}

/// The tensors whose type fell back, one line each.
fn fallbacks(plan: &Plan) -> Vec<String> {
    plan.tensors
        .iter()
        .filter_map(|t| {
            t.choice
                .fell_back_from
                .map(|from| format!("{} ({} columns): {from} -> {}", t.info.name, t.info.shape[0], t.info.ty))
        })
        .collect()
}

/// A plan as `--json` gives it: the output, the class table, every tensor, the fallbacks and the
/// total.
fn json_report(plan: &Plan, output: Option<&PathBuf>) -> serde_json::Value {
    let rows: Vec<_> = class_table(plan)
        .iter()
        .map(|((class, ty), (count, bytes))| json!({"class": class, "type": ty, "count": count, "bytes": bytes}))
        .collect();
    let tensors: Vec<_> = plan
        .tensors
        .iter()
        .map(|t| json!({"name": t.info.name, "class": t.choice.class.name(), "type": t.info.ty.name(), "reason": t.choice.reason(t.info.shape[0]), "imatrix": t.importance.name()}))
        .collect();
    let total: u64 = plan.tensors.iter().map(|t| t.info.n_bytes()).sum();
    json!({"output": output, "plan": rows, "tensors": tensors, "fallbacks": fallbacks(plan), "total_bytes": total})
}

/// What the imatrix does in this conversion: how many tensors it weights, which quantized ones
/// it has no entry for, and that the get_rows tables take their types from the policy alone.
fn importance_summary(path: &std::path::Path, tensors: &[strata_convert::convert::Planned]) -> String {
    let named = |want: fn(&Importance) -> bool| -> Vec<&str> {
        tensors.iter().filter(|t| want(&t.importance)).map(|t| t.info.name.as_str()).collect()
    };
    let weighted = named(|i| matches!(i, Importance::Weighted(_)));
    let missing = named(|i| *i == Importance::NoEntry);
    let get_rows = named(|i| *i == Importance::GetRows);
    let mut text = format!("  imatrix {}: weights {} tensors\n", path.display(), weighted.len());
    if !missing.is_empty() {
        text += &format!("    no entry, quantized without weights: {}\n", missing.join(", "));
    }
    if !get_rows.is_empty() {
        text += &format!("    read with get_rows, never multiplied by an activation, so no imatrix covers them (their types are the policy's alone): {}\n", get_rows.join(", "));
    }
    text
}
