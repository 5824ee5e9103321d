//! What a converted model holds, from its config.json alone: the GGUF tensors (names and
//! shapes) that `convert` writes for it, and the KV cache llama.cpp keeps per token. `plan`
//! sizes a model it has no weights of (a models.toml entry) this way; the tests hold it to what
//! [`crate::convert::plan`] makes of real checkpoints, tensor for tensor.

use anyhow::{anyhow, bail, Result};
use serde_json::Value as Json;

use crate::arch::full_layer_value;
use crate::gguf::{GgufFile, Value};
use crate::policy::TensorSpec;

/// One layer's attention and feed-forward widths.
#[derive(Clone, Debug, PartialEq)]
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
    /// Every tensor `convert` writes, in GGUF names and ggml order (row width first).
    pub tensors: Vec<TensorSpec>,
}

impl ModelShape {
    /// Bytes of KV cache for a context of `n_ctx` tokens with `bytes_per_value` per K or V value
    /// (2 for F16). Sliding layers hold the window plus one batch of `n_batch`, as llama.cpp's
    /// SWA cache does, padded to 256 cells.
    pub fn kv_cache_bytes(&self, n_ctx: u64, n_batch: u64, bytes_per_value: f64) -> u64 {
        // Saturating: a hostile file's sizes give "more than any device has", not an overflow.
        let swa_cells = self.sliding_window.map_or(n_ctx, |w| n_ctx.min(w.saturating_add(n_batch).div_ceil(256).saturating_mul(256)));
        let values = self
            .layers
            .iter()
            .filter(|l| l.has_kv)
            .map(|l| 2u64.saturating_mul(l.n_head_kv).saturating_mul(l.head_dim).saturating_mul(if l.sliding { swa_cells } else { n_ctx }))
            .fold(0u64, u64::saturating_add);
        (values as f64 * bytes_per_value) as u64
    }
}

/// The most layers a model may claim (the largest real ones have a few hundred): more is a
/// corrupt or hostile file, and would cost memory per layer before anything else is checked.
pub const MAX_LAYERS: u64 = 4096;

/// The largest number a config may give for a size: GGUF stores sizes as u32, and with every
/// factor below 2^32 no product of two of them overflows.
const MAX_SIZE: u64 = u32::MAX as u64;

/// Fails on any whole number in `v` (nested objects and arrays included) above [`MAX_SIZE`].
fn check_sizes(v: &Json, path: &str) -> Result<()> {
    match v {
        Json::Number(n) => match n.as_u64() {
            Some(n) if n > MAX_SIZE => bail!("config: {path} is {n}, more than any size a model has ({MAX_SIZE})"),
            _ => Ok(()),
        },
        Json::Array(items) => items.iter().enumerate().try_for_each(|(i, x)| check_sizes(x, &format!("{path}[{i}]"))),
        Json::Object(map) => map.iter().try_for_each(|(k, x)| check_sizes(x, &if path.is_empty() { k.clone() } else { format!("{path}.{k}") })),
        _ => Ok(()),
    }
}

fn get(c: &Json, key: &str) -> Result<u64> {
    c[key].as_u64().ok_or_else(|| anyhow!("config: {key} is missing or not a whole number"))
}

