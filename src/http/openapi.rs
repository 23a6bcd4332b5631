//! `GET /openapi.json`: the whole HTTP surface as an OpenAPI 3.1 document, generated from the
//! handlers' `#[utoipa::path]` annotations beside them, so it cannot drift from the code
//! unnoticed (a test checks every route is in it). Apps' own routes (`/v1/classify`) are
//! deployed at run time: they are served below `/apps/{name}` too, which is documented.

use super::error::ErrorBody;
use crate::oip::{InferRequest, InferResponse, RequestInput, RequestOutput, ResponseOutput};
use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "edgenn",
        description = "AI inference edge gateway: WebAssembly apps calling wasi-nn, and the shared models over the Open Inference Protocol (KServe v2)."
    ),
    paths(
        super::index,
        super::healthz,
        super::metrics,
        super::list_models,
        super::list_apps,
        super::app_root,
        super::app_root_slash,
        super::app_path,
        super::admin::list,
        super::admin::inspect,
        super::admin::deploy,
        super::admin::remove,
        super::repository::list,
        super::repository::inspect,
        super::repository::put_model,
        super::repository::delete_model,
        super::repository::triton_index,
        super::repository::triton_load,
        super::repository::triton_unload,
        super::v2::server_metadata,
        super::v2::live,
        super::v2::server_ready,
        super::v2::model_metadata,
        super::v2::model_ready,
        super::v2::infer,
        super::v2::versioned_metadata,
        super::v2::versioned_ready,
        super::v2::versioned_infer,
        document,
    ),
    components(schemas(ErrorBody, InferRequest, RequestInput, RequestOutput, InferResponse, ResponseOutput)),
    modifiers(&BearerToken),
    tags(
        (name = "gateway", description = "Health, metrics, this document"),
        (name = "v1", description = "The gateway's own JSON API"),
        (name = "apps", description = "Every deployed app, by name"),
        (name = "admin", description = "Apps and models added, replaced and removed at run time, behind the admin token"),
        (name = "v2", description = "The Open Inference Protocol (KServe v2) over the shared models"),
    )
)]
pub struct ApiDoc;

/// The admin API's bearer token.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[utoipa::path(get, path = "/openapi.json", tag = "gateway", responses((status = 200, description = "This document", body = serde_json::Value)))]
pub(super) async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
