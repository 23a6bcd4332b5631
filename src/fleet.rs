//! A gateway that follows a desired state: `edgenn serve --fleet fleet.toml`, where the file
//! lists apps and shared models by OCI reference (a tag or a digest):
//!
//! ```toml
//! models = ["registry.example.com/models/wordlm:1"]
//! apps = ["registry.example.com/apps/classify@sha256:..."]
//! ```
//!
//! Every gateway given the same file (in Kubernetes, one ConfigMap mounted into every pod)
//! converges to the same apps and models: each reference is resolved to a digest, pulled once
//! into a content-addressed cache (every blob checked by `oci-client`), and deployed with the
//! same validation and atomic swap as the admin API (models before the apps that may declare
//! them); what the file no longer lists is taken out of service once everything it lists is
//! served. The file is read again every
//! `poll` (a ConfigMap update is a symlink swap: polling sees it), so an edit converges without
//! a restart; requests in flight finish on the version they started on.
//!
//! Offline, as an edge node must be: when the registry cannot be reached, every reference
//! keeps the digest it last resolved to (kept in the cache, `resolved.json`), so a gateway
//! restarted while the registry is down comes back serving from its cache; it says so in its
//! log, `edgenn_fleet_registry_reachable` 0 and the readiness answer, and retries with backoff.
//! A pull that fails (unreachable, a digest mismatch) leaves the old version serving and is
//! retried with backoff; it is logged, counted (`edgenn_fleet_pull_failures_total`) and makes
//! the gateway not ready (`edgenn_fleet_converged` 0, `/v2/health/ready` 503) until the
//! desired state is served.

use crate::apps::Apps;
use crate::metrics::Metrics;
use crate::nn::describe;
use crate::oci::{Kind, registry};
use crate::repository::ModelRepository;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// The desired state, read again every `poll`.
    pub file: PathBuf,
    /// Pulled artifacts, by digest, and the digests references last resolved to.
    pub cache: PathBuf,
    pub poll: Duration,
    /// What one pull may cost (its size, how long the registry may stall).
    pub pull: registry::PullLimits,
}

/// The longest wait between two attempts while a pull keeps failing.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Desired {
    #[serde(default)]
    models: Vec<String>,
    #[serde(default)]
    apps: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
enum FleetError {
    #[error("cannot read the fleet file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid fleet file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{reference}")]
    Registry {
        reference: String,
        #[source]
        source: registry::RegistryError,
    },
    #[error("{reference} is a{} {}, listed as a{} {}", article(*found), found.as_str(), article(*listed), listed.as_str())]
    WrongKind { reference: String, found: Kind, listed: Kind },
    #[error("{reference}: refused")]
    Deploy {
        reference: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The artifact's name is not the one its reference was published under, or is taken by
    /// an app or model that did not come from the fleet.
    #[error("{reference}: {why}")]
    Name { reference: String, why: String },
    #[error("the fleet cache {path}")]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn article(kind: Kind) -> &'static str {
    match kind {
        Kind::App => "n",
        Kind::Model => "",
    }
}

/// What one pass over the fleet file found.
#[derive(Debug, Clone, Copy)]
pub struct Pass {
    /// Every listed reference is served at its digest (resolved now or, offline, last).
    pub converged: bool,
    /// The registry answered for every reference.
    pub reachable: bool,
}

/// What one reference of the file is served as.
#[derive(Debug, Clone)]
struct Served {
    kind: Kind,
    digest: String,
    /// The app's or model's name.
    name: String,
}

pub struct Fleet {
    config: FleetConfig,
    apps: Arc<Apps>,
    repository: Arc<ModelRepository>,
    metrics: Arc<Metrics>,
    converged: AtomicBool,
    /// Whether the last pass reached the registry for every reference.
    reachable: AtomicBool,
    served: Mutex<BTreeMap<String, Served>>,
    /// The digest every reference last resolved to; `<cache>/resolved.json` on disk.
    resolved: Mutex<BTreeMap<String, String>>,
    sequence: AtomicU64,
}

impl Fleet {
    pub fn new(config: FleetConfig, apps: Arc<Apps>, repository: Arc<ModelRepository>) -> Self {
        let metrics = apps.runtime().metrics().clone();
        let resolved = Mutex::new(load_resolved(&config));
        Self {
            config,
            apps,
            repository,
            metrics,
            converged: AtomicBool::new(false),
            reachable: AtomicBool::new(false),
            served: Mutex::default(),
            resolved,
            sequence: AtomicU64::new(0),
        }
    }

