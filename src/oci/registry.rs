//! Artifacts to and from a registry, with `oci-client`: any OCI distribution registry, plain
//! HTTP only to a loopback one (`127.0.0.1`, `localhost`, `[::1]`), HTTPS (rustls) to every
//! other, its certificate checked against the system's roots (`SSL_CERT_FILE`/`SSL_CERT_DIR`
//! add a private CA). Every blob pulled is checked against its digest; a mismatch fails the
//! pull.
//!
//! Credentials, first found: `EDGENN_REGISTRY_TOKEN` (bearer), `EDGENN_REGISTRY_USERNAME` and
//! `EDGENN_REGISTRY_PASSWORD` (basic), the registry's `auth` entry in the docker config file
//! (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`, as `docker login` writes it);
//! else anonymous.

use super::{Artifact, ArtifactError, FILE_MEDIA_TYPE, Kind, TITLE, annotations};
use base64::Engine;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{reference:?} is not an artifact reference: REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@sha256:...")]
    Reference {
        reference: String,
        #[source]
        source: oci_client::ParseError,
    },
    #[error("registry {registry}")]
    Registry {
        registry: String,
        #[source]
        source: oci_client::errors::OciDistributionError,
    },
    #[error("the docker config {path} is not JSON")]
    DockerConfig {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error("registry {registry} named {reference:?} by {digest:?}, which is not a sha256 digest")]
    BadDigest { registry: String, reference: String, digest: String },
    #[error("{reference:?} declares {declared} bytes ({what}); at most {limit} are pulled")]
    TooLarge { reference: String, what: &'static str, declared: u64, limit: u64 },
}

/// What one pull may cost. The sizes an artifact's manifest declares are checked before any
/// blob is asked for, and each layer streams to its file while its digest is computed, held
/// to the size its descriptor declares: a blob never sits in memory. A registry that stops
/// sending for `read_timeout` fails that pull only.
#[derive(Debug, Clone, Copy)]
pub struct PullLimits {
    /// The most bytes an artifact's layers may add up to.
    pub max_bytes: u64,
    /// The longest a registry may go without sending, on any request.
    pub read_timeout: Duration,
}

impl Default for PullLimits {
    fn default() -> Self {
        PullLimits { max_bytes: 4 << 30, read_timeout: DEFAULT_READ_TIMEOUT }
    }
}

/// How long a registry may go without sending, when no [`PullLimits`] say otherwise.
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting to a registry may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An artifact in a registry: its reference and the digest of its manifest.
#[derive(Debug, Clone)]
pub struct Located {
    pub kind: Kind,
    pub reference: String,
    pub digest: String,
}

fn parse(reference: &str) -> Result<Reference, RegistryError> {
    reference.parse().map_err(|source| RegistryError::Reference { reference: reference.to_string(), source })
}

/// Whether `registry` (`host[:port]`) is on this machine, where plain HTTP may be used.
fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => registry.rsplit_once(':').map_or(registry, |(host, _)| host),
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn client(reference: &Reference) -> Client {
    client_waiting(reference, DEFAULT_READ_TIMEOUT)
}

/// A client for `reference`'s registry that gives up on a response nothing of which came for
/// `read_timeout`.
fn client_waiting(reference: &Reference, read_timeout: Duration) -> Client {
    // reqwest's rustls needs a process-wide crypto provider; a second install is a no-op.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let registry = reference.resolve_registry().to_string();
    let protocol =
        if is_loopback(&registry) { ClientProtocol::HttpsExcept(vec![registry]) } else { ClientProtocol::Https };
    Client::new(ClientConfig {
        protocol,
        read_timeout: Some(read_timeout),
        connect_timeout: Some(CONNECT_TIMEOUT),
        ..ClientConfig::default()
    })
}

