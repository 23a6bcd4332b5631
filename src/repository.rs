//! The model repository: every shared model the gateway knows, where its files come from and
//! whether it is in service. The admin API (`/admin/models`) and Triton's repository extension
//! (`/v2/repository`) are its two HTTP forms; [`crate::nn::ModelStore`] serves what it puts
//! in service.
//!
//! A model comes from a models directory given at start (read-only: the repository never
//! writes there), from one ONNX file on the command line, or from an upload, kept in the data
//! directory (`<data>/models`, a [`VersionStore`]) so it comes back after a restart. An upload
//! of a name a models directory also has takes its place; deleting the upload brings the
//! directory's model back.
//!
//! Every change is made one at a time and validated before it goes live: an upload is stored as
//! a new version, loaded on its default backend, and only then swapped in and made current on
//! disk, so a refused upload, or a gateway killed mid-upload, leaves the old model serving.
//! Taking a model out of service (Triton's `unload`) keeps its files: it is listed as
//! unavailable and served again after a `load` or a restart, as Triton does. An app that
//! declares a model no longer in service gets wasi-nn's `not-found` from `load_by_name`.

use crate::nn::manifest::ModelManifest;
use crate::nn::{ModelInfo, ModelKey, ModelStore, NnError, describe};
use crate::persist::VersionStore;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

/// Why a repository change was refused.
#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    #[error("unknown model {0:?}")]
    UnknownModel(String),
    #[error("model {0:?} comes from the gateway's models directory, which the repository does not change")]
    ReadOnly(String),
    #[error("this gateway keeps no models: it has no data directory")]
    NoDataDirectory,
    #[error("model {name:?} was refused")]
    Refused {
        name: String,
        #[source]
        source: NnError,
    },
    #[error("cannot use the repository's data directory")]
    Io(#[from] std::io::Error),
}

/// A place the repository reads models from but never writes.
#[derive(Debug, Clone)]
enum Source {
    /// A directory of a models root, given at start.
    Directory(PathBuf),
    /// One ONNX file named on the command line.
    File { manifest: ModelManifest, path: PathBuf },
}

impl Source {
    /// Registers the model in the store again, as it was at start.
    fn register(&self, models: &ModelStore, name: &str) -> Result<(), NnError> {
        match self {
            Source::Directory(dir) => models.register_dir(dir).map(|_| ()),
            Source::File { manifest, path } => {
                models.register_file(ModelKey::shared(name), manifest.clone(), path.clone())
            }
        }
    }
}

/// Where a model's files are.
#[derive(Debug, Clone)]
enum Origin {
    ReadOnly(Source),
    /// The current version of an upload; `shadows` is the model of the same name from a
    /// models root or the command line that it took the place of.
    Uploaded {
        version: PathBuf,
        shadows: Option<Source>,
    },
    /// A folder the fleet pulled from a registry (its cache keeps it).
    Pulled(PathBuf),
}

impl Origin {
    fn label(&self) -> &'static str {
        match self {
            Origin::ReadOnly(Source::Directory(_)) => "directory",
            Origin::ReadOnly(Source::File { .. }) => "file",
            Origin::Uploaded { .. } => "uploaded",
            Origin::Pulled(_) => "fleet",
        }
    }
}

#[derive(Debug, Clone)]
struct Known {
    origin: Origin,
    /// `None` when in service; else why not (`unloaded`, or why it did not load).
    unavailable: Option<String>,
}

/// One model as the repository lists it.
#[derive(Debug, Clone, Serialize)]
pub struct RepositoryEntry {
    pub name: String,
    /// `directory`, `file` or `uploaded`.
    pub origin: &'static str,
    /// `READY` (in service) or `UNAVAILABLE`, as Triton names them.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the model store knows of it, while it is in service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelInfo>,
}

/// What a stored upload did.
#[derive(Debug)]
pub struct Installed {
    pub manifest: ModelManifest,
    /// Whether a model of that name was in the repository before.
    pub replaced: bool,
}

pub struct ModelRepository {
    models: Arc<ModelStore>,
    stored: Option<VersionStore>,
    known: RwLock<BTreeMap<String, Known>>,
    /// One change at a time, held while a model loads; readers take only `known`.
    changing: Mutex<()>,
}

