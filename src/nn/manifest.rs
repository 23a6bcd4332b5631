//! `models/<name>/model.toml`: what a model is, which backend serves it by default, and the
//! shapes of its inputs and outputs (inputs are addressed by index in that order).

use super::backend::BackendKind;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The file every model directory holds.
pub const MANIFEST_FILE: &str = "model.toml";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelManifest {
    pub name: String,
    /// The ONNX file, relative to the manifest.
    pub file: PathBuf,
    /// The backend `load_by_name("<name>")` uses.
    pub backend: BackendKind,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub inputs: Vec<TensorSpec>,
    #[serde(default)]
    pub outputs: Vec<TensorSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub element_type: String,
    pub shape: Vec<i64>,
}

/// A manifest file (a model's `model.toml` or an app's `edgenn.toml`) that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid manifest {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Reads the TOML manifest at `path` and checks it with `parse`.
pub fn read_manifest<T>(path: &Path, parse: impl FnOnce(&str) -> Result<T, String>) -> Result<T, ManifestError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ManifestError::Read { path: path.to_path_buf(), source })?;
    parse(&text).map_err(|message| ManifestError::Invalid { path: path.to_path_buf(), message })
}

/// Deserialises a TOML manifest and checks it with `validate`.
pub fn parse_manifest<T: DeserializeOwned>(
    text: &str,
    validate: impl FnOnce(&T) -> Result<(), String>,
) -> Result<T, String> {
    let manifest: T = toml::from_str(text).map_err(|e| e.message().to_string())?;
    validate(&manifest)?;
    Ok(manifest)
}

impl ModelManifest {
    /// Reads `<dir>/model.toml` and checks it names a usable model.
    pub fn from_dir(dir: &Path) -> Result<Self, ManifestError> {
        read_manifest(&dir.join(MANIFEST_FILE), Self::parse)
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        parse_manifest(text, Self::validate)
    }

    fn validate(&self) -> Result<(), String> {
        if !is_valid_name(&self.name) {
            return Err(format!("model name {:?} must be 1-64 characters of a-z, 0-9, '-', '_' or '.'", self.name));
        }
        if self.file.is_absolute() || self.file.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            return Err(format!("model file {:?} must be a relative path inside the model directory", self.file));
        }
        Ok(())
    }
}

/// Names of models and apps: safe in URLs, file names and `model@backend` references.
pub fn is_valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
        name = "efficientnet-lite0"
        file = "model.onnx"
        backend = "ort"
        [[inputs]]
        name = "input"
        type = "f32"
        shape = [1, 3, 224, 224]
        [[outputs]]
        name = "logits"
        type = "f32"
        shape = [1, 1000]
    "#;

    #[test]
    fn parses_a_model_manifest() {
        let m = ModelManifest::parse(EXAMPLE).unwrap();
        assert_eq!(m.name, "efficientnet-lite0");
        assert_eq!(m.backend, BackendKind::Ort);
        assert_eq!(m.inputs[0].shape, vec![1, 3, 224, 224]);
        assert_eq!(m.outputs[0].name, "logits");
    }

    #[test]
    fn rejects_unknown_backends_and_escaping_paths() {
        let bad_backend = EXAMPLE.replace("\"ort\"", "\"cuda\"");
        assert!(ModelManifest::parse(&bad_backend).is_err());
        let escaping = EXAMPLE.replace("model.onnx", "../../etc/passwd");
        assert!(ModelManifest::parse(&escaping).unwrap_err().contains("relative path"));
        let bad_name = EXAMPLE.replace("efficientnet-lite0", "Bad Name");
        assert!(ModelManifest::parse(&bad_name).is_err());
    }

    #[test]
    fn names() {
        assert!(is_valid_name("wordlm"));
        assert!(is_valid_name("resnet-50_v1.5"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name(".hidden"));
        assert!(!is_valid_name("a/b"));
        assert!(!is_valid_name("x@ort"));
    }
}
