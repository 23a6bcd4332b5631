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
//! memory_mib = 256                   # linear memory plus what wasi-nn holds on the host for it
//! deadline_ms = 10000                # the whole request: guest code, sleeps, inference
//! max_body_bytes = 20971520
//! max_concurrency = 8                # requests of this app running at once (as many may wait)
//!
//! # components only: origins wasi:http/outgoing-handler may reach (Spin's form; none by default)
//! allowed_outbound_hosts = ["https://api.example.com", "http://127.0.0.1:*"]
//!
//! [config]                           # given to the guest as EDGENN_CONFIG_<KEY>
//! model = "efficientnet-lite0"
//! ```

use crate::nn::backend::BackendKind;
pub use crate::nn::manifest::ManifestError;
use crate::nn::manifest::{is_valid_name, parse_manifest, read_manifest};
use crate::runtime::outbound::{AllowedOrigin, MAX_ORIGINS};
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
    /// Origins a component may send HTTP requests to (`runtime::outbound`).
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
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
    /// Requests of this app that run at once; as many again may wait for a turn, and beyond
    /// that the app answers 429. One app cannot take every instance slot of the gateway.
    pub max_concurrency: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { memory_mib: 128, deadline_ms: 5_000, max_body_bytes: 10 << 20, max_concurrency: 8 }
    }
}

/// The largest limits a manifest may ask for.
pub const MAX_MEMORY_MIB: usize = 1024;
pub const MAX_DEADLINE_MS: u64 = 120_000;
pub const MAX_BODY_BYTES: usize = 256 << 20;
pub const MAX_CONCURRENCY: usize = 256;

/// `[config]` is handed to every request as environment variables: it must stay small.
pub const MAX_CONFIG_KEYS: usize = 64;
pub const MAX_CONFIG_KEY_BYTES: usize = 64;
pub const MAX_CONFIG_BYTES: usize = 32 << 10;

/// Routes are at most this long, so looking one up costs a bounded number of hash lookups
/// whatever the request path (see `Apps::route_for`).
pub const MAX_ROUTE_BYTES: usize = 128;

/// Paths the gateway serves itself, with what serves them. An app route may be none of them
/// nor lie below one (it would be shadowed, or shadow a built-in).
pub const BUILT_IN_ROUTES: [(&str, &str); 9] = [
    ("/apps", "the per-app routes /apps/<name>"),
    ("/admin", "the admin API"),
    ("/metrics", "the metrics endpoint"),
    ("/healthz", "the health check"),
    ("/v1/models", "the model list"),
    ("/v1/apps", "the app list"),
    ("/demo", "the demo page"),
    ("/v2", "the Open Inference Protocol"),
    ("/openapi.json", "the OpenAPI document"),
];

/// Whether `route` is `prefix` or a path below it (`/v1/a/b` is below `/v1/a`, `/v1/ab` is not).
pub fn is_at_or_below(route: &str, prefix: &str) -> bool {
    route.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The module file of a stored (uploaded) app: the admin API writes every module under it.
pub const STORED_WASM_FILE: &str = "app.wasm";

impl AppManifest {
    pub fn from_dir(dir: &Path) -> Result<Self, ManifestError> {
        read_manifest(&dir.join(MANIFEST_FILE), Self::parse)
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        parse_manifest(text, Self::validate)
    }

    /// Reads an app the admin API stored: it must be the app its directory is named after, and
    /// its module must be the stored one, whatever else is in the directory.
    pub fn from_stored_dir(dir: &Path, name: &str) -> Result<Self, ManifestError> {
        let manifest = Self::from_artifact_dir(dir)?;
        if manifest.name != name {
            let message = format!("names app {:?} but is stored as {name:?}", manifest.name);
            return Err(ManifestError::Invalid { path: dir.join(MANIFEST_FILE), message });
        }
        Ok(manifest)
    }

    /// Reads an app that came from outside as a folder (an OCI artifact, a stored upload): its
    /// module must be the folder's own `app.wasm`, whatever path its author wrote, so that a
    /// manifest never makes the gateway run a file of the host.
    pub fn from_artifact_dir(dir: &Path) -> Result<Self, ManifestError> {
        let manifest = Self::from_dir(dir)?;
        if manifest.wasm != Path::new(STORED_WASM_FILE) {
            let message = format!("module {:?} is not the app's own {STORED_WASM_FILE}", manifest.wasm);
            return Err(ManifestError::Invalid { path: dir.join(MANIFEST_FILE), message });
        }
        Ok(manifest)
    }

    fn validate(&self) -> Result<(), String> {
        if !is_valid_name(&self.name) {
            return Err(format!("app name {:?} must be 1-64 characters of a-z, 0-9, '-', '_' or '.'", self.name));
        }
        for route in &self.routes {
            let well_formed = route.starts_with('/')
                && (2..=MAX_ROUTE_BYTES).contains(&route.len())
                && !route.ends_with('/')
                && !route.contains("//")
                && route.split('/').all(|segment| segment != "." && segment != "..")
                && route.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b));
            if !well_formed {
                return Err(format!("route {route:?} must look like /v1/name (at most {MAX_ROUTE_BYTES} characters)"));
            }
            if let Some((builtin, owner)) = BUILT_IN_ROUTES.iter().find(|(builtin, _)| is_at_or_below(route, builtin)) {
                return Err(format!("route {route:?} is served by the gateway itself ({builtin}: {owner})"));
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
        if !(1..=MAX_CONCURRENCY).contains(&l.max_concurrency) {
            return Err(format!("limits.max_concurrency must be 1..={MAX_CONCURRENCY}"));
        }
        if self.allowed_outbound_hosts.len() > MAX_ORIGINS {
            return Err(format!("allowed_outbound_hosts may list at most {MAX_ORIGINS} origins"));
        }
        self.outbound_origins()?;
        if self.config.len() > MAX_CONFIG_KEYS {
            return Err(format!("[config] has {} keys; at most {MAX_CONFIG_KEYS} are allowed", self.config.len()));
        }
        let mut config_bytes = 0;
        for (key, value) in &self.config {
            if key.is_empty()
                || key.len() > MAX_CONFIG_KEY_BYTES
                || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(format!("config key {key:?} must be 1-{MAX_CONFIG_KEY_BYTES} letters, digits, '_' or '-'"));
            }
            if value.contains('\0') {
                return Err(format!("config value of {key:?} contains a NUL character"));
            }
            config_bytes += key.len() + value.len();
        }
        if config_bytes > MAX_CONFIG_BYTES {
            return Err(format!("[config] is {config_bytes} bytes; at most {MAX_CONFIG_BYTES} are allowed"));
        }
        Ok(())
    }
}

