//! The one adapter to llama.cpp (through llama-cpp-2), cut by concern: its log ([`log`]), the
//! devices and build ([`devices`]), loading and placement ([`load`]), the release of repacked
//! weights' pages ([`pages`]), contexts as the engine's decoder ([`context`]), images and audio through libmtmd ([`media`]), RPC servers
//! ([`rpc`]) and ggml's eval callback, which collects importance matrices ([`imatrix`]).

#[cfg(test)]
mod chat_builtin_check;
mod context;
mod devices;
pub mod imatrix;
mod load;
mod log;
mod media;
mod pages;
pub mod rpc;

pub use context::LlamaDecoder;
pub use devices::{build_info, devices, BuildInfo, Device, DeviceKind};
pub use load::{CacheType, ContextOptions, GpuLayers, LoadOptions, Model};
pub use media::{media_marker, Medium};
