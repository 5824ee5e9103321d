//! The one module that talks to llama.cpp (through llama-cpp-2): loading a model, tokenizing,
//! evaluating tokens into a KV cache that is reused across calls, and llama.cpp's own log,
//! which is captured (quiet unless `--verbose`) so that its last error can be folded into ours;
//! and ggml's eval callback, which collects importance matrices ([`imatrix`]).

pub mod imatrix;
pub mod rpc;

use std::ffi::{c_char, c_void, CStr};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use strata_run::generation::{Generated, Request, StopReason, TextStream};
use strata_run::planning::LazyMode;
use strata_run::sampling::Sampler;

static VERBOSE: AtomicBool = AtomicBool::new(false);
static LAST_ERROR: Mutex<String> = Mutex::new(String::new());
/// llama.cpp's lines from the last load that [`Placement`] reads.
static PLACEMENT_LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// llama.cpp's log sink: echoes when verbose, keeps placement lines and the last error line.
unsafe extern "C" fn log_callback(level: llama_cpp_sys_2::ggml_log_level, text: *const c_char, _: *mut c_void) {
    if text.is_null() {
        return;
    }
    // SAFETY: llama.cpp passes a NUL-terminated string, valid for the duration of the call.
    let text = unsafe { CStr::from_ptr(text) }.to_string_lossy();
    if VERBOSE.load(Ordering::Relaxed) {
        eprint!("{text}");
    }
    if let Some(rest) = text.split_once(REPACK_LINE).map(|(_, r)| r) {
        repacking(rest.split(" with ").next().unwrap_or(rest).trim());
    }
    if PLACEMENT_LINES.iter().any(|k| text.contains(k)) {
        PLACEMENT_LOG.lock().unwrap_or_else(|e| e.into_inner()).push(text.trim().to_string());
    }
    if level == llama_cpp_sys_2::GGML_LOG_LEVEL_ERROR {
        let line = text.trim();
        if !line.is_empty() {
            *LAST_ERROR.lock().unwrap_or_else(|e| e.into_inner()) = line.to_string();
        }
    }
}

/// llama.cpp's last error line since the previous call, if it logged one.
fn take_last_error() -> Option<String> {
    let mut last = LAST_ERROR.lock().unwrap_or_else(|e| e.into_inner());
    (!last.is_empty()).then(|| std::mem::take(&mut *last))
}

/// Whether llama.cpp has a device to offload layers to: a GPU, or an RPC server's device.
/// (llama.cpp's own `llama_supports_gpu_offload` says yes whenever the RPC backend is built in.)
fn has_offload_device() -> bool {
    offload_device_count() > 0
}

/// The devices llama.cpp offloads layers to (GPUs, integrated GPUs, RPC servers' devices), in
/// the order `tensor_split` gives their shares.
fn offload_devices() -> Vec<llama_cpp_sys_2::ggml_backend_dev_t> {
    use llama_cpp_sys_2::{
        ggml_backend_dev_count, ggml_backend_dev_get, ggml_backend_dev_type, GGML_BACKEND_DEVICE_TYPE_GPU as GPU,
        GGML_BACKEND_DEVICE_TYPE_IGPU as IGPU,
    };
    // SAFETY: plain registry reads of the devices ggml registered.
    unsafe {
        (0..ggml_backend_dev_count())
            .map(|i| ggml_backend_dev_get(i))
            .filter(|&d| matches!(ggml_backend_dev_type(d), GPU | IGPU))
            .collect()
    }
}

fn offload_device_count() -> usize {
    offload_devices().len()
}

/// The offload devices' free memory, by which llama.cpp splits layers when no `tensor_split` is
/// given (a device that reports no memory counts the host's, as llama.cpp does).
fn offload_device_free() -> Vec<f32> {
    use llama_cpp_sys_2::{ggml_backend_dev_by_type, ggml_backend_dev_memory, GGML_BACKEND_DEVICE_TYPE_CPU as CPU};
    let memory = |dev| {
        let (mut free, mut total) = (0usize, 0usize);
        // SAFETY: `dev` is a registered device; ggml writes the two sizes.
        unsafe { ggml_backend_dev_memory(dev, &mut free, &mut total) };
        (free, total)
    };
    offload_devices()
        .into_iter()
        .map(|d| match memory(d) {
            // SAFETY: plain registry lookup; a build of llama.cpp always has its CPU device.
            (0, 0) => memory(unsafe { ggml_backend_dev_by_type(CPU) }).0 as f32,
            (free, _) => free as f32,
        })
        .collect()
}

/// For a model whose last layers share a KV cache (Gemma 3n, Gemma 4), offloaded with `-ngl
/// n_gpu_layers` over several devices and no `-ts`: the split that keeps that block on one
/// device, where llama.cpp's default split by free memory would cut it
/// ([`strata_run::layer_split`]), with the block's first and last layer.
fn shared_kv_split(path: &Path, n_gpu_layers: u32) -> Option<(Vec<f32>, usize, usize)> {
    let free = offload_device_free();
    if free.len() < 2 {
        return None;
    }
    // A file strata cannot read is left to llama.cpp, which says what is wrong with it.
    let file = strata_gguf::GgufFile::open_keeping(path, |k| {
        k == "general.architecture" || k.ends_with(".block_count") || k.ends_with(".attention.shared_kv_layers")
    })
    .ok()?;
    let arch = file.architecture()?;
    let key = |k: &str| {
        file.get(&format!("{arch}.{k}")).and_then(strata_gguf::Value::as_u64).and_then(|v| usize::try_from(v).ok())
    };
    let n_layer = key("block_count")?;
    let first = strata_run::layer_split::shared_kv_block(n_layer, key("attention.shared_kv_layers")?)?;
    let split = strata_run::layer_split::keep_block_together(n_layer, n_gpu_layers as usize, &free, first)?;
    Some((split, first, n_layer - 1))
}

