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
    /// The values an input can take, both ends included (`range = [0, 5999]`: the token ids of
    /// a 6000-word vocabulary). A tensor with a value outside it is refused before inference,
    /// alike on every backend: ONNX Runtime fails on an id past a `Gather`'s table, tract reads
    /// a negative one from the table's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<[f64; 2]>,
}

impl TensorSpec {
    /// The first element of `tensor` outside this input's `range`, with its index.
    pub fn out_of_range(&self, tensor: &wasmtime_wasi_nn::Tensor) -> Option<(usize, f64)> {
        use wasmtime_wasi_nn::wit::TensorType;
        let [min, max] = self.range?;
        fn values<'a, const N: usize>(
            data: &'a [u8],
            f: impl Fn([u8; N]) -> f64 + 'a,
        ) -> impl Iterator<Item = f64> + 'a {
            data.chunks_exact(N).map(move |chunk| f(chunk.try_into().expect("chunks of N")))
        }
        let values: Box<dyn Iterator<Item = f64> + '_> = match tensor.ty {
            TensorType::Fp32 => Box::new(values(&tensor.data, |b| f64::from(f32::from_le_bytes(b)))),
            TensorType::Fp64 => Box::new(values(&tensor.data, f64::from_le_bytes)),
            TensorType::I32 => Box::new(values(&tensor.data, |b| f64::from(i32::from_le_bytes(b)))),
            TensorType::I64 => Box::new(values(&tensor.data, |b| i64::from_le_bytes(b) as f64)),
            TensorType::U8 => Box::new(tensor.data.iter().map(|&b| f64::from(b))),
            // No backend takes half precision from a guest; nothing to check.
            TensorType::Fp16 | TensorType::Bf16 => return None,
        };
        // `contains` is false for NaN: not a value in any range.
        values.enumerate().find(|(_, value)| !(min..=max).contains(value))
    }
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
        for spec in self.inputs.iter().chain(&self.outputs) {
            if let Some([min, max]) = spec.range
                && !(min.is_finite() && max.is_finite() && min <= max)
            {
                return Err(format!(
                    "tensor {:?}: range [{min}, {max}] must be two finite numbers, low to high",
                    spec.name
                ));
            }
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
    fn ranges_are_checked_when_read_and_bound_the_values_an_input_takes() {
        use wasmtime_wasi_nn::Tensor;
        use wasmtime_wasi_nn::wit::TensorType;
        let ranged = EXAMPLE.replace("shape = [1, 3, 224, 224]", "shape = [1, 3]\nrange = [0, 5999]");
        let spec = ModelManifest::parse(&ranged).unwrap().inputs.remove(0);
        let ids = |values: &[i32]| Tensor::new(vec![1, 3], TensorType::I32, bytemuck::cast_slice(values).to_vec());
        assert_eq!(spec.out_of_range(&ids(&[0, 17, 5999])), None);
        assert_eq!(spec.out_of_range(&ids(&[0, 6000, 1])), Some((1, 6000.0)));
        assert_eq!(spec.out_of_range(&ids(&[0, 1, -1])), Some((2, -1.0)));
        let floats = Tensor::new(vec![1, 2], TensorType::Fp32, bytemuck::cast_slice(&[1.0f32, f32::NAN]).to_vec());
        assert_eq!(spec.out_of_range(&floats).map(|(index, _)| index), Some(1));
        for bad in ["[5999, 0]", "[0]", "[0, nan]", "[\"a\", 1]"] {
            let text = EXAMPLE.replace("shape = [1, 3, 224, 224]", &format!("shape = [1, 3]\nrange = {bad}"));
            assert!(ModelManifest::parse(&text).is_err(), "{bad}");
        }
        // Without a range, every value is taken.
        let open = ModelManifest::parse(EXAMPLE).unwrap().inputs.remove(0);
        assert_eq!(open.out_of_range(&ids(&[i32::MIN])), None);
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

/// `model.toml` from anywhere (an upload, an artifact): parsing never panics, and what parses
/// names a model by a valid name with a file inside its directory.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn any_text_parses_or_is_refused(text in "[ -~\n]{0,300}") {
            let _ = ModelManifest::parse(&text);
        }

        #[test]
        fn what_parses_is_confined(name in "[ -~]{0,20}", file in "[ -~]{0,30}", backend in "(ort|tract|cuda)",
                                   low in any::<f64>(), high in any::<f64>()) {
            let text = format!(
                "name = {name:?}\nfile = {file:?}\nbackend = {backend:?}\n[[inputs]]\nname = \"x\"\ntype = \"i32\"\nshape = [1]\nrange = [{low:?}, {high:?}]\n"
            );
            if let Ok(manifest) = ModelManifest::parse(&text) {
                prop_assert!(is_valid_name(&manifest.name));
                prop_assert!(!manifest.file.is_absolute());
                prop_assert!(!manifest.file.components().any(|c| matches!(c, std::path::Component::ParentDir)));
                let [min, max] = manifest.inputs[0].range.unwrap();
                prop_assert!(min <= max);
            }
        }
    }
}
