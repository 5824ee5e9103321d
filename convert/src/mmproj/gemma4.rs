//! Gemma 4's vision tower and its projector into the text model: llama.cpp's projector type
//! `gemma4v` (`Gemma4VisionAudioModel` in llama.cpp's conversion/gemma.py). The tower is a
//! pre- and post-normed transformer with Q/K norms and a gated feed-forward block over 16-pixel
//! patches with a two-axis position table; `embed_vision` projects its pooled output into the
//! text model's width. Gemma 4's audio tower is not converted yet.

use anyhow::Result;
use serde_json::Value as Json;
use strata_gguf::{TensorSpec, Value};
use strata_quantize::GgmlType;

use super::{Towers, VisionKeys};
use crate::arch::{Config, Mapped, Transform};

pub struct Gemma4Vision {
    keys: VisionKeys,
    head_dim: u64,
    /// Positions per axis in the position table.
    n_positions: u64,
    /// The linears carry their clipping bounds (`use_clipped_linears`).
    clipped: bool,
    /// The tower standardizes its output (`standardize`: `std_bias`, `std_scale`).
    standardize: bool,
    /// The checkpoint has an audio tower (E2B, E4B), which the file leaves out.
    has_audio: bool,
}

impl Gemma4Vision {
    /// Gemma4VisionConfig's defaults for the keys `vision_config` leaves out.
    pub fn boxed(config: &Json, preprocessor: &Json) -> Result<Box<dyn Towers>> {
        let keys = VisionKeys::read(config, preprocessor, "Gemma4ForConditionalGeneration", 16, None)?;
        let v = Config::new(&config["vision_config"])?;
        Ok(Box::new(Gemma4Vision {
            head_dim: v.u64_or("head_dim", 64)?,
            n_positions: v.u64_or("position_embedding_size", 10 * 1024)?,
            clipped: v.bool_or("use_clipped_linears", false)?,
            standardize: v.bool_or("standardize", false)?,
            has_audio: config["audio_config"].is_object(),
            keys,
        }))
    }
}

/// A layer's checkpoint names (after `encoder.layers.N.`, `.linear` and `.weight` dropped) and
/// their GGUF names.
const LAYER: &[(&str, &str)] = &[
    ("input_layernorm", "ln1"),
    ("post_attention_layernorm", "attn_post_norm"),
    ("pre_feedforward_layernorm", "ln2"),
    ("post_feedforward_layernorm", "ffn_post_norm"),
    ("self_attn.q_proj", "attn_q"),
    ("self_attn.k_proj", "attn_k"),
    ("self_attn.v_proj", "attn_v"),
    ("self_attn.o_proj", "attn_out"),
    ("self_attn.q_norm", "attn_q_norm"),
    ("self_attn.k_norm", "attn_k_norm"),
    ("mlp.gate_proj", "ffn_gate"),
    ("mlp.up_proj", "ffn_up"),
    ("mlp.down_proj", "ffn_down"),
];

/// The linears' clipping bounds, each a scalar stored as one value.
const BOUNDS: &[&str] = &["input_max", "input_min", "output_max", "output_min"];

/// The linears, which carry bounds when clipped.
const LINEARS: &[&str] = &["attn_q", "attn_k", "attn_v", "attn_out", "ffn_gate", "ffn_up", "ffn_down"];

impl Towers for Gemma4Vision {
    fn metadata(&self) -> Result<Vec<(String, Value)>> {
        let mut m = Vec::new();
        self.keys.write(&mut m)?;
        m.push(("clip.vision.projector_type".into(), Value::String("gemma4v".into())));
        // llama.cpp's converter reads `layer_norm_eps`, which Gemma 4's config does not have.
        m.push(("clip.vision.attention.layer_norm_epsilon".into(), Value::F32(1e-6)));
        Ok(m)
    }

