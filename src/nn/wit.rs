//! The host side of wasi-nn's WIT ABI (`wasi:nn@0.2.0-rc-2024-10-28`, vendored in `wit/deps`),
//! which components import: resources `graph`, `tensor`, `graph-execution-context` and
//! `error`, models by `load-by-name`, `compute` on named tensors.
//!
//! The twin of [`super::witx`], on the same seam: names resolve through the app's
//! [`AppGraphRegistry`] (the shared moka cache and the app's allow-list), contexts are the
//! backends' own [`MeteredExecution`]s. Written here rather than taken from wasmtime-wasi-nn's
//! `wit` module for the same reasons as the witx host:
//! - at most [`MAX_GRAPHS`] distinct graphs and [`MAX_CONTEXTS`] live contexts per instance;
//! - every tensor and error the host keeps for the instance, and what its contexts hold, is
//!   charged to its memory limit ([`MemoryBudget`]); past it the instance is stopped;
//! - `compute` and `load-by-name` run under the request's deadline ([`DeadlineScope`]);
//! - a bad tensor (a byte length that does not match its dimensions, a type the model does not
//!   take) is an `invalid-argument` error resource, a model outside the allow-list is
//!   `not-found`, a backend panic is `runtime-error`: never a trap of the host.

use super::backend::check_tensor;
use super::limits::{DeadlineScope, Kill, MemoryBudget};
use super::witx::{guarded, install_panic_hook};
use super::{AppGraphRegistry, MeteredExecution, NnError, SharedGraph};
use crate::metrics::Metrics;
use generated::wasi::nn as wit;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi_nn::backend::{BackendExecutionContext, Id, NamedTensor};
use wasmtime_wasi_nn::wit::TensorType as BackendTensorType;
use wit::errors::ErrorCode;
use wit::tensor::TensorType;

pub use super::witx::{MAX_CONTEXTS, MAX_GRAPHS};

/// The highest rank of a tensor a guest may pass.
const MAX_RANK: usize = 32;
/// What one resource costs the host beyond its data, charged so that a guest cannot fill the
/// host with empty tensors or errors.
const RESOURCE_OVERHEAD: usize = 128;

mod generated {
    wasmtime::component::bindgen!({
        world: "ml",
        path: "wit/deps/nn.wit",
        with: {
            "wasi:nn/graph.graph": super::Graph,
            "wasi:nn/tensor.tensor": super::Tensor,
            "wasi:nn/inference.graph-execution-context": super::Context,
            "wasi:nn/errors.error": super::Error,
        },
        imports: { default: trappable },
    });
}

/// A graph the guest loaded.
pub struct Graph(SharedGraph);

/// A tensor the host keeps for the guest, with what it was charged.
pub struct Tensor {
    tensor: wasmtime_wasi_nn::Tensor,
    ty: TensorType,
    charged: usize,
}

/// An execution context, with what it was charged as of its last call.
pub struct Context {
    execution: MeteredExecution,
    charged: usize,
}

/// A wasi-nn error resource.
pub struct Error {
    code: ErrorCode,
    message: String,
    charged: usize,
}

/// One instance's wasi-nn state.
pub struct WitNn {
    registry: AppGraphRegistry,
    /// Reference the guest loaded -> its graph: loading it again shares it.
    loaded: HashMap<String, SharedGraph>,
    live_contexts: usize,
    deadline: Instant,
    metrics: Arc<Metrics>,
}

impl WitNn {
    pub fn new(registry: AppGraphRegistry, deadline: Instant, metrics: Arc<Metrics>) -> Self {
        Self { registry, loaded: HashMap::new(), live_contexts: 0, deadline, metrics }
    }
}

/// What the host functions need of the store's data.
pub struct WitNnView<'a> {
    pub table: &'a mut ResourceTable,
    pub nn: &'a mut WitNn,
    pub budget: &'a mut MemoryBudget,
}

struct HasWitNn;

impl HasData for HasWitNn {
    type Data<'a> = WitNnView<'a>;
}