/// An error that says what we tried, and what llama.cpp said about it.
fn llama_error(what: String) -> anyhow::Error {
    match take_last_error() {
        Some(said) => anyhow!("{what}: llama.cpp says: {said}"),
        None => anyhow!("{what}"),
    }
}

/// A compute device llama.cpp can use, with its memory in bytes.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Device {
    /// llama.cpp's name: "CPU", "CUDA0".
    pub name: String,
    pub description: String,
    pub kind: DeviceKind,
    pub memory_total: u64,
    pub memory_free: u64,
}

/// What kind of device llama.cpp says it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum DeviceKind {
    #[serde(rename = "CPU")]
    Cpu,
    #[serde(rename = "GPU")]
    Gpu,
    #[serde(rename = "integrated GPU")]
    IntegratedGpu,
    #[serde(rename = "accelerator")]
    Accelerator,
    #[serde(rename = "unknown")]
    Unknown,
}

impl std::fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DeviceKind::Cpu => "CPU",
            DeviceKind::Gpu => "GPU",
            DeviceKind::IntegratedGpu => "integrated GPU",
            DeviceKind::Accelerator => "accelerator",
            DeviceKind::Unknown => "unknown",
        })
    }
}

/// The devices this build of llama.cpp sees (the CPU, GPUs on a `cuda` build, and the devices
/// of the RPC servers `rpc` names).
pub fn devices(rpc: &[String], rpc_timeout: std::time::Duration) -> Result<Vec<Device>> {
    use llama_cpp_2::LlamaBackendDeviceType as Type;
    let backend = LlamaBackend::init().context("cannot initialise llama.cpp")?;
    // SAFETY: `log_callback` is a plain function for the program's lifetime and takes no user data.
    unsafe { llama_cpp_sys_2::llama_log_set(Some(log_callback), std::ptr::null_mut()) };
    rpc::add_servers(&backend, rpc, rpc_timeout)?;
    Ok(llama_cpp_2::list_llama_ggml_backend_devices()
        .into_iter()
        .map(|d| Device {
            name: d.name,
            description: d.description,
            kind: match d.device_type {
                Type::Cpu => DeviceKind::Cpu,
                Type::Gpu => DeviceKind::Gpu,
                Type::IntegratedGpu => DeviceKind::IntegratedGpu,
                Type::Accelerator => DeviceKind::Accelerator,
                Type::Unknown => DeviceKind::Unknown,
            },
            memory_total: d.memory_total as u64,
            memory_free: d.memory_free as u64,
        })
        .collect())
}

/// What the linked ggml was compiled with, per backend: llama.cpp's `llama_print_system_info()`
/// ("CPU : SSE3 = 1 | AVX2 = 1 | ... | "), parsed. Only features built in are listed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BuildInfo {
    /// The string as llama.cpp prints it.
    pub system_info: String,
    pub backends: Vec<Backend>,
}

/// One ggml backend's compiled-in features, in llama.cpp's order: {"AVX2": "1", ...}.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Backend {
    pub name: String,
    pub features: serde_json::Map<String, serde_json::Value>,
}

impl BuildInfo {
    fn parse(system_info: &str) -> BuildInfo {
        let mut backends: Vec<Backend> = Vec::new();
        for field in system_info.split(" | ").map(str::trim).filter(|f| !f.is_empty()) {
            // A backend's first field carries its name: "CPU : SSE3 = 1".
            let field = match field.split_once(" : ") {
                Some((name, rest)) => {
                    backends.push(Backend { name: name.trim().to_string(), features: serde_json::Map::new() });
                    rest
                }
                None => field,
            };
            let (name, value) = field.split_once(" = ").unwrap_or((field, ""));
            if let Some(backend) = backends.last_mut() {
                backend.features.insert(name.trim().to_string(), value.trim().into());
            }
        }
        BuildInfo { system_info: system_info.trim().to_string(), backends }
    }

    /// Whether ggml's AMX kernels are built in (they add `AMX_INT8` to the CPU features).
    pub fn has_amx(&self) -> bool {
        self.backends.iter().flat_map(|b| b.features.keys()).any(|name| name.starts_with("AMX"))
    }
}

/// What the linked ggml was compiled with.
pub fn build_info() -> BuildInfo {
    // SAFETY: returns a pointer to a static string that llama.cpp refills on each call; it is
    // copied before anything else can call it (strata calls it from one thread at a time).
    let text = unsafe { CStr::from_ptr(llama_cpp_sys_2::llama_print_system_info()) };
    BuildInfo::parse(&text.to_string_lossy())
}

