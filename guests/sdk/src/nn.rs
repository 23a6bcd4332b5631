//! Models through wasi-nn: load by name, run on tensors, read f32 outputs. Plus [`softmax`]
//! and [`top_k`] for turning logits into ranked predictions.
//!
//! Models are loaded by name only (the gateway keeps the model bytes): `"<model>"` uses the
//! model's default backend, `"<model>@<backend>"` picks one (`ort` or `tract`). An app can only
//! load the models its manifest declares (`models = [...]`).
//!
//! ```no_run
//! use edgenn_guest::nn::{self, Model, NnError, Tensor};
//!
//! fn classify(pixels: &[f32]) -> Result<Vec<(usize, f32)>, NnError> {
//!     let model = Model::load("efficientnet-lite0@tract")?;
//!     let logits = model.run_f32(&[Tensor::f32(&[1, 3, 224, 224], pixels)])?;
//!     Ok(nn::top_k(&nn::softmax(&logits), 5))
//! }
//! ```
//!
//! Outside `wasm32` (native unit tests of a guest) there is no wasi-nn:
//! [`Model::load`] answers [`NnError::Unavailable`].

/// Why loading or running a model failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NnError {
    /// The model could not be loaded: no such model or backend, or the app's manifest does not
    /// declare it. Usually a 404 for the client.
    #[error("cannot load model {name:?}: {message}")]
    Load {
        /// The name passed to [`Model::load`].
        name: String,
        /// The wasi-nn error number, if the host gave one.
        errno: Option<u32>,
        /// What went wrong.
        message: String,
    },
    /// An input tensor is inconsistent (its data length does not match its dimensions).
    #[error("input tensor {index}: {message}")]
    Input {
        /// Index of the input.
        index: usize,
        /// What is wrong with it.
        message: String,
    },
    /// The model was loaded but running it failed (input of the wrong type or shape for the
    /// model, backend error, output larger than the guest can take).
    #[error("inference failed: {message}")]
    Inference {
        /// The wasi-nn error number, if the host gave one.
        errno: Option<u32>,
        /// What went wrong.
        message: String,
    },
    /// wasi-nn is only there for guests compiled for `wasm32-wasip1` and run by edgenn.
    #[error("wasi-nn is not available outside the edgenn gateway (wasm32-wasip1 guests only)")]
    Unavailable,
}

impl NnError {
    /// Whether the model could not be loaded (as opposed to failing while running).
    pub fn is_load_error(&self) -> bool {
        matches!(self, NnError::Load { .. } | NnError::Unavailable)
    }

    /// The wasi-nn error number (`nn_errno` in the witx: 1 invalid argument, 2 invalid
    /// encoding, 3 missing memory, 4 busy, 5 runtime error, 6 unsupported operation, 7 too
    /// large, 8 not found), if the host gave one.
    pub fn errno(&self) -> Option<u32> {
        match self {
            NnError::Load { errno, .. } | NnError::Inference { errno, .. } => *errno,
            _ => None,
        }
    }
}

/// An input tensor: dimensions and data, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct Tensor<'a> {
    dims: &'a [usize],
    data: TensorData<'a>,
}

#[derive(Debug, Clone, Copy)]
enum TensorData<'a> {
    F32(&'a [f32]),
    I32(&'a [i32]),
    I64(&'a [i64]),
    U8(&'a [u8]),
}

impl<'a> Tensor<'a> {
    /// An `f32` tensor (row-major `data`, `dims` e.g. `[1, 3, 224, 224]`).
    pub fn f32(dims: &'a [usize], data: &'a [f32]) -> Tensor<'a> {
        Tensor {
            dims,
            data: TensorData::F32(data),
        }
    }

    /// An `i32` tensor (token ids, ...).
    pub fn i32(dims: &'a [usize], data: &'a [i32]) -> Tensor<'a> {
        Tensor {
            dims,
            data: TensorData::I32(data),
        }
    }

    /// An `i64` tensor.
    pub fn i64(dims: &'a [usize], data: &'a [i64]) -> Tensor<'a> {
        Tensor {
            dims,
            data: TensorData::I64(data),
        }
    }

    /// A `u8` tensor.
    pub fn u8(dims: &'a [usize], data: &'a [u8]) -> Tensor<'a> {
        Tensor {
            dims,
            data: TensorData::U8(data),
        }
    }

    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        self.dims
    }

    /// The number of elements in `data`.
    pub fn len(&self) -> usize {
        match self.data {
            TensorData::F32(d) => d.len(),
            TensorData::I32(d) => d.len(),
            TensorData::I64(d) => d.len(),
            TensorData::U8(d) => d.len(),
        }
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks that the data length is the product of the dimensions: the host would reject
    /// the tensor with a less helpful error.
    fn check(&self, index: usize) -> Result<(), NnError> {
        let expected = self
            .dims
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d));
        match expected {
            Some(n) if n == self.len() => Ok(()),
            Some(n) => Err(NnError::Input {
                index,
                message: format!(
                    "{} elements for dimensions {:?} ({} expected)",
                    self.len(),
                    self.dims,
                    n
                ),
            }),
            None => Err(NnError::Input {
                index,
                message: format!("dimensions {:?} overflow", self.dims),
            }),
        }
    }
}

