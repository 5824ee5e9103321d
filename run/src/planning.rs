//! Which quantization mix fits a device. For each body preset × PLE type: the bytes each memory
//! holds (as llama.cpp places them), the KV cache at the context, a generation-speed bound from
//! memory bandwidth, and measured quality where known; then the recommendation, with its reason.
//!
//! Sizes come from convert's own policy ([`Policy::assign`]) over the tensors convert writes
//! (or a GGUF holds), so a plan and the file `convert` then writes agree.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use strata_convert::policy::{Policy, Preset};
use strata_gguf::{GgufFile, ModelShape, TensorClass};
use strata_quantize::GgmlType;

use crate::catalog::{Catalog, DeviceProfile};
use crate::media_cost::MediaCost;
use crate::system_memory::Ram;

/// Whether llama.cpp reads the tensors an architecture marks lazy (gemma4's per-layer embedding
/// table; [`ModelShape::reads_lazily`]) row by row from the memory map, as a batch needs them,
/// instead of loading them whole: llama.cpp's `--lazy-mode`, which the runner sets and `plan`
/// sizes with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LazyMode {
    /// Always (strata's default: the table costs disk, not RAM).
    On,
    /// Only marked tensors larger than 4 GiB (llama.cpp's default).
    Auto,
    /// Never: marked tensors are loaded whole.
    Off,
}

impl LazyMode {
    /// Whether a marked tensor of `bytes` is read lazily.
    pub fn applies(self, bytes: u64) -> bool {
        match self {
            LazyMode::On => true,
            LazyMode::Auto => bytes > 4 << 30,
            LazyMode::Off => false,
        }
    }
}

impl std::str::FromStr for LazyMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "on" => Ok(LazyMode::On),
            "auto" => Ok(LazyMode::Auto),
            "off" => Ok(LazyMode::Off),
            _ => Err(format!("{s:?} is not one of on, auto, off")),
        }
    }
}

/// Bytes in a GiB, as a float for sizes given in GiB (models.toml) or printed in them.
pub const GIB: f64 = (1u64 << 30) as f64;

/// Memory a plan may use on one machine.
#[derive(Clone, Debug, Serialize)]
pub struct Budget {
    pub name: String,
    /// What the profile assumes, and where its figures come from.
    pub description: String,
    pub sources: Vec<String>,
    /// Memory the GPU can use (0: no GPU); with `shared`, the same pool as `ram_bytes`.
    pub gpu_bytes: u64,
    pub gpu_bandwidth_gb_s: Option<f64>,
    pub ram_bytes: u64,
    pub ram_bandwidth_gb_s: Option<f64>,
    /// GPU and CPU share `ram_bytes`.
    pub shared: bool,
    /// Machines lending memory over RPC, counted in `gpu_bytes` ([`Budget::with_remotes`]).
    pub rpc_machines: usize,
}

/// The model's shape, from whichever form it comes in: a Hugging Face folder (the tensors
/// convert would write), a GGUF file, or a models.toml name.
pub fn model_shape(model: &str, catalog: &Catalog) -> Result<ModelShape> {
    let path = Path::new(model);
    if path.is_dir() {
        return strata_convert::convert::folder_shape(path);
    }
    if path.is_file() {
        let file = GgufFile::open(path)?;
        return ModelShape::from_gguf(&file).with_context(|| path.display().to_string());
    }
    let entry = catalog.model(model).map_err(|e| anyhow!("{e} (or give a Hugging Face folder or a GGUF file)"))?;
    strata_convert::arch::config_shape(entry.config_json()).with_context(|| format!("models.toml: model.{model}"))
}

/// The GPU with the most free memory on this machine, as the runner's device list gives it.
#[derive(Clone, Debug)]
pub struct LocalGpu {
    pub name: String,
    pub description: String,
    pub memory_free: u64,
}