    /// Whether the desired state, as last read, is what the gateway serves.
    pub fn is_converged(&self) -> bool {
        self.converged.load(Ordering::Acquire)
    }

    /// Whether the last pass reached the registry for every reference (offline, the gateway
    /// serves what it last resolved, from its cache).
    pub fn is_registry_reachable(&self) -> bool {
        self.reachable.load(Ordering::Acquire)
    }

    /// Converges now, then every `poll` (backing off while the registry cannot be reached or
    /// a reference cannot be served), for ever.
    pub async fn run(self: Arc<Self>) {
        let mut backoff = self.config.poll;
        loop {
            let pass = self.reconcile().await;
            self.converged.store(pass.converged, Ordering::Release);
            self.reachable.store(pass.reachable, Ordering::Release);
            self.metrics.fleet_converged.set(u64::from(pass.converged));
            self.metrics.fleet_registry_reachable.set(u64::from(pass.reachable));
            let healthy = pass.converged && pass.reachable;
            backoff = if healthy { self.config.poll } else { (backoff * 2).min(MAX_BACKOFF) };
            tokio::time::sleep(backoff).await;
        }
    }

    /// One pass: every listed reference served at the digest it resolves to, nothing else
    /// served from the fleet.
    pub async fn reconcile(&self) -> Pass {
        let desired = match self.read() {
            Ok(desired) => desired,
            Err(error) => {
                tracing::error!(error = %describe(&error), "the fleet file cannot be used; serving what was served");
                return Pass { converged: false, reachable: self.is_registry_reachable() };
            }
        };
        let last = self.resolved.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let mut resolved = last.clone();
        let mut pass = Pass { converged: true, reachable: true };
        // Models before apps (an app may declare a model the file lists); within each, every
        // reference at once, so that a registry stalling one blob delays only its own.
        for (references, kind) in [(&desired.models, Kind::Model), (&desired.apps, Kind::App)] {
            let ensured = references.iter().map(|reference| self.ensure(reference, kind, last.get(reference)));
            for (reference, (digest, outcome)) in references.iter().zip(futures_util::future::join_all(ensured).await) {
                if let Some(digest) = digest {
                    resolved.insert(reference.clone(), digest);
                }
                match outcome {
                    Ok(reached) => pass.reachable &= reached,
                    Err(error) => {
                        pass.converged = false;
                        pass.reachable &= !matches!(error, FleetError::Registry { .. });
                        self.metrics.fleet_pull_failures.inc();
                        tracing::warn!(error = %describe(&error), "fleet: not converged; the old version serves");
                    }
                }
            }
        }
        // A listed reference not served yet may be the new version of an unlisted one: nothing
        // is taken out of service until all of the desired state is.
        if pass.converged {
            self.remove_unlisted(&desired);
        }
        // Written when a digest changed, not every poll.
        if resolved != last {
            if let Err(error) = self.save_resolved(&resolved) {
                tracing::warn!(error = %describe(&error), "fleet: cannot keep the resolved digests");
            }
            *self.resolved.lock().unwrap_or_else(PoisonError::into_inner) = resolved;
        }
        pass
    }

    fn read(&self) -> Result<Desired, FleetError> {
        let path = &self.config.file;
        let text = std::fs::read_to_string(path).map_err(|source| FleetError::Read { path: path.clone(), source })?;
        toml::from_str(&text).map_err(|e| FleetError::Invalid { path: path.clone(), message: e.message().to_string() })
    }

    fn resolved_path(&self) -> PathBuf {
        resolved_path(&self.config)
    }

    fn save_resolved(&self, resolved: &BTreeMap<String, String>) -> Result<(), FleetError> {
        let path = self.resolved_path();
        let cache_error = |source| FleetError::Cache { path: path.clone(), source };
        std::fs::create_dir_all(&self.config.cache).map_err(cache_error)?;
        let temporary = self.config.cache.join(format!(".resolved.{}", std::process::id()));
        std::fs::write(&temporary, serde_json::to_vec_pretty(resolved).expect("a map serialises"))
            .map_err(cache_error)?;
        std::fs::rename(&temporary, &path).map_err(cache_error)
    }