/// A model loaded by name. Loading is cheap: the gateway keeps compiled models cached.
#[derive(Debug)]
pub struct Model {
    name: String,
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    graph: imp::Graph,
}

impl Model {
    /// Loads model `name` (`"efficientnet-lite0"` or `"efficientnet-lite0@tract"`).
    ///
    /// Fails with [`NnError::Load`] for an unknown model or backend, or one that the app's
    /// manifest does not declare.
    pub fn load(name: &str) -> Result<Model, NnError> {
        imp::load(name)
    }

    /// The name the model was loaded with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Starts an inference session, for models with several outputs or non-f32 inputs in a
    /// particular order. [`Model::run_f32`] covers the common case.
    pub fn session(&self) -> Result<Session<'_>, NnError> {
        imp::session(self)
    }

    /// Runs the model on `inputs` (indexed in the order of the model's manifest) and returns
    /// output 0 as `f32`s.
    pub fn run_f32(&self, inputs: &[Tensor<'_>]) -> Result<Vec<f32>, NnError> {
        let mut session = self.session()?;
        for (index, input) in inputs.iter().enumerate() {
            session.set_input(index, input)?;
        }
        session.compute()?;
        session.output_f32(0)
    }
}

/// One inference: set the inputs, compute, read the outputs.
#[derive(Debug)]
pub struct Session<'m> {
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    ctx: imp::Context<'m>,
}

impl Session<'_> {
    /// Sets input `index`.
    pub fn set_input(&mut self, index: usize, tensor: &Tensor<'_>) -> Result<(), NnError> {
        tensor.check(index)?;
        imp::set_input(self, index, tensor)
    }

    /// Runs the model on the inputs set so far.
    pub fn compute(&mut self) -> Result<(), NnError> {
        imp::compute(self)
    }

    /// Output `index` as `f32`s (its length is whatever the model produced).
    pub fn output_f32(&self, index: usize) -> Result<Vec<f32>, NnError> {
        imp::output_f32(self, index)
    }
}

#[cfg(all(target_arch = "wasm32", not(feature = "component")))]
mod imp {
    //! WAGI: the witx `wasi_ephemeral_nn` functions, through the `wasi-nn` crate.
    use super::{Model, NnError, Session, Tensor, TensorData};
    use wasi_nn::{Error, ExecutionTarget, GraphBuilder, GraphEncoding, TensorType};

    pub(super) type Graph = wasi_nn::Graph;
    pub(super) type Context<'m> = wasi_nn::GraphExecutionContext<'m>;

    /// Start with room for 64 KiB of output and grow on "too large": the witx get_output
    /// cannot tell the size up front, and most outputs (class logits) are small.
    const FIRST_OUTPUT_LEN: usize = 16 * 1024;
    /// Never grow beyond 256 MiB of output.
    const MAX_OUTPUT_LEN: usize = 64 * 1024 * 1024;
    /// nn_errno `too-large`: the output buffer was too small.
    const TOO_LARGE: u32 = 7;

    pub(super) fn load(name: &str) -> Result<Model, NnError> {
        // load_by_name ignores the encoding; the target must be one the host's witx knows
        // (cpu), which rules out the crate's newer AUTO.
        GraphBuilder::new(GraphEncoding::Onnx, ExecutionTarget::CPU)
            .build_from_cache(name)
            .map(|graph| Model {
                name: name.to_owned(),
                graph,
            })
            .map_err(|e| {
                let (errno, message) = describe(&e);
                NnError::Load {
                    name: name.to_owned(),
                    errno,
                    message: if matches!(errno, Some(1 | 6 | 8)) {
                        format!("unknown model or backend, or not declared by this app ({message})")
                    } else {
                        message
                    },
                }
            })
    }

