//! Hugging Face safetensors checkpoints, single-file or sharded (`model.safetensors.index.json`),
//! memory-mapped. Every header is checked before it is trusted: its length, every tensor's dtype,
//! shape and byte range, and that no two ranges overlap. Data is handed out as f32 rows, a chunk
//! at a time, so converting never holds a whole tensor as f32.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use half::{bf16, f16};
use serde_json::Value;

/// Element types of safetensors files that hold weights we convert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    BF16,
}

impl Dtype {
    fn parse(name: &str) -> Option<Dtype> {
        match name {
            "F32" => Some(Dtype::F32),
            "F16" => Some(Dtype::F16),
            "BF16" => Some(Dtype::BF16),
            _ => None,
        }
    }

    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
        }
    }
}

/// One tensor's place in one shard.
#[derive(Clone, Debug)]
pub struct TensorRef {
    pub name: String,
    pub dtype: Dtype,
    /// PyTorch order: `shape[0]` is the number of rows, the last dimension the row width.
    pub shape: Vec<usize>,
    shard: usize,
    /// Byte range within the shard file.
    start: usize,
    end: usize,
}

impl TensorRef {
    pub fn n_elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// The row width (last dimension; 1 for scalars).
    pub fn row_width(&self) -> usize {
        self.shape.last().copied().unwrap_or(1)
    }
}

struct Shard {
    path: PathBuf,
    map: memmap2::Mmap,
}

/// All the safetensors files of a model folder.
pub struct Checkpoint {
    shards: Vec<Shard>,
    tensors: BTreeMap<String, TensorRef>,
}

/// The most bytes a safetensors JSON header may take (the format's own limit is 100 MB).
const MAX_HEADER: u64 = 100_000_000;

impl Checkpoint {
    /// Opens `dir`'s `model.safetensors`, or the shards its `model.safetensors.index.json` names.
    pub fn open(dir: &Path) -> Result<Checkpoint> {
        let index = dir.join("model.safetensors.index.json");
        let (files, expected): (Vec<PathBuf>, Option<BTreeMap<String, String>>) = if index.is_file() {
            let json: Value = serde_json::from_str(
                &std::fs::read_to_string(&index).with_context(|| format!("{}: cannot read", index.display()))?,
            )
            .with_context(|| format!("{}: not valid JSON", index.display()))?;
            let map =
                json["weight_map"].as_object().ok_or_else(|| anyhow!("{}: no weight_map object", index.display()))?;
            let mut expected = BTreeMap::new();
            for (name, file) in map {
                let file = file
                    .as_str()
                    .ok_or_else(|| anyhow!("{}: weight_map[{name:?}] is not a file name", index.display()))?;
                if file.contains('/') || file.contains("..") {
                    bail!("{}: weight_map[{name:?}] names {file:?}, outside the folder", index.display());
                }
                expected.insert(name.clone(), file.to_string());
            }
            let mut files: Vec<String> = expected.values().cloned().collect();
            files.sort();
            files.dedup();
            (files.into_iter().map(|f| dir.join(f)).collect(), Some(expected))
        } else if dir.join("model.safetensors").is_file() {
            (vec![dir.join("model.safetensors")], None)
        } else {
            bail!("{}: no model.safetensors or model.safetensors.index.json", dir.display());
        };
        let mut shards = Vec::new();
        let mut tensors = BTreeMap::new();
        for (i, path) in files.iter().enumerate() {
            let file = std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
            // SAFETY: read-only map; the checkpoint is not expected to change while converting.
            let map =
                unsafe { memmap2::Mmap::map(&file) }.with_context(|| format!("{}: cannot map", path.display()))?;
            for t in parse_header(&map, i).with_context(|| format!("{}: bad safetensors file", path.display()))? {
                if let Some(prev) = tensors.insert(t.name.clone(), t) {
                    bail!("{}: tensor {:?} is also in {}", path.display(), prev.name, files[prev.shard].display());
                }
            }
            shards.push(Shard { path: path.clone(), map });
        }
        if let Some(expected) = expected {
            for (name, file) in &expected {
                match tensors.get(name) {
                    Some(t) if shards[t.shard].path.file_name().is_some_and(|f| f.to_string_lossy() == *file) => {}
                    Some(t) => bail!(
                        "{}: tensor {name:?} is in {}, the index says {file}",
                        index.display(),
                        shards[t.shard].path.display()
                    ),
                    None => bail!("{}: tensor {name:?} is named in the index but missing from {file}", index.display()),
                }
            }
        }
        Ok(Checkpoint { shards, tensors })
    }

    pub fn get(&self, name: &str) -> Option<&TensorRef> {
        self.tensors.get(name)
    }

    pub fn tensors(&self) -> impl Iterator<Item = &TensorRef> {
        self.tensors.values()
    }

