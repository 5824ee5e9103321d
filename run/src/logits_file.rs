//! Saved logits (`.logits` files): the token ids of a text and the logits a model gave at every
//! position, so another model (or another conversion) can be compared with it later, as
//! llama-perplexity's `--kl-divergence-base` file allows.
//!
//! Layout, little-endian: `STLG`, u32 version (1), u32 n_vocab, u32 n_tokens, n_tokens u32
//! token ids, then n_tokens × n_vocab f32 logits (position-major). The fixture generator
//! (scripts/fixtures/make_fixtures.py) writes transformers' logits in this format.
//!
//! [`compare`] measures one model's logits against another's: what `strata perplexity
//! --kl-base` reports, and so what every fixture bound in tests/convert_fixtures.rs is a bound on.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::sampling::argmax;

const MAGIC: &[u8; 4] = b"STLG";
const HEADER: usize = 16;

/// Token ids and the logits after each of them.
pub struct Logits {
    pub n_vocab: usize,
    pub tokens: Vec<i32>,
    /// `tokens.len() × n_vocab` values.
    pub values: Vec<f32>,
}

impl Logits {
    /// The logits after token `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.n_vocab..(i + 1) * self.n_vocab]
    }

    pub fn read(path: &Path) -> Result<Logits> {
        let data = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let u32_at = |o: usize| u32::from_le_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]]);
        if data.len() < HEADER || &data[..4] != MAGIC {
            bail!("{}: not a strata logits file (no STLG header)", path.display());
        }
        if u32_at(4) != 1 {
            bail!("{}: logits file version {} is not supported (1 is)", path.display(), u32_at(4));
        }
        let (n_vocab, n_tokens) = (u32_at(8) as usize, u32_at(12) as usize);
        let expected = (n_tokens as u128) * (1 + n_vocab as u128) * 4 + HEADER as u128;
        if n_vocab == 0 || n_tokens == 0 || expected != data.len() as u128 {
            bail!(
                "{}: header says {n_tokens} tokens × {n_vocab} logits ({expected} bytes), the file has {} bytes",
                path.display(),
                data.len()
            );
        }
        let tokens: Vec<i32> = (0..n_tokens).map(|i| u32_at(HEADER + 4 * i) as i32).collect();
        let start = HEADER + 4 * n_tokens;
        let values: Vec<f32> =
            data[start..].chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            bail!("{}: logit {i} is not finite", path.display());
        }
        Ok(Logits { n_vocab, tokens, values })
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let mut out = Vec::with_capacity(HEADER + 4 * (self.tokens.len() + self.values.len()));
        out.extend_from_slice(MAGIC);
        for v in [1, self.n_vocab as u32, self.tokens.len() as u32] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        self.tokens.iter().for_each(|&t| out.extend_from_slice(&(t as u32).to_le_bytes()));
        self.values.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        let mut f = std::fs::File::create(path).with_context(|| format!("{}: cannot create", path.display()))?;
        f.write_all(&out).with_context(|| format!("{}: cannot write", path.display()))
    }
}

/// Natural-log softmax of a row, in f64.
pub fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
    let sum: f64 = logits.iter().map(|&x| (x as f64 - max).exp()).sum();
    let log_z = max + sum.ln();
    logits.iter().map(|&x| x as f64 - log_z).collect()
}

/// KL(base ‖ model) of two next-token distributions given as log-probabilities
/// ([`log_softmax`] of the logits).
pub fn kl_divergence(base: &[f64], model: &[f64]) -> f64 {
    base.iter().zip(model).map(|(&p, &q)| p.exp() * (p - q)).sum::<f64>().max(0.0)
}

/// How far a model's logits are from a base model's over the same tokens, position by position.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// Positions compared.
    pub tokens: usize,
    /// Perplexity of the text (each position's next token, as the file gives it) under the model,
    /// and under the base.
    pub ppl: f64,
    pub base_ppl: f64,
    /// KL(base ‖ model) of the next-token distributions: mean and largest over the positions.
    pub kl_mean: f64,
    pub kl_max: f64,
    /// The share of positions where both rank the same token first ([`argmax`]).
    pub top1_agreement: f64,
    /// The largest |base − model| over every logit of every position.
    pub max_abs_logit_diff: f64,
    /// The largest |base| over every logit.
    pub max_abs_base_logit: f64,
    /// `max_abs_logit_diff / max_abs_base_logit`.
    pub relative_max_diff: f64,
}

