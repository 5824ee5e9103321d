//! Importance-matrix collection through ggml's eval callback, as llama-imatrix collects: for
//! every weight matrix multiplied by activations (`blk.*`, and `output.weight` on request;
//! dense products of at least 16 tokens, and every expert product), the per-input-channel sum
//! of the squared activations and how many rows were summed.

use std::collections::HashMap;
use std::ffi::{c_void, CStr};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Result};
use llama_cpp_sys_2::{ggml_tensor, GGML_OP_MUL_MAT, GGML_OP_MUL_MAT_ID, GGML_TYPE_F32, GGML_TYPE_I32};
use strata_gguf::{Imatrix, ImatrixEntry};

/// Dense products over fewer tokens are skipped (llama-imatrix's rule: single-token decoding
/// would otherwise dominate the statistics).
const MIN_TOKENS: i64 = 16;

/// The statistics gathered so far; shared with llama.cpp's compute thread through
/// [`collect`]'s user data.
pub struct Collector {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    stats: HashMap<String, Stats>,
    process_output: bool,
    /// A copy of a tensor that lives in device memory (as u32s, for alignment).
    scratch: Vec<u32>,
    /// The first error met inside the callback, reported once the decode has failed.
    error: Option<String>,
}

#[derive(Default)]
struct Stats {
    values: Vec<f32>,
    counts: Vec<u64>,
}

impl Collector {
    /// `process_output`: also collect for `output.weight` (llama-imatrix's `--process-output`).
    pub fn new(process_output: bool) -> Collector {
        Collector { state: Mutex::new(State { process_output, ..State::default() }) }
    }

    /// What went wrong inside the callback, if anything did.
    pub fn take_error(&self) -> Option<String> {
        self.lock().error.take()
    }

    /// The statistics as an importance matrix collected over `chunk_count` chunks of
    /// `chunk_size` tokens of `dataset`.
    pub fn into_imatrix(self, dataset: &str, chunk_count: u32, chunk_size: u32) -> Imatrix {
        let state = self.state.into_inner().unwrap_or_else(|e| e.into_inner());
        let entries = state
            .stats
            .into_iter()
            .map(|(name, s)| (name, ImatrixEntry { sums: s.values, counts: s.counts }))
            .collect();
        Imatrix { entries, datasets: vec![dataset.to_string()], chunk_count, chunk_size, legacy: false }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The weight's name without the backend's decorations (`CUDA0#blk.0.attn_k.weight#0`).
fn weight_name(raw: &str) -> &str {
    match raw.split_once('#') {
        Some((_, rest)) => rest.split('#').next().unwrap_or(rest),
        None => raw,
    }
}

/// ggml's eval callback: with `ask`, whether node `t` is a product to collect; then, once it is
/// computed, the collection. Returning false stops the computation (after an error, which
/// [`Collector::take_error`] then reports).
///
/// # Safety
/// `user_data` is a live [`Collector`] and `t` a node of the graph being computed.
pub unsafe extern "C" fn collect(t: *mut ggml_tensor, ask: bool, user_data: *mut c_void) -> bool {
    // SAFETY: the caller's contract.
    let (t, collector) = unsafe { (&*t, &*(user_data as *const Collector)) };
    if t.op != GGML_OP_MUL_MAT && t.op != GGML_OP_MUL_MAT_ID {
        return !ask;
    }
    // SAFETY: products have both sources, with NUL-terminated names.
    let (src0, src1) = unsafe { (&*t.src[0], &*t.src[1]) };
    let name = unsafe { CStr::from_ptr(src0.name.as_ptr()) }.to_string_lossy();
    let name = weight_name(&name);
    let mut state = collector.lock();
    if ask {
        return t.op == GGML_OP_MUL_MAT_ID
            || (src1.ne[1] >= MIN_TOKENS
                && src1.type_ == GGML_TYPE_F32
                && (name.starts_with("blk.") || (state.process_output && name == "output.weight")));
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: the node is computed; its sources' data are readable through ggml's backend API.
        unsafe { state.record(t, src0, src1, name) }
    }));
    let error = match result {
        Ok(Ok(())) => return true,
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("{name}: the importance-matrix collector panicked"),
    };
    state.error.get_or_insert(error);
    false
}

