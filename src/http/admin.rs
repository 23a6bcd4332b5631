//! The admin API: deploy, replace, inspect and delete apps at run time, behind a bearer token.
//! The model repository's routes (`/admin/models`, `/v2/repository`) are in
//! [`super::repository`], behind the same token.
//!
//! ```text
//! GET    /admin/apps           list
//! GET    /admin/apps/{name}    one app, with its manifest
//! PUT    /admin/apps/{name}    create or replace: multipart with parts `manifest` (edgenn.toml),
//!                              `wasm` (the module) and one `file` part per bundled model, its
//!                              filename the path the manifest gives
//! DELETE /admin/apps/{name}    remove
//! ```
//!
//! A deploy is written to a new version directory, validated (manifest, module compiles and
//! links, declared models exist, bundled models load) and only then made current on disk and
//! live in memory; a refused deploy changes nothing and answers 4xx with the reason.
//!
//! An upload is read into its own staging directory before the deploy lock is taken, within
//! the upload timeout: a stalled upload holds nothing another deploy needs. What an upload
//! names is never trusted: every app name is checked at the edge and again by the store, a
//! bundled file's name is normalised and may not be one the gateway writes itself, and the
//! manifest and module are written last, from the validated values.

use super::error::ErrorBody;
use super::{ApiError, HttpState};
use crate::apps::CallError;
use crate::apps::manifest::{AppManifest, MANIFEST_FILE, STORED_WASM_FILE};
use crate::persist::{VersionStore, name_component, stored_file_path};
use axum::Json;
use axum::extract::multipart::{Field, MultipartError, MultipartRejection};
use axum::extract::{DefaultBodyLimit, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use axum::{Router, middleware};
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// What one admin upload may be.
#[derive(Debug, Clone, Copy)]
pub struct UploadLimits {
    pub max_bytes: usize,
    pub read_timeout: Duration,
}

pub struct Admin {
    token: Option<String>,
    store: VersionStore,
    /// One deploy at a time: versions of one app must not interleave. Held only while a
    /// complete upload is validated and swapped in, never while one is read.
    deploying: tokio::sync::Mutex<()>,
    pub(super) upload: UploadLimits,
}

impl Admin {
    pub fn new(token: Option<String>, store: VersionStore, upload: UploadLimits) -> Self {
        Self { token: token.filter(|t| !t.is_empty()), store, deploying: tokio::sync::Mutex::new(()), upload }
    }
}

pub fn router(admin: Arc<Admin>) -> Router<HttpState> {
    let limit = admin.upload.max_bytes;
    Router::new()
        .route("/admin/apps", get(list))
        .route("/admin/apps/{name}", get(inspect).put(deploy).delete(remove))
        .merge(super::repository::router())
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(admin, authorize))
}

