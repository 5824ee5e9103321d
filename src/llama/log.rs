//! llama.cpp's log: captured by a callback (quiet unless `--verbose`), its last error line folded
//! into ours, and the one place strata reads facts from llama.cpp's log text, for want of an API:
//! where a load put the weights ([`Placement`]) and which weights the CPU backend repacks
//! ([`super::pages`]). `log_lines_llama_cpp_writes` fails when llama.cpp's wording changes.

use std::ffi::{c_char, c_void, CStr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use anyhow::anyhow;

use super::pages::repacking;

pub(super) static VERBOSE: AtomicBool = AtomicBool::new(false);

pub(super) static LAST_ERROR: Mutex<String> = Mutex::new(String::new());

/// llama.cpp's lines from the last load that [`Placement`] reads.
pub(super) static PLACEMENT_LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// llama.cpp's log sink: echoes when verbose, keeps placement lines and the last error line.
pub(super) unsafe extern "C" fn log_callback(
    level: llama_cpp_sys_2::ggml_log_level,
    text: *const c_char,
    _: *mut c_void,
) {
    if text.is_null() {
        return;
    }
    // SAFETY: llama.cpp passes a NUL-terminated string, valid for the duration of the call.
    let text = unsafe { CStr::from_ptr(text) }.to_string_lossy();
    if VERBOSE.load(Ordering::Relaxed) {
        eprint!("{text}");
    }
    if let Some(rest) = text.split_once(REPACK_LINE).map(|(_, r)| r) {
        repacking(rest.split(" with ").next().unwrap_or(rest).trim());
    }
    if PLACEMENT_LINES.iter().any(|k| text.contains(k)) {
        PLACEMENT_LOG.lock().unwrap_or_else(|e| e.into_inner()).push(text.trim().to_string());
    }
    if level == llama_cpp_sys_2::GGML_LOG_LEVEL_ERROR {
        let line = text.trim();
        if !line.is_empty() {
            *LAST_ERROR.lock().unwrap_or_else(|e| e.into_inner()) = line.to_string();
        }
    }
}

/// llama.cpp's last error line since the previous call, if it logged one.
pub(super) fn take_last_error() -> Option<String> {
    let mut last = LAST_ERROR.lock().unwrap_or_else(|e| e.into_inner());
    (!last.is_empty()).then(|| std::mem::take(&mut *last))
}

/// An error that says what we tried, and what llama.cpp said about it.
pub(super) fn llama_error(what: String) -> anyhow::Error {
    match take_last_error() {
        Some(said) => anyhow!("{what}: llama.cpp says: {said}"),
        None => anyhow!("{what}"),
    }
}

/// What llama.cpp's CPU backend logs as it repacks a weight into its own buffer
/// (`CPU_REPACK`, ggml-cpu/repack.cpp): "repack: repack tensor NAME with TYPE_RxC".
pub(super) const REPACK_LINE: &str = "repack: repack tensor ";

/// Where a loaded model's weights went. The layer count is the parameters'. The bytes per
/// buffer and which tensors llama.cpp reads lazily come from its log of the load: llama.h has
/// no query for either, so this is the one place strata reads llama.cpp's log for facts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Placement {
    /// Buffer name and MiB: ("CUDA0", 1520.3), ("CPU_Mapped", 402.0).
    pub buffers: Vec<(String, f64)>,
    /// Layers offloaded to the GPU and the model's offloadable layers (the output layer
    /// included), on a build with a GPU backend.
    pub offloaded: Option<(u32, u32)>,
    /// Tensors that llama.cpp reads lazily from the memory map, prefetching the rows a batch needs.
    pub lazy: Vec<String>,
}

/// The lines of llama.cpp's load log that [`Placement`] reads.
pub(super) const PLACEMENT_LINES: &[&str] = &["model buffer size =", "enabling prefetch for '"];

impl Placement {
    pub(super) fn from_log(lines: &[String], offloaded: Option<(u32, u32)>) -> Placement {
        let mut placement = Placement { offloaded, ..Placement::default() };
        for line in lines {
            if let Some((name, size)) = line.split_once(PLACEMENT_LINES[0]) {
                // "load_tensors: RPC0[127.0.0.1:50052] model buffer size": the name after the prefix.
                let name = name.split_once(": ").map_or(name, |(_, n)| n).trim().to_string();
                if let Ok(mib) = size.trim().trim_end_matches("MiB").trim().parse() {
                    placement.buffers.push((name, mib));
                }
            } else if let Some((_, rest)) = line.split_once(PLACEMENT_LINES[1]) {
                placement.lazy.push(rest.trim_end_matches('\'').to_string());
            }
        }
        placement
    }
}

impl std::fmt::Display for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let buffers: Vec<String> = self.buffers.iter().map(|(name, mib)| format!("{name} {mib:.1} MiB")).collect();
        write!(f, "{}", if buffers.is_empty() { "unknown".to_string() } else { buffers.join(", ") })?;
        if let Some((n, of)) = self.offloaded {
            write!(f, "; {n}/{of} layers on the GPU")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The llama.cpp sources strata links write the lines read here, in these words: a change of
    /// wording when the pin moves fails this test, not the release of pages or the load line.
    #[test]
    fn log_lines_llama_cpp_writes() {
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let out =
            std::process::Command::new("bash").arg(repo.join("scripts/setup/llama_cpp_tree.sh")).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let tree = std::path::PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
        let source = |file: &str| std::fs::read_to_string(tree.join(file)).unwrap();
        let model = source("src/llama-model.cpp");
        assert!(model.contains(r#""%s: %12s model buffer size = %8.2f MiB\n""#), "{}", PLACEMENT_LINES[0]);
        assert!(model.contains(r#""%s: enabling prefetch for '%s'\n""#), "{}", PLACEMENT_LINES[1]);
        // "repack: repack tensor NAME with TYPE": __func__ is `repack`.
        let repack = source("ggml/src/ggml-cpu/repack.cpp");
        let logs = "int repack(struct ggml_tensor * t, const void * data, size_t data_size) override {\n        GGML_LOG_DEBUG(\"%s: repack tensor %s with %s_%dx%d\\n\", __func__";
        assert!(repack.contains(logs), "{REPACK_LINE}");
    }

    #[test]
    fn placement_from_llama_log() {
        let log: Vec<String> = [
            "load_tensors: offloading output layer to GPU",
            "load_tensors: offloaded 36/36 layers to GPU",
            "load_tensors: enabling prefetch for 'per_layer_token_embd.weight'",
            "load_tensors:   CPU_Mapped model buffer size =  2378.52 MiB",
            "load_tensors:        CUDA0 model buffer size =  1520.25 MiB",
            "load_tensors: RPC0[127.0.0.1:50052] model buffer size =    33.82 MiB",
        ]
        .map(String::from)
        .to_vec();
        let p = Placement::from_log(&log, Some((36, 36)));
        let rpc = ("RPC0[127.0.0.1:50052]".to_string(), 33.82);
        assert_eq!(p.buffers, vec![("CPU_Mapped".to_string(), 2378.52), ("CUDA0".to_string(), 1520.25), rpc]);
        assert_eq!(p.offloaded, Some((36, 36)));
        assert_eq!(p.lazy, vec!["per_layer_token_embd.weight".to_string()]);
        assert_eq!(
            p.to_string(),
            "CPU_Mapped 2378.5 MiB, CUDA0 1520.2 MiB, RPC0[127.0.0.1:50052] 33.8 MiB; 36/36 layers on the GPU"
        );
    }
}