    pub(super) fn session(model: &Model) -> Result<Session<'_>, NnError> {
        Ok(Session {
            ctx: model.graph.init_execution_context().map_err(inference)?,
        })
    }

    pub(super) fn set_input(
        session: &mut Session<'_>,
        index: usize,
        tensor: &Tensor<'_>,
    ) -> Result<(), NnError> {
        let ctx = &mut session.ctx;
        let dims = tensor.dims;
        match tensor.data {
            TensorData::F32(d) => ctx.set_input(index, TensorType::F32, dims, d),
            TensorData::I32(d) => ctx.set_input(index, TensorType::I32, dims, d),
            TensorData::I64(d) => ctx.set_input(index, TensorType::I64, dims, d),
            TensorData::U8(d) => ctx.set_input(index, TensorType::U8, dims, d),
        }
        .map_err(inference)
    }

    pub(super) fn compute(session: &mut Session<'_>) -> Result<(), NnError> {
        session.ctx.compute().map_err(inference)
    }

    pub(super) fn output_f32(session: &Session<'_>, index: usize) -> Result<Vec<f32>, NnError> {
        let mut len = FIRST_OUTPUT_LEN;
        loop {
            let mut out = vec![0f32; len];
            match session.ctx.get_output(index, &mut out) {
                Ok(bytes) => {
                    out.truncate(bytes / size_of::<f32>());
                    return Ok(out);
                }
                Err(e) if describe(&e).0 == Some(TOO_LARGE) && len < MAX_OUTPUT_LEN => {
                    len *= 4;
                }
                Err(e) => return Err(inference(e)),
            }
        }
    }

    fn inference(e: Error) -> NnError {
        let (errno, message) = describe(&e);
        NnError::Inference { errno, message }
    }

    /// The witx errno and a short description. The crate keeps its `BackendError` type
    /// private (only `Error` is exported), so the variant is recognised by its `Debug` name.
    fn describe(e: &Error) -> (Option<u32>, String) {
        let Error::BackendError(backend) = e else {
            return (None, e.to_string());
        };
        let debug = format!("{backend:?}");
        let (errno, name) = match debug.as_str() {
            "InvalidArgument" => (1, "invalid argument"),
            "InvalidEncoding" => (2, "invalid encoding"),
            "MissingMemory" => (3, "missing memory"),
            "Busy" => (4, "busy"),
            "RuntimeError" => (5, "runtime error"),
            "UnsupportedOperation" => (6, "unsupported operation"),
            "TooLarge" => (7, "too large"),
            "NotFound" => (8, "not found"),
            // UnknownError(code)
            other => {
                let code = other
                    .trim_start_matches("UnknownError(")
                    .trim_end_matches(')')
                    .parse()
                    .ok();
                return (code, format!("wasi-nn error {other}"));
            }
        };
        (Some(errno), format!("wasi-nn error {errno}: {name}"))
    }
}

