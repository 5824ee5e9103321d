//! The one-pass conversion: a Hugging Face folder to a GGUF file, each tensor read in row chunks,
//! transformed, quantized to the type the policy chose, and streamed to disk.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value as Json;
use strata_quantize::{quantize_rows, quantize_rows_weighted, GgmlType};

use strata_gguf::{
    is_per_expert, layout, write_gguf, ModelShape, TensorInfo, TensorSpec, Value, DATA_SHA256_KEY,
    DATA_SHA256_PLACEHOLDER, DEFAULT_ALIGNMENT,
};

use crate::arch::{self, Architecture, Mapped, Rows, Transform};
use crate::importance::{ImatrixInput, Importance};
use crate::mmproj::Towers;
use crate::policy::{Choice, Policy, Preset};
use crate::safetensors::{Checkpoint, TensorRef};

/// The GGUF names of the output projection and the token embedding it may be tied to.
const OUTPUT: &str = "output.weight";
const TOKEN_EMBEDDING: &str = "token_embd.weight";

/// What to convert and how.
pub struct Options {
    pub preset: Preset,
    pub ple_type: Option<GgmlType>,
    /// `REGEX=TYPE` overrides, in order.
    pub tensor_types: Vec<String>,
    /// The importance matrix the quantizers are weighted with (`--imatrix`).
    pub imatrix: Option<ImatrixInput>,
}

/// Where a tensor's values come from.
pub enum Source {
    /// A checkpoint tensor, or several of one shape stacked along a new outermost dimension,
    /// transformed; `rows` (of the row width) is how many the GGUF tensor has: fewer keeps the
    /// first ones, more appends zero rows.
    Checkpoint { parts: Vec<TensorRef>, transform: Transform, rows: usize },
    /// Values the converter computed from config.json.
    Computed(Vec<f32>),
}

/// One tensor of the plan: where it comes from, what it becomes.
pub struct Planned {
    pub source: Source,
    pub info: TensorInfo,
    pub choice: Choice,
    pub importance: Importance,
}

/// Everything decided before a byte is written.
pub struct Plan {
    pub dir: PathBuf,
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<Planned>,
    /// Checkpoint tensors llama.cpp has no use for (vision and audio towers, rotary caches).
    pub skipped: Vec<String>,
    checkpoint: Checkpoint,
}

