//! Apps and models as OCI artifacts, so that any registry can distribute them (`edgenn push`,
//! `edgenn pull`). One artifact per app or model folder, content-addressed:
//!
//! ```text
//! app    config  application/vnd.wasm.config.v0+json          oci-wasm's: created (the epoch),
//!                                                             architecture wasm, os wasip1
//!                                                             (module) or wasip2 (component),
//!                                                             layerDigests
//!        layers  application/wasm                             the module or component
//!                application/vnd.edgenn.app.manifest.v1+toml  edgenn.toml (`wasm` = app.wasm)
//!                application/vnd.edgenn.model.onnx.v1         each bundled model file
//! model  config  application/vnd.edgenn.model.config.v1+json  {"name", "backend"}
//!        layers  application/vnd.edgenn.model.manifest.v1+toml  model.toml
//!                application/vnd.edgenn.model.onnx.v1         the ONNX file
//!                application/octet-stream                     every other file of the folder
//! ```
//!
//! The module layer is what `oci-wasm` tools (wasmtime, wkg, Spin) pull. Every layer carries
//! `org.opencontainers.image.title`, its path in the folder, as ORAS does. Packing is
//! reproducible (no timestamps; files in path order): the same folder gives the same digest.
//! Unpacking trusts no title: each is normalised, and may not leave the folder or be hidden.
//!
//! [`registry`] moves artifacts to and from a registry; this module only packs and unpacks.

pub mod registry;

use crate::apps::manifest::{AppManifest, MANIFEST_FILE as APP_MANIFEST_FILE, STORED_WASM_FILE};
use crate::nn::manifest::{MANIFEST_FILE as MODEL_MANIFEST_FILE, ModelManifest};
use crate::persist::stored_file_path;
use crate::runtime::component::is_component;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
pub const APP_MANIFEST_MEDIA_TYPE: &str = "application/vnd.edgenn.app.manifest.v1+toml";
pub const MODEL_CONFIG_MEDIA_TYPE: &str = "application/vnd.edgenn.model.config.v1+json";
pub const MODEL_MANIFEST_MEDIA_TYPE: &str = "application/vnd.edgenn.model.manifest.v1+toml";
pub const ONNX_MEDIA_TYPE: &str = "application/vnd.edgenn.model.onnx.v1";
pub const FILE_MEDIA_TYPE: &str = "application/octet-stream";
/// The annotation that names a layer's file, as ORAS writes it.
pub const TITLE: &str = "org.opencontainers.image.title";

/// Which kind of folder an artifact holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    App,
    Model,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::App => "app",
            Kind::Model => "model",
        }
    }

    fn of_config(media_type: &str) -> Option<Self> {
        match media_type {
            WASM_CONFIG_MEDIA_TYPE => Some(Kind::App),
            MODEL_CONFIG_MEDIA_TYPE => Some(Kind::Model),
            _ => None,
        }
    }
}

/// One file of an artifact: its path in the folder, media type and bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    pub title: PathBuf,
    pub media_type: &'static str,
    pub data: Vec<u8>,
}

/// A folder packed: the config blob, its media type, and the layers.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub kind: Kind,
    pub config_media_type: &'static str,
    pub config: Vec<u8>,
    pub layers: Vec<Layer>,
}

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid {file}: {message}")]
    Manifest { file: &'static str, message: String },
    #[error("{0}")]
    Invalid(String),
}

fn read(path: &Path) -> Result<Vec<u8>, ArtifactError> {
    std::fs::read(path).map_err(|source| ArtifactError::Read { path: path.to_path_buf(), source })
}

fn invalid(message: impl Into<String>) -> ArtifactError {
    ArtifactError::Invalid(message.into())
}

