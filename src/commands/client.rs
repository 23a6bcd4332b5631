//! `edgenn deploy` and `edgenn model push`: send a local app folder (manifest, module, bundled
//! models) or model folder (model.toml and its files) to a running gateway's admin API as one
//! multipart request.

use crate::apps::manifest::{AppManifest, MANIFEST_FILE};
use crate::nn::manifest::{MANIFEST_FILE as MODEL_MANIFEST_FILE, ModelManifest};
use anyhow::{Context, bail};
use std::path::Path;

/// Deploys the app in `dir` to the gateway at `base_url` and returns its answer.
pub fn deploy(dir: &Path, base_url: &str, token: &str) -> anyhow::Result<serde_json::Value> {
    let manifest_text = std::fs::read_to_string(dir.join(MANIFEST_FILE))
        .with_context(|| format!("reading {}", dir.join(MANIFEST_FILE).display()))?;
    let manifest = AppManifest::parse(&manifest_text).map_err(|e| anyhow::anyhow!("invalid {MANIFEST_FILE}: {e}"))?;
    let wasm_path = dir.join(&manifest.wasm);
    let wasm = std::fs::read(&wasm_path)
        .with_context(|| format!("reading the module {} (build the app first)", wasm_path.display()))?;
    let mut form = Multipart::new();
    form.part("manifest", None, None, manifest_text.as_bytes());
    form.part("wasm", None, None, &wasm);
    for bundled in &manifest.bundled_models {
        let path = dir.join(&bundled.file);
        let bytes = std::fs::read(&path).with_context(|| format!("reading bundled model {}", path.display()))?;
        form.part("file", Some(&bundled.file.to_string_lossy()), None, &bytes);
    }
    upload(base_url, &format!("/admin/apps/{}", manifest.name), token, form)
}

/// Adds or replaces the model in `dir` (its `model.toml` and every file beside it) in the
/// repository of the gateway at `base_url` and returns its answer. The folder is read as
/// `edgenn push --model` reads it ([`crate::oci::pack_model`]): the same files, the same checks.
pub fn push_model(dir: &Path, base_url: &str, token: &str) -> anyhow::Result<serde_json::Value> {
    let artifact =
        crate::oci::pack_model(dir).map_err(|e| anyhow::anyhow!("{}: {}", dir.display(), crate::nn::describe(&e)))?;
    let (manifest, files) = artifact.layers.split_first().context("a packed model has its manifest first")?;
    let text = std::str::from_utf8(&manifest.data).context("model.toml is UTF-8")?;
    let name = ModelManifest::parse(text).map_err(|e| anyhow::anyhow!("invalid {MODEL_MANIFEST_FILE}: {e}"))?.name;
    let mut form = Multipart::new();
    form.part("manifest", None, None, &manifest.data);
    for file in files {
        form.part("file", Some(&file.title.to_string_lossy()), None, &file.data);
    }
    upload(base_url, &format!("/admin/models/{name}"), token, form)
}

/// Sends a multipart upload with PUT to `path` of the gateway's admin API.
fn upload(base_url: &str, path: &str, token: &str, form: Multipart) -> anyhow::Result<serde_json::Value> {
    let base = base_url.trim_end_matches('/');
    let url = format!("{base}{path}");
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    // The gateway refuses a wrong token before reading an upload, which would cut the upload
    // off mid-send: check the token with a small request first, for a clear answer.
    let list = format!("{base}/admin/apps");
    let mut check = agent
        .get(&list)
        .header("authorization", &format!("Bearer {token}"))
        .call()
        .with_context(|| format!("cannot reach {list}"))?;
    if !check.status().is_success() {
        let text = check.body_mut().read_to_string().unwrap_or_default();
        bail!("{list} answered {}: {text}", check.status());
    }
    let mut response = agent
        .put(&url)
        .header("authorization", &format!("Bearer {token}"))
        .header("content-type", &form.content_type())
        .send(&form.finish()[..])
        .with_context(|| format!("sending to {url}"))?;
    let status = response.status();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|_| serde_json::json!({ "error": text }));
    if !status.is_success() {
        bail!("{url} answered {status}: {}", json["error"].as_str().unwrap_or("(no message)"));
    }
    Ok(json)
}

/// A multipart/form-data body, built in memory (uploads are a module and a few models). The
/// tests build their uploads with it too.
pub struct Multipart {
    boundary: String,
    body: Vec<u8>,
}

impl Default for Multipart {
    fn default() -> Self {
        Self::new()
    }
}

impl Multipart {
    pub fn new() -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        Self { boundary: format!("edgenn-{nanos:x}-{}", std::process::id()), body: Vec::new() }
    }

    /// Adds a part, with a filename (`"` escaped as `%22`) and a content type if given.
    pub fn part(&mut self, name: &str, filename: Option<&str>, content_type: Option<&str>, data: &[u8]) -> &mut Self {
        let filename = filename.map(|f| format!("; filename=\"{}\"", f.replace('"', "%22"))).unwrap_or_default();
        let content_type = content_type.map(|t| format!("\r\nContent-Type: {t}")).unwrap_or_default();
        let head = format!(
            "--{}\r\nContent-Disposition: form-data; name=\"{name}\"{filename}{content_type}\r\n\r\n",
            self.boundary
        );
        self.body.extend_from_slice(head.as_bytes());
        self.body.extend_from_slice(data);
        self.body.extend_from_slice(b"\r\n");
        self
    }

    pub fn content_type(&self) -> String {
        format!("multipart/form-data; boundary={}", self.boundary)
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.body.extend_from_slice(format!("--{}--\r\n", self.boundary).as_bytes());
        self.body
    }
}
