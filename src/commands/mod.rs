//! One module per subcommand.

pub mod bench;
pub mod chat;
pub mod convert;
pub mod devices;
pub mod generate;
pub mod imatrix;
pub mod inspect;
pub mod models;
pub mod perplexity;
pub mod plan;
pub mod pull;
pub mod rpc_server;
pub mod run_args;
pub mod serve;
pub mod template;
pub mod tokenize;

use std::io::{ErrorKind, Write};

use anyhow::Result;
use strata_run::catalog::Catalog;
use strata_run::planning::{Budget, LocalGpu};
use strata_run::system_memory::Ram;

use crate::llama::{self, DeviceKind};

/// Writes `text` to stdout, ending it with a newline if it has none; a closed pipe (`strata inspect ... | head`) is not an error.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let newline: &[u8] = if text.ends_with('\n') { b"" } else { b"\n" };
    match out.write_all(text.as_bytes()).and_then(|()| out.write_all(newline)).and_then(|()| out.flush()) {
        Err(e) if e.kind() != ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Bytes in binary units with three significant figures: "129 MiB".
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ if value < 10.0 => format!("{value:.2} {}", UNITS[unit]),
        _ if value < 100.0 => format!("{value:.1} {}", UNITS[unit]),
        _ => format!("{value:.0} {}", UNITS[unit]),
    }
}

/// The memory budget of a models.toml device profile, or of this machine ("auto": its free
/// GPU memory, as llama.cpp reports it, and available RAM).
pub fn device_budget(device: &str, catalog: &Catalog) -> Result<Budget> {
    if device != "auto" {
        return Ok(Budget::profile(device, catalog.device(device)?));
    }
    let gpu = llama::devices(&[], std::time::Duration::ZERO)?
        .into_iter()
        .filter(|d| d.kind == DeviceKind::Gpu)
        .max_by_key(|d| d.memory_free);
    let gpu = gpu.map(|g| LocalGpu { name: g.name, description: g.description, memory_free: g.memory_free });
    Ok(Budget::this_machine(Ram::read()?, gpu))
}
