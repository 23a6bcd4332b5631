//! Loading a model under a memory limit, measured on a process rather than estimated from the
//! file: a few-KB ONNX file can hold a `ConstantOfShape` or an `Expand` that a backend's
//! constant folding turns into a gigabyte at load time, and nothing in the file's size says so.
//!
//! So before a model is loaded into the gateway, the same binary loads it in a child process
//! (`edgenn probe-load`, [`probe`]) whose data segment the kernel holds to the limit
//! (`RLIMIT_DATA`, which counts the heap and every private anonymous mapping): a model that
//! needs more fails there, never in the gateway. A model that loads in the child is measured
//! (its peak resident memory less what the child held before it loaded), and the model store
//! weighs its graph by that measure. A model that crashes the loader crashes the child only.

use super::backend::ort::{OrtBackend, OrtOptions};
use super::backend::tract::TractBackend;
use super::backend::{Backend, BackendKind};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a child may take to load a model before it is killed and the model refused.
const PROBE_TIMEOUT: Duration = Duration::from_secs(120);

/// The subcommand the child runs (hidden from `edgenn --help`).
pub const PROBE_COMMAND: &str = "probe-load";

/// Loads models in a child process of `exe` held to `max_bytes`.
#[derive(Debug, Clone)]
pub struct LoadLimit {
    /// This gateway's own binary.
    pub exe: PathBuf,
    /// The most one model may take in memory while it loads.
    pub max_bytes: u64,
    /// The ONNX Runtime library and options, as the gateway loads models with them.
    pub ort_library: Option<PathBuf>,
    pub ort: OrtOptions,
}

/// Why a model was not let into the gateway.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("loading the model takes more than the limit of {} MiB", .0 >> 20)]
    TooLarge(u64),
    #[error("loading the model did not finish within {} s", .0.as_secs())]
    TooSlow(Duration),
    #[error("the model cannot be loaded: {0}")]
    Failed(String),
    #[error("the model crashed its loader ({0})")]
    Crashed(String),
    #[error("cannot start the loader process {exe}")]
    Spawn {
        exe: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl LoadLimit {
    /// Loads the ONNX file at `path` on `backend` in a child process held to the limit: the
    /// bytes loading took at its peak.
    pub fn measure(&self, path: &Path, backend: BackendKind) -> Result<u64, LimitError> {
        let mut command = Command::new(&self.exe);
        command
            .arg(PROBE_COMMAND)
            .arg(backend.as_str())
            .arg(path)
            .arg(self.max_bytes.to_string())
            .args(["--sessions", &self.ort.sessions_per_model.to_string()])
            .args(["--intra-threads", &self.ort.intra_threads.to_string()])
            .env("RUST_LOG", "error")
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(library) = &self.ort_library {
            command.arg("--ort-library").arg(library);
        }
        let mut child = command.spawn().map_err(|source| LimitError::Spawn { exe: self.exe.clone(), source })?;
        // Both pipes are drained to their end on their own threads, so a child that writes
        // much cannot block; only their last 64 KiB are kept.
        let out = drain(child.stdout.take().expect("piped stdout"));
        let err = drain(child.stderr.take().expect("piped stderr"));
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() < PROBE_TIMEOUT => std::thread::sleep(Duration::from_millis(5)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(LimitError::TooSlow(PROBE_TIMEOUT));
                }
            }
        };
        let (out, err) = (out.join().unwrap_or_default(), err.join().unwrap_or_default());
        if status.success() {
            return out
                .trim()
                .parse::<u64>()
                .map_err(|_| LimitError::Failed(format!("the loader answered {:?}", out.trim())));
        }
        // Rust aborts on a refused allocation, tract panics on one ("failed to allocate
        // Layout"), ONNX Runtime throws `bad_alloc`, which it reports as an error.
        let out_of_memory =
            ["memory allocation of", "failed to allocate", "bad_alloc", "Failed to allocate", "Cannot allocate memory"];
        if out_of_memory.iter().any(|sign| err.contains(sign)) {
            return Err(LimitError::TooLarge(self.max_bytes));
        }
        use std::os::unix::process::ExitStatusExt;
        match status.signal() {
            Some(signal) => Err(LimitError::Crashed(format!("signal {signal}"))),
            None => Err(LimitError::Failed(last_line(&err))),
        }
    }
}

