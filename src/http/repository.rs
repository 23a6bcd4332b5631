//! The model repository over HTTP, behind the admin token: the admin API's own form and
//! Triton's repository extension, both onto [`crate::repository::ModelRepository`].
//!
//! ```text
//! GET    /admin/models                      every model: origin, state, what the store knows
//! GET    /admin/models/{name}               one model, with its manifest
//! PUT    /admin/models/{name}               add or replace: multipart with a `manifest` part
//!                                           (model.toml) and one `file` part per file of the
//!                                           model directory, its filename the relative path
//! DELETE /admin/models/{name}               remove a model added over HTTP
//! POST   /v2/repository/index               Triton: [{name, version, state, reason}]
//! POST   /v2/repository/models/{m}/load     Triton: put in service; with `file:<path>`
//!                                           parameters (base64), add or replace it
//! POST   /v2/repository/models/{m}/unload   Triton: take out of service, files kept
//! ```
//!
//! An upload is read into its own staging directory within the upload timeout before any
//! lock is taken; the repository then validates it (the model loads on its backend) and swaps
//! it in. As for apps, nothing an upload names is trusted: the name is checked at the edge and
//! by the store, file names are normalised and may not be hidden or `model.toml`, which is
//! written last from the validated manifest.

use super::admin::{MAX_MANIFEST_BYTES, Staged, admin_of, read_manifest_part, upload_error, write_file_part};
use super::error::ErrorBody;
use super::{ApiError, HttpState};
use crate::apps::CallError;
use crate::nn::backend::BackendKind;
use crate::nn::manifest::{MANIFEST_FILE, ModelManifest};
use crate::persist::{name_component, stored_file_path};
use crate::repository::Installed;
use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Map, Value, json};
use std::path::PathBuf;

pub fn router() -> Router<HttpState> {
    Router::new()
        .route("/admin/models", get(list))
        .route("/admin/models/{name}", get(inspect).put(put_model).delete(delete_model))
        .route("/v2/repository/index", post(triton_index))
        .route("/v2/repository/models/{model}/load", post(triton_load))
        .route("/v2/repository/models/{model}/unload", post(triton_unload))
}

/// The model name of the URL, by the same rule as a manifest's and the store's.
fn checked_name(name: &str) -> Result<&str, ApiError> {
    name_component(name).map_err(|_| {
        ApiError::BadRequest(format!(
            "model name {name:?} must be 1-64 characters of a-z, 0-9, '-', '_' or '.', not starting with '.'"
        ))
    })
}

/// Runs a blocking repository change (it loads models) off the executor.
async fn blocking<T: Send + 'static>(
    change: impl FnOnce() -> Result<T, crate::repository::RepositoryError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(change).await.map_err(|_| ApiError::Call(CallError::Panicked))?.map_err(ApiError::from)
}

#[utoipa::path(get, path = "/admin/models", tag = "admin", security(("bearer" = [])), responses((status = 200, description = "Every model of the repository, in service or not", body = serde_json::Value), (status = 401, description = "Missing or wrong token", body = ErrorBody)))]
async fn list(State(state): State<HttpState>) -> Json<Value> {
    Json(json!({ "models": state.repository.list() }))
}

#[utoipa::path(get, path = "/admin/models/{name}", tag = "admin", security(("bearer" = [])), params(("name" = String, Path)), responses((status = 200, description = "The model and, in service, its manifest", body = serde_json::Value), (status = 404, description = "Unknown model", body = ErrorBody)))]
async fn inspect(State(state): State<HttpState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let name = checked_name(&name)?;
    let entry = state.repository.entry(name).ok_or_else(|| ApiError::NotFound(format!("unknown model {name:?}")))?;
    let manifest = state.repository.models().shared_manifest(name);
    Ok(Json(json!({ "model": entry, "manifest": manifest })))
}

