//! What an importance matrix (`convert --imatrix`) does for each tensor: which entry weights
//! its quantizer, or why none does — as llama-quantize decides it.

use std::fmt;
use std::path::PathBuf;

use anyhow::{bail, Result};
use strata_gguf::{Imatrix, TensorClass, TensorInfo, Value};

/// An importance matrix and the file it came from.
pub struct ImatrixInput {
    pub path: PathBuf,
    pub imatrix: Imatrix,
}

/// How a tensor's quantizer is weighted.
#[derive(Clone, Debug, PartialEq)]
pub enum Importance {
    /// No imatrix was given.
    NotGiven,
    /// Quantized with the imatrix entry's weights: one row of the tensor's width per matrix
    /// (per expert for expert tensors).
    Weighted(Vec<f32>),
    /// Its type's quantizer takes no weights (the float types, Q8_0).
    TypeTakesNone,
    /// Read with get_rows (the token embedding, the PLE table), never multiplied by an
    /// activation, so no imatrix covers it: its type comes from the policy alone.
    GetRows,
    /// The imatrix has no entry for it: quantized without weights.
    NoEntry,
}

impl Importance {
    /// A short name for JSON output.
    pub fn name(&self) -> &'static str {
        match self {
            Importance::NotGiven => "no imatrix",
            Importance::Weighted(_) => "weighted",
            Importance::TypeTakesNone => "type takes no weights",
            Importance::GetRows => "get_rows",
            Importance::NoEntry => "no entry",
        }
    }
}

impl fmt::Display for Importance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Importance::NotGiven => f.write_str("no imatrix given"),
            Importance::Weighted(_) => f.write_str("weighted by the imatrix"),
            Importance::TypeTakesNone => f.write_str("its type's quantizer takes no imatrix weights"),
            Importance::GetRows => {
                f.write_str("read with get_rows, never multiplied by an activation: no imatrix covers it")
            }
            Importance::NoEntry => f.write_str("the imatrix has no entry for it: quantized without weights"),
        }
    }
}

impl ImatrixInput {
    /// The weighting of tensor `info` of `class`. An entry whose width does not match the
    /// tensor's rows, or that holds a non-finite value, is an error naming the file and tensor.
    pub fn importance(&self, info: &TensorInfo, class: TensorClass) -> Result<Importance> {
        if !info.ty.uses_importance() {
            return Ok(Importance::TypeTakesNone);
        }
        if matches!(class, TensorClass::TokenEmbedding | TensorClass::PerLayerTokenEmbedding) {
            return Ok(Importance::GetRows);
        }
        let Some(weights) = self.imatrix.weights(&info.name) else { return Ok(Importance::NoEntry) };
        let width = info.shape[0] as usize;
        // Matrices: one for a 2-D tensor, one per expert (the third dimension) for a 3-D one.
        let n_mats = info.shape.get(2).copied().unwrap_or(1) as usize;
        if weights.len() != width * n_mats {
            bail!(
                "{}: {} has {} importance values, but the tensor's rows are {width} wide in {n_mats} matri{} (is the imatrix for another model?)",
                self.path.display(),
                info.name,
                weights.len(),
                if n_mats == 1 { "x" } else { "ces" }
            );
        }
        if let Some(v) = weights.iter().find(|v| !v.is_finite()) {
            bail!("{}: {} holds the importance {v}", self.path.display(), info.name);
        }
        Ok(Importance::Weighted(weights))
    }

    /// llama-quantize's record of the imatrix in the output's metadata.
    pub fn metadata(&self) -> Vec<(String, Value)> {
        let mut out = vec![("quantize.imatrix.file".to_string(), Value::String(self.path.display().to_string()))];
        if let Some(dataset) = self.imatrix.datasets.first() {
            out.push(("quantize.imatrix.dataset".into(), Value::String(dataset.clone())));
        }
        out.push(("quantize.imatrix.entries_count".into(), Value::U32(self.imatrix.entries.len() as u32)));
        if self.imatrix.chunk_count > 0 {
            out.push(("quantize.imatrix.chunks_count".into(), Value::U32(self.imatrix.chunk_count)));
        }
        out
    }
}