/// Refuses a build of llama.cpp that carries ggml's AMX kernels: they segfault at the first
/// decode on Intel CPUs with AMX (llama.cpp issue 20824). `.cargo/config.toml` compiles them out;
/// a `target/` built before that setting still has them.
fn check_no_amx() -> Result<()> {
    if build_info().has_amx() {
        bail!("this strata links a llama.cpp built with ggml's AMX kernels, which crash on this CPU (llama.cpp issue 20824); rebuild it: cargo clean -p llama-cpp-sys-2 --release && cargo build --release");
    }
    Ok(())
}

/// What llama.cpp's CPU backend logs as it repacks a weight into its own buffer
/// (`CPU_REPACK`, ggml-cpu/repack.cpp): "repack: repack tensor NAME with TYPE_RxC".
const REPACK_LINE: &str = "repack: repack tensor ";

/// The file pages of repacked weights, released as llama.cpp repacks them. Its kernels read the
/// repacked copy only, so the originals, read once to make it, would otherwise stay resident
/// beside it: the same bytes twice. Each weight's pages are released when llama.cpp logs that it
/// repacks the next one (the log comes before the repack), the last when the load ends. Were a
/// weight read again after all, its pages would fault back in from the file: nothing but memory
/// changes. llama.h says nothing of repacking; its log is the one place that names the weights.
struct Releaser {
    path: PathBuf,
    /// File byte ranges of the model's weights, by name.
    ranges: std::collections::HashMap<String, std::ops::Range<u64>>,
    /// The weight being repacked now.
    current: Option<String>,
    released: u64,
}

static RELEASER: Mutex<Option<Releaser>> = Mutex::new(None);

impl Releaser {
    /// Releases the pages of the weight repacked last, if any.
    fn release_current(&mut self) {
        if let Some(range) = self.current.take().and_then(|name| self.ranges.get(&name).cloned()) {
            self.released += strata_run::system_memory::release_mapped_pages(&self.path, &[range]).unwrap_or(0);
        }
    }
}

/// From the log callback: llama.cpp is about to repack `name`, so the previous one is done.
fn repacking(name: &str) {
    if let Some(r) = RELEASER.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        r.release_current();
        r.current = Some(name.to_string());
    }
}

/// Arms the [`Releaser`] for a load of `path`: the weights' byte ranges, from the file's tensor
/// table (its metadata stepped over, not built).
fn arm_releaser(path: &Path) -> Result<()> {
    let file = strata_gguf::GgufFile::open_keeping(path, |_| false)?;
    let ranges = file
        .tensors
        .iter()
        .map(|t| (t.name.clone(), file.data_offset + t.offset..file.data_offset + t.offset + t.n_bytes()))
        .collect();
    *RELEASER.lock().unwrap_or_else(|e| e.into_inner()) =
        Some(Releaser { path: path.to_path_buf(), ranges, current: None, released: 0 });
    Ok(())
}

/// Disarms the [`Releaser`] after a load, releasing the last weight; the bytes released.
fn disarm_releaser() -> u64 {
    let mut slot = RELEASER.lock().unwrap_or_else(|e| e.into_inner());
    let mut r = match slot.take() {
        Some(r) => r,
        None => return 0,
    };
    r.release_current();
    r.released
}

/// How many layers go to the GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpuLayers {
    /// This many (llama.cpp counts the output layer as one more than the repeating layers).
    Count(u32),
    /// As many as fit in free GPU memory, leaving [`FIT_MARGIN`] and room for the KV cache and
    /// compute buffers of the context to be created (llama.cpp's `common_fit_params`, as `--fit on`).
    Auto,
}

/// Memory left free on each GPU by [`GpuLayers::Auto`]: llama.cpp's default `--fit-target`.
pub const FIT_MARGIN: usize = 1 << 30;

/// llama.cpp's `llama_lazy_mode` for a [`LazyMode`].
fn lazy_mode(mode: LazyMode) -> llama_cpp_sys_2::llama_lazy_mode {
    match mode {
        LazyMode::On => llama_cpp_sys_2::LLAMA_LAZY_MODE_ON,
        LazyMode::Auto => llama_cpp_sys_2::LLAMA_LAZY_MODE_AUTO,
        LazyMode::Off => llama_cpp_sys_2::LLAMA_LAZY_MODE_OFF,
    }
}

/// How to load a model.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub gpu_layers: GpuLayers,
    pub lazy: LazyMode,
    /// The context the model will run with, which [`GpuLayers::Auto`] leaves room for.
    pub context: ContextOptions,
    pub use_mmap: bool,
    pub use_mlock: bool,
    /// Let the CPU backend repack weights into its own layouts (llama.cpp's default; off is
    /// `--no-repack`, which is what a remote CPU backend runs).
    pub repack: bool,
    /// RPC servers (`HOST:PORT`) whose devices join the local ones.
    pub rpc: Vec<String>,
    /// How long a call may wait on them without progress.
    pub rpc_timeout: std::time::Duration,
    /// Each offload device's share of the offloaded layers (empty: llama.cpp's default, by
    /// free memory, with the layers that share a KV cache kept on one device).
    pub tensor_split: Vec<f32>,
    /// Show llama.cpp's own log on stderr.
    pub verbose: bool,
}

/// The llama.cpp backend and one loaded model.
pub struct Model {
    // Field order matters: the model must be dropped before the backend.
    model: LlamaModel,
    backend: LlamaBackend,
    pub path: PathBuf,
    /// Layers asked of the GPU (llama.cpp's `n_gpu_layers`, as fitted), on a GPU build.
    gpu_layers: Option<u32>,
    /// Bytes of the file's mapped pages released after llama.cpp repacked them.
    pub released: u64,
}

