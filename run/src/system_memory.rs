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

/// Releases this process's resident pages of `ranges` (byte offsets into the file at `path`)
/// from its read-only mapping of that file, keeping the mapping: a later read faults them back
/// in from the page cache or the disk, so nothing changes but the memory held. Only whole pages
/// inside a range are released. Returns the bytes released; 0 where the file is not mapped.
pub fn release_mapped_pages(path: &std::path::Path, ranges: &[std::ops::Range<u64>]) -> Result<u64> {
    let maps = std::fs::read_to_string("/proc/self/maps").context("/proc/self/maps: cannot read")?;
    let target = std::fs::canonicalize(path).with_context(|| format!("{}: cannot resolve", path.display()))?;
    let mut released = 0;
    // "start-end perms offset dev inode path": one line per mapped extent of the file.
    for line in maps.lines() {
        let fields: Vec<&str> = line.splitn(6, ' ').collect();
        if fields.len() < 6
            || std::path::Path::new(fields[5].trim()) != target
            || !fields[1].starts_with('r')
            || fields[1].contains('w')
        {
            continue;
        }
        let (Some((start, end)), Ok(file_offset)) = (fields[0].split_once('-'), u64::from_str_radix(fields[2], 16))
        else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16)) else { continue };
        for r in ranges {
            // The part of the range this extent maps, shrunk to whole pages.
            let lo = r.start.max(file_offset);
            let hi = r.end.min(file_offset + (end - start));
            let (lo, hi) = (lo.next_multiple_of(PAGE), hi / PAGE * PAGE);
            if hi <= lo {
                continue;
            }
            let addr = (start + (lo - file_offset)) as usize;
            // SAFETY: the pages lie inside a read-only mapping of a file; MADV_DONTNEED drops
            // them from this process, and any later access reads the file's contents again.
            if unsafe { madvise(addr as *mut std::ffi::c_void, (hi - lo) as usize, MADV_DONTNEED) } == 0 {
                released += hi - lo;
            }
        }
    }
    Ok(released)
}

const PAGE: u64 = 4096;
const MADV_DONTNEED: i32 = 4;

extern "C" {
    fn madvise(addr: *mut std::ffi::c_void, len: usize, advice: i32) -> i32;
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
        let m =
            ProcessMemory::parse("VmPeak:  9 kB\nVmHWM:    300 kB\nRssAnon:   100 kB\nRssFile:   150 kB\n").unwrap();
        assert_eq!((m.peak_rss, m.rss_anon, m.rss_file), (300 * 1024, 100 * 1024, 150 * 1024));
        assert!(ProcessMemory::read().unwrap().peak_rss > 0);
    }

    #[test]
    fn released_pages_read_back_the_same() {
        let path = std::env::temp_dir().join(format!("strata-release-{}", std::process::id()));
        let data: Vec<u8> = (0..5 * PAGE).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: a read-only map of a file this test owns and does not change.
        let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
        let sum = |m: &[u8]| m.iter().map(|&b| b as u64).sum::<u64>();
        let before = sum(&map);
        let range = 100..3 * PAGE + 10;
        let released = release_mapped_pages(&path, &[range]).unwrap();
        assert_eq!(released, 2 * PAGE, "whole pages inside the range");
        assert_eq!(sum(&map), before, "the pages read back from the file");
        drop(map);
        std::fs::remove_file(&path).unwrap();
    }
}
