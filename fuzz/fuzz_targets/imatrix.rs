//! The importance-matrix reader (GGUF and legacy .dat), and what convert and `strata imatrix`
//! do with what it returns: combining matrices and turning them into quantization weights.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_gguf::Imatrix;

fuzz_target!(|data: &[u8]| {
    let Ok(imatrix) = Imatrix::parse(data) else { return };
    for name in imatrix.entries.keys() {
        let _ = imatrix.weights(name);
    }
    let mut combined = Imatrix { chunk_size: 512, ..Imatrix::default() };
    if combined.merge(&imatrix, std::path::Path::new("fuzz")).is_ok() {
        let _ = combined.merge(&imatrix, std::path::Path::new("fuzz"));
    }
});