/// Reads the folder's config, tokenizer and tensor headers, and decides every tensor's name,
/// shape and type. The architecture's shape (from config.json) is the authority: every
/// checkpoint tensor it maps must have the shape the config gives it, and every tensor the
/// config implies must come from the checkpoint or be computed.
pub fn plan(dir: &Path, opts: &Options) -> Result<Plan> {
    let config_path = dir.join("config.json");
    let arch = architecture(dir)?;
    let checkpoint = Checkpoint::open(dir)?;
    let vocab = arch.vocab(dir)?;
    let shape = arch.shape(Some(vocab.tokens.len() as u64)).with_context(|| config_path.display().to_string())?;
    let expected: HashMap<&str, &TensorSpec> = shape.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    let spec_of = |gguf_name: &str, hf_name: &str| -> Result<TensorSpec> {
        let spec = expected.get(gguf_name).ok_or_else(|| {
            anyhow!(
                "{}: tensor {hf_name} becomes {gguf_name}, which a {} model of this config.json does not have",
                dir.display(),
                arch.name()
            )
        })?;
        Ok((*spec).clone())
    };

    let mut tensors: Vec<(Source, TensorSpec)> = Vec::new();
    let mut skipped = Vec::new();
    let mut stacks: BTreeMap<String, (Transform, BTreeMap<usize, TensorRef>)> = BTreeMap::new();
    for t in checkpoint.tensors() {
        let Some(Mapped { gguf_name, transform, part }) = arch.map(&t.name) else {
            skipped.push(t.name.clone());
            continue;
        };
        // An output projection in a checkpoint whose config ties the output to the token
        // embedding (AutoAWQ and some fine-tune exports write one): transformers ties it back
        // to the embedding on load, and llama.cpp's converter skips it, as here.
        if gguf_name == OUTPUT && !expected.contains_key(OUTPUT) && expected.contains_key(TOKEN_EMBEDDING) {
            skipped.push(t.name.clone());
            continue;
        }
        if let Some(i) = part {
            stacks.entry(gguf_name).or_insert_with(|| (transform, BTreeMap::new())).1.insert(i, t.clone());
            continue;
        }
        let spec = spec_of(&gguf_name, &t.name)?;
        if let Transform::PermuteRows { n_head } = transform {
            if t.shape.len() != 2 || t.shape[0] % (2 * n_head) != 0 {
                bail!(
                    "{}: tensor {} has shape {:?}, which does not split into {n_head} heads",
                    dir.display(),
                    t.name,
                    t.shape
                );
            }
        }
        let rows = checked_rows(dir, arch.rows(&gguf_name), t, &spec)?;
        tensors.push((Source::Checkpoint { parts: vec![t.clone()], transform, rows }, spec));
    }
    for (gguf_name, (transform, parts)) in stacks {
        let first = parts.values().next().map(|t| t.name.clone()).unwrap_or_default();
        let spec = spec_of(&gguf_name, &first)?;
        tensors.push(stacked(dir, spec, transform, parts)?);
    }
    if tensors.is_empty() {
        bail!("{}: no tensor of the checkpoint maps to a {} tensor", dir.display(), arch.name());
    }
    for c in arch.computed().with_context(|| config_path.display().to_string())? {
        let spec = spec_of(&c.gguf_name, "(computed)")?;
        tensors.push((Source::Computed(c.values), spec));
    }
    // llama.cpp's converter order: token embedding, then layers in order, then the rest.
    tensors.sort_by_key(|(_, spec)| gguf_order(&spec.name));
    if let Some(w) = tensors.windows(2).find(|w| w[0].1.name == w[1].1.name) {
        bail!("{}: two checkpoint tensors become {}", dir.display(), w[0].1.name);
    }
    if let Some(missing) = shape.tensors.iter().find(|e| !tensors.iter().any(|(_, t)| t.name == e.name)) {
        bail!(
            "{}: the checkpoint has no tensor for {} (a {} model of this config.json has it)",
            dir.display(),
            missing.name,
            arch.name()
        );
    }

    let specs: Vec<TensorSpec> = tensors.iter().map(|(_, spec)| spec.clone()).collect();
    let mut policy = Policy::for_model(opts.preset, &specs, &shape.layers);
    if let Some(ty) = opts.ple_type {
        policy.ple_type = ty;
    }
    for spec in &opts.tensor_types {
        policy.add_override(spec)?;
    }
    policy.has_imatrix = opts.imatrix.is_some();
    let choices = policy.assign(&specs)?;
    let (infos, _) =
        layout(specs.iter().zip(&choices).map(|(t, c)| (t.name.clone(), c.ty, t.shape.clone())), DEFAULT_ALIGNMENT)?;

    let mut metadata = vec![
        ("general.architecture".to_string(), Value::String(arch.name().into())),
        ("general.type".to_string(), Value::String("model".into())),
        ("general.name".to_string(), Value::String(model_name(dir))),
    ];
    metadata.push(("general.size_label".to_string(), Value::String(size_label(&specs))));
    metadata.extend(sampling_defaults(dir)?);
    metadata.extend(arch.metadata().with_context(|| config_path.display().to_string())?);
    metadata.push(("general.file_type".into(), Value::U32(opts.preset.file_type())));
    metadata.extend(vocab.metadata());
    metadata.push(("general.quantization_version".into(), Value::U32(2)));
    metadata.push(("strata.ple_type".into(), Value::String(policy.ple_type.name().into())));
    if let Some(imatrix) = &opts.imatrix {
        metadata.extend(imatrix.metadata());
    }
    metadata.push((DATA_SHA256_KEY.into(), Value::String(DATA_SHA256_PLACEHOLDER.into())));

    let importance = |info: &TensorInfo, choice: &Choice| match &opts.imatrix {
        Some(imatrix) => imatrix.importance(info, choice.class),
        None => Ok(Importance::NotGiven),
    };
    let tensors: Vec<Planned> = tensors
        .into_iter()
        .zip(infos)
        .zip(choices)
        .map(|(((source, _), info), choice)| {
            Ok(Planned { source, importance: importance(&info, &choice)?, info, choice })
        })
        .collect::<Result<_>>()?;
    // llama-quantize's refusal of very low-bit tensors without importance weights.
    let unweighted = |t: &&Planned| {
        opts.preset.requires_imatrix(&t.info.name, t.info.ty) && !matches!(t.importance, Importance::Weighted(_))
    };
    if let Some(t) = tensors.iter().find(unweighted) {
        let (p, name, ty) = (opts.preset, &t.info.name, t.info.ty);
        match &opts.imatrix {
            None => bail!("{}: {p} needs an importance matrix (--imatrix): without one its {ty} tensors ({name} first) would be garbage, and llama-quantize refuses it", dir.display()),
            Some(imatrix) => bail!("{}: no entry for {name}, which {p} makes {ty}: without importance weights it would be garbage, and llama-quantize refuses it", imatrix.path.display()),
        }
    }
    Ok(Plan { dir: dir.to_path_buf(), metadata, tensors, skipped, checkpoint })
}

