//! Gemma 3, Gemma 3n and Gemma 4 (text): llama.cpp's `gemma3`, `gemma3n` and `gemma4`
//! architectures. Gemma 3n's own tensors and keys are in [`super::gemma3n`].
//!
//! Gemma 4 adds to Gemma 3 the per-layer embeddings (PLE: a `per_layer_token_embd` table read
//! a few rows per token, projected and gated into every layer), KV sharing (the last layers
//! reuse the KV cache of earlier ones), sliding and full layers with their own head dims and
//! KV heads, proportional RoPE on full layers (expressed through `rope_freqs`), a learned
//! per-layer output scale, and, for 26B-A4B, mixture-of-experts blocks beside the dense MLP.

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use serde_json::Value as Json;

use super::{cfg_u64, gemma3n, lookup, Architecture, Computed, Mapped, Meta, Transform};
use crate::gguf::{Value, ValueType};
use crate::tokenizer::Vocab;

const GLOBAL: &[(&str, &str)] = &[
    ("model.embed_tokens.weight", "token_embd.weight"),
    ("model.norm.weight", "output_norm.weight"),
    ("lm_head.weight", "output.weight"),
    ("model.embed_tokens_per_layer.weight", "per_layer_token_embd.weight"),
    ("model.per_layer_model_projection.weight", "per_layer_model_proj.weight"),
    ("model.per_layer_projection_norm.weight", "per_layer_proj_norm.weight"),
];
const PER_LAYER: &[(&str, &str)] = &[
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

/// The largest head dimension accepted (real models use at most 512).
const MAX_HEAD_DIM: u64 = 1 << 16;

/// Tokens Gemma 4's converter always renders (user-defined), so a chat parser can read them.
const GEMMA4_VISIBLE: &[&str] = &["<|channel>", "<channel|>", "<|tool_call>", "<tool_call|>", "<|tool_response>", "<tool_response|>", "<|\"|>"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gemma3,
    Gemma3n,
    Gemma4,
}

pub struct Gemma {
    kind: Kind,
}

impl Gemma {
    pub fn gemma3(_config: &Json) -> Result<Box<dyn Architecture>> {
        Ok(Box::new(Gemma { kind: Kind::Gemma3 }))
    }

    pub fn gemma3n(_config: &Json) -> Result<Box<dyn Architecture>> {
        Ok(Box::new(Gemma { kind: Kind::Gemma3n }))
    }

    pub fn gemma4(_config: &Json) -> Result<Box<dyn Architecture>> {
        Ok(Box::new(Gemma { kind: Kind::Gemma4 }))
    }
}

/// `layer_types` as booleans: true for sliding-window layers.
pub(super) fn sliding_pattern(c: &Json) -> Result<Vec<bool>> {
    let types = c["layer_types"].as_array().ok_or_else(|| anyhow!("config.json: layer_types is missing"))?;
    types
        .iter()
        .map(|t| match t.as_str() {
            Some("sliding_attention") => Ok(true),
            Some("full_attention") => Ok(false),
            _ => bail!("config.json: layer_types holds {t}, not sliding_attention or full_attention"),
        })
        .collect()
}

/// A value of the full-attention layers from `per_layer_config` (Gemma 4), where the top-level
/// `global_*` key is absent.
pub(crate) fn full_layer_value(c: &Json, global_key: &str, key: &str) -> Option<u64> {
    if let Some(v) = c[global_key].as_u64() {
        return Some(v);
    }
    let types = c["layer_types"].as_array()?;
    let per_layer = c["per_layer_config"].as_object()?;
    per_layer.iter().find_map(|(i, cfg)| {
        let i: usize = i.parse().ok()?;
        (types.get(i)?.as_str()? == "full_attention").then(|| cfg[key].as_u64()).flatten()
    })
}

impl Gemma {
    fn gemma3_metadata(&self, m: &mut Meta, c: &Json) -> Result<()> {
        let n_layer = cfg_u64(c, "num_hidden_layers")?;
        m.u32("block_count", n_layer)?;
        m.u32("context_length", c["max_position_embeddings"].as_u64().unwrap_or(131_072))?;
        m.u32("embedding_length", cfg_u64(c, "hidden_size")?)?;
        feed_forward_length(m, c)?;
        m.u32("attention.head_count", c["num_attention_heads"].as_u64().unwrap_or(8))?;
        m.u32("attention.head_count_kv", c["num_key_value_heads"].as_u64().unwrap_or(4))?;
        let rope = &c["rope_parameters"];
        let full_theta = rope["full_attention"]["rope_theta"].as_f64().or_else(|| rope["rope_theta"].as_f64()).or_else(|| c["rope_theta"].as_f64());
        m.f32("rope.freq_base", full_theta.unwrap_or(1_000_000.0));
        if let Some(t) = rope["sliding_attention"]["rope_theta"].as_f64() {
            m.f32("rope.freq_base_swa", t);
        }
        m.f32("attention.layer_norm_rms_epsilon", c["rms_norm_eps"].as_f64().unwrap_or(1e-6));
        let head_dim = c["head_dim"].as_u64().unwrap_or(256);
        m.u32("attention.key_length", head_dim)?;
        m.u32("attention.value_length", head_dim)?;
        if let Some(cap) = c["final_logit_softcapping"].as_f64() {
            m.f32("final_logit_softcapping", cap);
        }
        if c["sliding_window_pattern"].as_u64() != Some(1) {
            m.u32("attention.sliding_window", cfg_u64(c, "sliding_window")?)?;
        }
        if self.kind == Kind::Gemma3 && c["layer_types"].is_array() {
            // llama.cpp assumes Gemma 3's five sliding layers then one full unless the GGUF says
            // otherwise (llama.cpp's converter never does); say so where the checkpoint differs.
            let swa = sliding_pattern(c)?;
            if swa.iter().enumerate().any(|(i, &s)| s != ((i + 1) % 6 != 0)) {
                m.put("attention.sliding_window_pattern", Value::Array(ValueType::Bool, swa.iter().map(|&b| Value::Bool(b)).collect()));
            }
        }
        if let Some(n) = c["num_experts"].as_u64() {
            m.u32("expert_count", n)?;
        }
        if let Some(n) = c["top_k_experts"].as_u64() {
            m.u32("expert_used_count", n)?;
        }
        Ok(())
    }

    fn gemma4_metadata(&self, m: &mut Meta, c: &Json) -> Result<()> {
        let n_layer = cfg_u64(c, "num_hidden_layers")?;
        let shared = c["num_kv_shared_layers"].as_u64().unwrap_or(0);
        if shared >= n_layer {
            bail!("config.json: num_kv_shared_layers {shared} leaves no layer with its own KV (of {n_layer})");
        }
        m.u32("attention.shared_kv_layers", shared)?;
        m.u32("embedding_length_per_layer_input", c["hidden_size_per_layer_input"].as_u64().unwrap_or(0))?;
        let swa = sliding_pattern(c)?;
        if swa.len() as u64 != n_layer {
            bail!("config.json: layer_types has {} entries for {n_layer} layers", swa.len());
        }
        m.put("attention.sliding_window_pattern", Value::Array(ValueType::Bool, swa.iter().map(|&b| Value::Bool(b)).collect()));
        let head_dim_full = full_layer_value(c, "global_head_dim", "head_dim").ok_or_else(|| anyhow!("config.json: no head_dim for the full-attention layers"))?;
        let head_dim_swa = cfg_u64(c, "head_dim")?;
        m.u32("attention.key_length", head_dim_full)?;
        m.u32("attention.value_length", head_dim_full)?;
        m.u32("attention.key_length_swa", head_dim_swa)?;
        m.u32("attention.value_length_swa", head_dim_swa)?;
        if let Some(n) = c["expert_intermediate_size"].as_u64().or_else(|| c["moe_intermediate_size"].as_u64()) {
            m.u32("expert_feed_forward_length", n)?;
        }
        if c["use_double_wide_mlp"].as_bool() == Some(true) {
            let n_ff = cfg_u64(c, "intermediate_size")?;
            let first_shared = n_layer - shared;
            let too_large = || anyhow!("config.json: intermediate_size {n_ff} is too large");
            let wide = n_ff.checked_mul(2).and_then(|n| i32::try_from(n).ok()).ok_or_else(too_large)?;
            let lengths = (0..n_layer).map(|il| Value::I32(if il < first_shared { n_ff as i32 } else { wide })).collect();
            m.put("feed_forward_length", Value::Array(ValueType::I32, lengths));
        }
        if let (Some(full), Some(swa_kv)) = (full_layer_value(c, "num_global_key_value_heads", "num_key_value_heads"), c["num_key_value_heads"].as_u64()) {
            let (full, swa_kv) = match (i32::try_from(full), i32::try_from(swa_kv)) {
                (Ok(full), Ok(swa_kv)) => (full, swa_kv),
                _ => bail!("config.json: key/value head counts {swa_kv} and {full} must be below 2^31"),
            };
            m.put("attention.head_count_kv", Value::Array(ValueType::I32, swa.iter().map(|&s| Value::I32(if s { swa_kv } else { full })).collect()));
        }
        let partial_swa = c["rope_parameters"]["sliding_attention"]["partial_rotary_factor"].as_f64().unwrap_or(1.0);
        m.u32("rope.dimension_count", head_dim_full)?;
        m.u32("rope.dimension_count_swa", (head_dim_swa as f64 * partial_swa) as u64)?;
        Ok(())
    }
}

/// `intermediate_size`: one number, or (Gemma 3n) one per layer, written as llama.cpp's
/// converter writes a list: an i32 array.
fn feed_forward_length(m: &mut Meta, c: &Json) -> Result<()> {
    match c["intermediate_size"].as_array() {
        Some(sizes) => {
            let sizes = sizes.iter().map(|n| n.as_u64().and_then(|n| i32::try_from(n).ok()).map(Value::I32)).collect::<Option<Vec<_>>>();
            let sizes = sizes.ok_or_else(|| anyhow!("config.json: intermediate_size holds something other than whole numbers below 2^31"))?;
            m.put("feed_forward_length", Value::Array(ValueType::I32, sizes));
        }
        None => m.u32("feed_forward_length", cfg_u64(c, "intermediate_size")?)?,
    }
    Ok(())
}

impl Architecture for Gemma {
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Gemma3 => "gemma3",
            Kind::Gemma3n => "gemma3n",
            Kind::Gemma4 => "gemma4",
        }
    }

    fn metadata(&self, c: &Json) -> Result<Vec<(String, Value)>> {
        let mut m = Meta::new(self.name());
        self.gemma3_metadata(&mut m, c)?;
        match self.kind {
            Kind::Gemma3 => {}
            Kind::Gemma3n => gemma3n::metadata(&mut m, c)?,
            Kind::Gemma4 => self.gemma4_metadata(&mut m, c)?,
        }
        Ok(m.entries)
    }

    fn map(&self, hf: &str) -> Option<Mapped> {
        if self.kind == Kind::Gemma3n {
            if let Some(mapped) = gemma3n::map(hf) {
                return Some(mapped);
            }
        }
        let gguf_name = lookup(hf, GLOBAL, PER_LAYER)?;
        // Gemma 3's RMSNorm scales by 1 + weight; Gemma 3n's and Gemma 4's by the weight.
        let transform = if self.kind == Kind::Gemma3 && hf.ends_with("norm.weight") { Transform::AddOne } else { Transform::Copy };
        Some(Mapped::whole(gguf_name, transform))
    }

    fn computed(&self, c: &Json) -> Result<Vec<Computed>> {
        if self.kind != Kind::Gemma4 {
            return Ok(Vec::new());
        }
        // Full layers rotate only a fraction of each head ("proportional" RoPE); llama.cpp's
        // NeoX rotation gets that through frequency factors of 1e30 on the unrotated pairs.
        let full = &c["rope_parameters"]["full_attention"];
        if full["rope_type"].as_str() != Some("proportional") {
            bail!("config.json: Gemma 4 full-attention layers use rope_type {}, not proportional", full["rope_type"]);
        }
        let head_dim = full_layer_value(c, "global_head_dim", "head_dim").ok_or_else(|| anyhow!("config.json: no head_dim for the full-attention layers"))?;
        // One factor per pair is allocated: a hostile head_dim must not size that allocation.
        if head_dim > MAX_HEAD_DIM {
            bail!("config.json: head_dim {head_dim} of the full-attention layers is more than {MAX_HEAD_DIM}");
        }
        let head_dim = head_dim as f64;
        let factor = full["partial_rotary_factor"].as_f64().ok_or_else(|| anyhow!("config.json: rope_parameters.full_attention.partial_rotary_factor is missing"))?;
        let n_rot = (head_dim * factor / 2.0) as usize;
        let n_pairs = (head_dim / 2.0) as usize;
        let values: Vec<f32> = (0..n_pairs).map(|i| if i < n_rot { 1.0 } else { 1e30 }).collect();
        Ok(vec![Computed { gguf_name: "rope_freqs.weight".into(), shape: vec![n_pairs as u64], values }])
    }

    fn table_rows(&self, gguf_name: &str, rows: usize, n_tokens: usize, config: &Json) -> usize {
        match self.kind {
            Kind::Gemma3n => gemma3n::table_rows(gguf_name, rows, config),
            // The token embedding's rows past the tokenizer's tokens are padding.
            Kind::Gemma3 | Kind::Gemma4 if gguf_name == "token_embd.weight" => rows.min(n_tokens),
            Kind::Gemma3 | Kind::Gemma4 => rows,
        }
    }

    fn vocab(&self, dir: &Path, config: &Json) -> Result<Vocab> {
        let vocab = match self.kind {
            Kind::Gemma4 => Vocab::from_hf_llama(dir, "gemma4", GEMMA4_VISIBLE)?,
            // Gemma 3n too: padded to vocab_size (262400, with the vision and audio tokens),
            // not to the per-layer table's vocab_size_per_layer_input.
            Kind::Gemma3 | Kind::Gemma3n if dir.join("tokenizer.model").is_file() => Vocab::from_sentencepiece(dir, config["vocab_size"].as_u64().map(|n| n as usize), config)?,
            Kind::Gemma3 | Kind::Gemma3n => Vocab::from_hf_bpe(dir, None, config)?,
        };
        Ok(vocab.with_add_space_prefix(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern_key(layer_types: &[&str]) -> Option<Value> {
        let config = serde_json::json!({
            "num_hidden_layers": layer_types.len(), "hidden_size": 64, "intermediate_size": 96, "sliding_window": 8,
            "layer_types": layer_types,
        });
        let meta = Gemma { kind: Kind::Gemma3 }.metadata(&config).unwrap();
        meta.into_iter().find(|(k, _)| k == "gemma3.attention.sliding_window_pattern").map(|(_, v)| v)
    }

    /// Found by fuzzing (fuzz/fuzz_targets/config.rs): a huge global_head_dim sized the
    /// rope_freqs allocation, and a huge intermediate_size overflowed doubling it.
    #[test]
    fn hostile_gemma4_sizes_are_errors() {
        let config = serde_json::json!({
            "global_head_dim": u64::MAX, "head_dim": 8, "num_hidden_layers": 1, "layer_types": ["full_attention"],
            "use_double_wide_mlp": true, "intermediate_size": u64::MAX, "hidden_size": 8, "sliding_window": 4,
            "rope_parameters": {"full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25}},
        });
        let g = Gemma { kind: Kind::Gemma4 };
        assert!(g.computed(&config).unwrap_err().to_string().contains("head_dim 18446744073709551615 of the full-attention layers is more than 65536"));
        let mut config = config;
        config["global_head_dim"] = 8.into();
        let err = g.metadata(&config).unwrap_err().to_string();
        assert_eq!(err, "config.json: gemma4.feed_forward_length would be 18446744073709551615, more than GGUF's u32 holds");
        config["intermediate_size"] = (1u64 << 31).into();
        let err = g.metadata(&config).unwrap_err().to_string();
        assert_eq!(err, "config.json: intermediate_size 2147483648 is too large");
    }

    #[test]
    fn gemma3_writes_the_sliding_pattern_only_where_llama_cpp_would_guess_wrong() {
        let (s, f) = ("sliding_attention", "full_attention");
        assert_eq!(pattern_key(&[s, s, s, s, s, f, s]), None);
        let written = pattern_key(&[s, s, s, f]).expect("a 3:1 pattern must be written");
        assert_eq!(written, Value::Array(ValueType::Bool, vec![Value::Bool(true), Value::Bool(true), Value::Bool(true), Value::Bool(false)]));
    }
}
