//! Sampling in Rust on the logits llama.cpp returns. Knows nothing of llama.cpp.
//!
//! The chain, in order (llama.cpp's default order, less DRY and XTC):
//! 1. logit bias (added to the raw logits);
//! 2. penalties over the last `repeat_last_n` tokens: repetition (positive logits divided by the
//!    penalty, negative ones multiplied), then presence (subtracted once per seen token) and
//!    frequency (subtracted per occurrence);
//! 3. greedy argmax when `temperature <= 0` — the rest is skipped;
//! 4. top-k, 5. typical-p, 6. top-p, 7. min-p (each off at 0, 1, 1 and 0);
//! 8. temperature; 9. softmax and a draw from the seeded generator.
//!
//! A token whose logit is -inf (masked out by a grammar, [`crate::engine::Constraint`]) is never
//! drawn.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

/// Sampling options. `Default` is llama.cpp's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub min_p: f32,
    pub typical_p: f32,
    pub repeat_penalty: f32,
    pub repeat_last_n: usize,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    pub logit_bias: Vec<(u32, f32)>,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            typical_p: 1.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: Vec::new(),
            seed: 0xDEFA_u64,
        }
    }
}

impl SamplingParams {
    /// Rejects values that have no meaning, naming the option.
    pub fn validate(&self) -> Result<(), String> {
        let bad = |name: &str, v: f32, range: &str| Err(format!("{name} {v} is outside {range}"));
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad("--temp", self.temperature, "[0, inf)");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("--top-p", self.top_p, "(0, 1]");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("--min-p", self.min_p, "[0, 1]");
        }
        if !(self.typical_p > 0.0 && self.typical_p <= 1.0) {
            return bad("--typical", self.typical_p, "(0, 1]");
        }
        if !(self.repeat_penalty > 0.0 && self.repeat_penalty.is_finite()) {
            return bad("--repeat-penalty", self.repeat_penalty, "(0, inf)");
        }
        for (name, v) in
            [("--presence-penalty", self.presence_penalty), ("--frequency-penalty", self.frequency_penalty)]
        {
            if !v.is_finite() {
                return bad(name, v, "the finite numbers");
            }
        }
        Ok(())
    }
}

/// A seed that differs from run to run (what `--seed -1` and a request without a seed get).
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}

/// A small, fixed, seedable generator (xoshiro256**, seeded through SplitMix64), so that the
/// same seed gives the same text on every platform and version.
#[derive(Clone, Debug)]
pub struct Rng([u64; 4]);

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^ (x >> 31)
        };
        Rng([next(), next(), next(), next()])
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A token and its (possibly adjusted) logit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    pub token: u32,
    pub logit: f32,
}