/// The credentials for `registry` (see the module docs).
fn auth(registry: &str) -> Result<RegistryAuth, RegistryError> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let Some(token) = var("EDGENN_REGISTRY_TOKEN") {
        return Ok(RegistryAuth::Bearer(token));
    }
    if let (Some(user), Some(password)) = (var("EDGENN_REGISTRY_USERNAME"), var("EDGENN_REGISTRY_PASSWORD")) {
        return Ok(RegistryAuth::Basic(user, password));
    }
    let path = match (var("DOCKER_CONFIG"), var("HOME")) {
        (Some(dir), _) => PathBuf::from(dir).join("config.json"),
        (None, Some(home)) => PathBuf::from(home).join(".docker/config.json"),
        (None, None) => return Ok(RegistryAuth::Anonymous),
    };
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(RegistryAuth::Anonymous) };
    let config: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| RegistryError::DockerConfig { path: path.clone(), source })?;
    let encoded = config["auths"][registry]["auth"].as_str().unwrap_or_default();
    let decoded =
        base64::engine::general_purpose::STANDARD.decode(encoded).ok().and_then(|b| String::from_utf8(b).ok());
    Ok(match decoded.as_deref().and_then(|d| d.split_once(':')) {
        Some((user, password)) => RegistryAuth::Basic(user.to_string(), password.to_string()),
        None => RegistryAuth::Anonymous,
    })
}

/// The digest `reference` names now: its own (`...@sha256:...`), or the one its tag points to
/// in the registry.
pub async fn resolve(reference: &str) -> Result<String, RegistryError> {
    let image = parse(reference)?;
    let registry = image.resolve_registry().to_string();
    let digest = match image.digest() {
        Some(digest) => digest.to_string(),
        None => {
            let auth = auth(&registry)?;
            client(&image)
                .fetch_manifest_digest(&image, &auth)
                .await
                .map_err(|source| RegistryError::Registry { registry: registry.clone(), source })?
        }
    };
    checked(reference, &registry, digest)
}

/// `digest` if it is a sha256 digest ([`crate::oci::is_sha256_digest`]).
fn checked(reference: &str, registry: &str, digest: String) -> Result<String, RegistryError> {
    if crate::oci::is_sha256_digest(&digest) {
        Ok(digest)
    } else {
        Err(RegistryError::BadDigest { registry: registry.to_string(), reference: reference.to_string(), digest })
    }
}

/// The name an artifact is published under: the last segment of its reference's repository
/// (`hello` for `REGISTRY/apps/hello:1`).
pub fn repository_name(reference: &str) -> Result<String, RegistryError> {
    let image = parse(reference)?;
    Ok(image.repository().rsplit('/').next().unwrap_or_default().to_string())
}

/// `reference` pinned to `digest`: `REGISTRY/REPOSITORY@DIGEST`.
pub fn pinned(reference: &str, digest: &str) -> Result<String, RegistryError> {
    let image = parse(reference)?;
    let registry = image.resolve_registry().to_string();
    let digest = checked(reference, &registry, digest.to_string())?;
    Ok(format!("{registry}/{}@{digest}", image.repository()))
}

/// Pushes `artifact` to `reference` and returns where it is, by digest.
pub async fn push(artifact: &Artifact, reference: &str) -> Result<Located, RegistryError> {
    let image = parse(reference)?;
    let registry = image.resolve_registry().to_string();
    let failed = |source| RegistryError::Registry { registry: registry.clone(), source };
    let auth = auth(&registry)?;
    let client = client(&image);
    let layers: Vec<ImageLayer> = artifact
        .layers
        .iter()
        .map(|layer| ImageLayer::new(layer.data.clone(), layer.media_type.to_string(), Some(annotations(&layer.title))))
        .collect();
    let config = Config::new(artifact.config.clone(), artifact.config_media_type.to_string(), None);
    client.push(&image, &layers, config, &auth, None).await.map_err(failed)?;
    let digest = client.fetch_manifest_digest(&image, &auth).await.map_err(failed)?;
    Ok(Located { kind: artifact.kind, reference: image.whole(), digest })
}

