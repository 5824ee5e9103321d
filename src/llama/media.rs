//! Images and audio through llama.cpp's libmtmd: a projector file (mmproj) attached to a loaded
//! model, media checked before they are decoded ([`Medium`]), a prompt with media markers turned into
//! the engine's [`Prompt`] (text tokens, and a run of media tokens per image or clip), and each
//! run evaluated into a sequence ([`eval_media`]).

use std::any::Any;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context as _, Result};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::mtmd::{
    mtmd_default_marker, MtmdBitmap, MtmdContext, MtmdContextParams, MtmdInputChunk, MtmdInputChunkType, MtmdInputText,
};
use strata_run::engine::{media_token, Media, MediaChunk, Prompt};

use super::load::Model;
use super::log::{llama_error, log_callback, take_last_error};

/// The marker that places a medium in a prompt (libmtmd's default, as `llama-mtmd-cli` and
/// llama-server use it).
pub fn media_marker() -> &'static str {
    mtmd_default_marker()
}

/// The most bytes a media file may have.
const MAX_FILE_BYTES: u64 = 100 << 20;
/// The most pixels an image may decode to, and the longest side (a decompression bomb is
/// refused from its header, before any pixel is decoded).
const MAX_PIXELS: u64 = 64 << 20;
const MAX_SIDE: u64 = 16384;
/// The longest audio clip, in seconds.
const MAX_AUDIO_SECONDS: u64 = 30 * 60;

