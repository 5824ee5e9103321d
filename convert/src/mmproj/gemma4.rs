//! Gemma 4's vision and audio towers and their projectors into the text model: llama.cpp's
//! projector types `gemma4v` and `gemma4a` (`Gemma4VisionAudioModel` in llama.cpp's
//! conversion/gemma.py). The vision tower is a pre- and post-normed transformer with Q/K norms
//! and a gated feed-forward block over 16-pixel patches with a two-axis position table;
//! `embed_vision` projects its pooled output into the text model's width. The audio tower (E2B,
//! E4B) is a conformer over mel frames: two strided convolutions, then per layer two half-step
//! feed-forward blocks around attention with a relative position projection and a light
//! convolution block; `embed_audio` projects its output.

use anyhow::{bail, Result};
use serde_json::Value as Json;
use strata_gguf::{TensorSpec, Value};
use strata_quantize::GgmlType;

use super::{u32_key, Towers, VisionKeys};
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
    /// The audio tower, when the checkpoint has one (E2B, E4B).
    audio: Option<Audio>,
}

/// The audio tower's widths (Gemma4AudioConfig).
struct Audio {
    n_embd: u64,
    n_layer: u64,
    n_head: u64,
    /// The two subsampling convolutions' output channels.
    channels: [u64; 2],
    conv_kernel: u64,
    output_dims: u64,
    /// Mel bins per frame (llama.cpp's converter reads `input_feat_size`, 128 by default).
    n_mel: u64,
    eps: f64,
}

impl Audio {
    /// Gemma4AudioConfig's defaults for the keys `audio_config` leaves out.
    fn read(config: &Json) -> Result<Option<Audio>> {
        if !config["audio_config"].is_object() {
            return Ok(None);
        }
        let a = Config::new(&config["audio_config"])?;
        let channels =
            match a.0["subsampling_conv_channels"].as_array().map(|c| c.iter().map(Json::as_u64).collect::<Vec<_>>()) {
                None => [128, 32],
                Some(c) => match c[..] {
                    [Some(a), Some(b)] => [a, b],
                    _ => bail!("config.json: audio_config.subsampling_conv_channels is not two whole numbers"),
                },
            };
        let audio = Audio {
            n_embd: a.u64_or("hidden_size", 1024)?,
            n_layer: a.u64_or("num_hidden_layers", 12)?,
            n_head: a.u64_or("num_attention_heads", 8)?,
            channels,
            conv_kernel: a.u64_or("conv_kernel_size", 5)?,
            output_dims: a.u64_or("output_proj_dims", 1536)?,
            n_mel: a.u64_or("input_feat_size", 128)?,
            eps: a.f64_or("layer_norm_eps", 1e-6)?,
        };
        // transformers sizes the projection after the convolutions as (channels[0] / 4) x
        // channels[1], llama.cpp's graph feeds it (mel bins / 4) x channels[1] values: another
        // file would stop llama.cpp on an assertion.
        if audio.channels[0] != audio.n_mel {
            bail!(
                "config.json: audio_config.subsampling_conv_channels[0] is {}, not the {} mel bins, which llama.cpp's audio graph assumes",
                audio.channels[0],
                audio.n_mel
            );
        }
        if audio.n_head == 0 || !audio.n_embd.is_multiple_of(audio.n_head) {
            bail!(
                "config.json: audio_config's hidden_size {} does not split into {} heads",
                audio.n_embd,
                audio.n_head
            );
        }
        Ok(Some(audio))
    }
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
            audio: Audio::read(config)?,
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
        if let Some(a) = &self.audio {
            m.push(("clip.has_audio_encoder".into(), Value::Bool(true)));
            m.push(u32_key("clip.audio.projection_dim", self.keys.projection_dim)?);
            m.push(u32_key("clip.audio.embedding_length", a.n_embd)?);
            m.push(u32_key("clip.audio.feed_forward_length", 4 * a.n_embd)?);
            m.push(u32_key("clip.audio.block_count", a.n_layer)?);
            m.push(u32_key("clip.audio.attention.head_count", a.n_head)?);
            m.push(("clip.audio.projector_type".into(), Value::String("gemma4a".into())));
            m.push(u32_key("clip.audio.num_mel_bins", a.n_mel)?);
            m.push(("clip.audio.attention.layer_norm_epsilon".into(), Value::F32(a.eps as f32)));
        }
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
        if let Some(a) = &self.audio {
            audio_tensors(&mut t, a, k.projection_dim);
        }
        t
    }

    fn map(&self, hf: &str) -> Option<Mapped> {
        if let Some(rest) = hf.strip_prefix("model.audio_tower.") {
            return self.audio.as_ref().and(audio_name(rest));
        }
        let copy = |name: &str| Some(Mapped::whole(name.to_string(), Transform::Copy));
        match hf {
            "model.embed_vision.embedding_projection.weight" => return copy("mm.input_projection.weight"),
            "model.embed_audio.embedding_projection.weight" if self.audio.is_some() => {
                return copy("mm.a.input_projection.weight")
            }
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
        // `q_proj.linear.weight`, a clipped linear's `q_proj.input_max` (a scalar beside its
        // `linear`), or a norm's `input_layernorm.weight`.
        let (stem, suffix) = match (tail.rsplit_once(".linear."), tail.rsplit_once('.')) {
            (Some((stem, "weight")), _) => (stem, "weight"),
            (None, Some((stem, bound))) if BOUNDS.contains(&bound) => (stem, bound),
            (None, Some((stem, "weight"))) => (stem, "weight"),
            _ => return None,
        };
        let (_, g) = LAYER.iter().find(|(h, _)| *h == stem)?;
        copy(&format!("v.blk.{layer}.{g}.{suffix}"))
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
            "a.input_projection.weight" => Some((GgmlType::F32, AUDIO_CONV)),
            n if n.starts_with("a.conv1d.") || n.ends_with(".conv_dw.weight") => Some((GgmlType::F32, AUDIO_CONV)),
            _ => None,
        }
    }
}