impl Budget {
    /// A models.toml device profile.
    pub fn profile(name: &str, d: &DeviceProfile) -> Budget {
        // A GPU sharing the system's memory (Jetson) can use all of it; 0 bandwidth means none.
        let gpu_gib = if d.shared_memory && d.gpu_bandwidth_gb_s > 0.0 { d.ram_gib } else { d.gpu_memory_gib };
        Budget {
            name: name.to_string(),
            description: d.description.clone(),
            sources: d.sources.clone(),
            gpu_bytes: (gpu_gib * GIB) as u64,
            gpu_bandwidth_gb_s: Some(d.gpu_bandwidth_gb_s),
            ram_bytes: (d.ram_gib * GIB) as u64,
            ram_bandwidth_gb_s: Some(d.ram_bandwidth_gb_s),
            shared: d.shared_memory,
            rpc_machines: 0,
        }
    }

    /// This machine: its free GPU memory and available RAM (which already leave out what other
    /// programs hold, so the reserve is added back).
    pub fn this_machine(ram: Ram, gpu: Option<LocalGpu>) -> Budget {
        Budget {
            name: "this machine".to_string(),
            description: match &gpu {
                Some(g) => format!(
                    "free memory of {} ({}) and of the system, as llama.cpp and /proc/meminfo report them",
                    g.name, g.description
                ),
                None => "available system memory (/proc/meminfo); llama.cpp sees no GPU".to_string(),
            },
            sources: Vec::new(),
            gpu_bytes: gpu.as_ref().map_or(0, |g| g.memory_free + RESERVE_BYTES),
            gpu_bandwidth_gb_s: None,
            ram_bytes: ram.available + RESERVE_BYTES,
            ram_bandwidth_gb_s: None,
            shared: false,
            rpc_machines: 0,
        }
    }
}

impl Budget {
    /// This machine's budget with `remotes` lending their memory over RPC (`--rpc`): layers go to
    /// their devices as to a GPU, so what each serves (its GPU's memory where it has one, as
    /// `rpc-server --device` serves it, else its RAM), less its own reserve, joins the memory
    /// layers are offloaded to, and a token reads that memory at the slowest of the bandwidths.
    /// The network's cost per token is not in the bound.
    pub fn with_remotes(self, remotes: &[Budget]) -> Result<Budget> {
        if remotes.is_empty() {
            return Ok(self);
        }
        if self.shared {
            bail!("{}: its GPU shares the system memory; a plan across machines needs a device with its own (or no) GPU memory", self.name);
        }
        // What a remote serves: its own GPU memory, else its RAM (a shared GPU's is its RAM).
        let served = |r: &Budget| match r.gpu_bytes > 0 && !r.shared {
            true => (r.gpu_bytes, r.gpu_bandwidth_gb_s),
            false => (r.ram_bytes, r.ram_bandwidth_gb_s),
        };
        let lent: u64 = remotes.iter().map(|r| served(r).0.saturating_sub(RESERVE_BYTES)).sum();
        let slowest = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut bandwidth = remotes.iter().map(|r| served(r).1).reduce(slowest).flatten();
        if self.gpu_bytes > 0 {
            bandwidth = slowest(bandwidth, self.gpu_bandwidth_gb_s);
        }
        let names: Vec<&str> = remotes.iter().map(|r| r.name.as_str()).collect();
        Ok(Budget {
            name: format!("{} + rpc:{}", self.name, names.join(" + rpc:")),
            description: format!(
                "{}; over RPC: {} (their memory takes offloaded layers; the network's time per token is not in the bound)",
                self.description,
                remotes.iter().map(|r| r.description.as_str()).collect::<Vec<_>>().join("; ")
            ),
            sources: self.sources.iter().chain(remotes.iter().flat_map(|r| &r.sources)).cloned().collect(),
            // (`fits` keeps one reserve off the offload memory: without a local GPU, the remotes'
            // own reserves already are.)
            gpu_bytes: if self.gpu_bytes == 0 { lent + RESERVE_BYTES } else { self.gpu_bytes + lent },
            gpu_bandwidth_gb_s: bandwidth,
            rpc_machines: remotes.len(),
            ..self
        })
    }
}

/// Kept free in each memory for the OS, the driver and the runtime.
pub const RESERVE_BYTES: u64 = 1 << 30;

