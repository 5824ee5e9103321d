//! The slots: one thread owns the llama.cpp context and decodes every active request together,
//! one batch per step — the next token of each generating slot and the prompt chunks of those
//! still reading theirs (continuous batching, as llama-server does). A request goes to the free
//! slot whose cached tokens share the longest prefix with its prompt, and only the rest of its
//! prompt is evaluated. Requests wait in a bounded queue while every slot is busy. A request
//! whose receiver is gone (the client hung up) is dropped at the next step.

use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::Instant;

use anyhow::{anyhow, Result};
use strata_run::generation::TextStream;
use strata_run::sampling::{Sampler, SamplingParams};
use tokio::sync::mpsc::UnboundedSender;

use crate::llama::{BatchToken, ContextOptions, Model, MultiSession};

/// One completion to run.
pub struct Job {
    pub prompt: Vec<i32>,
    pub params: SamplingParams,
    /// Most tokens to generate; `None` runs to the end of the slot's context.
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
    pub ignore_eos: bool,
    /// Where the text goes as it is settled, then the summary.
    pub events: UnboundedSender<Event>,
}

/// What a job sends back.
#[derive(Debug)]
pub enum Event {
    /// Settled text (whole UTF-8 that cannot be the start of a stop string).
    Text(String),
    Done(Summary),
    Failed(String),
}

/// Why a completion ended, in OpenAI's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// An end-of-generation token or a stop string.
    Stop,
    /// The token limit or the end of the slot's context.
    Length,
}

impl Finish {
    pub fn name(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

/// A finished job's counts and timings.
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    pub finish: Finish,
    pub prompt_tokens: usize,
    /// Prompt tokens the slot's cache already held.
    pub cached_tokens: usize,
    pub completion_tokens: usize,
    pub slot: usize,
    pub prompt_ms: f64,
    pub generation_ms: f64,
}

/// Why a job was not queued.
#[derive(Debug)]
pub enum Refused {
    QueueFull,
    Stopped,
}

/// The HTTP side's end of the engine.
#[derive(Clone)]
pub struct Engine {
    jobs: SyncSender<Job>,
    /// Cells of KV cache each slot has: a prompt must be shorter.
    pub n_ctx_slot: usize,
    pub n_slots: usize,
}

impl Engine {
    /// Starts the engine thread over `model` with `n_slots` slots sharing a context of
    /// `opts.n_ctx` tokens; at most `queue` jobs wait for a slot.
    pub fn start(model: &'static Model, opts: &ContextOptions, n_slots: u32, queue: usize) -> Result<Engine> {
        let (jobs, rx) = mpsc::sync_channel(queue);
        let (ready, is_ready) = mpsc::channel();
        let opts = opts.clone();
        std::thread::Builder::new()
            .name("strata-engine".into())
            .spawn(move || match model.multi_session(&opts, n_slots) {
                Ok(session) => {
                    let _ = ready.send(Ok(session.n_ctx_seq()));
                    run(session, n_slots as usize, rx);
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                }
            })
            .map_err(|e| anyhow!("cannot start the engine thread: {e}"))?;
        let n_ctx_slot = is_ready.recv().map_err(|_| anyhow!("the engine thread ended while starting"))??;
        Ok(Engine { jobs, n_ctx_slot, n_slots: n_slots as usize })
    }

    /// Queues a job.
    pub fn submit(&self, job: Job) -> Result<(), Refused> {
        self.jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => Refused::QueueFull,
            TrySendError::Disconnected(_) => Refused::Stopped,
        })
    }
}

/// A job in a slot.
struct Active {
    job: Job,
    sampler: Sampler,
    /// Prompt tokens in the cache.
    fed: usize,
    /// Prompt tokens that were already there.
    cached: usize,
    /// The sampled token not yet evaluated.
    pending: Option<i32>,
    generated: usize,
    text: TextStream,
    started: Instant,
    first_token: Option<Instant>,
}

struct Slot {
    seq: i32,
    /// The tokens the slot's cache holds.
    cache: Vec<i32>,
    active: Option<Active>,
}

