//! What the engine needs of a model: a context that holds one KV cache per sequence, decodes a
//! batch of tokens (any number of positions per sequence) and gives the logits after the tokens
//! that asked for them, and a vocabulary. llama.cpp's context implements it (`src/llama/`); the
//! engine's tests implement it with a table of logits.

/// One token of a batch: its sequence, its position there, and whether its logits are wanted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchToken {
    pub token: i32,
    pub seq: usize,
    pub pos: usize,
    pub logits: bool,
}

/// A model context with `n_seq` sequences of `n_ctx_seq` cache cells each.
pub trait Decoder {
    /// A sequence's cache saved in host memory (for the engine's prompt cache).
    type Saved: Send;
    /// Sequences the context holds (the engine's slots).
    fn n_seq(&self) -> usize;
    /// Cells of KV cache each sequence has.
    fn n_ctx_seq(&self) -> usize;
    /// The most tokens one [`Decoder::decode`] takes.
    fn n_batch(&self) -> usize;
    fn n_vocab(&self) -> usize;
    /// Evaluates `batch` (at most [`Decoder::n_batch`] tokens), each at its position in its
    /// sequence's cache. An error leaves the batch's sequences unusable: the engine drops them.
    fn decode(&mut self, batch: &[BatchToken]) -> anyhow::Result<()>;
    /// Evaluates an image or audio run of sequence `seq`'s prompt whole, from position `pos`
    /// (a chunk this decoder's projector made). No logits come of it: text follows.
    fn decode_media(&mut self, seq: usize, pos: usize, media: &dyn super::MediaChunk) -> anyhow::Result<()> {
        let _ = (seq, pos, media);
        anyhow::bail!("this model has no projector: it takes no images or audio")
    }
    /// The logits after the `i`-th token of the last decode, which asked for them.
    fn logits(&self, i: usize) -> &[f32];
    /// Drops sequence `seq`'s cache from position `from` on; false if the cache cannot be cut
    /// there, and then the whole sequence is dropped.
    fn truncate(&mut self, seq: usize, from: usize) -> bool;
    /// Saves sequence `seq`'s cache, with its size in bytes; `None` if it cannot.
    fn save(&mut self, seq: usize) -> Option<(Self::Saved, usize)>;
    /// Makes sequence `seq`'s cache the saved one; false if it cannot (the cache is then in an
    /// unknown state, and the engine drops it).
    fn restore(&mut self, seq: usize, saved: &Self::Saved) -> bool;
    /// Writes sequence `seq`'s cache to `path` with `words` (llama.cpp's sequence state file,
    /// which llama-server's slot files are); the bytes written.
    fn save_file(&mut self, seq: usize, path: &std::path::Path, words: &[i32]) -> anyhow::Result<usize>;
    /// Makes sequence `seq`'s cache the one a [`Decoder::save_file`] file holds: its words (at
    /// most `capacity`) and the bytes read. An error leaves the cache in an unknown state, and
    /// the engine drops it.
    fn load_file(&mut self, seq: usize, path: &std::path::Path, capacity: usize) -> anyhow::Result<(Vec<i32>, usize)>;
    /// Whether the token ends generation (EOS, EOT, `<end_of_turn>`, ...).
    fn is_eog(&self, token: i32) -> bool;
    /// The bytes of a token, as generated text shows it.
    fn piece(&self, token: i32) -> Vec<u8>;
}
