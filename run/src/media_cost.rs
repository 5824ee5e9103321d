//! What a model's towers cost: the projector file's weights (llama.cpp's "mmproj"), the compute
//! buffer its encoders take, and the context tokens an image or a second of audio becomes. Read
//! from a projector file, or from the towers `convert` would write for a folder or a models.toml
//! entry; `plan` adds them to each mix.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use serde_json::Value as Json;
use strata_convert::convert::plan_mmproj;
use strata_convert::mmproj::{self, Found};
use strata_gguf::{GgufFile, TensorInfo, Value};
use strata_quantize::GgmlType;

/// The towers' weights, buffers and token costs.
#[derive(Clone, Debug, Serialize)]
pub struct MediaCost {
    /// Where the figures come from.
    pub source: String,
    /// The type of the towers' matrices (`--mmproj-type`).
    #[serde(serialize_with = "type_name")]
    pub ty: GgmlType,
    pub vision_bytes: u64,
    pub audio_bytes: u64,
    /// The projections into the text model's embeddings (`mm.*`).
    pub projector_bytes: u64,
    /// Compute buffer the vision encoder needs for the largest image llama.cpp makes
    /// (an estimate: [`MediaCost::vision_buffer_bytes`]).
    pub vision_buffer_bytes: u64,
    /// Compute buffer the audio encoder needs for a 30-second chunk (an estimate).
    pub audio_buffer_bytes: u64,
    /// Context tokens an image becomes: (fewest, most); a fixed count is both.
    pub image_tokens: Option<(u64, u64)>,
    /// Context tokens a second of audio becomes.
    pub audio_tokens_per_second: Option<f64>,
}

impl MediaCost {
    /// Bytes of the projector file's tensors.
    pub fn weight_bytes(&self) -> u64 {
        self.vision_bytes + self.audio_bytes + self.projector_bytes
    }

    /// Weights and both encoders' buffers: llama.cpp keeps a context per modality, each with
    /// its own buffer.
    pub fn total_bytes(&self) -> u64 {
        self.weight_bytes() + self.vision_buffer_bytes + self.audio_buffer_bytes
    }

    /// A projector file's costs.
    pub fn from_file(path: &Path) -> Result<MediaCost> {
        let file = GgufFile::open(path)?;
        if file.architecture() != Some("clip") {
            bail!(
                "{}: not a projector file (general.architecture is {:?}, not \"clip\")",
                path.display(),
                file.architecture().unwrap_or("missing")
            );
        }
        cost(path.display().to_string(), &|k| file.get(k).cloned(), file.tensors.iter().map(ProjectorTensor::from))
            .with_context(|| path.display().to_string())
    }

    /// The projector `convert` writes from a Hugging Face folder at `ty` (`None`: its default),
    /// from the tensor headers; `None` for a folder without towers strata converts.
    pub fn from_folder(dir: &Path, ty: Option<GgmlType>) -> Result<Option<MediaCost>> {
        let Found::Towers(towers) = mmproj::for_folder(dir)? else { return Ok(None) };
        let plan = plan_mmproj(dir, towers.as_ref(), ty)?;
        let get = |key: &str| plan.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        let source = format!("the projector convert writes from {}", dir.display());
        cost(source, &get, plan.tensors.iter().map(|t| ProjectorTensor::from(&t.info))).map(Some)
    }

    /// The towers of a config.json and its image processor's settings (a models.toml entry's),
    /// written at `ty`; `None` for a text model.
    pub fn from_config(source: String, config: &Json, preprocessor: &Json, ty: GgmlType) -> Result<Option<MediaCost>> {
        let Found::Towers(towers) = mmproj::for_config(config, || Ok(preprocessor.clone()))? else { return Ok(None) };
        let metadata = towers.metadata()?;
        let get = |key: &str| metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        let specs = towers.tensors();
        let choices = mmproj::choices(towers.as_ref(), &specs, ty);
        let sized = specs.iter().zip(choices).map(|(s, c)| ProjectorTensor {
            name: &s.name,
            ty: c.ty,
            n_dims: s.shape.len(),
            bytes: c.ty.bytes_for(s.n_elements()).unwrap_or(0),
        });
        cost(source, &get, sized).map(Some)
    }
}

fn type_name<S: serde::Serializer>(t: &GgmlType, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(t.name())
}

/// A projector tensor as its file holds (or will hold) it.
struct ProjectorTensor<'a> {
    name: &'a str,
    ty: GgmlType,
    n_dims: usize,
    bytes: u64,
}

impl<'a> From<&'a TensorInfo> for ProjectorTensor<'a> {
    fn from(t: &'a TensorInfo) -> ProjectorTensor<'a> {
        ProjectorTensor { name: &t.name, ty: t.ty, n_dims: t.shape.len(), bytes: t.n_bytes() }
    }
}

/// The type holding most of the matrices' bytes.
fn main_type(tensors: &[ProjectorTensor]) -> GgmlType {
    let mut by_type: Vec<(GgmlType, u64)> = Vec::new();
    for t in tensors.iter().filter(|t| t.n_dims >= 2) {
        match by_type.iter_mut().find(|(ty, _)| *ty == t.ty) {
            Some((_, b)) => *b += t.bytes,
            None => by_type.push((t.ty, t.bytes)),
        }
    }
    by_type.into_iter().max_by_key(|(_, b)| *b).map_or(GgmlType::F16, |(t, _)| t)
}

/// Bytes in a float of the encoders' activations.
const F32: u64 = 4;