/// Packs the app in `dir`: its `edgenn.toml` (stored with `wasm = "app.wasm"`, as the admin API
/// stores it), its module and its bundled model files.
pub fn pack_app(dir: &Path) -> Result<Artifact, ArtifactError> {
    let text = String::from_utf8(read(&dir.join(APP_MANIFEST_FILE))?)
        .map_err(|_| invalid(format!("{APP_MANIFEST_FILE} is not UTF-8")))?;
    let mut manifest =
        AppManifest::parse(&text).map_err(|message| ArtifactError::Manifest { file: APP_MANIFEST_FILE, message })?;
    let wasm = read(&dir.join(&manifest.wasm))?;
    let os = if is_component(&wasm) { "wasip2" } else { "wasip1" };
    let mut layers = vec![Layer { title: STORED_WASM_FILE.into(), media_type: WASM_LAYER_MEDIA_TYPE, data: wasm }];
    for bundled in &mut manifest.bundled_models {
        let title = stored_file_path(&bundled.file.to_string_lossy(), &[APP_MANIFEST_FILE, STORED_WASM_FILE])
            .ok_or_else(|| {
                invalid(format!("bundled model file {:?} is not a relative path inside the app", bundled.file))
            })?;
        layers.push(Layer { data: read(&dir.join(&bundled.file))?, title: title.clone(), media_type: ONNX_MEDIA_TYPE });
        bundled.file = title;
    }
    manifest.wasm = PathBuf::from(STORED_WASM_FILE);
    let stored = toml::to_string(&manifest).map_err(|e| invalid(format!("cannot write {APP_MANIFEST_FILE}: {e}")))?;
    layers.insert(
        1,
        Layer { title: APP_MANIFEST_FILE.into(), media_type: APP_MANIFEST_MEDIA_TYPE, data: stored.into_bytes() },
    );
    // oci-wasm's config; `layerDigests` lists the module's layer. `created` is required there:
    // the epoch, so that the digest depends on the content alone.
    let config = serde_json::json!({
        "created": "1970-01-01T00:00:00Z",
        "architecture": "wasm",
        "os": os,
        "layerDigests": [sha256_digest(&layers[0].data)],
    });
    Ok(Artifact {
        kind: Kind::App,
        config_media_type: WASM_CONFIG_MEDIA_TYPE,
        config: serde_json::to_vec(&config).expect("a JSON value serialises"),
        layers,
    })
}

/// Packs the model in `dir`: its `model.toml`, its ONNX file and every other (not hidden) file
/// of the folder (labels, vocabulary, provenance).
pub fn pack_model(dir: &Path) -> Result<Artifact, ArtifactError> {
    let text = String::from_utf8(read(&dir.join(MODEL_MANIFEST_FILE))?)
        .map_err(|_| invalid(format!("{MODEL_MANIFEST_FILE} is not UTF-8")))?;
    let manifest = ModelManifest::parse(&text)
        .map_err(|message| ArtifactError::Manifest { file: MODEL_MANIFEST_FILE, message })?;
    let onnx = stored_file_path(&manifest.file.to_string_lossy(), &[MODEL_MANIFEST_FILE])
        .ok_or_else(|| invalid(format!("model file {:?} is not a relative path inside the model", manifest.file)))?;
    let mut files = Vec::new();
    folder_files(dir, Path::new(""), &mut files)?;
    if !files.contains(&onnx) {
        return Err(invalid(format!("{MODEL_MANIFEST_FILE} names {onnx:?}, which is not in {}", dir.display())));
    }
    let mut layers = vec![Layer {
        title: MODEL_MANIFEST_FILE.into(),
        media_type: MODEL_MANIFEST_MEDIA_TYPE,
        data: text.into_bytes(),
    }];
    for file in files.into_iter().filter(|f| f != Path::new(MODEL_MANIFEST_FILE)) {
        let media_type = if file == onnx { ONNX_MEDIA_TYPE } else { FILE_MEDIA_TYPE };
        layers.push(Layer { data: read(&dir.join(&file))?, title: file, media_type });
    }
    let config = serde_json::json!({ "name": manifest.name, "backend": manifest.backend });
    Ok(Artifact {
        kind: Kind::Model,
        config_media_type: MODEL_CONFIG_MEDIA_TYPE,
        config: serde_json::to_vec(&config).expect("a JSON value serialises"),
        layers,
    })
}