    /// Serves `reference` at the digest it resolves to (or, offline, `last` resolved to: then
    /// `Ok(false)`): the digest it resolved to, if any, and the outcome.
    async fn ensure(
        &self,
        reference: &str,
        kind: Kind,
        last: Option<&String>,
    ) -> (Option<String>, Result<bool, FleetError>) {
        let (digest, reached) = match registry::resolve(reference).await {
            Ok(digest) => (digest, true),
            Err(error) => match last {
                Some(digest) => {
                    tracing::warn!(%reference, %digest, error = %describe(&error), "registry unreachable: serving the digest last resolved");
                    (digest.clone(), false)
                }
                None => return (None, Err(FleetError::Registry { reference: reference.to_string(), source: error })),
            },
        };
        let outcome = self.serve_at(reference, kind, &digest).await.map(|()| reached);
        (Some(digest), outcome)
    }

    /// Serves `reference` at `digest`, pulled first if need be.
    async fn serve_at(&self, reference: &str, kind: Kind, digest: &str) -> Result<(), FleetError> {
        let current = self.served.lock().unwrap_or_else(PoisonError::into_inner).get(reference).cloned();
        if current.is_some_and(|served| served.digest == digest) {
            return Ok(());
        }
        let dir = self.fetch(reference, digest, kind).await?;
        self.check_name(reference, kind, &dir)?;
        let (apps, repository) = (self.apps.clone(), self.repository.clone());
        let deployed = tokio::task::spawn_blocking(move || -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
            Ok(match kind {
                Kind::App => apps.deploy_artifact(&dir)?.manifest.name.clone(),
                Kind::Model => repository.install_pulled(&dir)?.name,
            })
        })
        .await
        .map_err(|e| FleetError::Deploy { reference: reference.to_string(), source: e.into() })?
        .map_err(|source| FleetError::Deploy { reference: reference.to_string(), source })?;
        tracing::info!(%reference, %digest, name = %deployed, kind = kind.as_str(), "fleet: serving");
        let served = Served { kind, digest: digest.to_string(), name: deployed };
        self.served.lock().unwrap_or_else(PoisonError::into_inner).insert(reference.to_string(), served);
        Ok(())
    }

    /// The names a pulled artifact may take: the one its reference was published under (the
    /// last segment of its repository, `hello` for `REGISTRY/apps/hello:1`), and only if
    /// nothing but the fleet serves that name: a built-in app, a start-up one, one deployed
    /// over the admin API or an uploaded model is never replaced by an artifact.
    fn check_name(&self, reference: &str, kind: Kind, dir: &Path) -> Result<(), FleetError> {
        let refused = |why: String| FleetError::Name { reference: reference.to_string(), why };
        let published = registry::repository_name(reference)
            .map_err(|source| FleetError::Registry { reference: reference.to_string(), source })?;
        let name = match kind {
            Kind::App => crate::apps::AppManifest::from_artifact_dir(dir).map(|m| m.name),
            Kind::Model => crate::nn::manifest::ModelManifest::from_dir(dir).map(|m| m.name),
        }
        .map_err(|e| refused(describe(&e)))?;
        if name != published {
            return Err(refused(format!("it names its {} {name:?}, not {published:?}", kind.as_str())));
        }
        let fleets = self
            .served
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .any(|s| s.kind == kind && s.name == name);
        let taken = match kind {
            Kind::App => self.apps.get(&name).is_some(),
            Kind::Model => self.repository.entry(&name).is_some_and(|entry| entry.origin != "fleet"),
        };
        if taken && !fleets {
            return Err(refused(format!("{} {name:?} is served already, not from the fleet", kind.as_str())));
        }
        Ok(())
    }

    /// Whether the fleet serves the app `name`: a name the fleet lists is the fleet's, which
    /// the admin API may not replace or delete (409).
    pub fn serves_app(&self, name: &str) -> bool {
        self.served
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .any(|s| s.kind == Kind::App && s.name == name)
    }

