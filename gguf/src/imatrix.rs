//! Importance matrices: for every weight matrix a model multiplies activations by, the sum of
//! the squared activations per input channel and how many activations were summed — what
//! llama-imatrix collects and llama-quantize weights its quantizers with. Read and written in
//! llama.cpp's GGUF imatrix format (`general.type = imatrix`, `<tensor>.in_sum2` and
//! `<tensor>.counts` per entry) and read and written in its legacy `.dat` format.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use strata_quantize::GgmlType;

use super::value::{Value, ValueType};
use super::write::{layout, write_gguf, PendingFile};
use super::{DEFAULT_ALIGNMENT, MAGIC};

/// Metadata key: the texts the matrix was collected on.
pub const DATASETS_KEY: &str = "imatrix.datasets";
/// Metadata key: how many chunks of text were run.
pub const CHUNK_COUNT_KEY: &str = "imatrix.chunk_count";
/// Metadata key: tokens per chunk.
pub const CHUNK_SIZE_KEY: &str = "imatrix.chunk_size";

const SUMS_SUFFIX: &str = ".in_sum2";
const COUNTS_SUFFIX: &str = ".counts";

/// One weight's statistics: `sums` holds `sums.len() / counts.len()` input channels for each of
/// its matrices (one, or one per expert), `counts` how many activations each matrix saw.
#[derive(Clone, Debug, PartialEq)]
pub struct ImatrixEntry {
    pub sums: Vec<f32>,
    pub counts: Vec<u64>,
}

impl ImatrixEntry {
    /// Input channels per matrix.
    pub fn width(&self) -> usize {
        self.sums.len() / self.counts.len().max(1)
    }
}

/// An importance matrix: entries by weight name (sorted), and where it came from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Imatrix {
    pub entries: BTreeMap<String, ImatrixEntry>,
    pub datasets: Vec<String>,
    pub chunk_count: u32,
    pub chunk_size: u32,
    /// Read from a legacy `.dat` file: its sums are already means scaled by the chunk count
    /// (`counts` holds that count), as llama-imatrix wrote them.
    pub legacy: bool,
}

/// The format an imatrix file is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImatrixFormat {
    Gguf,
    Dat,
}

