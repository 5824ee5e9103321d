//! Projector files (llama.cpp's "mmproj", `general.architecture = clip`): a multimodal
//! checkpoint's vision (and audio) towers and the projector that maps their output into the text
//! model's embeddings, as `convert_hf_to_gguf.py --mmproj` writes them for the same folder: the
//! same `clip.*` metadata, tensor names, shapes and per-tensor types.
//!
//! One module per family's towers, registered by the Hugging Face class name in [`REGISTRY`]; the
//! keys every vision tower writes (llama.cpp's `MmprojModel`) are in [`VisionKeys`].

mod gemma3;
mod gemma4;

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value as Json;
use strata_gguf::{TensorSpec, Value, ValueType};
use strata_quantize::GgmlType;

use crate::arch::{Config, Mapped};
use crate::policy::{mmproj_choice, Choice};

/// One family's towers and projector, made from config.json and the preprocessor's config.
pub trait Towers {
    /// The `clip.*` metadata, each key once.
    fn metadata(&self) -> Result<Vec<(String, Value)>>;
    /// Every tensor of the projector file, named and shaped (ggml order).
    fn tensors(&self) -> Vec<TensorSpec>;
    /// The GGUF name and transform for a checkpoint tensor of the towers or the projector;
    /// `None` for the text model's tensors and those llama.cpp does not use.
    fn map(&self, hf_name: &str) -> Option<Mapped>;
    /// The type llama.cpp's converter gives this tensor for output type `base` other than
    /// `base` itself, and why.
    fn forced_type(&self, gguf_name: &str, base: GgmlType) -> Option<(GgmlType, &'static str)>;
}

type Constructor = fn(&Json, &Json) -> Result<Box<dyn Towers>>;

/// The families whose towers strata converts, by Hugging Face class name.
const REGISTRY: &[(&str, Constructor)] = &[
    ("Gemma3ForConditionalGeneration", gemma3::Gemma3Vision::boxed),
    ("Gemma4ForConditionalGeneration", gemma4::Gemma4Vision::boxed),
];

/// Multimodal families whose towers strata does not convert yet, and what their towers are.
const NOT_YET: &[(&str, &str)] =
    &[("Gemma3nForConditionalGeneration", "Gemma 3n's MobileNetV5 vision and USM conformer audio towers")];

/// What a folder's config.json says about its towers.
pub enum Found {
    /// A text-only model.
    None,
    /// Towers strata does not convert yet (what they are).
    NotYet(&'static str),
    Towers(Box<dyn Towers>),
}

/// The towers of a Hugging Face folder: its config.json's first known multimodal class, read
/// with its preprocessor_config.json (or processor_config.json) beside it.
pub fn for_folder(dir: &Path) -> Result<Found> {
    let config: Json = read_json(&dir.join("config.json"))?.unwrap_or_default();
    for_config(&config, || preprocessor_config(dir))
}

/// The towers a config.json describes, with the image processor's settings (read only for a
/// known multimodal class).
pub fn for_config(config: &Json, preprocessor: impl FnOnce() -> Result<Json>) -> Result<Found> {
    let classes: Vec<&str> =
        config["architectures"].as_array().into_iter().flatten().filter_map(Json::as_str).collect();
    for class in classes {
        if let Some((_, make)) = REGISTRY.iter().find(|(n, _)| *n == class) {
            return make(config, &preprocessor()?).map(Found::Towers);
        }
        if let Some((_, what)) = NOT_YET.iter().find(|(n, _)| *n == class) {
            return Ok(Found::NotYet(what));
        }
    }
    Ok(Found::None)
}

/// The image processor's settings as llama.cpp's converter merges them: preprocessor_config.json,
/// then processor_config.json over it (its `image_processor` lifted to the top); `{}` if neither.
fn preprocessor_config(dir: &Path) -> Result<Json> {
    let mut merged = serde_json::Map::new();
    for (file, nested) in [("preprocessor_config.json", "media_proc_cfg"), ("processor_config.json", "image_processor")]
    {
        if let Some(Json::Object(mut cfg)) = read_json(&dir.join(file))? {
            if let Some(Json::Object(inner)) = cfg.get(nested).cloned() {
                cfg.extend(inner);
            }
            merged.extend(cfg);
        }
    }
    Ok(Json::Object(merged))
}

fn read_json(path: &Path) -> Result<Option<Json>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&text).map(Some).with_context(|| format!("{}: not valid JSON", path.display()))
}

/// The keys every vision tower writes (llama.cpp's `MmprojModel.set_gguf_parameters`).
pub(crate) struct VisionKeys {
    /// The text model's embedding width, which the projector maps into.
    pub projection_dim: u64,
    pub image_size: u64,
    pub patch_size: u64,
    pub n_embd: u64,
    pub n_ff: u64,
    pub n_layer: u64,
    pub n_head: u64,
    pub image_mean: Vec<f64>,
    pub image_std: Vec<f64>,
}

