//! The engine over a fake decoder: logits from a table (each token's row makes one next token
//! the most likely), a cache per sequence that checks every position it is given.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use super::scheduler::ChannelSink;
use super::*;
use crate::sampling::SamplingParams;

/// The fake vocabulary: token id -> bytes. 0 ends generation.
const PIECES: &[&[u8]] = &[
    b"<eos>",      // 0
    b"a",          // 1
    b"b",          // 2
    b"Hel",        // 3
    b"lo",         // 4
    b" wor",       // 5
    b"ld",         // 6
    b"!",          // 7
    &[0xe2, 0x82], // 8: the first two bytes of the euro sign
    &[0xac],       // 9: its last byte
    &[0xf0, 0x9f], // 10: the first half of U+1F31F (a star)
    &[0x8c, 0x9f], // 11: its second half
    b"x",          // 12
];

/// The token each token's logits favour: a b a b ..., Hello world! then the end, x € star x ...
const fn next(token: usize) -> usize {
    match token {
        1 => 2,
        2 => 1,
        3 => 4,
        4 => 5,
        5 => 6,
        6 => 7,
        7 => 0,
        12 => 8,
        8 => 9,
        9 => 10,
        10 => 11,
        11 => 12,
        _ => 1,
    }
}

/// Each token's logits: 10 for the token [`next`] names, 0 for the others.
const LOGITS: [[f32; PIECES.len()]; PIECES.len()] = {
    let mut rows = [[0.0; PIECES.len()]; PIECES.len()];
    let mut t = 0;
    while t < PIECES.len() {
        rows[t][next(t)] = 10.0;
        t += 1;
    }
    rows
};

struct Fake {
    n_seq: usize,
    n_ctx: usize,
    n_batch: usize,
    caches: Vec<Vec<i32>>,
    last: Vec<BatchToken>,
    /// Every decoded batch's size, and which call fails (if any).
    decoded: Vec<usize>,
    fail_at: Option<usize>,
    saves: usize,
}

impl Fake {
    fn new(n_seq: usize, n_ctx: usize, n_batch: usize) -> Fake {
        Fake {
            n_seq,
            n_ctx,
            n_batch,
            caches: vec![Vec::new(); n_seq],
            last: Vec::new(),
            decoded: Vec::new(),
            fail_at: None,
            saves: 0,
        }
    }
}

impl Decoder for Fake {
    type Saved = Vec<i32>;

    fn save(&mut self, seq: usize) -> Option<(Vec<i32>, usize)> {
        self.saves += 1;
        Some((self.caches[seq].clone(), 4 * self.caches[seq].len()))
    }
    fn restore(&mut self, seq: usize, saved: &Vec<i32>) -> bool {
        self.caches[seq] = saved.clone();
        true
    }
    /// The words, then the cache, as text: one number a line, a blank line between.
    fn save_file(&mut self, seq: usize, path: &std::path::Path, words: &[i32]) -> anyhow::Result<usize> {
        let list = |v: &[i32]| v.iter().map(|w| format!("{w}\n")).collect::<String>();
        let text = format!("{}\n{}", list(words), list(&self.caches[seq]));
        std::fs::write(path, &text)?;
        Ok(text.len())
    }
    fn load_file(&mut self, seq: usize, path: &std::path::Path, capacity: usize) -> anyhow::Result<(Vec<i32>, usize)> {
        let text = std::fs::read_to_string(path)?;
        let (words, cache) = text.split_once("\n\n").ok_or_else(|| anyhow::anyhow!("not a slot file"))?;
        let parse = |s: &str| s.lines().map(str::parse).collect::<Result<Vec<i32>, _>>();
        let words = parse(words)?;
        anyhow::ensure!(words.len() <= capacity, "{} words, more than {capacity}", words.len());
        self.caches[seq] = parse(cache)?;
        Ok((words, text.len()))
    }
    fn n_seq(&self) -> usize {
        self.n_seq
    }
    fn n_ctx_seq(&self) -> usize {
        self.n_ctx
    }
    fn n_batch(&self) -> usize {
        self.n_batch
    }
    fn n_vocab(&self) -> usize {
        PIECES.len()
    }
    fn decode(&mut self, batch: &[BatchToken]) -> anyhow::Result<()> {
        assert!(!batch.is_empty() && batch.len() <= self.n_batch, "batch of {}", batch.len());
        if self.fail_at == Some(self.decoded.len()) {
            self.decoded.push(batch.len());
            anyhow::bail!("the fake model failed");
        }
        for t in batch {
            assert_eq!(t.pos, self.caches[t.seq].len(), "sequence {} given position {}", t.seq, t.pos);
            assert!(t.pos < self.n_ctx, "sequence {} overflows its cache", t.seq);
            self.caches[t.seq].push(t.token);
        }
        self.decoded.push(batch.len());
        self.last = batch.to_vec();
        Ok(())
    }
    /// A media run: its tokens into the cache at once, recorded as a batch of minus its size.
    fn decode_media(&mut self, seq: usize, pos: usize, media: &dyn MediaChunk) -> anyhow::Result<()> {
        let image = media.as_any().downcast_ref::<FakeImage>().expect("a fake image");
        assert_eq!(pos, self.caches[seq].len(), "sequence {seq} given media at position {pos}");
        self.caches[seq].extend(std::iter::repeat_n(media_token(image.hash), image.n));
        self.decoded.push(-(image.n as isize) as usize);
        Ok(())
    }
    fn logits(&self, i: usize) -> &[f32] {
        assert!(self.last[i].logits, "logits of a token that did not ask for them");
        &LOGITS[self.last[i].token as usize]
    }
    fn truncate(&mut self, seq: usize, from: usize) -> bool {
        self.caches[seq].truncate(from);
        true
    }
    fn is_eog(&self, token: i32) -> bool {
        token == 0
    }
    fn piece(&self, token: i32) -> Vec<u8> {
        PIECES[token as usize].to_vec()
    }
}