/// The projector file (llama.cpp's mmproj) of a multimodal folder's `towers`: every tensor the
/// towers list, from the checkpoint, each at the type llama.cpp's converter gives it for output
/// type `ty` (default: the checkpoint's float type, F16 for F32 checkpoints, as that converter's
/// `--outtype auto`).
pub fn plan_mmproj(dir: &Path, towers: &dyn Towers, ty: Option<GgmlType>) -> Result<Plan> {
    let checkpoint = Checkpoint::open(dir)?;
    let specs = towers.tensors();
    let expected: HashMap<&str, &TensorSpec> = specs.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut found: HashMap<&str, (TensorRef, Transform)> = HashMap::new();
    for t in checkpoint.tensors() {
        let Some(Mapped { gguf_name, transform, .. }) = towers.map(&t.name) else { continue };
        let Some((name, spec)) = expected.get_key_value(gguf_name.as_str()) else {
            bail!(
                "{}: tensor {} becomes {gguf_name}, which the projector of this config.json does not have",
                dir.display(),
                t.name
            );
        };
        match transform {
            // A row of side x side x 3 per output, as the spec's four dimensions say.
            Transform::PatchesChannelsFirst { side } => {
                let n = spec.shape.last().copied().unwrap_or(0) as usize;
                if t.shape != [n, side * side * 3] {
                    bail!(
                        "{}: tensor {} has shape {:?}, but config.json makes it [{n}, {}] ({side}-pixel patches of 3 channels)",
                        dir.display(),
                        t.name,
                        t.shape,
                        side * side * 3
                    );
                }
            }
            // A scalar is written as a tensor of one value, and a depthwise convolution's
            // [C, 1, K] as [C, K], as llama.cpp's converter writes them: the same values in the
            // same order, the dimensions of one dropped.
            _ if squeezed(&t.shape.iter().map(|&d| d as u64).rev().collect::<Vec<_>>()) == squeezed(&spec.shape) => {}
            _ => {
                checked_rows(dir, Rows::Exact, t, spec)?;
            }
        }
        if let Some((other, _)) = found.insert(name, (t.clone(), transform)) {
            bail!("{}: tensors {} and {} both become {gguf_name}", dir.display(), other.name, t.name);
        }
    }
    let float = |t: &TensorRef| match t.dtype {
        crate::safetensors::Dtype::BF16 => GgmlType::BF16,
        _ => GgmlType::F16,
    };
    let ty = ty.unwrap_or_else(|| {
        let mut matrices = specs.iter().filter(|s| s.shape.len() >= 2).filter_map(|s| found.get(s.name.as_str()));
        matrices.next().map_or(GgmlType::F16, |(t, _)| float(t))
    });
    let mut sources = Vec::with_capacity(specs.len());
    for spec in &specs {
        let Some((t, transform)) = found.remove(spec.name.as_str()) else {
            bail!("{}: the checkpoint has no tensor for the projector's {}", dir.display(), spec.name);
        };
        let rows = (spec.n_elements() / spec.shape[0].max(1)) as usize;
        sources.push(Source::Checkpoint { parts: vec![t], transform, rows });
    }
    let choices = crate::mmproj::choices(towers, &specs, ty);
    let (infos, _) =
        layout(specs.iter().zip(&choices).map(|(t, c)| (t.name.clone(), c.ty, t.shape.clone())), DEFAULT_ALIGNMENT)?;
    let file_type = Preset::from_name(ty.name()).map_err(|_| anyhow!("--mmproj-type {ty}: not a projector type"))?;
    let mut metadata = vec![
        ("general.architecture".to_string(), Value::String("clip".into())),
        ("general.type".to_string(), Value::String("mmproj".into())),
        ("general.name".to_string(), Value::String(model_name(dir))),
        ("general.size_label".to_string(), Value::String(size_label(&specs))),
        ("general.file_type".to_string(), Value::U32(file_type.file_type())),
    ];
    metadata.extend(towers.metadata().with_context(|| dir.join("config.json").display().to_string())?);
    metadata.push(("general.quantization_version".into(), Value::U32(2)));
    metadata.push((DATA_SHA256_KEY.into(), Value::String(DATA_SHA256_PLACEHOLDER.into())));
    let tensors = sources
        .into_iter()
        .zip(infos)
        .zip(choices)
        .map(|((source, info), choice)| Planned { source, info, choice, importance: Importance::NotGiven })
        .collect();
    Ok(Plan { dir: dir.to_path_buf(), metadata, tensors, skipped: Vec::new(), checkpoint })
}

