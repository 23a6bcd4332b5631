//! Test program: writes the smallest valid response and exits, touching neither stdin nor the
//! environment, so that a request's cost is the sandbox's own (store, WASI context,
//! instantiation) plus one `fd_write`. Used by `benches/overhead.rs`.

use std::io::Write;

fn main() {
    let _ = std::io::stdout().write_all(b"status: 204\n\n");
}
