//! What one app may load, and the per-instance registry that answers its guest's
//! `load_by_name` within it.

use super::store::{ModelStore, SharedGraph};
use super::{ModelKey, ModelRef, NnError};
use std::collections::HashMap;
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

/// Per-instance model registry: cheap to create (an `Arc` and an empty map), fills itself from
/// the shared store as the guest asks for models.
pub struct AppGraphRegistry {
    store: Arc<ModelStore>,
    access: Arc<ModelAccess>,
    loaded: HashMap<String, SharedGraph>,
}

impl AppGraphRegistry {
    pub(super) fn new(store: Arc<ModelStore>, access: Arc<ModelAccess>) -> Self {
        Self { store, access, loaded: HashMap::new() }
    }

    /// The graph for a `load_by_name` reference (`model` or `model@backend`), within what the
    /// app may load. The same reference again is answered from this instance's map.
    pub fn load(&mut self, reference: &str) -> Result<SharedGraph, NnError> {
        if let Some(graph) = self.loaded.get(reference) {
            return Ok(graph.clone());
        }
        let model: ModelRef = reference.parse()?;
        let key = self.access.resolve(&model.name)?;
        let (graph, _) = self.store.graph(&key, model.backend)?;
        self.loaded.insert(reference.to_string(), graph.clone());
        Ok(graph)
    }
}
