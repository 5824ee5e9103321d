//! The slots and the token loop. One [`Engine`] owns a [`Decoder`] and decodes every active job
//! together, one batch per step: the next token of each generating slot, then prompt chunks of
//! the slots still reading theirs, oldest first (continuous batching, as llama-server does). A
//! job goes to the free slot whose cache shares the longest prefix with its prompt, and only the
//! rest of its prompt is evaluated. Jobs wait in a bounded queue while every slot is busy;
//! [`Handle`]s submit them from any thread. A cancelled job ends within one step.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use super::decoder::{BatchToken, Decoder};
use super::job::{Event, Generated, Job, Progress, Refused, Sink, StopReason, Summary};
use super::media::{self, MediaChunk, Prompt};
use super::metrics::{Gauges, Metrics};
use super::prompt_cache::{common_prefix, PromptCache, MIN_TOKENS as MIN_CACHED_TOKENS};
use super::slot_file;
use super::text::TextStream;
use crate::sampling::Sampler;

/// The prompt's last tokens, always evaluated in a batch of their own (the cache's copy of them
/// evaluated again): llama.cpp's CPU kernels compute a batch's rows in groups of four (the
/// repacked GEMMs) and the rest one by one, with different rounding, so four rows alone give the
/// first token the same logits whatever came before them.
pub const PROMPT_TAIL: usize = 4;

/// A job waiting for a slot.
struct Queued {
    job: Job,
    at: Instant,
}

/// What `/slots/{id}` may ask of a slot, as llama-server's slot actions: done once the slot is
/// idle (a running job first ends).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlotAction {
    /// Write the slot's cache and its tokens to this file (llama.cpp's sequence state file, with
    /// llama-server's token list).
    Save(PathBuf),
    /// Make the slot's cache the one this file holds (one strata or llama-server saved).
    Restore(PathBuf),
    /// Empty the slot's cache.
    Erase,
}

/// What a slot action did: the tokens saved, restored or erased, the bytes written or read, and
/// its time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SlotActionDone {
    pub tokens: usize,
    pub bytes: usize,
    pub ms: f64,
}

/// Where a slot action's outcome goes.
pub type SlotActionReply = Box<dyn FnOnce(Result<SlotActionDone, String>) + Send>;

/// A slot action waiting for its slot to be idle.
struct PendingAction {
    slot: usize,
    action: SlotAction,
    reply: SlotActionReply,
}

/// What the engine and its handles share.
struct Shared {
    waiting: Mutex<VecDeque<Queued>>,
    actions: Mutex<Vec<PendingAction>>,
    /// Signalled when a job is queued or a handle is dropped.
    wake: Condvar,
    capacity: usize,
    n_ctx_slot: usize,
    slots: Mutex<Vec<SlotStatus>>,
    metrics: Mutex<Metrics>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One slot as `/slots` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SlotStatus {
    pub id: usize,
    pub n_ctx: usize,
    pub is_processing: bool,
    /// Tokens the slot's cache holds.
    pub n_cached: usize,
    /// The running job's prompt, and the tokens it has generated.
    pub n_prompt_tokens: usize,
    pub n_decoded: usize,
}

/// Submits jobs to an [`Engine`] from any thread, and reads its state.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl Handle {
    /// Queues a job; refused when its prompt is empty or longer than a slot's context, or when
    /// the queue is full: as many jobs wait as there are free slots, and `queue` more.
    pub fn submit(&self, job: Job) -> Result<(), Refused> {
        if job.prompt.is_empty() {
            return Err(Refused::EmptyPrompt);
        }
        if job.prompt.len() > self.shared.n_ctx_slot {
            return Err(Refused::PromptTooLong { tokens: job.prompt.len(), n_ctx_slot: self.shared.n_ctx_slot });
        }
        media::check(&job.prompt, &job.media).map_err(Refused::BadMedia)?;
        let (n_slots, free) = {
            let slots = lock(&self.shared.slots);
            (slots.len(), slots.iter().filter(|s| !s.is_processing).count())
        };
        if let Some(slot) = job.slot.filter(|&s| s >= n_slots) {
            return Err(Refused::NoSuchSlot { slot, n_slots });
        }
        let mut waiting = lock(&self.shared.waiting);
        if waiting.len() >= self.shared.capacity + free {
            return Err(Refused::QueueFull);
        }
        waiting.push_back(Queued { job, at: Instant::now() });
        self.shared.wake.notify_all();
        Ok(())
    }

