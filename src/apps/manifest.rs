//! `edgenn.toml`: what an app is and what it may use.
//!
//! ```toml
//! name = "classify"
//! routes = ["/v1/classify"]          # besides /apps/<name>
//! wasm = "../target/wasm32-wasip1/release/classify.wasm"
//! models = ["efficientnet-lite0"]    # shared models the app may load, on any backend
//!
//! [[bundled_models]]                 # ONNX files shipped with the app, private to it
//! name = "digits"                    # what the guest passes to load_by_name
//! file = "model/digits.onnx"         # relative to this file
//! backend = "tract"
//!
//! [limits]
//! memory_mib = 256
//! deadline_ms = 10000
//! max_body_bytes = 20971520
//!
//! [config]                           # given to the guest as EDGENN_CONFIG_<KEY>
//! model = "efficientnet-lite0"
//! ```

use crate::nn::backend::BackendKind;
pub use crate::nn::manifest::ManifestError;
use crate::nn::manifest::{is_valid_name, parse_manifest, read_manifest};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const MANIFEST_FILE: &str = "edgenn.toml";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AppManifest {
    pub name: String,
    #[serde(default)]
    pub routes: Vec<String>,
    /// The module, relative to the manifest.
    pub wasm: PathBuf,
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub bundled_models: Vec<BundledModel>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// An ONNX model shipped inside the app's directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BundledModel {
    pub name: String,
    pub file: PathBuf,
    pub backend: BackendKind,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub memory_mib: usize,
    pub deadline_ms: u64,
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { memory_mib: 128, deadline_ms: 5_000, max_body_bytes: 10 << 20 }
    }
}

/// The largest limits a manifest may ask for.
pub const MAX_MEMORY_MIB: usize = 1024;
pub const MAX_DEADLINE_MS: u64 = 120_000;
pub const MAX_BODY_BYTES: usize = 256 << 20;

impl AppManifest {
    pub fn from_dir(dir: &Path) -> Result<Self, ManifestError> {
        read_manifest(&dir.join(MANIFEST_FILE), Self::parse)
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        parse_manifest(text, Self::validate)
    }

    fn validate(&self) -> Result<(), String> {
        if !is_valid_name(&self.name) {
            return Err(format!("app name {:?} must be 1-64 characters of a-z, 0-9, '-', '_' or '.'", self.name));
        }
        for route in &self.routes {
            let well_formed = route.starts_with('/')
                && route.len() > 1
                && !route.ends_with('/')
                && route.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b));
            if !well_formed || route.starts_with("/apps/") || route.starts_with("/admin") || route == "/metrics" {
                return Err(format!("route {route:?} must look like /v1/name and not be under /apps, /admin or /metrics"));
            }
        }
        for model in &self.models {
            if !is_valid_name(model) {
                return Err(format!("model name {model:?} is not valid"));
            }
        }
        for (i, bundled) in self.bundled_models.iter().enumerate() {
            if !is_valid_name(&bundled.name) {
                return Err(format!("bundled model name {:?} is not valid", bundled.name));
            }
            if self.models.contains(&bundled.name) || self.bundled_models[..i].iter().any(|b| b.name == bundled.name) {
                return Err(format!("model name {:?} is declared twice", bundled.name));
            }
            if !is_relative_inside(&bundled.file) {
                return Err(format!("bundled model file {:?} must be a relative path inside the app", bundled.file));
            }
        }
        let l = &self.limits;
        if !(1..=MAX_MEMORY_MIB).contains(&l.memory_mib) {
            return Err(format!("limits.memory_mib must be 1..={MAX_MEMORY_MIB}"));
        }
        if !(1..=MAX_DEADLINE_MS).contains(&l.deadline_ms) {
            return Err(format!("limits.deadline_ms must be 1..={MAX_DEADLINE_MS}"));
        }
        if !(1..=MAX_BODY_BYTES).contains(&l.max_body_bytes) {
            return Err(format!("limits.max_body_bytes must be 1..={MAX_BODY_BYTES}"));
        }
        for key in self.config.keys() {
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
                return Err(format!("config key {key:?} must be letters, digits, '_' or '-'"));
            }
        }
        Ok(())
    }
}

/// A relative path that stays inside its base directory (no `..`, no root).
pub fn is_relative_inside(path: &Path) -> bool {
    use std::path::Component;
    !path.as_os_str().is_empty() && path.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
        name = "classify"
        routes = ["/v1/classify"]
        wasm = "classify.wasm"
        models = ["efficientnet-lite0"]
        [limits]
        memory_mib = 256
        [config]
        model = "efficientnet-lite0"
        backend = "ort"
    "#;

    #[test]
    fn parses_with_defaults() {
        let m = AppManifest::parse(EXAMPLE).unwrap();
        assert_eq!(m.routes, vec!["/v1/classify"]);
        assert_eq!(m.limits.memory_mib, 256);
        assert_eq!(m.limits.deadline_ms, Limits::default().deadline_ms);
        assert_eq!(m.config["backend"], "ort");
    }

    #[test]
    fn parses_bundled_models() {
        let text = EXAMPLE.replace(
            "[limits]",
            "[[bundled_models]]\nname = \"digits\"\nfile = \"model/digits.onnx\"\nbackend = \"tract\"\n[limits]",
        );
        let m = AppManifest::parse(&text).unwrap();
        assert_eq!(m.bundled_models[0].name, "digits");
        assert_eq!(m.bundled_models[0].backend, BackendKind::Tract);
        assert!(is_relative_inside(Path::new("model/x.onnx")));
        assert!(!is_relative_inside(Path::new("/etc/x")));
        assert!(!is_relative_inside(Path::new("a/../../x")));
    }

    #[test]
    fn rejects_bad_routes_limits_and_fields() {
        for (from, to) in [
            ("/v1/classify", "/apps/x"),
            ("/v1/classify", "v1/classify"),
            ("/v1/classify", "/v1/classify/"),
            ("memory_mib = 256", "memory_mib = 0"),
            ("memory_mib = 256", "memory_mib = 999999"),
            ("backend = \"ort\"", "\"bad key\" = \"x\""),
            ("wasm = ", "unknown = 1\nwasm = "),
            ("[limits]", "[[bundled_models]]\nname = \"x\"\nfile = \"../x.onnx\"\nbackend = \"tract\"\n[limits]"),
            ("[limits]", "[[bundled_models]]\nname = \"efficientnet-lite0\"\nfile = \"x.onnx\"\nbackend = \"tract\"\n[limits]"),
        ] {
            let text = EXAMPLE.replace(from, to);
            assert!(AppManifest::parse(&text).is_err(), "accepted {to:?}");
        }
    }
}
