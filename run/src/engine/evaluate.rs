//! Logits at every position of a text, for perplexity, KL divergence and importance matrices:
//! the decoder's sequence 0, from an empty cache, a batch at a time.

use anyhow::bail;

use super::decoder::{BatchToken, Decoder};

/// Evaluates `tokens` in sequence 0 of `decoder` from an empty cache, handing `each` the
/// position and the logits after every token as its batch completes.
pub fn logits_each<D: Decoder>(
    decoder: &mut D,
    tokens: &[i32],
    mut each: impl FnMut(usize, &[f32]),
) -> anyhow::Result<()> {
    if tokens.len() > decoder.n_ctx_seq() {
        bail!("{} tokens do not fit the context of {} (raise -c/--ctx-size)", tokens.len(), decoder.n_ctx_seq());
    }
    decoder.truncate(0, 0);
    let n_batch = decoder.n_batch();
    let mut batch = Vec::with_capacity(n_batch);
    for (c, chunk) in tokens.chunks(n_batch).enumerate() {
        let start = c * n_batch;
        batch.clear();
        batch.extend(chunk.iter().zip(start..).map(|(&token, pos)| BatchToken { token, seq: 0, pos, logits: true }));
        decoder.decode(&batch)?;
        for i in 0..chunk.len() {
            each(start + i, decoder.logits(i));
        }
    }
    Ok(())
}
