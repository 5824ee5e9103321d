//! Architectures: one module per family, registered by the Hugging Face class name in
//! config.json's `architectures`. Each reads its config.json once, with transformers' defaults
//! for the keys a config may leave out (in one place per architecture, citing the config class),
//! and from that alone gives llama.cpp's metadata (each key written once), the model's shape (every
//! tensor convert writes, named, shaped and classed, and each layer's widths, which `plan` sizes),
//! the map from checkpoint names to GGUF names with the transform each tensor needs, and the
//! vocabulary read the way llama.cpp's converter reads it for that family.
//!
//! Adding an architecture: one module implementing [`Architecture`] and one line in [`REGISTRY`].

mod config;
mod gemma;
mod gemma3;
mod gemma3n;
mod gemma4;
mod llama;
mod qwen;

use std::path::Path;

use anyhow::{anyhow, Result};
use serde_json::Value as Json;
use strata_gguf::{LayerShape, ModelShape, TensorSpec, Value};

use crate::tokenizer::Vocab;
pub(crate) use config::Config;

/// What a tensor needs on its way from the checkpoint to the GGUF file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transform {
    Copy,
    /// llama.cpp's Q/K permutation for `n_head` heads: within each head, the two rotary halves
    /// become interleaved pairs (rows reordered).
    PermuteRows {
        n_head: usize,
    },
    /// Gemma's RMSNorm multiplies by `1 + weight`; llama.cpp stores `weight + 1`.
    AddOne,
    /// A patch embedding stored as one row of `side × side × 3` (row, column, channel) per
    /// output, written channel first: `[side, side, 3, n]` in ggml order (llama.cpp's Gemma 4
    /// vision converter, for ggml's im2col).
    PatchesChannelsFirst {
        side: usize,
    },
    /// `ln(1 + e^x)`: llama.cpp stores Gemma 4's audio attention scale through it.
    Softplus,
}

/// A checkpoint tensor's destination.
#[derive(Clone, Debug, PartialEq)]
pub struct Mapped {
    pub gguf_name: String,
    pub transform: Transform,
    /// `Some(i)`: the tensor is the `i`-th of several of one shape that llama.cpp stacks along a
    /// new outermost dimension into `gguf_name` (Gemma 3n's AltUp projections).
    pub part: Option<usize>,
}

impl Mapped {
    /// A tensor that becomes one GGUF tensor of its own.
    pub fn whole(gguf_name: String, transform: Transform) -> Mapped {
        Mapped { gguf_name, transform, part: None }
    }
}

/// A tensor the converter computes rather than copies (e.g. Gemma 4's `rope_freqs`).
#[derive(Clone, Debug, PartialEq)]
pub struct Computed {
    pub gguf_name: String,
    pub values: Vec<f32>,
}

/// How many rows a GGUF table may take from a checkpoint table of another length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rows {
    /// Exactly the checkpoint's.
    Exact,
    /// The first rows only (Gemma drops the token embedding's padding past the tokenizer).
    Truncate,
    /// The checkpoint's, then zero rows (Gemma 3n pads its tables to `vocab_size`).
    Pad,
}

/// One architecture's converter, made from a (text) config.json.
pub trait Architecture {
    /// `general.architecture` in the GGUF.
    fn name(&self) -> &'static str;
    /// The `{arch}.*` metadata, each key once.
    fn metadata(&self) -> Result<Vec<(String, Value)>>;
    /// The model's shape: each layer's widths and every tensor convert writes. `n_tokens` is the
    /// tokenizer's vocabulary when converting (some families cut their token embedding to it);
    /// `None` sizes from config.json alone.
    fn shape(&self, n_tokens: Option<u64>) -> Result<ModelShape>;
    /// The GGUF name and transform for a checkpoint tensor; `None` for tensors llama.cpp does
    /// not use (rotary caches, vision and audio towers).
    fn map(&self, hf_name: &str) -> Option<Mapped>;
    /// Tensors computed from config.json.
    fn computed(&self) -> Result<Vec<Computed>> {
        Ok(Vec::new())
    }
    /// Whether a GGUF table may have fewer or more rows than the checkpoint's.
    fn rows(&self, _gguf_name: &str) -> Rows {
        Rows::Exact
    }
    /// The vocabulary, as llama.cpp's converter reads it for this family.
    fn vocab(&self, dir: &Path) -> Result<Vocab>;
}

