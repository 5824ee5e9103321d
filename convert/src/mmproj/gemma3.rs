//! Gemma 3's towers: a SigLIP vision encoder and Gemma 3's projector (an average pool of the
//! patch grid, an RMS norm, a matrix into the text model's width), llama.cpp's projector type
//! `gemma3` (`Gemma3VisionModel` in llama.cpp's conversion/gemma.py).
//!
//! Three layouts name the same tensors: `vision_tower.vision_model.*` (most checkpoints on the
//! Hub, and the one llama.cpp's converter reads), `model.vision_tower.vision_model.*`
//! (transformers 4.52 to 4.57) and `vision_tower.*` (what transformers 5 saves); the projector is
//! `multi_modal_projector.*`, or `model.multi_modal_projector.*`.

use anyhow::{bail, Result};
use serde_json::Value as Json;
use strata_gguf::{TensorSpec, Value};
use strata_quantize::GgmlType;

use super::{Towers, VisionKeys};
use crate::arch::{Config, Mapped, Transform};

/// The patch grid's side after the projector's pooling when the preprocessor does not say
/// (`image_seq_length` 256: a 16 x 16 grid), and the pooling llama.cpp assumes unless told.
const IMAGE_SEQ_LENGTH: u64 = 256;
const DEFAULT_SCALE_FACTOR: u64 = 4;

pub struct Gemma3Vision {
    keys: VisionKeys,
    eps: f64,
    /// How many patches per side the projector pools into one token.
    scale_factor: u64,
}

impl Gemma3Vision {
    /// SiglipVisionConfig's defaults for the keys config.json's `vision_config` leaves out.
    pub fn boxed(config: &Json, preprocessor: &Json) -> Result<Box<dyn Towers>> {
        let keys = VisionKeys::read(config, preprocessor, "Gemma3ForConditionalGeneration", 12, Some(224))?;
        let vision = Config::new(&config["vision_config"])?;
        let tokens = Config(preprocessor).u64_or("image_seq_length", IMAGE_SEQ_LENGTH)?;
        let per_side = (tokens as f64).sqrt() as u64;
        if per_side == 0 {
            bail!("preprocessor_config.json: image_seq_length is {tokens}: an image must be at least one token");
        }
        let scale_factor = keys.image_size / keys.patch_size / per_side;
        Ok(Box::new(Gemma3Vision { eps: vision.f64_or("layer_norm_eps", 1e-6)?, scale_factor, keys }))
    }

    fn patches_per_side(&self) -> u64 {
        self.keys.image_size / self.keys.patch_size
    }
}

/// SigLIP's names within a layer and their GGUF names.
const LAYER: &[(&str, &str)] = &[
    ("layer_norm1", "ln1"),
    ("layer_norm2", "ln2"),
    ("self_attn.q_proj", "attn_q"),
    ("self_attn.k_proj", "attn_k"),
    ("self_attn.v_proj", "attn_v"),
    ("self_attn.out_proj", "attn_out"),
    ("mlp.fc1", "ffn_up"),
    ("mlp.fc2", "ffn_down"),
];

/// SigLIP's names outside the layers.
const GLOBAL: &[(&str, &str)] = &[
    ("embeddings.patch_embedding", "v.patch_embd"),
    ("embeddings.position_embedding", "v.position_embd"),
    ("post_layernorm", "v.post_ln"),
];

/// The tower's part of a checkpoint name, in any of the three layouts.
fn tower_name(hf: &str) -> Option<&str> {
    let hf = hf.strip_prefix("model.").unwrap_or(hf);
    let rest = hf.strip_prefix("vision_tower.")?;
    Some(rest.strip_prefix("vision_model.").unwrap_or(rest))
}

impl Towers for Gemma3Vision {
    fn metadata(&self) -> Result<Vec<(String, Value)>> {
        let mut m = Vec::new();
        self.keys.write(&mut m)?;
        m.push(("clip.projector_type".into(), Value::String("gemma3".into())));
        m.push(("clip.vision.attention.layer_norm_epsilon".into(), Value::F32(self.eps as f32)));
        m.push(("clip.use_gelu".into(), Value::Bool(true)));
        // llama.cpp writes the pooling only where it is not its default (test models).
        if self.scale_factor > 0 && self.scale_factor != DEFAULT_SCALE_FACTOR {
            let factor = u32::try_from(self.scale_factor).unwrap_or(u32::MAX);
            m.push(("clip.vision.projector.scale_factor".into(), Value::U32(factor)));
        }
        Ok(m)
    }