async fn authorize(State(admin): State<Arc<Admin>>, request: Request, next: Next) -> Result<Response, ApiError> {
    let Some(token) = &admin.token else {
        return Err(ApiError::AdminDisabled);
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !bool::from(presented.as_bytes().ct_eq(token.as_bytes())) {
        return Err(ApiError::Unauthorized);
    }
    Ok(next.run(request).await)
}

pub(super) fn admin_of(state: &HttpState) -> &Arc<Admin> {
    state.admin.as_ref().expect("admin routes exist only with an admin state")
}

/// The app name of the URL, by the same rule as a manifest's and the store's.
fn checked_name(name: &str) -> Result<&str, ApiError> {
    name_component(name).map_err(|_| {
        ApiError::BadRequest(format!(
            "app name {name:?} must be 1-64 characters of a-z, 0-9, '-', '_' or '.', not starting with '.'"
        ))
    })
}

#[utoipa::path(get, path = "/admin/apps", tag = "admin", security(("bearer" = [])), responses((status = 200, description = "Deployed apps", body = serde_json::Value), (status = 401, description = "Missing or wrong token", body = ErrorBody)))]
async fn list(State(state): State<HttpState>) -> Json<serde_json::Value> {
    Json(json!({ "apps": state.apps.list() }))
}

#[utoipa::path(get, path = "/admin/apps/{name}", tag = "admin", security(("bearer" = [])), params(("name" = String, Path)), responses((status = 200, description = "The app and its manifest", body = serde_json::Value), (status = 404, description = "Unknown app", body = ErrorBody)))]
async fn inspect(
    State(state): State<HttpState>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let name = checked_name(&name)?;
    let app = state.apps.get(name).ok_or_else(|| ApiError::NotFound(format!("unknown app {name:?}")))?;
    Ok(Json(json!({ "app": app.info(), "manifest": app.manifest })))
}

#[utoipa::path(delete, path = "/admin/apps/{name}", tag = "admin", security(("bearer" = [])), params(("name" = String, Path)), responses((status = 200, description = "Removed, from memory and the data directory", body = serde_json::Value), (status = 404, description = "Unknown app", body = ErrorBody), (status = 409, description = "An app the fleet serves (`fleet_owned`)", body = ErrorBody)))]
async fn remove(State(state): State<HttpState>, Path(name): Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    let name = checked_name(&name)?;
    refuse_fleets(&state, name)?;
    let admin = admin_of(&state);
    let _guard = admin.deploying.lock().await;
    let on_disk = admin.store.remove(name)?;
    let live = state.apps.remove(name).is_some();
    if !on_disk && !live {
        return Err(ApiError::NotFound(format!("unknown app {name:?}")));
    }
    Ok(Json(json!({ "deleted": name })))
}

/// An app the fleet serves is the fleet's: changed only through the fleet file (409).
fn refuse_fleets(state: &HttpState, name: &str) -> Result<(), ApiError> {
    match &state.fleet {
        Some(fleet) if fleet.serves_app(name) => Err(ApiError::FleetOwned(name.to_string())),
        _ => Ok(()),
    }
}

#[utoipa::path(put, path = "/admin/apps/{name}", tag = "admin", security(("bearer" = [])), params(("name" = String, Path)), request_body(content_type = "multipart/form-data", description = "Parts `manifest` (edgenn.toml), `wasm` (module or component) and the files the manifest names"), responses((status = 201, description = "Deployed", body = serde_json::Value), (status = 200, description = "Replaced", body = serde_json::Value), (status = 400, description = "A bad upload", body = ErrorBody), (status = 413, description = "Upload over the limit", body = ErrorBody), (status = 409, description = "An app the fleet serves (`fleet_owned`)", body = ErrorBody), (status = 422, description = "Refused by validation (it says why)", body = ErrorBody)))]
async fn deploy(
    State(state): State<HttpState>,
    Path(name): Path<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let name = checked_name(&name)?.to_string();
    refuse_fleets(&state, &name)?;
    let multipart =
        multipart.map_err(|e| ApiError::BadRequest(format!("expected a multipart/form-data upload: {e}")))?;
    let admin = admin_of(&state).clone();
    let staged = Staged(admin.store.stage()?);
    let timeout = admin.upload.read_timeout;
    match tokio::time::timeout(timeout, write_upload(&name, multipart, &staged.0, admin.upload.max_bytes)).await {
        Ok(written) => written?,
        Err(_) => return Err(ApiError::BodyTimeout(timeout)),
    }
    let _guard = admin.deploying.lock().await;
    let replaced = admin.store.has_current(&name)?;
    let version = admin.store.add_version(&name, &staged.0)?;
    let apps = state.apps.clone();
    let (version_dir, app_name) = (version.clone(), name.clone());
    let deployed = tokio::task::spawn_blocking(move || apps.deploy_stored(&version_dir, &app_name))
        .await
        .map_err(|_| ApiError::Call(CallError::Panicked))?;
    match deployed {
        Ok(app) => {
            admin.store.make_current(&name, &version)?;
            let status = if replaced { StatusCode::OK } else { StatusCode::CREATED };
            Ok((status, Json(json!({ "deployed": app.info() }))))
        }
        Err(error) => {
            admin.store.discard(&version);
            Err(ApiError::DeployRefused(error))
        }
    }
}

/// A staging directory, removed when the deploy ends before it became a version (a refused
/// upload, or a client that went away mid-upload).
pub(super) struct Staged(pub(super) PathBuf);

impl Drop for Staged {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A multipart error as the client should see it: over the size limit is 413.
pub(super) fn upload_error(what: &str, error: MultipartError, max_bytes: usize) -> ApiError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(max_bytes)
    } else {
        ApiError::BadRequest(format!("{what}: {}", error.body_text()))
    }
}

/// A bundled file's name as a relative path of normal components (`./a//b` is `a/b`), or
/// `None` when it would leave the app directory or is a file the gateway writes itself.
fn bundled_file_path(file_name: &str) -> Option<PathBuf> {
    stored_file_path(file_name, &[MANIFEST_FILE, STORED_WASM_FILE])
}

/// Where the module part is streamed while the upload arrives; renamed to the stored module
/// once everything is validated. Hidden, so no bundled file can be named like it.
const UPLOADING_WASM: &str = ".app.wasm.part";

/// A manifest is text with a bounded `[config]`; no valid one comes near this.
pub(super) const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// Streams one part to `target`, creating its directories. Nothing is flushed here:
/// `VersionStore::add_version` flushes the whole staged directory before it goes live.
pub(super) async fn write_part(
    field: &mut Field<'_>,
    target: &std::path::Path,
    max_bytes: usize,
) -> Result<(), ApiError> {
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| ApiError::BadRequest(format!("cannot store {}: {e}", target.display())))?;
    }
    let mut file = std::fs::File::create(target)?;
    while let Some(chunk) = field.chunk().await.map_err(|e| upload_error("cannot read a part", e, max_bytes))? {
        file.write_all(&chunk)?;
    }
    Ok(())
}

