//! A llama.cpp context as the engine's [`Decoder`]: one KV cache per sequence, batches of tokens
//! decoded through llama.cpp's batch API, and the logits read back.

use std::ffi::c_void;

use anyhow::{Context as _, Result};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::{LlamaStateSeqFlags, SeqState};
use strata_run::engine::{BatchToken, Decoder, MediaChunk};

use super::load::{ContextOptions, Model};
use super::log::{llama_error, take_last_error};
use super::{imatrix, rpc};

/// A llama.cpp context holding `n_seq` sequences' caches.
pub struct LlamaDecoder<'m> {
    model: &'m Model,
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    n_batch: usize,
    n_seq: usize,
    n_ctx_seq: usize,
    /// Milliseconds spent evaluating media runs (encoding and decoding) since last taken.
    media_ms: f64,
}

impl Model {
    /// A context for `n_seq` sequences decoded together, each with its own KV cache of
    /// `n_ctx / n_seq` cells (a server's slots: `opts.n_ctx` is the total, as llama-server's `-c`;
    /// llama.cpp rounds each sequence's share up to a multiple of 256).
    pub fn decoder(&self, opts: &ContextOptions, n_seq: u32) -> Result<LlamaDecoder<'_>> {
        self.decoder_with(opts, n_seq, |params| params)
    }

    /// A one-sequence context that reports every matrix product it computes to `collector`.
    pub fn collecting_decoder<'m>(
        &'m self,
        opts: &ContextOptions,
        collector: &'m imatrix::Collector,
    ) -> Result<LlamaDecoder<'m>> {
        let user_data = std::ptr::from_ref(collector).cast_mut().cast::<c_void>();
        // SAFETY: the collector outlives the context ('m), and `collect` locks it for each call.
        self.decoder_with(opts, 1, |params| unsafe { params.with_cb_eval(Some(imatrix::collect), user_data) })
    }

    fn decoder_with(
        &self,
        opts: &ContextOptions,
        n_seq: u32,
        extra: impl FnOnce(LlamaContextParams) -> LlamaContextParams,
    ) -> Result<LlamaDecoder<'_>> {
        let n_ctx = if opts.n_ctx == 0 { self.n_ctx_train() } else { opts.n_ctx };
        let n_seq = n_seq.max(1);
        let params = extra(opts.params(n_ctx).with_n_seq_max(n_seq).with_kv_unified(opts.kv_unified));
        take_last_error();
        let ctx = rpc::watched(|| self.model.new_context(&self.backend, params)).map_err(|_| {
            let seqs = if n_seq > 1 { format!(" for {n_seq} sequences") } else { String::new() };
            llama_error(format!("{}: cannot create a context of {n_ctx} tokens{seqs}", self.path.display()))
        })?;
        let n_batch = ctx.n_batch() as usize;
        Ok(LlamaDecoder {
            model: self,
            n_ctx_seq: if opts.kv_unified { ctx.n_ctx() as usize } else { ctx.n_ctx() as usize / n_seq as usize },
            ctx,
            batch: LlamaBatch::new(n_batch, 1),
            n_batch,
            n_seq: n_seq as usize,
            media_ms: 0.0,
        })
    }
}

impl LlamaDecoder<'_> {
    /// Milliseconds spent on media runs since the last call (`bench --image`).
    pub fn take_media_ms(&mut self) -> f64 {
        std::mem::take(&mut self.media_ms)
    }
}

impl Decoder for LlamaDecoder<'_> {
    type Saved = SeqState;

    fn save(&mut self, seq: usize) -> Option<(SeqState, usize)> {
        let state = self.ctx.state_seq_get(seq as i32, LlamaStateSeqFlags::empty()).ok()?;
        let bytes = state.byte_len();
        Some((state, bytes))
    }

    fn restore(&mut self, seq: usize, saved: &SeqState) -> bool {
        let _ = self.ctx.kv_cache_seq_rm(seq as i32, None, None);
        self.ctx.state_seq_set(saved, seq as i32).is_ok()
    }

    fn save_file(&mut self, seq: usize, path: &std::path::Path, words: &[i32]) -> Result<usize> {
        let words: Vec<LlamaToken> = words.iter().map(|&w| LlamaToken(w)).collect();
        take_last_error();
        self.ctx.state_seq_save_file(path, seq as i32, &words).map_err(|e| llama_error(e.to_string()))
    }

    fn load_file(&mut self, seq: usize, path: &std::path::Path, capacity: usize) -> Result<(Vec<i32>, usize)> {
        if !path.is_file() {
            anyhow::bail!("no such file");
        }
        let _ = self.ctx.kv_cache_seq_rm(seq as i32, None, None);
        take_last_error();
        let (words, bytes) = self.ctx.state_seq_load_file(path, seq as i32, capacity).map_err(|e| {
            llama_error(format!("{e} (a slot file of another model, or cut short, or more than a slot holds)"))
        })?;
        Ok((words.iter().map(|t| t.0).collect(), bytes))
    }

    fn n_seq(&self) -> usize {
        self.n_seq
    }

    fn n_ctx_seq(&self) -> usize {
        self.n_ctx_seq
    }

    fn n_batch(&self) -> usize {
        self.n_batch
    }

    fn n_vocab(&self) -> usize {
        self.model.n_vocab()
    }

    fn decode(&mut self, tokens: &[BatchToken]) -> Result<()> {
        self.batch.clear();
        for t in tokens {
            self.batch.add(LlamaToken(t.token), t.pos as i32, &[t.seq as i32], t.logits).context("batch is full")?;
        }
        take_last_error();
        rpc::watched(|| self.ctx.decode(&mut self.batch)).map_err(|e| match e {
            // The cache is full: with --kv-unified the slots together outgrew it.
            llama_cpp_2::DecodeError::NoKvCacheSlot => {
                llama_error("the context size has been exceeded: the KV cache has no room for these tokens".into())
            }
            e => llama_error(format!("llama.cpp could not evaluate the tokens ({e})")),
        })
    }

    fn decode_media(&mut self, seq: usize, pos: usize, media: &dyn MediaChunk) -> Result<()> {
        let start = std::time::Instant::now();
        let done = rpc::watched(|| super::media::eval_media(self.model, &mut self.ctx, media, seq, pos, self.n_batch));
        self.media_ms += start.elapsed().as_secs_f64() * 1e3;
        done
    }

    fn logits(&self, i: usize) -> &[f32] {
        // llama.cpp waits here for the backends to finish the batch: a watched wait.
        rpc::watched(|| self.ctx.get_logits_ith(i as i32))
    }

    fn truncate(&mut self, seq: usize, from: usize) -> bool {
        if self.ctx.kv_cache_seq_rm(seq as i32, u32::try_from(from).ok(), None).is_ok() {
            return true;
        }
        let _ = self.ctx.kv_cache_seq_rm(seq as i32, None, None);
        false
    }

    fn is_eog(&self, token: i32) -> bool {
        self.model.is_eog(token)
    }

    fn piece(&self, token: i32) -> Vec<u8> {
        self.model.text_piece(token)
    }
}