/// The model a Hugging Face folder holds, as `convert` would write it (the token embedding cut
/// to its tokenizer where the family does that), without reading any weights.
pub fn folder_shape(dir: &Path) -> Result<ModelShape> {
    let arch = architecture(dir)?;
    let n_tokens = arch.vocab(dir)?.tokens.len() as u64;
    arch.shape(Some(n_tokens)).with_context(|| dir.join("config.json").display().to_string())
}

/// The architecture of a Hugging Face folder, from its config.json.
pub fn architecture(dir: &Path) -> Result<Box<dyn Architecture>> {
    let config_path = dir.join("config.json");
    if !config_path.is_file() {
        bail!("{}: no config.json (is this a Hugging Face model folder?)", dir.display());
    }
    let config: Json = serde_json::from_str(
        &std::fs::read_to_string(&config_path).with_context(|| format!("{}: cannot read", config_path.display()))?,
    )
    .with_context(|| format!("{}: not valid JSON", config_path.display()))?;
    arch::for_config(config).with_context(|| config_path.display().to_string())
}

/// How many rows the GGUF tensor `spec` takes from checkpoint tensor `t`: the checkpoint's shape
/// must be the config's, except a table's row count where the architecture allows `rows`.
fn checked_rows(dir: &Path, rows: Rows, t: &TensorRef, spec: &TensorSpec) -> Result<usize> {
    let shape: Vec<u64> = t.shape.iter().rev().map(|&d| d as u64).collect();
    let table_rows = |s: &[u64]| s.split_last().map(|(&n, inner)| (n, inner.to_vec()));
    let fits = shape == spec.shape
        || match (table_rows(&shape), table_rows(&spec.shape)) {
            (Some((ours, inner)), Some((theirs, spec_inner))) if inner == spec_inner => match rows {
                Rows::Exact => false,
                Rows::Truncate => ours > theirs,
                Rows::Pad => ours < theirs,
            },
            _ => false,
        };
    if !fits {
        bail!(
            "{}: tensor {} has shape {:?}, but config.json makes {} {:?} (ggml order)",
            dir.display(),
            t.name,
            shape,
            spec.name,
            spec.shape
        );
    }
    let width = spec.shape.first().copied().unwrap_or(1).max(1);
    Ok((spec.n_elements() / width) as usize)
}

/// Checkpoint tensors `parts` (by index) stacked into the GGUF tensor `spec`: one more
/// dimension, outermost, counting the parts, which must be 0, 1, ... and of one shape.
fn stacked(
    dir: &Path,
    spec: TensorSpec,
    transform: Transform,
    parts: BTreeMap<usize, TensorRef>,
) -> Result<(Source, TensorSpec)> {
    let gguf_name = &spec.name;
    if let Some((missing, _)) = parts.keys().enumerate().find(|(i, k)| i != *k) {
        bail!(
            "{}: the checkpoint has no part {missing} of the tensors stacked into {gguf_name} (it has parts {:?})",
            dir.display(),
            parts.keys().collect::<Vec<_>>()
        );
    }
    let parts: Vec<TensorRef> = parts.into_values().collect();
    let first = &parts[0];
    if let Some((i, t)) = parts.iter().enumerate().find(|(_, t)| t.shape != first.shape) {
        bail!(
            "{}: tensor {} has shape {:?}, unlike {} ({:?}), with which it is stacked into {gguf_name} (part {i})",
            dir.display(),
            t.name,
            t.shape,
            first.name,
            first.shape
        );
    }
    let mut shape: Vec<u64> = first.shape.iter().rev().map(|&d| d as u64).collect();
    shape.push(parts.len() as u64);
    if shape != spec.shape {
        bail!(
            "{}: the {} tensors stacked into {gguf_name} make {shape:?}, but config.json makes it {:?} (ggml order)",
            dir.display(),
            parts.len(),
            spec.shape
        );
    }
    let rows = parts.len() * first.n_elements() / first.row_width().max(1);
    Ok((Source::Checkpoint { parts, transform, rows }, spec))
}