fn common_prefix(a: &[i32], b: &[i32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The engine loop: runs until every `Engine` handle is dropped.
fn run(mut session: MultiSession<'static>, n_slots: usize, jobs: Receiver<Job>) {
    let mut slots: Vec<Slot> = (0..n_slots).map(|i| Slot { seq: i as i32, cache: Vec::new(), active: None }).collect();
    let mut waiting: VecDeque<Job> = VecDeque::new();
    let n_ctx = session.n_ctx_seq();
    loop {
        if waiting.is_empty() && slots.iter().all(|s| s.active.is_none()) {
            match jobs.recv() {
                Ok(job) => waiting.push_back(job),
                Err(_) => return,
            }
        }
        while let Ok(job) = jobs.try_recv() {
            waiting.push_back(job);
        }
        waiting.retain(|j| !j.events.is_closed());
        // Hung-up clients free their slots; what their cache holds stays for the next prompt.
        for slot in &mut slots {
            if slot.active.as_ref().is_some_and(|a| a.job.events.is_closed()) {
                slot.active = None;
            }
        }
        assign(&mut session, &mut slots, &mut waiting);

        // The batch: each generating slot's pending token, then prompt chunks.
        let mut batch: Vec<BatchToken> = Vec::new();
        let mut owners: Vec<usize> = Vec::new();
        for (i, slot) in slots.iter_mut().enumerate() {
            let Some(a) = slot.active.as_mut() else { continue };
            if let Some(token) = a.pending.take() {
                batch.push(BatchToken { token, seq: slot.seq, pos: slot.cache.len(), logits: true });
                owners.push(i);
                slot.cache.push(token);
            }
        }
        for (i, slot) in slots.iter_mut().enumerate() {
            let Some(a) = slot.active.as_mut() else { continue };
            let room = session.n_batch() - batch.len();
            if a.fed == a.job.prompt.len() || room == 0 {
                continue;
            }
            let end = (a.fed + room).min(a.job.prompt.len());
            for (k, &token) in a.job.prompt[a.fed..end].iter().enumerate() {
                let last = a.fed + k + 1 == a.job.prompt.len();
                batch.push(BatchToken { token, seq: slot.seq, pos: slot.cache.len(), logits: last });
                owners.push(i);
                slot.cache.push(token);
            }
            a.fed = end;
        }
        if batch.is_empty() {
            continue;
        }
        if let Err(e) = session.decode(&batch) {
            // Nothing of this batch is trustworthy: fail its jobs and forget their caches.
            let message = format!("{e:#}");
            for &i in &owners {
                let slot = &mut slots[i];
                if let Some(a) = slot.active.take() {
                    let _ = a.job.events.send(Event::Failed(message.clone()));
                }
                session.truncate(slot.seq, 0);
                slot.cache.clear();
            }
            continue;
        }
        for b in (0..batch.len()).filter(|&b| batch[b].logits) {
            let slot = &mut slots[owners[b]];
            let Some(a) = slot.active.as_mut() else { continue };
            let model = session.model;
            let token = a.sampler.sample(session.logits(b)) as i32;
            a.first_token.get_or_insert_with(Instant::now);
            let end = if model.is_eog(token) && !a.job.ignore_eos {
                Some(End::Eog)
            } else {
                a.generated += 1;
                a.sampler.accept(token as u32);
                let mut text = String::new();
                let stopped = a.text.push(&model.piece(token, false), &mut |s: &str| text.push_str(s));
                if !text.is_empty() && a.job.events.send(Event::Text(text)).is_err() {
                    slot.active = None;
                    continue;
                }
                if stopped {
                    Some(End::StopString)
                } else if a.job.max_tokens.is_some_and(|n| a.generated >= n) || slot.cache.len() >= n_ctx {
                    Some(End::Length)
                } else {
                    a.pending = Some(token);
                    None
                }
            };
            if let Some(end) = end {
                let a = slot.active.take().expect("active");
                finish_job(a, end, owners[b]);
            }
        }
    }
}

/// How a job ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Eog,
    StopString,
    Length,
}

/// Sends the rest of the text and the summary.
fn finish_job(a: Active, end: End, slot: usize) {
    let finish = if end == End::Length { Finish::Length } else { Finish::Stop };
    let mut rest = String::new();
    a.text.finish(end == End::StopString, &mut |s: &str| rest.push_str(s));
    if !rest.is_empty() {
        let _ = a.job.events.send(Event::Text(rest));
    }
    let first = a.first_token.unwrap_or_else(Instant::now);
    let summary = Summary {
        finish,
        prompt_tokens: a.job.prompt.len(),
        cached_tokens: a.cached,
        completion_tokens: a.generated,
        slot,
        prompt_ms: (first - a.started).as_secs_f64() * 1e3,
        generation_ms: first.elapsed().as_secs_f64() * 1e3,
    };
    let _ = a.job.events.send(Event::Done(summary));
}

/// Gives waiting jobs the free slots: each the one whose cache shares the longest prefix with
/// its prompt, keeping that prefix and dropping the rest of the slot's cache.
fn assign(session: &mut MultiSession<'static>, slots: &mut [Slot], waiting: &mut VecDeque<Job>) {
    while let Some(job) = waiting.front() {
        let best = slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.active.is_none())
            .max_by_key(|(i, s)| (common_prefix(&s.cache, &job.prompt), std::cmp::Reverse(*i)));
        let Some((i, _)) = best else { return };
        let job = waiting.pop_front().expect("front");
        let slot = &mut slots[i];
        // The last prompt token is evaluated again, for its logits.
        let mut keep = common_prefix(&slot.cache, &job.prompt).min(job.prompt.len().saturating_sub(1));
        if keep < slot.cache.len() && !session.truncate(slot.seq, keep) {
            keep = 0;
        }
        slot.cache.truncate(keep);
        let mut sampler = Sampler::new(job.params.clone());
        for &t in &job.prompt {
            sampler.accept(t as u32);
        }
        let text = TextStream::new(&job.stop);
        slot.active = Some(Active {
            sampler,
            fed: keep,
            cached: keep,
            pending: None,
            generated: 0,
            text,
            started: Instant::now(),
            first_token: None,
            job,
        });
    }
}