#[utoipa::path(put, path = "/admin/models/{name}", tag = "admin", security(("bearer" = [])), params(("name" = String, Path)), request_body(content_type = "multipart/form-data", description = "A `manifest` part (model.toml) and a `file` part per file of the model directory, named by its relative path"), responses((status = 201, description = "Added, loaded and in service", body = serde_json::Value), (status = 200, description = "Replaced", body = serde_json::Value), (status = 400, description = "A bad upload", body = ErrorBody), (status = 413, description = "Upload over the limit", body = ErrorBody), (status = 422, description = "The model does not load (it says why); the old one serves on", body = ErrorBody)))]
async fn put_model(
    State(state): State<HttpState>,
    Path(name): Path<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let name = checked_name(&name)?.to_string();
    let multipart =
        multipart.map_err(|e| ApiError::BadRequest(format!("expected a multipart/form-data upload: {e}")))?;
    let upload = admin_of(&state).upload;
    let staged = Staged(state.repository.stage()?);
    match tokio::time::timeout(upload.read_timeout, write_upload(&name, multipart, &staged.0, upload.max_bytes)).await {
        Ok(written) => written?,
        Err(_) => return Err(ApiError::BodyTimeout(upload.read_timeout)),
    }
    let Installed { manifest, replaced } = install(&state, name, staged).await?;
    let status = if replaced { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(json!({ "installed": manifest }))))
}

/// Validates and installs a complete staged upload.
async fn install(state: &HttpState, name: String, staged: Staged) -> Result<Installed, ApiError> {
    let repository = state.repository.clone();
    // `staged` moves along: it is removed if the install fails before it became a version.
    blocking(move || repository.install(&name, &staged.0)).await
}

#[utoipa::path(delete, path = "/admin/models/{name}", tag = "admin", security(("bearer" = [])), params(("name" = String, Path)), responses((status = 200, description = "Removed from service and the data directory; a models-directory model of that name serves again", body = serde_json::Value), (status = 404, description = "Unknown model", body = ErrorBody), (status = 409, description = "A model of the models directory, which the repository does not change", body = ErrorBody)))]
async fn delete_model(State(state): State<HttpState>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let name = checked_name(&name)?.to_string();
    let repository = state.repository.clone();
    let deleted = name.clone();
    blocking(move || repository.delete(&deleted)).await?;
    Ok(Json(json!({ "deleted": name })))
}

/// Writes a multipart model upload into `dir`: the files streamed to disk as they arrive, then
/// `model.toml`, from the validated manifest, last.
async fn write_upload(
    name: &str,
    mut multipart: Multipart,
    dir: &std::path::Path,
    max_bytes: usize,
) -> Result<(), ApiError> {
    let bad = |m: String| ApiError::BadRequest(m);
    let mut manifest: Option<ModelManifest> = None;
    let mut files: Vec<PathBuf> = Vec::new();
    while let Some(mut field) =
        multipart.next_field().await.map_err(|e| upload_error("malformed multipart body", e, max_bytes))?
    {
        match field.name().unwrap_or_default() {
            "manifest" => {
                let text = read_manifest_part(&mut field, max_bytes).await?;
                let parsed = ModelManifest::parse(&text).map_err(|e| bad(format!("invalid {MANIFEST_FILE}: {e}")))?;
                if parsed.name != name {
                    return Err(bad(format!("the manifest names model {:?}, the URL {name:?}", parsed.name)));
                }
                manifest = Some(parsed);
            }
            "file" => write_file_part(&mut field, dir, &[MANIFEST_FILE], &mut files, max_bytes).await?,
            other => return Err(bad(format!("unexpected part {other:?}: expected manifest or file"))),
        }
    }
    let manifest = manifest.ok_or_else(|| bad(format!("the upload has no `manifest` part ({MANIFEST_FILE})")))?;
    write_manifest(manifest, &files, dir)
}

/// Checks that the manifest's ONNX file is among the uploaded `files` and writes the manifest,
/// naming it as stored, into `dir`.
fn write_manifest(mut manifest: ModelManifest, files: &[PathBuf], dir: &std::path::Path) -> Result<(), ApiError> {
    let onnx = stored_file_path(&manifest.file.to_string_lossy(), &[MANIFEST_FILE])
        .filter(|path| files.contains(path))
        .ok_or_else(|| {
            ApiError::BadRequest(format!("model {:?} needs its file {:?} uploaded", manifest.name, manifest.file))
        })?;
    manifest.file = onnx;
    let text =
        toml::to_string(&manifest).map_err(|e| ApiError::BadRequest(format!("cannot store the manifest: {e}")))?;
    std::fs::write(dir.join(MANIFEST_FILE), text)?;
    Ok(())
}

