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
}

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
    // reqwest's rustls needs a process-wide crypto provider; a second install is a no-op.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let registry = reference.resolve_registry().to_string();
    let protocol =
        if is_loopback(&registry) { ClientProtocol::HttpsExcept(vec![registry]) } else { ClientProtocol::Https };
    Client::new(ClientConfig { protocol, ..ClientConfig::default() })
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

/// Pulls the artifact at `reference` into `dir` (created) as an app or model folder. Every
/// blob is checked against its digest.
pub async fn pull(reference: &str, dir: &Path) -> Result<Located, RegistryError> {
    let image = parse(reference)?;
    let registry = image.resolve_registry().to_string();
    let failed = |source| RegistryError::Registry { registry: registry.clone(), source };
    let auth = auth(&registry)?;
    let accepted = vec![
        super::WASM_LAYER_MEDIA_TYPE,
        super::APP_MANIFEST_MEDIA_TYPE,
        super::MODEL_MANIFEST_MEDIA_TYPE,
        super::ONNX_MEDIA_TYPE,
        FILE_MEDIA_TYPE,
    ];
    let data = client(&image).pull(&image, &auth, accepted).await.map_err(failed)?;
    let layers: Vec<(Option<String>, Vec<u8>)> = data
        .layers
        .into_iter()
        .map(|layer| (layer.annotations.and_then(|a| a.get(TITLE).cloned()), layer.data.to_vec()))
        .collect();
    let kind = super::unpack(&data.config.media_type, &layers, dir)?;
    Ok(Located { kind, reference: image.whole(), digest: data.digest.unwrap_or_default() })
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
