//! A model's shape as llama.cpp sees it: its tensors (names, shapes, classes) and each layer's
//! attention and feed-forward widths, and the arithmetic on them (the KV cache per context).
//! An architecture of `strata-convert` builds one from config.json; [`ModelShape::from_gguf`]
//! reads one from a GGUF file's metadata, as llama.cpp's loader does.

use anyhow::{anyhow, bail, Result};

use crate::{GgufFile, TensorClass, Value};

/// A tensor to place: its GGUF name, shape (ggml order, row width first) and class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<u64>,
    pub class: TensorClass,
}

impl TensorSpec {
    /// A tensor classed by its llama.cpp name ([`TensorClass::of`]).
    pub fn named(name: impl Into<String>, shape: Vec<u64>) -> TensorSpec {
        let name = name.into();
        let class = TensorClass::of(&name, shape.len());
        TensorSpec { name, shape, class }
    }

    /// Number of elements (saturating: a hostile shape gives "more than any device has").
    pub fn n_elements(&self) -> u64 {
        self.shape.iter().fold(1u64, |n, &d| n.saturating_mul(d))
    }
}

/// One layer's attention and feed-forward widths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerShape {
    pub n_head: u64,
    pub n_head_kv: u64,
    pub head_dim: u64,
    pub n_ff: u64,
    /// Attends within a sliding window (its KV cache holds only the window).
    pub sliding: bool,
    /// Has its own K and V (KV-shared layers read an earlier layer's cache).
    pub has_kv: bool,
}

/// A model's shape as planning needs it.
#[derive(Clone, Debug)]
pub struct ModelShape {
    /// llama.cpp's architecture name.
    pub arch: String,
    pub n_embd: u64,
    pub n_vocab: u64,
    pub layers: Vec<LayerShape>,
    /// Tokens a sliding-window layer attends to.
    pub sliding_window: Option<u64>,
    /// Every tensor of the GGUF file, in GGUF names and ggml order (row width first).
    pub tensors: Vec<TensorSpec>,
}

/// The tensors llama.cpp's loader marks `TENSOR_READ_LAZY` (read row by row from the memory map
/// when lazy mode applies), by architecture: src/models/gemma4.cpp marks the per-layer embedding
/// table; gemma3n.cpp, which builds the same table, does not. This is llama.cpp's fact, kept here
/// once.
const READ_LAZILY: &[(&str, &str)] = &[("gemma4", "per_layer_token_embd.weight")];

/// The most layers a model may claim (the largest real ones have a few hundred): more is a
/// corrupt or hostile file, and would cost memory per layer before anything else is checked.
pub const MAX_LAYERS: u64 = 4096;

impl ModelShape {
    /// Whether llama.cpp can read tensor `name` of this model lazily (see [`READ_LAZILY`]).
    pub fn reads_lazily(&self, name: &str) -> bool {
        READ_LAZILY.iter().any(|(arch, tensor)| *arch == self.arch && *tensor == name)
    }

    /// Bytes of KV cache for a context of `n_ctx` tokens with `bytes_per_value` per K or V value
    /// (2 for F16). Sliding layers hold the window plus one batch of `n_batch`, as llama.cpp's
    /// SWA cache does, padded to 256 cells.
    pub fn kv_cache_bytes(&self, n_ctx: u64, n_batch: u64, bytes_per_value: f64) -> u64 {
        // Saturating: a hostile file's sizes give "more than any device has", not an overflow.
        let swa_cells = self
            .sliding_window
            .map_or(n_ctx, |w| n_ctx.min(w.saturating_add(n_batch).div_ceil(256).saturating_mul(256)));
        let values = self
            .layers
            .iter()
            .filter(|l| l.has_kv)
            .map(|l| {
                2u64.saturating_mul(l.n_head_kv).saturating_mul(l.head_dim).saturating_mul(if l.sliding {
                    swa_cells
                } else {
                    n_ctx
                })
            })
            .fold(0u64, u64::saturating_add);
        (values as f64 * bytes_per_value) as u64
    }

