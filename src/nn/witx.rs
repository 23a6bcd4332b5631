//! The host side of wasi-nn's witx ABI: the `wasi_ephemeral_nn` module of wasmtime's
//! `wasi-nn.witx`, which the `wasi-nn` guest crate (0.6) calls.
//!
//! Written here rather than taken from wasmtime-wasi-nn's wiggle glue, so that nothing a
//! guest passes can make the host misbehave:
//! - handles are bounded per instance ([`MAX_GRAPHS`], [`MAX_CONTEXTS`]); loading the same
//!   model twice gives the same handle;
//! - tensors the host keeps for an instance are charged to its memory limit together with its
//!   linear memory ([`MemoryBudget`]); past it the instance is stopped, as for linear memory;
//! - `compute` runs under the request's deadline ([`DeadlineScope`]); a backend that stops or
//!   refuses work for it stops the instance as past its deadline;
//! - a bad pointer or length is the `invalid-argument` errno, never a panic, and a backend that
//!   panics on hostile input (tract on an out-of-range `Gather` index) is the `runtime-error`
//!   errno, counted as a trap and logged at most once a second.
//!
//! Everything an instance holds here is dropped with its store when the request ends, on a
//! deadline or memory kill too.

use super::limits::{DeadlineScope, Kill, MemoryBudget};
use super::{AppGraphRegistry, MeteredExecution, NnError, SharedGraph};
use crate::metrics::Metrics;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use wasmtime::{Caller, Extern, Linker};
use wasmtime_wasi_nn::Tensor;
use wasmtime_wasi_nn::backend::{BackendExecutionContext, Id};
use wasmtime_wasi_nn::wit::TensorType;

/// Distinct graphs one instance may load.
pub const MAX_GRAPHS: usize = 16;
/// Execution contexts one instance may create (witx has no call to free one).
pub const MAX_CONTEXTS: usize = 32;
/// The highest rank of a tensor a guest may pass.
const MAX_RANK: u32 = 32;

/// `nn_errno` of the witx.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Errno {
    InvalidArgument = 1,
    RuntimeError = 5,
    UnsupportedOperation = 6,
    TooLarge = 7,
    NotFound = 8,
}

/// How a call ends short of success: an errno for the guest, or the end of the instance.
enum Failure {
    Errno(Errno),
    Kill(Kill),
}

impl From<Errno> for Failure {
    fn from(errno: Errno) -> Self {
        Failure::Errno(errno)
    }
}

impl From<Kill> for Failure {
    fn from(kill: Kill) -> Self {
        Failure::Kill(kill)
    }
}

/// One instance's wasi-nn state.
pub struct WitxNn {
    registry: AppGraphRegistry,
    graphs: Vec<SharedGraph>,
    /// Reference the guest loaded -> its graph handle: loading it again gives the same one.
    handles: HashMap<String, u32>,
    contexts: Vec<Context>,
    deadline: Instant,
    metrics: Arc<Metrics>,
}

struct Context {
    execution: MeteredExecution,
    /// Host bytes charged to the budget for this context, as of its last call.
    charged: usize,
}

/// What the host functions need of the store's data.
pub struct NnView<'a> {
    pub nn: &'a mut WitxNn,
    pub budget: &'a mut MemoryBudget,
}

impl WitxNn {
    pub fn new(registry: AppGraphRegistry, deadline: Instant, metrics: Arc<Metrics>) -> Self {
        Self { registry, graphs: Vec::new(), handles: HashMap::new(), contexts: Vec::new(), deadline, metrics }
    }

    fn load_by_name(&mut self, name: &str) -> Result<u32, Failure> {
        if let Some(&handle) = self.handles.get(name) {
            return Ok(handle);
        }
        if self.graphs.len() >= MAX_GRAPHS {
            tracing::debug!(reference = name, "load_by_name refused: {MAX_GRAPHS} graphs already loaded");
            return Err(Errno::TooLarge.into());
        }
        let scope = DeadlineScope::enter(self.deadline);
        let loaded = self.registry.load(name);
        if scope.exceeded() {
            return Err(Kill::Deadline.into());
        }
        let graph = loaded.map_err(|error| {
            // The guest sees only the errno; the reason goes to the log.
            tracing::debug!(reference = name, %error, "load_by_name refused");
            match error {
                NnError::Load { .. } => Errno::RuntimeError,
                _ => Errno::NotFound,
            }
        })?;
        let handle = self.graphs.len() as u32;
        self.graphs.push(graph);
        self.handles.insert(name.to_string(), handle);
        Ok(handle)
    }

