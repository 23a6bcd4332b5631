//! WASI preview1 `poll_oneoff`, replacing wasmtime-wasi's in the linker so that a guest that
//! sleeps cannot outlive its deadline: a sleep is cut at the deadline, and the instance is
//! then stopped as past it (504), exactly as guest code is by epoch interruption.
//!
//! A WAGI guest has nothing else to wait for: its stdin and stdout are in-memory pipes, always
//! ready, and it has no sockets or other files. So clock subscriptions sleep, subscriptions on
//! fds 0-2 are ready at once, and any other fd is `badf`. Absolute timeouts on the realtime
//! clock are honoured; absolute timeouts on the monotonic clock (whose origin is the host's
//! own) are refused with `inval`, as are zero subscriptions. Rust's `std::thread::sleep` is a
//! relative clock subscription.

use crate::nn::limits::Kill;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use wasmtime::{Caller, Extern, Linker};

const ERRNO_SUCCESS: u16 = 0;
const ERRNO_BADF: u16 = 8;
const ERRNO_FAULT: u16 = 21;
const ERRNO_INVAL: u16 = 28;

const EVENTTYPE_CLOCK: u8 = 0;
const CLOCKID_REALTIME: u32 = 0;
const CLOCKID_MONOTONIC: u32 = 1;
const SUBSCRIPTION_CLOCK_ABSTIME: u16 = 1;

const SUBSCRIPTION_SIZE: usize = 48;
const EVENT_SIZE: usize = 32;
/// More subscriptions than a guest could mean; bounds the work of one call.
const MAX_SUBSCRIPTIONS: u32 = 1024;

/// One subscription, decoded.
struct Subscription {
    userdata: u64,
    kind: u8,
    /// For a clock: when it fires. For an fd: `None` if ready, the errno otherwise.
    wake: Option<Instant>,
    fd_error: u16,
}

/// Replaces `wasi_snapshot_preview1::poll_oneoff` in `linker`; `deadline` gives the instance's.
pub fn shadow_poll_oneoff<T: 'static>(linker: &mut Linker<T>, deadline: fn(&T) -> Instant) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "poll_oneoff",
        move |mut caller: Caller<'_, T>, subs: u32, events: u32, count: u32, count_out: u32| -> wasmtime::Result<i32> {
            let deadline = deadline(caller.data());
            let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
                return Ok(i32::from(ERRNO_FAULT));
            };
            let decoded = match decode(memory.data(&caller), subs, count) {
                Ok(decoded) => decoded,
                Err(errno) => return Ok(i32::from(errno)),
            };
            let now = Instant::now();
            let any_fd_ready = decoded.iter().any(|s| s.kind != EVENTTYPE_CLOCK);
            if !any_fd_ready {
                let wake = decoded.iter().filter_map(|s| s.wake).min().unwrap_or(now);
                if wake > deadline {
                    // The guest would sleep past its deadline: sleep to the deadline, then stop it.
                    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                    return Err(wasmtime::Error::new(Kill::Deadline));
                }
                std::thread::sleep(wake.saturating_duration_since(now));
            }
            let now = Instant::now();
            let fired: Vec<&Subscription> =
                decoded.iter().filter(|s| s.kind != EVENTTYPE_CLOCK || s.wake.is_some_and(|w| w <= now)).collect();
            let data = memory.data_mut(&mut caller);
            match encode(data, events, count_out, &fired) {
                Ok(()) => Ok(i32::from(ERRNO_SUCCESS)),
                Err(errno) => Ok(i32::from(errno)),
            }
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

