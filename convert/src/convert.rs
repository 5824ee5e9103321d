//! The one-pass conversion: a Hugging Face folder to a GGUF file, each tensor read in row chunks,
//! transformed, quantized to the type the policy chose, and streamed to disk.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value as Json;
use strata_quantize::{quantize_rows, GgmlType};

use crate::arch::{self, Transform};
use crate::gguf::{layout, write_gguf, TensorInfo, Value, DEFAULT_ALIGNMENT};
use crate::policy::{Choice, Policy, Preset, TensorSpec};
use crate::safetensors::{Checkpoint, TensorRef};
use crate::tokenizer::Vocab;

/// What to convert and how.
pub struct Options {
    pub preset: Preset,
    pub ple_type: Option<GgmlType>,
    /// `REGEX=TYPE` overrides, in order.
    pub tensor_types: Vec<String>,
}

/// One tensor of the plan: where it comes from, what it becomes.
pub struct Planned {
    pub source: TensorRef,
    pub info: TensorInfo,
    pub choice: Choice,
    pub transform: Transform,
}

/// Everything decided before a byte is written.
pub struct Plan {
    pub dir: PathBuf,
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<Planned>,
    checkpoint: Checkpoint,
}

/// llama.cpp's `general.file_type` for a preset.
fn file_type(p: Preset) -> u32 {
    match p {
        Preset::F32 => 0,
        Preset::F16 => 1,
        Preset::Q4_0 => 2,
        Preset::Q4_1 => 3,
        Preset::Q8_0 => 7,
        Preset::Q5_0 => 8,
        Preset::Q5_1 => 9,
        Preset::Q4_K_S => 14,
        Preset::Q4_K_M => 15,
        Preset::Q5_K_M => 17,
        Preset::Q6_K => 18,
        Preset::BF16 => 32,
    }
}

/// Reads the folder's config, tokenizer and tensor headers, and decides every tensor's name,
/// shape and type.
pub fn plan(dir: &Path, opts: &Options) -> Result<Plan> {
    let config_path = dir.join("config.json");
    if !config_path.is_file() {
        bail!("{}: no config.json (is this a Hugging Face model folder?)", dir.display());
    }
    let config: Json = serde_json::from_str(&std::fs::read_to_string(&config_path).with_context(|| format!("{}: cannot read", config_path.display()))?)
        .with_context(|| format!("{}: not valid JSON", config_path.display()))?;
    let arch = arch::for_config(&config).with_context(|| config_path.display().to_string())?;
    let checkpoint = Checkpoint::open(dir)?;

    let mut tensors = Vec::new();
    for t in checkpoint.tensors() {
        let Some(mapped) = arch.map(&t.name) else { continue };
        let shape: Vec<u64> = t.shape.iter().rev().map(|&d| d as u64).collect();
        if let Transform::PermuteRows { n_head } = mapped.transform {
            if t.shape.len() != 2 || t.shape[0] % (2 * n_head) != 0 {
                bail!("{}: tensor {} has shape {:?}, which does not split into {n_head} heads", dir.display(), t.name, t.shape);
            }
        }
        tensors.push((t.clone(), mapped, shape));
    }
    if tensors.is_empty() {
        bail!("{}: no tensor of the checkpoint maps to a {} tensor", dir.display(), arch.name());
    }
    // llama.cpp's converter order: token embedding, then layers in order, then the rest.
    tensors.sort_by_key(|(_, m, _)| gguf_order(&m.gguf_name));
    let tied = !tensors.iter().any(|(_, m, _)| m.gguf_name == "output.weight");

    let mut policy = Policy::new(opts.preset);
    policy.tied_embeddings = tied;
    if let Some(ty) = opts.ple_type {
        policy.ple_type = ty;
    }
    for spec in &opts.tensor_types {
        policy.add_override(spec)?;
    }
    let specs: Vec<TensorSpec> = tensors.iter().map(|(_, m, s)| TensorSpec { name: m.gguf_name.clone(), shape: s.clone() }).collect();
    let choices = policy.assign(&specs)?;
    let (infos, _) = layout(tensors.iter().zip(&choices).map(|((_, m, s), c)| (m.gguf_name.clone(), c.ty, s.clone())), DEFAULT_ALIGNMENT);

    let vocab_size = config["vocab_size"].as_u64().map(|n| n as usize);
    let vocab = Vocab::from_hf(dir, vocab_size, &config)?;
    let mut metadata = vec![
        ("general.architecture".to_string(), Value::String(arch.name().into())),
        ("general.type".to_string(), Value::String("model".into())),
        ("general.name".to_string(), Value::String(model_name(dir))),
    ];
    metadata.extend(sampling_defaults(dir)?);
    metadata.extend(arch.metadata(&config).with_context(|| config_path.display().to_string())?);
    metadata.push(("general.file_type".into(), Value::U32(file_type(opts.preset))));
    metadata.extend(vocab.metadata());
    metadata.push(("general.quantization_version".into(), Value::U32(2)));
    metadata.push(("strata.ple_type".into(), Value::String(policy.ple_type.name().into())));

    let tensors = tensors
        .into_iter()
        .zip(infos)
        .zip(choices)
        .map(|(((source, mapped, _), info), choice)| Planned { source, info, choice, transform: mapped.transform })
        .collect();
    Ok(Plan { dir: dir.to_path_buf(), metadata, tensors, checkpoint })
}

