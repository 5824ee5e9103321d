//! Options shared by the commands that run a model: loading, context, and sampling.
//! Names follow llama.cpp's (`-c`, `-t`, `-ngl`, `--temp`, ...).

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};

use strata_gguf::{GgufFile, TensorClass};

use strata_run::chat::reasoning::{open_segment, ThinkingBudget};
use strata_run::chat::template::{builtin_for_architecture, ChatTemplate, RenderOptions};
use strata_run::constraint::{Compiler, Grammar};
use strata_run::hub_cache::{self, HubModel};
use strata_run::sampling::SamplingParams;

use super::human_bytes;
use strata_run::planning::LazyMode;

use crate::llama::{CacheType, ContextOptions, GpuLayers, LlamaDecoder, LoadOptions, Medium, Model};
use strata_run::engine::{Constraint, Engine, Refused};

/// The context size when `-c` is not given.
pub const DEFAULT_CTX_SIZE: u32 = 4096;

#[derive(clap::Args, Clone, Debug)]
pub struct ModelArgs {
    /// The GGUF model: a file, or hf:OWNER/NAME[:QUANT] from the Hugging Face cache.
    #[arg(value_name = "MODEL.gguf", required_unless_present = "model", value_parser = model_file)]
    pub model_path: Option<PathBuf>,
    /// The GGUF model (as llama.cpp's -m).
    #[arg(short = 'm', long = "model", value_name = "FILE", conflicts_with = "model_path", value_parser = model_file)]
    pub model: Option<PathBuf>,
    /// Context size in tokens (0: the model's training context) [default: 4096; imatrix: 512].
    #[arg(short = 'c', long = "ctx-size")]
    pub ctx_size: Option<u32>,
    /// Tokens evaluated per batch of the prompt.
    #[arg(short = 'b', long = "batch-size", default_value_t = 512)]
    pub batch_size: u32,
    /// Threads (default: all cores).
    #[arg(short = 't', long = "threads")]
    pub threads: Option<i32>,
    /// Layers to offload to the GPU: a number, or "auto" (llama.cpp fits what it can).
    #[arg(long = "n-gpu-layers", visible_alias = "ngl", value_name = "N|auto")]
    pub n_gpu_layers: Option<String>,
    /// Type of the cached keys (-ctk): f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl.
    #[arg(long = "cache-type-k", default_value = "f16")]
    pub cache_type_k: String,
    /// Type of the cached values (-ctv); quantized values need flash attention, which llama.cpp
    /// turns on where the backend has it.
    #[arg(long = "cache-type-v", default_value = "f16")]
    pub cache_type_v: String,
    /// Read the whole file instead of memory-mapping it.
    #[arg(long = "no-mmap")]
    pub no_mmap: bool,
    /// Read the per-layer embedding table (gemma4) row by row from the file as tokens need it:
    /// on (strata's default: the table costs disk, not RAM), auto (llama.cpp's: only tables over
    /// 4 GiB), off (load it whole).
    #[arg(long = "lazy-mode", value_name = "on|auto|off", default_value = "on")]
    pub lazy_mode: LazyMode,
    /// Lock the weights in RAM.
    #[arg(long)]
    pub mlock: bool,
    /// Keep weights in the file's layout instead of repacking them for the CPU's kernels (what a
    /// remote CPU backend runs: compare RPC runs against this).
    #[arg(long = "no-repack")]
    pub no_repack: bool,
    /// RPC servers (`strata rpc-server` or llama.cpp's rpc-server) whose devices take layers
    /// like local GPUs (-ngl). The protocol is unauthenticated: loopback, a private network or
    /// an SSH tunnel only.
    #[arg(long, value_name = "HOST:PORT,...", value_delimiter = ',')]
    pub rpc: Vec<String>,
    /// Each device's share of the offloaded layers (-ts 3,1), in `strata devices` order after
    /// the CPU: GPUs, then the --rpc servers' devices. Needs -ngl N (with auto, llama.cpp
    /// fits the split itself). Default: by free memory, as llama.cpp splits, but with the
    /// layers that share a KV cache (Gemma 3n, Gemma 4) kept on one device.
    #[arg(long = "tensor-split", value_name = "N,N,...", value_delimiter = ',')]
    pub tensor_split: Vec<f32>,
    /// Seconds a call may wait on the RPC servers without progress before strata gives up
    /// (ggml's client has no timeout of its own).
    #[arg(long = "rpc-timeout", value_name = "SECONDS", default_value_t = 120)]
    pub rpc_timeout: u64,
    /// Show llama.cpp's own log and full timings.
    #[arg(short = 'v', long)]
    pub verbose: bool,
}