/// The largest body an index or unload request needs: a few parameters.
const MAX_CONTROL_BODY_BYTES: usize = 64 << 10;

/// A Triton repository request's JSON body; an empty body is `{}`.
async fn control_body(state: &HttpState, body: Body, limit: usize) -> Result<Map<String, Value>, ApiError> {
    let bytes = super::read_body(body, limit, admin_of(state).upload.read_timeout).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::BadRequest("the request body must be a JSON object".into())),
        Err(e) => Err(ApiError::BadRequest(format!("the request body is not JSON: {e}"))),
    }
}

#[utoipa::path(post, path = "/v2/repository/index", tag = "v2", security(("bearer" = [])), request_body(content = serde_json::Value, description = "Optional: `{\"ready\": true}` lists only the models in service"), responses((status = 200, description = "Every model: name, version, state (`READY` or `UNAVAILABLE`) and reason", body = serde_json::Value), (status = 401, description = "Missing or wrong token", body = ErrorBody)))]
async fn triton_index(State(state): State<HttpState>, body: Body) -> Result<Json<Value>, ApiError> {
    let request = control_body(&state, body, MAX_CONTROL_BODY_BYTES).await?;
    let ready_only = match request.get("ready") {
        None => false,
        Some(Value::Bool(ready)) => *ready,
        Some(other) => return Err(ApiError::BadRequest(format!("\"ready\" must be true or false, not {other}"))),
    };
    let models: Vec<Value> = state
        .repository
        .list()
        .into_iter()
        .filter(|entry| !ready_only || entry.state == "READY")
        .map(|entry| {
            json!({
                "name": entry.name,
                "version": super::v2::VERSION,
                "state": entry.state,
                "reason": entry.reason.unwrap_or_default(),
            })
        })
        .collect();
    Ok(Json(Value::Array(models)))
}

#[utoipa::path(post, path = "/v2/repository/models/{model}/unload", tag = "v2", security(("bearer" = [])), params(("model" = String, Path)), responses((status = 200, description = "Out of service; its files are kept", body = serde_json::Value), (status = 404, description = "Unknown model", body = ErrorBody)))]
async fn triton_unload(
    State(state): State<HttpState>,
    Path(model): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let name = checked_name(&model)?.to_string();
    // `unload_dependents` has nothing to act on: no model depends on another here.
    control_body(&state, body, MAX_CONTROL_BODY_BYTES).await?;
    let repository = state.repository.clone();
    let unloaded = name.clone();
    blocking(move || repository.unload(&unloaded)).await?;
    Ok(Json(json!({ "unloaded": name })))
}

#[utoipa::path(post, path = "/v2/repository/models/{model}/load", tag = "v2", security(("bearer" = [])), params(("model" = String, Path)), request_body(content = serde_json::Value, description = "Optional `parameters`: `file:<path>` (base64) for each file of a model to add or replace, and `config` (Triton's model configuration as JSON: `backend` `onnxruntime` or `tract`, `default_model_filename`); or a `file:model.toml`"), responses((status = 200, description = "In service, loaded", body = serde_json::Value), (status = 400, description = "A bad request", body = ErrorBody), (status = 404, description = "Unknown model (and no files given)", body = ErrorBody), (status = 422, description = "The model does not load (it says why)", body = ErrorBody)))]
async fn triton_load(
    State(state): State<HttpState>,
    Path(model): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let name = checked_name(&model)?.to_string();
    let limit = admin_of(&state).upload.max_bytes;
    let mut request = control_body(&state, body, limit).await?;
    let parameters = match request.remove("parameters") {
        None => Map::new(),
        Some(Value::Object(parameters)) => parameters,
        Some(other) => return Err(ApiError::BadRequest(format!("\"parameters\" must be an object, not {other}"))),
    };
    let has_files = parameters.keys().any(|key| key.starts_with("file:"));
    if !has_files {
        if parameters.contains_key("config") {
            return Err(ApiError::BadRequest(format!(
                "a config alone changes nothing: edgenn reads a model's settings from its {MANIFEST_FILE}; send the model's files with it"
            )));
        }
        let repository = state.repository.clone();
        let loaded = name.clone();
        blocking(move || repository.load(&loaded)).await?;
        return Ok(Json(json!({ "loaded": name })));
    }
    let staged = Staged(state.repository.stage()?);
    let backends = state.repository.models().available_backends();
    let (dir, model_name) = (staged.0.clone(), name.clone());
    tokio::task::spawn_blocking(move || write_triton_files(&model_name, &parameters, &dir, &backends))
        .await
        .map_err(|_| ApiError::Call(CallError::Panicked))??;
    install(&state, name.clone(), staged).await?;
    Ok(Json(json!({ "loaded": name })))
}