/// gguf-py's size label: the parameter count rounded to two significant digits ("312K",
/// "1.7B"), or "{experts}x{per-expert size}" for mixture-of-experts models.
fn size_label(tensors: &[TensorSpec]) -> String {
    let (mut total, mut shared, mut expert, mut expert_sum, mut n_expert_tensors) = (0u64, 0u64, 0u64, 0u64, 0u64);
    for t in tensors {
        let size: u64 = t.shape.iter().product();
        if is_per_expert(&t.name) && t.shape.len() >= 3 {
            let count = t.shape[t.shape.len() - 1].max(1);
            expert += size / count;
            expert_sum += count;
            n_expert_tensors += 1;
        } else {
            shared += size;
        }
        total += size;
    }
    match expert_sum.checked_div(n_expert_tensors) {
        Some(experts) => format!("{experts}x{}", rounded_count(shared + expert)),
        None => rounded_count(total),
    }
}

/// gguf-py's `model_weight_count_rounded_notation` with two significant digits.
fn rounded_count(n: u64) -> String {
    let n = n as f64;
    let (scaled, suffix) = if n > 1e12 {
        (n * 1e-12, "T")
    } else if n > 1e9 {
        (n * 1e-9, "B")
    } else if n > 1e6 {
        (n * 1e-6, "M")
    } else {
        (n * 1e-3, "K")
    };
    let digits = format!("{}", scaled.round() as u64).trim_start_matches('0').len();
    format!("{scaled:.prec$}{suffix}", prec = 2usize.saturating_sub(digits))
}

/// `generation_config.json`'s sampling defaults as `general.sampling.*`, as llama.cpp's
/// converter writes them (gguf-py's metadata.py): integers as i32, the rest as f32.
fn sampling_defaults(dir: &Path) -> Result<Vec<(String, Value)>> {
    let path = dir.join("generation_config.json");
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let json: Json = serde_json::from_str(
        &std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?,
    )
    .with_context(|| format!("{}: not valid JSON", path.display()))?;
    let int = |k: &str| -> Result<Option<Value>> {
        match &json[k] {
            Json::Null => Ok(None),
            v => match v.as_i64().and_then(|n| i32::try_from(n).ok()) {
                Some(n) => Ok(Some(Value::I32(n))),
                None => bail!("{}: {k} {v} is not a whole number in i32's range", path.display()),
            },
        }
    };
    let float = |k: &str| json[k].as_f64().map(|v| Value::F32(v as f32));
    let entries = [
        ("top_k", int("top_k")?),
        ("top_p", float("top_p")),
        ("min_p", float("min_p")),
        ("temp", float("temperature")),
        ("penalty_last_n", int("penalty_last_n")?),
        ("penalty_repeat", float("penalty_repeat").or_else(|| float("repetition_penalty"))),
    ];
    Ok(entries.into_iter().filter_map(|(k, v)| v.map(|v| (format!("general.sampling.{k}"), v))).collect())
}

/// A shape without its dimensions of one.
fn squeezed(shape: &[u64]) -> Vec<u64> {
    shape.iter().copied().filter(|&d| d != 1).collect()
}