/// An image or audio chunk libmtmd made, as the engine carries it.
struct Chunk(MtmdInputChunk<'static>);

impl MediaChunk for Chunk {
    fn n_tokens(&self) -> usize {
        self.0.n_tokens()
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A projector attached to a model: libmtmd's context, used by one evaluation at a time.
pub(super) struct Projector(Mutex<MtmdContext>);

impl Model {
    /// Loads the projector file `path` (mmproj) for this model; errors name the file.
    pub fn attach_projector(&mut self, path: &Path, n_threads: i32) -> Result<()> {
        if !path.is_file() {
            bail!("{}: no such file", path.display());
        }
        let params = MtmdContextParams {
            use_gpu: self.has_gpu_layers(),
            print_timings: false,
            n_threads,
            ..MtmdContextParams::default()
        };
        // libmtmd's and the encoder's log, which goes to stdout otherwise, into llama.cpp's.
        // SAFETY: `log_callback` is a plain function for the program's lifetime and takes no user data.
        unsafe { llama_cpp_sys_2::mtmd_helper_log_set(Some(log_callback), std::ptr::null_mut()) };
        take_last_error();
        let path_str = path.to_str().ok_or_else(|| anyhow!("{}: not a UTF-8 path", path.display()))?;
        let ctx = MtmdContext::init_from_file(path_str, &self.model, &params).map_err(|_| {
            llama_error(format!(
                "{}: llama.cpp could not load the projector for {}",
                path.display(),
                self.path.display()
            ))
        })?;
        self.projector = Some(Projector(Mutex::new(ctx)));
        Ok(())
    }

    /// Whether a projector is attached.
    pub fn has_projector(&self) -> bool {
        self.projector.is_some()
    }

    /// Whether the projector takes images, and audio.
    pub fn modalities(&self) -> (bool, bool) {
        self.projector.as_ref().map_or((false, false), |p| {
            let ctx = p.0.lock().unwrap_or_else(|e| e.into_inner());
            (ctx.support_vision(), ctx.support_audio())
        })
    }

    /// A chat template's text with media markers, tokenized as [`Model::tokenize_chat`] does
    /// (special tokens parsed, BOS first exactly once where the model wants one).
    pub fn media_prompt_chat(&self, text: &str, media: &[&Medium]) -> Result<Prompt> {
        let (bos, _) = self.bos_eos_text();
        let text = match self.bos_added() {
            Some(_) if !bos.is_empty() => text.strip_prefix(bos.as_str()).unwrap_or(text),
            _ => text,
        };
        self.media_prompt(text, media, true, true)
    }

    /// The prompt `text` with each media marker ([`media_marker`]) replaced by the next of
    /// `media`, tokenized as libmtmd tokenizes it: BOS first when `add_special`, special-token
    /// text parsed when `parse_special`, each image or clip a run of media tokens.
    pub fn media_prompt(
        &self,
        text: &str,
        media: &[&Medium],
        add_special: bool,
        parse_special: bool,
    ) -> Result<Prompt> {
        let projector = self.projector.as_ref().ok_or_else(|| {
            anyhow!("{}: images and audio need the model's projector file (--mmproj)", self.path.display())
        })?;
        let ctx = projector.0.lock().unwrap_or_else(|e| e.into_inner());
        let markers = text.matches(media_marker()).count();
        if markers != media.len() {
            bail!("the prompt has {markers} media markers ({}) for {} images or clips", media_marker(), media.len());
        }
        let mut bitmaps = Vec::with_capacity(media.len());
        for medium in media {
            let name = &medium.name;
            take_last_error();
            let bitmap = MtmdBitmap::from_buffer(&ctx, &medium.bytes, false).map_err(|_| {
                llama_error(format!(
                    "{name}: not an image or audio file this model reads (JPEG, PNG, BMP, GIF; WAV, MP3, FLAC)"
                ))
            })?;
            if bitmap.is_audio() {
                let rate = ctx.get_audio_sample_rate().unwrap_or(16_000).max(1) as u64;
                if u64::from(bitmap.nx()) > MAX_AUDIO_SECONDS * rate {
                    bail!("{name}: {} s of audio, more than {MAX_AUDIO_SECONDS} s", u64::from(bitmap.nx()) / rate);
                }
            }
            bitmaps.push(bitmap);
        }
        let input = MtmdInputText { text: text.to_string(), add_special, parse_special };
        take_last_error();
        let chunks = ctx.tokenize(input, &bitmaps.iter().collect::<Vec<_>>()).map_err(|e| {
            llama_error(format!("{}: cannot tokenize the prompt with its media ({e})", self.path.display()))
        })?;
        let mut prompt = Prompt::default();
        for i in 0..chunks.len() {
            let chunk = chunks.get(i).ok_or_else(|| anyhow!("libmtmd lost chunk {i}"))?;
            if chunk.chunk_type() == MtmdInputChunkType::Text {
                prompt.tokens.extend(chunk.text_tokens().unwrap_or_default().iter().map(|t| t.0));
                continue;
            }
            let n = chunk.n_tokens();
            if chunk.n_positions() != n as i32 {
                bail!("{}: this model places media by M-RoPE, which strata does not run yet", self.path.display());
            }
            let hash = chunk.id().map_or(0, |id| u64::from_str_radix(id.get(..16).unwrap_or("0"), 16).unwrap_or(0));
            let owned = chunk.copy().map_err(|e| anyhow!("libmtmd cannot copy a media chunk ({e})"))?;
            prompt.media.push(Media { start: prompt.tokens.len(), chunk: Arc::new(Chunk(owned)) });
            prompt.tokens.extend(std::iter::repeat_n(media_token(hash), n));
        }
        Ok(prompt)
    }
}

/// Evaluates one media run of sequence `seq` from position `pos` (libmtmd encodes it, then its
/// embeddings are decoded in batches of `n_batch`, with the attention the model's media need).
pub(super) fn eval_media(
    model: &Model,
    ctx: &mut LlamaContext<'_>,
    media: &dyn MediaChunk,
    seq: usize,
    pos: usize,
    n_batch: usize,
) -> Result<()> {
    let chunk = media.as_any().downcast_ref::<Chunk>().ok_or_else(|| anyhow!("a media chunk of another model"))?;
    let projector = model.projector.as_ref().ok_or_else(|| anyhow!("this model has no projector"))?;
    let mut mtmd = projector.0.lock().unwrap_or_else(|e| e.into_inner());
    take_last_error();
    chunk
        .0
        .eval_single(&mut mtmd, ctx, pos as i32, seq as i32, n_batch as i32, false)
        .map(|_| ())
        .map_err(|e| llama_error(format!("llama.cpp could not evaluate an image or audio clip ({e})")))
}

/// An image or audio clip's bytes, checked as far as they can be before decoding, and what to
/// call it in errors (its path, or where a request held it).
pub struct Medium {
    pub name: String,
    bytes: Vec<u8>,
}

impl Medium {
    /// A media file, read if it is not too large, then checked as [`Medium::new`] checks.
    pub fn read(path: &Path) -> Result<Medium> {
        let size = std::fs::metadata(path).with_context(|| format!("{}: cannot read", path.display()))?.len();
        if size > MAX_FILE_BYTES {
            bail!("{}: {size} bytes, more than the {MAX_FILE_BYTES} a medium may have", path.display());
        }
        let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        Medium::new(path.display().to_string(), bytes)
    }

    /// Checks what can be checked before decoding: the size, and for PNG, JPEG, GIF and BMP
    /// images the dimensions in the header (so a decompression bomb or a 0-pixel image is
    /// refused without decoding it), and for WAV the duration.
    pub fn new(name: String, bytes: Vec<u8>) -> Result<Medium> {
        if bytes.len() as u64 > MAX_FILE_BYTES {
            bail!("{name}: {} bytes, more than the {MAX_FILE_BYTES} a medium may have", bytes.len());
        }
        if let Some((w, h)) = image_dimensions(&bytes) {
            if w == 0 || h == 0 {
                bail!("{name}: a {w} x {h} image has no pixels");
            }
            if w > MAX_SIDE || h > MAX_SIDE || w * h > MAX_PIXELS {
                bail!("{name}: a {w} x {h} image, more than {MAX_SIDE} pixels a side or {MAX_PIXELS} in all");
            }
        }
        if let Some(seconds) = wav_seconds(&bytes) {
            if seconds > MAX_AUDIO_SECONDS {
                bail!("{name}: {seconds} s of audio, more than {MAX_AUDIO_SECONDS} s");
            }
        }
        Ok(Medium { name, bytes })
    }
}

/// Width and height from a PNG, GIF, BMP or JPEG header; `None` for other formats or a header
/// cut short.
fn image_dimensions(b: &[u8]) -> Option<(u64, u64)> {
    let be32 = |i: usize| Some(u64::from(u32::from_be_bytes(b.get(i..i + 4)?.try_into().ok()?)));
    let le16 = |i: usize| Some(u64::from(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?)));
    let le32 = |i: usize| Some(i32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?).unsigned_abs() as u64);
    let be16 = |i: usize| Some(u64::from(u16::from_be_bytes(b.get(i..i + 2)?.try_into().ok()?)));
    if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Some((be32(16)?, be32(20)?));
    }
    if b.starts_with(b"GIF8") {
        return Some((le16(6)?, le16(8)?));
    }
    if b.starts_with(b"BM") {
        return Some((le32(18)?, le32(22)?));
    }
    if b.starts_with(&[0xff, 0xd8]) {
        // Walk the segments to the first start-of-frame (SOF0..SOF15 but DHT, JPG, DAC).
        let mut i = 2;
        while i + 9 < b.len() {
            if b[i] != 0xff {
                return None;
            }
            let marker = b[i + 1];
            if (0xc0..=0xcf).contains(&marker) && !matches!(marker, 0xc4 | 0xc8 | 0xcc) {
                return Some((be16(i + 7)?, be16(i + 5)?));
            }
            i += 2 + be16(i + 2)? as usize;
        }
    }
    None
}