    /// Cells of KV cache each slot has.
    pub fn n_ctx_slot(&self) -> usize {
        self.shared.n_ctx_slot
    }

    /// Asks slot `slot` to save, restore or erase its cache once it is idle; `reply` gets the
    /// outcome. An error when there is no such slot.
    pub fn slot_action(&self, slot: usize, action: SlotAction, reply: SlotActionReply) -> Result<(), String> {
        let n_slots = lock(&self.shared.slots).len();
        if slot >= n_slots {
            return Err(Refused::NoSuchSlot { slot, n_slots }.to_string());
        }
        lock(&self.shared.actions).push(PendingAction { slot, action, reply });
        // Under the queue's lock, so that an engine about to wait sees the action or the signal.
        let _waiting = lock(&self.shared.waiting);
        self.shared.wake.notify_all();
        Ok(())
    }

    pub fn slots(&self) -> Vec<SlotStatus> {
        lock(&self.shared.slots).clone()
    }

    /// The counts, and the gauges of the moment.
    pub fn metrics(&self) -> (Metrics, Gauges) {
        (lock(&self.shared.metrics).clone(), self.gauges())
    }

    /// [`Handle::metrics`] for a scrape of `/metrics`: the window of the throughput gauges
    /// emptied for the next one ([`Metrics::scraped`]).
    pub fn scrape(&self) -> (Metrics, Gauges) {
        let gauges = self.gauges();
        (lock(&self.shared.metrics).scraped(), gauges)
    }

    fn gauges(&self) -> Gauges {
        let slots = lock(&self.shared.slots);
        Gauges {
            slots: slots.len(),
            slots_busy: slots.iter().filter(|s| s.is_processing).count(),
            queued: lock(&self.shared.waiting).len(),
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.wake.notify_all();
    }
}

/// A job in a slot.
struct Active {
    job: Job,
    sampler: Sampler,
    /// Prompt tokens in the cache (the first `cached` of them were there before).
    fed: usize,
    cached: usize,
    /// The sampled token not yet evaluated.
    pending: Option<i32>,
    /// The logits with the constraint's mask applied (kept to reuse its memory).
    masked: Vec<f32>,
    generated: usize,
    text: TextStream,
    queued_at: Instant,
    started: Instant,
    first_token: Option<Instant>,
    last_token: Option<Instant>,
}

impl Active {
    /// Where the job in slot `slot` stands at `now`.
    fn progress(&self, slot: usize, now: Instant) -> Progress {
        let first = self.first_token.unwrap_or(now);
        Progress {
            slot,
            prompt_tokens: self.job.prompt.len(),
            cached_tokens: self.cached,
            prompt_done: self.fed,
            completion_tokens: self.generated,
            prompt_ms: ms(self.started, first),
            generation_ms: ms(first, now),
        }
    }

    /// Sends where the job stands, when it asks; false when no one listens any more.
    fn report(&mut self, slot: usize, now: Instant) -> bool {
        !self.job.detail.progress || self.job.sink.send(Event::Progress(self.progress(slot, now)))
    }
}

/// One batch of a step, and whose tokens it holds.
struct Batch {
    tokens: Vec<BatchToken>,
    /// Each token's slot.
    owners: Vec<usize>,
    /// The slot whose prompt the batch reads (none: the generating slots' next tokens).
    prompt_of: Option<usize>,
    /// An image or audio run of that prompt, and its first position: the batch has no tokens.
    media: Option<(Arc<dyn MediaChunk>, usize)>,
}

#[derive(Default)]
struct Slot {
    /// The tokens the slot's cache holds.
    cache: Vec<i32>,
    active: Option<Active>,
}

/// The slots over one decoder.
pub struct Engine<D: Decoder> {
    decoder: D,
    slots: Vec<Slot>,
    shared: Arc<Shared>,
    prompts: PromptCache<D::Saved>,
}

fn ms(from: Instant, to: Instant) -> f64 {
    (to - from).as_secs_f64() * 1e3
}

impl<D: Decoder> Engine<D> {
    /// An engine with one slot per sequence of `decoder` (their caches emptied); at most
    /// `queue` jobs wait for a slot.
    pub fn new(mut decoder: D, queue: usize) -> Engine<D> {
        for seq in 0..decoder.n_seq() {
            decoder.truncate(seq, 0);
        }
        let n_ctx_slot = decoder.n_ctx_seq();
        let slots: Vec<Slot> = (0..decoder.n_seq()).map(|_| Slot::default()).collect();
        let status = (0..slots.len()).map(|id| SlotStatus { id, n_ctx: n_ctx_slot, ..SlotStatus::default() }).collect();
        let shared = Arc::new(Shared {
            waiting: Mutex::new(VecDeque::new()),
            actions: Mutex::new(Vec::new()),
            wake: Condvar::new(),
            capacity: queue,
            n_ctx_slot,
            slots: Mutex::new(status),
            metrics: Mutex::new(Metrics::default()),
        });
        Engine { decoder, slots, shared, prompts: PromptCache::new(0) }
    }