/// Body presets a plan considers, best quality first (the 3- and 2-bit mixes last, for models
/// that fit no 4-bit one).
pub const BODY_PRESETS: &[Preset] = &[
    Preset::F16,
    Preset::Q8_0,
    Preset::Q6_K,
    Preset::Q5_K_M,
    Preset::Q4_K_M,
    Preset::Q4_0,
    Preset::Q3_K_M,
    Preset::Q2_K,
];
/// Types the per-layer embedding table is tried at.
pub const PLE_TYPES: &[GgmlType] = &[GgmlType::F16, GgmlType::Q8_0, GgmlType::Q6_K, GgmlType::Q4_K, GgmlType::Q4_0];

/// Where a mix runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Offload {
    /// Every layer and the output on the GPU.
    Full,
    /// The last `n` of the repeating layers on the GPU.
    Partial(u32),
    /// Nothing on a GPU (or the device has none).
    Cpu,
}

/// One row of the plan.
#[derive(Clone, Debug, Serialize)]
pub struct Mix {
    #[serde(serialize_with = "preset_name")]
    pub body: Preset,
    /// The PLE table's type, for models that have one.
    #[serde(serialize_with = "type_name")]
    pub ple: Option<GgmlType>,
    /// Every tensor's bytes, as convert would write them: the file on disk.
    pub file_bytes: u64,
    pub ple_bytes: u64,
    /// The PLE table is read lazily from the file: only the rows of the context's tokens are
    /// resident ([`ple_resident_bytes`](Mix::ple_resident_bytes)).
    pub ple_lazy: bool,
    /// What of the PLE table is in RAM: all of it, or at most a page-rounded row per token of
    /// the context when read lazily.
    pub ple_resident_bytes: u64,
    pub offload: Offload,
    /// Weights, KV cache and compute buffers in GPU memory (the towers' too, where they run).
    pub gpu_bytes: u64,
    /// Weights (the resident part of the PLE table included), KV cache and buffers in RAM (the
    /// towers' too, where they run).
    pub ram_bytes: u64,
    pub kv_bytes: u64,
    /// Generation tokens/s if every byte read per token came at the memories' full bandwidth.
    pub tokens_per_s_bound: Option<f64>,
    pub fits: bool,
    /// Measured mean KL divergence from the base conversion, where models.toml has it.
    pub kl_mean: Option<f64>,
    /// Measured top-1 agreement with the base conversion.
    pub top1: Option<f64>,
}

impl Mix {
    /// The mix's key in models.toml's measured quality.
    pub fn key(&self) -> MixKey {
        MixKey { body: self.body, ple: self.ple }
    }

    /// `convert`'s flags for this mix: `--type q8_0`, with ` --ple-type q4_0` for a PLE table.
    pub fn convert_flags(&self) -> String {
        let ple = self.ple.map(|t| format!(" --ple-type {}", t.name().to_lowercase())).unwrap_or_default();
        format!("--type {}{ple}", self.body)
    }
}

/// A body preset and, for models with a PLE table, the table's type: written "q4_k_m", or
/// "q8_0+ple_q4_0" (models.toml's measured quality is keyed so).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MixKey {
    pub body: Preset,
    pub ple: Option<GgmlType>,
}

impl MixKey {
    pub fn parse(text: &str) -> Result<MixKey> {
        let (body, ple) = match text.split_once("+ple_") {
            Some((body, ple)) => (body, Some(strata_convert::policy::quantizable_type(ple)?)),
            None => (text, None),
        };
        Ok(MixKey { body: Preset::from_name(body)?, ple })
    }
}

impl std::fmt::Display for MixKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.ple {
            Some(t) => write!(f, "{}+ple_{}", self.body, t.name().to_lowercase()),
            None => write!(f, "{}", self.body),
        }
    }
}

fn preset_name<S: serde::Serializer>(p: &Preset, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(p.name())
}

fn type_name<S: serde::Serializer>(t: &Option<GgmlType>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_some(t.name()),
        None => s.serialize_none(),
    }
}

/// Each tensor's class and bytes under a policy.
fn tensor_bytes(shape: &ModelShape, body: Preset, ple: Option<GgmlType>) -> Result<Vec<(TensorClass, u64)>> {
    let tensors = &shape.tensors;
    let mut policy = Policy::for_model(body, tensors, &shape.layers);
    if let Some(ty) = ple {
        policy.ple_type = ty;
    }
    let choices = policy.assign(tensors)?;
    Ok(tensors
        .iter()
        .zip(choices)
        .map(|(t, c)| (c.class, c.ty.bytes_for(t.shape.iter().product()).unwrap_or(0)))
        .collect())
}