/// The sampler: parameters, generator, and the recent tokens the penalties look at.
pub struct Sampler {
    params: SamplingParams,
    rng: Rng,
    history: Vec<u32>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let rng = Rng::new(params.seed);
        Sampler { params, rng, history: Vec::new() }
    }

    /// Records a token the model saw or produced (the penalties' window).
    pub fn accept(&mut self, token: u32) {
        self.history.push(token);
    }

    /// Forgets the history (a new conversation).
    pub fn reset(&mut self) {
        self.history.clear();
    }

    /// Picks the next token from `logits` (one per vocabulary entry).
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        self.draw(logits, false).0
    }

    /// Picks the next token as [`Sampler::sample`] does, with the probabilities llama-server
    /// reports for it (`n_probs`): before sampling, the model's own distribution (a softmax over
    /// the raw logits) for the token and the `n` likeliest; after sampling (`post`), the
    /// distribution the token was drawn from (the candidates left by the chain, at the
    /// temperature; greedy: the token alone, certain).
    pub fn sample_with_probs(&mut self, logits: &[f32], n: usize, post: bool) -> (u32, TokenProbs) {
        let (token, drawn) = self.draw(logits, post);
        let probs = match drawn {
            Some(cands) => {
                let prob = cands.iter().find(|c| c.0 == token).map_or(0.0, |c| c.1);
                TokenProbs { logprob: prob.ln(), top: cands.into_iter().take(n).collect(), post: true }
            }
            None => {
                let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let lse = max + logits.iter().map(|&l| (l - max).exp()).sum::<f32>().ln();
                let top = if n == 0 { Vec::new() } else { top_k(logits, n) };
                let top = top.into_iter().map(|c| (c.token, c.logit - lse)).collect();
                TokenProbs { logprob: logits[token as usize] - lse, top, post: false }
            }
        };
        (token, probs)
    }

    /// The chain: the token, and with `post` the candidates it was drawn from with their
    /// probabilities, likeliest first.
    fn draw(&mut self, logits: &[f32], post: bool) -> (u32, Option<Vec<(u32, f32)>>) {
        let p = &self.params;
        let mut adjusted: Option<Vec<f32>> = None;
        let needs_penalties = p.repeat_penalty != 1.0 || p.presence_penalty != 0.0 || p.frequency_penalty != 0.0;
        if !p.logit_bias.is_empty() || (needs_penalties && p.repeat_last_n > 0) {
            let mut l = logits.to_vec();
            apply_logit_bias(&mut l, &p.logit_bias);
            let window = &self.history[self.history.len().saturating_sub(p.repeat_last_n)..];
            apply_penalties(&mut l, window, p.repeat_penalty, p.presence_penalty, p.frequency_penalty);
            adjusted = Some(l);
        }
        let logits = adjusted.as_deref().unwrap_or(logits);
        if p.temperature <= 0.0 {
            let token = argmax(logits);
            return (token, post.then(|| vec![(token, 1.0)]));
        }
        let mut cands = top_k(logits, p.top_k);
        // A masked token may fill a place in the top k; it has no probability to keep.
        if cands.len() > 1 {
            cands.retain(|c| c.logit > f32::NEG_INFINITY);
        }
        typical(&mut cands, p.typical_p);
        top_p(&mut cands, p.top_p);
        min_p(&mut cands, p.min_p);
        let probs = softmax(&cands, p.temperature);
        let token = cands[draw(&probs, self.rng.uniform())].token;
        let drawn =
            post.then(|| cands.iter().zip(&probs).filter(|(_, &q)| q > 0.0).map(|(c, &q)| (c.token, q)).collect());
        (token, drawn)
    }
}

/// A sampled token's probability and the likeliest alternatives ([`Sampler::sample_with_probs`]).
#[derive(Clone, Debug, PartialEq)]
pub struct TokenProbs {
    /// The token's log-probability.
    pub logprob: f32,
    /// The likeliest tokens, likeliest first: log-probabilities before sampling, probabilities
    /// after (`post`).
    pub top: Vec<(u32, f32)>,
    /// Whether these are the sampler's probabilities (after sampling) rather than the model's.
    pub post: bool,
}

/// Adds each bias to its token's logit (out-of-range tokens are ignored).
pub fn apply_logit_bias(logits: &mut [f32], bias: &[(u32, f32)]) {
    for &(token, b) in bias {
        if let Some(l) = logits.get_mut(token as usize) {
            *l += b;
        }
    }
}

/// Repetition, presence and frequency penalties for the tokens in `window`, as llama.cpp applies them.
pub fn apply_penalties(logits: &mut [f32], window: &[u32], repeat: f32, presence: f32, frequency: f32) {
    let mut counts: HashMap<u32, u32> = HashMap::new();
    for &t in window {
        *counts.entry(t).or_default() += 1;
    }
    for (&token, &count) in &counts {
        let Some(l) = logits.get_mut(token as usize) else { continue };
        *l = if *l <= 0.0 { *l * repeat } else { *l / repeat };
        *l -= count as f32 * frequency + presence;
    }
}