/// How to create an evaluation context.
#[derive(Clone, Debug)]
pub struct ContextOptions {
    /// Context size in tokens; 0 uses the model's training context.
    pub n_ctx: u32,
    pub n_batch: u32,
    pub n_threads: i32,
    /// A full-size cache for sliding-window layers, so that a conversation's prefix can be kept.
    pub swa_full: bool,
    /// Types of the cached keys and values.
    pub cache_type_k: CacheType,
    pub cache_type_v: CacheType,
}

/// A KV cache type, as llama.cpp's `--cache-type-k/-v` accept them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheType(llama_cpp_2::context::params::KvCacheType);

impl CacheType {
    /// Parses llama.cpp's names: f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl.
    pub fn parse(name: &str) -> Result<CacheType> {
        use llama_cpp_2::context::params::KvCacheType as K;
        let ty = match name.to_ascii_lowercase().as_str() {
            "f32" => K::F32,
            "f16" => K::F16,
            "bf16" => K::BF16,
            "q8_0" => K::Q8_0,
            "q4_0" => K::Q4_0,
            "q4_1" => K::Q4_1,
            "q5_0" => K::Q5_0,
            "q5_1" => K::Q5_1,
            "iq4_nl" => K::IQ4_NL,
            _ => {
                bail!("unknown KV cache type {name:?}: expected f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1 or iq4_nl")
            }
        };
        Ok(CacheType(ty))
    }
}

impl Model {
    /// Loads a GGUF model. Errors name the file and fold in llama.cpp's last error line.
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Model> {
        VERBOSE.store(opts.verbose, Ordering::Relaxed);
        check_no_amx()?;
        let backend = LlamaBackend::init().context("cannot initialise llama.cpp")?;
        // SAFETY: `log_callback` is a plain function for the program's lifetime and takes no user data.
        unsafe { llama_cpp_sys_2::llama_log_set(Some(log_callback), std::ptr::null_mut()) };
        if !path.is_file() {
            bail!("{}: no such file", path.display());
        }
        rpc::add_servers(&backend, &opts.rpc, opts.rpc_timeout)?;
        let gpu = has_offload_device();
        if let GpuLayers::Count(n @ 1..) = opts.gpu_layers {
            if !gpu && cfg!(feature = "cuda") {
                bail!("--n-gpu-layers {n}: llama.cpp finds no CUDA device (see strata devices)");
            }
            if !gpu {
                bail!("--n-gpu-layers {n}: this build of strata has no GPU backend (build with --features cuda)");
            }
        }
        if !opts.tensor_split.is_empty() {
            let devices = offload_device_count();
            if opts.gpu_layers == GpuLayers::Auto {
                bail!("--tensor-split needs -ngl N: with -ngl auto, llama.cpp fits the split itself");
            }
            if opts.tensor_split.iter().any(|s| !s.is_finite() || *s < 0.0)
                || opts.tensor_split.iter().all(|s| *s == 0.0)
            {
                bail!("--tensor-split {:?}: shares must be non-negative numbers, not all zero", opts.tensor_split);
            }
            if opts.tensor_split.len() > devices {
                bail!(
                    "--tensor-split {:?}: {} shares for {devices} devices to offload to (see strata devices)",
                    opts.tensor_split,
                    opts.tensor_split.len()
                );
            }
        }
        let bar = progress_bar(path);
        let bar_in_callback = bar.clone();
        let mut params = LlamaModelParams::default()
            .with_use_mmap(opts.use_mmap)
            .with_use_mlock(opts.use_mlock)
            .with_lazy_mode(lazy_mode(opts.lazy))
            .with_use_extra_bufts(opts.repack);
        if !opts.tensor_split.is_empty() {
            params = params.with_tensor_split(&opts.tensor_split);
        } else if let GpuLayers::Count(n) = opts.gpu_layers {
            if let Some((split, first, last)) = shared_kv_split(path, n) {
                if opts.verbose {
                    eprintln!(
                        "[layers {first}-{last} share a KV cache: keeping them on one device, as -ts {} would]",
                        split.iter().map(f32::to_string).collect::<Vec<_>>().join(",")
                    );
                }
                params = params.with_tensor_split(&split);
            }
        }
        match opts.gpu_layers {
            GpuLayers::Count(n) => params = params.with_n_gpu_layers(n),
            GpuLayers::Auto if !gpu => params = params.with_n_gpu_layers(0),
            GpuLayers::Auto => {} // fitted below, from llama.cpp's default of "all"
        }
        let mut params = Box::pin(params.with_progress_callback(move |p| {
            bar_in_callback.set_position((p * 100.0) as u64);
            rpc::progressed();
            true
        }));
        if gpu && opts.gpu_layers == GpuLayers::Auto {
            fit_to_free_memory(path, params.as_mut(), &opts.context)?;
        }
        take_last_error();
        PLACEMENT_LOG.lock().unwrap_or_else(|e| e.into_inner()).clear();
        // Repacked weights are read from the memory map once; on the CPU they need not stay.
        if opts.use_mmap && std::env::var_os("STRATA_NO_RELEASE").is_none() {
            arm_releaser(path)?;
        }
        let loaded = rpc::watched(|| LlamaModel::load_from_file(&backend, path, &params));
        let released = disarm_releaser();
        bar.finish_and_clear();
        let model =
            loaded.map_err(|_| llama_error(format!("{}: llama.cpp could not load the model", path.display())))?;
        // llama.cpp's n_gpu_layers: -1 (its default) for all.
        let gpu_layers = gpu.then(|| u32::try_from(params.n_gpu_layers()).unwrap_or(u32::MAX));
        Ok(Model { model, backend, path: path.to_path_buf(), gpu_layers, released })
    }

