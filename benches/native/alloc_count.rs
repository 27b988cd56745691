//! A global allocator that counts the bytes the *current thread* holds, for the memory-per-key
//! bench. Thread-local, so the multi-threaded benches pay no shared-cache-line cost for it.
//!
//! It counts requested bytes, not what the system allocator rounds them up to, nor its own
//! per-allocation headers: the figure is what a data structure asks for.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

pub struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn add(delta: isize) {
    // `try_with`: allocations during thread teardown must not panic.
    let _ = LIVE.try_with(|c| c.set(c.get() + delta));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as isize);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add(-(layout.size() as isize));
        System.dealloc(ptr, layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as isize);
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add(new_size as isize - layout.size() as isize);
        System.realloc(ptr, layout, new_size)
    }
}

/// Bytes this thread has allocated and not freed since it started.
pub fn live_bytes() -> isize {
    LIVE.with(Cell::get)
}
