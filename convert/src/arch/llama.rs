//! Llama and its close relatives (Llama 2/3, SmolLM2, Mistral): llama.cpp's `llama` architecture.

use anyhow::{bail, Result};
use serde_json::Value as Json;

use super::{cfg_f64, cfg_u64, Architecture, Mapped, Transform};
use crate::gguf::Value;

/// Checkpoint names (after `model.layers.N.` for per-layer ones) and GGUF names (after `blk.N.`).
const GLOBAL: &[(&str, &str)] = &[
    ("model.embed_tokens.weight", "token_embd.weight"),
    ("model.norm.weight", "output_norm.weight"),
    ("lm_head.weight", "output.weight"),
];
const PER_LAYER: &[(&str, &str)] = &[
    ("input_layernorm.weight", "attn_norm.weight"),
    ("self_attn.q_proj.weight", "attn_q.weight"),
    ("self_attn.k_proj.weight", "attn_k.weight"),
    ("self_attn.v_proj.weight", "attn_v.weight"),
    ("self_attn.o_proj.weight", "attn_output.weight"),
    ("post_attention_layernorm.weight", "ffn_norm.weight"),
    ("mlp.gate_proj.weight", "ffn_gate.weight"),
    ("mlp.up_proj.weight", "ffn_up.weight"),
    ("mlp.down_proj.weight", "ffn_down.weight"),
];

pub struct Llama {
    n_head: usize,
    n_head_kv: usize,
}

impl Llama {
    pub fn boxed(config: &Json) -> Result<Box<dyn Architecture>> {
        let n_head = cfg_u64(config, "num_attention_heads")? as usize;
        let n_head_kv = config["num_key_value_heads"].as_u64().map_or(n_head, |n| n as usize);
        if n_head == 0 || n_head_kv == 0 || n_head % n_head_kv != 0 {
            bail!("config.json: {n_head} attention heads cannot share {n_head_kv} key/value heads");
        }
        Ok(Box::new(Llama { n_head, n_head_kv }))
    }
}

impl Architecture for Llama {
    fn name(&self) -> &'static str {
        "llama"
    }

    fn metadata(&self, c: &Json) -> Result<Vec<(String, Value)>> {
        let hidden = cfg_u64(c, "hidden_size")?;
        let head_dim = c["head_dim"].as_u64().unwrap_or(hidden / self.n_head as u64);
        let mut m = vec![
            ("llama.block_count", Value::U32(cfg_u64(c, "num_hidden_layers")? as u32)),
            ("llama.context_length", Value::U32(cfg_u64(c, "max_position_embeddings")? as u32)),
            ("llama.embedding_length", Value::U32(hidden as u32)),
            ("llama.feed_forward_length", Value::U32(cfg_u64(c, "intermediate_size")? as u32)),
            ("llama.attention.head_count", Value::U32(self.n_head as u32)),
            ("llama.attention.head_count_kv", Value::U32(self.n_head_kv as u32)),
            ("llama.rope.freq_base", Value::F32(c["rope_theta"].as_f64().unwrap_or(10_000.0) as f32)),
            ("llama.attention.layer_norm_rms_epsilon", Value::F32(cfg_f64(c, "rms_norm_eps")? as f32)),
            ("llama.vocab_size", Value::U32(cfg_u64(c, "vocab_size")? as u32)),
            ("llama.rope.dimension_count", Value::U32(head_dim as u32)),
        ];
        if let Some(d) = c["head_dim"].as_u64() {
            m.push(("llama.attention.key_length", Value::U32(d as u32)));
            m.push(("llama.attention.value_length", Value::U32(d as u32)));
        }
        Ok(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    fn map(&self, hf: &str) -> Option<Mapped> {
        let copy = |name: String| Some(Mapped { gguf_name: name, transform: Transform::Copy });
        if let Some((_, g)) = GLOBAL.iter().find(|(h, _)| *h == hf) {
            return copy(g.to_string());
        }
        let rest = hf.strip_prefix("model.layers.")?;
        let (layer, tail) = rest.split_once('.')?;
        let layer: usize = layer.parse().ok()?;
        let (_, g) = PER_LAYER.iter().find(|(h, _)| *h == tail)?;
        let gguf_name = format!("blk.{layer}.{g}");
        let transform = match tail {
            "self_attn.q_proj.weight" => Transform::PermuteRows { n_head: self.n_head },
            "self_attn.k_proj.weight" => Transform::PermuteRows { n_head: self.n_head_kv },
            _ => Transform::Copy,
        };
        Some(Mapped { gguf_name, transform })
    }
}