    /// The shape of a GGUF model, from its metadata as llama.cpp's loader reads it, and its tensors.
    pub fn from_gguf(file: &GgufFile) -> Result<ModelShape> {
        let tensors = file.tensors.iter().map(|t| TensorSpec::named(t.name.clone(), t.shape.clone())).collect();
        let get = |key: &str| file.get(key);
        let arch = file.architecture().ok_or_else(|| anyhow!("no general.architecture"))?.to_string();
        let key = |k: &str| get(&format!("{arch}.{k}"));
        let scalar = |k: &str| key(k).and_then(Value::as_u64).ok_or_else(|| anyhow!("{arch}.{k} is missing"));
        let n_layer = scalar("block_count")?;
        if n_layer > MAX_LAYERS {
            bail!("{arch}.block_count is {n_layer}, more than {MAX_LAYERS}");
        }
        let n_embd = scalar("embedding_length")?;
        // A key that is a number for all layers, or an array with one per layer.
        let per_layer = |k: &str, i: usize| -> Option<u64> {
            match key(k)? {
                Value::Array(_, items) => items.get(i)?.as_u64(),
                v => v.as_u64(),
            }
        };
        let n_head =
            per_layer("attention.head_count", 0).ok_or_else(|| anyhow!("{arch}.attention.head_count is missing"))?;
        let sliding: Vec<bool> = match key("attention.sliding_window_pattern") {
            Some(Value::Array(_, items)) => items.iter().map(|v| matches!(v, Value::Bool(true))).collect(),
            Some(v) => {
                let period = v.as_u64().unwrap_or(1).max(1);
                (0..n_layer).map(|i| (i + 1) % period != 0).collect()
            }
            // llama.cpp's gemma3 loader assumes five sliding layers, then a full one.
            None if arch == "gemma3" => (0..n_layer).map(|i| (i + 1) % 6 != 0).collect(),
            None => vec![key("attention.sliding_window").is_some(); n_layer as usize],
        };
        let first_shared =
            n_layer - key("attention.shared_kv_layers").and_then(Value::as_u64).unwrap_or(0).min(n_layer);
        let layers = (0..n_layer as usize)
            .map(|i| {
                let swa = sliding.get(i).copied().unwrap_or(false);
                let head_dim = if swa { per_layer("attention.key_length_swa", i) } else { None }
                    .or_else(|| per_layer("attention.key_length", i))
                    .unwrap_or(n_embd / n_head.max(1));
                LayerShape {
                    n_head: per_layer("attention.head_count", i).unwrap_or(n_head),
                    n_head_kv: per_layer("attention.head_count_kv", i).unwrap_or(n_head),
                    head_dim,
                    n_ff: per_layer("feed_forward_length", i).unwrap_or(0),
                    sliding: swa,
                    has_kv: (i as u64) < first_shared,
                }
            })
            .collect();
        let n_vocab = file
            .tensors
            .iter()
            .find(|t| t.name == "token_embd.weight")
            .and_then(|t| t.shape.get(1).copied())
            .unwrap_or(0);
        Ok(ModelShape {
            sliding_window: key("attention.sliding_window").and_then(Value::as_u64),
            arch,
            n_embd,
            n_vocab,
            layers,
            tensors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(metadata: Vec<(&str, Value)>) -> GgufFile {
        let metadata = metadata.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        GgufFile { version: 3, metadata, tensors: Vec::new(), alignment: 32, data_offset: 0, file_size: 0 }
    }

    #[test]
    fn gguf_metadata_claiming_2_60_layers_is_an_error() {
        let f = file(vec![
            ("general.architecture", Value::String("llama".into())),
            ("llama.block_count", Value::U64(1 << 60)),
            ("llama.embedding_length", Value::U32(64)),
            ("llama.attention.head_count", Value::U32(4)),
        ]);
        assert!(ModelShape::from_gguf(&f)
            .unwrap_err()
            .to_string()
            .contains("llama.block_count is 1152921504606846976, more than 4096"));
    }

    #[test]
    fn kv_cache_of_sliding_and_shared_layers() {
        let layer = |sliding, has_kv| LayerShape { n_head: 4, n_head_kv: 2, head_dim: 16, n_ff: 64, sliding, has_kv };
        let shape = ModelShape {
            arch: "gemma4".into(),
            n_embd: 64,
            n_vocab: 10,
            layers: vec![layer(true, true), layer(false, true), layer(true, false)],
            sliding_window: Some(100),
            tensors: Vec::new(),
        };
        // The sliding layer holds 100 + 512 cells rounded up to 768; the full one 4096; the
        // shared one none. K and V, 2 heads of 16, 2 bytes each.
        assert_eq!(shape.kv_cache_bytes(4096, 512, 2.0), 2 * 2 * 16 * (768 + 4096) * 2);
        assert_eq!(shape.kv_cache_bytes(u64::MAX, u64::MAX, 2.0), u64::MAX);
    }
}
