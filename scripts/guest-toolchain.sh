#!/usr/bin/env bash
# Sets up the toolchain the guest apps (guests/) are compiled with, idempotently:
#
#   - Debian packages: rustc-web/cargo-web (Rust 1.96), rust-web-src (std's sources), lld-22
#     (wasm-ld) and wasi-libc (crt1-command.o, libc.a for wasm32-wasi);
#   - a private Rust sysroot with std for wasm32-wasip1 at .edgenn/wasm-sysroot/, built once from
#     rust-web-src with `-Z build-std` (no toolchain or target is ever downloaded: rustup's
#     wasm32 target is not reachable from this machine);
#   - a small archive of stubs for the few libc functions std 1.96 references that Debian's
#     wasi-libc (2022) lacks (chmod, realpath, pthread_create, ...): they fail with ENOTSUP.
#
# Nothing is written under /usr except by apt. The Debian binaries are only ever used by full
# path (scripts/guest-cargo does so), so rustup's toolchain, which builds the gateway, keeps
# coming first in PATH.
#
# A stamp keyed on the Debian package versions and on this script makes a second run return at
# once. Usage: scripts/guest-toolchain.sh [-q|--quiet] [--force]
#   -q  print nothing when already up to date (scripts/guest-cargo calls it so on every build)
#   --force  rebuild the sysroot even if the stamp matches
# CARGO_BUILD_JOBS limits the parallelism of the one-off std build, as for any cargo build.
set -euo pipefail

quiet=0
force=0
for arg in "$@"; do
    case "$arg" in
        -q | --quiet) quiet=1 ;;
        --force) force=1 ;;
        *) echo "usage: $0 [-q|--quiet] [--force]" >&2; exit 2 ;;
    esac
done

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
script="$repo/scripts/guest-toolchain.sh"
target=wasm32-wasip1
sysroot="$repo/.edgenn/wasm-sysroot"
stamp="$sysroot/edgenn-stamp"
packages=(rustc-web cargo-web rust-web-src lld-22 wasi-libc)
# Fixed paths of what those packages install (checked after installing).
rustc=/usr/bin/rustc
cargo=/usr/bin/cargo
wasm_ld=/usr/lib/llvm-22/bin/wasm-ld
wasi_libc=/usr/lib/wasm32-wasi
rust_src=/usr/lib/rustlib/src/rust

say() { echo "==> guest-toolchain: $*" >&2; }
die() { echo "guest-toolchain: error: $*" >&2; exit 1; }

# What the sysroot depends on: the exact Debian package versions and this script's text.
stamp_key() {
    dpkg-query -W -f='${Package}=${Version} ${Status}\n' "${packages[@]}" 2>/dev/null || true
    cksum <"$script"
}

key="$(stamp_key)"
if [[ $force == 0 && -f "$stamp" ]] && [[ "$(<"$stamp")" == "$key" ]]; then
    [[ $quiet == 1 ]] || say "up to date ($sysroot)"
    exit 0
fi
started=$SECONDS