type Constructor = fn(Json) -> Result<Box<dyn Architecture>>;

/// The registry: Hugging Face class names and their converters.
pub const REGISTRY: &[(&str, Constructor)] = &[
    ("LlamaForCausalLM", llama::Llama::llama),
    ("MistralForCausalLM", llama::Llama::mistral),
    ("Qwen2ForCausalLM", qwen::Qwen::qwen2),
    ("Qwen3ForCausalLM", qwen::Qwen::qwen3),
    ("Gemma3ForCausalLM", gemma3::Gemma3::boxed),
    ("Gemma3ForConditionalGeneration", gemma3::Gemma3::boxed),
    ("Gemma3nForCausalLM", gemma3n::Gemma3n::boxed),
    ("Gemma3nForConditionalGeneration", gemma3n::Gemma3n::boxed),
    ("Gemma4ForCausalLM", gemma4::Gemma4::boxed),
    ("Gemma4ForConditionalGeneration", gemma4::Gemma4::boxed),
];

/// The text model's config, as llama.cpp's converter reads it: a multimodal checkpoint's
/// `text_config` lifted over the top level (its keys win), the config unchanged otherwise.
pub fn text_config(config: Json) -> Json {
    match config {
        Json::Object(mut top) => {
            if let Some(Json::Object(text)) = top.get("text_config").cloned() {
                top.extend(text);
            }
            Json::Object(top)
        }
        other => other,
    }
}

/// The converter for a config.json (a multimodal one's text model): the first of its
/// `architectures` that the registry knows, with the config read and checked.
pub fn for_config(config: Json) -> Result<Box<dyn Architecture>> {
    let config = text_config(config);
    let names: Vec<String> =
        config["architectures"].as_array().into_iter().flatten().filter_map(Json::as_str).map(String::from).collect();
    for name in &names {
        if let Some((_, make)) = REGISTRY.iter().find(|(n, _)| n == name) {
            return make(config);
        }
    }
    let known: Vec<&str> = REGISTRY.iter().map(|(n, _)| *n).collect();
    Err(anyhow!("architecture {names:?} is not supported; supported: {}", known.join(", ")))
}

/// The model a config.json describes, sized from the config alone (`plan` on a models.toml entry).
pub fn config_shape(config: Json) -> Result<ModelShape> {
    for_config(config)?.shape(None)
}

/// A multimodal checkpoint's text tensors are named as a text-only one's, as llama.cpp's
/// converter reads them: `model.language_model.X` (transformers 4.52 and later) and the older
/// `language_model.model.X` (most Gemma 3 checkpoints on the Hub) become `model.X`, and the older
/// `language_model.lm_head.weight` becomes `lm_head.weight`.
const MULTIMODAL_TEXT_PREFIXES: &[(&str, &str)] = &[
    ("model.language_model.", "model."),
    ("language_model.model.", "model."),
    ("language_model.lm_head.", "lm_head."),
];

/// A checkpoint name as the text model's ([`MULTIMODAL_TEXT_PREFIXES`]).
pub(crate) fn text_name(hf: &str) -> std::borrow::Cow<'_, str> {
    MULTIMODAL_TEXT_PREFIXES
        .iter()
        .find_map(|(from, to)| hf.strip_prefix(from).map(|rest| format!("{to}{rest}").into()))
        .unwrap_or(hf.into())
}

/// Looks a checkpoint name up in a family's tables: `global` for whole names, `per_layer` for
/// the part after `model.layers.N.` (GGUF `blk.N.`).
pub(crate) fn lookup(hf: &str, global: &[(&str, &str)], per_layer: &[(&str, &str)]) -> Option<String> {
    let hf = text_name(hf);
    if let Some((_, g)) = global.iter().find(|(h, _)| *h == hf) {
        return Some(g.to_string());
    }
    let (layer, tail) = hf.strip_prefix("model.layers.")?.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (_, g) = per_layer.iter().find(|(h, _)| *h == tail)?;
    Some(format!("blk.{layer}.{g}"))
}

