//! Test program: spins forever without writing a response. The gateway must stop it at its
//! deadline (epoch interruption) and answer 504, and keep serving other requests.

fn main() {
    let mut n: u64 = 0;
    loop {
        // black_box: a loop with no visible effect could otherwise be optimised away.
        n = std::hint::black_box(n.wrapping_add(1));
    }
}