/// Why the audio tower's convolutions stay F32.
const AUDIO_CONV: &str =
    "the audio tower's convolutions (and the projection after them) stay F32 (llama.cpp's converter)";

/// A conformer layer's checkpoint names (after `layers.N.`, `.linear` dropped) and GGUF names.
const AUDIO_LAYER: &[(&str, &str)] = &[
    ("feed_forward1.ffw_layer_1", "ffn_up"),
    ("feed_forward1.ffw_layer_2", "ffn_down"),
    ("feed_forward1.pre_layer_norm", "ffn_norm"),
    ("feed_forward1.post_layer_norm", "ffn_post_norm"),
    ("feed_forward2.ffw_layer_1", "ffn_up_1"),
    ("feed_forward2.ffw_layer_2", "ffn_down_1"),
    ("feed_forward2.pre_layer_norm", "ffn_norm_1"),
    ("feed_forward2.post_layer_norm", "ffn_post_norm_1"),
    ("lconv1d.conv_norm", "norm_conv"),
    ("lconv1d.pre_layer_norm", "conv_norm"),
    ("lconv1d.depthwise_conv1d", "conv_dw"),
    ("lconv1d.linear_start", "conv_pw1"),
    ("lconv1d.linear_end", "conv_pw2"),
    ("norm_out", "ln2"),
    ("norm_post_attn", "attn_post_norm"),
    ("norm_pre_attn", "attn_pre_norm"),
    ("self_attn.q_proj", "attn_q"),
    ("self_attn.k_proj", "attn_k"),
    ("self_attn.v_proj", "attn_v"),
    ("self_attn.post", "attn_out"),
    ("self_attn.relative_k_proj", "attn_k_rel"),
];

/// The conformer's clipped linears.
const AUDIO_LINEARS: &[&str] =
    &["ffn_up", "ffn_down", "ffn_up_1", "ffn_down_1", "conv_pw1", "conv_pw2", "attn_q", "attn_k", "attn_v", "attn_out"];

