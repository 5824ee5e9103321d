//! `strata bench MODEL`: prompt processing and generation speed, measured as llama-bench does
//! (pp: a batch of N tokens into an empty cache; tg: N tokens decoded one at a time from an empty
//! cache), after one warm-up run, over repetitions, reported as mean ± standard deviation.

use std::time::Instant;

use anyhow::Result;
use serde_json::json;

use super::run_args::{ModelArgs, DEFAULT_CTX_SIZE};
use crate::llama::Session;
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
}

/// Tokens per second of each repetition of `run`, after one warm-up.
fn measure(
    session: &mut Session<'_>,
    reps: usize,
    n: usize,
    mut run: impl FnMut(&mut Session<'_>) -> Result<()>,
) -> Result<Vec<f64>> {
    session.clear();
    run(session)?;
    let mut speeds = Vec::with_capacity(reps);
    for _ in 0..reps {
        session.clear();
        let start = Instant::now();
        run(session)?;
        speeds.push(n as f64 / start.elapsed().as_secs_f64());
    }
    Ok(speeds)
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let var = if v.len() > 1 { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len() - 1) as f64 } else { 0.0 };
    (mean, var.sqrt())
}

pub fn run(args: &Args) -> Result<()> {
    let mut model_args = args.model.clone();
    model_args.ctx_size =
        Some(model_args.ctx_size.unwrap_or(DEFAULT_CTX_SIZE).max((args.n_prompt + args.n_gen) as u32));
    let (model, context) = model_args.load(false)?;
    let mut session = model.session(&context)?;
    // Token ids spread over the vocabulary, as llama-bench uses random tokens.
    let vocab = model.n_vocab() as u64;
    let tokens: Vec<i32> =
        (0..args.n_prompt.max(args.n_gen) as u64).map(|i| ((i * 2_654_435_761 + 17) % vocab) as i32).collect();
    let reps = args.repetitions.max(1);
    let mut rows = Vec::new();
    let mut sampling = Vec::new();
    if args.n_prompt > 0 {
        let speeds = measure(&mut session, reps, args.n_prompt, |s| s.feed(&tokens[..args.n_prompt]).map(|_| ()))?;
        rows.push((format!("pp{}", args.n_prompt), speeds));
    }
    if args.n_gen > 0 {
        let speeds = measure(&mut session, reps, args.n_gen, |s| {
            for &t in &tokens[..args.n_gen] {
                s.push(t)?;
            }
            Ok(())
        })?;
        rows.push((format!("tg{}", args.n_gen), speeds));
    }
    // Rust-side sampling on this model's real logits: the default chain and greedy.
    session.clear();
    let logits = session.feed(&tokens[..tokens.len().min(8)])?.to_vec();
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
        let report = json!({"model": name, "threads": context.n_threads, "n_vocab": model.n_vocab(), "tests": tests, "sampling": sampling});
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
    super::print(&out)
}
