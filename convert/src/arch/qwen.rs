//! Qwen 2 and Qwen 3: llama's tensors without the Q/K permutation (NeoX rotary), with Q/K/V
//! biases (Qwen 2) or Q/K norms (Qwen 3). llama.cpp's `qwen2` and `qwen3` architectures.

use anyhow::Result;
use serde_json::Value as Json;

use super::llama::{common_metadata, heads, GLOBAL, PER_LAYER};
use super::{lookup, Architecture, Mapped, Meta, Transform};
use crate::gguf::Value;

pub struct Qwen {
    name: &'static str,
    n_head: usize,
    n_head_kv: usize,
}

impl Qwen {
    pub fn qwen2(config: &Json) -> Result<Box<dyn Architecture>> {
        let (n_head, n_head_kv) = heads(config)?;
        Ok(Box::new(Qwen { name: "qwen2", n_head, n_head_kv }))
    }

    pub fn qwen3(config: &Json) -> Result<Box<dyn Architecture>> {
        let (n_head, n_head_kv) = heads(config)?;
        Ok(Box::new(Qwen { name: "qwen3", n_head, n_head_kv }))
    }
}

impl Architecture for Qwen {
    fn name(&self) -> &'static str {
        self.name
    }

    fn metadata(&self, c: &Json) -> Result<Vec<(String, Value)>> {
        let mut m = Meta::new(self.name);
        common_metadata(&mut m, c, self.n_head, self.n_head_kv)?;
        Ok(m.entries)
    }

    fn map(&self, hf: &str) -> Option<Mapped> {
        lookup(hf, GLOBAL, PER_LAYER).map(|gguf_name| Mapped::whole(gguf_name, Transform::Copy))
    }
}