/// Reads `pipe` to its end on a thread of its own: the last [`KEPT_OUTPUT`] bytes, as text.
fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let (mut kept, mut buffer) = (Vec::new(), [0u8; 8192]);
        while let Ok(read @ 1..) = pipe.read(&mut buffer) {
            kept.extend_from_slice(&buffer[..read]);
            let over = kept.len().saturating_sub(KEPT_OUTPUT);
            kept.drain(..over);
        }
        String::from_utf8_lossy(&kept).into_owned()
    })
}

/// How much of the loader's output is kept: its answer, or the end of its error.
const KEPT_OUTPUT: usize = 64 << 10;

/// What the loader said last: a panic's message (the line after "panicked at"), or its last
/// line.
fn last_line(text: &str) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let panic = lines.iter().position(|l| l.contains("panicked at")).and_then(|at| lines.get(at + 1));
    panic.or(lines.iter().rfind(|l| !l.starts_with("note:"))).copied().unwrap_or("no reason given").to_string()
}

/// The child's side: holds this process's data segment to `max_bytes` more than it has now,
/// loads the ONNX file at `path` on `backend`, and returns the bytes the load took at its peak
/// (resident memory, from the kernel's high-water mark).
pub fn probe(
    backend: BackendKind,
    path: &Path,
    max_bytes: u64,
    ort_library: Option<&Path>,
    ort: OrtOptions,
) -> anyhow::Result<u64> {
    let onnx = std::fs::read(path)?;
    // The backend is set up before the limit: ONNX Runtime's library and threads are the
    // gateway's already, not the model's.
    let loader: Box<dyn Backend> = match backend {
        BackendKind::Tract => Box::new(TractBackend),
        BackendKind::Ort => {
            let library = ort_library.ok_or_else(|| anyhow::anyhow!("no ONNX Runtime library"))?;
            Box::new(OrtBackend::new(library, ort)?)
        }
    };
    let before = status_kib("VmRSS")?;
    let data = status_kib("VmData")?;
    let limit = data.saturating_mul(1024).saturating_add(max_bytes);
    use rustix::process::{Resource, Rlimit, setrlimit};
    setrlimit(Resource::Data, Rlimit { current: Some(limit), maximum: Some(limit) })
        .map_err(|e| anyhow::anyhow!("cannot limit the loader's memory: {e}"))?;
    let graph = loader.load_graph(&onnx).map_err(|e| anyhow::anyhow!(super::describe(&e)))?;
    let peak = status_kib("VmHWM")?;
    drop(graph);
    Ok(peak.saturating_sub(before).saturating_mul(1024))
}

/// A `/proc/self/status` field in KiB.
fn status_kib(field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no {field} in /proc/self/status"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipe_is_read_to_its_end_and_its_last_bytes_kept() {
        let mut output = vec![b'x'; 3 * KEPT_OUTPUT];
        output.extend_from_slice(b"\nthe reason");
        let kept = drain(std::io::Cursor::new(output)).join().unwrap();
        assert_eq!(kept.len(), KEPT_OUTPUT);
        assert!(kept.ends_with("\nthe reason"));
    }

    #[test]
    fn the_loaders_reason_is_its_panic_or_its_last_word() {
        let panic =
            "thread 'main' (1) panicked at src/x.rs:1:1:\nindex out of bounds\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(last_line(panic), "index out of bounds");
        assert_eq!(last_line("Error: tract failed: bad graph\n\n"), "Error: tract failed: bad graph");
        assert_eq!(last_line(""), "no reason given");
    }
}
