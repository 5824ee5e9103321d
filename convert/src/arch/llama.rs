//! Llama and its close relatives (Llama 2/3, SmolLM2, Mistral): llama.cpp's `llama` architecture.
//! The decoder Qwen 2/3 share (names, widths, metadata) is here too.

use std::path::Path;

use anyhow::{bail, Result};
use serde_json::Value as Json;
use strata_gguf::{LayerShape, ModelShape, Value};

use super::{decoder_layer, lookup, Architecture, BaseKeys, Config, Mapped, Meta, Tensors, Transform};
use crate::tokenizer::Vocab;

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
    ("self_attn.o_proj.weight", "attn_output.weight"),
    ("self_attn.q_proj.bias", "attn_q.bias"),
    ("self_attn.k_proj.bias", "attn_k.bias"),
    ("self_attn.v_proj.bias", "attn_v.bias"),
    ("self_attn.q_norm.weight", "attn_q_norm.weight"),
    ("self_attn.k_norm.weight", "attn_k_norm.weight"),
    ("post_attention_layernorm.weight", "ffn_norm.weight"),
    ("mlp.gate_proj.weight", "ffn_gate.weight"),
    ("mlp.up_proj.weight", "ffn_up.weight"),
    ("mlp.down_proj.weight", "ffn_down.weight"),
    ("mlp.gate_proj.bias", "ffn_gate.bias"),
    ("mlp.up_proj.bias", "ffn_up.bias"),
    ("mlp.down_proj.bias", "ffn_down.bias"),
];

/// A llama-like decoder's hyperparameters.
pub(super) struct Decoder {
    pub n_layer: u64,
    pub n_embd: u64,
    pub n_ff: u64,
    pub n_head: u64,
    pub n_head_kv: u64,
    pub n_vocab: u64,
    pub n_ctx: u64,
    pub eps: f64,
    /// `None` where config.json has no rope theta (see [`Defaults::rope_theta`]).
    pub rope_theta: Option<f64>,
    /// From config.json, or the config class's default.
    pub head_dim: u64,
    /// Whether config.json gives `head_dim` (llama.cpp's converter then writes key_length).
    pub head_dim_given: bool,
    pub tied: bool,
    /// Biases on the Q/K/V projections (Qwen 2).
    pub qkv_bias: bool,
    /// Biases on the feed-forward projections (LlamaConfig's `mlp_bias`).
    pub mlp_bias: bool,
}

/// What a config class gives where config.json is silent.
pub(super) struct Defaults {
    /// transformers' `head_dim` where absent: `None` for hidden_size / num_attention_heads.
    pub head_dim: Option<u64>,
    /// The config class's `rope_theta` (10000 for all of these), written only where llama.cpp's
    /// converter writes it: `Some` writes it when absent too.
    pub rope_theta: Option<f64>,
    /// Q/K/V biases (Qwen 2's attention always has them).
    pub qkv_bias: bool,
    /// `max_position_embeddings`.
    pub n_ctx: u64,
}

impl Decoder {
    /// Reads the keys. transformers' LlamaConfig, MistralConfig, Qwen2Config and Qwen3Config
    /// agree on these defaults: `num_key_value_heads` = `num_attention_heads`, `rms_norm_eps`
    /// 1e-6, `tie_word_embeddings` false, `attention_bias` and `mlp_bias` false. Sizes and
    /// `vocab_size` are required. `attention_bias` (biases on all four projections, which
    /// llama.cpp's converter permutes with the Q/K rows) is refused.
    pub fn read(config: &Json, defaults: Defaults) -> Result<Decoder> {
        let c = Config::new(config)?;
        let n_embd = c.u64("hidden_size")?;
        let n_head = c.u64("num_attention_heads")?;
        let n_head_kv = c.u64_or("num_key_value_heads", n_head)?;
        if n_head == 0 || n_head_kv == 0 || n_head % n_head_kv != 0 {
            bail!("config.json: {n_head} attention heads cannot share {n_head_kv} key/value heads");
        }
        let given = c.opt_u64("head_dim")?;
        if c.bool_or("attention_bias", false)? {
            bail!(
                "config.json: attention_bias is true; strata does not convert attention biases for this architecture"
            );
        }
        Ok(Decoder {
            n_layer: c.u64("num_hidden_layers")?,
            n_embd,
            n_ff: c.u64("intermediate_size")?,
            n_head,
            n_head_kv,
            n_vocab: c.u64("vocab_size")?,
            n_ctx: c.u64_or("max_position_embeddings", defaults.n_ctx)?,
            eps: c.f64_or("rms_norm_eps", 1e-6)?,
            rope_theta: c.rope(None, "rope_theta").or(defaults.rope_theta),
            head_dim: given.or(defaults.head_dim).unwrap_or(n_embd / n_head),
            head_dim_given: given.is_some() || defaults.head_dim.is_some(),
            tied: c.bool_or("tie_word_embeddings", false)?,
            qkv_bias: defaults.qkv_bias,
            mlp_bias: c.bool_or("mlp_bias", false)?,
        })
    }