/// The model's shape from its config.json (for multimodal models, the text part).
pub fn model_shape(config: &Json) -> Result<ModelShape> {
    let architecture = config["architectures"][0].as_str().ok_or_else(|| anyhow!("config: no architectures entry"))?;
    let c = if config["text_config"].is_object() { &config["text_config"] } else { config };
    let family = match architecture {
        "LlamaForCausalLM" | "MistralForCausalLM" => Family::Llama,
        "Qwen2ForCausalLM" => Family::Qwen2,
        "Qwen3ForCausalLM" => Family::Qwen3,
        "Gemma3ForCausalLM" | "Gemma3ForConditionalGeneration" => Family::Gemma3,
        "Gemma4ForCausalLM" | "Gemma4ForConditionalGeneration" => Family::Gemma4,
        "Gemma3nForCausalLM" | "Gemma3nForConditionalGeneration" => Family::Gemma3n,
        other => bail!("config: cannot size architecture {other}"),
    };
    let n_embd = get(c, "hidden_size")?;
    check_sizes(c, "")?;
    let n_layer = get(c, "num_hidden_layers")?;
    if n_layer > MAX_LAYERS {
        bail!("config: num_hidden_layers is {n_layer}, more than {MAX_LAYERS}");
    }
    let n_vocab = get(c, "vocab_size")?;
    let n_head = get(c, "num_attention_heads")?;
    let layers = layer_shapes(c, family, n_layer, n_embd, n_head)?;
    let sliding_window = layers.iter().any(|l| l.sliding).then(|| get(c, "sliding_window")).transpose()?;
    let tied = c["tie_word_embeddings"].as_bool().or(config["tie_word_embeddings"].as_bool()).unwrap_or(family.ties_by_default());

    let mut t = Tensors::default();
    t.add("token_embd.weight", &[n_embd, n_vocab]);
    for (i, l) in layers.iter().enumerate() {
        family.layer_tensors(&mut t, c, i, l, n_embd)?;
    }
    t.add("output_norm.weight", &[n_embd]);
    if !tied {
        t.add("output.weight", &[n_embd, n_vocab]);
    }
    match family {
        Family::Gemma4 => gemma4_globals(&mut t, c, n_embd, n_layer, &layers)?,
        Family::Gemma3n => gemma3n_globals(&mut t, c, n_embd, n_layer)?,
        _ => {}
    }
    Ok(ModelShape { arch: family.arch().to_string(), n_embd, n_vocab, layers, sliding_window, tensors: t.0 })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Llama,
    Qwen2,
    Qwen3,
    Gemma3,
    Gemma3n,
    Gemma4,
}

impl Family {
    fn arch(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Qwen2 => "qwen2",
            Family::Qwen3 => "qwen3",
            Family::Gemma3 => "gemma3",
            Family::Gemma3n => "gemma3n",
            Family::Gemma4 => "gemma4",
        }
    }

    /// transformers' default for `tie_word_embeddings` in this family's config class.
    fn ties_by_default(self) -> bool {
        matches!(self, Family::Gemma3 | Family::Gemma3n | Family::Gemma4)
    }

    fn layer_tensors(self, t: &mut Tensors, c: &Json, i: usize, l: &LayerShape, n_embd: u64) -> Result<()> {
        let (q, kv) = (l.n_head * l.head_dim, l.n_head_kv * l.head_dim);
        let blk = |name: &str| format!("blk.{i}.{name}");
        t.add(&blk("attn_norm.weight"), &[n_embd]);
        t.add(&blk("attn_q.weight"), &[n_embd, q]);
        // Gemma 3n's KV-shared layers keep K and V weights they do not use.
        let kv_weights = l.has_kv || self == Family::Gemma3n;
        if kv_weights {
            t.add(&blk("attn_k.weight"), &[n_embd, kv]);
            if !(self == Family::Gemma4 && !l.sliding && c["attention_k_eq_v"].as_bool() == Some(true)) {
                t.add(&blk("attn_v.weight"), &[n_embd, kv]);
            }
        }
        t.add(&blk("attn_output.weight"), &[q, n_embd]);
        if self == Family::Qwen2 {
            t.add(&blk("attn_q.bias"), &[q]);
            t.add(&blk("attn_k.bias"), &[kv]);
            t.add(&blk("attn_v.bias"), &[kv]);
        }
        if matches!(self, Family::Qwen3 | Family::Gemma3 | Family::Gemma3n | Family::Gemma4) {
            t.add(&blk("attn_q_norm.weight"), &[l.head_dim]);
            if kv_weights {
                t.add(&blk("attn_k_norm.weight"), &[l.head_dim]);
            }
        }
        t.add(&blk("ffn_norm.weight"), &[n_embd]);
        t.add(&blk("ffn_gate.weight"), &[n_embd, l.n_ff]);
        t.add(&blk("ffn_up.weight"), &[n_embd, l.n_ff]);
        t.add(&blk("ffn_down.weight"), &[l.n_ff, n_embd]);
        if matches!(self, Family::Gemma3 | Family::Gemma3n | Family::Gemma4) {
            t.add(&blk("post_attention_norm.weight"), &[n_embd]);
            t.add(&blk("post_ffw_norm.weight"), &[n_embd]);
        }
        match self {
            Family::Gemma4 => gemma4_layer(t, c, i, n_embd)?,
            Family::Gemma3n => gemma3n_layer(t, c, i, n_embd)?,
            _ => {}
        }
        Ok(())
    }
}

