//! Llama and its close relatives (Llama 2/3, SmolLM2, Mistral): llama.cpp's `llama` architecture.

use anyhow::{bail, Result};
use serde_json::Value as Json;

use super::{cfg_f64, cfg_u64, lookup, Architecture, Mapped, Meta, Transform};
use crate::gguf::Value;

/// Checkpoint names (after `model.layers.N.` for per-layer ones) and GGUF names (after `blk.N.`).
/// Qwen 2/3 share them.
pub(super) const GLOBAL: &[(&str, &str)] = &[
    ("model.embed_tokens.weight", "token_embd.weight"),
    ("model.norm.weight", "output_norm.weight"),
    ("lm_head.weight", "output.weight"),
];
pub(super) const PER_LAYER: &[(&str, &str)] = &[
    ("input_layernorm.weight", "attn_norm.weight"),
    ("self_attn.q_proj.weight", "attn_q.weight"),
    ("self_attn.k_proj.weight", "attn_k.weight"),
    ("self_attn.v_proj.weight", "attn_v.weight"),
    ("self_attn.q_proj.bias", "attn_q.bias"),
    ("self_attn.k_proj.bias", "attn_k.bias"),
    ("self_attn.v_proj.bias", "attn_v.bias"),
    ("self_attn.q_norm.weight", "attn_q_norm.weight"),
    ("self_attn.k_norm.weight", "attn_k_norm.weight"),
    ("self_attn.o_proj.weight", "attn_output.weight"),
    ("post_attention_layernorm.weight", "ffn_norm.weight"),
    ("mlp.gate_proj.weight", "ffn_gate.weight"),
    ("mlp.up_proj.weight", "ffn_up.weight"),
    ("mlp.down_proj.weight", "ffn_down.weight"),
];

/// Head counts from config.json, checked.
pub(super) fn heads(config: &Json) -> Result<(usize, usize)> {
    let n_head = cfg_u64(config, "num_attention_heads")? as usize;
    let n_head_kv = config["num_key_value_heads"].as_u64().map_or(n_head, |n| n as usize);
    if n_head == 0 || n_head_kv == 0 || n_head % n_head_kv != 0 {
        bail!("config.json: {n_head} attention heads cannot share {n_head_kv} key/value heads");
    }
    Ok((n_head, n_head_kv))
}

/// The metadata the llama-like families share (llama.cpp's TextModel.set_gguf_parameters).
pub(super) fn common_metadata(m: &mut Meta, c: &Json, n_head: usize, n_head_kv: usize) -> Result<()> {
    m.u32("block_count", cfg_u64(c, "num_hidden_layers")?)?;
    m.u32("context_length", cfg_u64(c, "max_position_embeddings")?)?;
    m.u32("embedding_length", cfg_u64(c, "hidden_size")?)?;
    m.u32("feed_forward_length", cfg_u64(c, "intermediate_size")?)?;
    m.u32("attention.head_count", n_head as u64)?;
    m.u32("attention.head_count_kv", n_head_kv as u64)?;
    let theta = c["rope_parameters"]["rope_theta"].as_f64().or_else(|| c["rope_theta"].as_f64());
    if let Some(theta) = theta {
        m.f32("rope.freq_base", theta);
    }
    m.f32("attention.layer_norm_rms_epsilon", cfg_f64(c, "rms_norm_eps")?);
    if let Some(d) = c["head_dim"].as_u64() {
        m.u32("attention.key_length", d)?;
        m.u32("attention.value_length", d)?;
    }
    Ok(())
}

pub struct Llama {
    n_head: usize,
    n_head_kv: usize,
}

impl Llama {
    pub fn boxed(config: &Json) -> Result<Box<dyn Architecture>> {
        let (n_head, n_head_kv) = heads(config)?;
        Ok(Box::new(Llama { n_head, n_head_kv }))
    }
}

impl Architecture for Llama {
    fn name(&self) -> &'static str {
        "llama"
    }

    fn metadata(&self, c: &Json) -> Result<Vec<(String, Value)>> {
        let mut m = Meta::new("llama");
        common_metadata(&mut m, c, self.n_head, self.n_head_kv)?;
        if c["rope_parameters"]["rope_theta"].is_null() && c["rope_theta"].is_null() {
            m.f32("rope.freq_base", 10_000.0);
        }
        m.u32("vocab_size", cfg_u64(c, "vocab_size")?)?;
        let head_dim = c["head_dim"].as_u64().unwrap_or(cfg_u64(c, "hidden_size")? / self.n_head as u64);
        m.u32("rope.dimension_count", head_dim)?;
        Ok(m.entries)
    }

    fn map(&self, hf: &str) -> Option<Mapped> {
        let gguf_name = lookup(hf, GLOBAL, PER_LAYER)?;
        let transform = if hf.ends_with("self_attn.q_proj.weight") {
            Transform::PermuteRows { n_head: self.n_head }
        } else if hf.ends_with("self_attn.k_proj.weight") {
            Transform::PermuteRows { n_head: self.n_head_kv }
        } else {
            Transform::Copy
        };
        Some(Mapped::whole(gguf_name, transform))
    }
}