    fn init_execution_context(&mut self, graph: u32) -> Result<u32, Failure> {
        let graph = self.graphs.get(graph as usize).ok_or(Errno::InvalidArgument)?;
        if self.contexts.len() >= MAX_CONTEXTS {
            tracing::debug!("init_execution_context refused: {MAX_CONTEXTS} contexts already exist");
            return Err(Errno::TooLarge.into());
        }
        let execution = graph.execution();
        self.contexts.push(Context { execution, charged: 0 });
        Ok((self.contexts.len() - 1) as u32)
    }

    /// Runs `operation` on a context, converting a panic into the runtime-error errno, then charges
    /// what the context now holds.
    fn with_context<R>(
        &mut self,
        budget: &mut MemoryBudget,
        context: u32,
        operation: impl FnOnce(&mut MeteredExecution) -> Result<R, Failure>,
    ) -> Result<R, Failure> {
        let context = self.contexts.get_mut(context as usize).ok_or(Errno::InvalidArgument)?;
        let result = guarded(&self.metrics, || Errno::RuntimeError.into(), || operation(&mut context.execution));
        let held = context.execution.held_bytes();
        budget.recharge_host(context.charged, held)?;
        context.charged = held;
        result
    }
}

thread_local! {
    /// Set while a backend call runs under [`guarded`]: its panics are reported by us, rate
    /// limited, instead of by the default hook on every request.
    static GUARDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs a backend call, turning a panic into the error `panicked` makes (the runtime-error
/// errno here, a runtime-error resource for WIT), counted as a trap.
pub(super) fn guarded<R, E>(
    metrics: &Metrics,
    panicked: impl FnOnce() -> E,
    operation: impl FnOnce() -> Result<R, E>,
) -> Result<R, E> {
    GUARDED.with(|g| g.set(true));
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(operation));
    GUARDED.with(|g| g.set(false));
    outcome.unwrap_or_else(|payload| {
        metrics.traps.inc();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        log_rate_limited(&message);
        Err(panicked())
    })
}

/// Logs a backend panic at most once a second, with how many were not logged.
fn log_rate_limited(message: &str) {
    static LAST_SECOND: AtomicU64 = AtomicU64::new(0);
    static SUPPRESSED: AtomicU64 = AtomicU64::new(0);
    let second = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    if LAST_SECOND.swap(second, Ordering::Relaxed) == second {
        SUPPRESSED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let suppressed = SUPPRESSED.swap(0, Ordering::Relaxed);
    tracing::warn!(
        panic = message,
        suppressed,
        "a backend panicked on a guest's input; the guest got a wasi-nn runtime error"
    );
}

/// Installs (once) a panic hook that stays quiet for panics caught by [`guarded`].
pub(super) fn install_panic_hook() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !GUARDED.with(|g| g.get()) {
                previous(info);
            }
        }));
    });
}

/// Bounds-checked views of the guest's linear memory.
fn guest_slice(memory: &[u8], ptr: u32, len: u32) -> Result<&[u8], Errno> {
    let start = ptr as usize;
    let end = start.checked_add(len as usize).ok_or(Errno::InvalidArgument)?;
    memory.get(start..end).ok_or(Errno::InvalidArgument)
}

fn guest_slice_mut(memory: &mut [u8], ptr: u32, len: u32) -> Result<&mut [u8], Errno> {
    let start = ptr as usize;
    let end = start.checked_add(len as usize).ok_or(Errno::InvalidArgument)?;
    memory.get_mut(start..end).ok_or(Errno::InvalidArgument)
}

#[cfg(test)]
fn read_u32(memory: &[u8], ptr: u32) -> Result<u32, Errno> {
    let bytes = guest_slice(memory, ptr, 4)?;
    Ok(u32::from_le_bytes(bytes.try_into().expect("four bytes")))
}

fn write_u32(memory: &mut [u8], ptr: u32, value: u32) -> Result<(), Errno> {
    if !ptr.is_multiple_of(4) {
        return Err(Errno::InvalidArgument);
    }
    guest_slice_mut(memory, ptr, 4)?.copy_from_slice(&value.to_le_bytes());
    Ok(())
}