impl AppManifest {
    /// `allowed_outbound_hosts`, parsed.
    pub fn outbound_origins(&self) -> Result<Vec<AllowedOrigin>, String> {
        self.allowed_outbound_hosts.iter().map(|origin| AllowedOrigin::parse(origin)).collect()
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
            ("memory_mib = 256", "max_concurrency = 0"),
            ("/v1/classify", "/healthz"),
            ("/v1/classify", "/v1/models/mine"),
            ("/v1/classify", "/metrics"),
            ("/v1/classify", "/demo"),
            ("/v1/classify", "/admin/x"),
            ("/v1/classify", "/v1/../admin"),
            ("/v1/classify", "/v1//x"),
            ("backend = \"ort\"", "\"bad key\" = \"x\""),
            ("wasm = ", "unknown = 1\nwasm = "),
            ("wasm = ", "allowed_outbound_hosts = [\"api.example.com\"]\nwasm = "),
            ("[limits]", "[[bundled_models]]\nname = \"x\"\nfile = \"../x.onnx\"\nbackend = \"tract\"\n[limits]"),
            (
                "[limits]",
                "[[bundled_models]]\nname = \"efficientnet-lite0\"\nfile = \"x.onnx\"\nbackend = \"tract\"\n[limits]",
            ),
        ] {
            let text = EXAMPLE.replace(from, to);
            assert!(AppManifest::parse(&text).is_err(), "accepted {to:?}");
        }
        // A prefix that only shares characters, not a segment, is not a built-in's.
        assert!(AppManifest::parse(&EXAMPLE.replace("/v1/classify", "/v1/modelsx")).is_ok());
        assert!(AppManifest::parse(&EXAMPLE.replace("/v1/classify", "/administrator")).is_ok());
        let outbound = EXAMPLE.replace("wasm = ", "allowed_outbound_hosts = [\"http://127.0.0.1:*\"]\nwasm = ");
        assert_eq!(AppManifest::parse(&outbound).unwrap().outbound_origins().unwrap().len(), 1);
    }

    #[test]
    fn config_is_bounded() {
        let many: String = (0..=MAX_CONFIG_KEYS).map(|i| format!("k{i} = \"v\"\n")).collect();
        let text = EXAMPLE.replace("backend = \"ort\"", &many);
        let error = AppManifest::parse(&text).unwrap_err();
        assert!(error.contains("keys"), "{error}");
        let big = format!("big = \"{}\"", "x".repeat(MAX_CONFIG_BYTES));
        assert!(AppManifest::parse(&EXAMPLE.replace("backend = \"ort\"", &big)).is_err());
    }
}

/// `edgenn.toml` from anywhere (an upload, an artifact): parsing never panics, and what parses
/// has a valid name, routes that start with `/`, and limits in their bounds.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Any text, and text shaped like a manifest with any values in it.
        #[test]
        fn what_parses_is_within_bounds(noise in "[ -~\n]{0,300}", name in "[ -~]{0,20}", route in "[ -~]{0,40}",
                                        wasm in "[ -~]{0,30}", deadline in any::<i64>(), memory in any::<i64>(),
                                        origin in "[ -~]{0,40}") {
            let shaped = format!(
                "name = {name:?}\nroutes = [{route:?}]\nwasm = {wasm:?}\nallowed_outbound_hosts = [{origin:?}]\n[limits]\ndeadline_ms = {deadline}\nmemory_mib = {memory}\n"
            );
            for manifest in [noise, shaped].iter().filter_map(|text| AppManifest::parse(text).ok()) {
                prop_assert!(is_valid_name(&manifest.name));
                prop_assert!(manifest.routes.iter().all(|r| r.starts_with('/')));
                prop_assert!((1..=MAX_DEADLINE_MS).contains(&manifest.limits.deadline_ms));
                prop_assert!(manifest.outbound_origins().is_ok());
            }
        }
    }
}