    fn tensors(&self) -> Vec<TensorSpec> {
        let k = &self.keys;
        let (h, ff) = (k.n_embd, k.n_ff);
        let mut t = vec![
            TensorSpec::named("v.patch_embd.weight", vec![k.patch_size, k.patch_size, 3, h]),
            TensorSpec::named("v.patch_embd.bias", vec![h]),
            TensorSpec::named("v.position_embd.weight", vec![h, self.patches_per_side().pow(2)]),
        ];
        for i in 0..k.n_layer {
            let mut add = |name: &str, shape: Vec<u64>| t.push(TensorSpec::named(format!("v.blk.{i}.{name}"), shape));
            for norm in ["ln1", "ln2"] {
                add(&format!("{norm}.weight"), vec![h]);
                add(&format!("{norm}.bias"), vec![h]);
            }
            for attn in ["attn_q", "attn_k", "attn_v", "attn_out"] {
                add(&format!("{attn}.weight"), vec![h, h]);
                add(&format!("{attn}.bias"), vec![h]);
            }
            add("ffn_up.weight", vec![h, ff]);
            add("ffn_up.bias", vec![ff]);
            add("ffn_down.weight", vec![ff, h]);
            add("ffn_down.bias", vec![h]);
        }
        t.push(TensorSpec::named("v.post_ln.weight", vec![h]));
        t.push(TensorSpec::named("v.post_ln.bias", vec![h]));
        t.push(TensorSpec::named("mm.input_projection.weight", vec![k.projection_dim, h]));
        t.push(TensorSpec::named("mm.soft_emb_norm.weight", vec![h]));
        t
    }

    fn map(&self, hf: &str) -> Option<Mapped> {
        let projector = hf.strip_prefix("model.").unwrap_or(hf).strip_prefix("multi_modal_projector.");
        match projector {
            Some("mm_input_projection_weight") => {
                return Some(Mapped::whole("mm.input_projection.weight".into(), Transform::Copy))
            }
            // Gemma's RMS norm scales by 1 + weight; llama.cpp stores the sum.
            Some("mm_soft_emb_norm.weight") => {
                return Some(Mapped::whole("mm.soft_emb_norm.weight".into(), Transform::AddOne))
            }
            Some(_) => return None,
            None => {}
        }
        let rest = tower_name(hf)?;
        let (stem, suffix) = rest.rsplit_once('.')?;
        if !matches!(suffix, "weight" | "bias") {
            return None;
        }
        if let Some((_, g)) = GLOBAL.iter().find(|(h, _)| *h == stem) {
            return Some(Mapped::whole(format!("{g}.{suffix}"), Transform::Copy));
        }
        let (layer, tail) = stem.strip_prefix("encoder.layers.")?.split_once('.')?;
        let layer: u64 = layer.parse().ok()?;
        let (_, g) = LAYER.iter().find(|(h, _)| *h == tail)?;
        Some(Mapped::whole(format!("v.blk.{layer}.{g}.{suffix}"), Transform::Copy))
    }

    fn forced_type(&self, gguf_name: &str, _base: GgmlType) -> Option<(GgmlType, &'static str)> {
        match gguf_name {
            "v.patch_embd.weight" | "v.position_embd.weight" => Some((
                GgmlType::F32,
                "the patch and position embeddings stay F32 (llama.cpp's converter: each patch is one small product, and positions are added, not multiplied)",
            )),
            "mm.input_projection.weight" => Some((
                GgmlType::F16,
                "Gemma 3's input projection is written F16 whatever the type (llama.cpp's converter; quantized, its images came out wrong: llama.cpp issue 13025)",
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_layouts_name_the_same_tensors() {
        let config = serde_json::json!({"vision_config": {}, "text_config": {}});
        let pre = serde_json::json!({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]});
        let towers = Gemma3Vision::boxed(&config, &pre).unwrap();
        for hf in [
            "vision_tower.vision_model.encoder.layers.3.mlp.fc1.weight",
            "model.vision_tower.vision_model.encoder.layers.3.mlp.fc1.weight",
            "vision_tower.encoder.layers.3.mlp.fc1.weight",
        ] {
            assert_eq!(towers.map(hf).map(|m| m.gguf_name).as_deref(), Some("v.blk.3.ffn_up.weight"), "{hf}");
        }
        assert_eq!(
            towers.map("model.multi_modal_projector.mm_soft_emb_norm.weight"),
            Some(Mapped::whole("mm.soft_emb_norm.weight".into(), Transform::AddOne))
        );
        assert_eq!(towers.map("language_model.model.layers.0.mlp.up_proj.weight"), None);
        assert_eq!(towers.map("vision_tower.vision_model.head.mlp.fc1.weight"), None);
    }

    #[test]
    fn an_image_without_patches_is_an_error() {
        let pre = serde_json::json!({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]});
        let config = serde_json::json!({"vision_config": {"patch_size": 0}, "text_config": {}});
        let err = Gemma3Vision::boxed(&config, &pre).err().unwrap().to_string();
        assert_eq!(err, "config.json: vision_config's image_size 224 holds no patch of patch_size 0");
        let config = serde_json::json!({"vision_config": {}, "text_config": {}});
        let err = Gemma3Vision::boxed(&config, &serde_json::json!({"image_mean": [0.5], "image_std": []}))
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("preprocessor_config.json: image_mean is [0.5], not three numbers"), "{err}");
    }
}