/// The GGUF name of an audio tower tensor (its name after `model.audio_tower.`).
fn audio_name(rest: &str) -> Option<Mapped> {
    let copy = |name: String| Some(Mapped::whole(name, Transform::Copy));
    match rest {
        "output_proj.weight" => return copy("a.pre_encode.out.weight".into()),
        "output_proj.bias" => return copy("a.pre_encode.out.bias".into()),
        "subsample_conv_projection.input_proj_linear.weight" => return copy("a.input_projection.weight".into()),
        _ => {}
    }
    if let Some(conv) = rest.strip_prefix("subsample_conv_projection.layer") {
        let (i, tail) = conv.split_once('.')?;
        let i: u8 = i.parse().ok()?;
        return match tail {
            "conv.weight" => copy(format!("a.conv1d.{i}.weight")),
            "norm.weight" => copy(format!("a.conv1d.{i}.norm.weight")),
            _ => None,
        };
    }
    let (layer, tail) = rest.strip_prefix("layers.")?.split_once('.')?;
    let layer: u64 = layer.parse().ok()?;
    // The attention's per-dimension scale: llama.cpp stores its softplus.
    if tail == "self_attn.per_dim_scale" {
        return Some(Mapped::whole(format!("a.blk.{layer}.per_dim_scale.weight"), Transform::Softplus));
    }
    let (stem, suffix) = match tail.rsplit_once(".linear.") {
        Some(split) => split,
        None => match tail.rsplit_once('.') {
            Some((stem, bound)) if BOUNDS.contains(&bound) => (stem, bound),
            _ => (tail.strip_suffix(".weight")?, "weight"),
        },
    };
    let (_, g) = AUDIO_LAYER.iter().find(|(h, _)| *h == stem)?;
    copy(format!("a.blk.{layer}.{g}.{suffix}"))
}

/// Every tensor of the audio tower and its projector, for a text model `text_width` wide.
fn audio_tensors(t: &mut Vec<TensorSpec>, a: &Audio, text_width: u64) {
    let (h, [c0, c1], k) = (a.n_embd, a.channels, a.conv_kernel);
    t.push(TensorSpec::named("a.conv1d.0.weight", vec![3, 3, 1, c0]));
    t.push(TensorSpec::named("a.conv1d.0.norm.weight", vec![c0]));
    t.push(TensorSpec::named("a.conv1d.1.weight", vec![3, 3, c0, c1]));
    t.push(TensorSpec::named("a.conv1d.1.norm.weight", vec![c1]));
    t.push(TensorSpec::named("a.input_projection.weight", vec![c0 / 4 * c1, h]));
    for i in 0..a.n_layer {
        let mut add = |name: &str, shape: Vec<u64>| t.push(TensorSpec::named(format!("a.blk.{i}.{name}"), shape));
        for norm in ["ffn_norm", "ffn_post_norm", "ffn_norm_1", "ffn_post_norm_1", "norm_conv", "conv_norm", "ln2"] {
            add(&format!("{norm}.weight"), vec![h]);
        }
        add("attn_post_norm.weight", vec![h]);
        add("attn_pre_norm.weight", vec![h]);
        for ffn in ["ffn_up", "ffn_up_1"] {
            add(&format!("{ffn}.weight"), vec![h, 4 * h]);
        }
        for ffn in ["ffn_down", "ffn_down_1"] {
            add(&format!("{ffn}.weight"), vec![4 * h, h]);
        }
        add("conv_dw.weight", vec![k, h]);
        add("conv_pw1.weight", vec![h, 2 * h]);
        add("conv_pw2.weight", vec![h, h]);
        for attn in ["attn_q", "attn_k", "attn_v", "attn_out", "attn_k_rel"] {
            add(&format!("{attn}.weight"), vec![h, h]);
        }
        add("per_dim_scale.weight", vec![h / a.n_head]);
        for linear in AUDIO_LINEARS {
            for bound in BOUNDS {
                add(&format!("{linear}.{bound}"), vec![1]);
            }
        }
    }
    t.push(TensorSpec::named("a.pre_encode.out.weight", vec![h, a.output_dims]));
    t.push(TensorSpec::named("a.pre_encode.out.bias", vec![a.output_dims]));
    t.push(TensorSpec::named("mm.a.input_projection.weight", vec![a.output_dims, text_width]));
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
            name(&format!("{layer}self_attn.q_proj.input_max")).as_deref(),
            Some("v.blk.2.attn_q.input_max"),
            "transformers keeps a clipped linear's bounds beside its `linear`"
        );
        assert_eq!(name(&format!("{layer}self_attn.k_norm.weight")).as_deref(), Some("v.blk.2.attn_k_norm.weight"));
        assert_eq!(name("model.language_model.layers.0.mlp.up_proj.weight"), None);
        assert_eq!(name("model.audio_tower.layers.0.feed_forward1.ffw_layer_1.linear.weight"), None, "no audio_config");
    }
}