fn decode(memory: &[u8], subs: u32, count: u32) -> Result<Vec<Subscription>, u16> {
    if count == 0 || count > MAX_SUBSCRIPTIONS || !subs.is_multiple_of(8) {
        return Err(ERRNO_INVAL);
    }
    let start = subs as usize;
    let bytes = memory.get(start..start + count as usize * SUBSCRIPTION_SIZE).ok_or(ERRNO_FAULT)?;
    let now = Instant::now();
    bytes
        .chunks_exact(SUBSCRIPTION_SIZE)
        .map(|sub| {
            let u64_at = |o: usize| u64::from_le_bytes(sub[o..o + 8].try_into().expect("eight bytes"));
            let u32_at = |o: usize| u32::from_le_bytes(sub[o..o + 4].try_into().expect("four bytes"));
            let userdata = u64_at(0);
            let kind = sub[8];
            match kind {
                EVENTTYPE_CLOCK => {
                    let (clock, timeout) = (u32_at(16), u64_at(24));
                    let flags = u16::from_le_bytes([sub[40], sub[41]]);
                    let after = if flags & SUBSCRIPTION_CLOCK_ABSTIME == 0 {
                        Duration::from_nanos(timeout)
                    } else if clock == CLOCKID_REALTIME {
                        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
                        Duration::from_nanos(timeout).saturating_sub(since_epoch)
                    } else {
                        return Err(ERRNO_INVAL);
                    };
                    if clock != CLOCKID_REALTIME && clock != CLOCKID_MONOTONIC {
                        return Err(ERRNO_INVAL);
                    }
                    // A timeout too far to represent is as good as never before the deadline.
                    let wake = now.checked_add(after).unwrap_or(now + Duration::from_secs(86_400 * 365));
                    Ok(Subscription { userdata, kind, wake: Some(wake), fd_error: ERRNO_SUCCESS })
                }
                1 | 2 => {
                    let fd = u32_at(16);
                    let fd_error = if fd <= 2 { ERRNO_SUCCESS } else { ERRNO_BADF };
                    Ok(Subscription { userdata, kind, wake: None, fd_error })
                }
                _ => Err(ERRNO_INVAL),
            }
        })
        .collect()
}

fn encode(memory: &mut [u8], events: u32, count_out: u32, fired: &[&Subscription]) -> Result<(), u16> {
    if !events.is_multiple_of(8) || !count_out.is_multiple_of(4) {
        return Err(ERRNO_INVAL);
    }
    let start = events as usize;
    let out = memory.get_mut(start..start + fired.len() * EVENT_SIZE).ok_or(ERRNO_FAULT)?;
    for (event, sub) in out.chunks_exact_mut(EVENT_SIZE).zip(fired) {
        event.fill(0);
        event[0..8].copy_from_slice(&sub.userdata.to_le_bytes());
        event[8..10].copy_from_slice(&sub.fd_error.to_le_bytes());
        event[10] = sub.kind;
    }
    let n = u32::try_from(fired.len()).map_err(|_| ERRNO_INVAL)?;
    let at = count_out as usize;
    memory.get_mut(at..at + 4).ok_or(ERRNO_FAULT)?.copy_from_slice(&n.to_le_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock_subscription(userdata: u64, nanos: u64) -> [u8; SUBSCRIPTION_SIZE] {
        let mut sub = [0u8; SUBSCRIPTION_SIZE];
        sub[0..8].copy_from_slice(&userdata.to_le_bytes());
        sub[8] = EVENTTYPE_CLOCK;
        sub[16..20].copy_from_slice(&CLOCKID_MONOTONIC.to_le_bytes());
        sub[24..32].copy_from_slice(&nanos.to_le_bytes());
        sub
    }

    #[test]
    fn decodes_clocks_and_fds() {
        let mut memory = vec![0u8; 256];
        memory[0..48].copy_from_slice(&clock_subscription(7, 5_000_000));
        memory[48 + 8] = 1; // fd_read
        memory[48 + 16..48 + 20].copy_from_slice(&9u32.to_le_bytes());
        let subs = decode(&memory, 0, 2).ok().unwrap();
        assert_eq!(subs[0].userdata, 7);
        assert!(subs[0].wake.unwrap() > Instant::now());
        assert_eq!(subs[1].fd_error, ERRNO_BADF);
        assert_eq!(decode(&memory, 0, 0).err(), Some(ERRNO_INVAL));
        assert_eq!(decode(&memory, 240, 1).err(), Some(ERRNO_FAULT));
        let refs: Vec<&Subscription> = subs.iter().collect();
        encode(&mut memory, 128, 120, &refs).unwrap();
        assert_eq!(u32::from_le_bytes(memory[120..124].try_into().unwrap()), 2);
        assert_eq!(u64::from_le_bytes(memory[128..136].try_into().unwrap()), 7);
    }
}