/// Compares `ours` with `base`: the same tokens, logits over the same vocabulary.
pub fn compare(base: &Logits, ours: &Logits) -> Result<Comparison> {
    if base.n_vocab != ours.n_vocab || base.tokens != ours.tokens {
        bail!(
            "logits over {} tokens × {} are not comparable with {} × {} (or the token ids differ)",
            ours.tokens.len(),
            ours.n_vocab,
            base.tokens.len(),
            base.n_vocab
        );
    }
    let n = base.tokens.len();
    if n == 0 {
        bail!("no logits to compare");
    }
    let (mut kl_sum, mut kl_max, mut agree, mut max_diff, mut max_base) = (0.0f64, 0.0f64, 0usize, 0.0f64, 0.0f64);
    let (mut nll_base, mut nll_ours) = (0.0f64, 0.0f64);
    for i in 0..n {
        let (b, o) = (base.row(i), ours.row(i));
        let (lp, lq) = (log_softmax(b), log_softmax(o));
        let kl = kl_divergence(&lp, &lq);
        kl_sum += kl;
        kl_max = kl_max.max(kl);
        agree += usize::from(argmax(b) == argmax(o));
        for (&x, &y) in b.iter().zip(o) {
            max_diff = max_diff.max((x as f64 - y as f64).abs());
            max_base = max_base.max((x as f64).abs());
        }
        if i + 1 < n {
            let next = base.tokens[i + 1] as usize;
            nll_base -= lp[next];
            nll_ours -= lq[next];
        }
    }
    let scored = (n - 1).max(1) as f64;
    Ok(Comparison {
        tokens: n,
        ppl: (nll_ours / scored).exp(),
        base_ppl: (nll_base / scored).exp(),
        kl_mean: kl_sum / n as f64,
        kl_max,
        top1_agreement: agree as f64 / n as f64,
        max_abs_logit_diff: max_diff,
        max_abs_base_logit: max_base,
        relative_max_diff: max_diff / max_base.max(f64::MIN_POSITIVE),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let dir = std::env::temp_dir().join(format!("strata-logits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.logits");
        let l = Logits { n_vocab: 3, tokens: vec![5, 7], values: vec![1.0, 2.0, 3.0, -1.0, 0.5, 0.0] };
        l.write(&path).unwrap();
        let r = Logits::read(&path).unwrap();
        assert_eq!((r.n_vocab, r.tokens.clone(), r.values.clone()), (3, vec![5, 7], l.values.clone()));
        assert_eq!(r.row(1), &[-1.0, 0.5, 0.0]);
        let bytes = std::fs::read(&path).unwrap();
        for n in 0..bytes.len() {
            std::fs::write(&path, &bytes[..n]).unwrap();
            assert!(Logits::read(&path).is_err(), "{n}-byte prefix read");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn kl_of_known_distributions() {
        let p = log_softmax(&[1.0, 2.0, 3.0]);
        assert!(kl_divergence(&p, &p).abs() < 1e-12);
        // p = (1/2, 1/2), q = (1/4, 3/4): KL = 0.5 ln 2 + 0.5 ln(2/3).
        let q = log_softmax(&[0.0f32, (3.0f32).ln()]);
        let expected = 0.5 * 2f64.ln() + 0.5 * (2.0f64 / 3.0).ln();
        assert!((kl_divergence(&log_softmax(&[0.0, 0.0]), &q) - expected).abs() < 1e-7);
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-7 * b.abs().max(1.0)
    }

    #[test]
    fn identical_logits_compare_as_equal() {
        let l = Logits { n_vocab: 3, tokens: vec![2, 0], values: vec![1.0, -2.0, 0.5, 0.0, 4.0, -4.0] };
        let c = compare(&l, &l).unwrap();
        assert_eq!(
            (c.tokens, c.kl_max, c.top1_agreement, c.max_abs_logit_diff, c.relative_max_diff),
            (2, 0.0, 1.0, 0.0, 0.0)
        );
        assert!(c.kl_mean.abs() < 1e-12);
        assert_eq!(c.max_abs_base_logit, 4.0);
        assert_eq!(c.ppl, c.base_ppl);
    }

    /// Two positions over two tokens, worked by hand. Position 0: the base says (1/2, 1/2), the
    /// model (1/4, 3/4); position 1: both the same. The text's next token after position 0 is 1.
    #[test]
    fn a_two_token_case_worked_by_hand() {
        let ln3 = 3f32.ln();
        let base = Logits { n_vocab: 2, tokens: vec![0, 1], values: vec![0.0, 0.0, -2.0, 0.5] };
        let ours = Logits { n_vocab: 2, tokens: vec![0, 1], values: vec![0.0, ln3, -2.0, 0.5] };
        let c = compare(&base, &ours).unwrap();
        // KL((1/2, 1/2) ‖ (1/4, 3/4)) = 1/2 ln 2 + 1/2 ln(2/3) = 1/2 ln(4/3); 0 at position 1.
        let kl = 0.5 * (4.0f64 / 3.0).ln();
        assert!(close(c.kl_max, kl), "{c:?}");
        assert!(close(c.kl_mean, kl / 2.0), "{c:?}");
        // Position 0: the base's first maximum is token 0 (a tie), the model's token 1.
        assert_eq!(c.top1_agreement, 0.5);
        // One scored position: token 1 has probability 1/2 under the base, 3/4 under the model.
        assert!(close(c.base_ppl, 2.0), "{c:?}");
        assert!(close(c.ppl, 4.0 / 3.0), "{c:?}");
        // The largest difference is ln 3 (position 0), the largest base logit |-2|.
        assert_eq!((c.max_abs_logit_diff, c.max_abs_base_logit), (ln3 as f64, 2.0));
        assert_eq!(c.relative_max_diff, ln3 as f64 / 2.0);
    }

    #[test]
    fn logits_of_other_tokens_or_vocabularies_are_not_compared() {
        let a = Logits { n_vocab: 2, tokens: vec![0, 1], values: vec![0.0; 4] };
        let other_tokens = Logits { n_vocab: 2, tokens: vec![0, 0], values: vec![0.0; 4] };
        let other_vocab = Logits { n_vocab: 1, tokens: vec![0, 1, 0, 1], values: vec![0.0; 4] };
        assert!(compare(&a, &other_tokens).is_err());
        assert!(compare(&a, &other_vocab).is_err());
        let empty = Logits { n_vocab: 2, tokens: vec![], values: vec![] };
        assert!(compare(&empty, &empty).is_err());
    }
}