/// Writes the `file:<path>` parameters of a Triton load request into `dir` as a model
/// directory, with a `model.toml`: the one sent, or one made from the Triton `config`.
fn write_triton_files(
    name: &str,
    parameters: &Map<String, Value>,
    dir: &std::path::Path,
    backends: &[BackendKind],
) -> Result<(), ApiError> {
    let bad = |m: String| ApiError::BadRequest(m);
    let mut files: Vec<PathBuf> = Vec::new();
    let mut sent_manifest: Option<String> = None;
    for (key, value) in parameters {
        let Some(given) = key.strip_prefix("file:") else { continue };
        let encoded = value.as_str().ok_or_else(|| bad(format!("parameter {key:?} must be a base64 string")))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| bad(format!("parameter {key:?} is not base64: {e}")))?;
        if std::path::Path::new(given) == std::path::Path::new(MANIFEST_FILE) {
            if bytes.len() > MAX_MANIFEST_BYTES {
                return Err(ApiError::PayloadTooLarge(MAX_MANIFEST_BYTES));
            }
            sent_manifest = Some(String::from_utf8(bytes).map_err(|_| bad(format!("{MANIFEST_FILE} is not UTF-8")))?);
            continue;
        }
        let path = stored_file_path(given, &[MANIFEST_FILE])
            .ok_or_else(|| bad(format!("file name {given:?} must be a relative path inside the model")))?;
        if files.contains(&path) {
            return Err(bad(format!("file {path:?} is given twice")));
        }
        if let Some(parent) = dir.join(&path).parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(dir.join(&path), bytes)?;
        files.push(path);
    }
    let manifest = match sent_manifest {
        Some(text) => {
            let manifest = ModelManifest::parse(&text).map_err(|e| bad(format!("invalid {MANIFEST_FILE}: {e}")))?;
            if manifest.name != name {
                return Err(bad(format!("the manifest names model {:?}, the URL {name:?}", manifest.name)));
            }
            manifest
        }
        None => manifest_from_config(name, parameters.get("config"), &files, backends)?,
    };
    write_manifest(manifest, &files, dir)
}