# ---------------------------------------------------------------------------- Debian packages
missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
if ((${#missing[@]})); then
    sudo=()
    if [[ $(id -u) != 0 ]]; then
        command -v sudo >/dev/null || die "need root (or sudo) to install: ${missing[*]}"
        sudo=(sudo)
    fi
    apt_install() {
        # The lock timeout lets this wait for another apt run instead of failing at once.
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            -o DPkg::Lock::Timeout=600 --no-install-recommends "${missing[@]}"
    }
    say "installing Debian packages: ${missing[*]}"
    if ! apt_install; then
        say "refreshing the package lists (apt-get update) and retrying"
        "${sudo[@]}" apt-get update -q -o DPkg::Lock::Timeout=600
        apt_install
    fi
fi
for f in "$rustc" "$cargo" "$wasm_ld" "$wasi_libc/libc.a" "$wasi_libc/crt1-command.o" \
    "$rust_src/library/Cargo.lock"; do
    [[ -e "$f" ]] || die "$f is missing after installing ${packages[*]}"
done
# /usr/bin/rustc must be rustc-web's (Debian's older `rustc` package installs the same path).
rustc_release="$("$rustc" -vV | sed -n 's/^release: //p')"
[[ "$rustc_release" =~ ^1\.(9[6-9]|[1-9][0-9][0-9])\. ]] ||
    die "$rustc is not Rust >= 1.96 (is Debian's rustc-web installed?): $rustc_release"
case "$repo" in *[[:space:]]*) die "the repository path must not contain spaces (rustflags are space-separated): $repo" ;; esac
key="$(stamp_key)"

# ---------------------------------------------------------------------------- std for wasm32-wasip1
say "building std for $target with $("$rustc" -V) (once; 1-2 minutes on 2 cores)"
build="$repo/.edgenn/wasm-sysroot-build"
new="$repo/.edgenn/wasm-sysroot.new"
# $build is kept if a run fails half-way, so that the next one reuses the compiled std.
rm -rf "$new"
mkdir -p "$build/src"
# An empty library crate: building it with -Z build-std compiles std, which is all we want.
# `[workspace]` keeps it out of the gateway's workspace (it sits inside the repository).
cat >"$build/Cargo.toml" <<'EOF'
[package]
name = "edgenn-sysroot-std"
version = "0.0.0"
edition = "2021"
publish = false

[lib]
path = "src/lib.rs"

[workspace]

[profile.release]
opt-level = 3
# Guests are built with panic = "abort" too: std and the guests must agree.
panic = "abort"
debug = false
EOF
echo '#![no_std]' >"$build/src/lib.rs"

# -Cembed-bitcode=yes: cargo would compile std without bitcode (this crate uses no LTO), but
# guests are linked with `lto = true`, which needs it (rustup's std ships with it as well).
# std's dependencies come from the sources vendored in rust-web-src: no network needed.
(
    cd "$build"
    # RUSTFLAGS and CARGO_ENCODED_RUSTFLAGS, even empty, would take precedence: unset them.
    env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS \
        RUSTC_BOOTSTRAP=1 \
        RUSTC="$rustc" \
        CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS="-Cembed-bitcode=yes -Clink-self-contained=no" \
        CARGO_TARGET_WASM32_WASIP1_LINKER="$wasm_ld" \
        "$cargo" build --release --target "$target" \
        -Z build-std=std,panic_abort \
        --message-format=json-render-diagnostics \
        --config 'source.crates-io.replace-with="debian-rust-src"' \
        --config "source.debian-rust-src.directory=\"$rust_src/library/vendor\"" \
        >"$build/artifacts.json"
) || die "building std failed (see above)"

libdir="$new/lib/rustlib/$target/lib"
mkdir -p "$libdir" "$new/lib/edgenn"
# The rlibs of this build, as cargo reports them (deps/ may hold stale ones from earlier runs).
grep -o '"[^"]*/deps/lib[^"]*\.rlib"' "$build/artifacts.json" | tr -d '"' | sort -u |
    grep -v '/libedgenn_sysroot_std-' | xargs -r cp -t "$libdir/"
[[ -n "$(find "$libdir" -name 'libstd-*.rlib')" ]] || die "no libstd rlib was built"

# ---------------------------------------------------------------------------- libc stubs
# Which of the functions std references are absent from this wasi-libc: wasm-ld fails to
# --export a symbol nobody defines.
wanted=(chmod fchmod realpath pthread_create pthread_join pthread_detach pthread_attr_init
    pthread_attr_destroy pthread_attr_setstacksize)
absent=()
for sym in "${wanted[@]}"; do
    if ! "$wasm_ld" --no-entry --export="$sym" "$wasi_libc/libc.a" -o "$build/probe.wasm" \
        2>/dev/null; then
        absent+=("$sym")
    fi
done
stubs_lib=""
if ((${#absent[@]})); then
    say "stubbing libc functions missing from wasi-libc: ${absent[*]}"
    stubs_rs="$build/edgenn_wasi_stubs.rs"
    # Signatures are those of the libc crate's wasi bindings (all i32 in wasm32): a mismatch
    # would make wasm-ld replace the call with a trap.
    cat >"$stubs_rs" <<'EOF'
//! Stand-ins for libc functions that Rust's std references but Debian's wasi-libc (2022) lacks.
//! WASI preview 1 has neither threads nor permissions nor symlink resolution here, so they
//! fail cleanly: std turns that into an io::Error ("operation not supported").
#![no_std]
#![feature(thread_local)]
#![allow(clippy::missing_safety_doc)]
use core::ffi::{c_char, c_int, c_void};

unsafe extern "C" {
    // wasi-libc's errno (the same declaration std uses).
    #[thread_local]
    #[link_name = "errno"]
    static mut ERRNO: c_int;
}
const ENOTSUP: c_int = 58;
const ESRCH: c_int = 71;
EOF
    for sym in "${absent[@]}"; do
        case "$sym" in
            chmod) echo '#[unsafe(no_mangle)] pub unsafe extern "C" fn chmod(_path: *const c_char, _mode: u32) -> c_int { unsafe { ERRNO = ENOTSUP }; -1 }' ;;
            fchmod) echo '#[unsafe(no_mangle)] pub unsafe extern "C" fn fchmod(_fd: c_int, _mode: u32) -> c_int { unsafe { ERRNO = ENOTSUP }; -1 }' ;;
            realpath) echo '#[unsafe(no_mangle)] pub unsafe extern "C" fn realpath(_path: *const c_char, _resolved: *mut c_char) -> *mut c_char { unsafe { ERRNO = ENOTSUP }; core::ptr::null_mut() }' ;;
            # pthread functions return the error number; std asserts that the attr ones succeed.
            pthread_create) echo '#[unsafe(no_mangle)] pub unsafe extern "C" fn pthread_create(_thread: *mut *mut c_void, _attr: *const c_void, _start: extern "C" fn(*mut c_void) -> *mut c_void, _arg: *mut c_void) -> c_int { ENOTSUP }' ;;
            pthread_join) echo '#[unsafe(no_mangle)] pub unsafe extern "C" fn pthread_join(_thread: *mut c_void, _ret: *mut *mut c_void) -> c_int { ESRCH }' ;;
            pthread_detach) echo '#[unsafe(no_mangle)] pub unsafe extern "C" fn pthread_detach(_thread: *mut c_void) -> c_int { ESRCH }' ;;
            pthread_attr_init) echo '#[unsafe(no_mangle)] pub unsafe extern "C" fn pthread_attr_init(_attr: *mut c_void) -> c_int { 0 }' ;;
            pthread_attr_destroy) echo '#[unsafe(no_mangle)] pub unsafe extern "C" fn pthread_attr_destroy(_attr: *mut c_void) -> c_int { 0 }' ;;
            pthread_attr_setstacksize) echo '#[unsafe(no_mangle)] pub unsafe extern "C" fn pthread_attr_setstacksize(_attr: *mut c_void, _size: usize) -> c_int { 0 }' ;;
        esac
    done >>"$stubs_rs"
    # An rlib is an ar archive with a symbol index, which wasm-ld reads like any libfoo.a: only
    # the stubs a guest actually needs get linked. (lib.rmeta inside it is ignored.)
    stubs_lib="$sysroot/lib/edgenn/libedgenn_wasi_stubs.a"
    RUSTC_BOOTSTRAP=1 "$rustc" --edition 2024 --crate-type rlib --crate-name edgenn_wasi_stubs \
        --target "$target" --sysroot "$new" -Copt-level=3 -Cpanic=abort -Cembed-bitcode=no \
        "$stubs_rs" -o "$new/lib/edgenn/libedgenn_wasi_stubs.a" ||
        die "compiling the libc stubs failed"