/// The witx `tensor_type` tag.
fn tensor_type(tag: u8) -> Result<TensorType, Errno> {
    Ok(match tag {
        0 => TensorType::Fp16,
        1 => TensorType::Fp32,
        2 => TensorType::Fp64,
        3 => TensorType::U8,
        4 => TensorType::I32,
        5 => TensorType::I64,
        _ => return Err(Errno::InvalidArgument),
    })
}

/// Reads a witx `tensor` record (dimensions list, type, data list; 20 bytes, align 4) from the
/// guest, charging its data to the budget before copying it.
fn read_tensor(memory: &[u8], ptr: u32, budget: &mut MemoryBudget) -> Result<Tensor, Failure> {
    if !ptr.is_multiple_of(4) {
        return Err(Errno::InvalidArgument.into());
    }
    let record = guest_slice(memory, ptr, 20)?;
    let field = |offset: usize| u32::from_le_bytes(record[offset..offset + 4].try_into().expect("four bytes"));
    let (dims_ptr, dims_len, data_ptr, data_len) = (field(0), field(4), field(12), field(16));
    let ty = tensor_type(record[8])?;
    if dims_len > MAX_RANK {
        return Err(Errno::InvalidArgument.into());
    }
    let dims = guest_slice(memory, dims_ptr, dims_len.checked_mul(4).ok_or(Errno::InvalidArgument)?)?;
    let dimensions = dims.chunks_exact(4).map(|d| u32::from_le_bytes(d.try_into().expect("four bytes"))).collect();
    let data = guest_slice(memory, data_ptr, data_len)?;
    // The copy made here is transient; the backend's own copy is charged after the call.
    if !budget.host_fits(data.len()) {
        return Err(Kill::Memory.into());
    }
    Ok(Tensor::new(dimensions, ty, data.to_vec()))
}

/// Adds the `wasi_ephemeral_nn` functions to `linker`, reaching each instance's state through
/// `view`.
pub fn add_to_linker<T: 'static>(linker: &mut Linker<T>, view: fn(&mut T) -> NnView<'_>) -> wasmtime::Result<()> {
    install_panic_hook();
    const MODULE: &str = "wasi_ephemeral_nn";

    linker.func_wrap(
        MODULE,
        "load",
        |_: Caller<'_, T>, _: u32, _: u32, _: u32, _: u32, _: u32| -> wasmtime::Result<i32> {
            // Model bytes never enter the guest: models are loaded by name only.
            Ok(Errno::UnsupportedOperation as i32)
        },
    )?;

    linker.func_wrap(
        MODULE,
        "load_by_name",
        move |mut caller: Caller<'_, T>, name_ptr: u32, name_len: u32, graph_out: u32| {
            call(&mut caller, view, |memory, state| {
                let name = std::str::from_utf8(guest_slice(memory, name_ptr, name_len)?)
                    .map_err(|_| Errno::InvalidArgument)?;
                let name = name.to_string();
                let handle = state.nn.load_by_name(&name)?;
                write_u32(memory, graph_out, handle)?;
                Ok(())
            })
        },
    )?;

    linker.func_wrap(
        MODULE,
        "init_execution_context",
        move |mut caller: Caller<'_, T>, graph: u32, context_out: u32| {
            call(&mut caller, view, |memory, state| {
                // Checked before the context exists, so a bad pointer leaves nothing behind.
                guest_slice(memory, context_out, 4)?;
                let handle = state.nn.init_execution_context(graph)?;
                write_u32(memory, context_out, handle)?;
                Ok(())
            })
        },
    )?;

    linker.func_wrap(
        MODULE,
        "set_input",
        move |mut caller: Caller<'_, T>, context: u32, index: u32, tensor_ptr: u32| {
            call(&mut caller, view, |memory, state| {
                let tensor = read_tensor(memory, tensor_ptr, state.budget)?;
                state.nn.with_context(state.budget, context, |execution| {
                    execution.set_input(Id::Index(index), &tensor).map_err(|error| {
                        tracing::debug!(%error, "set_input failed");
                        Errno::InvalidArgument.into()
                    })
                })
            })
        },
    )?;

    linker.func_wrap(MODULE, "compute", move |mut caller: Caller<'_, T>, context: u32| {
        call(&mut caller, view, |_memory, state| {
            let scope = DeadlineScope::enter(state.nn.deadline);
            let computed = state.nn.with_context(state.budget, context, |execution| {
                execution.compute(None).map(|_| ()).map_err(|error| {
                    tracing::debug!(%error, "compute failed");
                    Errno::RuntimeError.into()
                })
            });
            if scope.exceeded() {
                return Err(Kill::Deadline.into());
            }
            computed
        })
    })?;

    linker.func_wrap(
        MODULE,
        "get_output",
        move |mut caller: Caller<'_, T>, context: u32, index: u32, out_ptr: u32, out_max: u32, size_out: u32| {
            call(&mut caller, view, |memory, state| {
                let tensor = state.nn.with_context(state.budget, context, |execution| {
                    execution.get_output(Id::Index(index)).map_err(|error| {
                        tracing::debug!(%error, "get_output failed");
                        Errno::RuntimeError.into()
                    })
                })?;
                let len = u32::try_from(tensor.data.len()).map_err(|_| Errno::TooLarge)?;
                if len > out_max {
                    return Err(Errno::TooLarge.into());
                }
                guest_slice(memory, size_out, 4)?;
                guest_slice_mut(memory, out_ptr, len)?.copy_from_slice(&tensor.data);
                write_u32(memory, size_out, len)?;
                Ok(())
            })
        },
    )?;
    Ok(())
}

