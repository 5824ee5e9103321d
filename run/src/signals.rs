//! Signal dispositions that the ctrlc crate does not cover, and leaving without teardown.

#[cfg(target_os = "linux")]
extern "C" {
    fn signal(signum: i32, handler: usize) -> usize;
    fn _exit(status: i32) -> !;
}

pub const SIGHUP: i32 = 1;
pub const SIGTERM: i32 = 15;
pub const SIGXFSZ: i32 = 25;

/// Ignores `signum`.
pub fn ignore(signum: i32) {
    #[cfg(target_os = "linux")]
    // SAFETY: installs the "ignore" disposition; no handler code runs.
    unsafe {
        signal(signum, 1)
    };
}

/// Puts back the default action for `signum` (for SIGTERM and SIGHUP: end the process).
pub fn restore_default(signum: i32) {
    #[cfg(target_os = "linux")]
    // SAFETY: installs the default disposition; no handler code runs.
    unsafe {
        signal(signum, 0)
    };
}

/// Ends the process with `status` at once, from any thread and in the middle of anything:
/// no destructors or exit handlers run (llama.cpp's may be in use on another thread, and an
/// allocation may be half done on this one).
pub fn exit_now(status: i32) -> ! {
    #[cfg(target_os = "linux")]
    // SAFETY: _exit only ends the process.
    unsafe {
        _exit(status)
    }
    #[cfg(not(target_os = "linux"))]
    std::process::exit(status)
}