fn greedy() -> SamplingParams {
    SamplingParams { temperature: 0.0, ..SamplingParams::default() }
}

fn limits(max_tokens: Option<usize>, stop: &[&str]) -> Limits {
    Limits { max_tokens, stop: stop.iter().map(|s| s.to_string()).collect(), ..Limits::default() }
}

fn run_one(engine: &mut Engine<Fake>, prompt: &[i32], limits: Limits) -> (String, Summary, Vec<String>) {
    let mut pieces = Vec::new();
    let (text, summary) =
        engine.generate(prompt.to_vec(), greedy(), limits, |t| pieces.push(t.to_string()), || true).unwrap();
    (text, summary, pieces)
}

fn job(prompt: &[i32], max_tokens: Option<usize>) -> (Job, mpsc::Receiver<Event>, Arc<AtomicBool>) {
    let (events, received) = mpsc::channel();
    let cancel = Arc::new(AtomicBool::new(false));
    let sink = Box::new(ChannelSink { events, cancel: cancel.clone() });
    (
        Job {
            prompt: prompt.to_vec(),
            media: Vec::new(),
            params: greedy(),
            max_tokens,
            stop: Vec::new(),
            ignore_eos: false,
            constraint: None,
            detail: Default::default(),
            slot: None,
            sink,
        },
        received,
        cancel,
    )
}

/// The text and summary a recorded job ended with, if it has.
fn outcome(received: &mpsc::Receiver<Event>) -> Option<(String, Summary)> {
    let mut text = String::new();
    for event in received.try_iter() {
        match event {
            Event::Text(t) => text += &t,
            Event::Done(s) => return Some((text, s)),
            Event::Failed(m) => panic!("failed: {m}"),
            Event::Token(_) | Event::Progress(_) => {}
        }
    }
    None
}

/// A job that asks for its tokens gets each, with its bytes and probabilities, before the
/// text it belongs to; the greedy token is the likeliest of those reported.
#[test]
fn tokens_and_their_probabilities_are_reported_before_their_text() {
    let mut engine = Engine::new(Fake::new(1, 64, 8), 4);
    let (mut j, rx, _) = job(&[12], Some(4));
    j.detail =
        super::Detail { tokens: true, probs: Some(super::Probs { n: 3, post_sampling: false }), progress: false };
    engine.handle().submit(j).unwrap();
    let mut events = Vec::new();
    while !matches!(events.last(), Some(Event::Done(_))) {
        engine.step();
        events.extend(rx.try_iter());
    }
    let tokens: Vec<&super::Generated> =
        events.iter().filter_map(|e| if let Event::Token(g) = e { Some(g) } else { None }).collect();
    assert_eq!(tokens.len(), 4);
    // The text is the tokens' bytes, and no text comes before the tokens that make it.
    let bytes: Vec<u8> = tokens.iter().flat_map(|g| g.piece.clone()).collect();
    let text: String =
        events.iter().filter_map(|e| if let Event::Text(t) = e { Some(t.as_str()) } else { None }).collect();
    assert_eq!(String::from_utf8_lossy(&bytes), text);
    assert!(matches!(events[0], Event::Token(_)));
    for g in tokens {
        let p = g.probs.as_ref().expect("asked for");
        assert!(p.logprob <= 0.0 && !p.post);
        assert_eq!(p.top.len(), 3);
        assert_eq!(p.top[0], (g.id as u32, p.logprob), "greedy takes the likeliest");
        assert!(p.top.windows(2).all(|w| w[0].1 >= w[1].1));
    }
}

