//! `strata devices [--rpc HOST:PORT,...] [--json]`: what this machine offers a model: llama.cpp's
//! compute devices (and RPC servers') with their free and total memory, system RAM, and what the
//! linked ggml was compiled with.

use anyhow::Result;
use serde::Serialize;
use strata_run::system_memory::Ram;

use super::human_bytes;
use crate::llama::{self, BuildInfo, Device};

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON: {"devices": [{"name", "description", "kind", "memory_total", "memory_free"}], "ram": {"total", "available"},
    /// "ggml": {"system_info", "backends": [{"name", "features": {"AVX2": "1", ...}}]}}.
    #[arg(long)]
    pub json: bool,
    /// RPC servers (`strata rpc-server` or llama.cpp's) whose devices to list too.
    #[arg(long, value_name = "HOST:PORT,...", value_delimiter = ',')]
    pub rpc: Vec<String>,
    /// Seconds to wait for the RPC servers' answers.
    #[arg(long = "rpc-timeout", value_name = "SECONDS", default_value_t = 120)]
    pub rpc_timeout: u64,
}

#[derive(Serialize)]
struct Report {
    devices: Vec<Device>,
    ram: Ram,
    ggml: BuildInfo,
}

pub fn run(args: &Args) -> Result<()> {
    let report = Report {
        devices: llama::devices(&args.rpc, std::time::Duration::from_secs(args.rpc_timeout))?,
        ram: Ram::read()?,
        ggml: llama::build_info(),
    };
    if args.json {
        return super::print(&serde_json::to_string_pretty(&report)?);
    }
    let mut out = format!("{:<8} {:<15} {:>12} {:>12}  {}\n", "device", "kind", "free", "total", "description");
    for d in &report.devices {
        out += &format!(
            "{:<8} {:<15} {:>12} {:>12}  {}\n",
            d.name,
            d.kind.to_string(),
            human_bytes(d.memory_free),
            human_bytes(d.memory_total),
            d.description
        );
    }
    out += &format!(
        "{:<8} {:<15} {:>12} {:>12}  system memory\n",
        "RAM",
        "",
        human_bytes(report.ram.available),
        human_bytes(report.ram.total)
    );
    out += "\nggml built with:\n";
    for b in &report.ggml.backends {
        let features: Vec<String> = b
            .features
            .iter()
            .map(|(k, v)| if v == "1" { k.clone() } else { format!("{k}={}", v.as_str().unwrap_or_default()) })
            .collect();
        out += &format!("  {}: {}\n", b.name, features.join(" "));
    }
    super::print(&out)
}