/// Adds `wasi:nn` (WIT) to a component linker, reaching each instance's state through `view`.
pub fn add_to_linker<T: 'static>(linker: &mut Linker<T>, view: fn(&mut T) -> WitNnView<'_>) -> wasmtime::Result<()> {
    install_panic_hook();
    wit::graph::add_to_linker::<_, HasWitNn>(linker, view)?;
    wit::tensor::add_to_linker::<_, HasWitNn>(linker, view)?;
    wit::inference::add_to_linker::<_, HasWitNn>(linker, view)?;
    wit::errors::add_to_linker::<_, HasWitNn>(linker, view)?;
    Ok(())
}

/// A call's outcome: a value, an error resource for the guest, or (outer `Err`) a trap.
type Answer<T> = wasmtime::Result<Result<T, Resource<Error>>>;

impl WitNnView<'_> {
    /// Charges `bytes` more to the instance; past its limit the instance is stopped.
    fn charge(&mut self, bytes: usize) -> wasmtime::Result<()> {
        if !self.budget.host_fits(bytes) {
            return Err(Kill::Memory.into());
        }
        self.budget.recharge_host(0, bytes)?;
        Ok(())
    }

    fn release(&mut self, bytes: usize) {
        let _ = self.budget.recharge_host(bytes, 0);
    }

    /// An error resource for the guest; the reason is logged at debug level, as for witx.
    fn fail<T>(&mut self, code: ErrorCode, message: String) -> Answer<T> {
        tracing::debug!(?code, %message, "wasi-nn (WIT) call failed");
        let charged = RESOURCE_OVERHEAD + message.len();
        self.charge(charged)?;
        let error = self.table.push(Error { code, message, charged })?;
        Ok(Err(error))
    }

    fn push_tensor(&mut self, tensor: wasmtime_wasi_nn::Tensor) -> wasmtime::Result<Resource<Tensor>> {
        let charged = RESOURCE_OVERHEAD + tensor.data.len() + tensor.dimensions.len() * 4;
        self.charge(charged)?;
        let ty = to_wit_type(tensor.ty);
        Ok(self.table.push(Tensor { tensor, ty, charged })?)
    }
}

fn to_backend_type(ty: TensorType) -> BackendTensorType {
    match ty {
        TensorType::Fp16 => BackendTensorType::Fp16,
        TensorType::Fp32 => BackendTensorType::Fp32,
        TensorType::Fp64 => BackendTensorType::Fp64,
        TensorType::Bf16 => BackendTensorType::Bf16,
        TensorType::U8 => BackendTensorType::U8,
        TensorType::I32 => BackendTensorType::I32,
        TensorType::I64 => BackendTensorType::I64,
    }
}

fn to_wit_type(ty: BackendTensorType) -> TensorType {
    match ty {
        BackendTensorType::Fp16 => TensorType::Fp16,
        BackendTensorType::Fp32 => TensorType::Fp32,
        BackendTensorType::Fp64 => TensorType::Fp64,
        BackendTensorType::Bf16 => TensorType::Bf16,
        BackendTensorType::U8 => TensorType::U8,
        BackendTensorType::I32 => TensorType::I32,
        BackendTensorType::I64 => TensorType::I64,
    }
}

/// Why a tensor cannot be given to a model, before any backend sees it: the backends' own
/// check, plus a bound on the rank.
fn tensor_problem(tensor: &wasmtime_wasi_nn::Tensor) -> Option<String> {
    if tensor.dimensions.len() > MAX_RANK {
        return Some(format!("tensor rank {} is above {MAX_RANK}", tensor.dimensions.len()));
    }
    check_tensor(tensor).err().map(|error| error.to_string())
}