#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod imp {
    //! Components: the WIT `wasi:nn` interfaces. Inputs are named tensors: an input set by
    //! index is named by its index, which edgenn resolves to the model's input at that index.
    use super::{Model, NnError, Session, Tensor, TensorData};
    use crate::component::bindings::wasi::nn::errors::{Error, ErrorCode};
    use crate::component::bindings::wasi::nn::graph;
    use crate::component::bindings::wasi::nn::inference::GraphExecutionContext;
    use crate::component::bindings::wasi::nn::tensor::{Tensor as WitTensor, TensorType};

    pub(super) type Graph = graph::Graph;

    /// The context, the inputs set so far and the outputs of the last compute.
    pub(super) struct Context<'m> {
        ctx: GraphExecutionContext,
        inputs: Vec<(String, WitTensor)>,
        outputs: Vec<(String, WitTensor)>,
        _model: std::marker::PhantomData<&'m Model>,
    }

    impl std::fmt::Debug for Context<'_> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Context")
                .field("inputs", &self.inputs.len())
                .finish()
        }
    }

    pub(super) fn load(name: &str) -> Result<Model, NnError> {
        graph::load_by_name(name)
            .map(|graph| Model {
                name: name.to_owned(),
                graph,
            })
            .map_err(|e| {
                let (errno, message) = describe(&e);
                NnError::Load {
                    name: name.to_owned(),
                    errno,
                    message,
                }
            })
    }

    pub(super) fn session(model: &Model) -> Result<Session<'_>, NnError> {
        let ctx = model.graph.init_execution_context().map_err(inference)?;
        Ok(Session {
            ctx: Context {
                ctx,
                inputs: Vec::new(),
                outputs: Vec::new(),
                _model: std::marker::PhantomData,
            },
        })
    }

    pub(super) fn set_input(
        session: &mut Session<'_>,
        index: usize,
        tensor: &Tensor<'_>,
    ) -> Result<(), NnError> {
        let dims: Vec<u32> = tensor
            .dims
            .iter()
            .map(|&d| u32::try_from(d))
            .collect::<Result<_, _>>()
            .map_err(|_| NnError::Input {
                index,
                message: format!("dimensions {:?} do not fit u32", tensor.dims),
            })?;
        let (ty, bytes) = match tensor.data {
            TensorData::F32(d) => (TensorType::Fp32, le_bytes(d, |v| v.to_le_bytes())),
            TensorData::I32(d) => (TensorType::I32, le_bytes(d, |v| v.to_le_bytes())),
            TensorData::I64(d) => (TensorType::I64, le_bytes(d, |v| v.to_le_bytes())),
            TensorData::U8(d) => (TensorType::U8, d.to_vec()),
        };
        let inputs = &mut session.ctx.inputs;
        let name = index.to_string();
        inputs.retain(|(n, _)| *n != name);
        inputs.push((name, WitTensor::new(&dims, ty, &bytes)));
        Ok(())
    }

    pub(super) fn compute(session: &mut Session<'_>) -> Result<(), NnError> {
        let inputs = std::mem::take(&mut session.ctx.inputs);
        session.ctx.outputs = session.ctx.ctx.compute(inputs).map_err(inference)?;
        Ok(())
    }

    pub(super) fn output_f32(session: &Session<'_>, index: usize) -> Result<Vec<f32>, NnError> {
        let (name, tensor) = session
            .ctx
            .outputs
            .get(index)
            .ok_or_else(|| NnError::Inference {
                errno: None,
                message: format!("no output {index}: has compute run?"),
            })?;
        if tensor.ty() != TensorType::Fp32 {
            return Err(NnError::Inference {
                errno: None,
                message: format!("output {name:?} is not f32"),
            });
        }
        Ok(tensor
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    fn le_bytes<T: Copy, const N: usize>(values: &[T], to: impl Fn(T) -> [u8; N]) -> Vec<u8> {
        values.iter().flat_map(|&v| to(v)).collect()
    }

    fn inference(e: Error) -> NnError {
        let (errno, message) = describe(&e);
        NnError::Inference { errno, message }
    }

    /// The witx errno the WIT error code stands for (so [`NnError::errno`] means the same in
    /// both flavours), and the host's message.
    fn describe(e: &Error) -> (Option<u32>, String) {
        let errno = match e.code() {
            ErrorCode::InvalidArgument => Some(1),
            ErrorCode::InvalidEncoding => Some(2),
            ErrorCode::RuntimeError => Some(5),
            ErrorCode::UnsupportedOperation => Some(6),
            ErrorCode::TooLarge => Some(7),
            ErrorCode::NotFound => Some(8),
            ErrorCode::Timeout | ErrorCode::Security | ErrorCode::Unknown => None,
        };
        (errno, e.data())
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    //! Native builds (unit tests): no host to ask.
    use super::{Model, NnError, Session, Tensor};

    pub(super) type Graph = ();
    pub(super) type Context<'m> = std::marker::PhantomData<&'m Model>;

    pub(super) fn load(_name: &str) -> Result<Model, NnError> {
        Err(NnError::Unavailable)
    }

    pub(super) fn session(_model: &Model) -> Result<Session<'_>, NnError> {
        Err(NnError::Unavailable)
    }

    pub(super) fn set_input(_: &mut Session<'_>, _: usize, _: &Tensor<'_>) -> Result<(), NnError> {
        Err(NnError::Unavailable)
    }

    pub(super) fn compute(_: &mut Session<'_>) -> Result<(), NnError> {
        Err(NnError::Unavailable)
    }

    pub(super) fn output_f32(_: &Session<'_>, _: usize) -> Result<Vec<f32>, NnError> {
        Err(NnError::Unavailable)
    }
}

/// Turns logits into probabilities that sum to 1 (numerically stable: the maximum is
/// subtracted first). An empty slice gives an empty vector.
///
/// ```
/// let p = edgenn_guest::nn::softmax(&[1.0, 2.0, 3.0]);
/// assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
/// assert!(p[2] > p[1] && p[1] > p[0]);
/// ```
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        // All -inf (or empty, or +inf somewhere): spread evenly over the maxima instead of NaN.
        let hits = logits.iter().filter(|&&x| x == max).count().max(1) as f32;
        return logits
            .iter()
            .map(|&x| if x == max { 1.0 / hits } else { 0.0 })
            .collect();
    }
    let mut out: Vec<f32> = logits.iter().map(|&x| (x - max).exp()).collect();
    let sum: f32 = out.iter().sum();
    for p in &mut out {
        *p /= sum;
    }
    out
}

