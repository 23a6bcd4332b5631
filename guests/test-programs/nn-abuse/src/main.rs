//! Test program: calls the wasi-nn witx ABI directly, as a hostile guest would, to check that
//! the host bounds what one instance can make it hold and never trusts a pointer. `?do=`:
//!
//! - `contexts&model=M&n=N`: creates up to N execution contexts of M, stopping at the first
//!   error; answers how many were created and that errno.
//! - `inputs&model=M&n=N&mib=S`: creates N contexts and gives each an i32 input of S MiB (the
//!   host keeps a copy per context); answers only if the host let all of it through.
//! - `graphs&model=M&n=N`: loads M N times; answers the distinct handles it got.
//! - `pointers&model=M`: passes out-of-bounds pointers and lengths to every call; answers the
//!   errnos (each must be an error, none a crash).
//!
//! The raw imports are declared with the same signatures as the `wasi-nn` crate's (all i32),
//! so both can live in one module.

use edgenn_guest::{Request, Response};
use serde_json::json;

mod raw {
    #[link(wasm_import_module = "wasi_ephemeral_nn")]
    unsafe extern "C" {
        pub fn load_by_name(name: i32, name_len: i32, graph_out: i32) -> i32;
        pub fn init_execution_context(graph: i32, context_out: i32) -> i32;
        pub fn set_input(context: i32, index: i32, tensor: i32) -> i32;
        pub fn get_output(
            context: i32,
            index: i32,
            out: i32,
            out_max: i32,
            written_out: i32,
        ) -> i32;
        pub fn compute(context: i32) -> i32;
    }
}

/// The witx `tensor` record: dimensions list, type tag, data list.
#[repr(C)]
struct RawTensor {
    dims: *const u32,
    dims_len: u32,
    ty: u8,
    data: *const u8,
    data_len: u32,
}

/// An address far past any linear memory a guest has here.
const WILD: i32 = 0x7fff_fff0;

fn load(model: &str) -> Result<i32, i32> {
    let mut graph = 0i32;
    let errno = unsafe {
        raw::load_by_name(
            model.as_ptr() as i32,
            model.len() as i32,
            &mut graph as *mut i32 as i32,
        )
    };
    if errno == 0 { Ok(graph) } else { Err(errno) }
}

fn context(graph: i32) -> Result<i32, i32> {
    let mut context = 0i32;
    let errno = unsafe { raw::init_execution_context(graph, &mut context as *mut i32 as i32) };
    if errno == 0 { Ok(context) } else { Err(errno) }
}

fn main() {
    edgenn_guest::run(handle);
}

fn handle(req: Request) -> Response {
    let model = req.query("model").unwrap_or_else(|| "wordlm".to_owned());
    let n: usize = req.query("n").and_then(|v| v.parse().ok()).unwrap_or(1000);
    let graph = match load(&model) {
        Ok(graph) => graph,
        Err(errno) => {
            return Response::json(
                404,
                &json!({ "error": "load_by_name failed", "errno": errno }),
            );
        }
    };
    match req.query("do").as_deref() {
        Some("contexts") => {
            let mut created = 0;
            let mut errno = 0;
            while created < n {
                match context(graph) {
                    Ok(_) => created += 1,
                    Err(e) => {
                        errno = e;
                        break;
                    }
                }
            }
            Response::json(200, &json!({ "created": created, "errno": errno }))
        }
        Some("inputs") => {
            let mib: usize = req.query("mib").and_then(|v| v.parse().ok()).unwrap_or(16);
            // Zeros: token id 0, a value every model here takes.
            let data = vec![0u8; mib << 20];
            let dims = [1u32, (data.len() / 4) as u32];
            let tensor = RawTensor {
                dims: dims.as_ptr(),
                dims_len: 2,
                ty: 4,
                data: data.as_ptr(),
                data_len: data.len() as u32,
            };
            for i in 0..n {
                let context = match context(graph) {
                    Ok(context) => context,
                    Err(errno) => {
                        return Response::json(200, &json!({ "contexts": i, "errno": errno }));
                    }
                };
                let errno =
                    unsafe { raw::set_input(context, 0, &tensor as *const RawTensor as i32) };
                if errno != 0 {
                    return Response::json(200, &json!({ "inputs": i, "errno": errno }));
                }
            }
            Response::json(200, &json!({ "inputs": n, "held_mib": n * mib }))
        }
        Some("graphs") => {
            let mut handles: Vec<i32> = (0..n).filter_map(|_| load(&model).ok()).collect();
            handles.sort_unstable();
            handles.dedup();
            Response::json(200, &json!({ "distinct_handles": handles.len() }))
        }
        Some("pointers") => {
            let mut written = 0i32;
            let written_ptr = &mut written as *mut i32 as i32;
            let ctx = context(graph).unwrap_or(-1);
            let dims = [1u32, 32];
            let wild_data = RawTensor {
                dims: dims.as_ptr(),
                dims_len: 2,
                ty: 4,
                data: WILD as *const u8,
                data_len: 4096,
            };
            let wild_dims = RawTensor {
                dims: WILD as *const u32,
                dims_len: 2,
                ty: 4,
                data: dims.as_ptr() as *const u8,
                data_len: 8,
            };
            let huge_rank = RawTensor {
                dims: dims.as_ptr(),
                dims_len: u32::MAX,
                ty: 4,
                data: dims.as_ptr() as *const u8,
                data_len: 8,
            };
            let bad_type = RawTensor {
                dims: dims.as_ptr(),
                dims_len: 2,
                ty: 200,
                data: dims.as_ptr() as *const u8,
                data_len: 8,
            };
            let errnos = unsafe {
                json!({
                    "load_by_name_name": raw::load_by_name(WILD, 64, written_ptr),
                    "load_by_name_out": raw::load_by_name(model.as_ptr() as i32, model.len() as i32, WILD),
                    "load_by_name_utf8": raw::load_by_name(b"\xff\xfe".as_ptr() as i32, 2, written_ptr),
                    "init_context_out": raw::init_execution_context(graph, WILD),
                    "init_context_graph": raw::init_execution_context(9999, written_ptr),
                    "set_input_record": raw::set_input(ctx, 0, WILD),
                    "set_input_data": raw::set_input(ctx, 0, &wild_data as *const RawTensor as i32),
                    "set_input_dims": raw::set_input(ctx, 0, &wild_dims as *const RawTensor as i32),
                    "set_input_rank": raw::set_input(ctx, 0, &huge_rank as *const RawTensor as i32),
                    "set_input_type": raw::set_input(ctx, 0, &bad_type as *const RawTensor as i32),
                    "set_input_context": raw::set_input(9999, 0, &bad_type as *const RawTensor as i32),
                    "compute_context": raw::compute(9999),
                    "compute_unset": raw::compute(ctx),
                    "get_output_buffer": raw::get_output(ctx, 0, WILD, 1 << 20, written_ptr),
                    "get_output_context": raw::get_output(9999, 0, WILD, 16, written_ptr),
                })
            };
            Response::json(200, &json!({ "errnos": errnos }))
        }
        _ => Response::error(400, "do must be contexts, inputs, graphs or pointers"),
    }
}