impl Imatrix {
    /// Reads a GGUF imatrix, or a legacy `.dat` one (a file that does not start with GGUF's
    /// magic). Errors name the file and what is wrong with it.
    pub fn read(path: &Path) -> Result<Imatrix> {
        let file = std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            bail!("{}: is a directory, not an imatrix file", path.display());
        }
        // SAFETY: read-only and dropped before returning, as in GgufFile::open.
        let bytes = unsafe { memmap2::Mmap::map(&file) }.with_context(|| format!("{}: cannot map", path.display()))?;
        Imatrix::parse(&bytes).map_err(|e| anyhow!("{}: not a valid imatrix file: {e}", path.display()))
    }

    /// Parses an imatrix file's bytes: GGUF, or legacy when they do not start with GGUF's magic.
    pub fn parse(bytes: &[u8]) -> Result<Imatrix> {
        let imatrix = if bytes.starts_with(MAGIC) { from_gguf(bytes) } else { from_dat(bytes) }?;
        if imatrix.entries.is_empty() {
            bail!("it holds no entries");
        }
        Ok(imatrix)
    }

    /// Writes the matrix in `format`; the file appears only when complete.
    pub fn write(&self, path: &Path, format: ImatrixFormat) -> Result<()> {
        match format {
            ImatrixFormat::Gguf => self.write_gguf(path),
            ImatrixFormat::Dat => self.write_dat(path),
        }
    }

    /// llama-imatrix's GGUF file, byte for byte: the metadata in its order, then for each entry
    /// by name `<name>.in_sum2` (F32, width × matrices) and `<name>.counts` (F32, 1 × matrices).
    fn write_gguf(&self, path: &Path) -> Result<()> {
        let metadata = vec![
            ("general.type".to_string(), Value::String("imatrix".into())),
            (
                DATASETS_KEY.to_string(),
                Value::Array(ValueType::String, self.datasets.iter().map(|d| Value::String(d.clone())).collect()),
            ),
            (CHUNK_COUNT_KEY.to_string(), Value::U32(self.chunk_count)),
            (CHUNK_SIZE_KEY.to_string(), Value::U32(self.chunk_size)),
        ];
        let mut data: Vec<Vec<f32>> = Vec::new();
        let mut entries = Vec::new();
        for (name, e) in self.entries.iter().filter(|(_, e)| !e.sums.is_empty() && !e.counts.is_empty()) {
            let n_mat = e.counts.len() as u64;
            entries.push((format!("{name}{SUMS_SUFFIX}"), GgmlType::F32, ggml_dims(&[e.width() as u64, n_mat])));
            entries.push((format!("{name}{COUNTS_SUFFIX}"), GgmlType::F32, ggml_dims(&[1, n_mat])));
            data.push(e.sums.clone());
            data.push(e.counts.iter().map(|&c| c as f32).collect());
        }
        let (tensors, _) = layout(entries, DEFAULT_ALIGNMENT)?;
        write_gguf(path, &metadata, &tensors, DEFAULT_ALIGNMENT, |i, out| {
            out.write_all(&f32_bytes(&data[i])).map_err(|e| anyhow!("{}: cannot write the output: {e}", path.display()))
        })
    }

    /// llama-imatrix's legacy file: entries with data, each as its mean activation times the
    /// number of chunks it saw (a matrix that saw nothing gets ones), then the chunk count and
    /// the last dataset's name.
    fn write_dat(&self, path: &Path) -> Result<()> {
        let chunk_size = u64::from(self.chunk_size.max(1));
        let mut out = Vec::new();
        let stored: Vec<(&String, &ImatrixEntry)> =
            self.entries.iter().filter(|(_, e)| e.counts.iter().any(|&c| c > 0)).collect();
        out.extend_from_slice(&(stored.len() as i32).to_le_bytes());
        for (name, e) in stored {
            out.extend_from_slice(&(name.len() as i32).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            let ncall = if self.legacy {
                e.counts[0]
            } else {
                e.counts.iter().max().copied().unwrap_or(0).div_ceil(chunk_size)
            };
            out.extend_from_slice(&(ncall as i32).to_le_bytes());
            out.extend_from_slice(&(e.sums.len() as i32).to_le_bytes());
            let width = e.width();
            let values: Vec<f32> = if self.legacy {
                e.sums.clone()
            } else {
                e.sums
                    .iter()
                    .enumerate()
                    .map(|(i, &sum)| match e.counts[i / width] {
                        0 => ncall as f32,
                        count => (sum / count as f32) * ncall as f32,
                    })
                    .collect()
            };
            out.extend_from_slice(&f32_bytes(&values));
        }
        out.extend_from_slice(&(self.chunk_count as i32).to_le_bytes());
        let dataset = self.datasets.last().map_or("", String::as_str);
        out.extend_from_slice(&(dataset.len() as i32).to_le_bytes());
        out.extend_from_slice(dataset.as_bytes());
        let mut file = PendingFile::create(path)?;
        file.writer().write_all(&out).with_context(|| format!("{}: cannot write the output", path.display()))?;
        file.commit()
    }

    /// Adds `other`'s statistics to these (llama-imatrix's `--in-file`), given the chunk size
    /// this matrix is collected with (a legacy file's means are scaled back by it).
    pub fn merge(&mut self, other: &Imatrix, source: &Path) -> Result<()> {
        let chunk_size = u64::from(self.chunk_size);
        for (name, entry) in &other.entries {
            let (sums, counts): (Vec<f32>, Vec<u64>) = if other.legacy {
                (
                    entry.sums.iter().map(|s| s * chunk_size as f32).collect(),
                    vec![entry.counts[0].saturating_mul(chunk_size)],
                )
            } else {
                (entry.sums.clone(), entry.counts.clone())
            };
            let e = self
                .entries
                .entry(name.clone())
                .or_insert_with(|| ImatrixEntry { sums: vec![0.0; sums.len()], counts: vec![0; counts.len()] });
            if e.sums.len() != sums.len() {
                bail!("{}: {name} has {} values, the others have {}", source.display(), sums.len(), e.sums.len());
            }
            if e.counts.len() == 1 && counts.len() > 1 {
                e.counts = vec![e.counts[0]; counts.len()];
            }
            e.sums.iter_mut().zip(&sums).for_each(|(a, b)| *a += b);
            if e.counts.len() == counts.len() {
                e.counts.iter_mut().zip(&counts).for_each(|(a, b)| *a = a.saturating_add(*b));
            } else if counts.len() == 1 {
                e.counts.iter_mut().for_each(|a| *a = a.saturating_add(counts[0]));
            } else {
                bail!("{}: {name} has {} matrices, the others have {}", source.display(), counts.len(), e.counts.len());
            }
        }
        self.datasets.extend(other.datasets.iter().cloned());
        let most = self.entries.values().flat_map(|e| e.counts.iter().copied()).max().unwrap_or(0);
        self.chunk_count = (most / chunk_size.max(1)) as u32;
        Ok(())
    }

    /// The importance of each input channel of weight `name` (per matrix, concatenated), as
    /// llama-quantize computes it: the mean squared activation; ones for a matrix that saw
    /// nothing. `None` when the matrix has no entry.
    pub fn weights(&self, name: &str) -> Option<Vec<f32>> {
        let e = self.entries.get(name)?;
        let width = e.width();
        Some(
            e.sums
                .iter()
                .enumerate()
                .map(|(i, &sum)| match (self.legacy, e.counts[i / width]) {
                    (true, 0) => sum,
                    (false, 0) => 1.0,
                    (_, count) => sum / count as f32,
                })
                .collect(),
        )
    }
}