/// A job that asks for its progress hears where it stands as it takes its slot (nothing
/// evaluated, no time spent), after each batch of its prompt (a chunk of `n_batch`, then the
/// tail), and with each token before the token; the counts only grow, and the last progress
/// agrees with the summary. A second job over the same prompt starts from what the cache held.
#[test]
fn progress_is_reported_as_the_prompt_is_read_and_with_each_token() {
    let mut engine = Engine::new(Fake::new(1, 64, 8), 4);
    let prompt = [1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2];
    let run = |engine: &mut Engine<Fake>| {
        let (mut j, rx, _) = job(&prompt, Some(3));
        j.detail = super::Detail { tokens: true, probs: None, progress: true };
        engine.handle().submit(j).unwrap();
        let mut events = Vec::new();
        while !matches!(events.last(), Some(Event::Done(_))) {
            engine.step();
            events.extend(rx.try_iter());
        }
        events
    };
    let events = run(&mut engine);
    let progress: Vec<super::Progress> =
        events.iter().filter_map(|e| if let Event::Progress(p) = e { Some(*p) } else { None }).collect();
    let reading: Vec<(usize, usize)> =
        progress.iter().filter(|p| p.completion_tokens == 0).map(|p| (p.cached_tokens, p.prompt_done)).collect();
    // 14 tokens in batches of 8: 8, then up to the tail (10), then the last 4.
    assert_eq!(reading, [(0, 0), (0, 8), (0, 10), (0, 14)]);
    assert_eq!((progress[0].prompt_ms, progress[0].generation_ms), (0.0, 0.0));
    assert!(progress.windows(2).all(|w| w[0].prompt_ms <= w[1].prompt_ms && w[0].prompt_done <= w[1].prompt_done));
    for (k, e) in events.iter().enumerate() {
        if let Event::Token(_) = e {
            let Event::Progress(p) = &events[k - 1] else { panic!("no progress before token {k}") };
            assert_eq!(p.prompt_done, prompt.len());
        }
    }
    let generating: Vec<usize> = progress.iter().map(|p| p.completion_tokens).filter(|&n| n > 0).collect();
    assert_eq!(generating, [1, 2, 3]);
    let Some(Event::Done(summary)) = events.last() else { unreachable!() };
    let last = progress.last().unwrap();
    assert_eq!((last.prompt_tokens, last.completion_tokens, last.prompt_ms), (14, 3, summary.prompt_ms));
    assert_eq!(summary.progress().prompt_evaluated(), 14);

    // The cache holds the prompt but its tail, which is evaluated again.
    let again = run(&mut engine);
    let reading: Vec<(usize, usize)> = again
        .iter()
        .filter_map(|e| if let Event::Progress(p) = e { Some(p) } else { None })
        .filter(|p| p.completion_tokens == 0)
        .map(|p| (p.cached_tokens, p.prompt_done))
        .collect();
    assert_eq!(reading, [(10, 10), (10, 14)]);
}

/// Runs slot action `action` on `slot` and steps the engine until it is done.
fn slot_action(engine: &mut Engine<Fake>, slot: usize, action: SlotAction) -> Result<SlotActionDone, String> {
    let (tx, rx) = mpsc::channel();
    engine.handle().slot_action(slot, action, Box::new(move |r| tx.send(r).unwrap()))?;
    loop {
        engine.step();
        if let Ok(r) = rx.try_recv() {
            return r;
        }
    }
}

