//! Gemma 3 (text): llama.cpp's `gemma3` architecture. Norms are stored as `1 + weight`, the
//! token embedding is cut to the tokenizer's vocabulary, and layers attend within a sliding
//! window except every sixth (or as `layer_types` says).

use std::path::Path;

use anyhow::Result;
use serde_json::Value as Json;
use strata_gguf::{ModelShape, Value};

use super::gemma::{self, Common, Defaults};
use super::{Architecture, Config, Mapped, Meta, Rows, Tensors, Transform};
use crate::tokenizer::Vocab;

/// Layers per sliding-window period: five sliding, then one full (Gemma3TextConfig's
/// `sliding_window_pattern` default, and what llama.cpp assumes unless the GGUF says otherwise).
const PERIOD: u64 = 6;

pub struct Gemma3 {
    config: Json,
    g: Common,
    n_ff: u64,
    sliding: Vec<bool>,
    /// config.json's `layer_types` differ from llama.cpp's assumed 5:1 pattern.
    pattern_differs: bool,
    /// `sliding_window_pattern` is 1: no layer slides, and no window is written.
    no_window: bool,
}

impl Gemma3 {
    /// Gemma3TextConfig's own defaults: 4 KV heads, a context of 131072, a window of 4096.
    pub fn boxed(config: Json) -> Result<Box<dyn Architecture>> {
        let c = Config::new(&config)?;
        let g = Common::read(&c, Defaults { n_head_kv: 4, n_ctx: 131_072, sliding_window: 4096 })?;
        let period = c.opt_u64("sliding_window_pattern")?;
        let assumed: Vec<bool> = (0..g.n_layer).map(|i| (i + 1) % period.unwrap_or(PERIOD).max(1) != 0).collect();
        let (sliding, pattern_differs) = if c.0["layer_types"].is_array() {
            let given = c.sliding_layers(g.n_layer)?;
            let llama_cpp: Vec<bool> = (0..g.n_layer).map(|i| (i + 1) % PERIOD != 0).collect();
            let differs = given != llama_cpp;
            (given, differs)
        } else {
            (assumed, false)
        };
        let n_ff = c.u64("intermediate_size")?;
        Ok(Box::new(Gemma3 { g, n_ff, sliding, pattern_differs, no_window: period == Some(1), config }))
    }
}

impl Architecture for Gemma3 {
    fn name(&self) -> &'static str {
        "gemma3"
    }

    fn metadata(&self) -> Result<Vec<(String, Value)>> {
        let mut m = Meta::new("gemma3");
        self.g.metadata(&mut m)?;
        m.u32("feed_forward_length", self.n_ff)?;
        m.u32("attention.head_count_kv", self.g.n_head_kv)?;
        m.u32("attention.key_length", self.g.head_dim)?;
        m.u32("attention.value_length", self.g.head_dim)?;
        if !self.no_window {
            m.u32("attention.sliding_window", self.g.sliding_window)?;
        }
        // llama.cpp's converter never writes the pattern; say it where llama.cpp's guess is wrong.
        if self.pattern_differs {
            m.bools("attention.sliding_window_pattern", &self.sliding);
        }
        Ok(m.entries)
    }

    fn shape(&self, n_tokens: Option<u64>) -> Result<ModelShape> {
        let g = &self.g;
        let mut t = Tensors::default();
        let layers: Vec<_> =
            self.sliding.iter().map(|&swa| g.layer(g.n_head_kv, g.head_dim, self.n_ff, swa, false)).collect();
        for (i, l) in layers.iter().enumerate() {
            g.layer_tensors(&mut t, i, l, true, true);
        }
        g.model_tensors(&mut t, n_tokens.map_or(g.n_vocab, |n| n.min(g.n_vocab)));
        let sliding_window = self.sliding.iter().any(|&s| s).then_some(g.sliding_window);
        Ok(ModelShape {
            arch: "gemma3".into(),
            n_embd: g.n_embd,
            n_vocab: g.n_vocab,
            layers,
            sliding_window,
            tensors: t.0,
        })
    }

    fn map(&self, hf: &str) -> Option<Mapped> {
        let gguf_name = gemma::gguf_name(hf)?;
        // Gemma 3's RMSNorm scales by 1 + weight; llama.cpp's converter adds the one to every
        // `*norm.weight` (Gemma 3n's and Gemma 4's scale by the weight itself).
        let transform = if hf.ends_with("norm.weight") { Transform::AddOne } else { Transform::Copy };
        Some(Mapped::whole(gguf_name, transform))
    }

    fn rows(&self, gguf_name: &str) -> Rows {
        gemma::token_embd_truncated(gguf_name)
    }

    fn vocab(&self, dir: &Path) -> Result<Vocab> {
        gemma::sentencepiece_vocab(dir, &self.config, self.g.n_vocab)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern_key(layer_types: &[&str]) -> Option<Value> {
        let config = serde_json::json!({
            "num_hidden_layers": layer_types.len(), "hidden_size": 64, "intermediate_size": 96, "sliding_window": 8,
            "vocab_size": 10, "layer_types": layer_types,
        });
        let meta = Gemma3::boxed(config).unwrap().metadata().unwrap();
        meta.into_iter().find(|(k, _)| k == "gemma3.attention.sliding_window_pattern").map(|(_, v)| v)
    }

    #[test]
    fn gemma3_writes_the_sliding_pattern_only_where_llama_cpp_would_guess_wrong() {
        let (s, f) = ("sliding_attention", "full_attention");
        assert_eq!(pattern_key(&[s, s, s, s, s, f, s]), None);
        let written = pattern_key(&[s, s, s, f]).expect("a 3:1 pattern must be written");
        assert_eq!(
            written,
            Value::Array(
                strata_gguf::ValueType::Bool,
                vec![Value::Bool(true), Value::Bool(true), Value::Bool(true), Value::Bool(false)]
            )
        );
    }
}