/// `generation_config.json`'s sampling defaults as `general.sampling.*`, as llama.cpp's
/// converter writes them (gguf-py's metadata.py): integers as i32, the rest as f32.
fn sampling_defaults(dir: &Path) -> Result<Vec<(String, Value)>> {
    let path = dir.join("generation_config.json");
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let json: Json = serde_json::from_str(&std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?)
        .with_context(|| format!("{}: not valid JSON", path.display()))?;
    let int = |k: &str| json[k].as_i64().map(|v| Value::I32(v as i32));
    let float = |k: &str| json[k].as_f64().map(|v| Value::F32(v as f32));
    let entries = [
        ("top_k", int("top_k")),
        ("top_p", float("top_p")),
        ("min_p", float("min_p")),
        ("temp", float("temperature")),
        ("penalty_last_n", int("penalty_last_n")),
        ("penalty_repeat", float("penalty_repeat").or_else(|| float("repetition_penalty"))),
    ];
    Ok(entries.into_iter().filter_map(|(k, v)| v.map(|v| (format!("general.sampling.{k}"), v))).collect())
}

/// Sort key putting `token_embd` first, `blk.N.*` by layer, then the rest by name.
fn gguf_order(name: &str) -> (u8, usize, String) {
    if name.starts_with("token_embd") {
        return (0, 0, name.to_string());
    }
    match name.strip_prefix("blk.").and_then(|r| r.split_once('.')) {
        Some((layer, rest)) => (1, layer.parse().unwrap_or(usize::MAX), rest.to_string()),
        None => (2, 0, name.to_string()),
    }
}

fn model_name(dir: &Path) -> String {
    dir.canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "model".to_string())
}

/// Rows per chunk: about 4M elements, so memory stays flat whatever the tensor's size.
const CHUNK_ELEMENTS: usize = 4 << 20;

impl Plan {
    /// Writes the GGUF. `progress(i)` is called as tensor `i` finishes.
    pub fn write(&self, out: &Path, mut progress: impl FnMut(usize)) -> Result<()> {
        let infos: Vec<TensorInfo> = self.tensors.iter().map(|t| t.info.clone()).collect();
        let mut rows_f32 = Vec::new();
        let mut gathered = Vec::new();
        let mut bytes = Vec::new();
        write_gguf(out, &self.metadata, &infos, DEFAULT_ALIGNMENT, |i, w| {
            let t = &self.tensors[i];
            let width = t.source.row_width();
            let n_rows = t.source.n_elements() / width.max(1);
            let chunk = (CHUNK_ELEMENTS / width.max(1)).max(1);
            for start in (0..n_rows).step_by(chunk) {
                let end = (start + chunk).min(n_rows);
                let src: &[f32] = match t.transform {
                    Transform::Copy => {
                        self.checkpoint.read_rows(&t.source, start..end, &mut rows_f32);
                        &rows_f32
                    }
                    Transform::PermuteRows { n_head } => {
                        gathered.clear();
                        let head_rows = n_rows / n_head;
                        for r in start..end {
                            let (h, j) = (r / head_rows, r % head_rows);
                            let src_row = h * head_rows + (j % 2) * (head_rows / 2) + j / 2;
                            self.checkpoint.read_rows(&t.source, src_row..src_row + 1, &mut rows_f32);
                            gathered.extend_from_slice(&rows_f32);
                        }
                        &gathered
                    }
                };
                bytes.resize((end - start) * strata_quantize::row_size(t.info.ty, width).map_err(|e| anyhow!("tensor {}: {e}", t.info.name))?, 0);
                quantize_rows(t.info.ty, src, width, &mut bytes).map_err(|e| match e {
                    strata_quantize::QuantizeError::NotFinite { row, column, value } => anyhow!(
                        "{}: tensor {} (row {}, column {column}) holds {value}",
                        self.dir.display(),
                        t.source.name,
                        start + row
                    ),
                    e => anyhow!("tensor {}: {e}", t.info.name),
                })?;
                w.write_all(&bytes)?;
            }
            self.checkpoint.release(&t.source);
            progress(i);
            Ok(())
        })
    }
}