/// Metadata under `{arch}.`: `m.u32("block_count", n)` writes `llama.block_count`. Each key is
/// written once (`convert/tests/architectures.rs` walks the registry to hold every architecture
/// to that).
pub(crate) struct Meta {
    arch: &'static str,
    pub entries: Vec<(String, Value)>,
}

impl Meta {
    pub fn new(arch: &'static str) -> Meta {
        Meta { arch, entries: Vec::new() }
    }
    pub fn put(&mut self, key: &str, v: Value) {
        self.entries.push((format!("{}.{key}", self.arch), v));
    }
    /// Sets a u32 key; a value a u32 cannot hold is an error naming the key, not a silent wrap.
    pub fn u32(&mut self, key: &str, v: u64) -> Result<()> {
        let v = u32::try_from(v)
            .map_err(|_| anyhow!("config.json: {}.{key} would be {v}, more than GGUF's u32 holds", self.arch))?;
        self.put(key, Value::U32(v));
        Ok(())
    }
    pub fn f32(&mut self, key: &str, v: f64) {
        self.put(key, Value::F32(v as f32));
    }
    /// An i32 array, one value per layer (as llama.cpp's converter writes a list).
    pub fn i32_per_layer(&mut self, key: &str, values: &[u64]) -> Result<()> {
        let values = values
            .iter()
            .map(|&v| {
                i32::try_from(v)
                    .map(Value::I32)
                    .map_err(|_| anyhow!("config.json: {}.{key} would hold {v}, more than GGUF's i32 holds", self.arch))
            })
            .collect::<Result<_>>()?;
        self.put(key, Value::Array(strata_gguf::ValueType::I32, values));
        Ok(())
    }
    pub fn bools(&mut self, key: &str, values: &[bool]) {
        self.put(key, Value::Array(strata_gguf::ValueType::Bool, values.iter().map(|&b| Value::Bool(b)).collect()));
    }
}

/// The keys every family writes from the same hyperparameters (llama.cpp's
/// TextModel.set_gguf_parameters): depth, context, width, query heads, rope theta and the RMS
/// norm epsilon. K/V heads, head sizes and feed-forward widths are each family's own (Gemma 4
/// writes some per layer), and so are the keys after these.
pub(crate) struct BaseKeys {
    pub n_layer: u64,
    pub n_ctx: u64,
    pub n_embd: u64,
    pub n_head: u64,
    /// `None`: not written (llama.cpp's converter writes none where config.json has none and
    /// the family's default is llama.cpp's).
    pub rope_theta: Option<f64>,
    pub eps: f64,
}

impl BaseKeys {
    pub fn write(&self, m: &mut Meta) -> Result<()> {
        m.u32("block_count", self.n_layer)?;
        m.u32("context_length", self.n_ctx)?;
        m.u32("embedding_length", self.n_embd)?;
        m.u32("attention.head_count", self.n_head)?;
        if let Some(theta) = self.rope_theta {
            m.f32("rope.freq_base", theta);
        }
        m.f32("attention.layer_norm_rms_epsilon", self.eps);
        Ok(())
    }
}

/// A model's tensors as an architecture lists them: `blk.N.` and `.weight` added, the class
/// looked up from llama.cpp's name ([`TensorClass::of`]).
#[derive(Default)]
pub(crate) struct Tensors(pub Vec<TensorSpec>);

impl Tensors {
    /// A model-wide tensor: `add("token_embd.weight", [n_embd, n_vocab])`.
    pub fn add(&mut self, name: &str, shape: &[u64]) {
        self.0.push(TensorSpec::named(name, shape.to_vec()));
    }
    /// A tensor of layer `i`: `layer(3, "attn_q.weight", ...)` is `blk.3.attn_q.weight`.
    pub fn layer(&mut self, i: usize, name: &str, shape: &[u64]) {
        self.add(&format!("blk.{i}.{name}"), shape);
    }
}

