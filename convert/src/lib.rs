//! Hugging Face checkpoints to GGUF: each architecture's tensors and metadata from config.json,
//! the tokenizer, the quantization policy, and the one-pass conversion.
//!
//! What it is for: mapping safetensors checkpoints to llama.cpp's names, shapes, metadata and
//! types, and writing them through `strata-gguf`.
//!
//! What it is not: an inference engine. Nothing here links llama.cpp, so parsers can be fuzzed
//! and tested without it.

pub mod arch;
pub mod convert;
pub mod importance;
pub mod mmproj;
pub mod policy;
mod pre_tokenizers;
pub mod safetensors;
pub mod sentencepiece;
pub mod tokenizer;