/// The regular, not hidden files below `dir/relative`, as sorted relative paths.
fn folder_files(dir: &Path, relative: &Path, files: &mut Vec<PathBuf>) -> Result<(), ArtifactError> {
    let here = dir.join(relative);
    let unreadable = |source| ArtifactError::Read { path: here.clone(), source };
    let mut entries: Vec<_> =
        std::fs::read_dir(&here).map_err(unreadable)?.collect::<Result<_, _>>().map_err(unreadable)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = relative.join(entry.file_name());
        let kind = entry.file_type().map_err(unreadable)?;
        if kind.is_dir() {
            folder_files(dir, &path, files)?;
        } else if kind.is_file() {
            files.push(path);
        }
    }
    Ok(())
}

/// Writes an artifact's layers into `dir` (created) as the folder it was packed from, and
/// checks that it is one: an app with its `edgenn.toml` and module, or a model with its
/// `model.toml`.
pub fn unpack(
    config_media_type: &str,
    layers: &[(Option<String>, Vec<u8>)],
    dir: &Path,
) -> Result<Kind, ArtifactError> {
    let titles: Vec<Option<&str>> = layers.iter().map(|(title, _)| title.as_deref()).collect();
    let (kind, paths) = plan(config_media_type, &titles)?;
    for (path, (_, data)) in paths.iter().zip(layers) {
        std::fs::write(layer_file(dir, path)?, data)
            .map_err(|source| ArtifactError::Write { path: dir.join(path), source })?;
    }
    Ok(kind)
}

/// What an artifact is and where each of its layers goes in its folder, from its config's
/// media type and its layers' titles, checked before any layer is read: every title a
/// relative path inside the folder, none twice, the files its kind needs among them.
pub fn plan(config_media_type: &str, titles: &[Option<&str>]) -> Result<(Kind, Vec<PathBuf>), ArtifactError> {
    let kind = Kind::of_config(config_media_type)
        .ok_or_else(|| invalid(format!("not an edgenn app or model: its config is {config_media_type:?}")))?;
    let mut paths: Vec<PathBuf> = Vec::new();
    for title in titles {
        let title = title.ok_or_else(|| invalid(format!("a layer has no {TITLE} annotation")))?;
        let path = stored_file_path(title, &[])
            .ok_or_else(|| invalid(format!("layer title {title:?} is not a relative path inside the folder")))?;
        if paths.contains(&path) {
            return Err(invalid(format!("two layers are {path:?}")));
        }
        paths.push(path);
    }
    let required: &[&str] = match kind {
        Kind::App => &[APP_MANIFEST_FILE, STORED_WASM_FILE],
        Kind::Model => &[MODEL_MANIFEST_FILE],
    };
    if let Some(missing) = required.iter().find(|r| !paths.iter().any(|w| w == Path::new(r))) {
        return Err(invalid(format!("the {} artifact has no {missing}", kind.as_str())));
    }
    Ok((kind, paths))
}

/// The file a layer planned at `path` is written to in `dir`, its folders made.
pub fn layer_file(dir: &Path, path: &Path) -> Result<PathBuf, ArtifactError> {
    let target = dir.join(path);
    std::fs::create_dir_all(target.parent().unwrap_or(dir))
        .map_err(|source| ArtifactError::Write { path: target.clone(), source })?;
    Ok(target)
}

