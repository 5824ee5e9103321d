//! Quantization speed beside ggml's, on the same rows in the same run:
//! `cargo bench -p strata-quantize [-- --rows N --reps N --type NAME]`.
//!
//! For each type (or only `--type`): MB/s of f32 input for strata-quantize and for
//! `ggml_quantize_chunk`, without an importance matrix (as llama-quantize calls it) with one
//! thread and with all threads, and with one (random per-column weights, as `--imatrix` gives)
//! with one thread, for the types whose quantizer weights. strata runs on a rayon pool of that
//! size; ggml gets the rows split evenly over as many threads, as llama-quantize does. Each
//! figure is the median of `--reps` runs, and every run's bytes are checked equal to ggml's.

use std::time::Instant;

use llama_cpp_sys_2 as sys;
use strata_quantize::{quantize_rows, quantize_rows_weighted, row_size, GgmlType};

const N_PER_ROW: usize = 4096;

fn ggml_quantize(ty: GgmlType, src: &[f32], weights: Option<&[f32]>, dst: &mut [u8], threads: usize) {
    let rows = src.len() / N_PER_ROW;
    let row_bytes = row_size(ty, N_PER_ROW).unwrap();
    let per_thread = rows.div_ceil(threads);
    std::thread::scope(|s| {
        for (x, out) in src.chunks(per_thread * N_PER_ROW).zip(dst.chunks_mut(per_thread * row_bytes)) {
            s.spawn(move || unsafe {
                sys::ggml_quantize_chunk(
                    ty.id() as sys::ggml_type,
                    x.as_ptr(),
                    out.as_mut_ptr().cast(),
                    0,
                    (x.len() / N_PER_ROW) as i64,
                    N_PER_ROW as i64,
                    weights.map_or(std::ptr::null(), |w| w.as_ptr()),
                );
            });
        }
    });
}

/// Median seconds of `reps` runs of `f`.
fn median_secs(reps: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    let mut times: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[reps / 2]
}

/// The value after `name` on the command line.
fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

/// A numeric option.
fn number(name: &str, default: usize) -> usize {
    arg(name).map_or(default, |v| v.parse().expect("a number"))
}

/// Times strata and ggml on the same input with `threads` threads, checks their bytes equal,
/// and returns the table cells: both MB/s and the ratio.
fn side_by_side(ty: GgmlType, src: &[f32], weights: Option<&[f32]>, threads: usize, reps: usize) -> String {
    let mut ours = vec![0u8; src.len() / N_PER_ROW * row_size(ty, N_PER_ROW).unwrap()];
    let mut theirs = ours.clone();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let t_ours = median_secs(reps, || {
        pool.install(|| match weights {
            Some(w) => quantize_rows_weighted(ty, src, N_PER_ROW, w, &mut ours).unwrap(),
            None => quantize_rows(ty, src, N_PER_ROW, &mut ours).unwrap(),
        })
    });
    let t_ggml = median_secs(reps, || ggml_quantize(ty, src, weights, &mut theirs, threads));
    assert!(ours == theirs, "{ty}: bytes differ from ggml's");
    let mb = (src.len() * 4) as f64 / 1e6;
    format!("{:.0} | {:.0} | {:.2}x", mb / t_ours, mb / t_ggml, t_ggml / t_ours)
}

fn main() {
    let rows = number("--rows", 256);
    let reps = number("--reps", 5);
    let only = arg("--type").map(|name| GgmlType::from_name(&name).unwrap_or_else(|| panic!("unknown type {name}")));
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut state = 0x1234_5678_9ABC_DEF1u64;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    // Sum of uniforms: roughly normal, like trained weights.
    let src: Vec<f32> = (0..rows * N_PER_ROW).map(|_| (0..4).map(|_| uniform() - 0.5).sum::<f32>() * 0.05).collect();
    // Positive, spread over two orders of magnitude, like an imatrix's mean squared activations.
    let weights: Vec<f32> = (0..N_PER_ROW).map(|_| 0.01 + uniform() * uniform()).collect();
    let mb = (src.len() * 4) as f64 / 1e6;
    println!("{rows} rows x {N_PER_ROW} f32 ({mb:.0} MB), median of {reps} runs, MB/s of f32 input; {all} threads available\n");
    println!("| type | strata 1 thread | ggml 1 thread | ratio | strata 1 thread, imatrix | ggml 1 thread, imatrix | ratio | strata {all} threads | ggml {all} threads | ratio |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &ty in GgmlType::QUANTIZABLE.iter().filter(|&&ty| only.is_none_or(|o| o == ty)) {
        let weighted = match ty.uses_importance() {
            true => side_by_side(ty, &src, Some(&weights), 1, reps),
            false => "— | — | —".to_string(),
        };
        println!(
            "| {ty} | {} | {weighted} | {} |",
            side_by_side(ty, &src, None, 1, reps),
            side_by_side(ty, &src, None, all, reps)
        );
    }
}