    /// Keeps the prompts slots give up in host memory, up to `bytes` ([`PromptCache`]).
    pub fn with_prompt_cache(mut self, bytes: usize) -> Engine<D> {
        self.prompts = PromptCache::new(bytes);
        self
    }

    pub fn handle(&self) -> Handle {
        Handle { shared: self.shared.clone() }
    }

    pub fn decoder(&mut self) -> &mut D {
        &mut self.decoder
    }

    /// Cells of KV cache each slot has.
    pub fn n_ctx_slot(&self) -> usize {
        self.shared.n_ctx_slot
    }

    /// Whether no job runs or waits.
    pub fn is_idle(&self) -> bool {
        self.slots.iter().all(|s| s.active.is_none()) && lock(&self.shared.waiting).is_empty()
    }

    /// Empties every idle slot's cache (a conversation's reset; a benchmark's fresh start).
    pub fn clear(&mut self) {
        for (seq, slot) in self.slots.iter_mut().enumerate() {
            if slot.active.is_none() {
                self.decoder.truncate(seq, 0);
                slot.cache.clear();
            }
        }
        self.publish();
    }

    /// Runs jobs as they come until every [`Handle`] is gone and nothing is left to do.
    pub fn run(&mut self) {
        loop {
            {
                let mut waiting = lock(&self.shared.waiting);
                while waiting.is_empty()
                    && self.slots.iter().all(|s| s.active.is_none())
                    && lock(&self.shared.actions).is_empty()
                {
                    if Arc::strong_count(&self.shared) == 1 {
                        return;
                    }
                    waiting = self.shared.wake.wait(waiting).unwrap_or_else(|e| e.into_inner());
                }
            }
            self.step();
        }
    }