/// A `model.toml` for a Triton load request without one: the backend from the config's
/// `backend` (`onnxruntime`, `tract`) or `platform` (`onnxruntime_onnx`), else ONNX Runtime
/// where this gateway has it; the ONNX file as Triton finds it (`1/model.onnx`, or the
/// config's `default_model_filename`), or the one `.onnx` file sent.
fn manifest_from_config(
    name: &str,
    config: Option<&Value>,
    files: &[PathBuf],
    backends: &[BackendKind],
) -> Result<ModelManifest, ApiError> {
    let bad = |m: String| ApiError::BadRequest(m);
    let config = match config {
        None => Value::Object(Map::new()),
        Some(Value::String(text)) => {
            serde_json::from_str(text).map_err(|e| bad(format!("\"config\" is not a JSON model configuration: {e}")))?
        }
        Some(object @ Value::Object(_)) => object.clone(),
        Some(other) => return Err(bad(format!("\"config\" must be a JSON model configuration, not {other}"))),
    };
    if let Some(named) = config.get("name").and_then(Value::as_str).filter(|named| *named != name) {
        return Err(bad(format!("the config names model {named:?}, the URL {name:?}")));
    }
    let backend = match (config.get("backend").and_then(Value::as_str), config.get("platform").and_then(Value::as_str))
    {
        (Some("onnxruntime"), _) | (None, Some("onnxruntime_onnx")) => BackendKind::Ort,
        (Some("tract"), _) => BackendKind::Tract,
        (None, None) if backends.contains(&BackendKind::Ort) => BackendKind::Ort,
        (None, None) => BackendKind::Tract,
        (backend, platform) => {
            return Err(bad(format!(
                "backend {backend:?}, platform {platform:?}: edgenn runs ONNX models on \"onnxruntime\" or \"tract\""
            )));
        }
    };
    let default_name = config.get("default_model_filename").and_then(Value::as_str).unwrap_or("model.onnx");
    let onnx: Vec<&PathBuf> = files.iter().filter(|f| f.extension().is_some_and(|e| e == "onnx")).collect();
    let file = [PathBuf::from(super::v2::VERSION).join(default_name), PathBuf::from(default_name)]
        .into_iter()
        .find(|candidate| files.contains(candidate))
        .or_else(|| match onnx.as_slice() {
            [only] => Some((*only).clone()),
            _ => None,
        })
        .ok_or_else(|| {
            bad(format!("no model file: send \"file:1/{default_name}\" (or one .onnx file, or a {MANIFEST_FILE})"))
        })?;
    Ok(ModelManifest {
        name: name.to_string(),
        file,
        backend,
        description: Some("added through Triton's repository extension".to_string()),
        inputs: Vec::new(),
        outputs: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_triton_config_maps_to_a_backend_and_a_file() {
        let files = vec![PathBuf::from("1/model.onnx"), PathBuf::from("labels.txt")];
        let both = [BackendKind::Tract, BackendKind::Ort];
        let config = |text: &str| Value::String(text.to_string());
        let manifest = manifest_from_config("m", Some(&config(r#"{"backend":"onnxruntime"}"#)), &files, &both).unwrap();
        assert_eq!((manifest.backend, manifest.file), (BackendKind::Ort, PathBuf::from("1/model.onnx")));
        let manifest = manifest_from_config("m", Some(&config(r#"{"backend":"tract"}"#)), &files, &both).unwrap();
        assert_eq!(manifest.backend, BackendKind::Tract);
        let manifest = manifest_from_config("m", Some(&config(r#"{"platform":"onnxruntime_onnx"}"#)), &files, &both);
        assert_eq!(manifest.unwrap().backend, BackendKind::Ort);
        // No config: ONNX Runtime where there is one.
        assert_eq!(manifest_from_config("m", None, &files, &both).unwrap().backend, BackendKind::Ort);
        assert_eq!(manifest_from_config("m", None, &files, &[BackendKind::Tract]).unwrap().backend, BackendKind::Tract);
        let renamed = vec![PathBuf::from("1/digits.onnx")];
        let manifest =
            manifest_from_config("m", Some(&config(r#"{"default_model_filename":"digits.onnx"}"#)), &renamed, &both);
        assert_eq!(manifest.unwrap().file, PathBuf::from("1/digits.onnx"));
        // The one .onnx file sent, whatever its name.
        assert_eq!(manifest_from_config("m", None, &renamed, &both).unwrap().file, PathBuf::from("1/digits.onnx"));
        for (config_text, files) in [
            (r#"{"backend":"tensorrt"}"#, files.clone()),
            (r#"{"platform":"tensorflow_savedmodel"}"#, files.clone()),
            (r#"{"name":"other"}"#, files.clone()),
            ("not json", files),
            ("{}", vec![PathBuf::from("a.onnx"), PathBuf::from("b.onnx")]),
            ("{}", vec![PathBuf::from("labels.txt")]),
        ] {
            let refused = manifest_from_config("m", Some(&config(config_text)), &files, &both);
            assert!(matches!(refused, Err(ApiError::BadRequest(_))), "{config_text} {files:?}: {refused:?}");
        }
    }
}
