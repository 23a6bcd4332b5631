//! The wasi-nn host: which models exist and their loaded graphs, shared by every app and
//! instance ([`store`]: a catalog and a `moka` cache bounded by bytes), what one instance may
//! load ([`registry`]), the guest's side of it ([`witx`], within the limits of [`limits`]) and
//! the backends that run the graphs ([`backend`]).
//!
//! A graph is loaded once per (model, backend) and then shared: [`SharedGraph`] is an `Arc`
//! around a backend graph whose executions run concurrently (see each backend for how).

pub mod backend;
pub mod limits;
pub mod load_limit;
pub mod manifest;
pub mod registry;
pub mod store;
pub mod wit;
pub mod witx;

use backend::{BackendKind, UnknownBackend};
pub use manifest::ManifestError;
pub use registry::{AppGraphRegistry, ModelAccess};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
pub use store::{CacheStats, LoadError, MeteredExecution, MeteredGraph, ModelInfo, ModelStore, SharedGraph};

#[derive(Debug, thiserror::Error)]
pub enum NnError {
    #[error("unknown model {0:?}")]
    UnknownModel(String),
    #[error(transparent)]
    UnknownBackend(#[from] UnknownBackend),
    #[error("backend {0} is not available in this gateway: {1}")]
    BackendUnavailable(BackendKind, String),
    #[error("the app may not load model {0:?}: it is not declared in its manifest")]
    NotAllowed(String),
    #[error("cannot load model {model:?} on {backend}")]
    Load {
        model: String,
        backend: BackendKind,
        #[source]
        source: Arc<LoadError>,
    },
    #[error("model {name:?}: cannot read {path}")]
    Unreadable {
        name: String,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

/// An error with its chain of causes, `outer: inner: innermost`, for the log.
/// A cause an error already prints in its own message (as some libraries' errors do) is not
/// repeated.
pub(crate) fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A model as a guest or a client names it: `name`, or `name@backend` to pick the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    pub name: String,
    pub backend: Option<BackendKind>,
}

impl FromStr for ModelRef {
    type Err = UnknownBackend;
    fn from_str(reference: &str) -> Result<Self, Self::Err> {
        Ok(match reference.split_once('@') {
            Some((name, backend)) => ModelRef { name: name.to_string(), backend: Some(backend.parse()?) },
            None => ModelRef { name: reference.to_string(), backend: None },
        })
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.backend {
            Some(backend) => write!(f, "{}@{backend}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Where a model sits in the store: a shared model under its name, or a model bundled with one
/// deployment of an app, which no name a guest or client gives can reach (only that
/// deployment's [`ModelAccess`] holds its key).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ModelKey {
    Shared(String),
    Bundled { app: String, deployment: u64, name: String },
}

impl ModelKey {
    pub fn shared(name: &str) -> Self {
        ModelKey::Shared(name.to_string())
    }

    pub fn is_shared(&self) -> bool {
        matches!(self, ModelKey::Shared(_))
    }
}

impl fmt::Display for ModelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelKey::Shared(name) => f.write_str(name),
            ModelKey::Bundled { app, deployment, name } => write!(f, "{app}/{deployment}/{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_references_parse_and_print() {
        let plain: ModelRef = "wordlm".parse().unwrap();
        assert_eq!(plain, ModelRef { name: "wordlm".into(), backend: None });
        let pinned: ModelRef = "wordlm@tract".parse().unwrap();
        assert_eq!((pinned.backend, pinned.to_string().as_str()), (Some(BackendKind::Tract), "wordlm@tract"));
        assert!("wordlm@cuda".parse::<ModelRef>().is_err());
        let bundled = ModelKey::Bundled { app: "digits".into(), deployment: 3, name: "digits".into() };
        assert!(!bundled.is_shared());
        assert_eq!(bundled.to_string(), "digits/3/digits");
    }
}