    /// Runs one job on this thread to its end: `on_text` gets the text as it settles,
    /// `keep_going` is asked at every step (false interrupts the job). The whole text and the
    /// summary, or the model's failure or the refusal as an error.
    pub fn generate(
        &mut self,
        prompt: impl Into<Prompt>,
        params: crate::sampling::SamplingParams,
        limits: Limits,
        mut on_text: impl FnMut(&str),
        keep_going: impl Fn() -> bool,
    ) -> anyhow::Result<(String, Summary)> {
        let (events, received) = std::sync::mpsc::channel();
        let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sink = Box::new(ChannelSink { events, cancel: cancel.clone() });
        let Limits { max_tokens, stop, ignore_eos, constraint } = limits;
        let detail = Default::default();
        let Prompt { tokens: prompt, media } = prompt.into();
        self.handle().submit(Job {
            prompt,
            media,
            params,
            max_tokens,
            stop,
            ignore_eos,
            constraint,
            detail,
            slot: None,
            sink,
        })?;
        let mut text = String::new();
        loop {
            self.step();
            for event in received.try_iter() {
                match event {
                    Event::Text(t) => {
                        on_text(&t);
                        text += &t;
                    }
                    Event::Done(summary) => return Ok((text, summary)),
                    Event::Failed(message) => anyhow::bail!(message),
                    Event::Token(_) | Event::Progress(_) => {}
                }
            }
            if self.is_idle() {
                anyhow::bail!("the generation was dropped before it started");
            }
            if !keep_going() {
                cancel.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// One step: drops cancelled jobs, gives waiting jobs the free slots, decodes one batch and
    /// samples the next token of every slot that has logits.
    pub fn step(&mut self) {
        self.end_cancelled();
        self.slot_actions();
        self.assign();
        for Batch { tokens: batch, owners, prompt_of, media } in self.form_batches() {
            let decoded = match &media {
                Some((chunk, pos)) => self.decoder.decode_media(owners[0], *pos, chunk.as_ref()),
                None => self.decoder.decode(&batch),
            };
            if let Err(e) = decoded {
                self.fail(&owners, &format!("{e:#}"));
                continue;
            }
            if let Some(i) = prompt_of {
                self.report(i);
            }
            {
                let mut m = lock(&self.shared.metrics);
                m.decodes += 1;
                // A batch holds each slot's tokens together: the slots are where the owner changes.
                m.busy_slots_decoded += 1 + owners.windows(2).filter(|w| w[0] != w[1]).count() as u64;
                m.n_tokens_max =
                    owners.iter().map(|&i| self.slots[i].cache.len() as u64).fold(m.n_tokens_max, u64::max);
            }
            // A media run asks for no logits: text follows it.
            for (b, &i) in owners.iter().enumerate().filter(|_| media.is_none()) {
                if batch[b].logits {
                    self.next_token(i, b);
                }
            }
        }
        self.publish();
    }

    /// Jobs whose owner cancelled them: queued ones are dropped, running ones end interrupted.
    fn end_cancelled(&mut self) {
        lock(&self.shared.waiting).retain(|q| !q.job.sink.cancelled());
        for i in 0..self.slots.len() {
            if self.slots[i].active.as_ref().is_some_and(|a| a.job.sink.cancelled()) {
                self.finish(i, StopReason::Interrupted);
            }
        }
    }

    /// Does the slot actions whose slots are idle; the others wait for their slot's job to end.
    fn slot_actions(&mut self) {
        let ready: Vec<PendingAction> = {
            let mut actions = lock(&self.shared.actions);
            let (ready, busy) = actions.drain(..).partition(|a| self.slots[a.slot].active.is_none());
            *actions = busy;
            ready
        };
        for PendingAction { slot, action, reply } in ready {
            let started = Instant::now();
            let outcome = self.slot_action(slot, &action).map(|(tokens, bytes)| SlotActionDone {
                tokens,
                bytes,
                ms: ms(started, Instant::now()),
            });
            self.publish();
            reply(outcome);
        }
    }

    /// One slot action on idle slot `i`: the tokens and bytes it concerned.
    fn slot_action(&mut self, i: usize, action: &SlotAction) -> Result<(usize, usize), String> {
        match action {
            SlotAction::Save(path) => {
                let cache = &self.slots[i].cache;
                let bytes = self
                    .decoder
                    .save_file(i, path, &slot_file::pack(cache))
                    .map_err(|e| format!("cannot save slot {i} to {}: {e:#}", path.display()))?;
                Ok((cache.len(), bytes))
            }
            SlotAction::Restore(path) => {
                let capacity = self.shared.n_ctx_slot + slot_file::OVERHEAD;
                let loaded = self.decoder.load_file(i, path, capacity).map_err(|e| format!("{e:#}")).and_then(
                    |(words, bytes)| {
                        let tokens = slot_file::unpack(&words)?;
                        let n_vocab = self.decoder.n_vocab();
                        if let Some(t) = tokens.iter().find(|&&t| usize::try_from(t).map_or(true, |t| t >= n_vocab)) {
                            return Err(format!("it holds token {t}, not one of this model's {n_vocab}"));
                        }
                        if tokens.len() > self.shared.n_ctx_slot {
                            return Err(format!(
                                "its {} tokens do not fit a slot of {}",
                                tokens.len(),
                                self.shared.n_ctx_slot
                            ));
                        }
                        Ok((tokens, bytes))
                    },
                );
                let slot = &mut self.slots[i];
                match loaded {
                    Ok((tokens, bytes)) => {
                        slot.cache = tokens;
                        Ok((slot.cache.len(), bytes))
                    }
                    Err(e) => {
                        self.decoder.truncate(i, 0);
                        slot.cache.clear();
                        Err(format!("cannot restore slot {i} from {}: {e}", path.display()))
                    }
                }
            }
            SlotAction::Erase => {
                let n = self.slots[i].cache.len();
                self.decoder.truncate(i, 0);
                self.slots[i].cache.clear();
                Ok((n, 0))
            }
        }
    }

    /// Gives waiting jobs the free slots, in order: each the one whose cache shares the longest
    /// prefix with its prompt, keeping that prefix and dropping the rest of the slot's cache.
    fn assign(&mut self) {
        let mut waiting = lock(&self.shared.waiting);
        let mut next = 0;
        while let Some(queued) = waiting.get(next) {
            let prompt = &queued.job.prompt;
            let pinned = queued.job.slot;
            let best = self
                .slots
                .iter()
                .enumerate()
                .filter(|(i, s)| s.active.is_none() && pinned.is_none_or(|p| p == *i))
                .map(|(i, s)| (common_prefix(&s.cache, prompt), std::cmp::Reverse(i)))
                .max();
            let Some((mut keep, std::cmp::Reverse(i))) = best else {
                if pinned.is_some() {
                    next += 1; // its slot is busy: the jobs behind it may take the others
                    continue;
                }
                return;
            };
            let Queued { job, at } = waiting.remove(next).expect("queued");
            let slot = &mut self.slots[i];
            if self.prompts.is_enabled() {
                // What the slot holds and the job will not keep goes to the prompt cache; an
                // entry there that shares more with the prompt comes back into the slot.
                if keep < slot.cache.len() && slot.cache.len() >= MIN_CACHED_TOKENS {
                    if let Some((state, bytes)) = self.decoder.save(i) {
                        self.prompts.insert(slot.cache.clone(), state, bytes);
                    }
                }
                if let Some((tokens, state)) = self.prompts.take_best(&job.prompt, keep) {
                    if self.decoder.restore(i, &state) {
                        keep = common_prefix(&tokens, &job.prompt);
                        slot.cache = tokens;
                    } else {
                        self.decoder.truncate(i, 0);
                        slot.cache.clear();
                        keep = 0;
                    }
                }
            }
            // The prompt's tail is evaluated again, for the first token's logits ([`PROMPT_TAIL`]).
            keep = keep.min(job.prompt.len() - PROMPT_TAIL.min(job.prompt.len()));
            // A media run is evaluated whole: a cache that ends inside one keeps what is before it.
            keep = media::cut_before(&job.media, keep);
            if keep < slot.cache.len() && !self.decoder.truncate(i, keep) {
                keep = 0;
            }
            slot.cache.truncate(keep);
            let mut sampler = Sampler::new(job.params.clone());
            for &t in job.prompt.iter().filter(|&&t| t >= 0) {
                sampler.accept(t as u32);
            }
            let text = TextStream::new(&job.stop);
            let started = Instant::now();
            let mut a = Active {
                sampler,
                fed: keep,
                cached: keep,
                pending: None,
                masked: Vec::new(),
                generated: 0,
                text,
                queued_at: at,
                started,
                first_token: None,
                last_token: None,
                job,
            };
            // Nothing of the prompt evaluated yet: its time is 0.
            if a.report(i, started) {
                slot.active = Some(a);
            }
        }
    }

    /// Sends where slot `i`'s job stands, when it asks; a job no one listens to is dropped (its
    /// slot free, its cache kept).
    fn report(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        if slot.active.as_mut().is_some_and(|a| !a.report(i, Instant::now())) {
            slot.active = None;
        }
    }

    /// The step's batches, each decoded on its own: every generating slot's pending token
    /// together, then for each slot reading its prompt (the slot that took its slot first served
    /// first, up to `n_batch` prompt tokens in all) a batch of its own: a chunk of the prompt, or
    /// the prompt's last [`PROMPT_TAIL`] tokens. So a prompt is evaluated in batches that hold
    /// nothing of other requests, and its last tokens (whose logits give the first token) always
    /// in the same one: the first token does not depend on what else the server is doing, nor on
    /// how much of the prompt a cache held. Each token goes to its slot's cache; `owners` gives
    /// each token's slot.
    fn form_batches(&mut self) -> Vec<Batch> {
        let mut batches = Vec::new();
        let mut generating = (Vec::new(), Vec::new());
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some(token) = slot.active.as_mut().and_then(|a| a.pending.take()) else { continue };
            generating.0.push(BatchToken { token, seq: i, pos: slot.cache.len(), logits: true });
            generating.1.push(i);
            slot.cache.push(token);
        }
        if !generating.0.is_empty() {
            batches.push(Batch { tokens: generating.0, owners: generating.1, prompt_of: None, media: None });
        }
        let mut reading: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].active.as_ref().is_some_and(|a| a.fed < a.job.prompt.len()))
            .collect();
        reading.sort_by_key(|&i| self.slots[i].active.as_ref().map(|a| a.started));
        let mut room = self.decoder.n_batch();
        for i in reading {
            let slot = &mut self.slots[i];
            let a = slot.active.as_mut().expect("reading");
            let n = a.job.prompt.len();
            if let Some(m) = a.job.media.iter().find(|m| m.start == a.fed) {
                // A media run: a batch of its own, evaluated whole.
                let (chunk, pos) = (m.chunk.clone(), slot.cache.len());
                slot.cache.extend_from_slice(&a.job.prompt[m.range()]);
                a.fed = m.range().end;
                batches.push(Batch {
                    tokens: Vec::new(),
                    owners: vec![i],
                    prompt_of: Some(i),
                    media: Some((chunk, pos)),
                });
                break;
            }
            // The tail holds no media: text follows the last run ([`media::check`]).
            let last_media_end = a.job.media.last().map_or(0, |m| m.range().end);
            let tail = (n - PROMPT_TAIL.min(n)).max(last_media_end);
            let next_media = a.job.media.iter().map(|m| m.start).find(|&s| s > a.fed).unwrap_or(n);
            let end = if a.fed < tail { (a.fed + room).min(tail).min(next_media) } else { n };
            if end - a.fed > room {
                break; // the tail waits for a step with room for all of it
            }
            let mut batch = Vec::with_capacity(end - a.fed);
            for &token in &a.job.prompt[a.fed..end] {
                let last = slot.cache.len() + 1 == n;
                batch.push(BatchToken { token, seq: i, pos: slot.cache.len(), logits: last });
                slot.cache.push(token);
            }
            room -= end - a.fed;
            a.fed = end;
            let owners = vec![i; batch.len()];
            batches.push(Batch { tokens: batch, owners, prompt_of: Some(i), media: None });
            if room == 0 {
                break;
            }
        }
        batches
    }