/// Bytes of compute buffer llama.cpp reserves on a GPU for a batch of `n_batch` tokens: the
/// logits of every token and the widest activations, in F32. A GPU allocation is held whole, so
/// this is what VRAM pays; an estimate (llama.cpp measures its own at load).
fn gpu_compute_bytes(shape: &ModelShape, n_batch: u64) -> u64 {
    let n_ff = shape.layers.iter().map(|l| l.n_ff).max().unwrap_or(0);
    4 * n_batch * (shape.n_vocab + 2 * n_ff + 4 * shape.n_embd)
}

/// Bytes of the host's compute buffer a batch of `n_batch` tokens touches. llama.cpp reserves
/// as much as on a GPU, but RAM holds only the pages written: the activations of a full batch
/// and the logits of the one token whose output is read (llama.cpp selects the output rows
/// before the output projection). Measured: Gemma 3 270M reserves 525 MiB for `-b 512` and its
/// process peaks at 350 MiB all told (docs/plan.md, "How `plan` counts"). Weights llama.cpp
/// repacks for its CPU kernels count once: the runner releases the file pages they were copied
/// from.
fn host_compute_bytes(shape: &ModelShape, n_batch: u64) -> u64 {
    let n_ff = shape.layers.iter().map(|l| l.n_ff).max().unwrap_or(0);
    4 * n_batch * (2 * n_ff + 4 * shape.n_embd) + 4 * shape.n_vocab
}

/// The runner's own resident memory beside the model: the program, its libraries and heap
/// (18.5 MiB; 16 before the constrained-sampling engine, llguidance, was linked in), and
/// llama.cpp's vocabulary tables (about 128 bytes a token), fitted to the peak RSS of
/// `strata generate` on the gemma4 fixture (600 tokens), SmolLM2 (49,152) and Gemma 3 270M
/// (262,144): `tests/plan.rs`, `plan_agrees_with_the_process`.
fn runtime_bytes(shape: &ModelShape) -> u64 {
    (37 << 19) + 128 * shape.n_vocab
}

/// The page size the kernel maps files in.
const PAGE: u64 = 4096;

/// RAM a lazily read table of `bytes` over `rows` rows holds for a context of `n_ctx` tokens:
/// each distinct token brings its row's pages in (a row spans whole pages plus one it straddles).
fn lazy_resident(bytes: u64, rows: u64, n_ctx: u64) -> u64 {
    let row = bytes / rows.max(1);
    rows.min(n_ctx).saturating_mul(row.div_ceil(PAGE).saturating_add(1).saturating_mul(PAGE)).min(bytes)
}