    /// Loads only a model's vocabulary and metadata (llama.cpp's `vocab_only`): enough to
    /// tokenize and to read its chat template, without reading the weights.
    pub fn load_vocab(path: &Path) -> Result<Model> {
        let backend = LlamaBackend::init().context("cannot initialise llama.cpp")?;
        // SAFETY: `log_callback` is a plain function for the program's lifetime and takes no user data.
        unsafe { llama_cpp_sys_2::llama_log_set(Some(log_callback), std::ptr::null_mut()) };
        if !path.is_file() {
            bail!("{}: no such file", path.display());
        }
        take_last_error();
        let params = LlamaModelParams::default().with_vocab_only(true);
        let model = LlamaModel::load_from_file(&backend, path, &params)
            .map_err(|_| llama_error(format!("{}: llama.cpp could not load the model's vocabulary", path.display())))?;
        Ok(Model { model, backend, path: path.to_path_buf(), gpu_layers: None, released: 0 })
    }

    /// Where the weights went.
    pub fn placement(&self) -> Placement {
        let layers = self.model.n_layer() + 1;
        let offloaded = self.gpu_layers.map(|n| (n.min(layers), layers));
        Placement::from_log(&PLACEMENT_LOG.lock().unwrap_or_else(|e| e.into_inner()), offloaded)
    }

    /// Tokens for `text`; `add_special` adds BOS as the model wants it, `parse_special` turns
    /// special-token text (`<|im_start|>`) into those tokens.
    pub fn tokenize(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<i32> {
        self.model.vocab().tokenize(text.as_bytes(), add_special, parse_special).into_iter().map(|t| t.0).collect()
    }

    /// The bytes of one token (special tokens rendered as text when `special`).
    pub fn piece(&self, token: i32, special: bool) -> Vec<u8> {
        self.model.vocab().token_to_piece(LlamaToken(token), special, None)
    }

    /// Whether the token ends generation (EOS, EOT, `<end_of_turn>`, ...).
    pub fn is_eog(&self, token: i32) -> bool {
        self.model.vocab().is_eog(LlamaToken(token))
    }

    /// The BOS token, when tokenizing with `add_special` starts with it.
    pub fn bos_added(&self) -> Option<i32> {
        let vocab = self.model.vocab();
        vocab.should_add_bos().then(|| vocab.bos().0)
    }

    /// The text of the BOS and EOS tokens, for chat templates.
    pub fn bos_eos_text(&self) -> (String, String) {
        let vocab = self.model.vocab();
        let text = |t: LlamaToken| {
            if t.0 < 0 {
                String::new()
            } else {
                String::from_utf8_lossy(&vocab.token_to_piece(t, true, None)).into_owned()
            }
        };
        (text(vocab.bos()), text(vocab.eos()))
    }

    /// A metadata value as a string, if the model has the key.
    pub fn meta(&self, key: &str) -> Option<String> {
        self.model.meta_val_str(key).ok()
    }

    pub fn n_vocab(&self) -> usize {
        self.model.n_vocab() as usize
    }

    pub fn n_ctx_train(&self) -> u32 {
        self.model.n_ctx_train()
    }

    /// Bytes of weights llama.cpp holds for this model.
    pub fn size(&self) -> u64 {
        self.model.size()
    }

    /// A new evaluation context with an empty cache.
    pub fn session(&self, opts: &ContextOptions) -> Result<Session<'_>> {
        self.session_with(opts, |params| params)
    }

    /// A session that reports every matrix product it computes to `collector`.
    pub fn collecting_session<'m>(
        &'m self,
        opts: &ContextOptions,
        collector: &'m imatrix::Collector,
    ) -> Result<Session<'m>> {
        let user_data = std::ptr::from_ref(collector).cast_mut().cast::<c_void>();
        // SAFETY: the collector outlives the session ('m), and `collect` locks it for each call.
        self.session_with(opts, |params| unsafe { params.with_cb_eval(Some(imatrix::collect), user_data) })
    }

    fn session_with(
        &self,
        opts: &ContextOptions,
        extra: impl FnOnce(LlamaContextParams) -> LlamaContextParams,
    ) -> Result<Session<'_>> {
        let n_ctx = if opts.n_ctx == 0 { self.n_ctx_train() } else { opts.n_ctx };
        let params = extra(opts.params(n_ctx));
        take_last_error();
        let ctx = rpc::watched(|| self.model.new_context(&self.backend, params))
            .map_err(|_| llama_error(format!("{}: cannot create a context of {n_ctx} tokens", self.path.display())))?;
        let n_batch = ctx.n_batch() as usize;
        Ok(Session { model: self, ctx, cached: Vec::new(), batch: LlamaBatch::new(n_batch, 1), n_batch, evaluated: 0 })
    }

    /// A context for `n_seq` sequences decoded together, each with its own KV cache of
    /// `n_ctx / n_seq` cells (the server's slots; `opts.n_ctx` is the total, as llama-server's `-c`).
    pub fn multi_session(&self, opts: &ContextOptions, n_seq: u32) -> Result<MultiSession<'_>> {
        let n_ctx = if opts.n_ctx == 0 { self.n_ctx_train() } else { opts.n_ctx };
        let params = opts.params(n_ctx).with_n_seq_max(n_seq).with_kv_unified(false);
        take_last_error();
        let ctx = rpc::watched(|| self.model.new_context(&self.backend, params)).map_err(|_| {
            llama_error(format!(
                "{}: cannot create a context of {n_ctx} tokens for {n_seq} sequences",
                self.path.display()
            ))
        })?;
        let n_batch = ctx.n_batch() as usize;
        Ok(MultiSession {
            model: self,
            n_ctx_seq: ctx.n_ctx() as usize / n_seq.max(1) as usize,
            ctx,
            batch: LlamaBatch::new(n_batch, 1),
            n_batch,
        })
    }
}