    /// A failed decode: nothing of the batch is trustworthy, so its jobs fail and their slots'
    /// caches are dropped.
    fn fail(&mut self, owners: &[usize], message: &str) {
        let mut done = vec![false; self.slots.len()];
        for &i in owners {
            if std::mem::replace(&mut done[i], true) {
                continue;
            }
            if let Some(mut a) = self.slots[i].active.take() {
                a.job.sink.send(Event::Failed(message.to_string()));
                lock(&self.shared.metrics).failed += 1;
            }
            self.decoder.truncate(i, 0);
            self.slots[i].cache.clear();
        }
    }

    /// Slot `i` has logits (batch position `b`): stop at the limit, or sample, emit, and stop at
    /// an end-of-generation token, a stop string, the limit or the end of the context.
    fn next_token(&mut self, i: usize, b: usize) {
        let n_ctx = self.shared.n_ctx_slot;
        let slot = &mut self.slots[i];
        let Some(a) = slot.active.as_mut() else { return };
        if a.job.max_tokens.is_some_and(|n| a.generated >= n) {
            return self.finish(i, StopReason::Limit);
        }
        let logits = self.decoder.logits(b);
        let logits = match a.job.constraint.as_mut() {
            None => logits,
            Some(c) => {
                a.masked.clear();
                a.masked.extend_from_slice(logits);
                if c.mask(&mut a.masked).is_err() {
                    return self.finish(i, StopReason::Constraint);
                }
                &a.masked
            }
        };
        let (token, probs) = match a.job.detail.probs {
            None => (a.sampler.sample(logits) as i32, None),
            Some(p) => {
                let (token, probs) = a.sampler.sample_with_probs(logits, p.n, p.post_sampling);
                (token as i32, Some(probs))
            }
        };
        let now = Instant::now();
        if let Some(last) = a.last_token.replace(now) {
            lock(&self.shared.metrics).time_per_token.observe((now - last).as_secs_f64());
        }
        if a.first_token.is_none() {
            a.first_token = Some(now);
            lock(&self.shared.metrics).time_to_first_token.observe((now - a.queued_at).as_secs_f64());
        }
        if self.decoder.is_eog(token) && !a.job.ignore_eos {
            return self.finish(i, StopReason::Eog);
        }
        a.generated += 1;
        a.sampler.accept(token as u32);
        if !a.report(i, now) {
            slot.active = None;
            return;
        }
        let piece = self.decoder.piece(token);
        let constraint_ended = match a.job.constraint.as_mut() {
            None => None,
            Some(c) => match c.accept(token, &piece) {
                Err(_) => Some(StopReason::Constraint),
                Ok(()) if c.is_complete() => Some(StopReason::Eog),
                Ok(()) => None,
            },
        };
        if a.job.detail.tokens && !a.job.sink.send(Event::Token(Generated { id: token, piece: piece.clone(), probs })) {
            slot.active = None;
            return;
        }
        let mut text = String::new();
        let stopped = a.text.push(&piece, &mut |s: &str| text.push_str(s));
        if !text.is_empty() && !a.job.sink.send(Event::Text(text)) {
            slot.active = None; // no one listens: the slot is free, its cache kept
            return;
        }
        let end = if stopped {
            Some(StopReason::StopString)
        } else if constraint_ended.is_some() {
            constraint_ended
        } else if a.job.max_tokens.is_some_and(|n| a.generated >= n) {
            Some(StopReason::Limit)
        } else if slot.cache.len() >= n_ctx {
            Some(StopReason::Context)
        } else {
            a.pending = Some(token);
            None
        };
        if let Some(end) = end {
            self.finish(i, end);
        }
    }