/// A model argument: a path, or `hf:OWNER/NAME[:QUANT]`, the file in the Hugging Face cache
/// ([`strata_run::hub_cache`]); a bare `OWNER/NAME[:QUANT]` that is no path on disk but a model
/// in the cache is that model.
pub fn model_file(arg: &str) -> Result<PathBuf, String> {
    let cache = hub_cache::cache_dir();
    match HubModel::parse(arg) {
        None if std::path::Path::new(arg).exists() => Ok(PathBuf::from(arg)),
        None => {
            let cached = HubModel::parse(&format!("hf:{arg}")).and_then(Result::ok).zip(cache.ok());
            Ok(cached.and_then(|(model, cache)| model.resolve(&cache).ok()).unwrap_or_else(|| PathBuf::from(arg)))
        }
        Some(model) => model?.resolve(&cache?),
    }
}

impl ModelArgs {
    pub fn path(&self) -> PathBuf {
        self.model.clone().or_else(|| self.model_path.clone()).expect("clap requires one")
    }

    /// Checks, without loading it, that the model is a readable GGUF file (its header, metadata
    /// and tensor table): what `serve` says before it listens.
    pub fn check_file(&self) -> Result<()> {
        let path = self.path();
        if !path.is_file() {
            bail!("{}: no such file", path.display());
        }
        GgufFile::open_keeping(&path, |_| false).map(drop)
    }

    /// Loads the model for running with the context these options give (`swa_full`: a full-size
    /// cache for sliding-window layers, as chat needs), which `-ngl auto` leaves room for.
    pub fn load(&self, swa_full: bool) -> Result<(Model, ContextOptions)> {
        let gpu_layers = match self.n_gpu_layers.as_deref() {
            None | Some("auto") => GpuLayers::Auto,
            Some(n) => {
                GpuLayers::Count(n.parse().map_err(|_| anyhow!("--n-gpu-layers {n:?}: expected a number or \"auto\""))?)
            }
        };
        let context = self.context(swa_full)?;
        let opts = LoadOptions {
            gpu_layers,
            lazy: self.lazy_mode,
            context: context.clone(),
            use_mmap: !self.no_mmap,
            use_mlock: self.mlock,
            repack: !self.no_repack,
            rpc: self.rpc.clone(),
            tensor_split: self.tensor_split.clone(),
            rpc_timeout: std::time::Duration::from_secs(self.rpc_timeout),
            verbose: self.verbose,
        };
        let model = Model::load(&self.path(), &opts)?;
        if self.verbose || std::io::stderr().is_terminal() {
            eprintln!("{}", load_report(&model));
        }
        Ok((model, context))
    }

    fn context(&self, swa_full: bool) -> Result<ContextOptions> {
        if self.batch_size == 0 {
            bail!("--batch-size must be at least 1");
        }
        let threads =
            self.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as i32));
        if threads < 1 {
            bail!("--threads must be at least 1");
        }
        let cache_type_k = CacheType::parse(&self.cache_type_k).context("--cache-type-k")?;
        let cache_type_v = CacheType::parse(&self.cache_type_v).context("--cache-type-v")?;
        Ok(ContextOptions {
            n_ctx: self.ctx_size.unwrap_or(DEFAULT_CTX_SIZE),
            n_batch: self.batch_size,
            n_threads: threads,
            swa_full,
            cache_type_k,
            cache_type_v,
            kv_unified: false,
        })
    }
}

