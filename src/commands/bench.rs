//! `strata bench MODEL`: prompt processing and generation speed, measured as llama-bench does
//! (pp: a batch of N tokens into an empty cache; tg: N tokens decoded one at a time from an empty
//! cache), after one warm-up run, over repetitions, reported as mean ± standard deviation; with
//! `--image`, an image's encoding and decoding as well.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::json;

use super::run_args::{GrammarArgs, ModelArgs, ProjectorArgs, DEFAULT_CTX_SIZE};
use crate::llama::Medium;
use strata_run::engine::{logits_each, Constraint, Decoder, Engine, Limits};
use strata_run::sampling::{Sampler, SamplingParams};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt tokens for the pp test (0: skip).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    pub n_prompt: usize,
    /// Generated tokens for the tg test (0: skip).
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    pub n_gen: usize,
    /// Repetitions of each test.
    #[arg(short = 'r', long = "repetitions", default_value_t = 5)]
    pub repetitions: usize,
    #[arg(long)]
    pub json: bool,
    /// Also generate under a JSON Schema (`--json-schema`) or grammar (`--grammar`), from a
    /// prompt asking for JSON, and time the constraint per token.
    #[command(flatten)]
    pub grammar: GrammarArgs,
    #[command(flatten)]
    pub projector: ProjectorArgs,
    /// Also time an image (or audio clip): its encoding by the projector and the decoding of
    /// its embeddings, from an empty cache (needs the projector: --mmproj, or beside the model).
    #[arg(long, value_name = "FILE")]
    pub image: Option<std::path::PathBuf>,
}

/// The prompt of the constrained generation.
const GRAMMAR_PROMPT: &str = "A JSON object describing a person, with every field filled in:\n";

/// Tokens per second of each repetition of `run` (which returns how many tokens it ran and the
/// milliseconds they took), after one warm-up, each from an empty cache.
fn measure<D: Decoder>(
    engine: &mut Engine<D>,
    reps: usize,
    mut run: impl FnMut(&mut Engine<D>) -> Result<(usize, f64)>,
) -> Result<Vec<f64>> {
    engine.clear();
    run(engine)?;
    let mut speeds = Vec::with_capacity(reps);
    for _ in 0..reps {
        engine.clear();
        let (n, ms) = run(engine)?;
        speeds.push(n as f64 * 1e3 / ms);
    }
    Ok(speeds)
}

/// A constraint that counts the time spent in it (`strata bench --json-schema`).
struct Timed {
    inner: Box<dyn Constraint>,
    /// Time in mask and accept, and the tokens masked.
    spent: Arc<Mutex<(Duration, usize)>>,
}

impl Constraint for Timed {
    fn mask(&mut self, logits: &mut [f32]) -> Result<(), String> {
        let start = Instant::now();
        let r = self.inner.mask(logits);
        let mut spent = self.spent.lock().unwrap_or_else(|e| e.into_inner());
        spent.0 += start.elapsed();
        spent.1 += 1;
        r
    }

    fn accept(&mut self, token: i32, piece: &[u8]) -> Result<(), String> {
        let start = Instant::now();
        let r = self.inner.accept(token, piece);
        self.spent.lock().unwrap_or_else(|e| e.into_inner()).0 += start.elapsed();
        r
    }

    fn is_complete(&mut self) -> bool {
        self.inner.is_complete()
    }
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let var = if v.len() > 1 { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len() - 1) as f64 } else { 0.0 };
    (mean, var.sqrt())
}

