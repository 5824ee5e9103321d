//! `strata models`: the GGUF models in the Hugging Face cache (repository, file, type mix, size,
//! last use), and `strata models rm hf:OWNER/NAME[:QUANT]` to remove one.

use std::time::SystemTime;

use anyhow::{anyhow, Result};
use serde_json::json;
use strata_gguf::GgufFile;
use strata_run::hub_cache::{self, HubModel};

use super::human_bytes;
use super::inspect::tally_by;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub action: Option<Action>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Subcommand)]
pub enum Action {
    /// Remove a model from the cache (every part of a split model), as huggingface_hub deletes
    /// files: links, the blobs no other link uses, folders left empty.
    Rm {
        /// hf:OWNER/NAME[:QUANT]
        model: String,
    },
}

pub fn run(args: &Args) -> Result<()> {
    let cache = hub_cache::cache_dir().map_err(|e| anyhow!(e))?;
    if let Some(Action::Rm { model }) = &args.action {
        let named =
            HubModel::parse(model).ok_or_else(|| anyhow!("{model}: name a cached model as hf:OWNER/NAME[:QUANT]"))?;
        let removed = named.map_err(|e| anyhow!(e))?.remove(&cache).map_err(|e| anyhow!(e))?;
        return super::print(&format!("removed {}", removed.join(", ")));
    }
    let files = hub_cache::list(&cache);
    let rows: Vec<_> = files
        .iter()
        .map(|f| {
            // The header only: the type mix, by bytes.
            let types = GgufFile::open_keeping(&f.path, |_| false).map(|g| {
                let mut by_type: Vec<(String, u64)> =
                    tally_by(&g, |t| t.ty).into_iter().map(|(ty, t)| (ty.name().to_string(), t.bytes)).collect();
                by_type.sort_by_key(|t| std::cmp::Reverse(t.1));
                by_type
            });
            (f, types)
        })
        .collect();
    if args.json {
        let models: Vec<_> = rows
            .iter()
            .map(|(f, types)| {
                json!({
                    "repo": f.repo, "file": f.name, "path": f.path, "bytes": f.bytes,
                    "types": types.as_ref().map(|t| t.iter().map(|(ty, b)| json!({"type": ty, "bytes": b})).collect::<Vec<_>>()).ok(),
                    "error": types.as_ref().err().map(|e| format!("{e:#}")),
                    "last_used_unix": f.last_used.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()).map(|d| d.as_secs()),
                })
            })
            .collect();
        return super::print(&serde_json::to_string_pretty(&json!({"cache": cache, "models": models}))?);
    }
    if rows.is_empty() {
        return super::print(&format!("no GGUF models in the Hugging Face cache ({})", cache.display()));
    }
    let mut out = format!("{:<44} {:<44} {:<28} {:>10}  last used\n", "repository", "file", "types (by bytes)", "size");
    for (f, types) in &rows {
        let mix = match types {
            Ok(t) => {
                let total = t.iter().map(|(_, b)| b).sum::<u64>().max(1);
                let shown: Vec<String> = t.iter().take(3).map(|(ty, b)| format!("{ty} {}%", b * 100 / total)).collect();
                shown.join(", ")
            }
            Err(_) => "not a readable GGUF".to_string(),
        };
        out +=
            &format!("{:<44} {:<44} {:<28} {:>10}  {}\n", f.repo, f.name, mix, human_bytes(f.bytes), ago(f.last_used));
    }
    super::print(&out)
}

/// How long ago, in the largest whole unit.
fn ago(time: Option<SystemTime>) -> String {
    let Some(secs) = time.and_then(|t| SystemTime::now().duration_since(t).ok()).map(|d| d.as_secs()) else {
        return "-".to_string();
    };
    match secs {
        0..60 => "just now".to_string(),
        60..3600 => format!("{} min ago", secs / 60),
        3600..86400 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86400),
    }
}
