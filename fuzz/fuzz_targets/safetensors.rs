//! safetensors headers in memory, then whole checkpoints on disk: the input's NUL-separated
//! parts are `model.safetensors.index.json` (when non-empty) and the shards it may name,
//! `model-00001-of-00002.safetensors` and `model-00002-of-00002.safetensors` (without an index,
//! the first shard is `model.safetensors`). Every tensor that opens is read row by row.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use strata_convert::safetensors::{parse_tensors, Checkpoint};

const SHARDS: [&str; 2] = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"];

fuzz_target!(|data: &[u8]| {
    // The whole input as one file: the header parser alone, at full speed.
    let _ = parse_tensors(data);

    // Length prefixes and data may hold NULs, so the split is at a 4-byte marker instead.
    let parts: Vec<&[u8]> = split(data, b"\0\0\xff\0");
    let dir = common::scratch_dir();
    let index = parts.first().copied().unwrap_or_default();
    if !index.is_empty() {
        std::fs::write(dir.join("model.safetensors.index.json"), index).unwrap();
        for (name, body) in SHARDS.iter().zip(parts.iter().skip(1)) {
            std::fs::write(dir.join(name), body).unwrap();
        }
    } else if let Some(body) = parts.get(1) {
        std::fs::write(dir.join("model.safetensors"), body).unwrap();
    }
    let Ok(ckpt) = Checkpoint::open(&dir) else { return };
    let mut out = Vec::new();
    for t in ckpt.tensors() {
        let width = t.row_width();
        let rows = t.n_elements().checked_div(width).unwrap_or(0);
        let step = rows.div_ceil(4).max(1);
        let mut start = 0;
        while start < rows {
            let end = (start + step).min(rows);
            ckpt.read_rows(t, start..end, &mut out);
            assert_eq!(out.len(), (end - start) * width);
            start = end;
        }
        ckpt.release(t);
        assert!(ckpt.get(&t.name).is_some());
    }
});

fn split<'a>(data: &'a [u8], sep: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(i) = rest.windows(sep.len()).position(|w| w == sep) {
        out.push(&rest[..i]);
        rest = &rest[i + sep.len()..];
    }
    out.push(rest);
    out
}