impl wit::graph::Host for WitNnView<'_> {
    fn load(
        &mut self,
        _builders: Vec<Vec<u8>>,
        _encoding: wit::graph::GraphEncoding,
        _target: wit::graph::ExecutionTarget,
    ) -> Answer<Resource<Graph>> {
        // Model bytes never enter the guest: models are loaded by name only.
        self.fail(ErrorCode::UnsupportedOperation, "models are loaded by name only: use load-by-name".into())
    }

    fn load_by_name(&mut self, name: String) -> Answer<Resource<Graph>> {
        if let Some(graph) = self.nn.loaded.get(&name) {
            let graph = Graph(graph.clone());
            return Ok(Ok(self.table.push(graph)?));
        }
        if self.nn.loaded.len() >= MAX_GRAPHS {
            return self.fail(ErrorCode::TooLarge, format!("{MAX_GRAPHS} graphs are already loaded"));
        }
        let scope = DeadlineScope::enter(self.nn.deadline);
        let loaded = self.nn.registry.load(&name);
        if scope.exceeded() {
            return Err(Kill::Deadline.into());
        }
        match loaded {
            Ok(graph) => {
                self.nn.loaded.insert(name, graph.clone());
                Ok(Ok(self.table.push(Graph(graph))?))
            }
            // The guest learns only that the model could not load; the cause is logged.
            Err(error @ NnError::Load { .. }) => {
                tracing::warn!(reference = %name, error = %super::describe(&error), "a model failed to load");
                self.fail(ErrorCode::RuntimeError, format!("model {name:?} failed to load"))
            }
            Err(error) => self.fail(ErrorCode::NotFound, error.to_string()),
        }
    }
}

impl wit::graph::HostGraph for WitNnView<'_> {
    fn init_execution_context(&mut self, graph: Resource<Graph>) -> Answer<Resource<Context>> {
        if self.nn.live_contexts >= MAX_CONTEXTS {
            return self.fail(ErrorCode::TooLarge, format!("{MAX_CONTEXTS} execution contexts are already open"));
        }
        let execution = self.table.get(&graph)?.0.execution();
        self.nn.live_contexts += 1;
        Ok(Ok(self.table.push(Context { execution, charged: 0 })?))
    }

    fn drop(&mut self, graph: Resource<Graph>) -> wasmtime::Result<()> {
        self.table.delete(graph)?;
        Ok(())
    }
}

impl wit::tensor::Host for WitNnView<'_> {}

impl wit::tensor::HostTensor for WitNnView<'_> {
    fn new(&mut self, dimensions: Vec<u32>, ty: TensorType, data: Vec<u8>) -> wasmtime::Result<Resource<Tensor>> {
        // The constructor cannot fail in WIT: a tensor that does not add up is refused by
        // `compute`, with an error the guest can read.
        self.push_tensor(wasmtime_wasi_nn::Tensor::new(dimensions, to_backend_type(ty), data))
    }

    fn dimensions(&mut self, tensor: Resource<Tensor>) -> wasmtime::Result<Vec<u32>> {
        Ok(self.table.get(&tensor)?.tensor.dimensions.clone())
    }

    fn ty(&mut self, tensor: Resource<Tensor>) -> wasmtime::Result<TensorType> {
        Ok(self.table.get(&tensor)?.ty)
    }

    fn data(&mut self, tensor: Resource<Tensor>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.table.get(&tensor)?.tensor.data.clone())
    }

    fn drop(&mut self, tensor: Resource<Tensor>) -> wasmtime::Result<()> {
        let tensor = self.table.delete(tensor)?;
        self.release(tensor.charged);
        Ok(())
    }
}

impl wit::inference::Host for WitNnView<'_> {}

