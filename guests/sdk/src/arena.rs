//! The guest's allocator (feature `arena`, on by default): a bump allocator over a static
//! arena, with wasi-libc's `malloc` behind it once the arena is used up.
//!
//! Why: the gateway runs every request in a fresh instance, so the heap lives for one request.
//! wasi-libc's `malloc` (the 2022 release the guest toolchain has) takes every byte it hands
//! out from `memory.grow`, even the first: each request grows the memory, and the gateway must
//! then make the grown pages inaccessible again (an `mprotect` with a TLB shoot-down) before the
//! instance slot is reused. That was about half of a Rust component's per-request set-up
//! (benches/RESULTS.md (g)). The arena is zero-initialised static data, so it lies inside the
//! module's initial memory, which stays mapped from one request to the next: a request that
//! fits in it never grows memory.
//!
//! Bumping suits a heap that dies with the request: allocation is a few instructions, and
//! freeing the most recent block (the common case for temporaries and growing vectors) gives
//! its space back. Other freed blocks are only reclaimed by the next instance, which bounds the
//! waste at the arena's size; past it, allocations go to `malloc` as before, so a guest's memory
//! limit still applies to everything it allocates.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;

/// Enough for a typical request (the type-ahead app, a wasi:http component's adapter state and
/// streams), small beside the smallest memory limit worth giving an app.
const ARENA_BYTES: usize = 1 << 20;

/// Alignment of the arena's start; larger alignments are served by `malloc`.
const ARENA_ALIGN: usize = 16;

#[repr(C, align(16))]
struct Arena {
    bytes: UnsafeCell<[u8; ARENA_BYTES]>,
    /// Offset of the first free byte.
    next: UnsafeCell<usize>,
}

// SAFETY: wasm32-wasip1 without the `atomics` feature has one thread: nothing touches the arena
// concurrently (the global_allocator below is only compiled there).
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena {
    bytes: UnsafeCell::new([0; ARENA_BYTES]),
    next: UnsafeCell::new(0),
};

/// The SDK's global allocator; see the module's documentation.
pub struct ArenaAlloc;

impl ArenaAlloc {
    fn base() -> usize {
        ARENA.bytes.get() as usize
    }

    fn contains(ptr: *mut u8) -> bool {
        let at = ptr as usize;
        at >= Self::base() && at < Self::base() + ARENA_BYTES
    }

    /// A block of `layout` from the arena, or None if it does not fit.
    ///
    /// SAFETY: single-threaded (see `Sync` above).
    unsafe fn bump(layout: Layout) -> Option<*mut u8> {
        if layout.align() > ARENA_ALIGN {
            return None;
        }
        let next = unsafe { &mut *ARENA.next.get() };
        let start = next.checked_add(layout.align() - 1)? & !(layout.align() - 1);
        let end = start.checked_add(layout.size())?;
        if end > ARENA_BYTES {
            return None;
        }
        *next = end;
        Some((Self::base() + start) as *mut u8)
    }

    /// Whether the block at `ptr` of `size` bytes is the arena's most recent one.
    unsafe fn is_last(ptr: *mut u8, size: usize) -> bool {
        ptr as usize + size == Self::base() + unsafe { *ARENA.next.get() }
    }
}

// SAFETY: every block handed out is within the arena or from `System`, aligned as asked, and
// never handed out twice while live: the bump offset only moves back over the last block.
unsafe impl GlobalAlloc for ArenaAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match unsafe { Self::bump(layout) } {
            Some(ptr) => ptr,
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match unsafe { Self::bump(layout) } {
            // A block given back by `dealloc` may be dirty.
            Some(ptr) => {
                unsafe { ptr.write_bytes(0, layout.size()) };
                ptr
            }
            // calloc knows that fresh pages from memory.grow are zero already.
            None => unsafe { System.alloc_zeroed(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !Self::contains(ptr) {
            return unsafe { System.dealloc(ptr, layout) };
        }
        if unsafe { Self::is_last(ptr, layout.size()) } {
            unsafe { *ARENA.next.get() = ptr as usize - Self::base() };
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !Self::contains(ptr) {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let start = ptr as usize - Self::base();
        if unsafe { Self::is_last(ptr, layout.size()) } && start + new_size <= ARENA_BYTES {
            // The most recent block grows or shrinks in place.
            unsafe { *ARENA.next.get() = start + new_size };
            return ptr;
        }
        if new_size <= layout.size() {
            return ptr;
        }
        // SAFETY (new layout): the caller guarantees new_size rounded to the alignment fits isize.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let moved = unsafe { self.alloc(new_layout) };
        if !moved.is_null() {
            unsafe {
                moved.copy_from_nonoverlapping(ptr, layout.size());
                self.dealloc(ptr, layout);
            }
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    //! Natively, on the arena itself (not installed as the global allocator there). One test
    //! function: the arena is a single static.
    use super::*;

    #[test]
    fn bumps_reuses_the_last_block_and_falls_back_to_malloc() {
        let a = ArenaAlloc;
        let small = Layout::from_size_align(100, 8).unwrap();
        unsafe {
            let first = a.alloc(small);
            assert!(ArenaAlloc::contains(first) && (first as usize).is_multiple_of(8));
            let second = a.alloc(small);
            assert_eq!(
                second as usize,
                first as usize + 104,
                "bumped, aligned to 8"
            );
            // The last block is given back; an earlier one is not.
            a.dealloc(second, small);
            assert_eq!(a.alloc(small), second);
            a.dealloc(first, small);
            let third = a.alloc(small);
            assert_eq!(third as usize, second as usize + 104);

            // The last block grows in place; a moved block keeps its bytes.
            third.write_bytes(7, 100);
            let grown = a.realloc(third, small, 1000);
            assert_eq!(grown, third);
            let moved = a.realloc(second, small, 200);
            assert!(moved != second && ArenaAlloc::contains(moved));
            let zeroed = a.alloc_zeroed(small);
            assert!(
                std::slice::from_raw_parts(zeroed, 100)
                    .iter()
                    .all(|&b| b == 0)
            );

            // What does not fit, or asks for more alignment, comes from malloc, and goes back.
            let big = Layout::from_size_align(ARENA_BYTES, 8).unwrap();
            let outside = a.alloc(big);
            assert!(!outside.is_null() && !ArenaAlloc::contains(outside));
            a.dealloc(outside, big);
            let aligned = Layout::from_size_align(64, 64).unwrap();
            let outside = a.alloc(aligned);
            assert!(!ArenaAlloc::contains(outside) && (outside as usize).is_multiple_of(64));
            a.dealloc(outside, aligned);
            // An arena block grown past the arena moves to malloc with its bytes.
            let last = a.alloc(small);
            last.write_bytes(9, 100);
            let spilled = a.realloc(last, small, ARENA_BYTES + 1);
            assert!(!ArenaAlloc::contains(spilled));
            assert!(
                std::slice::from_raw_parts(spilled, 100)
                    .iter()
                    .all(|&b| b == 9)
            );
            a.dealloc(
                spilled,
                Layout::from_size_align(ARENA_BYTES + 1, 8).unwrap(),
            );
            assert_eq!(
                a.alloc(small),
                last,
                "the spilled block's arena space was given back"
            );
        }
    }
}
