//! ggml's RPC backend (built in with `GGML_RPC=ON`, .cargo/config.toml): serving this machine's
//! device to other machines (`strata rpc-server`), and adding remote servers' devices to those
//! llama.cpp places layers on (`--rpc`). llama-cpp-sys-2's bindings leave out ggml-rpc.h, so its
//! two entry points are declared here; everything else is ggml-backend.h, which they include.
//!
//! The protocol has no authentication and no encryption: a server must listen on loopback or a
//! private network (or behind an SSH tunnel). ggml's client blocks without a timeout on each
//! reply and aborts the process when a server goes away; [`add_servers`] bounds the connect,
//! turns that abort into a one-line error and exit status 1, and starts a watchdog that ends the
//! process the same way when a call into llama.cpp ([`watched`]) makes no progress for the
//! reply timeout (a server that stays connected but stops answering).

use std::ffi::{c_char, c_int, CStr, CString};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_sys_2 as sys;

use super::log::{llama_error, log_callback, take_last_error};

extern "C" {
    fn ggml_backend_rpc_add_server(endpoint: *const c_char) -> sys::ggml_backend_reg_t;
    fn ggml_backend_rpc_start_server(
        endpoint: *const c_char,
        cache_dir: *const c_char,
        n_threads: usize,
        n_devices: usize,
        devices: *mut sys::ggml_backend_dev_t,
    );
    fn _exit(status: c_int) -> !;
}

/// The RPC protocol this build speaks (ggml-rpc.h's `RPC_PROTO_*_VERSION`): servers and clients
/// interoperate when the major versions are equal and the server's minor is not newer.
pub const PROTOCOL_VERSION: &str = "7.0.0";

/// How long a connect to a server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a server may take to accept a connection when ggml has lost one to it.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How often to probe the servers before saying that none of them is gone.
const PROBES: usize = 3;

/// The servers added, with their addresses.
static SERVERS: std::sync::OnceLock<Vec<(String, SocketAddr)>> = std::sync::OnceLock::new();

/// `HOST:PORT`, resolved.
fn endpoint_address(endpoint: &str) -> Result<SocketAddr> {
    let (host, port) = endpoint.rsplit_once(':').ok_or_else(|| anyhow!("--rpc {endpoint:?}: expected HOST:PORT"))?;
    let port: u16 = port.parse().map_err(|_| anyhow!("--rpc {endpoint:?}: {port:?} is not a port number"))?;
    // "[::1]:50052": the brackets are the endpoint's, not the address's.
    (host.trim_start_matches('[').trim_end_matches(']'), port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| anyhow!("--rpc {endpoint:?}: cannot resolve {host:?}"))
}

/// When the call being watched last made progress, in milliseconds since [`epoch`] plus one;
/// 0 while no call is watched.
static LAST_PROGRESS: AtomicU64 = AtomicU64::new(0);

/// The clock [`LAST_PROGRESS`] counts on.
fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64 + 1
}

/// Runs `f`, a call into llama.cpp that may wait on RPC servers, under the watchdog.
pub(super) fn watched<T>(f: impl FnOnce() -> T) -> T {
    LAST_PROGRESS.store(now_ms(), Ordering::Relaxed);
    let result = f();
    LAST_PROGRESS.store(0, Ordering::Relaxed);
    result
}

/// The watched call made progress (a loading step): its timeout starts again.
pub(super) fn progressed() {
    if LAST_PROGRESS.load(Ordering::Relaxed) != 0 {
        LAST_PROGRESS.store(now_ms(), Ordering::Relaxed);
    }
}

/// Ends the process with a one-line error when a watched call makes no progress for `timeout`.
fn start_watchdog(timeout: Duration) {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(200));
            let last = LAST_PROGRESS.load(Ordering::Relaxed);
            if last != 0 && now_ms().saturating_sub(last) > timeout.as_millis() as u64 {
                eprintln!(
                    "error: no reply from the RPC servers for {} s (--rpc-timeout): a server stopped answering",
                    timeout.as_secs()
                );
                // SAFETY: as in `on_abort`: the other threads are blocked inside llama.cpp.
                unsafe { _exit(1) }
            }
        });
    });
}

/// ggml's abort, when it comes from a remote backend: the message as our one-line error, exit 1.
unsafe extern "C" fn on_abort(message: *const c_char) {
    // SAFETY: ggml passes its formatted, NUL-terminated message.
    let message =
        if message.is_null() { "ggml aborted".into() } else { unsafe { CStr::from_ptr(message) }.to_string_lossy() };
    let message = message.split_once(": ").map_or(&*message, |(_, m)| m).trim();
    // What llama.cpp logged just before (a version mismatch names the server's version there).
    // try_lock: the log callback may hold the lock on the thread that aborts.
    let said = super::log::LAST_ERROR.try_lock().ok().map(|mut l| std::mem::take(&mut *l)).filter(|s| !s.is_empty());
    let said = said.map(|s| format!(": llama.cpp says: {s}")).unwrap_or_default();
    // ggml does not say which server failed: the ones that no longer take a connection did (a
    // server still dying may take one for a moment).
    let mut gone = Vec::new();
    for _ in 0..PROBES {
        gone = SERVERS
            .get()
            .into_iter()
            .flatten()
            .filter(|(_, a)| TcpStream::connect_timeout(a, PROBE_TIMEOUT).is_err())
            .map(|(e, _)| e.as_str())
            .collect();
        if !gone.is_empty() {
            break;
        }
        std::thread::sleep(PROBE_TIMEOUT / 5);
    }
    if gone.is_empty() {
        eprintln!("error: {message}{said} (an RPC server went away or broke the protocol; this build speaks RPC protocol {PROTOCOL_VERSION})");
    } else {
        eprintln!("error: RPC server {} went away{said}", gone.join(", "));
    }
    // SAFETY: _exit ends the process at once; ggml would abort() next, and other threads are
    // still inside llama.cpp, so nothing may run destructors now.
    unsafe { _exit(1) }
}

