//! Gemma 4 (text): llama.cpp's `gemma4` architecture.
//!
//! Gemma 4 adds to Gemma 3 the per-layer embeddings (PLE: a `per_layer_token_embd` table read
//! a few rows per token, projected and gated into every layer), KV sharing (the last layers
//! reuse the KV cache of earlier ones), sliding and full layers with their own head dims and
//! KV heads, proportional RoPE on full layers (expressed through `rope_freqs`), a learned
//! per-layer output scale, and, for 26B-A4B, mixture-of-experts blocks beside the dense MLP.

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use serde_json::Value as Json;
use strata_gguf::{ModelShape, Value};

use super::gemma::{self, Common, Defaults};
use super::{Architecture, Computed, Config, Mapped, Meta, Rows, Tensors, Transform};
use crate::tokenizer::Vocab;

/// The largest head dimension accepted (real models use at most 512).
const MAX_HEAD_DIM: u64 = 1 << 16;

/// Tokens Gemma 4's converter always renders (user-defined), so a chat parser can read them.
const VISIBLE: &[&str] =
    &["<|channel>", "<channel|>", "<|tool_call>", "<tool_call|>", "<|tool_response>", "<tool_response|>", "<|\"|>"];

/// A mixture-of-experts block beside the dense MLP (26B-A4B).
struct Experts {
    count: u64,
    used: Option<u64>,
    n_ff: u64,
}

pub struct Gemma4 {
    config: Json,
    g: Common,
    n_ff: u64,
    double_wide: bool,
    sliding: Vec<bool>,
    shared: u64,
    /// Width of each layer's slice of the per-layer embedding; 0 for none (31B, 26B-A4B).
    ple: u64,
    ple_vocab: u64,
    /// The full-attention layers' head size and KV heads (`None`: as the sliding layers').
    head_dim_full: u64,
    n_head_kv_full: Option<u64>,
    /// Full layers use their keys as values (no `v_proj`).
    k_eq_v: bool,
    experts: Option<Experts>,
}

