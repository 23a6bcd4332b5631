//! Test program: every instance must start from the module's initial state, whatever an
//! earlier request in the same instance slot did. It checks, then dirties:
//!
//! - `INITIALISED`, a static with non-zero initial bytes (a data segment): still as written;
//! - `ZEROED`, a static in `.bss`: still zero;
//! - `mib` MiB (query `mib=N`, default 8) of memory grown with `memory.grow`, which the
//!   WebAssembly spec says is zero.
//!
//! It then overwrites all three with 0xA5, so that a slot that is not reset shows it to the
//! next request. Answers `{"stale_bytes": N, "memory_pages": P}` (N must be 0).

use std::hint::black_box;

const STATIC_BYTES: usize = 64 << 10;
static mut INITIALISED: [u8; STATIC_BYTES] = [0x5A; STATIC_BYTES];
static mut ZEROED: [u8; STATIC_BYTES] = [0; STATIC_BYTES];

fn main() {
    let query = std::env::var("QUERY_STRING").unwrap_or_default();
    let mib: usize = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("mib="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
        .min(256);
    let mut stale = 0usize;
    // SAFETY: one thread; nothing else refers to the statics.
    let (initialised, zeroed) = unsafe {
        (
            &mut *std::ptr::addr_of_mut!(INITIALISED),
            &mut *std::ptr::addr_of_mut!(ZEROED),
        )
    };
    stale += initialised.iter().filter(|&&b| b != 0x5A).count();
    stale += zeroed.iter().filter(|&&b| b != 0).count();
    initialised.fill(0xA5);
    zeroed.fill(0xA5);
    black_box((&initialised, &zeroed));
    stale += grown(mib);
    let pages = memory_pages();
    print!(
        "content-type: application/json\n\n{{\"stale_bytes\":{stale},\"memory_pages\":{pages}}}"
    );
}

/// Grows memory by `mib` MiB, counts the bytes of the new pages that are not zero, and fills
/// them with 0xA5.
#[cfg(target_arch = "wasm32")]
fn grown(mib: usize) -> usize {
    const PAGE: usize = 64 << 10;
    let pages = mib * (1 << 20) / PAGE;
    let first = core::arch::wasm32::memory_grow(0, pages);
    assert_ne!(first, usize::MAX, "memory.grow failed");
    // SAFETY: the pages were just added to linear memory and nothing else refers to them.
    let fresh = unsafe { std::slice::from_raw_parts_mut((first * PAGE) as *mut u8, pages * PAGE) };
    let stale = fresh.iter().filter(|&&b| b != 0).count();
    fresh.fill(0xA5);
    black_box(&fresh);
    stale
}

#[cfg(not(target_arch = "wasm32"))]
fn grown(_mib: usize) -> usize {
    0
}

#[cfg(target_arch = "wasm32")]
fn memory_pages() -> usize {
    core::arch::wasm32::memory_size(0)
}

#[cfg(not(target_arch = "wasm32"))]
fn memory_pages() -> usize {
    0
}
