//! `strata pull [hf:]OWNER/NAME:QUANT`: a GGUF repository's files of one quantization (every
//! part of a split model) and its projector file (mmproj), fetched from the Hugging Face Hub into
//! its cache ([`crate::hub::download`]), where `hf:OWNER/NAME:QUANT` then finds them.

use anyhow::{anyhow, bail, Result};
use strata_run::hub_cache::{self, carries, split_part, HubModel};

use super::human_bytes;
use crate::hub::{download, Hub};

#[derive(clap::Args)]
pub struct Args {
    /// hf:OWNER/NAME:QUANT (or OWNER/NAME:QUANT): a GGUF repository and the quantization to
    /// fetch, as llama.cpp's -hf names them.
    pub model: String,
    /// Leave the repository's projector file (mmproj) behind.
    #[arg(long)]
    pub no_mmproj: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let name = if args.model.starts_with("hf:") { args.model.clone() } else { format!("hf:{}", args.model) };
    let model = HubModel::parse(&name).expect("an hf: name").map_err(|e| anyhow!(e))?;
    let cache = hub_cache::cache_dir().map_err(|e| anyhow!(e))?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(pull(&model, &cache, !args.no_mmproj))
}

async fn pull(model: &HubModel, cache: &std::path::Path, mmproj: bool) -> Result<()> {
    let hub = Hub::from_env()?;
    let repo = &model.repo;
    let listing = hub.list(repo).await?;
    let mut ggufs: Vec<&String> = listing.files.iter().filter(|f| f.to_ascii_lowercase().ends_with(".gguf")).collect();
    ggufs.sort();
    let is_projector = |f: &str| f.to_ascii_lowercase().contains("mmproj");
    let models: Vec<&String> = ggufs.iter().copied().filter(|f| !is_projector(f)).collect();
    if models.is_empty() {
        bail!("{repo}: no GGUF model in the repository (strata pull fetches GGUF repositories)");
    }
    let listed = || {
        models
            .iter()
            .filter(|f| split_part(f).is_none_or(|p| p == 1))
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(quant) = &model.quant else {
        bail!("{repo}: name the quantization to fetch, as hf:{repo}:Q4_K_M; the repository has {}", listed());
    };
    let mut wanted: Vec<&String> = models.iter().copied().filter(|f| carries(f, quant)).collect();
    if wanted.is_empty() {
        bail!("{repo}: no GGUF file carries {quant}; the repository has {}", listed());
    }
    // A projector: the F16 one where there are several, as llama.cpp's -hf takes.
    let projectors: Vec<&String> = ggufs.iter().copied().filter(|f| is_projector(f)).collect();
    let projector = projectors.iter().find(|f| carries(f, "F16")).or(projectors.first()).copied();
    wanted.extend(projector.filter(|_| mmproj));
    let mut metas = Vec::new();
    for file in &wanted {
        metas.push(hub.meta(repo, &listing.commit, file).await?);
    }
    let total: u64 = metas.iter().map(|m| m.size).sum();
    let bar = indicatif::ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bytes}/{total_bytes} {wide_bar} {bytes_per_sec} ETA {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut paths = Vec::new();
    for (file, meta) in wanted.iter().zip(&metas) {
        paths.push(download::into_cache(&hub, cache, repo, &listing.commit, file, meta, &bar).await?);
    }
    bar.finish_and_clear();
    for (path, meta) in paths.iter().zip(&metas) {
        println!("{} ({})", path.display(), human_bytes(meta.size));
    }
    println!(
        "pulled hf:{repo}:{quant} at {}: run it as hf:{repo}:{quant}",
        &listing.commit[..listing.commit.len().min(12)]
    );
    Ok(())
}
