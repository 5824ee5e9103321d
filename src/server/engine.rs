//! The engine's thread in the model's process: it owns the llama.cpp context and runs
//! [`strata_run::engine::Engine`] over it; the HTTP handlers only submit jobs through the
//! [`Handle`] and read their events from a channel.

use std::sync::Arc;

use anyhow::{anyhow, Result};
use strata_run::engine::{Engine, Event, Handle, Sink};
use tokio::sync::mpsc::UnboundedSender;

use crate::llama::{ContextOptions, Model};

/// Starts the engine thread over `model` with `n_slots` slots sharing a context of
/// `opts.n_ctx` tokens; at most `queue` jobs wait for a slot; up to `prompt_cache` bytes of
/// prompts the slots give up are kept in host memory.
pub fn start(
    model: Arc<Model>,
    opts: &ContextOptions,
    n_slots: u32,
    queue: usize,
    prompt_cache: usize,
) -> Result<Handle> {
    let (ready, is_ready) = std::sync::mpsc::channel();
    let opts = opts.clone();
    std::thread::Builder::new()
        .name("strata-engine".into())
        .spawn(move || match model.decoder(&opts, n_slots) {
            Ok(decoder) => {
                let mut engine = Engine::new(decoder, queue).with_prompt_cache(prompt_cache);
                let _ = ready.send(Ok(engine.handle()));
                engine.run();
            }
            Err(e) => {
                let _ = ready.send(Err(e));
            }
        })
        .map_err(|e| anyhow!("cannot start the engine thread: {e}"))?;
    is_ready.recv().map_err(|_| anyhow!("the engine thread ended while starting"))?
}

/// A request's end of a job: its events go to the handler; a handler that is gone (the client
/// hung up) cancels the job.
pub struct ClientSink(pub UnboundedSender<Event>);

impl Sink for ClientSink {
    fn send(&mut self, event: Event) -> bool {
        self.0.send(event).is_ok()
    }

    fn cancelled(&self) -> bool {
        self.0.is_closed()
    }
}
