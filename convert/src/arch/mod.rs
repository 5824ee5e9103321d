//! Architectures: one module per family, registered by the Hugging Face class name in
//! config.json's `architectures`. Each gives llama.cpp's metadata keys, maps checkpoint tensor
//! names to GGUF names with the transform the tensor needs, and reads the vocabulary the way
//! llama.cpp's converter does for that family.

mod gemma;
pub(crate) use gemma::full_layer_value;
mod gemma3n;
mod llama;
mod qwen;

use std::path::Path;

use anyhow::{anyhow, Result};
use serde_json::Value as Json;

use crate::gguf::Value;
use crate::tokenizer::Vocab;

/// What a tensor needs on its way from the checkpoint to the GGUF file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transform {
    Copy,
    /// llama.cpp's Q/K permutation for `n_head` heads: within each head, the two rotary halves
    /// become interleaved pairs (rows reordered).
    PermuteRows { n_head: usize },
    /// Gemma's RMSNorm multiplies by `1 + weight`; llama.cpp stores `weight + 1`.
    AddOne,
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
    /// GGUF order: innermost dimension first.
    pub shape: Vec<u64>,
    pub values: Vec<f32>,
}

/// One architecture's converter.
pub trait Architecture {
    /// `general.architecture` in the GGUF.
    fn name(&self) -> &'static str;
    /// The `{arch}.*` metadata from config.json.
    fn metadata(&self, config: &Json) -> Result<Vec<(String, Value)>>;
    /// The GGUF name and transform for a checkpoint tensor; `None` for tensors llama.cpp does
    /// not use (rotary caches, vision and audio towers).
    fn map(&self, hf_name: &str) -> Option<Mapped>;
    /// Tensors computed from config.json.
    fn computed(&self, _config: &Json) -> Result<Vec<Computed>> {
        Ok(Vec::new())
    }
    /// How many rows a GGUF tensor gets whose checkpoint tensor has `rows` (its outermost
    /// dimension), given `n_tokens` in the converted vocabulary: fewer drops the last rows (Gemma
    /// drops the token embedding's padding), more appends zero rows (Gemma 3n pads its
    /// embedding tables to `vocab_size`).
    fn table_rows(&self, _gguf_name: &str, rows: usize, _n_tokens: usize, _config: &Json) -> usize {
        rows
    }
    /// The vocabulary, as llama.cpp's converter reads it for this family: a SentencePiece
    /// `tokenizer.model` where there is one, else a byte-level BPE `tokenizer.json`.
    fn vocab(&self, dir: &Path, config: &Json) -> Result<Vocab> {
        let vocab_size = config["vocab_size"].as_u64().map(|n| n as usize);
        if dir.join("tokenizer.model").is_file() {
            Vocab::from_sentencepiece(dir, vocab_size, config)
        } else {
            Vocab::from_hf_bpe(dir, vocab_size, config)
        }
    }
}

type Constructor = fn(&Json) -> Result<Box<dyn Architecture>>;

