//! What Gemma 3, Gemma 3n and Gemma 4 share: checkpoint names, the hyperparameters all three
//! config classes have (with each class's defaults), the keys written from them, and the
//! decoder layer's tensors. Each family's own keys and tensors are in its module; no family
//! writes a key another has written.

use std::path::Path;

use anyhow::Result;
use serde_json::Value as Json;
use strata_gguf::LayerShape;

use super::{decoder_layer, lookup, BaseKeys, Config, Meta, Rows, Tensors};
use crate::tokenizer::Vocab;

pub(super) const GLOBAL: &[(&str, &str)] = &[
    ("model.embed_tokens.weight", "token_embd.weight"),
    ("model.norm.weight", "output_norm.weight"),
    ("lm_head.weight", "output.weight"),
    ("model.embed_tokens_per_layer.weight", "per_layer_token_embd.weight"),
    ("model.per_layer_model_projection.weight", "per_layer_model_proj.weight"),
    ("model.per_layer_projection_norm.weight", "per_layer_proj_norm.weight"),
];
pub(super) const PER_LAYER: &[(&str, &str)] = &[
    ("input_layernorm.weight", "attn_norm.weight"),
    ("self_attn.q_proj.weight", "attn_q.weight"),
    ("self_attn.k_proj.weight", "attn_k.weight"),
    ("self_attn.v_proj.weight", "attn_v.weight"),
    ("self_attn.o_proj.weight", "attn_output.weight"),
    ("self_attn.q_norm.weight", "attn_q_norm.weight"),
    ("self_attn.k_norm.weight", "attn_k_norm.weight"),
    ("post_attention_layernorm.weight", "post_attention_norm.weight"),
    ("pre_feedforward_layernorm.weight", "ffn_norm.weight"),
    ("post_feedforward_layernorm.weight", "post_ffw_norm.weight"),
    ("mlp.gate_proj.weight", "ffn_gate.weight"),
    ("mlp.up_proj.weight", "ffn_up.weight"),
    ("mlp.down_proj.weight", "ffn_down.weight"),
    // Gemma 4: per-layer embeddings and output scale.
    ("per_layer_input_gate.weight", "inp_gate.weight"),
    ("per_layer_projection.weight", "proj.weight"),
    ("post_per_layer_input_norm.weight", "post_norm.weight"),
    ("layer_scalar", "layer_output_scale.weight"),
    // Gemma 4 mixture of experts (26B-A4B): a router and experts beside the dense MLP.
    ("pre_feedforward_layernorm_2.weight", "pre_ffw_norm_2.weight"),
    ("post_feedforward_layernorm_1.weight", "post_ffw_norm_1.weight"),
    ("post_feedforward_layernorm_2.weight", "post_ffw_norm_2.weight"),
    ("router.proj.weight", "ffn_gate_inp.weight"),
    ("router.scale", "ffn_gate_inp.scale"),
    ("router.per_expert_scale", "ffn_down_exps.scale"),
    ("experts.gate_up_proj", "ffn_gate_up_exps.weight"),
    ("experts.down_proj", "ffn_down_exps.weight"),
];

/// The GGUF name of a Gemma checkpoint tensor.
pub(super) fn gguf_name(hf: &str) -> Option<String> {
    lookup(hf, GLOBAL, PER_LAYER)
}

/// What a Gemma config class gives where config.json is silent.
pub(super) struct Defaults {
    pub n_head_kv: u64,
    pub n_ctx: u64,
    pub sliding_window: u64,
}

/// The hyperparameters the three config classes share. Defaults common to Gemma3TextConfig,
/// Gemma3nTextConfig and Gemma4TextConfig (transformers 5.24): 8 attention heads, `head_dim`
/// 256, `rms_norm_eps` 1e-6, full-attention `rope_theta` 1e6, `tie_word_embeddings` true;
/// the rest per class in [`Defaults`].
pub(super) struct Common {
    pub n_layer: u64,
    pub n_embd: u64,
    pub n_head: u64,
    pub n_head_kv: u64,
    pub head_dim: u64,
    pub n_vocab: u64,
    pub n_ctx: u64,
    pub eps: f64,
    pub rope_theta: f64,
    /// Sliding layers' theta, where config.json gives one (transformers 5's `rope_parameters`).
    pub rope_theta_swa: Option<f64>,
    pub softcap: Option<f64>,
    pub sliding_window: u64,
    pub tied: bool,
}