/// Pulls `reference` into `dir` (created) as the folder it was packed from, within `limits`:
/// the manifest first, its declared sizes and layer titles checked, then each layer streamed to
/// its file and checked against its digest as it arrives, in a folder beside `dir`: only a
/// whole, verified artifact is moved into `dir`; a failed pull writes nothing there.
pub async fn pull(reference: &str, dir: &Path, limits: PullLimits) -> Result<Located, RegistryError> {
    let name = dir.file_name().map_or_else(|| "artifact".into(), |n| n.to_string_lossy().into_owned());
    let staging = dir.with_file_name(format!(".{name}.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let pulled = pull_into(reference, &staging, limits).await;
    let moved = pulled.and_then(|(located, paths)| {
        for path in &paths {
            let (from, to) = (staging.join(path), super::layer_file(dir, path)?);
            std::fs::rename(&from, &to).map_err(|source| ArtifactError::Write { path: to, source })?;
        }
        Ok(located)
    });
    let _ = std::fs::remove_dir_all(&staging);
    moved
}

/// [`pull`] into `dir` as it arrives: what was pulled, and the files written.
async fn pull_into(reference: &str, dir: &Path, limits: PullLimits) -> Result<(Located, Vec<PathBuf>), RegistryError> {
    let image = parse(reference)?;
    let registry = image.resolve_registry().to_string();
    let failed = |source| RegistryError::Registry { registry: registry.clone(), source };
    let auth = auth(&registry)?;
    let client = client_waiting(&image, limits.read_timeout);
    let (manifest, digest) = client.pull_image_manifest(&image, &auth).await.map_err(failed)?;
    let too_large = |what, declared, limit| RegistryError::TooLarge { reference: image.whole(), what, declared, limit };
    let mut total = 0u64;
    for layer in &manifest.layers {
        let size = u64::try_from(layer.size).map_err(|_| too_large("a negative layer size", 0, limits.max_bytes))?;
        total = total.saturating_add(size);
        if !ACCEPTED_LAYERS.contains(&layer.media_type.as_str()) {
            return Err(ArtifactError::Invalid(format!(
                "a layer of type {:?} is not an edgenn file",
                layer.media_type
            ))
            .into());
        }
    }
    if total > limits.max_bytes {
        return Err(too_large("in its layers", total, limits.max_bytes));
    }
    let titles: Vec<Option<&str>> =
        manifest.layers.iter().map(|l| l.annotations.as_ref().and_then(|a| a.get(TITLE)).map(String::as_str)).collect();
    let (kind, paths) = super::plan(&manifest.config.media_type, &titles)?;
    std::fs::create_dir_all(dir).map_err(|source| ArtifactError::Write { path: dir.to_path_buf(), source })?;
    for (layer, path) in manifest.layers.iter().zip(&paths) {
        let target = super::layer_file(dir, path)?;
        let file = std::fs::File::create(&target).map_err(|source| ArtifactError::Write { path: target, source })?;
        let left = u64::try_from(layer.size).unwrap_or(0);
        client.pull_blob(&image, layer, Bounded { file, left }).await.map_err(failed)?;
    }
    Ok((Located { kind, reference: image.whole(), digest }, paths))
}

/// The media types of an edgenn artifact's layers.
const ACCEPTED_LAYERS: [&str; 5] = [
    super::WASM_LAYER_MEDIA_TYPE,
    super::APP_MANIFEST_MEDIA_TYPE,
    super::MODEL_MANIFEST_MEDIA_TYPE,
    super::ONNX_MEDIA_TYPE,
    FILE_MEDIA_TYPE,
];

/// A layer's file, taking at most the bytes its descriptor declares: a registry that sends
/// more fails the pull at once rather than filling the disk (the digest would fail it later).
/// Written in place: a few KiB to the page cache per call, as the network hands them over.
struct Bounded {
    file: std::fs::File,
    left: u64,
}

impl tokio::io::AsyncWrite for Bounded {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        use std::io::Write;
        if buf.len() as u64 > self.left {
            return Poll::Ready(Err(std::io::Error::other("the blob is larger than its descriptor declares")));
        }
        let written = self.file.write(buf)?;
        self.left -= written as u64;
        Poll::Ready(Ok(written))
    }

    fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        use std::io::Write;
        Poll::Ready(self.file.flush())
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.poll_flush(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_registries_are_reached_over_plain_http() {
        for local in ["127.0.0.1:5000", "localhost:5000", "localhost", "[::1]:5000", "127.0.0.2"] {
            assert!(is_loopback(local), "{local}");
        }
        for remote in ["ghcr.io", "registry.example.com:5000", "10.0.0.1:5000", "localhost.example.com"] {
            assert!(!is_loopback(remote), "{remote}");
        }
    }
}