/// The projector file for images and audio.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ProjectorArgs {
    /// The projector file (llama.cpp's mmproj) for images and audio (default: mmproj-MODEL.gguf
    /// beside the model, where `strata convert` writes it, if it is there).
    #[arg(long, value_name = "MMPROJ.gguf")]
    pub mmproj: Option<PathBuf>,
    /// Load no projector, even one beside the model.
    #[arg(long, conflicts_with = "mmproj")]
    pub no_mmproj: bool,
}

impl ProjectorArgs {
    /// Attaches the projector to `model`: --mmproj, else the one beside the model under
    /// llama.cpp's name, unless --no-mmproj. Whether one was attached.
    pub fn attach(&self, model: &mut Model, context: &ContextOptions) -> Result<bool> {
        let beside = || Some(super::convert::default_mmproj_path(&model.path)).filter(|p| p.is_file());
        match if self.no_mmproj { None } else { self.mmproj.clone().or_else(beside) } {
            Some(path) => model.attach_projector(&path, context.n_threads).map(|()| true),
            None => Ok(false),
        }
    }
}

/// Images and audio: the projector file and the media of the first prompt.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct MediaArgs {
    #[command(flatten)]
    pub projector: ProjectorArgs,
    /// An image for the prompt (repeatable): each goes at the next media marker (<__media__>)
    /// in the prompt, or before its text if it has none.
    #[arg(long = "image", value_name = "FILE")]
    pub image: Vec<PathBuf>,
    /// An audio clip for the prompt (repeatable; after the images).
    #[arg(long = "audio", value_name = "FILE")]
    pub audio: Vec<PathBuf>,
}

impl MediaArgs {
    /// The media of the first prompt: the images, then the audio clips.
    pub fn files(&self) -> Vec<PathBuf> {
        self.image.iter().chain(&self.audio).cloned().collect()
    }

    /// Attaches the projector (see [`ProjectorArgs::attach`]); media without one are an error.
    pub fn attach(&self, model: &mut Model, context: &ContextOptions) -> Result<()> {
        if !self.projector.attach(model, context)? && !self.files().is_empty() {
            bail!(
                "{}: images and audio need the model's projector file: --mmproj MMPROJ.gguf (strata convert writes it beside the model)",
                model.path.display()
            );
        }
        Ok(())
    }

    /// The media of the first prompt, read and checked.
    pub fn read(&self) -> Result<Vec<Medium>> {
        self.files().iter().map(|p| Medium::read(p)).collect()
    }
}

/// The text with one media marker per medium before it, unless it places them itself (as
/// `llama-mtmd-cli` does).
pub fn with_media_markers(text: &str, n_media: usize) -> String {
    let marker = crate::llama::media_marker();
    if n_media == 0 || text.contains(marker) {
        return text.to_string();
    }
    marker.repeat(n_media) + text
}

#[derive(clap::Args, Clone, Debug, Default)]
pub struct SamplingArgs {
    /// Temperature; 0 is greedy.
    #[arg(long = "temp", allow_negative_numbers = true)]
    pub temp: Option<f32>,
    /// Keep the K most likely tokens (0: off).
    #[arg(long = "top-k")]
    pub top_k: Option<usize>,
    /// Keep the most likely tokens up to this probability mass (1: off).
    #[arg(long = "top-p", allow_negative_numbers = true)]
    pub top_p: Option<f32>,
    /// Drop tokens less likely than this fraction of the best (0: off).
    #[arg(long = "min-p", allow_negative_numbers = true)]
    pub min_p: Option<f32>,
    /// Locally typical sampling mass (1: off).
    #[arg(long = "typical", allow_negative_numbers = true)]
    pub typical: Option<f32>,
    /// Penalty for repeated tokens (1: off).
    #[arg(long = "repeat-penalty", allow_negative_numbers = true)]
    pub repeat_penalty: Option<f32>,
    /// How many recent tokens the penalties look at.
    #[arg(long = "repeat-last-n")]
    pub repeat_last_n: Option<usize>,
    /// Subtract this from the logit of every token seen in the last --repeat-last-n (0: off).
    #[arg(long = "presence-penalty", allow_negative_numbers = true)]
    pub presence_penalty: Option<f32>,
    /// Subtract this times its count from the logit of each token seen in the last
    /// --repeat-last-n (0: off).
    #[arg(long = "frequency-penalty", allow_negative_numbers = true)]
    pub frequency_penalty: Option<f32>,
    /// Add BIAS to a token's logit: TOKEN_ID=BIAS (repeatable).
    #[arg(long = "logit-bias", value_name = "TOKEN=BIAS")]
    pub logit_bias: Vec<String>,
    /// Random seed (-1: a different one each run).
    #[arg(short = 's', long = "seed", allow_negative_numbers = true, value_parser = parse_seed)]
    pub seed: Option<u64>,
}