impl Common {
    pub fn read(c: &Config, defaults: Defaults) -> Result<Common> {
        Ok(Common {
            n_layer: c.u64("num_hidden_layers")?,
            n_embd: c.u64("hidden_size")?,
            n_head: c.u64_or("num_attention_heads", 8)?,
            n_head_kv: c.u64_or("num_key_value_heads", defaults.n_head_kv)?,
            head_dim: c.u64_or("head_dim", 256)?,
            n_vocab: c.u64("vocab_size")?,
            n_ctx: c.u64_or("max_position_embeddings", defaults.n_ctx)?,
            eps: c.f64_or("rms_norm_eps", 1e-6)?,
            rope_theta: c.rope(Some("full_attention"), "rope_theta").unwrap_or(1_000_000.0),
            rope_theta_swa: c.0["rope_parameters"]["sliding_attention"]["rope_theta"].as_f64(),
            softcap: c.opt_f64("final_logit_softcapping")?,
            sliding_window: c.u64_or("sliding_window", defaults.sliding_window)?,
            tied: c.bool_or("tie_word_embeddings", true)?,
        })
    }

    /// The keys all three write alike: every family's ([`BaseKeys`]), the sliding layers' rope
    /// theta and the final logit soft-cap. K/V head counts, head sizes and feed-forward widths
    /// differ per family and are written by each.
    pub fn metadata(&self, m: &mut Meta) -> Result<()> {
        BaseKeys {
            n_layer: self.n_layer,
            n_ctx: self.n_ctx,
            n_embd: self.n_embd,
            n_head: self.n_head,
            rope_theta: Some(self.rope_theta),
            eps: self.eps,
        }
        .write(m)?;
        if let Some(t) = self.rope_theta_swa {
            m.f32("rope.freq_base_swa", t);
        }
        if let Some(cap) = self.softcap {
            m.f32("final_logit_softcapping", cap);
        }
        Ok(())
    }

    /// A layer of these widths: `sliding`, with its own KV unless `shared`.
    pub fn layer(&self, n_head_kv: u64, head_dim: u64, n_ff: u64, sliding: bool, shared: bool) -> LayerShape {
        LayerShape { n_head: self.n_head, n_head_kv, head_dim, n_ff, sliding, has_kv: !shared }
    }

    /// Gemma's decoder layer: llama's, with Q/K norms, and norms after attention and after the
    /// feed-forward block. `kv_weights`: the layer stores K (and V unless `v_weights` is false).
    pub fn layer_tensors(&self, t: &mut Tensors, i: usize, l: &LayerShape, kv_weights: bool, v_weights: bool) {
        decoder_layer(t, i, l, self.n_embd, kv_weights, v_weights);
        t.layer(i, "attn_q_norm.weight", &[l.head_dim]);
        if kv_weights {
            t.layer(i, "attn_k_norm.weight", &[l.head_dim]);
        }
        t.layer(i, "post_attention_norm.weight", &[self.n_embd]);
        t.layer(i, "post_ffw_norm.weight", &[self.n_embd]);
    }

    /// The token embedding (of `rows` rows), the output norm, and the output projection unless
    /// tied.
    pub fn model_tensors(&self, t: &mut Tensors, rows: u64) {
        t.add("token_embd.weight", &[self.n_embd, rows]);
        t.add("output_norm.weight", &[self.n_embd]);
        if !self.tied {
            t.add("output.weight", &[self.n_embd, self.n_vocab]);
        }
    }
}

/// Gemma 3's and Gemma 4's rows: the token embedding's rows past the tokenizer's tokens are
/// padding, dropped as llama.cpp's converter drops them.
pub(super) fn token_embd_truncated(gguf_name: &str) -> Rows {
    if gguf_name == "token_embd.weight" {
        Rows::Truncate
    } else {
        Rows::Exact
    }
}

/// A SentencePiece `tokenizer.model` padded to `vocab_size` (Gemma 3n too: to 262400, with the
/// vision and audio tokens, not to the per-layer table's `vocab_size_per_layer_input`), else a
/// byte-level BPE `tokenizer.json`; no space prefix.
pub(super) fn sentencepiece_vocab(dir: &Path, config: &Json, n_vocab: u64) -> Result<Vocab> {
    let vocab = if dir.join("tokenizer.model").is_file() {
        Vocab::from_sentencepiece(dir, Some(n_vocab as usize), config)?
    } else {
        Vocab::from_hf_bpe(dir, None, config)?
    };
    Ok(vocab.with_add_space_prefix(false))
}
