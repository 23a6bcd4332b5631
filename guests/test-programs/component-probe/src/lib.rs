//! Test program: a `wasi:http/proxy` component that misbehaves or reaches out on request, so
//! that the gateway's limits can be checked on the component path (tests/components.rs).
//!
//! - `/spin`: loops forever (the deadline must stop it: 504);
//! - `/alloc`: allocates 1 MiB at a time without bound (the memory limit must stop it: 413);
//! - `/sleep?ms=N`: sleeps (a host timer: the deadline must cut it);
//! - `/model?name=M`: loads model M and runs nothing; answers what the host said;
//! - `/fetch?url=U`: GETs U through wasi:http/outgoing-handler; answers its status and body,
//!   or the error;
//! - `/fetch-all?url=U&n=N`: GETs U N times at once (all sent before any answer is awaited);
//!   answers how many succeeded and each error;
//! - `/panic?message=M`: panics with M (std writes the message to stderr through the SDK's
//!   `fd_write`, which the gateway logs when the instance traps);
//! - anything else: echoes the method, path, query and body length.

use edgenn_guest::nn::Model;
use edgenn_guest::{Request, Response};
use serde_json::json;

edgenn_guest::component_main!(handle);

fn handle(req: Request) -> Response {
    match req.path() {
        "/spin" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "/alloc" => {
            let mut kept: Vec<Vec<u8>> = Vec::new();
            loop {
                let mut chunk = vec![0u8; 1 << 20];
                for i in (0..chunk.len()).step_by(4096) {
                    chunk[i] = 1;
                }
                kept.push(std::hint::black_box(chunk));
            }
        }
        "/sleep" => {
            let ms = req.query("ms").and_then(|v| v.parse().ok()).unwrap_or(1000);
            std::thread::sleep(std::time::Duration::from_millis(ms));
            Response::json(200, &json!({ "slept_ms": ms }))
        }
        "/model" => {
            let name = req.query("name").unwrap_or_default();
            match Model::load(&name) {
                Ok(model) => Response::json(200, &json!({ "loaded": model.name() })),
                Err(e) => {
                    Response::json(404, &json!({ "error": e.to_string(), "errno": e.errno() }))
                }
            }
        }
        "/fetch-all" => {
            let url = req.query("url").unwrap_or_default();
            let n = req
                .query("n")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1usize)
                .min(1000);
            let requests = vec![("GET", url.as_str(), &b""[..]); n];
            let answers = edgenn_guest::outbound::fetch_all(&requests);
            let errors: Vec<&String> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
            Response::json(
                200,
                &json!({ "ok": answers.len() - errors.len(), "errors": errors }),
            )
        }
        "/panic" => panic!("{}", req.query("message").unwrap_or_default()),
        "/fetch" => {
            let url = req.query("url").unwrap_or_default();
            match edgenn_guest::outbound::fetch("GET", &url, b"") {
                Ok(fetched) => Response::json(
                    200,
                    &json!({
                        "status": fetched.status,
                        "body": String::from_utf8_lossy(&fetched.body),
                    }),
                ),
                Err(error) => Response::json(502, &json!({ "error": error })),
            }
        }
        path => Response::json(
            200,
            &json!({
                "method": req.method(),
                "path": path,
                "query": req.query_string(),
                "body_bytes": req.body().len(),
                "config": req.config("greeting"),
            }),
        ),
    }
}