/// `--seed`: a whole number, or -1 (llama.cpp's "random") for one drawn now.
fn parse_seed(s: &str) -> Result<u64, String> {
    match s.trim() {
        "-1" => Ok(strata_run::sampling::random_seed()),
        t => t.parse().map_err(|_| format!("{s:?} is not a seed: a whole number from 0, or -1 for a random one")),
    }
}

/// How many tokens to generate at most: `-n N`, or `-n -1` for no limit (to the end of the
/// context), as llama.cpp takes it; other negative numbers are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenLimit(pub Option<usize>);

impl std::str::FromStr for TokenLimit {
    type Err = String;

    fn from_str(s: &str) -> Result<TokenLimit, String> {
        match s.trim() {
            "-1" => Ok(TokenLimit(None)),
            t => t
                .parse()
                .map(|n| TokenLimit(Some(n)))
                .map_err(|_| format!("{s:?} is not a number of tokens: a whole number from 0, or -1 for no limit")),
        }
    }
}

impl SamplingArgs {
    /// Flags over the model's `general.sampling.*` defaults over llama.cpp's defaults.
    pub fn params(&self, model: &Model) -> Result<SamplingParams> {
        let mut p = SamplingParams::default();
        let meta = |key: &str| model.meta(&format!("general.sampling.{key}"));
        let parse_meta = |key: &str| -> Result<Option<f64>> {
            meta(key)
                .map(|v| {
                    v.trim()
                        .parse::<f64>()
                        .map_err(|_| anyhow!("{}: general.sampling.{key} is {v:?}, not a number", model.path.display()))
                })
                .transpose()
        };
        if let Some(v) = parse_meta("temp")? {
            p.temperature = v as f32;
        }
        if let Some(v) = parse_meta("top_k")? {
            p.top_k = v as usize;
        }
        if let Some(v) = parse_meta("top_p")? {
            p.top_p = v as f32;
        }
        if let Some(v) = parse_meta("min_p")? {
            p.min_p = v as f32;
        }
        if let Some(v) = parse_meta("penalty_last_n")? {
            p.repeat_last_n = v as usize;
        }
        if let Some(v) = parse_meta("penalty_repeat")? {
            p.repeat_penalty = v as f32;
        }
        p.temperature = self.temp.unwrap_or(p.temperature);
        p.top_k = self.top_k.unwrap_or(p.top_k);
        p.top_p = self.top_p.unwrap_or(p.top_p);
        p.min_p = self.min_p.unwrap_or(p.min_p);
        p.typical_p = self.typical.unwrap_or(p.typical_p);
        p.repeat_penalty = self.repeat_penalty.unwrap_or(p.repeat_penalty);
        p.repeat_last_n = self.repeat_last_n.unwrap_or(p.repeat_last_n);
        p.presence_penalty = self.presence_penalty.unwrap_or(p.presence_penalty);
        p.frequency_penalty = self.frequency_penalty.unwrap_or(p.frequency_penalty);
        p.seed = self.seed.unwrap_or(p.seed);
        for b in &self.logit_bias {
            let parsed = b
                .split_once('=')
                .and_then(|(t, v)| Some((t.trim().parse::<u32>().ok()?, v.trim().parse::<f32>().ok()?)));
            match parsed {
                Some((t, v)) if (t as usize) < model.n_vocab() && v.is_finite() => p.logit_bias.push((t, v)),
                _ => bail!("--logit-bias {b:?}: expected TOKEN_ID=BIAS with a token below {}", model.n_vocab()),
            }
        }
        p.validate().map_err(|e| anyhow!(e))?;
        Ok(p)
    }
}

