//! The devices llama.cpp sees (CPU, GPUs, RPC servers' devices) and what the linked ggml was
//! built with, with the refusal of a build that carries ggml's AMX kernels.

use std::ffi::CStr;

use anyhow::{bail, Context, Result};
use llama_cpp_2::llama_backend::LlamaBackend;

use super::log::log_callback;
use super::rpc;

/// Whether llama.cpp has a device to offload layers to: a GPU, or an RPC server's device.
/// (llama.cpp's own `llama_supports_gpu_offload` says yes whenever the RPC backend is built in.)
pub(super) fn has_offload_device() -> bool {
    offload_device_count() > 0
}

/// The devices llama.cpp offloads layers to (GPUs, integrated GPUs, RPC servers' devices), in
/// the order `tensor_split` gives their shares.
pub(super) fn offload_devices() -> Vec<llama_cpp_sys_2::ggml_backend_dev_t> {
    use llama_cpp_sys_2::{
        ggml_backend_dev_count, ggml_backend_dev_get, ggml_backend_dev_type, GGML_BACKEND_DEVICE_TYPE_GPU as GPU,
        GGML_BACKEND_DEVICE_TYPE_IGPU as IGPU,
    };
    // SAFETY: plain registry reads of the devices ggml registered.
    unsafe {
        (0..ggml_backend_dev_count())
            .map(|i| ggml_backend_dev_get(i))
            .filter(|&d| matches!(ggml_backend_dev_type(d), GPU | IGPU))
            .collect()
    }
}

pub(super) fn offload_device_count() -> usize {
    offload_devices().len()
}

/// The offload devices' free memory, by which llama.cpp splits layers when no `tensor_split` is
/// given (a device that reports no memory counts the host's, as llama.cpp does).
pub(super) fn offload_device_free() -> Vec<f32> {
    use llama_cpp_sys_2::{ggml_backend_dev_by_type, ggml_backend_dev_memory, GGML_BACKEND_DEVICE_TYPE_CPU as CPU};
    let memory = |dev| {
        let (mut free, mut total) = (0usize, 0usize);
        // SAFETY: `dev` is a registered device; ggml writes the two sizes.
        unsafe { ggml_backend_dev_memory(dev, &mut free, &mut total) };
        (free, total)
    };
    offload_devices()
        .into_iter()
        .map(|d| match memory(d) {
            // SAFETY: plain registry lookup; a build of llama.cpp always has its CPU device.
            (0, 0) => memory(unsafe { ggml_backend_dev_by_type(CPU) }).0 as f32,
            (free, _) => free as f32,
        })
        .collect()
}

/// A compute device llama.cpp can use, with its memory in bytes.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Device {
    /// llama.cpp's name: "CPU", "CUDA0".
    pub name: String,
    pub description: String,
    pub kind: DeviceKind,
    pub memory_total: u64,
    pub memory_free: u64,
}

/// What kind of device llama.cpp says it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum DeviceKind {
    #[serde(rename = "CPU")]
    Cpu,
    #[serde(rename = "GPU")]
    Gpu,
    #[serde(rename = "integrated GPU")]
    IntegratedGpu,
    #[serde(rename = "accelerator")]
    Accelerator,
    #[serde(rename = "unknown")]
    Unknown,
}

impl std::fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DeviceKind::Cpu => "CPU",
            DeviceKind::Gpu => "GPU",
            DeviceKind::IntegratedGpu => "integrated GPU",
            DeviceKind::Accelerator => "accelerator",
            DeviceKind::Unknown => "unknown",
        })
    }
}