pub fn run(args: &Args) -> Result<()> {
    let grammar = args.grammar.read()?;
    let mut model_args = args.model.clone();
    model_args.ctx_size =
        Some(model_args.ctx_size.unwrap_or(DEFAULT_CTX_SIZE).max((args.n_prompt + args.n_gen) as u32));
    let (mut model, context) = model_args.load(false)?;
    let attached = args.projector.attach(&mut model, &context)?;
    let image = args.image.as_deref().map(Medium::read).transpose()?;
    if image.is_some() && !attached {
        anyhow::bail!("--image: {} has no projector file (--mmproj)", model.path.display());
    }
    let mut decoder = model.decoder(&context, 1)?;
    // Token ids spread over the vocabulary, as llama-bench uses random tokens.
    let vocab = model.n_vocab() as u64;
    let tokens: Vec<i32> =
        (0..args.n_prompt.max(args.n_gen) as u64).map(|i| ((i * 2_654_435_761 + 17) % vocab) as i32).collect();
    // Rust-side sampling on this model's real logits: the default chain and greedy.
    let mut logits = Vec::new();
    logits_each(&mut decoder, &tokens[..tokens.len().min(8)], |_, l| logits = l.to_vec())?;
    let mut sampling = Vec::new();
    for (label, params) in [
        ("sample (defaults)", SamplingParams::default()),
        ("sample (greedy)", SamplingParams { temperature: 0.0, ..Default::default() }),
    ] {
        let mut sampler = Sampler::new(params);
        let n = 200;
        let start = Instant::now();
        for _ in 0..n {
            std::hint::black_box(sampler.sample(std::hint::black_box(&logits)));
        }
        let ms = start.elapsed().as_secs_f64() * 1e3 / n as f64;
        sampling.push((label, ms));
    }
    // pp: the prompt alone, in batches; tg: one token, then one at a time, each sampled greedily
    // (as generate does) and evaluated, end-of-generation ignored.
    let mut engine = Engine::new(decoder, 1);
    let greedy = SamplingParams { temperature: 0.0, ..Default::default() };
    let reps = args.repetitions.max(1);
    let mut rows = Vec::new();
    if args.n_prompt > 0 {
        let prompt = tokens[..args.n_prompt].to_vec();
        let speeds = measure(&mut engine, reps, |e| {
            let limits = Limits { max_tokens: Some(0), ..Limits::default() };
            let (_, s) = e.generate(prompt.clone(), greedy.clone(), limits, |_| {}, || true)?;
            Ok((args.n_prompt, s.prompt_ms))
        })?;
        rows.push((format!("pp{}", args.n_prompt), speeds));
    }
    if args.n_gen > 0 {
        let speeds = measure(&mut engine, reps, |e| {
            let limits = Limits { max_tokens: Some(args.n_gen), ignore_eos: true, ..Limits::default() };
            let (_, s) = e.generate(tokens[..1].to_vec(), greedy.clone(), limits, |_| {}, || true)?;
            Ok((args.n_gen, s.prompt_ms + s.generation_ms))
        })?;
        rows.push((format!("tg{}", args.n_gen), speeds));
    }
    // The image: its tokens per second through encoding and decoding, and milliseconds each.
    let mut image_ms = None;
    if let Some(image) = &image {
        let marker = crate::llama::media_marker();
        let prompt = model.media_prompt(&format!("{marker}."), &[image], true, false)?;
        let n_image: usize = prompt.media.iter().map(|m| m.chunk.n_tokens()).sum();
        let mut times = Vec::new();
        let speeds = measure(&mut engine, reps, |e| {
            let limits = Limits { max_tokens: Some(0), ..Limits::default() };
            e.generate(prompt.clone(), greedy.clone(), limits, |_| {}, || true)?;
            let ms = e.decoder().take_media_ms();
            times.push(ms);
            Ok((n_image, ms))
        })?;
        rows.push((format!("image ({n_image} tokens)"), speeds));
        // The first run is measure's warm-up.
        image_ms = Some(mean_sd(&times[1..]));
    }
    // The same generation under the grammar, which may end it sooner: tokens per second of what
    // was generated, and the grammar's own time per token (mask and accept).
    let mut mask_ms = None;
    if let (Some(g), true) = (&grammar, args.n_gen > 0) {
        let compiler = g.compiler(&model)?;
        let spent = Arc::new(Mutex::new((Duration::ZERO, 0)));
        let prompt = model.tokenize(GRAMMAR_PROMPT, true, false);
        let speeds = measure(&mut engine, reps, |e| {
            let constraint = Timed { inner: g.constraint(&compiler)?, spent: spent.clone() };
            let limits =
                Limits { max_tokens: Some(args.n_gen), constraint: Some(Box::new(constraint)), ..Limits::default() };
            let (_, s) = e.generate(prompt.clone(), greedy.clone(), limits, |_| {}, || true)?;
            Ok((s.completion_tokens, s.generation_ms))
        })?;
        let label = if args.grammar.json_schema.is_some() { "json-schema" } else { "grammar" };
        rows.push((format!("tg{} ({label})", args.n_gen), speeds));
        let (time, tokens) = *spent.lock().unwrap_or_else(|e| e.into_inner());
        mask_ms = Some(time.as_secs_f64() * 1e3 / tokens.max(1) as f64);
    }
    let name = model.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if args.json {
        let tests: Vec<_> = rows
            .iter()
            .map(|(test, s)| {
                let (mean, sd) = mean_sd(s);
                json!({"test": test, "tokens_per_second": mean, "stddev": sd, "samples": s})
            })
            .collect();
        let sampling: Vec<_> = sampling.iter().map(|(label, ms)| json!({"test": label, "ms_per_token": ms})).collect();
        let image = image_ms.map(|(mean, sd)| json!({"ms": mean, "stddev": sd}));
        let report = json!({"model": name, "threads": context.n_threads, "n_vocab": model.n_vocab(), "tests": tests,
                            "sampling": sampling, "constraint_ms_per_token": mask_ms, "image_ms": image});
        return super::print(&serde_json::to_string_pretty(&report)?);
    }
    let mut out = String::from("| model | size | threads | test | t/s |\n|---|---:|---:|---:|---:|\n");
    for (test, s) in &rows {
        let (mean, sd) = mean_sd(s);
        out += &format!(
            "| {name} | {} | {} | {test} | {mean:.2} ± {sd:.2} |\n",
            super::human_bytes(model.size()),
            context.n_threads
        );
    }
    for (label, ms) in &sampling {
        out += &format!("| {name} | vocab {} | 1 | {label} | {ms:.3} ms/token |\n", model.n_vocab());
    }
    if let Some(ms) = mask_ms {
        out += &format!("| {name} | vocab {} | 1 | constraint (mask + accept) | {ms:.3} ms/token |\n", model.n_vocab());
    }
    if let Some((mean, sd)) = image_ms {
        out += &format!(
            "| {name} | projector | {} | image (encode + decode) | {mean:.2} ± {sd:.2} ms |\n",
            context.n_threads
        );
    }
    super::print(&out)
}