impl State {
    /// Adds the squared activations of product `t` = `src0` × `src1` to `name`'s statistics.
    ///
    /// # Safety
    /// `t` is computed, and its sources are valid ggml tensors.
    unsafe fn record(&mut self, t: &ggml_tensor, src0: &ggml_tensor, src1: &ggml_tensor, name: &str) -> Result<()> {
        if src1.type_ != GGML_TYPE_F32 || src1.nb[0] != 4 {
            bail!("{name}: its activations are not contiguous F32 rows");
        }
        // SAFETY: the caller's contract; the copy is sized by ggml.
        let data = unsafe { host_bytes(src1, &mut self.scratch) };
        let row = |offset: usize| -> &[f32] { as_f32s(&data[offset..offset + src1.ne[0] as usize * 4]) };
        let width = src1.ne[0] as usize;
        let stats = self.stats.entry(name.to_string()).or_default();
        if t.op == GGML_OP_MUL_MAT_ID {
            // SAFETY: a MUL_MAT_ID node's third source holds the chosen experts.
            let ids = unsafe { &*t.src[2] };
            let n_experts = src0.ne[2] as usize;
            let n_tokens = src1.ne[2];
            if ids.type_ != GGML_TYPE_I32 || ids.ne[1] != n_tokens || src1.ne[3] != 1 {
                bail!("{name}: expert routing of shape {:?} does not match activations of shape {:?}", ids.ne, src1.ne);
            }
            let mut id_copy = Vec::new();
            // SAFETY: as above.
            let id_bytes = unsafe { host_bytes(ids, &mut id_copy) };
            if stats.counts.len() == 1 && n_experts > 1 {
                stats.counts = vec![stats.counts[0]; n_experts];
            }
            stats.init(name, width * n_experts, n_experts)?;
            let mut touched = vec![false; n_experts];
            for idx in 0..ids.ne[0] as usize {
                for token in 0..n_tokens as usize {
                    let at = token * ids.nb[1] + idx * ids.nb[0];
                    let expert = i32::from_le_bytes(id_bytes[at..at + 4].try_into().expect("4 bytes"));
                    let expert = usize::try_from(expert)
                        .ok()
                        .filter(|&e| e < n_experts)
                        .ok_or_else(|| anyhow!("{name}: expert id {expert} of {n_experts}"))?;
                    let x = row((idx % src1.ne[1] as usize) * src1.nb[1] + token * src1.nb[2]);
                    stats.counts[expert] += 1;
                    touched[expert] = true;
                    accumulate(&mut stats.values[expert * width..(expert + 1) * width], x);
                }
            }
            for (e, _) in touched.iter().enumerate().filter(|(_, &t)| t) {
                check_finite(name, &stats.values[e * width..(e + 1) * width])?;
            }
        } else {
            let (mats2, mats3) = (src0.ne[2] as usize, src0.ne[3] as usize);
            let n_mat = mats2 * mats3;
            // One count per dense weight, as llama-imatrix keeps it.
            if stats.counts.len() > 1 && stats.counts.iter().all(|&c| c == stats.counts[0]) {
                stats.counts.truncate(1);
            }
            stats.init(name, width * n_mat, 1)?;
            for i3 in 0..src1.ne[3] as usize {
                for i2 in 0..src1.ne[2] as usize {
                    let mat = (i3 % mats3) * mats2 + (i2 % mats2);
                    let acc = &mut stats.values[mat * width..(mat + 1) * width];
                    for r in 0..src1.ne[1] as usize {
                        accumulate(acc, row(r * src1.nb[1] + i2 * src1.nb[2] + i3 * src1.nb[3]));
                    }
                }
            }
            check_finite(name, &stats.values)?;
            let rows = (src1.ne[1] * src1.ne[2] * src1.ne[3]) as u64 / n_mat as u64;
            stats.counts.iter_mut().for_each(|c| *c += rows);
        }
        Ok(())
    }
}

impl Stats {
    /// Sizes fresh statistics, or checks that the product matches what was collected before.
    fn init(&mut self, name: &str, n_values: usize, n_counts: usize) -> Result<()> {
        if self.values.is_empty() {
            self.values = vec![0.0; n_values];
            self.counts = vec![0; n_counts];
        } else if self.values.len() != n_values {
            bail!("{name}: {n_values} activation channels where earlier products had {}", self.values.len());
        } else if self.counts.len() != n_counts && n_counts > 1 {
            bail!("{name}: {n_counts} experts where earlier products had {}", self.counts.len());
        }
        Ok(())
    }
}

/// `acc[j] += x[j]²`, in channel order as llama-imatrix sums.
fn accumulate(acc: &mut [f32], x: &[f32]) {
    for (a, &v) in acc.iter_mut().zip(x) {
        *a += v * v;
    }
}

fn check_finite(name: &str, values: &[f32]) -> Result<()> {
    if values.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        bail!("{name}: the activations hold non-finite values")
    }
}

fn as_f32s(bytes: &[u8]) -> &[f32] {
    // SAFETY: ggml's F32 buffers are 4-byte aligned (checked), and every bit pattern is an f32.
    assert_eq!(bytes.as_ptr().align_offset(4), 0, "F32 data is aligned");
    unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), bytes.len() / 4) }
}

/// The tensor's bytes: its host memory, or a copy from the device into `scratch`.
///
/// # Safety
/// `t` is a computed ggml tensor with a buffer.
unsafe fn host_bytes<'a>(t: &'a ggml_tensor, scratch: &'a mut Vec<u32>) -> &'a [u8] {
    // SAFETY: the caller's contract; the copy's size is ggml's.
    unsafe {
        let n = llama_cpp_sys_2::ggml_nbytes(t);
        if llama_cpp_sys_2::ggml_backend_buffer_is_host(t.buffer) {
            return std::slice::from_raw_parts(t.data.cast::<u8>(), n);
        }
        scratch.resize(n.div_ceil(4), 0);
        llama_cpp_sys_2::ggml_backend_tensor_get(t, scratch.as_mut_ptr().cast(), 0, n);
        std::slice::from_raw_parts(scratch.as_ptr().cast::<u8>(), n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_names_lose_backend_decorations() {
        assert_eq!(weight_name("CUDA0#blk.0.attn_k.weight#0"), "blk.0.attn_k.weight");
        assert_eq!(weight_name("CPU#blk.1.ffn_up.weight"), "blk.1.ffn_up.weight");
        assert_eq!(weight_name("blk.2.ffn_down.weight"), "blk.2.ffn_down.weight");
    }
}
