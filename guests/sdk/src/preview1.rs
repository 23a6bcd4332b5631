//! The four WASI preview1 functions Rust's std and wasi-libc link into a component app, written
//! here on top of the WIT imports, so that the app's module imports no preview1 at all and
//! `edgenn componentize` needs no preview1 adapter for it.
//!
//! Without them the component carries the adapter: one more core module that every request
//! instantiates, with its own imports to lower, though a request never calls it
//! (benches/RESULTS.md (h), 2026-12-04). What they do is what the proxy adapter does for these
//! four: no environment through std (the SDK reads the app's config from
//! `wasi:cli/environment` itself), stdout and stderr as the `wasi:cli` streams (so a panic's
//! message still reaches the gateway's log), and no `proc_exit` in the proxy world (a trap).
//!
//! wasi-libc calls each import through a symbol of its own
//! (`__imported_wasi_snapshot_preview1_<name>`); defining those symbols makes the linker bind
//! the calls here instead of importing them. An app that uses more of std (files, clocks,
//! arguments) still imports those, and `edgenn componentize` adds the adapter for them.

use crate::component::bindings::wasi::cli::{stderr, stdout};

const ERRNO_SUCCESS: i32 = 0;
const ERRNO_BADF: i32 = 8;
const ERRNO_IO: i32 = 29;

/// `blocking-write-and-flush` takes at most this many bytes a call.
const MAX_WRITE: usize = 4096;

/// One `ciovec`: a buffer's address and length in linear memory (wasm32: two 32-bit words).
#[repr(C)]
pub struct Ciovec {
    buf: *const u8,
    len: usize,
}

/// `environ_sizes_get`: no variables.
///
/// # Safety
/// `count` and `size` point to writable `usize`s (wasi-libc's callers pass locals).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __imported_wasi_snapshot_preview1_environ_sizes_get(
    count: *mut usize,
    size: *mut usize,
) -> i32 {
    // SAFETY: the caller's contract above.
    unsafe {
        count.write(0);
        size.write(0);
    }
    ERRNO_SUCCESS
}

/// `environ_get`: nothing to write, as `environ_sizes_get` said.
#[unsafe(no_mangle)]
pub extern "C" fn __imported_wasi_snapshot_preview1_environ_get(
    _environ: *mut *mut u8,
    _buf: *mut u8,
) -> i32 {
    ERRNO_SUCCESS
}

/// `fd_write` on stdout (1) and stderr (2), through the `wasi:cli` output streams; any other
/// descriptor is `badf`, as a component has no files.
///
/// # Safety
/// `iovs` points to `iovs_len` `ciovec`s whose buffers are readable, and `written` to a
/// writable `usize` (std and wasi-libc pass their own buffers).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __imported_wasi_snapshot_preview1_fd_write(
    fd: u32,
    iovs: *const Ciovec,
    iovs_len: usize,
    written: *mut usize,
) -> i32 {
    let stream = match fd {
        1 => stdout::get_stdout(),
        2 => stderr::get_stderr(),
        _ => return ERRNO_BADF,
    };
    // SAFETY: the caller's contract above.
    let iovs = unsafe { std::slice::from_raw_parts(iovs, iovs_len) };
    let mut total = 0;
    for iov in iovs {
        // SAFETY: each buffer is readable for its length (the caller's contract).
        let bytes = unsafe { std::slice::from_raw_parts(iov.buf, iov.len) };
        for chunk in bytes.chunks(MAX_WRITE) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                return ERRNO_IO;
            }
            total += chunk.len();
        }
    }
    // SAFETY: the caller's contract above.
    unsafe { written.write(total) };
    ERRNO_SUCCESS
}

/// `proc_exit`: the proxy world has no `wasi:cli/exit`, so exiting is a trap, as with the
/// proxy adapter.
#[unsafe(no_mangle)]
pub extern "C" fn __imported_wasi_snapshot_preview1_proc_exit(_code: u32) -> ! {
    std::arch::wasm32::unreachable()
}
