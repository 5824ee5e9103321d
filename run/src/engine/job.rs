//! What the engine is asked (a [`Job`]) and what it answers, through the job's [`Sink`]: settled
//! text as it comes, then a [`Summary`] (or a failure).

use crate::sampling::{SamplingParams, TokenProbs};

/// One generation to run.
pub struct Job {
    pub prompt: Vec<i32>,
    /// The runs of `prompt` that are images or audio ([`super::media`]), in order.
    pub media: Vec<super::Media>,
    pub params: SamplingParams,
    /// Most tokens to generate; `None` runs to the end of the slot's context.
    pub max_tokens: Option<usize>,
    /// Stop strings (not included in the text); see [`super::check_stop_strings`].
    pub stop: Vec<String>,
    /// Keep generating past end-of-generation tokens.
    pub ignore_eos: bool,
    /// What the text must match (a grammar), if anything.
    pub constraint: Option<Box<dyn Constraint>>,
    /// Whether each generated token is also reported ([`Event::Token`]), and with which
    /// probabilities.
    pub detail: Detail,
    /// The slot the job must run in (llama-server's `id_slot`): it waits for that slot while
    /// jobs behind it take the others. `None`: the free slot holding the longest prefix.
    pub slot: Option<usize>,
    /// Where the job's events go.
    pub sink: Box<dyn Sink>,
}

/// Limits what a job may generate (a JSON schema, a grammar): a token mask the sampler applies
/// before it draws, and the generated tokens fed back.
pub trait Constraint: Send {
    /// Sets the logit of every token that may not come next to -inf; an error when none may
    /// (the constraint cannot go on).
    fn mask(&mut self, logits: &mut [f32]) -> Result<(), String>;
    /// Records the generated token and its bytes.
    fn accept(&mut self, token: i32, piece: &[u8]) -> Result<(), String>;
    /// Whether the text is complete and nothing more may follow: generation ends there.
    fn is_complete(&mut self) -> bool;
}

/// What a job reports of each generated token beside the text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Detail {
    /// Send an [`Event::Token`] for every generated token.
    pub tokens: bool,
    /// With the `n` likeliest tokens' probabilities ([`crate::sampling::Sampler::sample_with_probs`]).
    pub probs: Option<Probs>,
    /// Send an [`Event::Progress`] when the job takes its slot, after each batch of its prompt,
    /// and with each generated token (before its [`Event::Token`]).
    pub progress: bool,
}

/// The probabilities a job reports for each token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probs {
    pub n: usize,
    /// The sampler's distribution rather than the model's.
    pub post_sampling: bool,
}

/// A generated token, as [`Detail`] asks: before the text it belongs to.
#[derive(Clone, Debug, PartialEq)]
pub struct Generated {
    pub id: i32,
    /// The token's bytes (part of a UTF-8 character, possibly).
    pub piece: Vec<u8>,
    pub probs: Option<TokenProbs>,
}

/// Where a running job stands ([`Detail::progress`]): llama-server's `prompt_progress` and its
/// timings of the moment.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Progress {
    /// The slot (sequence) that runs the job.
    pub slot: usize,
    pub prompt_tokens: usize,
    /// Prompt tokens the slot's cache already held (not evaluated again).
    pub cached_tokens: usize,
    /// Prompt tokens in the slot's cache so far: `cached_tokens` when the job takes its slot,
    /// `prompt_tokens` once the prompt is read.
    pub prompt_done: usize,
    pub completion_tokens: usize,
    /// From taking a slot to the first token, or to now while the prompt is read.
    pub prompt_ms: f64,
    /// From the first token to now.
    pub generation_ms: f64,
}

impl Progress {
    /// Prompt tokens evaluated so far (the rest came from the cache).
    pub fn prompt_evaluated(&self) -> usize {
        self.prompt_done - self.cached_tokens
    }

    pub fn prompt_tokens_per_second(&self) -> f64 {
        self.prompt_evaluated() as f64 * 1e3 / self.prompt_ms.max(1e-6)
    }

    /// Tokens a second after the first, which comes from the prompt's logits: `generation_ms`
    /// spans the other `completion_tokens - 1` steps (0 for one token).
    pub fn generation_tokens_per_second(&self) -> f64 {
        match self.completion_tokens {
            0 | 1 => 0.0,
            n => (n - 1) as f64 * 1e3 / self.generation_ms.max(1e-6),
        }
    }

