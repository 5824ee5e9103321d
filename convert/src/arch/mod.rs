//! Architectures: one module per family, registered by the Hugging Face class name in
//! config.json's `architectures`. Each gives llama.cpp's metadata keys, maps checkpoint tensor
//! names to GGUF names with the transform the tensor needs, and reads the vocabulary the way
//! llama.cpp's converter does for that family.

mod gemma;
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
    /// Whether the token embedding keeps only the tokenizer's rows (Gemma drops the padding).
    fn trims_embedding_to_vocab(&self) -> bool {
        false
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
    ("Gemma4ForCausalLM", gemma::Gemma::gemma4),
];

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
/// the part after `model.layers.N.` (GGUF `blk.N.`).
pub(crate) fn lookup(hf: &str, global: &[(&str, &str)], per_layer: &[(&str, &str)]) -> Option<String> {
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
    pub fn u32(&mut self, key: &str, v: u64) {
        self.put(key, Value::U32(v as u32));
    }
    pub fn f32(&mut self, key: &str, v: f64) {
        self.put(key, Value::F32(v as f32));
    }
}