/// Runs one host function body with the guest's memory and the instance's state: success is
/// errno 0, an errno is returned to the guest, a kill ends the instance with that error.
fn call<T>(
    caller: &mut Caller<'_, T>,
    view: fn(&mut T) -> NnView<'_>,
    body: impl FnOnce(&mut [u8], NnView<'_>) -> Result<(), Failure>,
) -> wasmtime::Result<i32> {
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        return Ok(Errno::InvalidArgument as i32);
    };
    let (memory, state) = memory.data_and_store_mut(caller);
    match body(memory, view(state)) {
        Ok(()) => Ok(0),
        Err(Failure::Errno(errno)) => Ok(errno as i32),
        Err(Failure::Kill(kill)) => Err(wasmtime::Error::new(kill)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_pointers_are_bounds_checked() {
        let mut memory = vec![0u8; 64];
        assert!(guest_slice(&memory, 60, 4).is_ok());
        assert_eq!(guest_slice(&memory, 61, 4), Err(Errno::InvalidArgument));
        assert_eq!(guest_slice(&memory, u32::MAX, 2), Err(Errno::InvalidArgument));
        assert_eq!(write_u32(&mut memory, 62, 1), Err(Errno::InvalidArgument));
        assert_eq!(write_u32(&mut memory, 64, 1), Err(Errno::InvalidArgument));
        write_u32(&mut memory, 8, 0xdead_beef).unwrap();
        assert_eq!(read_u32(&memory, 8), Ok(0xdead_beef));
    }

    #[test]
    fn a_tensor_record_is_read_and_charged() {
        // dims at 32 ([1, 2]), data at 48 (8 bytes), record at 0.
        let mut memory = vec![0u8; 64];
        for (offset, value) in [(0, 32u32), (4, 2), (12, 48), (16, 8), (32, 1), (36, 2)] {
            write_u32(&mut memory, offset, value).unwrap();
        }
        memory[8] = 1; // f32
        let mut budget = MemoryBudget::new(1 << 20);
        let tensor = read_tensor(&memory, 0, &mut budget).ok().unwrap();
        assert_eq!((tensor.dimensions.clone(), tensor.data.len()), (vec![1, 2], 8));
        let mut small = MemoryBudget::new(4);
        assert!(matches!(read_tensor(&memory, 0, &mut small), Err(Failure::Kill(Kill::Memory))));
        memory[8] = 9;
        assert!(matches!(read_tensor(&memory, 0, &mut budget), Err(Failure::Errno(Errno::InvalidArgument))));
        write_u32(&mut memory, 4, 1 << 30).unwrap();
        assert!(matches!(read_tensor(&memory, 0, &mut budget), Err(Failure::Errno(Errno::InvalidArgument))));
    }
}