/// Per-layer widths: head dims, KV heads and feed-forward widths per layer type, KV sharing.
fn layer_shapes(c: &Json, family: Family, n_layer: u64, n_embd: u64, n_head: u64) -> Result<Vec<LayerShape>> {
    let head_dim = c["head_dim"].as_u64().unwrap_or(n_embd / n_head.max(1));
    let n_head_kv = c["num_key_value_heads"].as_u64().unwrap_or(n_head);
    // One width for all layers, or (Gemma 3n) one per layer.
    let n_ff = |i: u64| -> Result<u64> {
        match c["intermediate_size"].as_array() {
            Some(widths) => widths.get(i as usize).and_then(Json::as_u64).ok_or_else(|| anyhow!("config: intermediate_size has no whole number for layer {i}")),
            None => get(c, "intermediate_size"),
        }
    };
    let sliding: Vec<bool> = match c["layer_types"].as_array() {
        Some(types) if types.len() as u64 == n_layer => types.iter().map(|t| t.as_str() == Some("sliding_attention")).collect(),
        Some(types) => bail!("config: layer_types has {} entries for {n_layer} layers", types.len()),
        // Gemma 3 without layer_types: five sliding layers, then a full one.
        None if family == Family::Gemma3 => {
            let period = c["sliding_window_pattern"].as_u64().unwrap_or(6).max(1);
            (0..n_layer).map(|i| (i + 1) % period != 0).collect()
        }
        None => vec![false; n_layer as usize],
    };
    let shared = c["num_kv_shared_layers"].as_u64().unwrap_or(0);
    let first_shared = n_layer.saturating_sub(shared);
    let double_wide = c["use_double_wide_mlp"].as_bool() == Some(true);
    (0..n_layer)
        .map(|i| {
            let swa = sliding[i as usize];
            let full_gemma4 = family == Family::Gemma4 && !swa;
            Ok(LayerShape {
                n_head,
                n_head_kv: if full_gemma4 { full_layer_value(c, "num_global_key_value_heads", "num_key_value_heads").unwrap_or(n_head_kv) } else { n_head_kv },
                head_dim: if full_gemma4 { full_layer_value(c, "global_head_dim", "head_dim").unwrap_or(head_dim) } else { head_dim },
                n_ff: if double_wide && i >= first_shared { 2 * n_ff(i)? } else { n_ff(i)? },
                sliding: swa,
                has_kv: i < first_shared,
            })
        })
        .collect()
}

/// Gemma 4's per-layer embedding inputs, output scale, and mixture-of-experts block.
fn gemma4_layer(t: &mut Tensors, c: &Json, i: usize, n_embd: u64) -> Result<()> {
    let blk = |name: &str| format!("blk.{i}.{name}");
    t.add(&blk("layer_output_scale.weight"), &[1]);
    let ple = c["hidden_size_per_layer_input"].as_u64().unwrap_or(0);
    if ple > 0 {
        t.add(&blk("inp_gate.weight"), &[n_embd, ple]);
        t.add(&blk("proj.weight"), &[ple, n_embd]);
        t.add(&blk("post_norm.weight"), &[n_embd]);
    }
    if c["enable_moe_block"].as_bool() == Some(true) {
        let n_expert = get(c, "num_experts")?;
        let n_ff_exp = c["moe_intermediate_size"].as_u64().or(c["expert_intermediate_size"].as_u64()).ok_or_else(|| anyhow!("config: moe_intermediate_size is missing"))?;
        t.add(&blk("ffn_gate_inp.weight"), &[n_embd, n_expert]);
        t.add(&blk("ffn_gate_inp.scale"), &[n_embd]);
        t.add(&blk("ffn_down_exps.scale"), &[n_expert]);
        t.add(&blk("ffn_gate_up_exps.weight"), &[n_embd, 2 * n_ff_exp, n_expert]);
        t.add(&blk("ffn_down_exps.weight"), &[n_ff_exp, n_embd, n_expert]);
        for norm in ["pre_ffw_norm_2", "post_ffw_norm_1", "post_ffw_norm_2"] {
            t.add(&blk(&format!("{norm}.weight")), &[n_embd]);
        }
    }
    Ok(())
}