/// The `k` largest `scores` as `(index, score)`, best first; ties go to the lower index, NaN
/// ranks last. `k` larger than the input gives them all.
///
/// ```
/// let best = edgenn_guest::nn::top_k(&[0.1, 0.5, 0.2, 0.5], 3);
/// assert_eq!(best, vec![(1, 0.5), (3, 0.5), (2, 0.2)]);
/// ```
pub fn top_k(scores: &[f32], k: usize) -> Vec<(usize, f32)> {
    let k = k.min(scores.len());
    if k == 0 {
        return Vec::new();
    }
    let key = |&(i, s): &(usize, f32)| (if s.is_nan() { f32::NEG_INFINITY } else { s }, i);
    let order = |a: &(usize, f32), b: &(usize, f32)| {
        let (sa, ia) = key(a);
        let (sb, ib) = key(b);
        sb.total_cmp(&sa).then(ia.cmp(&ib))
    };
    let mut all: Vec<(usize, f32)> = scores.iter().copied().enumerate().collect();
    // Partial selection: O(n) to find the k best, then sort only those.
    if k < all.len() {
        all.select_nth_unstable_by(k - 1, order);
        all.truncate(k);
    }
    all.sort_unstable_by(order);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_is_stable() {
        let p = softmax(&[1000.0, 1001.0, 1002.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let q = softmax(&[0.0, 1.0, 2.0]);
        for (a, b) in p.iter().zip(&q) {
            assert!((a - b).abs() < 1e-6);
        }
        assert!((q[2] - 0.665_240_9).abs() < 1e-6);
        assert_eq!(softmax(&[]), Vec::<f32>::new());
        assert_eq!(softmax(&[5.0]), vec![1.0]);
        assert_eq!(softmax(&[f32::NEG_INFINITY; 2]), vec![0.5, 0.5]);
        assert_eq!(softmax(&[f32::INFINITY, 0.0]), vec![1.0, 0.0]);
        let with_neg_inf = softmax(&[0.0, f32::NEG_INFINITY]);
        assert_eq!(with_neg_inf, vec![1.0, 0.0]);
    }

    #[test]
    fn top_k_orders_and_breaks_ties() {
        let s = [0.1, 0.7, f32::NAN, 0.7, 0.05, 0.9];
        assert_eq!(top_k(&s, 3), vec![(5, 0.9), (1, 0.7), (3, 0.7)]);
        assert_eq!(top_k(&s, 0), vec![]);
        let all = top_k(&s, 100);
        assert_eq!(all.len(), 6);
        assert_eq!(all[4], (4, 0.05));
        assert_eq!(all[5].0, 2); // NaN last
        assert_eq!(top_k(&[], 5), vec![]);
    }

    #[test]
    fn top_k_matches_full_sort() {
        // Deterministic pseudo-random scores with many duplicates.
        let mut x = 12345u32;
        let scores: Vec<f32> = (0..5000)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                ((x >> 16) % 200) as f32 / 7.0
            })
            .collect();
        let mut sorted: Vec<(usize, f32)> = scores.iter().copied().enumerate().collect();
        sorted.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        for k in [1, 2, 5, 50, 4999, 5000] {
            assert_eq!(top_k(&scores, k), sorted[..k].to_vec(), "k={k}");
        }
    }

    #[test]
    fn tensor_checks() {
        let data = [0f32; 6];
        assert!(Tensor::f32(&[2, 3], &data).check(0).is_ok());
        let err = Tensor::f32(&[2, 2], &data).check(1).unwrap_err();
        assert_eq!(
            err.to_string(),
            "input tensor 1: 6 elements for dimensions [2, 2] (4 expected)"
        );
        assert!(Tensor::i32(&[usize::MAX, 2], &[]).check(0).is_err());
        assert_eq!(Tensor::u8(&[0], &[]).len(), 0);
        assert!(Tensor::i64(&[1], &[7]).dims() == [1]);
    }

    #[test]
    fn native_has_no_wasi_nn() {
        let err = Model::load("anything").unwrap_err();
        assert_eq!(err, NnError::Unavailable);
        assert!(err.is_load_error());
        assert_eq!(err.errno(), None);
        let inference = NnError::Inference {
            errno: Some(5),
            message: "x".into(),
        };
        assert!(!inference.is_load_error());
        assert_eq!(inference.errno(), Some(5));
    }
}
