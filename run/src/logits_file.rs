//! Saved logits (`.logits` files): the token ids of a text and the logits a model gave at every
//! position, so another model (or another conversion) can be compared with it later, as
//! llama-perplexity's `--kl-divergence-base` file allows.
//!
//! Layout, little-endian: `STLG`, u32 version (1), u32 n_vocab, u32 n_tokens, n_tokens u32
//! token ids, then n_tokens × n_vocab f32 logits (position-major). The fixture generator
//! (scripts/fixtures/make_fixtures.py) writes transformers' logits in this format.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};

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

/// Index of the largest logit.
pub fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) }).0
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
        assert_eq!(argmax(&[0.1, 3.0, -2.0]), 1);
    }
}