/// One token of a multi-sequence batch: its sequence, its position there, and whether its
/// logits are wanted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchToken {
    pub token: i32,
    pub seq: i32,
    pub pos: usize,
    pub logits: bool,
}

/// A context holding several sequences' KV caches, decoded one batch at a time.
pub struct MultiSession<'m> {
    pub model: &'m Model,
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    n_batch: usize,
    n_ctx_seq: usize,
}

impl MultiSession<'_> {
    /// Cells of KV cache each sequence has.
    pub fn n_ctx_seq(&self) -> usize {
        self.n_ctx_seq
    }

    /// The most tokens one decode takes.
    pub fn n_batch(&self) -> usize {
        self.n_batch
    }

    /// Drops sequence `seq`'s cache from position `from` on; false if llama.cpp cannot cut it
    /// there (then the whole sequence is dropped and the caller starts it over).
    pub fn truncate(&mut self, seq: i32, from: usize) -> bool {
        if self.ctx.kv_cache_seq_rm(seq, u32::try_from(from).ok(), None).is_ok() {
            return true;
        }
        let _ = self.ctx.kv_cache_seq_rm(seq, None, None);
        false
    }

    /// Evaluates `tokens` (at most [`MultiSession::n_batch`]) in one batch.
    pub fn decode(&mut self, tokens: &[BatchToken]) -> Result<()> {
        self.batch.clear();
        for t in tokens {
            self.batch.add(LlamaToken(t.token), t.pos as i32, &[t.seq], t.logits).context("batch is full")?;
        }
        take_last_error();
        rpc::watched(|| self.ctx.decode(&mut self.batch))
            .map_err(|e| llama_error(format!("llama.cpp could not evaluate the tokens ({e})")))
    }

    /// The logits after the `i`-th token of the last [`MultiSession::decode`] (which asked for them).
    pub fn logits(&self, i: usize) -> &[f32] {
        // llama.cpp waits here for the backends to finish the batch: a watched wait.
        rpc::watched(|| self.ctx.get_logits_ith(i as i32))
    }
}

impl ContextOptions {
    /// llama.cpp's context parameters for these options and a context of `n_ctx` tokens.
    fn params(&self, n_ctx: u32) -> LlamaContextParams {
        LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(self.n_batch)
            .with_n_ubatch(self.n_batch)
            .with_n_threads(self.n_threads)
            .with_n_threads_batch(self.n_threads)
            .with_swa_full(self.swa_full)
            .with_type_k(self.cache_type_k.0)
            .with_type_v(self.cache_type_v.0)
    }
}

/// Sets how many layers (and which tensors) go to each GPU so that the weights, the KV cache
/// of `context` and the compute buffers fit in free memory with [`FIT_MARGIN`] to spare.
/// llama.cpp measures this by laying the model out without loading it. The context size is
/// kept as asked. When nothing fits, everything stays on the CPU.
fn fit_to_free_memory(
    path: &Path,
    params: std::pin::Pin<&mut LlamaModelParams>,
    context: &ContextOptions,
) -> Result<()> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| anyhow!("{}: the path holds a NUL byte", path.display()))?;
    let mut cparams = context.params(context.n_ctx);
    // SAFETY: a pure query of a compile-time constant.
    let mut margins = vec![FIT_MARGIN; unsafe { llama_cpp_sys_2::llama_max_devices() }];
    take_last_error();
    match params.fit_params(&c_path, &mut cparams, &mut margins, u32::MAX, llama_cpp_sys_2::GGML_LOG_LEVEL_ERROR) {
        Ok(_) => Ok(()),
        Err(llama_cpp_2::model::params::FitError::Failure) => {
            eprintln!("[{}: no GPU layout fits in free memory; running on the CPU]", path.display());
            Ok(())
        }
        Err(_) => Err(llama_error(format!("{}: cannot size the model for the GPU", path.display()))),
    }
}

/// Where a loaded model's weights went. The layer count is the parameters'. The bytes per
/// buffer and which tensors llama.cpp reads lazily come from its log of the load: llama.h has
/// no query for either, so this is the one place strata reads llama.cpp's log for facts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Placement {
    /// Buffer name and MiB: ("CUDA0", 1520.3), ("CPU_Mapped", 402.0).
    pub buffers: Vec<(String, f64)>,
    /// Layers offloaded to the GPU and the model's offloadable layers (the output layer
    /// included), on a build with a GPU backend.
    pub offloaded: Option<(u32, u32)>,
    /// Tensors that llama.cpp reads lazily from the memory map, prefetching the rows a batch needs.
    pub lazy: Vec<String>,
}