    /// Rows `rows` of a tensor (viewed as rows of its last dimension) as f32. The whole pages
    /// they were read from are then unmapped, so that a table larger than RAM (Gemma 4 E2B's
    /// PLE table is 4.7 GB in BF16) streams through without piling up in memory.
    pub fn read_rows(&self, t: &TensorRef, rows: std::ops::Range<usize>, out: &mut Vec<f32>) {
        let width = t.row_width();
        let size = t.dtype.size();
        let range = t.start + rows.start * width * size..t.start + rows.end * width * size;
        let bytes = &self.shards[t.shard].map[range.clone()];
        out.clear();
        out.reserve(bytes.len() / size);
        match t.dtype {
            Dtype::F32 => out.extend(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
            Dtype::F16 => out.extend(bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())),
            Dtype::BF16 => out.extend(bytes.chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())),
        }
        self.unmap(t.shard, range);
    }

    /// Advises the kernel that a tensor's pages are no longer needed (the pages its reads left
    /// at the edges of their ranges included).
    pub fn release(&self, t: &TensorRef) {
        self.unmap(t.shard, t.start..t.end);
    }

    /// Drops the whole pages inside `range` of a shard's map from this process's memory.
    fn unmap(&self, shard: usize, range: std::ops::Range<usize>) {
        let map = &self.shards[shard].map;
        let page = 4096;
        let start = range.start.div_ceil(page) * page;
        let end = range.end / page * page;
        if end > start {
            // SAFETY: the range lies inside the map; DontNeed on a read-only file map only drops
            // clean pages, which are read again from the file if touched.
            unsafe {
                let _ = map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start);
            }
        }
    }
}

/// The tensors one safetensors file describes, its header parsed and checked against the
/// file's length exactly as [`Checkpoint::open`] checks each shard (for callers that hold the
/// bytes rather than a folder: tests, fuzzing).
pub fn parse_tensors(data: &[u8]) -> Result<Vec<TensorRef>> {
    parse_header(data, 0)
}

/// Parses and checks one shard's header; `shard` is recorded in each reference.
fn parse_header(data: &[u8], shard: usize) -> Result<Vec<TensorRef>> {
    if data.len() < 8 {
        bail!("file is {} bytes, too short for a header", data.len());
    }
    let header_len = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
    if header_len > MAX_HEADER || header_len > (data.len() - 8) as u64 {
        bail!("header claims {header_len} bytes; the file has {} after the length", data.len() - 8);
    }
    let header_end = 8 + header_len as usize;
    let json: Value =
        serde_json::from_slice(&data[8..header_end]).map_err(|e| anyhow!("header is not valid JSON: {e}"))?;
    let entries = json.as_object().ok_or_else(|| anyhow!("header is not a JSON object"))?;
    let data_len = data.len() - header_end;
    let mut out = Vec::new();
    for (name, entry) in entries {
        if name == "__metadata__" {
            continue;
        }
        let dtype_name = entry["dtype"].as_str().ok_or_else(|| anyhow!("tensor {name:?}: no dtype"))?;
        let dtype = Dtype::parse(dtype_name)
            .ok_or_else(|| anyhow!("tensor {name:?}: dtype {dtype_name} is not supported (F32, F16, BF16 are)"))?;
        let shape: Vec<usize> = entry["shape"]
            .as_array()
            .and_then(|a| a.iter().map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok())).collect())
            .ok_or_else(|| anyhow!("tensor {name:?}: shape is not a list of sizes"))?;
        let offsets: Vec<usize> = entry["data_offsets"]
            .as_array()
            .and_then(|a| a.iter().map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok())).collect())
            .filter(|v: &Vec<usize>| v.len() == 2)
            .ok_or_else(|| anyhow!("tensor {name:?}: data_offsets is not [begin, end]"))?;
        let (begin, end) = (offsets[0], offsets[1]);
        if begin > end || end > data_len {
            bail!("tensor {name:?}: data_offsets [{begin}, {end}] lie outside the {data_len} bytes of data");
        }
        let bytes = shape.iter().try_fold(dtype.size(), |acc, &d| acc.checked_mul(d));
        if bytes != Some(end - begin) {
            bail!(
                "tensor {name:?}: {dtype_name} {shape:?} needs {} bytes, its range holds {}",
                bytes.map_or("too many".into(), |b| b.to_string()),
                end - begin
            );
        }
        out.push(TensorRef {
            name: name.clone(),
            dtype,
            shape,
            shard,
            start: header_end + begin,
            end: header_end + end,
        });
    }
    let mut by_start: Vec<&TensorRef> = out.iter().collect();
    by_start.sort_by_key(|t| t.start);
    for pair in by_start.windows(2) {
        if pair[0].end > pair[1].start {
            bail!("tensors {:?} and {:?} overlap", pair[0].name, pair[1].name);
        }
    }
    Ok(out)
}