impl ModelRepository {
    /// A repository over `models`, keeping uploads in `stored` (`None`: uploads are refused).
    pub fn new(models: Arc<ModelStore>, stored: Option<VersionStore>) -> Self {
        Self { models, stored, known: RwLock::default(), changing: Mutex::new(()) }
    }

    pub fn models(&self) -> &Arc<ModelStore> {
        &self.models
    }

    fn known(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Known>> {
        self.known.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, name: &str, known: Option<Known>) {
        let mut map = self.known.write().unwrap_or_else(PoisonError::into_inner);
        match known {
            Some(known) => map.insert(name.to_string(), known),
            None => map.remove(name),
        };
    }

    /// Registers the models of a models directory (each sub-directory with a `model.toml`).
    pub fn add_root(&self, root: &Path) -> Result<Vec<String>, NnError> {
        let added = self.models.register_all(root)?;
        let names = added.iter().map(|(name, _)| name.clone()).collect();
        for (name, dir) in added {
            self.set(&name, Some(Known { origin: Origin::ReadOnly(Source::Directory(dir)), unavailable: None }));
        }
        Ok(names)
    }

    /// Registers one ONNX file as a shared model.
    pub fn add_file(&self, manifest: ModelManifest, path: PathBuf) -> Result<(), NnError> {
        let name = manifest.name.clone();
        self.models.register_file(ModelKey::shared(&name), manifest.clone(), path.clone())?;
        let origin = Origin::ReadOnly(Source::File { manifest, path });
        self.set(&name, Some(Known { origin, unavailable: None }));
        Ok(())
    }

    /// Puts the uploads kept in the data directory back in service, each loaded on its
    /// backend. One that no longer loads is listed as unavailable with the reason, and logged;
    /// the others still serve.
    pub fn restore(&self) -> Result<Vec<String>, RepositoryError> {
        let Some(stored) = &self.stored else { return Ok(Vec::new()) };
        let mut restored = Vec::new();
        for (name, version) in stored.current_versions()? {
            let shadows = self.shadowed(&name);
            let origin = Origin::Uploaded { version: version.clone(), shadows };
            let unavailable = match self.install_checked(&name, &version) {
                Ok(_) => {
                    restored.push(name.clone());
                    None
                }
                Err(error) => {
                    let why = describe(&error);
                    tracing::error!(model = %name, dir = %version.display(), error = %why, "cannot restore model");
                    // Listed as unavailable, so nothing serves under its name (not the models
                    // directory's model it took the place of) until it is replaced or deleted.
                    self.models.unregister(&[ModelKey::shared(&name)]);
                    Some(why)
                }
            };
            self.set(&name, Some(Known { origin, unavailable }));
        }
        Ok(restored)
    }

    /// The models-root or command-line model of `name`, whether an upload shadows it or not.
    fn shadowed(&self, name: &str) -> Option<Source> {
        match &self.known().get(name)?.origin {
            Origin::ReadOnly(source) => Some(source.clone()),
            Origin::Uploaded { shadows, .. } => shadows.clone(),
            Origin::Pulled(_) => None,
        }
    }

    /// Installs the model in `dir`, which must be model `name`.
    fn install_checked(&self, name: &str, dir: &Path) -> Result<ModelManifest, RepositoryError> {
        let refused = |source| RepositoryError::Refused { name: name.to_string(), source };
        let manifest = ModelManifest::from_dir(dir).map_err(|e| refused(e.into()))?;
        if manifest.name != name {
            let message = format!("the manifest names model {:?}, not {name:?}", manifest.name);
            let path = dir.join(crate::nn::manifest::MANIFEST_FILE);
            return Err(refused(crate::nn::ManifestError::Invalid { path, message }.into()));
        }
        self.models.install_file(manifest.clone(), dir.join(&manifest.file)).map_err(refused)?;
        Ok(manifest)
    }

    /// A new empty directory for an upload, to hand to [`ModelRepository::install`].
    pub fn stage(&self) -> Result<PathBuf, RepositoryError> {
        Ok(self.stored.as_ref().ok_or(RepositoryError::NoDataDirectory)?.stage()?)
    }

    /// Adds or replaces model `name` with the upload in `staged` (a `model.toml` and its
    /// files): stored as a new version, loaded, then live and current on disk. Refused, it
    /// changes nothing. Blocking: it loads the model.
    pub fn install(&self, name: &str, staged: &Path) -> Result<Installed, RepositoryError> {
        let stored = self.stored.as_ref().ok_or(RepositoryError::NoDataDirectory)?;
        let _changing = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        let replaced = self.known().contains_key(name);
        let version = stored.add_version(name, staged)?;
        let manifest = match self.install_checked(name, &version) {
            Ok(manifest) => manifest,
            Err(error) => {
                stored.discard(&version);
                return Err(error);
            }
        };
        stored.make_current(name, &version)?;
        let shadows = self.shadowed(name);
        self.set(name, Some(Known { origin: Origin::Uploaded { version, shadows }, unavailable: None }));
        tracing::info!(model = %name, replaced, "model installed");
        Ok(Installed { manifest, replaced })
    }

    /// Removes an uploaded model from the data directory and from service; the models-root or
    /// command-line model it shadowed, if any, serves again. A models-root or command-line
    /// model is [`RepositoryError::ReadOnly`].
    pub fn delete(&self, name: &str) -> Result<(), RepositoryError> {
        let _changing = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        let known = self.known().get(name).cloned().ok_or_else(|| RepositoryError::UnknownModel(name.to_string()))?;
        let Origin::Uploaded { shadows, .. } = known.origin else {
            return Err(RepositoryError::ReadOnly(name.to_string()));
        };
        let stored = self.stored.as_ref().ok_or(RepositoryError::NoDataDirectory)?;
        stored.remove(name)?;
        match shadows {
            Some(source) => {
                let unavailable = source.register(&self.models, name).err().map(|e| describe(&e));
                if unavailable.is_some() {
                    self.models.unregister(&[ModelKey::shared(name)]);
                }
                self.set(name, Some(Known { origin: Origin::ReadOnly(source), unavailable }));
            }
            None => {
                self.models.unregister(&[ModelKey::shared(name)]);
                self.set(name, None);
            }
        }
        tracing::info!(model = %name, "model deleted");
        Ok(())
    }

    /// Adds or replaces a model with the folder the fleet pulled (`dir`, in its cache), loaded
    /// first as an upload is; not stored in the data directory. Blocking.
    pub fn install_pulled(&self, dir: &Path) -> Result<ModelManifest, RepositoryError> {
        let _changing = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        let manifest = self
            .models
            .install_dir(dir)
            .map_err(|source| RepositoryError::Refused { name: dir.display().to_string(), source })?;
        let origin = Origin::Pulled(dir.to_path_buf());
        self.set(&manifest.name, Some(Known { origin, unavailable: None }));
        tracing::info!(model = %manifest.name, dir = %dir.display(), "model installed from the fleet");
        Ok(manifest)
    }

    /// Takes a model the fleet installed out of service, when the fleet no longer lists it.
    pub fn remove_pulled(&self, name: &str) {
        let _changing = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        if self.known().get(name).is_some_and(|known| matches!(known.origin, Origin::Pulled(_))) {
            self.models.unregister(&[ModelKey::shared(name)]);
            self.set(name, None);
            tracing::info!(model = %name, "model removed: the fleet no longer lists it");
        }
    }

    /// Takes a model out of service, keeping its files (Triton's `unload`).
    pub fn unload(&self, name: &str) -> Result<(), RepositoryError> {
        let _changing = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        let mut known =
            self.known().get(name).cloned().ok_or_else(|| RepositoryError::UnknownModel(name.to_string()))?;
        self.models.unregister(&[ModelKey::shared(name)]);
        known.unavailable = Some("unloaded".to_string());
        self.set(name, Some(known));
        tracing::info!(model = %name, "model unloaded");
        Ok(())
    }

    /// Puts a known model (back) in service, loaded on its default backend (Triton's `load`
    /// without files). Blocking.
    pub fn load(&self, name: &str) -> Result<(), RepositoryError> {
        let _changing = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        let mut known =
            self.known().get(name).cloned().ok_or_else(|| RepositoryError::UnknownModel(name.to_string()))?;
        let refused = |source| RepositoryError::Refused { name: name.to_string(), source };
        let loaded = if known.unavailable.is_none() {
            // In service already: its graph is loaded now rather than on first use.
            self.models.graph(&ModelKey::shared(name), None).map(|_| ()).map_err(refused)
        } else {
            match &known.origin {
                Origin::ReadOnly(Source::Directory(dir))
                | Origin::Uploaded { version: dir, .. }
                | Origin::Pulled(dir) => self.install_checked(name, dir).map(|_| ()),
                Origin::ReadOnly(Source::File { manifest, path }) => {
                    self.models.install_file(manifest.clone(), path.clone()).map_err(refused)
                }
            }
        };
        if loaded.is_ok() {
            known.unavailable = None;
            self.set(name, Some(known));
        }
        loaded
    }

    /// Every model of the repository, in service or not, by name.
    pub fn list(&self) -> Vec<RepositoryEntry> {
        let mut served: BTreeMap<String, ModelInfo> =
            self.models.list().into_iter().map(|info| (info.name.clone(), info)).collect();
        self.known()
            .iter()
            .map(|(name, known)| {
                let model = served.remove(name).filter(|_| known.unavailable.is_none());
                RepositoryEntry {
                    name: name.clone(),
                    origin: known.origin.label(),
                    state: if model.is_some() { "READY" } else { "UNAVAILABLE" },
                    reason: known.unavailable.clone(),
                    model,
                }
            })
            .collect()
    }

    /// One model of the repository.
    pub fn entry(&self, name: &str) -> Option<RepositoryEntry> {
        self.list().into_iter().find(|entry| entry.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::nn::backend::Backends;
    use crate::nn::backend::tract::TractBackend;

    const DIGITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/guests/digits/model/digits.onnx");

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("edgenn-repository-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn repository(data: &Path) -> ModelRepository {
        let mut backends = Backends::default();
        backends.register(TractBackend);
        let store = Arc::new(ModelStore::new(backends, 64 << 20, Arc::new(Metrics::new())));
        ModelRepository::new(store, Some(VersionStore::open(data, "models").unwrap()))
    }

    /// A model directory `name` holding `onnx` as `model.onnx`, described as `description`.
    fn model_dir(at: &Path, name: &str, onnx: &[u8], description: &str) -> PathBuf {
        std::fs::create_dir_all(at).unwrap();
        let manifest =
            format!("name = \"{name}\"\nfile = \"model.onnx\"\nbackend = \"tract\"\ndescription = \"{description}\"\n");
        std::fs::write(at.join("model.toml"), manifest).unwrap();
        std::fs::write(at.join("model.onnx"), onnx).unwrap();
        at.to_path_buf()
    }

    fn staged(repository: &ModelRepository, name: &str, onnx: &[u8], description: &str) -> PathBuf {
        let dir = repository.stage().unwrap();
        model_dir(&dir, name, onnx, description)
    }

    fn description(repository: &ModelRepository, name: &str) -> Option<String> {
        repository.models().shared_manifest(name).and_then(|m| m.description)
    }

    fn serves(repository: &ModelRepository, name: &str) -> bool {
        repository.models().graph(&ModelKey::shared(name), None).is_ok()
    }

    #[test]
    fn an_upload_goes_live_only_once_it_loads_and_comes_back_after_a_restart() {
        let data = scratch("upload");
        let digits = std::fs::read(DIGITS).unwrap();
        let repository = repository(&data);
        let first = repository.install("digits", &staged(&repository, "digits", &digits, "one")).unwrap();
        assert!(!first.replaced);
        assert!(serves(&repository, "digits"));
        // Not an ONNX model: refused, the old one serves on, and nothing is left on disk.
        let refused = repository.install("digits", &staged(&repository, "digits", b"not onnx", "two"));
        assert!(matches!(refused, Err(RepositoryError::Refused { .. })), "{refused:?}");
        assert_eq!(description(&repository, "digits").as_deref(), Some("one"));
        assert!(serves(&repository, "digits"));
        assert_eq!(std::fs::read_dir(data.join("models/digits")).unwrap().count(), 2, "one version and `current`");
        // A manifest for another name than the URL's is refused too.
        let misnamed = repository.install("digits", &staged(&repository, "other", &digits, "x"));
        assert!(matches!(misnamed, Err(RepositoryError::Refused { .. })), "{misnamed:?}");
        let replaced = repository.install("digits", &staged(&repository, "digits", &digits, "three")).unwrap();
        assert!(replaced.replaced);
        assert_eq!(description(&repository, "digits").as_deref(), Some("three"));

        let restarted = self::repository(&data);
        assert_eq!(restarted.restore().unwrap(), vec!["digits".to_string()]);
        assert_eq!(description(&restarted, "digits").as_deref(), Some("three"));
        let entry = restarted.entry("digits").unwrap();
        assert_eq!((entry.origin, entry.state), ("uploaded", "READY"));

        restarted.delete("digits").unwrap();
        assert!(!serves(&restarted, "digits"));
        assert!(restarted.entry("digits").is_none());
        assert!(self::repository(&data).restore().unwrap().is_empty(), "a delete is durable");
        assert!(matches!(restarted.delete("digits"), Err(RepositoryError::UnknownModel(_))));
        let _ = std::fs::remove_dir_all(&data);
    }

    #[test]
    fn an_upload_shadows_a_models_directory_model_until_it_is_deleted() {
        let data = scratch("shadow");
        let digits = std::fs::read(DIGITS).unwrap();
        let root = data.join("root");
        model_dir(&root.join("digits"), "digits", &digits, "from the directory");
        let repository = repository(&data.join("data"));
        assert_eq!(repository.add_root(&root).unwrap(), vec!["digits".to_string()]);
        // The models directory is not the repository's to change.
        assert!(matches!(repository.delete("digits"), Err(RepositoryError::ReadOnly(_))));
        repository.install("digits", &staged(&repository, "digits", &digits, "uploaded")).unwrap();
        assert_eq!(description(&repository, "digits").as_deref(), Some("uploaded"));

        // After a restart the upload still wins over the directory.
        let restarted = self::repository(&data.join("data"));
        restarted.add_root(&root).unwrap();
        restarted.restore().unwrap();
        assert_eq!(description(&restarted, "digits").as_deref(), Some("uploaded"));
        restarted.delete("digits").unwrap();
        assert_eq!(description(&restarted, "digits").as_deref(), Some("from the directory"));
        assert_eq!(restarted.entry("digits").unwrap().origin, "directory");
        assert!(std::fs::read(root.join("digits/model.onnx")).unwrap() == digits, "the directory is untouched");
        let _ = std::fs::remove_dir_all(&data);
    }

    #[test]
    fn an_unloaded_model_is_listed_not_served_until_loaded_again() {
        let data = scratch("unload");
        let digits = std::fs::read(DIGITS).unwrap();
        let root = data.join("root");
        model_dir(&root.join("digits"), "digits", &digits, "d");
        let repository = repository(&data.join("data"));
        repository.add_root(&root).unwrap();
        repository.unload("digits").unwrap();
        assert!(!serves(&repository, "digits"));
        let entry = repository.entry("digits").unwrap();
        assert_eq!((entry.state, entry.reason.as_deref()), ("UNAVAILABLE", Some("unloaded")));
        assert!(entry.model.is_none());
        repository.load("digits").unwrap();
        assert!(serves(&repository, "digits"));
        assert_eq!(repository.entry("digits").unwrap().state, "READY");
        assert!(matches!(repository.load("nope"), Err(RepositoryError::UnknownModel(_))));
        assert!(matches!(repository.unload("nope"), Err(RepositoryError::UnknownModel(_))));
        let _ = std::fs::remove_dir_all(&data);
    }

    #[test]
    fn without_a_data_directory_uploads_are_refused() {
        let mut backends = Backends::default();
        backends.register(TractBackend);
        let store = Arc::new(ModelStore::new(backends, 64 << 20, Arc::new(Metrics::new())));
        let repository = ModelRepository::new(store, None);
        assert!(matches!(repository.stage(), Err(RepositoryError::NoDataDirectory)));
        assert!(repository.restore().unwrap().is_empty());
    }
}