/// Gemma 3n's per-layer AltUp, LAuReL and per-layer embedding inputs.
fn gemma3n_layer(t: &mut Tensors, c: &Json, i: usize, n_embd: u64) -> Result<()> {
    let blk = |name: &str| format!("blk.{i}.{name}");
    let (altup, rank, ple) = (get(c, "altup_num_inputs")?, get(c, "laurel_rank")?, get(c, "hidden_size_per_layer_input")?);
    t.add(&blk("altup_correct_scale.weight"), &[n_embd]);
    t.add(&blk("altup_correct_coef.weight"), &[altup, altup]);
    t.add(&blk("altup_router.weight"), &[n_embd, altup]);
    t.add(&blk("altup_predict_coef.weight"), &[altup, altup * altup]);
    t.add(&blk("altup_router_norm.weight"), &[n_embd]);
    t.add(&blk("laurel_l.weight"), &[n_embd, rank]);
    t.add(&blk("laurel_r.weight"), &[rank, n_embd]);
    t.add(&blk("laurel_post_norm.weight"), &[n_embd]);
    t.add(&blk("inp_gate.weight"), &[n_embd, ple]);
    t.add(&blk("proj.weight"), &[ple, n_embd]);
    t.add(&blk("post_norm.weight"), &[n_embd]);
    Ok(())
}

/// Gemma 3n's model-wide tensors: the AltUp projections (stacked) and the PLE table, whose
/// rows the converter pads to `vocab_size`.
fn gemma3n_globals(t: &mut Tensors, c: &Json, n_embd: u64, n_layer: u64) -> Result<()> {
    let (altup, ple) = (get(c, "altup_num_inputs")?, get(c, "hidden_size_per_layer_input")?);
    t.add("altup_proj.weight", &[n_embd, n_embd, altup.saturating_sub(1)]);
    t.add("altup_unembd_proj.weight", &[n_embd, n_embd, altup.saturating_sub(1)]);
    t.add("per_layer_token_embd.weight", &[ple * n_layer, get(c, "vocab_size")?]);
    t.add("per_layer_model_proj.weight", &[n_embd, ple * n_layer]);
    t.add("per_layer_proj_norm.weight", &[ple]);
    Ok(())
}

/// Gemma 4's model-wide tensors: the PLE table and its projection, and the proportional-RoPE
/// frequency factors of the full layers.
fn gemma4_globals(t: &mut Tensors, c: &Json, n_embd: u64, n_layer: u64, layers: &[LayerShape]) -> Result<()> {
    let ple = c["hidden_size_per_layer_input"].as_u64().unwrap_or(0);
    if ple > 0 {
        let ple_vocab = c["vocab_size_per_layer_input"].as_u64().unwrap_or(get(c, "vocab_size")?);
        t.add("per_layer_token_embd.weight", &[ple * n_layer, ple_vocab]);
        t.add("per_layer_model_proj.weight", &[n_embd, ple * n_layer]);
        t.add("per_layer_proj_norm.weight", &[ple]);
    }
    if let Some(full) = layers.iter().find(|l| !l.sliding) {
        t.add("rope_freqs.weight", &[full.head_dim / 2]);
    }
    Ok(())
}

/// The shape of a GGUF model, from its metadata as llama.cpp's loader reads it, and its tensors.
pub fn gguf_shape(file: &GgufFile) -> Result<ModelShape> {
    let tensors = file.tensors.iter().map(|t| TensorSpec { name: t.name.clone(), shape: t.shape.clone() }).collect();
    shape_from_metadata(&file.metadata, tensors)
}