/// A slot saved to a file, erased, then restored (into another slot, too) holds what it held:
/// the same prompt then costs only its tail again. A file that is not a slot file is refused
/// and leaves the slot empty; a slot that does not exist is an error; an action on a busy slot
/// waits for its job to end.
#[test]
fn slots_are_saved_erased_and_restored() {
    let dir = std::env::temp_dir().join(format!("strata-slot-actions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("slot0.bin");
    let mut engine = Engine::new(Fake::new(2, 64, 8), 4);
    let prompt = [1, 2, 1, 2, 1, 2, 1, 2, 1, 2];
    let (_, first, _) = run_one(&mut engine, &prompt, limits(Some(2), &[]));
    let held = engine.handle().slots()[first.slot].n_cached;
    assert_eq!(held, prompt.len() + 1, "the prompt and the first generated token");

    let saved = slot_action(&mut engine, first.slot, SlotAction::Save(file.clone())).unwrap();
    assert_eq!(saved.tokens, held);
    assert!(saved.bytes > 0);
    let erased = slot_action(&mut engine, first.slot, SlotAction::Erase).unwrap();
    assert_eq!(erased.tokens, held);
    assert_eq!(engine.handle().slots()[first.slot].n_cached, 0);
    let other = 1 - first.slot;
    let restored = slot_action(&mut engine, other, SlotAction::Restore(file.clone())).unwrap();
    assert_eq!((restored.tokens, restored.bytes), (held, saved.bytes));
    let (_, again, _) = run_one(&mut engine, &prompt, limits(Some(2), &[]));
    assert_eq!((again.slot, again.cached_tokens), (other, prompt.len() - PROMPT_TAIL), "{again:?}");

    std::fs::write(dir.join("junk.bin"), "not a slot file").unwrap();
    let err = slot_action(&mut engine, other, SlotAction::Restore(dir.join("junk.bin"))).unwrap_err();
    assert!(err.contains("cannot restore slot") && err.contains("junk.bin"), "{err}");
    assert_eq!(engine.handle().slots()[other].n_cached, 0, "a failed restore leaves the slot empty");
    let err = engine.handle().slot_action(2, SlotAction::Erase, Box::new(|_| {})).unwrap_err();
    assert!(err.contains("no slot 2"), "{err}");

    // An action on a busy slot waits until its job has ended.
    let (j, events, _) = job(&prompt, Some(3));
    engine.handle().submit(j).unwrap();
    engine.step();
    let busy = engine.handle().slots().iter().position(|s| s.is_processing).unwrap();
    let (tx, rx) = mpsc::channel();
    engine.handle().slot_action(busy, SlotAction::Erase, Box::new(move |r| tx.send(r).unwrap())).unwrap();
    engine.step();
    assert!(rx.try_recv().is_err(), "done while the slot was busy");
    while outcome(&events).is_none() {
        engine.step();
    }
    engine.step();
    assert!(rx.try_recv().unwrap().unwrap().tokens > prompt.len());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A job pinned to a slot (llama-server's `id_slot`) runs there, even where another slot holds
/// its prefix; while that slot is busy it waits, and the jobs behind it take the other slots. A
/// slot the engine does not have is refused.
#[test]
fn a_job_pinned_to_a_slot_runs_there_and_waits_for_it() {
    let mut engine = Engine::new(Fake::new(2, 64, 8), 4);
    let prompt = [1, 2, 1, 2, 1, 2, 1, 2];
    let (_, first, _) = run_one(&mut engine, &prompt, limits(Some(1), &[]));
    let other = 1 - first.slot;
    let pinned = |slot: usize, max_tokens: usize| {
        let (mut j, rx, _) = job(&prompt, Some(max_tokens));
        j.slot = Some(slot);
        (j, rx)
    };
    let (j, rx) = pinned(other, 1);
    engine.handle().submit(j).unwrap();
    while outcome(&rx).map(|(_, s)| assert_eq!((s.slot, s.cached_tokens), (other, 0))).is_none() {
        engine.step();
    }
    // Slot `other` busy with a long job; a job pinned to it waits, an unpinned one behind it runs.
    let (long, long_rx) = pinned(other, 20);
    let (waiting, waiting_rx) = pinned(other, 1);
    let (free, free_rx, _) = job(&prompt, Some(1));
    for j in [long, waiting, free] {
        engine.handle().submit(j).unwrap();
    }
    let mut order = Vec::new();
    while order.len() < 3 {
        engine.step();
        for (name, rx) in [("long", &long_rx), ("waiting", &waiting_rx), ("free", &free_rx)] {
            if let Some((_, s)) = outcome(rx) {
                order.push((name, s.slot));
            }
        }
    }
    assert_eq!(order, [("free", first.slot), ("long", other), ("waiting", other)]);
    let (j, _) = pinned(2, 1);
    assert_eq!(engine.handle().submit(j), Err(Refused::NoSuchSlot { slot: 2, n_slots: 2 }));
}

#[test]
fn a_stop_string_split_over_three_tokens_is_cut_and_never_shown() {
    let mut engine = Engine::new(Fake::new(1, 64, 8), 4);
    // Hel lo| wor|ld !: the stop string "o world" begins in "lo" and ends in "ld".
    let (text, summary, pieces) = run_one(&mut engine, &[3], limits(None, &["o world"]));
    assert_eq!(text, "l");
    assert_eq!(pieces.concat(), "l");
    assert_eq!(summary.stop_reason, StopReason::StopString);
    assert_eq!(summary.completion_tokens, 3);
}

#[test]
fn a_character_split_over_two_tokens_is_emitted_whole_or_not_at_all() {
    let mut engine = Engine::new(Fake::new(1, 64, 8), 4);
    let (text, _, pieces) = run_one(&mut engine, &[12], limits(Some(2), &[]));
    assert_eq!(text, "€");
    assert_eq!(pieces, ["€"], "never half a character");
    // The limit cuts the star (four bytes over two tokens) in half: the half is dropped.
    let (text, summary, _) = run_one(&mut engine, &[12], limits(Some(3), &[]));
    assert_eq!(text, "€");
    assert_eq!(summary.completion_tokens, 3);
    assert!(!text.contains('\u{fffd}'));
    let (text, _, _) = run_one(&mut engine, &[12], limits(Some(4), &[]));
    assert_eq!(text, "€🌟");
}

#[test]
fn the_limit_and_the_end_of_generation() {
    let mut engine = Engine::new(Fake::new(1, 64, 8), 4);
    let (text, summary, _) = run_one(&mut engine, &[1], limits(Some(3), &[]));
    assert_eq!((text.as_str(), summary.stop_reason, summary.completion_tokens), ("bab", StopReason::Limit, 3));
    let (text, summary, _) = run_one(&mut engine, &[1], limits(Some(0), &[]));
    assert_eq!((text.as_str(), summary.stop_reason, summary.completion_tokens), ("", StopReason::Limit, 0));
    let (text, summary, _) = run_one(&mut engine, &[3], limits(None, &[]));
    assert_eq!((text.as_str(), summary.stop_reason, summary.completion_tokens), ("lo world!", StopReason::Eog, 4));
    let ignore = Limits { max_tokens: Some(6), ignore_eos: true, ..Limits::default() };
    let (text, summary, _) = run_one(&mut engine, &[3], ignore);
    assert_eq!((text.as_str(), summary.stop_reason), ("lo world!<eos>a", StopReason::Limit));
}

#[test]
fn the_context_fills() {
    // 8 cells: a prompt of 2, then tokens until every cell holds one; the last sampled token
    // needs no cell of its own.
    let mut engine = Engine::new(Fake::new(1, 8, 8), 4);
    let (text, summary, _) = run_one(&mut engine, &[1, 2], limits(None, &[]));
    assert_eq!(summary.stop_reason, StopReason::Context);
    assert_eq!(summary.prompt_tokens + summary.completion_tokens, 9);
    assert_eq!(text, "abababa");
    // A prompt longer than the context is refused; one that fills it gets one token.
    let err = engine.generate(vec![1; 9], greedy(), limits(None, &[]), |_| {}, || true).unwrap_err();
    assert_eq!(err.to_string(), "the prompt is 9 tokens, more than the context of 8");
    let (_, summary, _) = run_one(&mut engine, &[1; 8], limits(None, &[]));
    assert_eq!((summary.stop_reason, summary.completion_tokens), (StopReason::Context, 1));
    let err = engine.generate(Vec::new(), greedy(), limits(None, &[]), |_| {}, || true).unwrap_err();
    assert_eq!(err.to_string(), "the prompt is empty");
}

#[test]
fn cancelling_mid_prompt_ends_within_one_step() {
    let mut engine = Engine::new(Fake::new(1, 64, 4), 4);
    let steps = std::cell::Cell::new(0);
    let (text, summary) = engine
        .generate(
            vec![1; 20],
            greedy(),
            limits(None, &[]),
            |_| {},
            || {
                steps.set(steps.get() + 1);
                steps.get() < 2
            },
        )
        .unwrap();
    assert_eq!((text.as_str(), summary.stop_reason, summary.completion_tokens), ("", StopReason::Interrupted, 0));
    // Two steps of four prompt tokens were evaluated, not the twenty.
    assert_eq!(engine.decoder().decoded, [4, 4]);
}

#[test]
fn a_failed_decode_fails_its_jobs_and_drops_their_caches() {
    let mut engine = Engine::new(Fake::new(1, 64, 8), 4);
    run_one(&mut engine, &[1, 2, 1], limits(Some(2), &[]));
    engine.decoder().fail_at = Some(engine.decoder().decoded.len());
    let err = engine.generate(vec![1, 2, 1, 2], greedy(), limits(Some(2), &[]), |_| {}, || true).unwrap_err();
    assert_eq!(err.to_string(), "the fake model failed");
    assert!(engine.decoder().caches[0].is_empty());
    // The slot serves again, from scratch.
    let (_, summary, _) = run_one(&mut engine, &[1, 2, 1, 2], limits(Some(2), &[]));
    assert_eq!(summary.cached_tokens, 0);
    assert_eq!(engine.handle().metrics().0.failed, 1);
}

#[test]
fn a_follow_up_reuses_the_longest_prefix() {
    let mut engine = Engine::new(Fake::new(2, 64, 8), 4);
    let first: Vec<i32> = [vec![3], vec![1; 19]].concat();
    let (_, a, _) = run_one(&mut engine, &first, limits(Some(2), &[]));
    assert_eq!(a.cached_tokens, 0);
    // The slot holds the prompt and the first generated token (the last one was never evaluated).
    assert_eq!(engine.decoder().caches[a.slot].len(), 21);
    let before = engine.decoder().decoded.len();
    let follow: Vec<i32> = [first.clone(), vec![2, 1, 2, 12, 12]].concat();
    let (_, b, _) = run_one(&mut engine, &follow, limits(Some(1), &[]));
    assert_eq!((b.slot, b.cached_tokens), (a.slot, 21));
    assert_eq!(engine.decoder().decoded[before..], [PROMPT_TAIL], "only the new tokens were evaluated");
    // A prompt the cache holds whole: its tail is evaluated again, for the first token's logits.
    let (_, c, _) = run_one(&mut engine, &first[..10], limits(Some(1), &[]));
    assert_eq!(c.cached_tokens, 10 - PROMPT_TAIL);
}

/// The prompt's tail is always evaluated in a batch of its own, of the same size, however the
/// rest of the prompt was chunked or cached.
#[test]
fn the_prompt_tail_is_a_batch_of_its_own() {
    let mut engine = Engine::new(Fake::new(1, 64, 8), 4);
    run_one(&mut engine, &[1; 11], limits(Some(1), &[]));
    assert_eq!(engine.decoder().decoded, [7, PROMPT_TAIL], "a chunk, then the tail");
    let mut engine = Engine::new(Fake::new(1, 64, 8), 4);
    run_one(&mut engine, &[1; 3], limits(Some(1), &[]));
    assert_eq!(engine.decoder().decoded, [3], "a prompt shorter than the tail is all tail");
}

#[test]
fn eight_jobs_on_four_slots_with_a_queue_of_two() {
    let mut engine = Engine::new(Fake::new(4, 64, 16), 2);
    let handle = engine.handle();
    let mut receivers = Vec::new();
    // Six jobs before the first step: four will take the free slots, two wait; a seventh is refused.
    for i in 0..6 {
        let (job, rx, _) = job(&vec![1; 2 + i], Some(4));
        handle.submit(job).unwrap();
        receivers.push(rx);
    }
    assert_eq!(handle.submit(job(&[1], Some(1)).0), Err(Refused::QueueFull), "four free slots and a queue of two");
    engine.step();
    assert!(handle.slots().iter().all(|s| s.is_processing));
    // Two more while every slot is busy and two wait: refused.
    let mut refused = 0;
    for i in 0..2 {
        match handle.submit(job(&vec![2; 2 + i], Some(3)).0) {
            Err(Refused::QueueFull) => refused += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((receivers.len(), refused), (6, 2));
    assert_eq!(handle.metrics().1, Gauges { slots: 4, slots_busy: 4, queued: 2 });
    while !engine.is_idle() {
        engine.step();
    }
    let outcomes: Vec<(String, Summary)> = receivers.iter().map(|rx| outcome(rx).expect("finished")).collect();
    for (text, s) in &outcomes {
        assert_eq!((s.completion_tokens, s.stop_reason), (4, StopReason::Limit), "{text}");
    }
    let (metrics, gauges) = handle.metrics();
    assert_eq!((metrics.finished_total(), metrics.generated_tokens), (6, 6 * 4));
    assert_eq!(gauges, Gauges { slots: 4, slots_busy: 0, queued: 0 });
}

#[test]
fn no_slot_starves_and_jobs_together_answer_as_alone() {
    // Two slots, batches of four: a long prompt is read three tokens a step beside the other
    // slot's one generated token, which never waits for it.
    let prompts: [&[i32]; 3] = [&[3], &[1; 17], &[12, 12]];
    let alone: Vec<String> =
        prompts.iter().map(|p| run_one(&mut Engine::new(Fake::new(2, 64, 4), 4), p, limits(Some(6), &[])).0).collect();
    let mut engine = Engine::new(Fake::new(2, 64, 4), 4);
    let handle = engine.handle();
    let receivers: Vec<_> = prompts
        .iter()
        .map(|p| {
            let (job, rx, _) = job(p, Some(6));
            handle.submit(job).unwrap();
            rx
        })
        .collect();
    let mut previous = handle.slots();
    while !engine.is_idle() {
        engine.step();
        let now = handle.slots();
        for (was, is) in previous.iter().zip(&now) {
            // A slot that was generating and still runs the same job got a token this step.
            if was.is_processing && is.is_processing && was.n_decoded > 0 && is.n_prompt_tokens == was.n_prompt_tokens {
                assert_eq!(is.n_decoded, was.n_decoded + 1, "slot {} waited a step", is.id);
            }
        }
        previous = now;
    }
    let together: Vec<String> = receivers.iter().map(|rx| outcome(rx).expect("finished").0).collect();
    assert_eq!(together, alone);
}

#[test]
fn a_hung_up_client_frees_its_slot_and_a_queued_one_is_dropped() {
    let mut engine = Engine::new(Fake::new(1, 64, 8), 4);
    let handle = engine.handle();
    let (first, rx1, cancel1) = job(&[1], None);
    let (second, rx2, cancel2) = job(&[2], Some(2));
    let (third, rx3, _) = job(&[3], None);
    handle.submit(first).unwrap();
    handle.submit(second).unwrap();
    handle.submit(third).unwrap();
    engine.step();
    engine.step();
    cancel1.store(true, Ordering::Relaxed);
    cancel2.store(true, Ordering::Relaxed);
    engine.step();
    let (_, s) = outcome(&rx1).expect("the running job ends");
    assert_eq!(s.stop_reason, StopReason::Interrupted);
    assert!(outcome(&rx2).is_none(), "a cancelled queued job sends nothing");
    while !engine.is_idle() {
        engine.step();
    }
    assert_eq!(outcome(&rx3).expect("the third ran").0, "lo world!");
    drop(rx3);
}

#[test]
fn a_prompt_a_slot_gave_up_comes_back_from_the_prompt_cache() {
    let mut engine = Engine::new(Fake::new(1, 256, 64), 4).with_prompt_cache(1 << 20);
    let first: Vec<i32> = [vec![3; 1], vec![1; 30]].concat();
    let other: Vec<i32> = vec![2; 40];
    let (text, a, _) = run_one(&mut engine, &first, limits(Some(4), &[]));
    // Another prompt takes the only slot: the first conversation goes to host memory.
    run_one(&mut engine, &other, limits(Some(4), &[]));
    assert_eq!(engine.decoder().saves, 1);
    // Its next turn shares the whole first exchange: restored, only the new tokens evaluated.
    let follow: Vec<i32> = [first.clone(), vec![2, 1, 2], vec![12; 5]].concat();
    let before = engine.decoder().decoded.len();
    let (_, b, _) = run_one(&mut engine, &follow, limits(Some(2), &[]));
    assert_eq!(b.cached_tokens, first.len() + 3, "the prompt and the evaluated answer tokens");
    assert_eq!(engine.decoder().decoded[before..before + 2], [1, PROMPT_TAIL], "the new tokens, the tail last");
    assert_eq!(text, "baba");
    assert_eq!(a.cached_tokens, 0);
    // Without the cache, the same follow-up evaluates everything.
    let mut plain = Engine::new(Fake::new(1, 256, 64), 4);
    run_one(&mut plain, &first, limits(Some(4), &[]));
    run_one(&mut plain, &other, limits(Some(4), &[]));
    assert_eq!(run_one(&mut plain, &follow, limits(Some(2), &[])).1.cached_tokens, 0);
}

/// The fake vocabulary as a grammar sees it (token 0 the end of generation).
fn compiler() -> crate::constraint::Compiler {
    let pieces: Vec<Vec<u8>> = PIECES.iter().map(|p| p.to_vec()).collect();
    let control = (0..PIECES.len()).map(|t| t == 0).collect();
    crate::constraint::Compiler::new(&crate::constraint::Vocabulary { pieces, control, eog: vec![0] }).unwrap()
}

#[test]
fn a_grammar_overrides_the_models_choice_and_ends_the_answer() {
    let mut engine = Engine::new(Fake::new(1, 64, 16), 1);
    // The model would say "Hello world!"; the grammar allows only "ab" twice then "!".
    let grammar = crate::constraint::Grammar::Lark(r#"start: "ab" "ab" "!""#.into());
    let constraint = Some(compiler().constraint(&grammar).unwrap());
    let (text, summary, _) = run_one(&mut engine, &[3], Limits { constraint, ..Limits::default() });
    assert_eq!(text, "abab!");
    assert_eq!(summary.stop_reason, StopReason::Eog);
    assert_eq!(summary.completion_tokens, 5);
}

#[test]
fn a_lazy_grammar_leaves_the_text_before_its_trigger_alone() {
    let mut engine = Engine::new(Fake::new(1, 64, 16), 1);
    // The model says "Hello world!"; from " wor" on, the grammar wants "ab!".
    let grammar = crate::constraint::Grammar::Lark(r#"start: "ab" "!""#.into());
    let constraint = Some(compiler().lazy(&grammar, vec![" wor".into()]).unwrap());
    let (text, summary, _) = run_one(&mut engine, &[3], Limits { constraint, ..Limits::default() });
    assert_eq!(text, "lo worab!");
    assert_eq!(summary.stop_reason, StopReason::Eog);
}

/// An image of `n` positions with content hash `hash`, as the fake decoder takes it.
struct FakeImage {
    hash: u64,
    n: usize,
}

impl MediaChunk for FakeImage {
    fn n_tokens(&self) -> usize {
        self.n
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// `before`, an image of `n` positions with hash `hash`, then `after`.
fn with_image(before: &[i32], hash: u64, n: usize, after: &[i32]) -> Prompt {
    let tokens = [before, &vec![media_token(hash); n], after].concat();
    Prompt { tokens, media: vec![Media { start: before.len(), chunk: Arc::new(FakeImage { hash, n }) }] }
}

#[test]
fn an_image_is_evaluated_whole_in_a_batch_of_its_own() {
    let mut engine = Engine::new(Fake::new(1, 64, 4), 4);
    let prompt = with_image(&[3, 1, 2], 7, 10, &[1, 2, 1, 2, 3]);
    let (text, summary) = engine.generate(prompt.clone(), greedy(), limits(Some(2), &[]), |_| {}, || true).unwrap();
    assert_eq!((text.as_str(), summary.prompt_tokens), ("lo wor", 18));
    // Three text tokens, the image (10 positions, however small the batch), then the text
    // after it: a batch up to the tail, and the tail; then the generated token.
    assert_eq!(engine.decoder().decoded, [3, -10isize as usize, 1, PROMPT_TAIL, 1]);
    assert_eq!(engine.decoder().caches[0][..18], prompt.tokens[..]);
}

#[test]
fn a_follow_up_about_the_same_image_reuses_it_and_another_image_does_not() {
    let mut engine = Engine::new(Fake::new(1, 64, 8), 4);
    let first = with_image(&[3], 7, 10, &[1, 2, 1, 2, 1, 2]);
    engine.generate(first.clone(), greedy(), limits(Some(1), &[]), |_| {}, || true).unwrap();
    let before = engine.decoder().decoded.len();
    let mut follow = first.clone();
    follow.tokens.extend([2, 1, 2, 1, 2, 3]);
    let (_, again) = engine.generate(follow, greedy(), limits(Some(1), &[]), |_| {}, || true).unwrap();
    assert_eq!(again.cached_tokens, 17, "the image and the text around it were kept");
    assert!(engine.decoder().decoded[before..].iter().all(|&n| n < 100), "the image was not evaluated again");
    // Another image of the same size at the same place: evaluated, from where the prompts differ.
    let before = engine.decoder().decoded.len();
    let other = with_image(&[3], 8, 10, &[1, 2, 1, 2, 1, 2]);
    let (_, b) = engine.generate(other, greedy(), limits(Some(1), &[]), |_| {}, || true).unwrap();
    assert_eq!(b.cached_tokens, 1);
    assert_eq!(engine.decoder().decoded[before], -10isize as usize);
}

#[test]
fn a_cache_that_ends_inside_an_image_is_cut_before_it() {
    let mut engine = Engine::new(Fake::new(1, 64, 8), 4);
    // The prompt's tail would start inside the image: the image is evaluated again, whole.
    let first = with_image(&[3, 1], 7, 6, &[1, 2, 1, 2]);
    engine.generate(first.clone(), greedy(), limits(Some(1), &[]), |_| {}, || true).unwrap();
    let short = with_image(&[3, 1], 7, 6, &[1]);
    let before = engine.decoder().decoded.len();
    let (_, s) = engine.generate(short, greedy(), limits(Some(1), &[]), |_| {}, || true).unwrap();
    assert_eq!(s.cached_tokens, 2, "kept up to the image, not into it");
    assert_eq!(engine.decoder().decoded[before..before + 2], [-6isize as usize, 1]);
}

#[test]
fn media_runs_must_be_media_in_order_and_followed_by_text() {
    let mut engine = Engine::new(Fake::new(1, 64, 8), 4);
    let ends_with_image = with_image(&[3, 1], 7, 4, &[]);
    let err = engine.generate(ends_with_image, greedy(), limits(Some(1), &[]), |_| {}, || true).unwrap_err();
    assert!(err.to_string().contains("text must follow the last one"), "{err}");
    let mut stray = with_image(&[3, 1], 7, 4, &[1]);
    stray.tokens[0] = -5;
    let err = engine.generate(stray, greedy(), limits(Some(1), &[]), |_| {}, || true).unwrap_err();
    assert!(
        err.to_string().contains("outside any media run") || err.to_string().contains("do not hold media"),
        "{err}"
    );
    let mut wrong = with_image(&[3, 1], 7, 4, &[1]);
    wrong.tokens[3] = 1;
    let err = engine.generate(wrong, greedy(), limits(Some(1), &[]), |_| {}, || true).unwrap_err();
    assert!(err.to_string().contains("do not hold media tokens"), "{err}");
}