/// The registry: Hugging Face class names and their converters.
const REGISTRY: &[(&str, Constructor)] = &[
    ("LlamaForCausalLM", llama::Llama::boxed),
    ("MistralForCausalLM", llama::Llama::boxed),
    ("Qwen2ForCausalLM", qwen::Qwen::qwen2),
    ("Qwen3ForCausalLM", qwen::Qwen::qwen3),
    ("Gemma3ForCausalLM", gemma::Gemma::gemma3),
    ("Gemma3ForConditionalGeneration", gemma::Gemma::gemma3),
    ("Gemma3nForCausalLM", gemma::Gemma::gemma3n),
    ("Gemma3nForConditionalGeneration", gemma::Gemma::gemma3n),
    ("Gemma4ForCausalLM", gemma::Gemma::gemma4),
    ("Gemma4ForConditionalGeneration", gemma::Gemma::gemma4),
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

/// The converter for a config.json.
pub fn for_config(config: &Json) -> Result<Box<dyn Architecture>> {
    let names: Vec<&str> = config["architectures"].as_array().into_iter().flatten().filter_map(Json::as_str).collect();
    for name in &names {
        if let Some((_, make)) = REGISTRY.iter().find(|(n, _)| n == name) {
            return make(config);
        }
    }
    let known: Vec<&str> = REGISTRY.iter().map(|(n, _)| *n).collect();
    Err(anyhow!("architecture {names:?} is not supported; supported: {}", known.join(", ")))
}

/// Looks a checkpoint name up in a family's tables: `global` for whole names, `per_layer` for
/// the part after `model.layers.N.` (GGUF `blk.N.`). A multimodal checkpoint's text tensors
/// (`model.language_model.layers.N...`) are looked up without their `language_model.`, as
/// llama.cpp's converter does.
pub(crate) fn lookup(hf: &str, global: &[(&str, &str)], per_layer: &[(&str, &str)]) -> Option<String> {
    let hf = &hf.replacen("language_model.", "", 1);
    if let Some((_, g)) = global.iter().find(|(h, _)| *h == hf) {
        return Some(g.to_string());
    }
    let (layer, tail) = hf.strip_prefix("model.layers.")?.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (_, g) = per_layer.iter().find(|(h, _)| *h == tail)?;
    Some(format!("blk.{layer}.{g}"))
}

/// A required config.json number.
pub(crate) fn cfg_u64(config: &Json, key: &str) -> Result<u64> {
    config[key].as_u64().ok_or_else(|| anyhow!("config.json: {key} is missing or not a whole number"))
}

pub(crate) fn cfg_f64(config: &Json, key: &str) -> Result<f64> {
    config[key].as_f64().ok_or_else(|| anyhow!("config.json: {key} is missing or not a number"))
}

/// Metadata under `{arch}.`: `m.u32("block_count", n)` writes `llama.block_count`.
pub(crate) struct Meta {
    arch: &'static str,
    pub entries: Vec<(String, Value)>,
}

impl Meta {
    pub fn new(arch: &'static str) -> Meta {
        Meta { arch, entries: Vec::new() }
    }
    /// Sets a key; a later value for the same key replaces the earlier one in place (as
    /// gguf-py's writer does when a subclass refines what its base wrote).
    pub fn put(&mut self, key: &str, v: Value) {
        let key = format!("{}.{key}", self.arch);
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = v,
            None => self.entries.push((key, v)),
        }
    }
    /// Sets a u32 key; a value a u32 cannot hold is an error naming the key, not a silent wrap.
    pub fn u32(&mut self, key: &str, v: u64) -> Result<()> {
        let v = u32::try_from(v).map_err(|_| anyhow!("config.json: {}.{key} would be {v}, more than GGUF's u32 holds", self.arch))?;
        self.put(key, Value::U32(v));
        Ok(())
    }
    pub fn f32(&mut self, key: &str, v: f64) {
        self.put(key, Value::F32(v as f32));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multimodal_checkpoint_converts_as_its_text_model() {
        let config = text_config(serde_json::json!({
            "architectures": ["Gemma4ForConditionalGeneration"], "vocab_size": 1, "hidden_size": 8,
            "text_config": {"hidden_size": 64, "num_hidden_layers": 2}, "vision_config": {"hidden_size": 32},
        }));
        assert_eq!((config["hidden_size"].as_u64(), config["num_hidden_layers"].as_u64(), config["vocab_size"].as_u64()), (Some(64), Some(2), Some(1)));
        assert_eq!(for_config(&config).unwrap().name(), "gemma4");
        let global = &[("model.norm.weight", "output_norm.weight")];
        let per_layer = &[("mlp.up_proj.weight", "ffn_up.weight")];
        assert_eq!(lookup("model.language_model.layers.1.mlp.up_proj.weight", global, per_layer).as_deref(), Some("blk.1.ffn_up.weight"));
        assert_eq!(lookup("model.language_model.norm.weight", global, per_layer).as_deref(), Some("output_norm.weight"));
        assert_eq!(lookup("model.vision_tower.encoder.layers.0.mlp.up_proj.linear.weight", global, per_layer), None);
    }

    #[test]
    fn a_value_past_u32_is_an_error_naming_the_key() {
        let config = serde_json::json!({
            "architectures": ["LlamaForCausalLM"], "num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128,
            "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 10, "max_position_embeddings": 1u64 << 40,
        });
        let err = for_config(&config).unwrap().metadata(&config).unwrap_err().to_string();
        assert_eq!(err, "config.json: llama.context_length would be 1099511627776, more than GGUF's u32 holds");
        let mut m = Meta::new("llama");
        m.u32("block_count", u64::from(u32::MAX)).unwrap();
        assert_eq!(m.entries, [("llama.block_count".to_string(), Value::U32(u32::MAX))]);
    }
}