/// A shape as ggml writes it: without trailing dimensions of 1 (`ggml_n_dims`), so a dense
/// weight's sums are 1-D.
fn ggml_dims(shape: &[u64]) -> Vec<u64> {
    let n = shape.iter().rposition(|&d| d != 1).map_or(1, |i| i + 1);
    shape[..n].to_vec()
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn f32_values(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect()
}

fn from_gguf(bytes: &[u8]) -> Result<Imatrix> {
    let file = super::parse(bytes).map_err(|e| anyhow!("{e}"))?;
    if let Some(arch) = file.architecture() {
        bail!("it is a {arch} model, not an importance matrix");
    }
    let u32_key = |key: &str| -> Result<u32> {
        let v = file.get(key).ok_or_else(|| anyhow!("no {key} (llama-quantize needs it)"))?;
        v.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| anyhow!("{key} is {}, not a u32", v.summary(4)))
    };
    let datasets = match file.get(DATASETS_KEY) {
        Some(Value::Array(ValueType::String, items)) => {
            items.iter().filter_map(|v| v.as_str().map(String::from)).collect()
        }
        Some(v) => bail!("{DATASETS_KEY} is {}, not an array of strings", v.summary(4)),
        None => bail!("no {DATASETS_KEY} (llama-quantize needs it)"),
    };
    // (width, matrices) and the values of tensor `name`.
    let tensor_data = |name: &str| -> Result<Option<([u64; 2], Vec<f32>)>> {
        let Some(t) = file.tensors.iter().find(|t| t.name == name) else { return Ok(None) };
        if t.ty != GgmlType::F32 || t.shape.len() > 2 {
            bail!("{name} is {} of shape {:?}; an imatrix holds 1-D or 2-D F32 tensors", t.ty, t.shape);
        }
        let start = (file.data_offset + t.offset) as usize;
        Ok(Some((
            [t.shape[0], t.shape.get(1).copied().unwrap_or(1)],
            f32_values(&bytes[start..start + t.n_bytes() as usize]),
        )))
    };
    let mut entries = BTreeMap::new();
    for t in &file.tensors {
        let (name, sums_name, counts_name) = if let Some(name) = t.name.strip_suffix(SUMS_SUFFIX) {
            (name, t.name.clone(), format!("{name}{COUNTS_SUFFIX}"))
        } else if let Some(name) = t.name.strip_suffix(COUNTS_SUFFIX) {
            (name, format!("{name}{SUMS_SUFFIX}"), t.name.clone())
        } else {
            bail!("tensor {} is neither <name>{SUMS_SUFFIX} nor <name>{COUNTS_SUFFIX}", t.name);
        };
        if entries.contains_key(name) {
            continue;
        }
        let (Some((sums_shape, sums)), Some((counts_shape, counts))) =
            (tensor_data(&sums_name)?, tensor_data(&counts_name)?)
        else {
            bail!("{name} lacks its {} tensor", if t.name == sums_name { COUNTS_SUFFIX } else { SUMS_SUFFIX });
        };
        if counts_shape != [1, sums_shape[1]] {
            bail!(
                "{counts_name} holds {counts_shape:?} values; {sums_name} of {sums_shape:?} needs one per matrix, {}",
                sums_shape[1]
            );
        }
        let counts = counts
            .iter()
            .map(|&c| {
                if c.is_finite() && c >= 0.0 {
                    Ok(c.round() as u64)
                } else {
                    Err(anyhow!("{counts_name} holds the count {c}"))
                }
            })
            .collect::<Result<Vec<u64>>>()?;
        entries.insert(name.to_string(), ImatrixEntry { sums, counts });
    }
    Ok(Imatrix {
        entries,
        datasets,
        chunk_count: u32_key(CHUNK_COUNT_KEY)?,
        chunk_size: u32_key(CHUNK_SIZE_KEY)?,
        legacy: false,
    })
}