/// Streams a `file` part into `dir` under its normalised file name (never one of `reserved`,
/// never twice) and adds that name to `files`.
pub(super) async fn write_file_part(
    field: &mut Field<'_>,
    dir: &std::path::Path,
    reserved: &[&str],
    files: &mut Vec<PathBuf>,
    max_bytes: usize,
) -> Result<(), ApiError> {
    let given = field.file_name().unwrap_or_default().to_string();
    let path = stored_file_path(&given, reserved).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "file name {given:?} must be a relative path inside the upload, not hidden, not {}",
            reserved.join(" or ")
        ))
    })?;
    if files.contains(&path) {
        return Err(ApiError::BadRequest(format!("file {path:?} is uploaded twice")));
    }
    write_part(field, &dir.join(&path), max_bytes).await?;
    files.push(path);
    Ok(())
}

/// Reads the manifest part, refusing one over [`MAX_MANIFEST_BYTES`] before holding it.
pub(super) async fn read_manifest_part(field: &mut Field<'_>, max_bytes: usize) -> Result<String, ApiError> {
    let mut text = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|e| upload_error("cannot read the manifest", e, max_bytes))? {
        if text.len() + chunk.len() > MAX_MANIFEST_BYTES {
            return Err(ApiError::PayloadTooLarge(MAX_MANIFEST_BYTES));
        }
        text.extend_from_slice(&chunk);
    }
    String::from_utf8(text).map_err(|_| ApiError::BadRequest(format!("{MANIFEST_FILE} is not UTF-8")))
}

/// Writes the multipart upload into `dir` as an app directory: the module and the bundled
/// files streamed to disk as they arrive (the module under a hidden name), then, once all is
/// validated, the module renamed into place and `edgenn.toml` (with `wasm` naming the stored
/// module) written last, so no part can overwrite what was validated.
async fn write_upload(
    name: &str,
    mut multipart: Multipart,
    dir: &std::path::Path,
    max_bytes: usize,
) -> Result<(), ApiError> {
    let bad = |m: String| ApiError::BadRequest(m);
    let mut manifest: Option<AppManifest> = None;
    let mut wasm = false;
    let mut files: Vec<PathBuf> = Vec::new();
    while let Some(mut field) =
        multipart.next_field().await.map_err(|e| upload_error("malformed multipart body", e, max_bytes))?
    {
        let field_name = field.name().unwrap_or_default().to_string();
        match field_name.as_str() {
            "manifest" => {
                let text = read_manifest_part(&mut field, max_bytes).await?;
                let parsed = AppManifest::parse(&text).map_err(|e| bad(format!("invalid {MANIFEST_FILE}: {e}")))?;
                if parsed.name != name {
                    return Err(bad(format!("the manifest names app {:?}, the URL {name:?}", parsed.name)));
                }
                manifest = Some(parsed);
            }
            "wasm" => {
                write_part(&mut field, &dir.join(UPLOADING_WASM), max_bytes).await?;
                wasm = true;
            }
            "file" => {
                let reserved = [MANIFEST_FILE, STORED_WASM_FILE];
                write_file_part(&mut field, dir, &reserved, &mut files, max_bytes).await?;
            }
            other => return Err(bad(format!("unexpected part {other:?}: expected manifest, wasm or file"))),
        }
    }
    let mut manifest = manifest.ok_or_else(|| bad("the upload has no `manifest` part".into()))?;
    if !wasm {
        return Err(bad("the upload has no `wasm` part".into()));
    }
    for bundled in &mut manifest.bundled_models {
        let path = bundled_file_path(&bundled.file.to_string_lossy())
            .ok_or_else(|| bad(format!("bundled model file {:?} is not a name an upload may use", bundled.file)))?;
        if !files.contains(&path) {
            return Err(bad(format!("bundled model {:?} needs a `file` part named {:?}", bundled.name, bundled.file)));
        }
        bundled.file = path;
    }
    if let Some(extra) = files.iter().find(|f| !manifest.bundled_models.iter().any(|b| &b.file == *f)) {
        return Err(bad(format!("file {extra:?} is not a bundled model of the manifest")));
    }
    manifest.wasm = PathBuf::from(STORED_WASM_FILE);
    std::fs::rename(dir.join(UPLOADING_WASM), dir.join(STORED_WASM_FILE))?;
    let text = toml::to_string(&manifest).map_err(|e| bad(format!("cannot store the manifest: {e}")))?;
    std::fs::write(dir.join(MANIFEST_FILE), text)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_file_names_are_normalised_and_reserved_names_refused() {
        assert_eq!(bundled_file_path("model/x.onnx"), Some(PathBuf::from("model/x.onnx")));
        assert_eq!(bundled_file_path("./model//x.onnx"), Some(PathBuf::from("model/x.onnx")));
        for hostile in [
            "./edgenn.toml",
            "edgenn.toml",
            "./app.wasm",
            "a/../edgenn.toml",
            "/etc/passwd",
            "../x",
            "",
            ".",
            ".hidden",
            "m/.x",
        ] {
            assert_eq!(bundled_file_path(hostile), None, "{hostile:?}");
        }
    }
}