/// The devices this build of llama.cpp sees (the CPU, GPUs on a `cuda` build, and the devices
/// of the RPC servers `rpc` names).
pub fn devices(rpc: &[String], rpc_timeout: std::time::Duration) -> Result<Vec<Device>> {
    use llama_cpp_2::LlamaBackendDeviceType as Type;
    let backend = LlamaBackend::init().context("cannot initialise llama.cpp")?;
    // SAFETY: `log_callback` is a plain function for the program's lifetime and takes no user data.
    unsafe { llama_cpp_sys_2::llama_log_set(Some(log_callback), std::ptr::null_mut()) };
    rpc::add_servers(&backend, rpc, rpc_timeout)?;
    Ok(llama_cpp_2::list_llama_ggml_backend_devices()
        .into_iter()
        .map(|d| Device {
            name: d.name,
            description: d.description,
            kind: match d.device_type {
                Type::Cpu => DeviceKind::Cpu,
                Type::Gpu => DeviceKind::Gpu,
                Type::IntegratedGpu => DeviceKind::IntegratedGpu,
                Type::Accelerator => DeviceKind::Accelerator,
                Type::Unknown => DeviceKind::Unknown,
            },
            memory_total: d.memory_total as u64,
            memory_free: d.memory_free as u64,
        })
        .collect())
}

/// What the linked ggml was compiled with, per backend: llama.cpp's `llama_print_system_info()`
/// ("CPU : SSE3 = 1 | AVX2 = 1 | ... | "), parsed. Only features built in are listed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BuildInfo {
    /// The string as llama.cpp prints it.
    pub system_info: String,
    pub backends: Vec<Backend>,
}

/// One ggml backend's compiled-in features, in llama.cpp's order: {"AVX2": "1", ...}.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Backend {
    pub name: String,
    pub features: serde_json::Map<String, serde_json::Value>,
}

impl BuildInfo {
    fn parse(system_info: &str) -> BuildInfo {
        let mut backends: Vec<Backend> = Vec::new();
        for field in system_info.split(" | ").map(str::trim).filter(|f| !f.is_empty()) {
            // A backend's first field carries its name: "CPU : SSE3 = 1".
            let field = match field.split_once(" : ") {
                Some((name, rest)) => {
                    backends.push(Backend { name: name.trim().to_string(), features: serde_json::Map::new() });
                    rest
                }
                None => field,
            };
            let (name, value) = field.split_once(" = ").unwrap_or((field, ""));
            if let Some(backend) = backends.last_mut() {
                backend.features.insert(name.trim().to_string(), value.trim().into());
            }
        }
        BuildInfo { system_info: system_info.trim().to_string(), backends }
    }

    /// Whether ggml's AMX kernels are built in (they add `AMX_INT8` to the CPU features).
    pub fn has_amx(&self) -> bool {
        self.backends.iter().flat_map(|b| b.features.keys()).any(|name| name.starts_with("AMX"))
    }
}

/// What the linked ggml was compiled with.
pub fn build_info() -> BuildInfo {
    // SAFETY: returns a pointer to a static string that llama.cpp refills on each call; it is
    // copied before anything else can call it (strata calls it from one thread at a time).
    let text = unsafe { CStr::from_ptr(llama_cpp_sys_2::llama_print_system_info()) };
    BuildInfo::parse(&text.to_string_lossy())
}

/// Refuses a build of llama.cpp that carries ggml's AMX kernels: they segfault at the first
/// decode on Intel CPUs with AMX (llama.cpp issue 20824). `.cargo/config.toml` compiles them out;
/// a `target/` built before that setting still has them.
pub(super) fn check_no_amx() -> Result<()> {
    if build_info().has_amx() {
        bail!("this strata links a llama.cpp built with ggml's AMX kernels, which crash on this CPU (llama.cpp issue 20824); rebuild it: cargo clean -p llama-cpp-sys-2 --release && cargo build --release");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_info_from_system_info() {
        let info = BuildInfo::parse("CUDA : ARCHS = 890 | USE_GRAPHS = 1 | CPU : SSE3 = 1 | AVX2 = 1 | OPENMP = 1 | ");
        assert_eq!(
            serde_json::to_value(&info.backends).unwrap(),
            serde_json::json!([{"name": "CUDA", "features": {"ARCHS": "890", "USE_GRAPHS": "1"}}, {"name": "CPU", "features": {"SSE3": "1", "AVX2": "1", "OPENMP": "1"}}])
        );
        assert!(!info.has_amx());
        assert!(BuildInfo::parse("CPU : AVX512 = 1 | AMX_INT8 = 1 | ").has_amx());
    }
}