impl wit::inference::HostGraphExecutionContext for WitNnView<'_> {
    fn compute(
        &mut self,
        context: Resource<Context>,
        inputs: Vec<(String, Resource<Tensor>)>,
    ) -> Answer<Vec<(String, Resource<Tensor>)>> {
        // The inputs are the guest's to give (`own<tensor>`): they leave the table here, and
        // what the backend keeps of them is charged to the context below.
        let mut named = Vec::with_capacity(inputs.len());
        for (name, tensor) in inputs {
            let tensor = self.table.delete(tensor)?;
            self.release(tensor.charged);
            named.push(NamedTensor { name, tensor: tensor.tensor });
        }
        if let Some(problem) = named.iter().find_map(|input| tensor_problem(&input.tensor)) {
            return self.fail(ErrorCode::InvalidArgument, problem);
        }

        let scope = DeadlineScope::enter(self.nn.deadline);
        let context = self.table.get_mut(&context)?;
        let metrics = self.nn.metrics.clone();
        let outcome = guarded(
            &metrics,
            || (ErrorCode::RuntimeError, "the backend failed on this input".to_string()),
            || {
                for input in &named {
                    let execution = &mut context.execution;
                    let by_name = execution.set_input(Id::Name(input.name.clone()), &input.tensor);
                    // A name that is not one of the model's inputs but a number is an index:
                    // the guest SDK sets inputs by index, and WIT has no call to list names.
                    let set = match (by_name, input.name.parse::<u32>()) {
                        (Err(_), Ok(index)) => execution.set_input(Id::Index(index), &input.tensor),
                        (by_name, _) => by_name,
                    };
                    set.map_err(|e| (ErrorCode::InvalidArgument, e.to_string()))?;
                }
                // Named (even empty) inputs ask the backend for named outputs.
                context.execution.compute(Some(Vec::new())).map_err(|e| (ErrorCode::RuntimeError, e.to_string()))
            },
        );
        drop(named);
        let (held, charged) = (context.execution.held_bytes(), context.charged);
        context.charged = held;
        self.budget.recharge_host(charged, held)?;
        if scope.exceeded() {
            return Err(Kill::Deadline.into());
        }
        let outputs = match outcome {
            Ok(outputs) => outputs.unwrap_or_default(),
            Err((code, message)) => return self.fail(code, message),
        };
        let mut answer = Vec::with_capacity(outputs.len());
        for output in outputs {
            answer.push((output.name, self.push_tensor(output.tensor)?));
        }
        Ok(Ok(answer))
    }

    fn drop(&mut self, context: Resource<Context>) -> wasmtime::Result<()> {
        let context = self.table.delete(context)?;
        self.nn.live_contexts -= 1;
        self.release(context.charged);
        Ok(())
    }
}

impl wit::errors::Host for WitNnView<'_> {}

impl wit::errors::HostError for WitNnView<'_> {
    fn code(&mut self, error: Resource<Error>) -> wasmtime::Result<ErrorCode> {
        Ok(self.table.get(&error)?.code)
    }

    fn data(&mut self, error: Resource<Error>) -> wasmtime::Result<String> {
        Ok(self.table.get(&error)?.message.clone())
    }

    fn drop(&mut self, error: Resource<Error>) -> wasmtime::Result<()> {
        let error = self.table.delete(error)?;
        self.release(error.charged);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_that_do_not_add_up_are_named() {
        let ok = wasmtime_wasi_nn::Tensor::new(vec![1, 64], BackendTensorType::Fp32, vec![0; 256]);
        assert_eq!(tensor_problem(&ok), None);
        let short = wasmtime_wasi_nn::Tensor::new(vec![1, 64], BackendTensorType::Fp32, vec![0; 255]);
        assert!(tensor_problem(&short).unwrap().contains("needs 256 bytes, got 255"));
        let huge = wasmtime_wasi_nn::Tensor::new(vec![u32::MAX; 4], BackendTensorType::I64, vec![]);
        assert!(tensor_problem(&huge).unwrap().contains("overflow"));
        let deep = wasmtime_wasi_nn::Tensor::new(vec![1; 33], BackendTensorType::U8, vec![0]);
        assert!(tensor_problem(&deep).unwrap().contains("rank"));
    }

    #[test]
    fn tensor_types_round_trip() {
        for ty in [
            TensorType::Fp16,
            TensorType::Fp32,
            TensorType::Fp64,
            TensorType::Bf16,
            TensorType::U8,
            TensorType::I32,
            TensorType::I64,
        ] {
            assert_eq!(to_wit_type(to_backend_type(ty)), ty);
        }
    }
}
