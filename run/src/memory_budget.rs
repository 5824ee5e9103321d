//! A memory budget for template rendering. minijinja builds strings without a limit
//! (`{% set s = s ~ s %}` forty times asks for a terabyte), and Rust aborts the process when an
//! allocation fails, so the budget is kept where every allocation passes: [`Allocator`], the
//! binary's global allocator, counts the bytes the current thread holds while it runs
//! [`with_budget`], and past the budget it prints that call's one-line error and exits with
//! status 1, as any other error would, instead of aborting or filling memory. It exits without
//! running destructors or exit handlers: the allocation it refuses may be half way through
//! code that holds locks.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;

/// The system allocator, counting this thread's bytes against a budget while [`with_budget`]
/// runs.
pub struct Allocator;

/// What the running [`with_budget`] call may still allocate, and its error line.
#[derive(Clone, Copy)]
struct Budget {
    left: isize,
    error: (*const u8, usize),
}

thread_local! {
    static BUDGET: Cell<Option<Budget>> = const { Cell::new(None) };
}

/// Runs `f` with at most `bytes` more held by this thread at any moment; past that, prints
/// `error` (one line, `error: ` prefixed) and exits with status 1 at once. Only a program whose
/// global allocator is [`Allocator`] (the strata binary) enforces it. A nested call replaces
/// the outer budget while it runs.
pub fn with_budget<T>(bytes: usize, error: &str, f: impl FnOnce() -> T) -> T {
    /// Puts the outer budget back when `f` returns or unwinds, before `line` is dropped.
    struct Restore(Option<Budget>);
    impl Drop for Restore {
        fn drop(&mut self) {
            BUDGET.set(self.0);
        }
    }
    let line = format!("error: {error}\n");
    let budget = Budget { left: isize::try_from(bytes).unwrap_or(isize::MAX), error: (line.as_ptr(), line.len()) };
    let _restore = Restore(BUDGET.replace(Some(budget)));
    f()
}

/// Counts `delta` bytes (negative when freed) against the running budget.
fn charge(delta: isize) {
    let Ok(Some(mut budget)) = BUDGET.try_with(Cell::get) else { return };
    budget.left = budget.left.saturating_sub(delta);
    if budget.left >= 0 {
        BUDGET.set(Some(budget));
        return;
    }
    BUDGET.set(None);
    // SAFETY: `error` points into the `line` that the running `with_budget` call keeps alive.
    let line = unsafe { std::slice::from_raw_parts(budget.error.0, budget.error.1) };
    let _ = std::io::stderr().write_all(line);
    crate::signals::exit_now(1);
}

// SAFETY: every call forwards to the system allocator unchanged; `charge` only reads and writes
// a thread-local cell (and, over budget, ends the process before the allocation happens).
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        charge(layout.size() as isize);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        charge(layout.size() as isize);
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        charge(-(layout.size() as isize));
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        charge(new_size as isize - layout.size() as isize);
        System.realloc(ptr, layout, new_size)
    }
}
