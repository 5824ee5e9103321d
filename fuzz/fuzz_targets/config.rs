//! config.json: architecture lookup, metadata, computed tensors, the shape (sizing), the
//! tensor-name map (what `convert` and `plan` make of a config before they touch any weights).
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_convert::arch;

/// Checkpoint tensor names of every family, to walk the name map and `table_rows`.
const NAMES: &[&str] = &[
    "model.embed_tokens.weight",
    "model.language_model.embed_tokens.weight",
    "lm_head.weight",
    "model.norm.weight",
    "model.layers.0.self_attn.q_proj.weight",
    "model.layers.3.self_attn.k_proj.weight",
    "model.layers.1.mlp.down_proj.weight",
    "model.layers.0.input_layernorm.weight",
    "model.language_model.embed_tokens_per_layer.weight",
    "model.language_model.altup_projections.0.weight",
    "model.language_model.layers.2.altup.router.weight",
    "model.layers.99999999999999999999.mlp.up_proj.weight",
];

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let Ok(a) = arch::for_config(json) else { return };
    let _ = a.name();
    let _ = a.metadata();
    let _ = a.computed();
    for n_tokens in [None, Some(0), Some(10), Some(u64::MAX)] {
        if let Ok(shape) = a.shape(n_tokens) {
            for n_ctx in [0, 4096, 1 << 20] {
                let _ = shape.kv_cache_bytes(n_ctx, 512, 2.0);
            }
        }
    }
    for name in NAMES {
        if let Some(m) = a.map(name) {
            let _ = a.rows(&m.gguf_name);
        }
    }
});