/// Every mix for a model on a device, at a context of `n_ctx` tokens (F16 KV cache), with the
/// PLE table read as `lazy` says, and with the towers when the runner loads them.
pub fn mixes(
    shape: &ModelShape,
    budget: &Budget,
    n_ctx: u64,
    n_batch: u64,
    lazy: LazyMode,
    towers: Option<&MediaCost>,
) -> Result<Vec<Mix>> {
    let ple_table = shape.tensors.iter().find(|t| t.class == TensorClass::PerLayerTokenEmbedding);
    let has_ple = ple_table.is_some();
    let ple_rows = ple_table.map_or(0, |t| t.shape.iter().skip(1).product());
    let ple_lazy_capable = ple_table.is_some_and(|t| shape.reads_lazily(&t.name));
    let ples: Vec<Option<GgmlType>> = if has_ple { PLE_TYPES.iter().copied().map(Some).collect() } else { vec![None] };
    let kv = shape.kv_cache_bytes(n_ctx, n_batch, 2.0);
    let compute = gpu_compute_bytes(shape, n_batch);
    // Held in RAM whatever runs where: the runtime, and the host's share of a batch.
    let host = runtime_bytes(shape) + host_compute_bytes(shape, n_batch);
    // The towers' weights and encoder buffers: read per image or clip, not per token.
    let media = towers.map_or(0, MediaCost::total_bytes);
    let n_layer = shape.layers.len();
    let mut out = Vec::new();
    for &body in BODY_PRESETS {
        for &ple in &ples {
            let bytes = tensor_bytes(shape, body, ple)?;
            let class_bytes =
                |class: TensorClass| -> u64 { bytes.iter().filter(|(c, _)| *c == class).map(|(_, b)| b).sum() };
            let file_bytes: u64 = bytes.iter().map(|(_, b)| b).sum();
            let ple_bytes = class_bytes(TensorClass::PerLayerTokenEmbedding);
            let ple_lazy = ple_lazy_capable && lazy.applies(ple_bytes);
            let ple_resident = if ple_lazy { lazy_resident(ple_bytes, ple_rows, n_ctx) } else { ple_bytes };
            // Bytes held in RAM apart from the table's, plus what of it is resident.
            let ram_file = file_bytes - ple_bytes + ple_resident;
            let embd = class_bytes(TensorClass::TokenEmbedding);
            let output = class_bytes(TensorClass::Output);
            // llama.cpp keeps the input layer (token embedding, PLE table) in host memory; a
            // tied output projection is copied to the GPU with the output layer.
            let output_on_gpu = if output > 0 { output } else { embd };
            let body_bytes = file_bytes - ple_bytes - embd - output;
            let per_layer = body_bytes / n_layer.max(1) as u64;
            let kv_per_layer = kv / n_layer.max(1) as u64;
            let mix = |offload: Offload| -> Mix {
                let (gpu, ram) = match offload {
                    Offload::Full => (body_bytes + output_on_gpu + kv + compute, embd + ple_resident + host),
                    Offload::Partial(n) => {
                        let on_gpu = n as u64 * (per_layer + kv_per_layer) + compute;
                        (on_gpu, ram_file - n as u64 * per_layer + kv - n as u64 * kv_per_layer + host)
                    }
                    Offload::Cpu => (0, ram_file + kv + host),
                };
                // libmtmd puts the towers on the GPU when the text model has layers there.
                let (gpu_media, ram_media) = if offload == Offload::Cpu { (0, media) } else { (media, 0) };
                let (gpu, ram) = (gpu + gpu_media, ram + ram_media);
                let fits = if budget.shared || budget.gpu_bytes == 0 {
                    gpu + ram <= budget.ram_bytes.saturating_sub(RESERVE_BYTES)
                } else {
                    gpu <= budget.gpu_bytes.saturating_sub(RESERVE_BYTES)
                        && ram <= budget.ram_bytes.saturating_sub(RESERVE_BYTES)
                };
                // Read per generated token: every weight but the embedding rows, and the KV cache.
                let read_gpu = gpu.saturating_sub(compute + gpu_media) as f64;
                // (A tied output projection reads the whole embedding on the CPU.)
                let rows_only = ple_resident + if output > 0 || offload == Offload::Full { embd } else { 0 };
                let read_ram = ram.saturating_sub(host + ram_media).saturating_sub(rows_only) as f64;
                let seconds = |bytes: f64, bw: Option<f64>| bw.filter(|&b| b > 0.0).map(|b| bytes / (b * 1e9));
                let gpu_bw = if budget.shared { budget.ram_bandwidth_gb_s } else { budget.gpu_bandwidth_gb_s };
                let t = match (seconds(read_gpu, gpu_bw), seconds(read_ram, budget.ram_bandwidth_gb_s)) {
                    (Some(a), Some(b)) => Some(a + b),
                    (None, Some(b)) if read_gpu == 0.0 => Some(b),
                    _ => None,
                };
                Mix {
                    body,
                    ple,
                    file_bytes,
                    ple_bytes,
                    ple_lazy,
                    ple_resident_bytes: ple_resident,
                    offload,
                    gpu_bytes: gpu,
                    ram_bytes: ram,
                    kv_bytes: kv,
                    tokens_per_s_bound: t.map(|t| 1.0 / t),
                    fits,
                    kl_mean: None,
                    top1: None,
                }
            };
            let offload = if budget.gpu_bytes == 0 {
                Offload::Cpu
            } else if mix(Offload::Full).fits || budget.shared {
                Offload::Full
            } else {
                // As many of the repeating layers as fit, the rest on the CPU.
                let room = budget.gpu_bytes.saturating_sub(RESERVE_BYTES + compute + media);
                let n = (room / (per_layer + kv_per_layer).max(1)).min(n_layer as u64) as u32;
                if n == 0 {
                    Offload::Cpu
                } else {
                    Offload::Partial(n)
                }
            };
            out.push(mix(offload));
        }
    }
    Ok(out)
}

