//! What one app may load, and the per-instance registry that resolves its guest's
//! `load_by_name` within it.

use super::store::{ModelStore, SharedGraph};
use super::{ModelKey, ModelRef, NnError};
use std::sync::Arc;

/// Which models an app may load: shared models it declares (or all, for a local runner or a
/// benchmark) and the models bundled with it, by their bare names.
#[derive(Debug, Clone, Default)]
pub struct ModelAccess {
    pub all_shared: bool,
    pub shared: Vec<String>,
    /// Bare name -> store key of the bundled model.
    pub bundled: Vec<(String, ModelKey)>,
}

impl ModelAccess {
    pub fn everything() -> Self {
        Self { all_shared: true, ..Self::default() }
    }

    /// The store key for a model name the guest asked for.
    fn resolve(&self, name: &str) -> Result<ModelKey, NnError> {
        if let Some((_, key)) = self.bundled.iter().find(|(bundled, _)| bundled == name) {
            return Ok(key.clone());
        }
        if self.all_shared || self.shared.iter().any(|m| m == name) {
            return Ok(ModelKey::shared(name));
        }
        Err(NnError::NotAllowed(name.to_string()))
    }
}

/// Per-instance model registry: the shared store seen through what this app may load. Cheap to
/// create (two `Arc`s); the wasi-nn host keeps the handles of what the guest loaded.
pub struct AppGraphRegistry {
    store: Arc<ModelStore>,
    access: Arc<ModelAccess>,
}

impl AppGraphRegistry {
    pub(super) fn new(store: Arc<ModelStore>, access: Arc<ModelAccess>) -> Self {
        Self { store, access }
    }

    /// The graph for a `load_by_name` reference (`model` or `model@backend`), within what the
    /// app may load.
    pub fn load(&self, reference: &str) -> Result<SharedGraph, NnError> {
        let model: ModelRef = reference.parse()?;
        let key = self.access.resolve(&model.name)?;
        self.store.graph(&key, model.backend).map(|(graph, _)| graph)
    }
}
