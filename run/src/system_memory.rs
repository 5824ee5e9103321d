//! The system's memory, as /proc/meminfo reports it, and this process's, as
//! /proc/self/status does.

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
        let kib = |key: &str| kib_field(meminfo, key);
        Some(Ram { total: kib("MemTotal:")?, available: kib("MemAvailable:")? })
    }
}

/// This process's resident memory in bytes, from /proc/self/status: the peak, and now, split
/// into anonymous memory (heap, buffers) and file-backed pages (the mapped model).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ProcessMemory {
    pub peak_rss: u64,
    pub rss_anon: u64,
    pub rss_file: u64,
}

impl ProcessMemory {
    pub fn read() -> Result<ProcessMemory> {
        let text = std::fs::read_to_string("/proc/self/status").context("/proc/self/status: cannot read")?;
        ProcessMemory::parse(&text).context("/proc/self/status: no VmHWM, RssAnon or RssFile line")
    }

    fn parse(status: &str) -> Option<ProcessMemory> {
        let kib = |key: &str| kib_field(status, key);
        Some(ProcessMemory { peak_rss: kib("VmHWM:")?, rss_anon: kib("RssAnon:")?, rss_file: kib("RssFile:")? })
    }
}

/// The value of a `Key:   1234 kB` line, in bytes.
fn kib_field(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].trim().trim_end_matches("kB").trim().parse::<u64>().ok().map(|k| k * 1024)
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

    #[test]
    fn reads_process_status() {
        let m = ProcessMemory::parse("VmPeak:  9 kB\nVmHWM:    300 kB\nRssAnon:   100 kB\nRssFile:   150 kB\n").unwrap();
        assert_eq!((m.peak_rss, m.rss_anon, m.rss_file), (300 * 1024, 100 * 1024, 150 * 1024));
        assert!(ProcessMemory::read().unwrap().peak_rss > 0);
    }
}