/// The engine a command generates with: one slot over a context of these options.
pub fn single_engine<'m>(model: &'m Model, context: &ContextOptions) -> Result<Engine<LlamaDecoder<'m>>> {
    Ok(Engine::new(model.decoder(context, 1)?, 1))
}

/// An error of the engine, with the option that helps where one does.
pub fn with_hint(e: anyhow::Error) -> anyhow::Error {
    match e.downcast_ref::<Refused>() {
        Some(Refused::PromptTooLong { .. }) => anyhow!("{e} (raise -c/--ctx-size)"),
        _ => e,
    }
}

/// One line on where the model's weights went. The per-layer embedding table is called out:
/// llama.cpp keeps it with the input layer in host memory however many layers are offloaded,
/// and for gemma4 reads it lazily from the memory map (its log says so, and so does this line).
fn load_report(model: &Model) -> String {
    let placement = model.placement();
    let mut line = format!("[loaded {}: {} of weights; {placement}", model.path.display(), human_bytes(model.size()));
    if model.released > 0 {
        line += &format!("; {} of repacked weights' file pages released", human_bytes(model.released));
    }
    let ple: u64 = GgufFile::open_keeping(&model.path, |_| false)
        .map(|f| {
            f.tensors
                .iter()
                .filter(|t| TensorClass::of(&t.name, t.shape.len()) == TensorClass::PerLayerTokenEmbedding)
                .map(|t| t.n_bytes())
                .sum()
        })
        .unwrap_or(0);
    if ple > 0 {
        let how = if placement.lazy.iter().any(|t| t == "per_layer_token_embd.weight") {
            "read lazily from the memory map"
        } else {
            "in host memory"
        };
        line += &format!("; per_layer_token_embd {} {how}", human_bytes(ple));
    }
    line + "]"
}

/// What to do with a model's thinking segment (`<think>…</think>`, Gemma 4's thought channel).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Reasoning {
    Show,
    Hide,
}

#[derive(clap::Args, Clone, Debug)]
pub struct TemplateArgs {
    /// Use a built-in template instead of the model's: llama.cpp's names (chatml, llama2, llama3,
    /// mistral-v7, gemma, phi3, command-r, deepseek3, ...; `strata template --builtin x` lists them).
    #[arg(long = "chat-template", value_name = "NAME")]
    pub chat_template: Option<String>,
    /// Use the Jinja template in this file instead of the model's.
    #[arg(long = "chat-template-file", value_name = "FILE", conflicts_with = "chat_template")]
    pub chat_template_file: Option<PathBuf>,
    /// Set the template's enable_thinking switch (Qwen3, Gemma 4).
    #[arg(long = "think", value_name = "BOOL")]
    pub think: Option<bool>,
    /// Show or hide the thinking segment of answers.
    #[arg(long, value_enum, default_value_t = Reasoning::Show)]
    pub reasoning: Reasoning,
    /// End the thinking segment after N tokens by writing its closing marker (0: no thinking;
    /// -1: no limit).
    #[arg(long = "reasoning-budget", value_name = "N", default_value = "-1", allow_negative_numbers = true)]
    pub reasoning_budget: TokenLimit,
}