    /// The folder of `digest` in the cache, pulled first if it is not there.
    async fn fetch(&self, reference: &str, digest: &str, kind: Kind) -> Result<PathBuf, FleetError> {
        // Pinned first: it refuses a digest that is not sha256 before a path is built from it
        // (`resolve` and the cache give no other, but this is the last line).
        let pinned = registry::pinned(reference, digest)
            .map_err(|source| FleetError::Registry { reference: reference.to_string(), source })?;
        let artifacts = self.config.cache.join("artifacts");
        let dir = artifacts.join(digest.replace(':', "-"));
        if !dir.is_dir() {
            let cache_error = |source| FleetError::Cache { path: artifacts.clone(), source };
            std::fs::create_dir_all(&artifacts).map_err(cache_error)?;
            let partial = artifacts.join(format!(
                ".partial-{}-{}",
                std::process::id(),
                self.sequence.fetch_add(1, Ordering::Relaxed)
            ));
            let pulled = registry::pull(&pinned, &partial, self.config.pull).await;
            let pulled = match pulled {
                Ok(pulled) => pulled,
                Err(source) => {
                    let _ = std::fs::remove_dir_all(&partial);
                    return Err(FleetError::Registry { reference: reference.to_string(), source });
                }
            };
            if pulled.kind != kind {
                let _ = std::fs::remove_dir_all(&partial);
                return Err(FleetError::WrongKind {
                    reference: reference.to_string(),
                    found: pulled.kind,
                    listed: kind,
                });
            }
            // Complete or absent: a folder under its digest's name is never half-written. Two
            // references to one digest pulled at once: the first rename wins, the same bytes.
            match std::fs::rename(&partial, &dir) {
                Ok(()) => {
                    self.metrics.fleet_pulls.inc();
                }
                Err(_) if dir.is_dir() => {
                    let _ = std::fs::remove_dir_all(&partial);
                }
                Err(error) => return Err(cache_error(error)),
            }
        }
        Ok(dir)
    }

    /// Takes out of service what was served for references the file no longer lists, unless
    /// a listed reference serves the same name (a new version of it).
    fn remove_unlisted(&self, desired: &Desired) {
        let mut served = self.served.lock().unwrap_or_else(PoisonError::into_inner);
        let listed = |r: &String| desired.apps.contains(r) || desired.models.contains(r);
        let claimed: Vec<(Kind, String)> =
            served.iter().filter(|(r, _)| listed(r)).map(|(_, s)| (s.kind, s.name.clone())).collect();
        let unlisted: Vec<String> = served.keys().filter(|r| !listed(r)).cloned().collect();
        for reference in unlisted {
            let Some(gone) = served.remove(&reference) else { continue };
            if claimed.contains(&(gone.kind, gone.name.clone())) {
                continue;
            }
            match gone.kind {
                Kind::App => {
                    self.apps.remove(&gone.name);
                }
                Kind::Model => self.repository.remove_pulled(&gone.name),
            }
            tracing::info!(%reference, name = %gone.name, "fleet: no longer listed, out of service");
        }
    }
}

fn resolved_path(config: &FleetConfig) -> PathBuf {
    config.cache.join("resolved.json")
}

/// The digest every reference last resolved to, as the cache kept it (read once, at start).
fn load_resolved(config: &FleetConfig) -> BTreeMap<String, String> {
    let resolved: BTreeMap<String, String> = std::fs::read(resolved_path(config))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    // The file is the gateway's own, but its digests name folders: only sha256 digests.
    resolved.into_iter().filter(|(_, digest)| crate::oci::is_sha256_digest(digest)).collect()
}

/// Whether `path` holds a fleet file that parses (for `edgenn serve` to refuse a bad one at
/// start rather than serve nothing).
pub fn check_file(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    toml::from_str::<Desired>(&text)
        .map(|_| ())
        .map_err(|e| format!("invalid fleet file {}: {}", path.display(), e.message()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fleet_file_lists_apps_and_models_and_nothing_else() {
        let desired: Desired = toml::from_str("apps = [\"r/a:1\"]\nmodels = [\"r/m@sha256:00\"]").unwrap();
        assert_eq!(desired, Desired { apps: vec!["r/a:1".into()], models: vec!["r/m@sha256:00".into()] });
        assert_eq!(toml::from_str::<Desired>("").unwrap(), Desired { apps: vec![], models: vec![] });
        assert!(toml::from_str::<Desired>("app = [\"r/a:1\"]").is_err(), "a misspelt key is refused");
        assert!(toml::from_str::<Desired>("apps = \"r/a:1\"").is_err());
    }
}