    /// Milliseconds a generation step took on average (0 for one token).
    pub fn generation_ms_per_token(&self) -> f64 {
        match self.completion_tokens {
            0 | 1 => 0.0,
            n => self.generation_ms / (n - 1) as f64,
        }
    }
}

/// Where a job's events go, and whether its owner still wants it.
pub trait Sink: Send {
    /// Hands over an event; false when no one listens any more (the job is then dropped).
    fn send(&mut self, event: Event) -> bool;
    /// Whether the job should stop now (a client that hung up, Ctrl-C): it ends with
    /// [`StopReason::Interrupted`] within one step.
    fn cancelled(&self) -> bool;
}

/// What a job sends back.
#[derive(Debug)]
pub enum Event {
    /// Where the job stands (only when the job's [`Detail`] asks).
    Progress(Progress),
    /// A generated token (only when the job's [`Detail`] asks), sent before its text.
    Token(Generated),
    /// Settled text: whole UTF-8 that cannot be the start of a stop string.
    Text(String),
    /// The end, with counts and timings (after the last text).
    Done(Summary),
    /// The model failed; nothing more comes.
    Failed(String),
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// An end-of-generation token.
    Eog,
    /// A stop string (not included in the text).
    StopString,
    /// `max_tokens` were generated.
    Limit,
    /// The slot's context is full.
    Context,
    /// The job's owner asked to stop ([`Sink::cancelled`]).
    Interrupted,
    /// The job's [`Constraint`] failed (no token may come next).
    Constraint,
}

impl StopReason {
    pub fn name(self) -> &'static str {
        match self {
            StopReason::Eog => "eog",
            StopReason::StopString => "stop_string",
            StopReason::Limit => "limit",
            StopReason::Context => "context",
            StopReason::Interrupted => "interrupted",
            StopReason::Constraint => "constraint",
        }
    }

    /// OpenAI's `finish_reason`: "stop" for an end-of-generation token or a stop string,
    /// "length" for the limit or the end of the context.
    pub fn finish_reason(self) -> &'static str {
        match self {
            StopReason::Limit | StopReason::Context => "length",
            StopReason::Eog | StopReason::StopString | StopReason::Interrupted | StopReason::Constraint => "stop",
        }
    }
}

/// A finished job's counts and timings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub stop_reason: StopReason,
    pub prompt_tokens: usize,
    /// Prompt tokens the slot's cache already held (not evaluated again).
    pub cached_tokens: usize,
    pub completion_tokens: usize,
    /// The slot (sequence) that ran the job.
    pub slot: usize,
    /// Waiting for a slot.
    pub queue_ms: f64,
    /// From taking a slot to the first token (the prompt's evaluation).
    pub prompt_ms: f64,
    /// From the first token to the end.
    pub generation_ms: f64,
}

impl Summary {
    /// The finished job as a [`Progress`] (its prompt read): the counts and rates.
    pub fn progress(&self) -> Progress {
        Progress {
            slot: self.slot,
            prompt_tokens: self.prompt_tokens,
            cached_tokens: self.cached_tokens,
            prompt_done: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            prompt_ms: self.prompt_ms,
            generation_ms: self.generation_ms,
        }
    }
}

/// Why a job was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    EmptyPrompt,
    /// The prompt does not fit a slot's context.
    PromptTooLong {
        tokens: usize,
        n_ctx_slot: usize,
    },
    /// Every slot is busy and the queue is full.
    QueueFull,
    /// The job asks for a slot the engine does not have.
    NoSuchSlot {
        slot: usize,
        n_slots: usize,
    },
    /// The prompt's media runs are not what [`super::media`] requires (what is wrong).
    BadMedia(&'static str),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::EmptyPrompt => f.write_str("the prompt is empty"),
            Refused::PromptTooLong { tokens, n_ctx_slot } => {
                write!(f, "the prompt is {tokens} tokens, more than the context of {n_ctx_slot}")
            }
            Refused::QueueFull => f.write_str("every slot is busy and the queue is full"),
            Refused::NoSuchSlot { slot, n_slots } => {
                write!(f, "there is no slot {slot}: the server has {n_slots} (0 to {})", n_slots - 1)
            }
            Refused::BadMedia(what) => write!(f, "the prompt cannot be evaluated: {what}"),
        }
    }
}

impl std::error::Error for Refused {}