    /// Ends slot `i`'s job: the rest of its text, then the summary.
    fn finish(&mut self, i: usize, reason: StopReason) {
        let Some(mut a) = self.slots[i].active.take() else { return };
        let p = a.progress(i, Instant::now());
        let mut rest = String::new();
        a.text.finish(reason == StopReason::StopString, &mut |s: &str| rest.push_str(s));
        if !rest.is_empty() {
            a.job.sink.send(Event::Text(rest));
        }
        let summary = Summary {
            stop_reason: reason,
            prompt_tokens: p.prompt_tokens,
            cached_tokens: p.cached_tokens,
            completion_tokens: p.completion_tokens,
            slot: i,
            queue_ms: ms(a.queued_at, a.started),
            prompt_ms: p.prompt_ms,
            generation_ms: p.generation_ms,
        };
        lock(&self.shared.metrics).finished(&summary);
        // The slot is free before its owner hears so: what it reads next of the engine agrees.
        self.publish();
        a.job.sink.send(Event::Done(summary));
    }

    /// The slots' state, for [`Handle::slots`].
    fn publish(&self) {
        let mut status = lock(&self.shared.slots);
        for ((s, slot), id) in status.iter_mut().zip(&self.slots).zip(0..) {
            *s = SlotStatus {
                id,
                n_ctx: self.shared.n_ctx_slot,
                is_processing: slot.active.is_some(),
                n_cached: slot.cache.len(),
                n_prompt_tokens: slot.active.as_ref().map_or(0, |a| a.job.prompt.len()),
                n_decoded: slot.active.as_ref().map_or(0, |a| a.generated),
            };
        }
    }
}

/// What a job's text may run to and must match: the limits of [`Engine::generate`].
#[derive(Default)]
pub struct Limits {
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
    pub ignore_eos: bool,
    pub constraint: Option<Box<dyn super::job::Constraint>>,
}

/// A sink for a job run on the caller's thread ([`Engine::generate`]): events into a channel,
/// cancelled by a flag.
pub(super) struct ChannelSink {
    pub(super) events: std::sync::mpsc::Sender<Event>,
    pub(super) cancel: Arc<std::sync::atomic::AtomicBool>,
}

impl Sink for ChannelSink {
    fn send(&mut self, event: Event) -> bool {
        self.events.send(event).is_ok()
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(std::sync::atomic::Ordering::Relaxed)
    }
}
