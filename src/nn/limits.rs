//! What one request may take from the host through wasi-nn, beside its own linear memory: time
//! (its deadline, which inference must respect) and memory (tensors the host keeps for it).
//!
//! The deadline reaches a backend through a thread-local set for the duration of each host
//! call, not through wasmtime-wasi-nn's `compute`, which has no parameter for it: a guest's
//! host calls all run on the thread that runs the guest, so the deadline in force is always
//! that request's.

use std::cell::Cell;
use std::time::Instant;

/// Why the host stopped a guest in a host call. Returned as the call's error, it ends the
/// instance; the runtime reports it as the matching limit (504, 413).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Kill {
    #[error("the request's deadline passed in a host call")]
    Deadline,
    #[error("the request's memory limit was reached by memory the host holds for it")]
    Memory,
}

/// One request's memory: its linear memory and what the host holds for it count against one
/// limit (the app's `memory_mib`).
#[derive(Debug)]
pub struct MemoryBudget {
    pub limit: usize,
    /// Bytes of linear memory, as last grown.
    pub linear: usize,
    /// Bytes the wasi-nn host holds for this instance (tensors of its execution contexts).
    pub host: usize,
    /// Set when a growth or a host allocation was refused, so the trap that follows is
    /// reported as the memory limit, not as a guest bug.
    pub denied: bool,
}

impl MemoryBudget {
    pub fn new(limit: usize) -> Self {
        Self { limit, linear: 0, host: 0, denied: false }
    }

    /// Whether a linear memory may grow from `current` to `desired` bytes; records the growth
    /// if so. The instance's memories (a component may have several) add up.
    pub fn grow_linear(&mut self, current: usize, desired: usize) -> bool {
        let linear = self.linear.saturating_sub(current).saturating_add(desired);
        let allowed = linear.saturating_add(self.host) <= self.limit;
        if allowed {
            self.linear = linear;
        }
        self.denied |= !allowed;
        allowed
    }

    /// Whether the host may hold `bytes` more for the guest (without taking them).
    pub fn host_fits(&mut self, bytes: usize) -> bool {
        let allowed = self.linear.saturating_add(self.host).saturating_add(bytes) <= self.limit;
        self.denied |= !allowed;
        allowed
    }

    /// Replaces `old` held bytes by `new`; `Err(Kill::Memory)` if the total no longer fits.
    pub fn recharge_host(&mut self, old: usize, new: usize) -> Result<(), Kill> {
        self.host = self.host.saturating_sub(old).saturating_add(new);
        if self.linear.saturating_add(self.host) > self.limit {
            self.denied = true;
            return Err(Kill::Memory);
        }
        Ok(())
    }
}

thread_local! {
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Set by a backend that stopped or refused work because of the deadline.
    static EXCEEDED: Cell<bool> = const { Cell::new(false) };
}

/// The deadline of the request whose host call runs on this thread, if any.
pub fn current_deadline() -> Option<Instant> {
    DEADLINE.with(Cell::get)
}

/// A backend tells the host that it refused work because of the deadline before the deadline
/// itself passed (tract, when a run could not finish in the time left). Past the deadline
/// [`DeadlineScope::exceeded`] sees it without being told.
pub fn mark_deadline_exceeded() {
    EXCEEDED.with(|e| e.set(true));
}

/// Sets the deadline for the current thread until dropped; reports whether a backend marked
/// it exceeded meanwhile.
pub struct DeadlineScope {
    previous: Option<Instant>,
}

impl DeadlineScope {
    pub fn enter(deadline: Instant) -> Self {
        EXCEEDED.with(|e| e.set(false));
        Self { previous: DEADLINE.with(|d| d.replace(Some(deadline))) }
    }

    /// Whether the deadline was hit during this scope (marked by a backend, or passed).
    pub fn exceeded(&self) -> bool {
        EXCEEDED.with(Cell::get) || current_deadline().is_some_and(|d| Instant::now() >= d)
    }
}

impl Drop for DeadlineScope {
    fn drop(&mut self) {
        DEADLINE.with(|d| d.set(self.previous));
        EXCEEDED.with(|e| e.set(false));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn linear_and_host_memory_share_one_limit() {
        let mut budget = MemoryBudget::new(100);
        assert!(budget.grow_linear(0, 60));
        assert!(budget.host_fits(40));
        assert!(budget.recharge_host(0, 40).is_ok());
        assert!(!budget.grow_linear(60, 61), "host bytes count against linear growth");
        assert!(budget.denied);
        let mut budget = MemoryBudget::new(100);
        assert!(budget.grow_linear(0, 60));
        assert_eq!(budget.recharge_host(0, 41), Err(Kill::Memory));
        // Released bytes make room again.
        assert!(budget.recharge_host(41, 10).is_ok());
        assert_eq!(budget.host, 10);
    }

    #[test]
    fn several_memories_add_up() {
        let mut budget = MemoryBudget::new(100);
        assert!(budget.grow_linear(0, 40));
        assert!(budget.grow_linear(0, 40), "a second memory");
        assert!(budget.grow_linear(40, 60), "the first grows by 20");
        assert_eq!(budget.linear, 100);
        assert!(!budget.grow_linear(40, 41));
    }

    #[test]
    fn the_deadline_is_scoped_to_the_thread() {
        assert_eq!(current_deadline(), None);
        let soon = Instant::now() + Duration::from_secs(60);
        {
            let scope = DeadlineScope::enter(soon);
            assert_eq!(current_deadline(), Some(soon));
            assert!(!scope.exceeded());
            mark_deadline_exceeded();
            assert!(scope.exceeded());
            std::thread::spawn(|| assert_eq!(current_deadline(), None)).join().unwrap();
        }
        assert_eq!(current_deadline(), None);
        let past = DeadlineScope::enter(Instant::now());
        assert!(past.exceeded());
    }
}
