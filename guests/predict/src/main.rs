//! The type-ahead app as a WAGI command (see the library for what it answers).

fn main() {
    edgenn_guest::run(predict::handle);
}