/// Audio samples per second and per mel frame, and the frames per token, of Gemma 4's audio
/// encoder (llama.cpp's `gemma4a`: 16 kHz, a 10 ms hop, two stride-2 convolutions).
const GEMMA4A_SAMPLE_RATE: u64 = 16_000;
const GEMMA4A_HOP: u64 = 160;
const GEMMA4A_FRAMES_PER_TOKEN: u64 = 4;
/// The longest stretch llama.cpp encodes at once, in seconds (a chunk; longer clips are split).
const AUDIO_CHUNK_SECONDS: u64 = 30;
/// Gemma 4's image token limits in llama.cpp (`set_limit_image_tokens(70, 1120)`).
const GEMMA4V_TOKENS: (u64, u64) = (70, 1120);

/// The costs of a projector's `tensors` with its `clip.*` metadata (`get`).
fn cost<'a>(
    source: String,
    get: &dyn Fn(&str) -> Option<Value>,
    tensors: impl Iterator<Item = ProjectorTensor<'a>>,
) -> Result<MediaCost> {
    let tensors: Vec<ProjectorTensor> = tensors.collect();
    let ty = main_type(&tensors);
    let (mut vision_bytes, mut audio_bytes, mut projector_bytes) = (0, 0, 0);
    for t in &tensors {
        if t.name.starts_with("v.") {
            vision_bytes += t.bytes;
        } else if t.name.starts_with("a.") {
            audio_bytes += t.bytes;
        } else {
            projector_bytes += t.bytes;
        }
    }
    let u = |key: &str| -> Result<u64> {
        get(key).and_then(|v| v.as_u64()).ok_or_else(|| anyhow!("{key} is missing or not a whole number"))
    };
    let text = |key: &str| get(key).and_then(|v| v.as_str().map(str::to_string));
    let flag = |key: &str| matches!(get(key), Some(Value::Bool(true)));
    let mut out = MediaCost {
        source,
        ty,
        vision_bytes,
        audio_bytes,
        projector_bytes,
        vision_buffer_bytes: 0,
        audio_buffer_bytes: 0,
        image_tokens: None,
        audio_tokens_per_second: None,
    };
    if flag("clip.has_vision_encoder") {
        let projector = text("clip.vision.projector_type").or_else(|| text("clip.projector_type")).unwrap_or_default();
        let (image, patch) = (u("clip.vision.image_size")?, u("clip.vision.patch_size")?.max(1));
        let merge =
            |default: u64| get("clip.vision.projector.scale_factor").and_then(|v| v.as_u64()).unwrap_or(default);
        // The largest image llama.cpp feeds the encoder, as a side in pixels; its tokens; and
        // the feed-forward activations a layer holds at once (SigLIP's plain MLP: two of its
        // width; a gated one: gate, up and their product).
        let (side, tokens, ffn_live) = match projector.as_str() {
            "gemma3" => {
                let per_side = image / patch / merge(4).max(1);
                (image, Some((per_side * per_side, per_side * per_side)), 2)
            }
            "gemma4v" => {
                let pooled = patch * merge(3);
                (((GEMMA4V_TOKENS.1 * pooled * pooled) as f64).sqrt() as u64, Some(GEMMA4V_TOKENS), 3)
            }
            _ => (image, None, 3),
        };
        out.image_tokens = tokens;
        let n = (side / patch).pow(2);
        let (d, ff) = (u("clip.vision.embedding_length")?, u("clip.vision.feed_forward_length")?);
        out.vision_buffer_bytes = vision_buffer_bytes(side, n, d, ffn_live * ff);
    }
    if flag("clip.has_audio_encoder") && text("clip.audio.projector_type").as_deref() == Some("gemma4a") {
        let frames = AUDIO_CHUNK_SECONDS * GEMMA4A_SAMPLE_RATE / GEMMA4A_HOP;
        out.audio_tokens_per_second = Some((GEMMA4A_SAMPLE_RATE / GEMMA4A_HOP / GEMMA4A_FRAMES_PER_TOKEN) as f64);
        out.audio_buffer_bytes = audio_buffer_bytes(
            frames,
            u("clip.audio.num_mel_bins")?,
            frames / GEMMA4A_FRAMES_PER_TOKEN,
            u("clip.audio.embedding_length")?,
            u("clip.audio.feed_forward_length")?,
        );
    }
    Ok(out)
}

/// The vision encoder's compute buffer for an image of `side` pixels in `n` patches of width
/// `d`, `ffn` being the feed-forward activations a layer holds at once per patch: the image and
/// its patches, and a layer's widest live activations (the residual stream, the attention's Q, K
/// and V, and the feed-forward's; llama.cpp enables flash attention where the backend has it, so
/// there is no patch-by-patch score matrix). Measured against the process on E2B-sized towers:
/// docs/plan.md, "Images and audio: the towers".
fn vision_buffer_bytes(side: u64, n: u64, d: u64, ffn: u64) -> u64 {
    F32 * (2 * 3 * side * side + n * (4 * d + ffn))
}

/// The audio encoder's compute buffer for `frames` mel frames of `n_mel` bins: the input, the
/// first strided convolution's output (128 channels at half the time and frequency), and then,
/// over `n` positions of width `d` and feed-forward width `ff`, a layer's widest live activations
/// as for vision.
fn audio_buffer_bytes(frames: u64, n_mel: u64, n: u64, d: u64, ff: u64) -> u64 {
    F32 * (frames * n_mel + 2 * 128 * (frames / 2) * (n_mel / 2) + n * (4 * d + 2 * ff))
}
