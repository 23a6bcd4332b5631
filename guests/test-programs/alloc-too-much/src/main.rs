//! Test program: allocates (and touches) memory 1 MiB at a time until the allocator fails, which
//! aborts the instance. The gateway must stop it at the app's memory limit and answer 413.

fn main() {
    const CHUNK: usize = 1 << 20;
    let mut kept: Vec<Vec<u8>> = Vec::new();
    loop {
        // Infallible allocation on purpose: failure aborts (traps) as any real guest would.
        let mut chunk = vec![0u8; CHUNK];
        // Touch every page so the memory is really used, not just reserved.
        for i in (0..CHUNK).step_by(4096) {
            chunk[i] = 1;
        }
        kept.push(std::hint::black_box(chunk));
    }
}
