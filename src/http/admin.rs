//! The admin API: deploy, replace, inspect and delete apps at run time, behind a bearer token.
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

use super::HttpState;
use crate::apps::manifest::{AppManifest, MANIFEST_FILE, is_relative_inside};
use crate::apps::persist::AppStore;
use crate::nn::manifest::is_valid_name;
use axum::Json;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Router, middleware};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The file name an uploaded module is stored under.
const WASM_FILE: &str = "app.wasm";

pub struct Admin {
    token: Option<String>,
    store: AppStore,
    /// One deploy at a time: versions of one app must not interleave.
    deploying: tokio::sync::Mutex<()>,
    max_upload_bytes: usize,
}

impl Admin {
    pub fn new(token: Option<String>, store: AppStore, max_upload_bytes: usize) -> Self {
        Self { token: token.filter(|t| !t.is_empty()), store, deploying: tokio::sync::Mutex::new(()), max_upload_bytes }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("the admin API is disabled: start the gateway with --admin-token or EDGENN_ADMIN_TOKEN")]
    Disabled,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("deploy refused: {0}")]
    Refused(String),
    #[error("storage error: {0}")]
    Storage(#[from] std::io::Error),
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = match &self {
            AdminError::Unauthorized | AdminError::Disabled => StatusCode::UNAUTHORIZED,
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AdminError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = Json(json!({ "error": self.to_string() }));
        if status == StatusCode::UNAUTHORIZED {
            return (status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response();
        }
        (status, body).into_response()
    }
}

pub fn router(admin: Arc<Admin>) -> Router<HttpState> {
    let limit = admin.max_upload_bytes;
    Router::new()
        .route("/admin/apps", get(list))
        .route("/admin/apps/{name}", get(inspect).put(deploy).delete(remove))
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(admin, authorize))
}

async fn authorize(State(admin): State<Arc<Admin>>, request: Request, next: Next) -> Result<Response, AdminError> {
    let Some(token) = &admin.token else {
        return Err(AdminError::Disabled);
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !bool::from(presented.as_bytes().ct_eq(token.as_bytes())) {
        return Err(AdminError::Unauthorized);
    }
    Ok(next.run(request).await)
}

fn admin_of(state: &HttpState) -> &Arc<Admin> {
    state.admin.as_ref().expect("admin routes exist only with an admin state")
}

async fn list(State(state): State<HttpState>) -> Json<serde_json::Value> {
    Json(json!({ "apps": state.apps.list() }))
}

async fn inspect(State(state): State<HttpState>, Path(name): Path<String>) -> Result<Json<serde_json::Value>, AdminError> {
    let app = state.apps.get(&name).ok_or_else(|| AdminError::NotFound(format!("unknown app {name:?}")))?;
    Ok(Json(json!({ "app": app.info(), "manifest": app.manifest })))
}

async fn remove(State(state): State<HttpState>, Path(name): Path<String>) -> Result<Json<serde_json::Value>, AdminError> {
    let admin = admin_of(&state);
    let _guard = admin.deploying.lock().await;
    let on_disk = admin.store.remove(&name)?;
    let live = state.apps.remove(&name).is_some();
    if !on_disk && !live {
        return Err(AdminError::NotFound(format!("unknown app {name:?}")));
    }
    Ok(Json(json!({ "deleted": name })))
}

async fn deploy(
    State(state): State<HttpState>,
    Path(name): Path<String>,
    multipart: Multipart,
) -> Result<(StatusCode, Json<serde_json::Value>), AdminError> {
    if !is_valid_name(&name) {
        return Err(AdminError::BadRequest(format!("app name {name:?} must be 1-64 characters of a-z, 0-9, '-', '_' or '.'")));
    }
    let admin = admin_of(&state).clone();
    let _guard = admin.deploying.lock().await;
    let staged = admin.store.stage()?;
    let written = write_upload(&name, multipart, &staged).await;
    if let Err(error) = written {
        let _ = std::fs::remove_dir_all(&staged);
        return Err(error);
    }
    let version = admin.store.add_version(&name, &staged)?;
    let apps = state.apps.clone();
    let version_dir = version.clone();
    let deployed = tokio::task::spawn_blocking(move || apps.deploy_dir(&version_dir))
        .await
        .map_err(|e| AdminError::Refused(format!("validation crashed: {e}")))?;
    match deployed {
        Ok(app) => {
            let replaced = admin.store.current_versions()?.iter().any(|v| v.parent() == version.parent());
            admin.store.make_current(&name, &version)?;
            let status = if replaced { StatusCode::OK } else { StatusCode::CREATED };
            Ok((status, Json(json!({ "deployed": app.info() }))))
        }
        Err(error) => {
            admin.store.discard(&version);
            Err(AdminError::Refused(format!("{error:#}")))
        }
    }
}

/// Writes the multipart upload into `dir` as an app directory: `edgenn.toml` (with `wasm`
/// pointing at the stored module), the module, and the bundled model files.
async fn write_upload(name: &str, mut multipart: Multipart, dir: &std::path::Path) -> Result<(), AdminError> {
    let bad = |m: String| AdminError::BadRequest(m);
    let mut manifest: Option<AppManifest> = None;
    let mut wasm = false;
    let mut files: Vec<PathBuf> = Vec::new();
    while let Some(field) = multipart.next_field().await.map_err(|e| bad(format!("malformed multipart body: {e}")))? {
        let field_name = field.name().unwrap_or_default().to_string();
        match field_name.as_str() {
            "manifest" => {
                let text = field.text().await.map_err(|e| bad(format!("cannot read the manifest: {e}")))?;
                let mut parsed = AppManifest::parse(&text).map_err(|e| bad(format!("invalid {MANIFEST_FILE}: {e}")))?;
                if parsed.name != name {
                    return Err(bad(format!("the manifest names app {:?}, the URL {name:?}", parsed.name)));
                }
                parsed.wasm = PathBuf::from(WASM_FILE);
                let text = toml::to_string(&parsed).map_err(|e| bad(format!("cannot store the manifest: {e}")))?;
                std::fs::write(dir.join(MANIFEST_FILE), text)?;
                manifest = Some(parsed);
            }
            "wasm" => {
                let bytes = field.bytes().await.map_err(|e| bad(format!("cannot read the module: {e}")))?;
                std::fs::write(dir.join(WASM_FILE), &bytes)?;
                wasm = true;
            }
            "file" => {
                let path = PathBuf::from(field.file_name().unwrap_or_default());
                if !is_relative_inside(&path) || path == std::path::Path::new(WASM_FILE) || path == std::path::Path::new(MANIFEST_FILE) {
                    return Err(bad(format!("file name {path:?} must be a relative path inside the app")));
                }
                let bytes = field.bytes().await.map_err(|e| bad(format!("cannot read {path:?}: {e}")))?;
                let target = dir.join(&path);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(&target, &bytes)?;
                files.push(path);
            }
            other => return Err(bad(format!("unexpected part {other:?}: expected manifest, wasm or file"))),
        }
    }
    let manifest = manifest.ok_or_else(|| bad("the upload has no `manifest` part".into()))?;
    if !wasm {
        return Err(bad("the upload has no `wasm` part".into()));
    }
    for bundled in &manifest.bundled_models {
        if !files.iter().any(|f| f == &bundled.file) {
            return Err(bad(format!("bundled model {:?} needs a `file` part named {:?}", bundled.name, bundled.file)));
        }
    }
    Ok(())
}
