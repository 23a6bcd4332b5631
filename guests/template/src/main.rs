//! my-app as a WAGI module: a command the gateway starts for every request, with the request
//! on stdin and in the environment and the response on stdout. The handler is in handler.rs.

mod handler;

fn main() {
    edgenn_guest::run(handler::handle);
}
