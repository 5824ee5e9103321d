//! Loading a model: placement on the devices (`-ngl`, `-ngl auto`'s fit, the split that keeps a
//! shared KV cache on one device), the progress bar, and the loaded model's vocabulary and
//! metadata; the options a context is created with.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use anyhow::{anyhow, bail, Context, Result};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use strata_run::planning::LazyMode;

use super::devices::{check_no_amx, has_offload_device, offload_device_count, offload_device_free};
use super::log::{llama_error, log_callback, take_last_error, Placement, PLACEMENT_LOG, VERBOSE};
use super::pages::{arm_releaser, disarm_releaser};
use super::rpc;

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
pub(super) fn lazy_mode(mode: LazyMode) -> llama_cpp_sys_2::llama_lazy_mode {
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
    // Field order matters: the projector before the model, the model before the backend.
    /// The projector (mmproj) attached for images and audio, if any.
    pub(super) projector: Option<super::media::Projector>,
    pub(super) model: LlamaModel,
    pub(super) backend: LlamaBackend,
    pub path: PathBuf,
    /// Layers asked of the GPU (llama.cpp's `n_gpu_layers`, as fitted), on a GPU build.
    gpu_layers: Option<u32>,
    /// Bytes of the file's mapped pages released after llama.cpp repacked them.
    pub released: u64,
    /// Control tokens that generated text shows (thinking and tool-call markers), sorted.
    preserved: Vec<i32>,
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
    /// One KV cache shared by every sequence, each of which may fill all of it (llama.cpp's
    /// `--kv-unified`), instead of an equal share each.
    pub kv_unified: bool,
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
        let preserved = preserved_tokens(&model);
        Ok(Model { projector: None, model, backend, path: path.to_path_buf(), gpu_layers, released, preserved })
    }

    /// Whether any layer was asked of a GPU (where the projector then runs too).
    pub(super) fn has_gpu_layers(&self) -> bool {
        self.gpu_layers.is_some_and(|n| n > 0)
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
        let preserved = preserved_tokens(&model);
        Ok(Model {
            projector: None,
            model,
            backend,
            path: path.to_path_buf(),
            gpu_layers: None,
            released: 0,
            preserved,
        })
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

    /// Tokens for a chat template's text: its special tokens parsed, and the BOS token first
    /// exactly once where the model wants one, whether the template wrote it or not (as
    /// llama-server does: a template without `bos_token`, such as a built-in one on a model that
    /// has none of its own, would otherwise leave the model without it).
    pub fn tokenize_chat(&self, text: &str) -> Vec<i32> {
        let mut tokens = self.tokenize(text, false, true);
        if let Some(bos) = self.bos_added() {
            if tokens.first() != Some(&bos) {
                tokens.insert(0, bos);
            }
        }
        tokens
    }

    /// The bytes of one token (special tokens rendered as text when `special`).
    pub fn piece(&self, token: i32, special: bool) -> Vec<u8> {
        self.model.vocab().token_to_piece(LlamaToken(token), special, None)
    }

    /// The text of `tokens`, special tokens as their text (invalid UTF-8 replaced); a run of an
    /// image's or audio clip's tokens (negative: [`strata_run::engine::media_token`]) is one
    /// media marker, as the prompt had it.
    pub fn detokenize(&self, tokens: &[i32]) -> String {
        let mut bytes = Vec::new();
        for (i, &t) in tokens.iter().enumerate() {
            if t >= 0 {
                bytes.extend(self.piece(t, true));
            } else if i == 0 || tokens[i - 1] != t {
                bytes.extend_from_slice(super::media_marker().as_bytes());
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// A token's bytes as generated text shows them: control tokens are empty, except the
    /// markers the chat layer reads ([`strata_run::chat::PRESERVED_MARKERS`]), as llama-server's
    /// preserved tokens.
    pub fn text_piece(&self, token: i32) -> Vec<u8> {
        self.piece(token, self.preserved.binary_search(&token).is_ok())
    }

    /// The vocabulary as constrained sampling reads it: every token's bytes; control, unused
    /// and unknown tokens marked (no grammar's text holds them) unless preserved; the
    /// end-of-generation tokens.
    pub fn constraint_vocabulary(&self) -> strata_run::constraint::Vocabulary {
        use llama_cpp_2::token_type::LlamaTokenAttr;
        let vocab = self.model.vocab();
        let n = self.n_vocab() as i32;
        let mut v = strata_run::constraint::Vocabulary { pieces: Vec::new(), control: Vec::new(), eog: Vec::new() };
        for t in 0..n {
            let attr = vocab.attr(LlamaToken(t));
            let special = attr.intersects(LlamaTokenAttr::Control | LlamaTokenAttr::Unused | LlamaTokenAttr::Unknown);
            v.pieces.push(self.piece(t, true));
            v.control.push(special && self.preserved.binary_search(&t).is_err());
            if self.is_eog(t) {
                v.eog.push(t as u32);
            }
        }
        v
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
}

impl ContextOptions {
    /// llama.cpp's context parameters for these options and a context of `n_ctx` tokens.
    pub(super) fn params(&self, n_ctx: u32) -> LlamaContextParams {
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
pub(super) fn fit_to_free_memory(
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

/// For a model whose last layers share a KV cache (Gemma 3n, Gemma 4), offloaded with `-ngl
/// n_gpu_layers` over several devices and no `-ts`: the split that keeps that block on one
/// device, where llama.cpp's default split by free memory would cut it
/// ([`strata_run::layer_split`]), with the block's first and last layer.
pub(super) fn shared_kv_split(path: &Path, n_gpu_layers: u32) -> Option<(Vec<f32>, usize, usize)> {
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

pub(super) fn progress_bar(path: &Path) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(Some(100), indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template("loading {msg} [{bar:30}] {percent}%")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    bar
}

/// The control tokens whose text is one of the chat layer's markers.
fn preserved_tokens(model: &LlamaModel) -> Vec<i32> {
    use llama_cpp_2::token_type::LlamaTokenAttr;
    let vocab = model.vocab();
    (0..model.n_vocab())
        .filter(|&t| vocab.attr(LlamaToken(t)).contains(LlamaTokenAttr::Control))
        .filter(|&t| {
            let text = vocab.token_to_piece(LlamaToken(t), true, None);
            strata_run::chat::PRESERVED_MARKERS.iter().any(|m| m.as_bytes() == text.as_slice())
        })
        .collect()
}