/// The index of the largest logit: the first on ties; NaNs are passed over; 0 for an empty or
/// all-NaN row. The one argmax (greedy sampling, top-1 agreement in [`crate::logits_file::compare`]).
/// Finds the maximum with an eight-lane reduction (which vectorizes), then its first position.
pub fn argmax(logits: &[f32]) -> u32 {
    let max = max_of(logits);
    logits.iter().position(|&l| l == max).unwrap_or(0) as u32
}

/// The largest value (NaN-free input), eight lanes at a time.
fn max_of(x: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for (m, &v) in lanes.iter_mut().zip(c) {
            *m = if v > *m { v } else { *m };
        }
    }
    tail.iter().chain(&lanes).fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
}

/// Min-heap entry ordered by logit, then by preferring the lower token id.
struct ByLogit(Candidate);

impl PartialEq for ByLogit {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for ByLogit {}
impl PartialOrd for ByLogit {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ByLogit {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed, so the heap's top is the weakest kept candidate.
        other.0.logit.total_cmp(&self.0.logit).then(self.0.token.cmp(&other.0.token))
    }
}

/// The `k` highest logits, sorted descending (ties: lower token first); all of them when `k == 0`.
/// One pass with a k-sized heap, so a 262k vocabulary costs little more than reading it.
pub fn top_k(logits: &[f32], k: usize) -> Vec<Candidate> {
    let all = logits.iter().enumerate().map(|(i, &logit)| Candidate { token: i as u32, logit });
    let mut out: Vec<Candidate> = if k == 0 || k >= logits.len() {
        all.collect()
    } else {
        // Once the heap is full, a block of 64 logits whose maximum does not beat the weakest
        // kept one is skipped whole: most of a large vocabulary costs one vectorized pass.
        let mut heap: BinaryHeap<ByLogit> = BinaryHeap::with_capacity(k + 1);
        let mut weakest = f32::NEG_INFINITY;
        for (b, block) in logits.chunks(64).enumerate() {
            if heap.len() == k && max_of(block) <= weakest {
                continue;
            }
            for (j, &logit) in block.iter().enumerate() {
                let c = Candidate { token: (b * 64 + j) as u32, logit };
                if heap.len() < k {
                    heap.push(ByLogit(c));
                } else if logit > weakest {
                    heap.pop();
                    heap.push(ByLogit(c));
                } else {
                    continue;
                }
                if heap.len() == k {
                    weakest = heap.peek().expect("k > 0").0.logit;
                }
            }
        }
        heap.into_iter().map(|b| b.0).collect()
    };
    out.sort_by(|a, b| b.logit.total_cmp(&a.logit).then(a.token.cmp(&b.token)));
    out
}

/// Probabilities of sorted candidates at temperature `t` (max-subtracted for stability).
pub fn softmax(cands: &[Candidate], t: f32) -> Vec<f32> {
    let max = cands.first().map_or(0.0, |c| c.logit);
    let mut p: Vec<f32> = cands.iter().map(|c| ((c.logit - max) / t).exp()).collect();
    let sum: f32 = p.iter().sum();
    p.iter_mut().for_each(|x| *x /= sum);
    p
}

/// Keeps the smallest prefix whose probability reaches `p` (at least one candidate).
pub fn top_p(cands: &mut Vec<Candidate>, p: f32) {
    if p >= 1.0 {
        return;
    }
    let probs = softmax(cands, 1.0);
    let mut cum = 0.0;
    let mut keep = cands.len();
    for (i, q) in probs.iter().enumerate() {
        cum += q;
        if cum >= p {
            keep = i + 1;
            break;
        }
    }
    cands.truncate(keep.max(1));
}

/// Keeps candidates whose probability is at least `p` times the best one's.
pub fn min_p(cands: &mut Vec<Candidate>, p: f32) {
    if p <= 0.0 || cands.is_empty() {
        return;
    }
    let threshold = cands[0].logit + p.ln();
    let keep = cands.iter().take_while(|c| c.logit >= threshold).count();
    cands.truncate(keep.max(1));
}

/// Locally typical sampling: keeps the candidates whose surprise is closest to the entropy,
/// until their probability reaches `p`. The result stays sorted by logit.
pub fn typical(cands: &mut Vec<Candidate>, p: f32) {
    if p >= 1.0 || cands.len() <= 1 {
        return;
    }
    let probs = softmax(cands, 1.0);
    let entropy: f32 = probs.iter().filter(|&&q| q > 0.0).map(|&q| -q * q.ln()).sum();
    let mut order: Vec<usize> = (0..cands.len()).collect();
    let shift = |i: usize| (-probs[i].ln() - entropy).abs();
    order.sort_by(|&a, &b| shift(a).total_cmp(&shift(b)).then(a.cmp(&b)));
    let mut cum = 0.0;
    let mut keep = order.len();
    for (n, &i) in order.iter().enumerate() {
        cum += probs[i];
        if cum >= p {
            keep = n + 1;
            break;
        }
    }
    let mut kept: Vec<usize> = order[..keep.max(1)].to_vec();
    kept.sort_unstable();
    *cands = kept.into_iter().map(|i| cands[i]).collect();
}

/// The index drawn from `probs` by the uniform number `u` in [0, 1).
pub fn draw(probs: &[f32], u: f64) -> usize {
    let mut cum = 0.0f64;
    for (i, &p) in probs.iter().enumerate() {
        cum += p as f64;
        if u < cum {
            return i;
        }
    }
    probs.len() - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cands(logits: &[f32]) -> Vec<Candidate> {
        top_k(logits, 0)
    }

    fn tokens(c: &[Candidate]) -> Vec<u32> {
        c.iter().map(|c| c.token).collect()
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        assert_eq!(argmax(&[0.1, 3.0, -1.0, 3.0]), 1);
        // NaNs are passed over, in the eight lanes and in the tail.
        let nan = f32::NAN;
        assert_eq!(argmax(&[nan, 1.0, nan, 2.0, 2.0, nan, 0.0, -1.0, nan, 2.0, nan]), 3);
        assert_eq!(argmax(&[1.0, nan, 5.0, nan, 0.0, 0.0, 0.0, 0.0, 0.0, 7.0, nan]), 9);
        assert_eq!((argmax(&[]), argmax(&[nan, nan]), argmax(&[f32::NEG_INFINITY; 3])), (0, 0, 0));
        let mut s = Sampler::new(SamplingParams { temperature: 0.0, ..Default::default() });
        assert_eq!(s.sample(&[0.1, 3.0, -1.0, 3.0]), 1);
    }

    #[test]
    fn top_k_on_a_large_vocabulary_matches_a_full_sort() {
        let logits: Vec<f32> =
            (0..100_000u32).map(|i| ((i.wrapping_mul(2_654_435_761) >> 7) % 10_007) as f32 / 97.0).collect();
        for k in [1, 5, 40, 1000] {
            let fast = top_k(&logits, k);
            let mut all = top_k(&logits, 0);
            all.truncate(k);
            assert_eq!(fast, all, "k = {k}");
        }
        assert_eq!(argmax(&logits), top_k(&logits, 1)[0].token);
    }

    #[test]
    fn top_k_keeps_the_k_best_sorted() {
        let logits = [0.5, 2.0, -1.0, 2.0, 1.5, 0.0];
        assert_eq!(tokens(&top_k(&logits, 3)), vec![1, 3, 4]);
        assert_eq!(tokens(&top_k(&logits, 0)), vec![1, 3, 4, 0, 5, 2]);
        assert_eq!(tokens(&top_k(&logits, 100)).len(), 6);
    }

    #[test]
    fn softmax_matches_hand_computation() {
        // logits ln(3), ln(1): probabilities 0.75, 0.25; at temperature 2: sqrt(3):1.
        let c = cands(&[3f32.ln(), 0.0]);
        let p = softmax(&c, 1.0);
        assert!((p[0] - 0.75).abs() < 1e-6 && (p[1] - 0.25).abs() < 1e-6);
        let p = softmax(&c, 2.0);
        let s3 = 3f32.sqrt();
        assert!((p[0] - s3 / (s3 + 1.0)).abs() < 1e-6);
    }

    #[test]
    fn top_p_keeps_the_smallest_prefix_reaching_p() {
        // probabilities 0.5, 0.3, 0.2
        let logits = [0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()];
        for (p, keep) in [(0.4, 1), (0.5, 1), (0.6, 2), (0.8, 2), (0.81, 3), (1.0, 3)] {
            let mut c = cands(&logits);
            top_p(&mut c, p);
            assert_eq!(c.len(), keep, "top_p {p}");
        }
    }

    #[test]
    fn min_p_keeps_tokens_near_the_best() {
        // probabilities 0.5, 0.3, 0.2: min_p 0.5 keeps those >= 0.25.
        let logits = [0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()];
        let mut c = cands(&logits);
        min_p(&mut c, 0.5);
        assert_eq!(tokens(&c), vec![0, 1]);
        let mut c = cands(&logits);
        min_p(&mut c, 0.99);
        assert_eq!(tokens(&c), vec![0]);
    }

    #[test]
    fn typical_keeps_tokens_closest_to_the_entropy() {
        // probabilities 0.7, 0.2, 0.1: entropy H = 0.8018; surprises 0.357, 1.609, 2.303;
        // distances 0.445, 0.808, 1.501: order 0, 1, 2.
        let logits = [0.7f32.ln(), 0.2f32.ln(), 0.1f32.ln()];
        let mut c = cands(&logits);
        typical(&mut c, 0.75);
        assert_eq!(tokens(&c), vec![0, 1]);
        // A flat head with a long tail: the tail's surprise is far from the entropy.
        let logits = [0.3f32.ln(), 0.3f32.ln(), 0.3f32.ln(), 0.1f32.ln()];
        let mut c = cands(&logits);
        typical(&mut c, 0.85);
        assert_eq!(tokens(&c), vec![0, 1, 2]);
    }

    #[test]
    fn penalties_follow_llama_cpp() {
        let mut l = vec![2.0, -2.0, 1.0, 0.5];
        apply_penalties(&mut l, &[0, 1, 0], 2.0, 0.0, 0.0);
        assert_eq!(l, vec![1.0, -4.0, 1.0, 0.5]);
        let mut l = vec![2.0, -2.0, 1.0, 0.5];
        apply_penalties(&mut l, &[0, 1, 0], 1.0, 0.5, 0.25);
        assert_eq!(l, vec![2.0 - 0.5 - 0.5, -2.0 - 0.25 - 0.5, 1.0, 0.5]);
        let mut l = vec![0.0, 0.0];
        apply_logit_bias(&mut l, &[(1, 5.0), (7, 1.0)]);
        assert_eq!(l, vec![0.0, 5.0]);
    }

    #[test]
    fn same_seed_same_tokens() {
        let logits: Vec<f32> = (0..1000).map(|i| ((i * 7919) % 1000) as f32 / 100.0).collect();
        let run = |seed| {
            let mut s = Sampler::new(SamplingParams { seed, top_k: 0, top_p: 1.0, min_p: 0.0, ..Default::default() });
            (0..50).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn probabilities_before_and_after_sampling() {
        let probs = [0.5f32, 0.25, 0.15, 0.1];
        let logits: Vec<f32> = probs.iter().map(|p| p.ln() + 3.0).collect();
        // Before sampling: the model's log-probabilities, likeliest first, whatever the chain.
        let mut s = Sampler::new(SamplingParams { seed: 7, top_k: 2, ..Default::default() });
        let (token, p) = s.sample_with_probs(&logits, 3, false);
        assert!(!p.post);
        let expect = [(0, 0.5f32), (1, 0.25), (2, 0.15)];
        for ((id, lp), (eid, ep)) in p.top.iter().zip(expect) {
            assert_eq!(*id, eid);
            assert!((lp - ep.ln()).abs() < 1e-5, "{lp} vs {}", ep.ln());
        }
        assert!((p.logprob - probs[token as usize].ln()).abs() < 1e-5);
        // After sampling: the distribution drawn from (top-k 2 at temperature 1: 2/3, 1/3).
        let params =
            SamplingParams { seed: 7, top_k: 2, top_p: 1.0, min_p: 0.0, temperature: 1.0, ..Default::default() };
        let mut s = Sampler::new(params);
        let (token, p) = s.sample_with_probs(&logits, 10, true);
        assert!(p.post && token < 2);
        assert_eq!(p.top.len(), 2, "only the candidates left");
        assert!((p.top[0].1 - 2.0 / 3.0).abs() < 1e-5 && (p.top[1].1 - 1.0 / 3.0).abs() < 1e-5);
        // Greedy after sampling: the token alone, certain.
        let mut s = Sampler::new(SamplingParams { temperature: 0.0, ..Default::default() });
        let (token, p) = s.sample_with_probs(&logits, 5, true);
        assert_eq!((token, p.top, p.logprob), (0, vec![(0, 1.0)], 0.0));
    }

    #[test]
    fn sampled_frequencies_follow_the_distribution() {
        // Probabilities 0.5, 0.25, 0.15, 0.1 at temperature 1: chi-square over 40,000 draws.
        let probs = [0.5f32, 0.25, 0.15, 0.1];
        let logits: Vec<f32> = probs.iter().map(|p| p.ln()).collect();
        let params =
            SamplingParams { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, seed: 42, ..Default::default() };
        let mut s = Sampler::new(params);
        let n = 40_000;
        let mut counts = [0usize; 4];
        for _ in 0..n {
            counts[s.sample(&logits) as usize] += 1;
        }
        let chi2: f64 = counts
            .iter()
            .zip(probs)
            .map(|(&c, p)| {
                let e = n as f64 * p as f64;
                (c as f64 - e).powi(2) / e
            })
            .sum();
        // 3 degrees of freedom: P(chi2 > 16.27) = 0.001.
        assert!(chi2 < 16.27, "chi-square {chi2} for counts {counts:?}");
        // And temperature 0.5 squares the odds: 0.5^2 : 0.25^2 : ... renormalized.
        let params =
            SamplingParams { temperature: 0.5, top_k: 0, top_p: 1.0, min_p: 0.0, seed: 7, ..Default::default() };
        let mut s = Sampler::new(params);
        let sq: Vec<f64> = probs.iter().map(|&p| (p as f64).powi(2)).collect();
        let z: f64 = sq.iter().sum();
        let mut counts = [0usize; 4];
        for _ in 0..n {
            counts[s.sample(&logits) as usize] += 1;
        }
        let chi2: f64 =
            counts.iter().zip(&sq).map(|(&c, q)| (c as f64 - n as f64 * q / z).powi(2) / (n as f64 * q / z)).sum();
        assert!(chi2 < 16.27, "chi-square {chi2} at temperature 0.5 for {counts:?}");
    }

    #[test]
    fn invalid_values_are_named() {
        let bad = |p: SamplingParams| p.validate().unwrap_err();
        assert!(bad(SamplingParams { temperature: -1.0, ..Default::default() }).contains("--temp"));
        assert!(bad(SamplingParams { top_p: 0.0, ..Default::default() }).contains("--top-p"));
        assert!(bad(SamplingParams { top_p: 1.5, ..Default::default() }).contains("--top-p"));
        assert!(bad(SamplingParams { min_p: 2.0, ..Default::default() }).contains("--min-p"));
        assert!(SamplingParams::default().validate().is_ok());
    }
}