/// A WAV file's duration in whole seconds, from its `fmt ` and `data` chunks.
fn wav_seconds(b: &[u8]) -> Option<u64> {
    if !(b.starts_with(b"RIFF") && b.get(8..12) == Some(b"WAVE")) {
        return None;
    }
    let le32 = |i: usize| Some(u64::from(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?)));
    let (mut i, mut byte_rate, mut data) = (12, None, None);
    while i + 8 <= b.len() {
        let size = le32(i + 4)?;
        match &b[i..i + 4] {
            b"fmt " => byte_rate = le32(i + 16),
            b"data" => data = Some(size),
            _ => {}
        }
        i += 8 + size as usize + (size as usize & 1);
    }
    Some(data? / byte_rate?.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_give_dimensions_before_decoding() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        png.extend_from_slice(&100_000u32.to_be_bytes());
        png.extend_from_slice(&3u32.to_be_bytes());
        assert_eq!(image_dimensions(&png), Some((100_000, 3)));
        let gif = b"GIF89a\x40\x01\xf0\x00";
        assert_eq!(image_dimensions(gif), Some((320, 240)));
        // JPEG: SOI, an APP0 segment of 4 bytes, then SOF0 with height 480, width 640.
        let jpeg = [0xff, 0xd8, 0xff, 0xe0, 0, 4, 0, 0, 0xff, 0xc0, 0, 11, 8, 0x01, 0xe0, 0x02, 0x80, 3, 0, 0];
        assert_eq!(image_dimensions(&jpeg), Some((640, 480)));
        assert_eq!(image_dimensions(b"\x89PNG\r\n\x1a\n\0\0"), None, "cut short");
        let mut wav = b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0\x80\x3e\0\0\0\x7d\0\0\x02\0\x10\0data".to_vec();
        wav.extend_from_slice(&(32_000u32 * 7).to_le_bytes());
        assert_eq!(wav_seconds(&wav), Some(7));
    }
}
