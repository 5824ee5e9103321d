//! `strata devices [--json]`: what this machine offers a model: llama.cpp's compute devices
//! with their free and total memory, system RAM, and what the linked ggml was compiled with.

use anyhow::{Context, Result};
use serde::Serialize;

use super::inspect::human_bytes;
use crate::llama::{self, BuildInfo, Device};

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON: {"devices": [{"name", "description", "kind", "memory_total", "memory_free"}], "ram": {"total", "available"},
    /// "ggml": {"system_info", "backends": [{"name", "features": {"AVX2": "1", ...}}]}}.
    #[arg(long)]
    pub json: bool,
}

/// System RAM in bytes, from /proc/meminfo.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Ram {
    pub total: u64,
    pub available: u64,
}

impl Ram {
    pub fn read() -> Result<Ram> {
        let text = std::fs::read_to_string("/proc/meminfo").context("/proc/meminfo: cannot read")?;
        Ram::parse(&text).context("/proc/meminfo: no MemTotal or MemAvailable line")
    }

    fn parse(meminfo: &str) -> Option<Ram> {
        let kib = |key: &str| -> Option<u64> {
            let line = meminfo.lines().find(|l| l.starts_with(key))?;
            line[key.len()..].trim().trim_end_matches("kB").trim().parse::<u64>().ok().map(|k| k * 1024)
        };
        Some(Ram { total: kib("MemTotal:")?, available: kib("MemAvailable:")? })
    }
}

#[derive(Serialize)]
struct Report {
    devices: Vec<Device>,
    ram: Ram,
    ggml: BuildInfo,
}

pub fn run(args: &Args) -> Result<()> {
    let report = Report { devices: llama::devices()?, ram: Ram::read()?, ggml: llama::build_info() };
    if args.json {
        return super::print(&serde_json::to_string_pretty(&report)?);
    }
    let mut out = format!("{:<8} {:<15} {:>12} {:>12}  {}\n", "device", "kind", "free", "total", "description");
    for d in &report.devices {
        out += &format!(
            "{:<8} {:<15} {:>12} {:>12}  {}\n",
            d.name,
            d.kind,
            human_bytes(d.memory_free),
            human_bytes(d.memory_total),
            d.description
        );
    }
    out += &format!("{:<8} {:<15} {:>12} {:>12}  system memory\n", "RAM", "", human_bytes(report.ram.available), human_bytes(report.ram.total));
    out += "\nggml built with:\n";
    for b in &report.ggml.backends {
        let features: Vec<String> = b.features.iter().map(|(k, v)| if v == "1" { k.clone() } else { format!("{k}={}", v.as_str().unwrap_or_default()) }).collect();
        out += &format!("  {}: {}\n", b.name, features.join(" "));
    }
    super::print(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_meminfo() {
        let ram = Ram::parse("MemTotal:       24594164 kB\nMemFree:  1 kB\nMemAvailable:   20000000 kB\n").unwrap();
        assert_eq!((ram.total, ram.available), (24594164 * 1024, 20000000 * 1024));
        assert!(Ram::parse("MemTotal: 5 kB\n").is_none());
    }
}