    /// The metadata the llama-like families share (llama.cpp's TextModel.set_gguf_parameters):
    /// every family's ([`BaseKeys`]), the feed-forward width, K/V heads, and the head size where
    /// config.json gives one.
    pub fn metadata(&self, m: &mut Meta) -> Result<()> {
        BaseKeys {
            n_layer: self.n_layer,
            n_ctx: self.n_ctx,
            n_embd: self.n_embd,
            n_head: self.n_head,
            rope_theta: self.rope_theta,
            eps: self.eps,
        }
        .write(m)?;
        m.u32("feed_forward_length", self.n_ff)?;
        m.u32("attention.head_count_kv", self.n_head_kv)?;
        if self.head_dim_given {
            m.u32("attention.key_length", self.head_dim)?;
            m.u32("attention.value_length", self.head_dim)?;
        }
        Ok(())
    }

    /// Layers and tensors; `qk_norm` adds Qwen 3's per-head Q/K norms.
    pub fn shape(&self, arch: &str, qk_norm: bool) -> ModelShape {
        let layer = LayerShape {
            n_head: self.n_head,
            n_head_kv: self.n_head_kv,
            head_dim: self.head_dim,
            n_ff: self.n_ff,
            sliding: false,
            has_kv: true,
        };
        let (q, kv, d) = (self.n_head * self.head_dim, self.n_head_kv * self.head_dim, self.n_embd);
        let mut t = Tensors::default();
        t.add("token_embd.weight", &[d, self.n_vocab]);
        for i in 0..self.n_layer as usize {
            decoder_layer(&mut t, i, &layer, d, true, true);
            if self.qkv_bias {
                t.layer(i, "attn_q.bias", &[q]);
                t.layer(i, "attn_k.bias", &[kv]);
                t.layer(i, "attn_v.bias", &[kv]);
            }
            if self.mlp_bias {
                t.layer(i, "ffn_gate.bias", &[self.n_ff]);
                t.layer(i, "ffn_up.bias", &[self.n_ff]);
                t.layer(i, "ffn_down.bias", &[d]);
            }
            if qk_norm {
                t.layer(i, "attn_q_norm.weight", &[self.head_dim]);
                t.layer(i, "attn_k_norm.weight", &[self.head_dim]);
            }
        }
        t.add("output_norm.weight", &[d]);
        if !self.tied {
            t.add("output.weight", &[d, self.n_vocab]);
        }
        ModelShape {
            arch: arch.to_string(),
            n_embd: d,
            n_vocab: self.n_vocab,
            layers: vec![layer; self.n_layer as usize],
            sliding_window: None,
            tensors: t.0,
        }
    }

    /// A SentencePiece `tokenizer.model` where there is one, else a byte-level BPE
    /// `tokenizer.json`, padded to `vocab_size`.
    pub fn vocab(&self, dir: &Path, config: &Json) -> Result<Vocab> {
        if dir.join("tokenizer.model").is_file() {
            Vocab::from_sentencepiece(dir, Some(self.n_vocab as usize), config)
        } else {
            Vocab::from_hf_bpe(dir, Some(self.n_vocab as usize), config)
        }
    }
}

pub struct Llama {
    config: Json,
    d: Decoder,
}

impl Llama {
    /// LlamaConfig: `head_dim` hidden_size / num_attention_heads, `rope_theta` 10000, a context
    /// of 2048.
    pub fn llama(config: Json) -> Result<Box<dyn Architecture>> {
        let d = Decoder::read(
            &config,
            Defaults { head_dim: None, rope_theta: Some(10_000.0), qkv_bias: false, n_ctx: 2048 },
        )?;
        Ok(Box::new(Llama { config, d }))
    }

    /// MistralConfig: as LlamaConfig, with a context of 131072 (its `sliding_window` is not used
    /// by llama.cpp's `llama` architecture, nor written by its converter).
    pub fn mistral(config: Json) -> Result<Box<dyn Architecture>> {
        let d = Decoder::read(
            &config,
            Defaults { head_dim: None, rope_theta: Some(10_000.0), qkv_bias: false, n_ctx: 131_072 },
        )?;
        Ok(Box::new(Llama { config, d }))
    }
}

impl Architecture for Llama {
    fn name(&self) -> &'static str {
        "llama"
    }

    fn metadata(&self) -> Result<Vec<(String, Value)>> {
        let mut m = Meta::new("llama");
        self.d.metadata(&mut m)?;
        m.u32("vocab_size", self.d.n_vocab)?;
        m.u32("rope.dimension_count", self.d.head_dim)?;
        Ok(m.entries)
    }

    fn shape(&self, _n_tokens: Option<u64>) -> Result<ModelShape> {
        Ok(self.d.shape("llama", false))
    }

    fn map(&self, hf: &str) -> Option<Mapped> {
        let gguf_name = lookup(hf, GLOBAL, PER_LAYER)?;
        let transform = if gguf_name.ends_with(".attn_q.weight") {
            Transform::PermuteRows { n_head: self.d.n_head as usize }
        } else if gguf_name.ends_with(".attn_k.weight") {
            Transform::PermuteRows { n_head: self.d.n_head_kv as usize }
        } else {
            Transform::Copy
        };
        Some(Mapped::whole(gguf_name, transform))
    }

    fn vocab(&self, dir: &Path) -> Result<Vocab> {
        self.d.vocab(dir, &self.config)
    }
}