/// The widths llama-like decoders share (Llama, Qwen, Gemma): the attention projections and their
/// norms, and the gated feed-forward block, for layer `i` of shape `l`. `kv_weights`: the layer
/// stores K (and V unless `v_weights` is false) even if it reads another layer's cache.
pub(crate) fn decoder_layer(t: &mut Tensors, i: usize, l: &LayerShape, n_embd: u64, kv_weights: bool, v_weights: bool) {
    let (q, kv) = (l.n_head * l.head_dim, l.n_head_kv * l.head_dim);
    t.layer(i, "attn_norm.weight", &[n_embd]);
    t.layer(i, "attn_q.weight", &[n_embd, q]);
    if kv_weights {
        t.layer(i, "attn_k.weight", &[n_embd, kv]);
        if v_weights {
            t.layer(i, "attn_v.weight", &[n_embd, kv]);
        }
    }
    t.layer(i, "attn_output.weight", &[q, n_embd]);
    t.layer(i, "ffn_norm.weight", &[n_embd]);
    t.layer(i, "ffn_gate.weight", &[n_embd, l.n_ff]);
    t.layer(i, "ffn_up.weight", &[n_embd, l.n_ff]);
    t.layer(i, "ffn_down.weight", &[l.n_ff, n_embd]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multimodal_checkpoint_converts_as_its_text_model() {
        let config = serde_json::json!({
            "architectures": ["Gemma4ForConditionalGeneration"], "vocab_size": 1, "hidden_size": 8,
            "text_config": {"hidden_size": 64, "num_hidden_layers": 2}, "vision_config": {"hidden_size": 32},
        });
        let text = text_config(config);
        assert_eq!(
            (text["hidden_size"].as_u64(), text["num_hidden_layers"].as_u64(), text["vocab_size"].as_u64()),
            (Some(64), Some(2), Some(1))
        );
        let global = &[("model.norm.weight", "output_norm.weight")];
        let per_layer = &[("mlp.up_proj.weight", "ffn_up.weight")];
        assert_eq!(
            lookup("model.language_model.layers.1.mlp.up_proj.weight", global, per_layer).as_deref(),
            Some("blk.1.ffn_up.weight")
        );
        assert_eq!(
            lookup("model.language_model.norm.weight", global, per_layer).as_deref(),
            Some("output_norm.weight")
        );
        assert_eq!(lookup("model.vision_tower.encoder.layers.0.mlp.up_proj.linear.weight", global, per_layer), None);
        // Only the prefix: a tower's own `language_model.` part is not the text model's.
        assert_eq!(lookup("model.vision_tower.language_model.norm.weight", global, per_layer), None);
        // The older layout (most Gemma 3 checkpoints on the Hub): text under `language_model.model.`.
        assert_eq!(
            lookup("language_model.model.layers.1.mlp.up_proj.weight", global, per_layer).as_deref(),
            Some("blk.1.ffn_up.weight")
        );
        assert_eq!(text_name("language_model.lm_head.weight"), "lm_head.weight");
        assert_eq!(lookup("vision_tower.vision_model.post_layernorm.weight", global, per_layer), None);
        assert_eq!(lookup("multi_modal_projector.mm_soft_emb_norm.weight", global, per_layer), None);
    }

    #[test]
    fn a_value_past_u32_is_an_error_naming_the_key() {
        let config = serde_json::json!({
            "architectures": ["LlamaForCausalLM"], "num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128,
            "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 10, "max_position_embeddings": 1u64 << 40, "rms_norm_eps": 1e-5,
        });
        let err = for_config(config).err().unwrap().to_string();
        assert_eq!(
            err,
            "config.json: max_position_embeddings is 1099511627776, more than any size a model has (4294967295)"
        );
        let mut m = Meta::new("llama");
        m.u32("block_count", u64::from(u32::MAX)).unwrap();
        assert_eq!(m.entries, [("llama.block_count".to_string(), Value::U32(u32::MAX))]);
        let err = m.u32("context_length", 1 << 40).unwrap_err().to_string();
        assert_eq!(err, "config.json: llama.context_length would be 1099511627776, more than GGUF's u32 holds");
    }

    #[test]
    fn unknown_architecture_is_an_error() {
        let err = for_config(serde_json::json!({"architectures": ["GPT2LMHeadModel"]})).err().unwrap().to_string();
        assert!(err.contains("GPT2LMHeadModel") && err.contains("LlamaForCausalLM"), "{err}");
    }
}