fi

# What scripts/guest-cargo needs, so that it does not recompute anything.
link_args="-Clink-self-contained=no -Clink-arg=-L$wasi_libc -Clink-arg=$wasi_libc/crt1-command.o"
[[ -z "$stubs_lib" ]] || link_args+=" -Clink-arg=$stubs_lib"
cat >"$new/toolchain.env" <<EOF
# Written by scripts/guest-toolchain.sh; read by scripts/guest-cargo.
EDGENN_GUEST_RUSTC=$rustc
EDGENN_GUEST_CARGO=$cargo
EDGENN_GUEST_LINKER=$wasm_ld
EDGENN_GUEST_RUSTFLAGS="--sysroot $sysroot $link_args"
EOF

# ---------------------------------------------------------------------------- smoke test
# Link a program that touches every stubbed function against the new sysroot, exactly as
# guest-cargo will (no build-std), so that a broken sysroot fails here and not in a guest.
smoke="$build/smoke"
mkdir -p "$smoke/src"
cat >"$smoke/Cargo.toml" <<'EOF'
[package]
name = "edgenn-sysroot-smoke"
version = "0.0.0"
edition = "2021"
publish = false

[workspace]

[profile.release]
panic = "abort"
lto = true
codegen-units = 1
EOF
cat >"$smoke/src/main.rs" <<'EOF'
use std::io::Read;
fn main() {
    let mut body = String::new();
    let _ = std::io::stdin().read_to_string(&mut body);
    println!("{} {:?}", body.len(), std::env::var("REQUEST_METHOD"));
    println!("{:?}", std::fs::canonicalize("/"));
    if let Ok(m) = std::fs::metadata("/") {
        println!("{:?}", std::fs::set_permissions("/", m.permissions()));
    }
    if let Ok(f) = std::fs::File::open("/") {
        println!("{:?}", f.metadata().map(|m| f.set_permissions(m.permissions())));
    }
    println!("{:?}", std::thread::Builder::new().spawn(|| 1).map(|t| t.join().is_ok()));
    println!("{}", (std::env::args().count() as f32).sin());
}
EOF
(
    set -a
    # shellcheck disable=SC1091
    . "$new/toolchain.env"
    set +a
    cd "$smoke"
    env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS RUSTC="$rustc" \
        CARGO_TARGET_WASM32_WASIP1_LINKER="$wasm_ld" \
        CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS="${EDGENN_GUEST_RUSTFLAGS//$sysroot/$new}" \
        "$cargo" build --quiet --release --target "$target"
) || die "the smoke test did not link against the new sysroot (see above)"
[[ -s "$smoke/target/$target/release/edgenn-sysroot-smoke.wasm" ]] || die "smoke test produced no .wasm"

# ---------------------------------------------------------------------------- install
rm -rf "$sysroot"
mv "$new" "$sysroot"
printf '%s\n' "$key" >"$stamp"
rm -rf "$build"
say "done in $((SECONDS - started)) s: $sysroot ($(du -sh "$sysroot" | cut -f1))"