/// Adds each `HOST:PORT` server's devices to llama.cpp's device list, so that loading a model
/// places layers on them as on local GPUs. A server that cannot be reached within
/// [`CONNECT_TIMEOUT`], or speaks another protocol version, is an error naming it; from here on,
/// a [`watched`] call that waits on the servers longer than `reply_timeout` ends the process.
/// Taking the backend makes the caller initialise ggml's device registry first.
/// Called once per process: [`SERVERS`] keeps the first call's servers, which a second call would add again.
pub fn add_servers(_backend: &LlamaBackend, endpoints: &[String], reply_timeout: Duration) -> Result<()> {
    if endpoints.is_empty() {
        return Ok(());
    }
    if reply_timeout.is_zero() {
        bail!("--rpc-timeout must be at least 1 second");
    }
    // SAFETY: a plain function for the program's lifetime.
    unsafe { sys::ggml_set_abort_callback(Some(on_abort)) };
    start_watchdog(reply_timeout);
    let servers = endpoints.iter().map(|e| Ok((e.clone(), endpoint_address(e)?))).collect::<Result<Vec<_>>>()?;
    for (endpoint, address) in SERVERS.get_or_init(|| servers) {
        TcpStream::connect_timeout(address, CONNECT_TIMEOUT)
            .with_context(|| format!("RPC server {endpoint}: cannot connect"))?;
        take_last_error();
        let c = CString::new(endpoint.as_str()).map_err(|_| anyhow!("--rpc {endpoint:?}: contains NUL"))?;
        // SAFETY: `c` is a valid C string; ggml copies it.
        let reg = watched(|| unsafe { ggml_backend_rpc_add_server(c.as_ptr()) });
        if reg.is_null() {
            let said = take_last_error().map(|e| format!(": llama.cpp says: {e}")).unwrap_or_default();
            bail!("RPC server {endpoint}: no devices{said} (this build speaks RPC protocol {PROTOCOL_VERSION})");
        }
        // SAFETY: `reg` is the registry ggml just returned; its devices live as long as it does,
        // which is the program's lifetime.
        unsafe {
            for i in 0..sys::ggml_backend_reg_dev_count(reg) {
                sys::ggml_backend_device_register(sys::ggml_backend_reg_dev_get(reg, i));
            }
        }
    }
    Ok(())
}

/// Serves `device` (a ggml device name; the CPU when `None`) to RPC clients on `endpoint`
/// (`HOST:PORT`) with `threads` threads, caching received tensors in `cache_dir` if given.
/// Runs until the process is stopped.
pub fn serve(
    endpoint: &str,
    device: Option<&str>,
    threads: usize,
    cache_dir: Option<&str>,
    verbose: bool,
) -> Result<()> {
    super::log::VERBOSE.store(verbose, std::sync::atomic::Ordering::Relaxed);
    let _backend = LlamaBackend::init().context("cannot initialise llama.cpp")?;
    // SAFETY: `log_callback` is a plain function for the program's lifetime and takes no user data.
    unsafe { sys::llama_log_set(Some(log_callback), std::ptr::null_mut()) };
    let mut dev = match device {
        Some(name) => {
            let c = CString::new(name).map_err(|_| anyhow!("--device {name:?}: contains NUL"))?;
            // SAFETY: a valid C string; ggml returns null for an unknown name.
            unsafe { sys::ggml_backend_dev_by_name(c.as_ptr()) }
        }
        // SAFETY: plain registry lookup.
        None => unsafe { sys::ggml_backend_dev_by_type(sys::GGML_BACKEND_DEVICE_TYPE_CPU) },
    };
    if dev.is_null() {
        bail!("--device {:?}: no such device (see strata devices)", device.unwrap_or("CPU"));
    }
    let endpoint_c = CString::new(endpoint)?;
    let cache_c = cache_dir.map(CString::new).transpose()?;
    // SAFETY: valid C strings and one device pointer, all alive for the call, which serves
    // until the process ends.
    unsafe {
        ggml_backend_rpc_start_server(
            endpoint_c.as_ptr(),
            cache_c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            threads,
            1,
            &mut dev,
        );
    }
    Err(llama_error(format!("RPC server on {endpoint}: ggml stopped serving")))
}
