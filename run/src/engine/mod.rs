//! The one generation engine: every command that generates (generate, chat, bench, serve's
//! slots) runs its jobs through [`Engine`], over a [`Decoder`] — llama.cpp's context in the
//! binary, a table of logits in the tests. The token loop (prompt in chunks, sampling, stop
//! strings across tokens and split UTF-8, end-of-generation, the limit, the end of the context,
//! cancellation, images and audio as runs of the prompt) and the slot scheduler (continuous batching, longest-prefix slot choice, the
//! bounded queue, prompts kept in host memory) exist here once.

mod decoder;
mod evaluate;
mod job;
mod media;
mod metrics;
mod prompt_cache;
mod scheduler;
mod slot_file;
#[cfg(test)]
mod tests;
mod text;

pub use decoder::{BatchToken, Decoder};
pub use evaluate::logits_each;
pub use job::{Constraint, Detail, Event, Generated, Job, Probs, Progress, Refused, Sink, StopReason, Summary};
pub use media::{media_token, Media, MediaChunk, Prompt};
pub use metrics::{Gauges, Histogram, Metrics};
pub use prompt_cache::PromptCache;
pub use scheduler::{Engine, Handle, Limits, SlotAction, SlotActionDone, SlotActionReply, SlotStatus, PROMPT_TAIL};
pub use text::{check_stop_strings, TextStream, MAX_STOP};