/// `ln(1 + e^x)`, as torch computes it in float32 (x itself above 20).
fn softplus(x: f32) -> f32 {
    if x > 20.0 {
        x
    } else {
        x.exp().ln_1p()
    }
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
        let mut scratch = Vec::new();
        let mut bytes = Vec::new();
        write_gguf(out, &self.metadata, &infos, DEFAULT_ALIGNMENT, |i, w| {
            let t = &self.tensors[i];
            let width = t.info.shape[0] as usize;
            let source_name = match &t.source {
                Source::Checkpoint { parts, .. } if parts.len() == 1 => parts[0].name.as_str(),
                _ => t.info.name.as_str(),
            };
            // Weights per matrix: one row of `width` for a 2-D tensor, one per expert for a 3-D one.
            let weights = match &t.importance {
                Importance::Weighted(w) => Some(w.as_slice()),
                _ => None,
            };
            let n_mats = weights.map_or(1, |w| w.len() / width.max(1));
            let quantize =
                |src: &[f32], first_row: usize, weights: Option<&[f32]>, bytes: &mut Vec<u8>| -> Result<()> {
                    bytes.resize(
                        src.len() / width.max(1)
                            * strata_quantize::row_size(t.info.ty, width)
                                .map_err(|e| anyhow!("tensor {}: {e}", t.info.name))?,
                        0,
                    );
                    let done = match weights {
                        Some(w) => quantize_rows_weighted(t.info.ty, src, width, w, bytes),
                        None => quantize_rows(t.info.ty, src, width, bytes),
                    };
                    done.map_err(|e| match e {
                        strata_quantize::QuantizeError::NotFinite { row, column, value } => {
                            anyhow!(
                                "{}: tensor {source_name} (row {}, column {column}) holds {value}",
                                self.dir.display(),
                                first_row + row
                            )
                        }
                        e => anyhow!("tensor {}: {e}", t.info.name),
                    })
                };
            let (parts, transform, n_rows) = match &t.source {
                Source::Computed(values) => {
                    quantize(values, 0, weights, &mut bytes)?;
                    w.write_all(&bytes)?;
                    progress(i);
                    return Ok(());
                }
                Source::Checkpoint { parts, transform, rows } => (parts, *transform, *rows),
            };
            let chunk = (CHUNK_ELEMENTS / width.max(1)).max(1);
            // Chunks never cross from one matrix (expert) to the next, whose weights differ.
            let rows_per_mat = n_rows / n_mats;
            let chunks = (0..n_mats)
                .flat_map(|m| (m * rows_per_mat..(m + 1) * rows_per_mat).step_by(chunk).map(move |start| (m, start)));
            for (m, start) in chunks {
                let end = (start + chunk).min((m + 1) * rows_per_mat);
                let src: &mut Vec<f32> = match transform {
                    Transform::PatchesChannelsFirst { side } => {
                        // Output row r (of `side` values, one image row of one channel of one
                        // output) takes every third value of its output's source row.
                        gathered.clear();
                        for r in start..end {
                            let (out, channel, y) = (r / (3 * side), (r / side) % 3, r % side);
                            self.checkpoint.read_rows(&parts[0], out..out + 1, &mut rows_f32);
                            gathered.extend((0..side).map(|x| rows_f32[(y * side + x) * 3 + channel]));
                        }
                        &mut gathered
                    }
                    Transform::Copy | Transform::AddOne | Transform::Softplus => {
                        self.read_rows(parts, width, start..end, &mut rows_f32, &mut scratch);
                        &mut rows_f32
                    }
                    Transform::PermuteRows { n_head } => {
                        gathered.clear();
                        let head_rows = parts[0].n_elements() / width.max(1) / n_head;
                        for r in start..end {
                            let (h, j) = (r / head_rows, r % head_rows);
                            let src_row = h * head_rows + (j % 2) * (head_rows / 2) + j / 2;
                            self.read_rows(parts, width, src_row..src_row + 1, &mut rows_f32, &mut scratch);
                            gathered.extend_from_slice(&rows_f32);
                        }
                        &mut gathered
                    }
                };
                if transform == Transform::AddOne {
                    src.iter_mut().for_each(|x| *x += 1.0);
                }
                if transform == Transform::Softplus {
                    src.iter_mut().for_each(|x| *x = softplus(*x));
                }
                quantize(src, start, weights.map(|w| &w[m * width..(m + 1) * width]), &mut bytes)?;
                w.write_all(&bytes)?;
            }
            parts.iter().for_each(|p| self.checkpoint.release(p));
            progress(i);
            Ok(())
        })
    }

    /// Rows `rows` of `parts` seen as one stack of rows `width` wide; rows past its end are
    /// zeros. `scratch` holds a part's rows where the range spans parts or padding.
    fn read_rows(
        &self,
        parts: &[TensorRef],
        width: usize,
        rows: Range<usize>,
        out: &mut Vec<f32>,
        scratch: &mut Vec<f32>,
    ) {
        let part_rows = parts[0].n_elements() / width.max(1);
        if rows.end <= part_rows {
            self.checkpoint.read_rows(&parts[0], rows, out);
            return;
        }
        out.clear();
        let mut r = rows.start;
        while r < rows.end {
            let (part, first) = (r / part_rows.max(1), r % part_rows.max(1));
            let Some(tensor) = parts.get(part) else {
                out.resize(out.len() + (rows.end - r) * width, 0.0);
                break;
            };
            let n = (part_rows - first).min(rows.end - r);
            self.checkpoint.read_rows(tensor, first..first + n, scratch);
            out.extend_from_slice(scratch);
            r += n;
        }
    }
}
