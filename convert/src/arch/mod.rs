//! Architectures: one module each, registered by the Hugging Face class name in config.json's
//! `architectures`. Each gives llama.cpp's metadata keys and maps checkpoint tensor names to
//! GGUF names with the transform the tensor needs.

mod llama;

use anyhow::{anyhow, Result};
use serde_json::Value as Json;

use crate::gguf::Value;

/// What a tensor needs on its way from the checkpoint to the GGUF file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transform {
    Copy,
    /// llama.cpp's Q/K permutation for `n_head` heads: within each head, the two rotary halves
    /// become interleaved pairs (rows reordered).
    PermuteRows { n_head: usize },
}

/// A checkpoint tensor's destination.
#[derive(Clone, Debug, PartialEq)]
pub struct Mapped {
    pub gguf_name: String,
    pub transform: Transform,
}

/// One architecture's converter.
pub trait Architecture {
    /// `general.architecture` in the GGUF.
    fn name(&self) -> &'static str;
    /// The `{arch}.*` metadata from config.json.
    fn metadata(&self, config: &Json) -> Result<Vec<(String, Value)>>;
    /// The GGUF name and transform for a checkpoint tensor; `None` for tensors llama.cpp does
    /// not use (rotary caches, vision towers).
    fn map(&self, hf_name: &str) -> Option<Mapped>;
}

/// The registry: Hugging Face class names and their converters.
const REGISTRY: &[(&str, fn(&Json) -> Result<Box<dyn Architecture>>)] = &[
    ("LlamaForCausalLM", llama::Llama::boxed),
    ("MistralForCausalLM", llama::Llama::boxed),
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

/// A required config.json number.
pub(crate) fn cfg_u64(config: &Json, key: &str) -> Result<u64> {
    config[key].as_u64().ok_or_else(|| anyhow!("config.json: {key} is missing or not a whole number"))
}

pub(crate) fn cfg_f64(config: &Json, key: &str) -> Result<f64> {
    config[key].as_f64().ok_or_else(|| anyhow!("config.json: {key} is missing or not a number"))
}
