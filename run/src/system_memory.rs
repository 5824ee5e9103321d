//! The system's memory, as /proc/meminfo reports it.

use anyhow::{Context, Result};
use serde::Serialize;

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