    fn tensors(&self) -> Vec<TensorSpec> {
        let k = &self.keys;
        let (h, ff, p) = (k.n_embd, k.n_ff, k.patch_size);
        let mut t = vec![
            TensorSpec::named("v.patch_embd.weight", vec![p, p, 3, h]),
            TensorSpec::named("v.position_embd.weight", vec![h, self.n_positions, 2]),
        ];
        if self.standardize {
            t.push(TensorSpec::named("v.std_bias", vec![h]));
            t.push(TensorSpec::named("v.std_scale", vec![h]));
        }
        for i in 0..k.n_layer {
            let mut add = |name: &str, shape: Vec<u64>| t.push(TensorSpec::named(format!("v.blk.{i}.{name}"), shape));
            for norm in ["ln1", "attn_post_norm", "ln2", "ffn_post_norm"] {
                add(&format!("{norm}.weight"), vec![h]);
            }
            for attn in ["attn_q", "attn_k", "attn_v", "attn_out"] {
                add(&format!("{attn}.weight"), vec![h, h]);
            }
            add("attn_q_norm.weight", vec![self.head_dim]);
            add("attn_k_norm.weight", vec![self.head_dim]);
            add("ffn_gate.weight", vec![h, ff]);
            add("ffn_up.weight", vec![h, ff]);
            add("ffn_down.weight", vec![ff, h]);
            if self.clipped {
                for linear in LINEARS {
                    for bound in BOUNDS {
                        add(&format!("{linear}.{bound}"), vec![1]);
                    }
                }
            }
        }
        t.push(TensorSpec::named("mm.input_projection.weight", vec![h, k.projection_dim]));
        t
    }

    fn map(&self, hf: &str) -> Option<Mapped> {
        let copy = |name: &str| Some(Mapped::whole(name.to_string(), Transform::Copy));
        match hf {
            "model.embed_vision.embedding_projection.weight" => return copy("mm.input_projection.weight"),
            "model.vision_tower.patch_embedder.position_embedding_table" => return copy("v.position_embd.weight"),
            "model.vision_tower.std_bias" => return copy("v.std_bias"),
            "model.vision_tower.std_scale" => return copy("v.std_scale"),
            "model.vision_tower.patch_embedder.input_proj.weight" => {
                let side = self.keys.patch_size as usize;
                return Some(Mapped::whole("v.patch_embd.weight".into(), Transform::PatchesChannelsFirst { side }));
            }
            _ => {}
        }
        let rest = hf.strip_prefix("model.vision_tower.encoder.layers.")?;
        let (layer, tail) = rest.split_once('.')?;
        let layer: u64 = layer.parse().ok()?;
        let (stem, suffix) = match tail.rsplit_once(".linear.") {
            Some((stem, suffix)) => (stem, suffix),
            None => tail.strip_suffix(".weight").map_or((tail, "weight"), |stem| (stem, "weight")),
        };
        let (_, g) = LAYER.iter().find(|(h, _)| *h == stem)?;
        if suffix != "weight" && !BOUNDS.contains(&suffix) {
            return None;
        }
        copy(&format!("v.blk.{layer}.{g}.{suffix}"))
    }

    fn left_out(&self) -> Option<&'static str> {
        self.has_audio.then_some("Gemma 4's audio tower")
    }

    fn forced_type(&self, gguf_name: &str, base: GgmlType) -> Option<(GgmlType, &'static str)> {
        match gguf_name {
            "v.position_embd.weight" => Some((
                GgmlType::F32,
                "the position table stays F32 (llama.cpp's converter: positions are added, not multiplied)",
            )),
            "v.patch_embd.weight" => Some((
                if base == GgmlType::F16 { GgmlType::F16 } else { GgmlType::F32 },
                "the patch embedding is F16 in an F16 file, F32 otherwise (llama.cpp's converter)",
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemma4_names() {
        let config = serde_json::json!({"vision_config": {"use_clipped_linears": true}, "text_config": {}});
        let pre = serde_json::json!({"image_mean": [0.0, 0.0, 0.0], "image_std": [1.0, 1.0, 1.0]});
        let towers = Gemma4Vision::boxed(&config, &pre).unwrap();
        let name = |hf: &str| towers.map(hf).map(|m| m.gguf_name);
        let layer = "model.vision_tower.encoder.layers.2.";
        assert_eq!(name(&format!("{layer}mlp.down_proj.linear.weight")).as_deref(), Some("v.blk.2.ffn_down.weight"));
        assert_eq!(
            name(&format!("{layer}self_attn.q_proj.linear.input_max")).as_deref(),
            Some("v.blk.2.attn_q.input_max")
        );
        assert_eq!(name(&format!("{layer}self_attn.k_norm.weight")).as_deref(), Some("v.blk.2.attn_k_norm.weight"));
        assert_eq!(name("model.language_model.layers.0.mlp.up_proj.weight"), None);
        assert_eq!(name("model.audio_tower.layers.0.mlp.up_proj.weight"), None);
    }
}