/// The mix to recommend: the best-quality body that runs entirely in the fastest memory there
/// is; failing that, the best that fits at all. F16 is shown but never recommended: it reads
/// twice Q8_0's bytes per token, for a difference models.toml's measurements put at a mean KL
/// of 0.004 (SmolLM2). The PLE table gets the widest type up to Q8_0 that lets that body fit: it is read a
/// few rows per token, so it costs memory, not speed. `None` when nothing fits.
pub fn recommend(mixes: &[Mix], budget: &Budget) -> Option<(usize, String)> {
    let candidate = |m: &Mix| m.fits && m.body != Preset::F16 && m.ple != Some(GgmlType::F16);
    // A GPU is faster than the CPU: the best body it holds whole wins. Memory lent over RPC is
    // not (it is another machine's RAM, behind a network): there the best body that fits does.
    if let Some(i) = mixes.iter().position(|m| candidate(m) && m.offload == Offload::Full && budget.rpc_machines == 0) {
        let m = &mixes[i];
        let whole = if budget.shared { "runs on the GPU within the shared memory" } else { "fits the GPU whole" };
        return Some((i, format!("the best-quality body ({}) that {whole}{}", m.body, ple_reason(m))));
    }
    let i = mixes.iter().position(candidate)?;
    if mixes[i].offload == Offload::Cpu && budget.gpu_bytes == 0 {
        return Some((
            i,
            format!("the best-quality body ({}) that fits in memory{}", mixes[i].body, ple_reason(&mixes[i])),
        ));
    }
    let m = &mixes[i];
    let place = match (m.offload, budget.rpc_machines > 0) {
        (Offload::Full, true) => "with every layer offloaded over RPC".to_string(),
        (Offload::Full, false) => "on the GPU".to_string(),
        (Offload::Partial(n), true) => format!("with {n} layers offloaded over RPC"),
        (Offload::Partial(n), false) => format!("with {n} layers on the GPU"),
        (Offload::Cpu, _) => "on the CPU".to_string(),
    };
    Some((i, format!("the best-quality body ({}) that fits, {place}{}", m.body, ple_reason(m))))
}

fn ple_reason(m: &Mix) -> String {
    match m.ple {
        Some(ty) if m.ple_lazy => format!(
            "; PLE table at {} ({:.2} GiB on disk, read lazily: {:.0} MiB resident at this context)",
            ty.name().to_lowercase(),
            m.ple_bytes as f64 / GIB,
            m.ple_resident_bytes as f64 / (1u64 << 20) as f64
        ),
        Some(ty) => {
            format!("; PLE table at {} ({:.2} GiB, in host memory)", ty.name().to_lowercase(), m.ple_bytes as f64 / GIB)
        }
        None => String::new(),
    }
}

/// What the smallest mix needs beyond the budget, for the message when nothing fits.
pub fn shortfall(mixes: &[Mix], budget: &Budget) -> String {
    let smallest = mixes.iter().min_by_key(|m| m.gpu_bytes + m.ram_bytes);
    match smallest {
        Some(m) => {
            let need = (m.gpu_bytes + m.ram_bytes) as f64 / GIB;
            let have = if budget.shared { budget.ram_bytes } else { budget.ram_bytes + budget.gpu_bytes }
                .saturating_sub(RESERVE_BYTES) as f64
                / GIB;
            format!(
                "nothing fits {}: the smallest mix ({}{}) needs {need:.2} GiB, {:.2} GiB more than the {have:.2} GiB available",
                budget.name,
                m.body,
                m.ple.map(|t| format!(", PLE {}", t.name())).unwrap_or_default(),
                need - have
            )
        }
        None => format!("nothing fits {}", budget.name),
    }
}