/// The lines of llama.cpp's load log that [`Placement`] reads.
const PLACEMENT_LINES: &[&str] = &["model buffer size =", "enabling prefetch for '"];

impl Placement {
    fn from_log(lines: &[String], offloaded: Option<(u32, u32)>) -> Placement {
        let mut placement = Placement { offloaded, ..Placement::default() };
        for line in lines {
            if let Some((name, size)) = line.split_once(PLACEMENT_LINES[0]) {
                // "load_tensors: RPC0[127.0.0.1:50052] model buffer size": the name after the prefix.
                let name = name.split_once(": ").map_or(name, |(_, n)| n).trim().to_string();
                if let Ok(mib) = size.trim().trim_end_matches("MiB").trim().parse() {
                    placement.buffers.push((name, mib));
                }
            } else if let Some((_, rest)) = line.split_once(PLACEMENT_LINES[1]) {
                placement.lazy.push(rest.trim_end_matches('\'').to_string());
            }
        }
        placement
    }
}

impl std::fmt::Display for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let buffers: Vec<String> = self.buffers.iter().map(|(name, mib)| format!("{name} {mib:.1} MiB")).collect();
        write!(f, "{}", if buffers.is_empty() { "unknown".to_string() } else { buffers.join(", ") })?;
        if let Some((n, of)) = self.offloaded {
            write!(f, "; {n}/{of} layers on the GPU")?;
        }
        Ok(())
    }
}

fn progress_bar(path: &Path) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(Some(100), indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template("loading {msg} [{bar:30}] {percent}%")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    bar
}

/// A context and the tokens its KV cache holds (sequence 0).
pub struct Session<'m> {
    pub model: &'m Model,
    ctx: LlamaContext<'m>,
    cached: Vec<i32>,
    batch: LlamaBatch<'static>,
    n_batch: usize,
    /// Tokens evaluated by the last [`Session::feed`] (the rest came from the cache).
    pub evaluated: usize,
}

