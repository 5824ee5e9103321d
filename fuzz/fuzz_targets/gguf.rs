//! The GGUF reader, and what `inspect` and `plan` do with what it returns (strata-gguf alone:
//! no tokenizer stack, no llama.cpp).
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_gguf::{self as gguf, ModelShape, TensorClass};

fuzz_target!(|data: &[u8]| {
    let Ok(file) = gguf::parse(data) else { return };
    let _ = file.tensor_bytes();
    let _ = file.architecture();
    for t in &file.tensors {
        let _ = (t.n_elements(), t.n_bytes());
        let _ = TensorClass::of(&t.name, t.shape.len()).name();
    }
    for (_, v) in &file.metadata {
        let _ = (v.to_json(8), v.summary(8), v.to_string(), v.as_u64(), v.as_f64());
    }
    if let Ok(shape) = ModelShape::from_gguf(&file) {
        for n_ctx in [0, 4096, 1 << 20] {
            let _ = shape.kv_cache_bytes(n_ctx, 512, 2.0);
        }
    }
});