impl TemplateArgs {
    /// The template to use: a file or built-in if asked, else the model's own, else the
    /// built-in that fits its architecture.
    pub fn resolve(&self, model: &Model) -> Result<ChatTemplate> {
        if let Some(file) = &self.chat_template_file {
            let source = std::fs::read_to_string(file).with_context(|| format!("{}: cannot read", file.display()))?;
            return ChatTemplate::new(&source, &file.display().to_string());
        }
        if let Some(name) = &self.chat_template {
            return ChatTemplate::builtin(name);
        }
        if let Some(source) = model.meta("tokenizer.chat_template") {
            return ChatTemplate::new(&source, &format!("{}: tokenizer.chat_template", model.path.display()));
        }
        let architecture = model.meta("general.architecture").unwrap_or_default();
        let name = builtin_for_architecture(&architecture);
        eprintln!(
            "note: {} has no chat template (tokenizer.chat_template); using the built-in {name} template for \
             architecture {architecture:?}. A base model may not follow it: give --chat-template or --chat-template-file",
            model.path.display()
        );
        ChatTemplate::builtin(name)
    }

    /// The thinking budget's constraint for an answer to `prompt` (the rendered text), if
    /// there is a budget.
    pub fn thinking_budget(&self, model: &Model, prompt: &str) -> Option<Box<dyn Constraint>> {
        thinking_budget(model, self.reasoning_budget.0?, prompt)
    }

    pub fn render_options(&self, model: &Model) -> RenderOptions {
        let (bos_token, eos_token) = model.bos_eos_text();
        RenderOptions {
            add_generation_prompt: false,
            bos_token,
            eos_token,
            enable_thinking: self.think,
            tools: None,
            llama_cpp_variables: true,
        }
    }
}

/// What an answer must match (`generate`, `chat`): a JSON Schema or a grammar.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct GrammarArgs {
    /// Answer with JSON that validates against the JSON Schema in this file.
    #[arg(long = "json-schema", value_name = "FILE", conflicts_with = "grammar")]
    pub json_schema: Option<PathBuf>,
    /// Answer in the grammar in this file: llama.cpp's GBNF, or llguidance's Lark for a `.lark` file.
    #[arg(long = "grammar", value_name = "FILE")]
    pub grammar: Option<PathBuf>,
}

/// A grammar read from its file, and the file, to name in errors.
pub struct GrammarFile {
    pub grammar: Grammar,
    pub path: PathBuf,
}

impl GrammarArgs {
    /// The grammar asked for, read (and, for a schema, parsed); an error names the file.
    pub fn read(&self) -> Result<Option<GrammarFile>> {
        let Some(path) = self.json_schema.as_ref().or(self.grammar.as_ref()) else { return Ok(None) };
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let grammar = if self.json_schema.is_some() {
            let schema = serde_json::from_str(&text)
                .map_err(|e| anyhow!("{}: not a JSON Schema: the file is not valid JSON: {e}", path.display()))?;
            Grammar::JsonSchema(schema)
        } else if path.extension().is_some_and(|e| e == "lark") {
            Grammar::Lark(text)
        } else {
            Grammar::Gbnf(text)
        };
        Ok(Some(GrammarFile { grammar, path: path.clone() }))
    }
}

impl GrammarFile {
    /// The compiler over `model`'s vocabulary, with the grammar checked against it.
    pub fn compiler(&self, model: &Model) -> Result<Compiler> {
        let compiler =
            Compiler::new(&model.constraint_vocabulary()).map_err(|e| anyhow!("constrained sampling: {e}"))?;
        compiler.check(&self.grammar).map_err(|e| anyhow!("{}: {e}", self.path.display()))?;
        Ok(compiler)
    }

    /// The constraint for one answer.
    pub fn constraint(&self, compiler: &Compiler) -> Result<Box<dyn Constraint>> {
        compiler.constraint(&self.grammar).map_err(|e| anyhow!("{}: {e}", self.path.display()))
    }
}

/// A constraint that ends the thinking segment after `budget` tokens, with the closing markers
/// in `model`'s tokens; the answer starts inside a segment when `prompt` opened one.
pub fn thinking_budget(model: &Model, budget: usize, prompt: &str) -> Option<Box<dyn Constraint>> {
    let closers = ThinkingBudget::closing_markers().map(|m| model.tokenize(m, false, true)).collect();
    Some(Box::new(ThinkingBudget::new(budget, closers, open_segment(prompt))))
}
