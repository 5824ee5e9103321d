//! Qwen 2 and Qwen 3: llama's tensors without the Q/K permutation (NeoX rotary), with Q/K/V
//! biases (Qwen 2) or Q/K norms (Qwen 3). llama.cpp's `qwen2` and `qwen3` architectures.

use std::path::Path;

use anyhow::Result;
use serde_json::Value as Json;
use strata_gguf::{ModelShape, Value};

use super::llama::{Decoder, Defaults, GLOBAL, PER_LAYER};
use super::{lookup, Architecture, Mapped, Meta, Transform};
use crate::tokenizer::Vocab;

pub struct Qwen {
    name: &'static str,
    /// Per-head RMS norms on Q and K (Qwen 3).
    qk_norm: bool,
    config: Json,
    d: Decoder,
}

impl Qwen {
    /// Qwen2Config: `head_dim` hidden_size / num_attention_heads; Q/K/V biases always; a context
    /// of 32768. Its
    /// `rope_theta` default (10000) is also llama.cpp's, so the key is written only where given,
    /// as llama.cpp's converter does.
    pub fn qwen2(config: Json) -> Result<Box<dyn Architecture>> {
        let d = Decoder::read(&config, Defaults { head_dim: None, rope_theta: None, qkv_bias: true, n_ctx: 32_768 })?;
        Ok(Box::new(Qwen { name: "qwen2", qk_norm: false, config, d }))
    }

    /// Qwen3Config: `head_dim` 128 (not hidden_size / num_attention_heads, which llama.cpp would
    /// assume, so it is always written), `rope_theta` and context as Qwen 2.
    pub fn qwen3(config: Json) -> Result<Box<dyn Architecture>> {
        let d =
            Decoder::read(&config, Defaults { head_dim: Some(128), rope_theta: None, qkv_bias: false, n_ctx: 32_768 })?;
        Ok(Box::new(Qwen { name: "qwen3", qk_norm: true, config, d }))
    }
}

impl Architecture for Qwen {
    fn name(&self) -> &'static str {
        self.name
    }

    fn metadata(&self) -> Result<Vec<(String, Value)>> {
        let mut m = Meta::new(self.name);
        self.d.metadata(&mut m)?;
        Ok(m.entries)
    }

    fn shape(&self, _n_tokens: Option<u64>) -> Result<ModelShape> {
        Ok(self.d.shape(self.name, self.qk_norm))
    }

    fn map(&self, hf: &str) -> Option<Mapped> {
        lookup(hf, GLOBAL, PER_LAYER).map(|gguf_name| Mapped::whole(gguf_name, Transform::Copy))
    }

    fn vocab(&self, dir: &Path) -> Result<Vocab> {
        self.d.vocab(dir, &self.config)
    }
}