impl VisionKeys {
    /// The keys from config.json's `vision_config` and `text_config`, with the defaults SigLIP's
    /// and Gemma 4's vision config classes share but for the depth (`n_layer`); the image size
    /// from the config (`None`: the config has none, and llama.cpp writes 224). `class` names
    /// the model in errors; the normalization from the preprocessor's config.
    pub fn read(
        config: &Json,
        preprocessor: &Json,
        class: &str,
        n_layer: u64,
        image_size: Option<u64>,
    ) -> Result<VisionKeys> {
        if !config["vision_config"].is_object() {
            bail!("config.json: vision_config is missing (a {class} has a vision tower)");
        }
        let vision = Config::new(&config["vision_config"])?;
        let text = Config::new(&config["text_config"])?;
        let (image_mean, image_std) = image_normalization(preprocessor)?;
        let keys = VisionKeys {
            projection_dim: text.u64_or("hidden_size", 2304)?,
            image_size: match image_size {
                Some(default) => vision.u64_or("image_size", default)?,
                None => 224,
            },
            patch_size: vision.u64_or("patch_size", 16)?,
            n_embd: vision.u64_or("hidden_size", 768)?,
            n_ff: vision.u64_or("intermediate_size", 3072)?,
            n_layer: vision.u64_or("num_hidden_layers", n_layer)?,
            n_head: vision.u64_or("num_attention_heads", 12)?,
            image_mean,
            image_std,
        };
        if keys.patch_size == 0 || keys.image_size < keys.patch_size {
            bail!(
                "config.json: vision_config's image_size {} holds no patch of patch_size {}",
                keys.image_size,
                keys.patch_size
            );
        }
        Ok(keys)
    }

    pub fn write(&self, m: &mut Vec<(String, Value)>) -> Result<()> {
        let floats =
            |v: &[f64]| Value::Array(ValueType::F32, v.iter().map(|&x| Value::F32(x as f32)).collect::<Vec<_>>());
        m.push(("clip.has_vision_encoder".into(), Value::Bool(true)));
        m.push(u32_key("clip.vision.projection_dim", self.projection_dim)?);
        m.push(u32_key("clip.vision.image_size", self.image_size)?);
        m.push(u32_key("clip.vision.patch_size", self.patch_size)?);
        m.push(u32_key("clip.vision.embedding_length", self.n_embd)?);
        m.push(u32_key("clip.vision.feed_forward_length", self.n_ff)?);
        m.push(u32_key("clip.vision.block_count", self.n_layer)?);
        m.push(u32_key("clip.vision.attention.head_count", self.n_head)?);
        m.push(("clip.vision.image_mean".into(), floats(&self.image_mean)));
        m.push(("clip.vision.image_std".into(), floats(&self.image_std)));
        Ok(())
    }
}

/// The type llama.cpp's converter gives each of the towers' tensors `specs` (their
/// [`Towers::tensors`]) at output type `ty` (`--mmproj-type`), and why.
pub fn choices(towers: &dyn Towers, specs: &[TensorSpec], ty: GgmlType) -> Vec<Choice> {
    specs.iter().map(|s| mmproj_choice(s, ty, towers.forced_type(&s.name, ty))).collect()
}

/// A `clip.*` u32 key; a value a u32 cannot hold is an error naming the key, not a silent wrap.
pub(crate) fn u32_key(key: &str, v: u64) -> Result<(String, Value)> {
    let v = u32::try_from(v).map_err(|_| anyhow!("config.json: {key} would be {v}, more than GGUF's u32 holds"))?;
    Ok((key.to_string(), Value::U32(v)))
}

/// The image normalization from the preprocessor's config: `image_mean` and `image_std`, three
/// numbers each (llama.cpp's converter requires both).
pub(crate) fn image_normalization(preprocessor: &Json) -> Result<(Vec<f64>, Vec<f64>)> {
    let three = |key: &str| -> Result<Vec<f64>> {
        let v: Option<Vec<f64>> = preprocessor[key].as_array().map(|a| a.iter().filter_map(Json::as_f64).collect());
        match v {
            Some(v) if v.len() == 3 && preprocessor[key].as_array().is_some_and(|a| a.len() == 3) => Ok(v),
            _ => Err(anyhow!(
                "preprocessor_config.json: {key} is {}, not three numbers (the projector file needs the image normalization; --no-mmproj converts the text model alone)",
                preprocessor[key]
            )),
        }
    };
    Ok((three("image_mean")?, three("image_std")?))
}
