//! Images and audio in a prompt. The decoder's projector encodes each into a run of embeddings
//! that fills positions of the prompt, as llama-server's multimodal prompts do; in the prompt those
//! positions hold one negative token derived from the media's content hash, so a slot's cache and
//! the prompt cache match a follow-up prompt by content, and an image seen before is not encoded
//! again. A run is evaluated whole, in a batch of its own ([`super::Decoder::decode_media`]), and
//! no cache is ever cut inside one.

use std::any::Any;
use std::sync::Arc;

/// One encoded image or audio clip, as the decoder that made it knows it.
pub trait MediaChunk: Send + Sync {
    /// Positions it fills in the prompt.
    fn n_tokens(&self) -> usize;
    /// The decoder's own type, for it to take back.
    fn as_any(&self) -> &dyn Any;
}

/// A run of a prompt that is media: its first position and what fills it.
#[derive(Clone)]
pub struct Media {
    pub start: usize,
    pub chunk: Arc<dyn MediaChunk>,
}

impl Media {
    /// Positions of the prompt it covers.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.start..self.start + self.chunk.n_tokens()
    }
}

/// The token that stands for each position of a media run with content hash `hash`: negative,
/// so never a vocabulary token, and the same for the same content.
pub fn media_token(hash: u64) -> i32 {
    -1 - (hash % (i32::MAX as u64 - 1)) as i32
}

/// A prompt: tokens, and the runs of them that are media (in order, not overlapping).
#[derive(Clone, Default)]
pub struct Prompt {
    pub tokens: Vec<i32>,
    pub media: Vec<Media>,
}

impl From<Vec<i32>> for Prompt {
    fn from(tokens: Vec<i32>) -> Prompt {
        Prompt { tokens, media: Vec::new() }
    }
}

/// Checks that `media` are runs of `tokens`, in order, each filled with media tokens, that no
/// other token is negative, and that text follows the last run (the first generated token needs
/// a text token's logits).
pub fn check(tokens: &[i32], media: &[Media]) -> Result<(), &'static str> {
    let mut next = 0;
    for m in media {
        let r = m.range();
        if r.start < next || r.end > tokens.len() || r.is_empty() {
            return Err("its media are not runs of the prompt, in order");
        }
        if tokens[next..r.start].iter().any(|&t| t < 0) || tokens[r.clone()].iter().any(|&t| t >= 0) {
            return Err("its media runs do not hold media tokens");
        }
        next = r.end;
    }
    if tokens[next..].iter().any(|&t| t < 0) {
        return Err("it has a media token outside any media run");
    }
    if next > 0 && next == tokens.len() {
        return Err("it ends with an image or audio clip: text must follow the last one");
    }
    Ok(())
}

/// Where a cache of `keep` tokens may end for a prompt with `media`: not inside a run (which is
/// evaluated whole), so at its start if `keep` falls inside one.
pub fn cut_before(media: &[Media], keep: usize) -> usize {
    media.iter().find(|m| m.start < keep && keep < m.range().end).map_or(keep, |m| m.start)
}