impl Session<'_> {
    /// Context size in tokens.
    pub fn n_ctx(&self) -> usize {
        self.ctx.n_ctx() as usize
    }

    /// The tokens the cache holds.
    pub fn cached(&self) -> &[i32] {
        &self.cached
    }

    /// Makes the cache hold exactly `tokens`, keeping the longest common prefix with what it
    /// holds and evaluating only the rest; returns the logits after the last token.
    pub fn feed(&mut self, tokens: &[i32]) -> Result<&[f32]> {
        if tokens.is_empty() {
            bail!("nothing to evaluate: the prompt is empty");
        }
        if tokens.len() > self.n_ctx() {
            bail!(
                "the prompt is {} tokens, more than the context of {} (raise -c/--ctx-size)",
                tokens.len(),
                self.n_ctx()
            );
        }
        let mut keep = self.cached.iter().zip(tokens).take_while(|(a, b)| a == b).count();
        // The last token is always evaluated again, for its logits.
        keep = keep.min(tokens.len() - 1);
        if keep < self.cached.len() {
            let removed = self.ctx.kv_cache_seq_rm(0, Some(keep as u32), None).is_ok();
            if !removed {
                self.ctx.clear_kv_cache();
                keep = 0;
            }
            self.cached.truncate(keep);
        }
        self.append(&tokens[keep..])
    }

    /// Appends one token and returns the logits after it.
    pub fn push(&mut self, token: i32) -> Result<&[f32]> {
        if self.cached.len() >= self.n_ctx() {
            bail!("the context of {} tokens is full", self.n_ctx());
        }
        self.append(&[token])
    }

    /// Evaluates `tokens` after what the cache holds, in batches of `n_batch`, asking for logits
    /// only after the last one; returns them.
    fn append(&mut self, tokens: &[i32]) -> Result<&[f32]> {
        self.decode(tokens, false, |_, _| {})?;
        Ok(rpc::watched(|| self.ctx.get_logits_ith(self.batch.n_tokens() - 1)))
    }

    /// Evaluates `tokens` from an empty cache and returns the logits after every one of them
    /// (`tokens.len() × n_vocab`, position-major).
    pub fn logits_all(&mut self, tokens: &[i32]) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(tokens.len() * self.model.n_vocab());
        self.logits_each(tokens, |_, logits| out.extend_from_slice(logits))?;
        Ok(out)
    }

    /// Evaluates `tokens` from an empty cache, handing `each` the position and logits after
    /// every one of them as its batch completes.
    pub fn logits_each(&mut self, tokens: &[i32], mut each: impl FnMut(usize, &[f32])) -> Result<()> {
        if tokens.len() > self.n_ctx() {
            bail!("{} tokens do not fit the context of {} (raise -c/--ctx-size)", tokens.len(), self.n_ctx());
        }
        self.clear();
        let mut done = 0;
        self.decode(tokens, true, |ctx, n| {
            (0..n).for_each(|i| each(done + i, rpc::watched(|| ctx.get_logits_ith(i as i32))));
            done += n;
        })
    }

    /// The batch loop: evaluates `tokens` after what the cache holds, `n_batch` at a time,
    /// asking for logits after every token (`all_logits`) or only after the last; after each
    /// batch, `each_batch` gets the context and the batch's size, to read its logits.
    fn decode(
        &mut self,
        tokens: &[i32],
        all_logits: bool,
        mut each_batch: impl FnMut(&LlamaContext, usize),
    ) -> Result<()> {
        self.evaluated = tokens.len();
        let n_chunks = tokens.len().div_ceil(self.n_batch);
        for (c, chunk) in tokens.chunks(self.n_batch).enumerate() {
            self.batch.clear();
            for (i, &t) in chunk.iter().enumerate() {
                let logits = all_logits || (c + 1 == n_chunks && i + 1 == chunk.len());
                self.batch.add(LlamaToken(t), (self.cached.len() + i) as i32, &[0], logits).context("batch is full")?;
            }
            take_last_error();
            rpc::watched(|| self.ctx.decode(&mut self.batch))
                .map_err(|e| llama_error(format!("llama.cpp could not evaluate the tokens ({e})")))?;
            each_batch(&self.ctx, chunk.len());
            self.cached.extend_from_slice(chunk);
        }
        Ok(())
    }

    /// Empties the cache.
    pub fn clear(&mut self) {
        self.ctx.clear_kv_cache();
        self.cached.clear();
    }

    /// Runs one generation: evaluates the prompt (keeping what the cache already holds), then
    /// samples until an end-of-generation token, a stop string, the token limit or the end of
    /// the context. `emit` receives text as it is settled; `keep_going` is polled before each
    /// token (false stops with [`StopReason::Interrupted`]).
    pub fn generate(
        &mut self,
        sampler: &mut Sampler,
        req: &Request<'_>,
        mut emit: impl FnMut(&str),
        keep_going: impl Fn() -> bool,
    ) -> Result<Generated> {
        let start = Instant::now();
        let mut logits = self.feed(req.prompt)?.to_vec();
        let prompt_evaluated = self.evaluated;
        let prompt_seconds = start.elapsed().as_secs_f64();
        for &t in req.prompt {
            sampler.accept(t as u32);
        }
        let gen_start = Instant::now();
        let mut text = TextStream::new(req.stop);
        let mut tokens = Vec::new();
        let stop_reason = loop {
            if !keep_going() {
                break StopReason::Interrupted;
            }
            if req.max_tokens.is_some_and(|n| tokens.len() >= n) {
                break StopReason::Limit;
            }
            let token = sampler.sample(&logits) as i32;
            if self.model.is_eog(token) && !req.ignore_eos {
                break StopReason::Eog;
            }
            tokens.push(token);
            sampler.accept(token as u32);
            if text.push(&self.model.piece(token, false), &mut emit) {
                break StopReason::StopString;
            }
            if self.cached().len() >= self.n_ctx() {
                break StopReason::Context;
            }
            logits.clear();
            logits.extend_from_slice(self.push(token)?);
        };
        let text = text.finish(stop_reason == StopReason::StopString, &mut emit);
        Ok(Generated {
            text,
            tokens,
            prompt_tokens: req.prompt.len(),
            prompt_evaluated,
            prompt_seconds,
            generation_seconds: gen_start.elapsed().as_secs_f64(),
            stop_reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_info_from_system_info() {
        let info = BuildInfo::parse("CUDA : ARCHS = 890 | USE_GRAPHS = 1 | CPU : SSE3 = 1 | AVX2 = 1 | OPENMP = 1 | ");
        assert_eq!(
            serde_json::to_value(&info.backends).unwrap(),
            serde_json::json!([{"name": "CUDA", "features": {"ARCHS": "890", "USE_GRAPHS": "1"}}, {"name": "CPU", "features": {"SSE3": "1", "AVX2": "1", "OPENMP": "1"}}])
        );
        assert!(!info.has_amx());
        assert!(BuildInfo::parse("CPU : AVX512 = 1 | AMX_INT8 = 1 | ").has_amx());
    }

    #[test]
    fn placement_from_llama_log() {
        let log: Vec<String> = [
            "load_tensors: offloading output layer to GPU",
            "load_tensors: offloaded 36/36 layers to GPU",
            "load_tensors: enabling prefetch for 'per_layer_token_embd.weight'",
            "load_tensors:   CPU_Mapped model buffer size =  2378.52 MiB",
            "load_tensors:        CUDA0 model buffer size =  1520.25 MiB",
            "load_tensors: RPC0[127.0.0.1:50052] model buffer size =    33.82 MiB",
        ]
        .map(String::from)
        .to_vec();
        let p = Placement::from_log(&log, Some((36, 36)));
        let rpc = ("RPC0[127.0.0.1:50052]".to_string(), 33.82);
        assert_eq!(p.buffers, vec![("CPU_Mapped".to_string(), 2378.52), ("CUDA0".to_string(), 1520.25), rpc]);
        assert_eq!(p.offloaded, Some((36, 36)));
        assert_eq!(p.lazy, vec!["per_layer_token_embd.weight".to_string()]);
        assert_eq!(
            p.to_string(),
            "CPU_Mapped 2378.5 MiB, CUDA0 1520.2 MiB, RPC0[127.0.0.1:50052] 33.8 MiB; 36/36 layers on the GPU"
        );
    }
}
