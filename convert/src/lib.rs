//! Hugging Face checkpoints to GGUF, and the GGUF container itself.
//!
//! What it is for: reading and writing GGUF files, knowing what each tensor of a model is
//! ([`TensorClass`]), and (as the converter grows) mapping safetensors checkpoints to llama.cpp's
//! names, metadata and quantization policy.
//!
//! What it is not: an inference engine. Nothing here links llama.cpp, so parsers can be fuzzed
//! and tested without it.

pub mod arch;
pub mod convert;
pub mod gguf;
pub mod policy;
mod pre_tokenizers;
pub mod safetensors;
pub mod sentencepiece;
pub mod sizing;
pub mod tensor_class;
pub mod tokenizer;

pub use tensor_class::TensorClass;