/// A little-endian reader over a legacy file that reports where it ran out.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| {
            anyhow!("truncated at byte {} reading {what} ({n} bytes, {} left)", self.at, self.bytes.len() - self.at)
        })?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn i32(&mut self, what: &str) -> Result<i32> {
        Ok(i32::from_le_bytes(self.take(4, what)?.try_into().expect("4 bytes")))
    }

    fn len(&mut self, what: &str) -> Result<usize> {
        let n = self.i32(what)?;
        usize::try_from(n).map_err(|_| anyhow!("{what} is {n}"))
    }

    fn done(&self) -> bool {
        self.at == self.bytes.len()
    }
}

fn from_dat(bytes: &[u8]) -> Result<Imatrix> {
    let mut r = Cursor { bytes, at: 0 };
    let n_entries = r.len("the entry count")?;
    let mut entries = BTreeMap::new();
    for i in 0..n_entries {
        let len = r.len(&format!("entry {i}'s name length"))?;
        let name = std::str::from_utf8(r.take(len, &format!("entry {i}'s name"))?)
            .map_err(|_| anyhow!("entry {i}'s name is not UTF-8"))?
            .to_string();
        let ncall = r.len(&format!("{name}'s call count"))?;
        let nval = r.len(&format!("{name}'s value count"))?;
        if nval == 0 {
            bail!("{name} has no values");
        }
        let sums = f32_values(r.take(
            nval.checked_mul(4).ok_or_else(|| anyhow!("{name}'s value count {nval} overflows"))?,
            &format!("{name}'s values"),
        )?);
        entries.insert(name, ImatrixEntry { sums, counts: vec![ncall as u64] });
    }
    let mut imatrix = Imatrix { entries, legacy: true, ..Imatrix::default() };
    if !r.done() {
        imatrix.chunk_count = r.len("the chunk count")? as u32;
        let len = r.len("the dataset name's length")?;
        if len > 0 {
            let name = r.take(len, "the dataset name")?;
            imatrix.datasets.push(String::from_utf8_lossy(name).into_owned());
        }
    }
    if !r.done() {
        bail!("{} bytes after the dataset name", bytes.len() - r.at);
    }
    Ok(imatrix)
}