/// The shape of a model from GGUF metadata (a file's, or the metadata `convert` plans to
/// write) and its tensors.
pub fn shape_from_metadata(metadata: &[(String, Value)], tensors: Vec<TensorSpec>) -> Result<ModelShape> {
    let get = |key: &str| metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v);
    let arch = get("general.architecture").and_then(Value::as_str).ok_or_else(|| anyhow!("no general.architecture"))?.to_string();
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
    let n_head = per_layer("attention.head_count", 0).ok_or_else(|| anyhow!("{arch}.attention.head_count is missing"))?;
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
    let first_shared = n_layer - key("attention.shared_kv_layers").and_then(Value::as_u64).unwrap_or(0).min(n_layer);
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
    let n_vocab = tensors.iter().find(|t| t.name == "token_embd.weight").and_then(|t| t.shape.get(1).copied()).unwrap_or(0);
    Ok(ModelShape {
        sliding_window: key("attention.sliding_window").and_then(Value::as_u64),
        arch: arch.clone(),
        n_embd,
        n_vocab,
        layers,
        tensors,
    })
}

#[derive(Default)]
struct Tensors(Vec<TensorSpec>);

impl Tensors {
    fn add(&mut self, name: &str, shape: &[u64]) {
        self.0.push(TensorSpec { name: name.to_string(), shape: shape.to_vec() });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_shapes_and_kv() {
        let c = serde_json::json!({"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_hidden_layers": 2,
            "vocab_size": 100, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 96});
        let s = model_shape(&c).unwrap();
        assert_eq!(s.tensors.len(), 1 + 2 * 9 + 2);
        assert!(s.tensors.iter().any(|t| t.name == "blk.1.attn_k.weight" && t.shape == [64, 32]));
        // 2 layers × (K + V) × 2 heads × 16 dims × 10 tokens × 2 bytes
        assert_eq!(s.kv_cache_bytes(10, 512, 2.0), 2 * 2 * 2 * 16 * 10 * 2);
    }

    /// Found by fuzzing (fuzz/fuzz_targets/config.rs): 2^60 layers allocated a layer table
    /// before anything else was checked; a head_dim of 2^64-1 overflowed `n_head * head_dim`.
    #[test]
    fn hostile_sizes_are_errors_not_allocations_or_overflows() {
        let c = |extra: serde_json::Value| {
            let mut c = serde_json::json!({"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_hidden_layers": 2,
                "vocab_size": 100, "num_attention_heads": 4, "intermediate_size": 96});
            c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            c
        };
        let err = |extra| model_shape(&c(extra)).unwrap_err().to_string();
        assert!(err(serde_json::json!({"num_hidden_layers": 1u64 << 60})).contains("more than"));
        assert!(err(serde_json::json!({"num_hidden_layers": 4097})).contains("num_hidden_layers is 4097, more than 4096"));
        assert!(err(serde_json::json!({"head_dim": u64::MAX})).contains("head_dim is 18446744073709551615"));
        assert!(err(serde_json::json!({"rope_scaling": {"factor": [1, 1u64 << 33]}})).contains("rope_scaling.factor[1]"));
        // The largest sizes allowed multiply without overflow; the KV cache saturates.
        let s = model_shape(&c(serde_json::json!({"head_dim": u32::MAX, "num_attention_heads": u32::MAX, "num_key_value_heads": u32::MAX}))).unwrap();
        assert_eq!(s.kv_cache_bytes(u64::MAX, u64::MAX, 2.0), u64::MAX);
    }

    #[test]
    fn gguf_metadata_claiming_2_60_layers_is_an_error() {
        let meta = vec![
            ("general.architecture".to_string(), Value::String("llama".into())),
            ("llama.block_count".to_string(), Value::U64(1 << 60)),
            ("llama.embedding_length".to_string(), Value::U32(64)),
            ("llama.attention.head_count".to_string(), Value::U32(4)),
        ];
        assert!(shape_from_metadata(&meta, Vec::new()).unwrap_err().to_string().contains("llama.block_count is 1152921504606846976, more than 4096"));
    }

    #[test]
    fn unknown_architecture_is_an_error() {
        let c = serde_json::json!({"architectures": ["GPT2LMHeadModel"]});
        assert!(model_shape(&c).unwrap_err().to_string().contains("GPT2LMHeadModel"));
    }
}
