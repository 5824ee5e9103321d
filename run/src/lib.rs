//! What running a model needs that is not llama.cpp: chat templates and the reasoning filter,
//! sampling on logits, the text a generation hands out (stop strings, whole UTF-8), saved logits
//! and KL divergence, the models.toml catalog, which device each layer goes to, planning (which quantization mix fits a device),
//! and the memory budget that keeps template rendering bounded.
//!
//! What it is not: a binding. Nothing here links llama.cpp, so the CLI, the server and the fuzz
//! targets share it, and it can be tested and fuzzed without building llama.cpp.

pub mod catalog;
pub mod chat;
pub mod constraint;
pub mod engine;
pub mod hub_cache;
pub mod layer_split;
pub mod logits_file;
pub mod media_cost;
pub mod memory_budget;
pub mod planning;
pub mod sampling;
pub mod signals;
pub mod system_memory;