/// Whether `digest` is `sha256:` and 64 lowercase hex digits: the only digests edgenn takes
/// from a registry. A registry's answer is data from outside, and the cache names folders after
/// digests: anything else (`../..`, another algorithm) is refused before a path is built.
pub fn is_sha256_digest(digest: &str) -> bool {
    digest
        .strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// `sha256:<hex>` of `data`, as OCI names blobs.
pub fn sha256_digest(data: &[u8]) -> String {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(data);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The layers' annotations: each layer's title.
fn annotations(title: &Path) -> BTreeMap<String, String> {
    BTreeMap::from([(TITLE.to_string(), title.to_string_lossy().into_owned())])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("edgenn-oci-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn unpacked(artifact: &Artifact, dir: &Path) -> Result<Kind, ArtifactError> {
        let layers: Vec<(Option<String>, Vec<u8>)> =
            artifact.layers.iter().map(|l| (Some(l.title.to_string_lossy().into_owned()), l.data.clone())).collect();
        unpack(artifact.config_media_type, &layers, dir)
    }

    #[test]
    fn a_model_folder_packs_reproducibly_and_unpacks_to_the_same_files() {
        let model = repo().join("models/wordlm");
        let artifact = pack_model(&model).unwrap();
        let titles: Vec<&Path> = artifact.layers.iter().map(|l| l.title.as_path()).collect();
        assert_eq!(
            titles,
            [Path::new("model.toml"), "PROVENANCE.md".as_ref(), "model.onnx".as_ref(), "vocab.txt".as_ref()]
        );
        assert_eq!(artifact.layers[2].media_type, ONNX_MEDIA_TYPE);
        assert_eq!(pack_model(&model).unwrap().config, artifact.config, "no timestamps");
        let dir = scratch("model");
        assert_eq!(unpacked(&artifact, &dir).unwrap(), Kind::Model);
        for file in ["model.toml", "model.onnx", "vocab.txt"] {
            assert_eq!(std::fs::read(dir.join(file)).unwrap(), std::fs::read(model.join(file)).unwrap(), "{file}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_app_folder_packs_its_module_manifest_and_bundled_models() {
        let wasm = repo().join("guests/target/wasm32-wasip1/release/digits.wasm");
        let dir = scratch("app-src");
        std::fs::create_dir_all(dir.join("model")).unwrap();
        std::fs::copy(repo().join("guests/digits/model/digits.onnx"), dir.join("model/digits.onnx")).unwrap();
        let manifest = format!(
            "name = \"digits\"\nwasm = \"{}\"\n[[bundled_models]]\nname = \"digits\"\nfile = \"./model/digits.onnx\"\nbackend = \"tract\"\n",
            wasm.display()
        );
        std::fs::write(dir.join("edgenn.toml"), manifest).unwrap();
        let artifact = pack_app(&dir).unwrap();
        let config: serde_json::Value = serde_json::from_slice(&artifact.config).unwrap();
        assert_eq!((config["architecture"].as_str(), config["os"].as_str()), (Some("wasm"), Some("wasip1")));
        assert_eq!(config["created"], "1970-01-01T00:00:00Z", "oci-wasm requires it; fixed, for reproducible digests");
        assert_eq!(config["layerDigests"][0], sha256_digest(&std::fs::read(&wasm).unwrap()));
        let out = scratch("app-out");
        assert_eq!(unpacked(&artifact, &out).unwrap(), Kind::App);
        let stored = AppManifest::parse(&std::fs::read_to_string(out.join("edgenn.toml")).unwrap()).unwrap();
        assert_eq!(stored.wasm, Path::new("app.wasm"));
        assert_eq!(stored.bundled_models[0].file, Path::new("model/digits.onnx"));
        assert_eq!(std::fs::read(out.join("app.wasm")).unwrap(), std::fs::read(&wasm).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&out);
    }

    #[test]
    fn only_sha256_digests_are_taken() {
        let good = sha256_digest(b"x");
        assert!(is_sha256_digest(&good));
        for bad in [
            "../../../etc".to_string(),
            "sha256:../../../../tmp".to_string(),
            good.to_uppercase(),
            good.replace("sha256", "sha512"),
            format!("{good}0"),
            good[..good.len() - 1].to_string(),
            format!("{}/x", &good[..good.len() - 2]),
            String::new(),
        ] {
            assert!(!is_sha256_digest(&bad), "{bad:?}");
        }
    }

    #[test]
    fn unpacking_trusts_no_title_and_no_config() {
        let dir = scratch("hostile");
        let outside = dir.join("outside");
        for title in ["../outside", "/etc/passwd", ".hidden", "a/../../x", ""] {
            let layers = vec![(Some(title.to_string()), b"x".to_vec())];
            assert!(unpack(MODEL_CONFIG_MEDIA_TYPE, &layers, &dir.join("in")).is_err(), "{title:?}");
        }
        assert!(!outside.exists());
        let no_title = vec![(None, b"x".to_vec())];
        assert!(unpack(MODEL_CONFIG_MEDIA_TYPE, &no_title, &dir).is_err());
        let manifest_only = vec![(Some("model.toml".into()), b"x".to_vec())];
        assert!(unpack("application/vnd.oci.image.config.v1+json", &manifest_only, &dir).is_err(), "a container image");
        assert!(unpack(WASM_CONFIG_MEDIA_TYPE, &manifest_only, &dir).is_err(), "an app without its module");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