/// A value of the full-attention layers: the top-level `global_*` key, else `per_layer_config`'s
/// `key` for a full layer.
fn full_layer_value(c: &Json, global_key: &str, key: &str) -> Option<u64> {
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

impl Gemma4 {
    /// Gemma4TextConfig's own defaults (transformers 5.24): 4 KV heads, a context of 131072, a
    /// window of 512, PLE width 256 over 262144 rows, no KV sharing, no double-wide MLP, no
    /// experts, values distinct from keys.
    pub fn boxed(config: Json) -> Result<Box<dyn Architecture>> {
        let c = Config::new(&config)?;
        let g = Common::read(&c, Defaults { n_head_kv: 4, n_ctx: 131_072, sliding_window: 512 })?;
        let shared = c.u64_or("num_kv_shared_layers", 0)?;
        if shared >= g.n_layer {
            bail!("config.json: num_kv_shared_layers {shared} leaves no layer with its own KV (of {})", g.n_layer);
        }
        let sliding = c.sliding_layers(g.n_layer)?;
        let head_dim_full = match full_layer_value(&config, "global_head_dim", "head_dim") {
            Some(d) => d,
            None if sliding.iter().all(|&s| s) => g.head_dim,
            None => {
                bail!("config.json: no head_dim for the full-attention layers (global_head_dim or per_layer_config)")
            }
        };
        let experts = if c.bool_or("enable_moe_block", false)? {
            let n_ff = match c.opt_u64("moe_intermediate_size")? {
                Some(n) => n,
                None => c
                    .opt_u64("expert_intermediate_size")?
                    .ok_or_else(|| anyhow!("config.json: moe_intermediate_size is missing"))?,
            };
            Some(Experts { count: c.u64("num_experts")?, used: c.opt_u64("top_k_experts")?, n_ff })
        } else {
            None
        };
        Ok(Box::new(Gemma4 {
            n_ff: c.u64("intermediate_size")?,
            double_wide: c.bool_or("use_double_wide_mlp", false)?,
            shared,
            ple: c.u64_or("hidden_size_per_layer_input", 256)?,
            ple_vocab: c.u64_or("vocab_size_per_layer_input", 262_144)?,
            head_dim_full,
            n_head_kv_full: full_layer_value(&config, "num_global_key_value_heads", "num_key_value_heads"),
            k_eq_v: c.bool_or("attention_k_eq_v", false)?,
            experts,
            sliding,
            g,
            config,
        }))
    }

    fn first_shared(&self) -> u64 {
        self.g.n_layer - self.shared
    }

    /// Each layer's feed-forward width: doubled on the KV-shared layers with a double-wide MLP.
    fn n_ff(&self, i: u64) -> u64 {
        if self.double_wide && i >= self.first_shared() {
            2 * self.n_ff
        } else {
            self.n_ff
        }
    }
}

impl Architecture for Gemma4 {
    fn name(&self) -> &'static str {
        "gemma4"
    }

    fn metadata(&self) -> Result<Vec<(String, Value)>> {
        let g = &self.g;
        let mut m = Meta::new("gemma4");
        g.metadata(&mut m)?;
        if self.double_wide {
            m.i32_per_layer("feed_forward_length", &(0..g.n_layer).map(|i| self.n_ff(i)).collect::<Vec<_>>())?;
        } else {
            m.u32("feed_forward_length", self.n_ff)?;
        }
        match self.n_head_kv_full {
            Some(full) => m.i32_per_layer(
                "attention.head_count_kv",
                &self.sliding.iter().map(|&s| if s { g.n_head_kv } else { full }).collect::<Vec<_>>(),
            )?,
            None => m.u32("attention.head_count_kv", g.n_head_kv)?,
        }
        m.u32("attention.key_length", self.head_dim_full)?;
        m.u32("attention.value_length", self.head_dim_full)?;
        m.u32("attention.key_length_swa", g.head_dim)?;
        m.u32("attention.value_length_swa", g.head_dim)?;
        m.u32("attention.sliding_window", g.sliding_window)?;
        m.bools("attention.sliding_window_pattern", &self.sliding);
        m.u32("attention.shared_kv_layers", self.shared)?;
        m.u32("embedding_length_per_layer_input", self.ple)?;
        if let Some(e) = &self.experts {
            m.u32("expert_count", e.count)?;
            if let Some(used) = e.used {
                m.u32("expert_used_count", used)?;
            }
            m.u32("expert_feed_forward_length", e.n_ff)?;
        }
        let partial_swa =
            self.config["rope_parameters"]["sliding_attention"]["partial_rotary_factor"].as_f64().unwrap_or(1.0);
        m.u32("rope.dimension_count", self.head_dim_full)?;
        m.u32("rope.dimension_count_swa", (g.head_dim as f64 * partial_swa) as u64)?;
        Ok(m.entries)
    }

    fn shape(&self, n_tokens: Option<u64>) -> Result<ModelShape> {
        let g = &self.g;
        let d = g.n_embd;
        let mut t = Tensors::default();
        let mut layers = Vec::new();
        for (i, &swa) in self.sliding.iter().enumerate() {
            let (n_head_kv, head_dim) = if swa {
                (g.n_head_kv, g.head_dim)
            } else {
                (self.n_head_kv_full.unwrap_or(g.n_head_kv), self.head_dim_full)
            };
            let l = g.layer(n_head_kv, head_dim, self.n_ff(i as u64), swa, i as u64 >= self.first_shared());
            g.layer_tensors(&mut t, i, &l, l.has_kv, swa || !self.k_eq_v);
            t.layer(i, "layer_output_scale.weight", &[1]);
            if self.ple > 0 {
                t.layer(i, "inp_gate.weight", &[d, self.ple]);
                t.layer(i, "proj.weight", &[self.ple, d]);
                t.layer(i, "post_norm.weight", &[d]);
            }
            if let Some(e) = &self.experts {
                t.layer(i, "ffn_gate_inp.weight", &[d, e.count]);
                t.layer(i, "ffn_gate_inp.scale", &[d]);
                t.layer(i, "ffn_down_exps.scale", &[e.count]);
                t.layer(i, "ffn_gate_up_exps.weight", &[d, 2 * e.n_ff, e.count]);
                t.layer(i, "ffn_down_exps.weight", &[e.n_ff, d, e.count]);
                for norm in ["pre_ffw_norm_2", "post_ffw_norm_1", "post_ffw_norm_2"] {
                    t.layer(i, &format!("{norm}.weight"), &[d]);
                }
            }
            layers.push(l);
        }
        g.model_tensors(&mut t, n_tokens.map_or(g.n_vocab, |n| n.min(g.n_vocab)));
        if self.ple > 0 {
            t.add("per_layer_token_embd.weight", &[self.ple * g.n_layer, self.ple_vocab]);
            t.add("per_layer_model_proj.weight", &[d, self.ple * g.n_layer]);
            t.add("per_layer_proj_norm.weight", &[self.ple]);
        }
        if self.sliding.iter().any(|&s| !s) {
            t.add("rope_freqs.weight", &[self.head_dim_full / 2]);
        }
        let sliding_window = self.sliding.iter().any(|&s| s).then_some(g.sliding_window);
        Ok(ModelShape { arch: "gemma4".into(), n_embd: d, n_vocab: g.n_vocab, layers, sliding_window, tensors: t.0 })
    }

    fn map(&self, hf: &str) -> Option<Mapped> {
        Some(Mapped::whole(gemma::gguf_name(hf)?, Transform::Copy))
    }

    /// Full layers rotate only a fraction of each head ("proportional" RoPE); llama.cpp's NeoX
    /// rotation gets that through frequency factors of 1e30 on the unrotated pairs.
    fn computed(&self) -> Result<Vec<Computed>> {
        if self.sliding.iter().all(|&s| s) {
            return Ok(Vec::new());
        }
        let full = &self.config["rope_parameters"]["full_attention"];
        if full["rope_type"].as_str() != Some("proportional") {
            bail!("config.json: Gemma 4 full-attention layers use rope_type {}, not proportional", full["rope_type"]);
        }
        // One factor per pair is allocated: a hostile head_dim must not size that allocation.
        if self.head_dim_full > MAX_HEAD_DIM {
            bail!(
                "config.json: head_dim {} of the full-attention layers is more than {MAX_HEAD_DIM}",
                self.head_dim_full
            );
        }
        let head_dim = self.head_dim_full as f64;
        let factor = full["partial_rotary_factor"]
            .as_f64()
            .ok_or_else(|| anyhow!("config.json: rope_parameters.full_attention.partial_rotary_factor is missing"))?;
        let n_rot = (head_dim * factor / 2.0) as usize;
        let n_pairs = (head_dim / 2.0) as usize;
        let values: Vec<f32> = (0..n_pairs).map(|i| if i < n_rot { 1.0 } else { 1e30 }).collect();
        Ok(vec![Computed { gguf_name: "rope_freqs.weight".into(), values }])
    }

    fn rows(&self, gguf_name: &str) -> Rows {
        gemma::token_embd_truncated(gguf_name)
    }

    fn vocab(&self, dir: &Path) -> Result<Vocab> {
        Ok(Vocab::from_hf_llama(dir, "gemma4", VISIBLE)?.with_add_space_prefix(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing (fuzz/fuzz_targets/config.rs): a huge global_head_dim sized the
    /// rope_freqs allocation, and a huge intermediate_size overflowed doubling it.
    #[test]
    fn hostile_gemma4_sizes_are_errors() {
        let config = serde_json::json!({
            "global_head_dim": u32::MAX, "head_dim": 8, "num_hidden_layers": 1, "layer_types": ["full_attention"],
            "use_double_wide_mlp": true, "intermediate_size": u32::MAX, "hidden_size": 8, "sliding_window": 4, "vocab_size": 10,
            "rope_parameters": {"full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25}},
        });
        let g = Gemma4::boxed(config.clone()).unwrap();
        assert!(g
            .computed()
            .unwrap_err()
            .to_string()
            .contains("head_dim 4294967295 of the full-attention layers is more than 65536"));
        let err = g.metadata().unwrap_err().to_string();
        assert_eq!(err, "config.json: gemma4.feed_forward_length would hold 4294967295, more than GGUF's i32 holds");
        let mut config = config;
        config["num_hidden_layers"] = 2.into();
        config["layer_types"] = serde_json::json!(["sliding_attention", "full_attention"]);
        config["num_kv_shared_layers"] = 1.into();
        config["intermediate_size"] = (1u64 << 30).into();
        let err = Gemma4::boxed(config).unwrap().metadata().unwrap_err().to_string();
        assert_eq!(err, "config.json: gemma4.feed_forward_length would hold 2147483648, more than GGUF's i32 holds");
    }
}
