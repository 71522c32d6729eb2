//! Operations: liveness, readiness, metrics, the OpenAPI document and its
//! Swagger UI, the dashboard.

use std::sync::atomic::Ordering;

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::http::AppState;
use crate::http::error::{ApiError, Code};
use crate::http::openapi::build::{Op, enum_of, json_response, object, path_param, r};
use crate::http::routes::Endpoint;
use serde_json::Value;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let ready = state.ready.load(Ordering::Acquire);
    let body = json!({
        "store": if ready { "ready" } else { "loading" },
        "redis": state.cache.redis_state().as_str(),
        "role": super::cluster::state(&state).0.as_str(),
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}

pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(crate::http::openapi::document())
}

pub async fn dashboard() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Content-Security-Policy", crate::http::dashboard::csp()))
        .body(crate::http::dashboard::INDEX_HTML)
}

/// The Swagger UI's content security policy: everything from this origin,
/// inline styles (the UI sets `style` attributes), images also as `data:`
/// URLs (its icons); nothing from anywhere else, never framed.
pub const UI_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// Swagger UI from files built into the binary (utoipa-swagger-ui's
/// `vendored` feature): no CDN. It fetches `/openapi.json`, which
/// `ops::openapi` serves; its online validator badge (a request to
/// swagger.io) is off. Served here rather than by `SwaggerUi`'s own service
/// so an unknown file gets the error shape and HTML gets [`UI_CSP`].
pub async fn docs_file(file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    use std::sync::{Arc, LazyLock};
    use utoipa_swagger_ui::Config;
    static CONFIG: LazyLock<Arc<Config<'static>>> =
        LazyLock::new(|| Arc::new(Config::from("/openapi.json").validator_url("none")));
    let name = file.into_inner();
    match utoipa_swagger_ui::serve(&name, CONFIG.clone()) {
        Ok(Some(f)) => {
            let mut b = HttpResponse::Ok();
            b.content_type(f.content_type.as_str());
            if f.content_type.starts_with("text/html") {
                b.insert_header(("Content-Security-Policy", UI_CSP));
            }
            Ok(match f.bytes {
                std::borrow::Cow::Borrowed(s) => b.body(web::Bytes::from_static(s)),
                std::borrow::Cow::Owned(v) => b.body(v),
            })
        }
        Ok(None) => Err(ApiError::new(
            Code::NotFound,
            format!("no file /docs/{name} in the API browser"),
        )),
        Err(e) => Err(ApiError::internal(&e)),
    }
}

/// `/docs` → `/docs/`, so the UI's relative asset paths resolve under `/docs/`.
pub async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((actix_web::http::header::LOCATION, "/docs/"))
        .finish()
}

// ---------------------------------------------------------------------------
// This file's endpoints: the route table's entries and their OpenAPI operations.
// ---------------------------------------------------------------------------

/// `GET /healthz`: liveness.
pub const HEALTHZ: Endpoint = Endpoint::new(
    "GET",
    "/healthz",
    &[],
    || web::route().to(healthz),
    healthz_doc,
);

/// `GET /readyz`: readiness.
pub const READYZ: Endpoint = Endpoint::new(
    "GET",
    "/readyz",
    &[],
    || web::route().to(readyz),
    readyz_doc,
);

/// `GET /metrics`: Prometheus metrics.
pub const METRICS: Endpoint = Endpoint::new(
    "GET",
    "/metrics",
    &[],
    || web::route().to(metrics),
    metrics_doc,
);

/// `GET /openapi.json`: the OpenAPI document.
pub const OPENAPI: Endpoint = Endpoint::new(
    "GET",
    "/openapi.json",
    &[],
    || web::route().to(openapi),
    openapi_doc,
);

/// `GET /`: officials' dashboard.
pub const DASHBOARD: Endpoint = Endpoint::new(
    "GET",
    "/",
    &[],
    || web::route().to(dashboard),
    dashboard_doc,
);

/// `GET /docs`: Swagger UI (redirect).
pub const DOCS_REDIRECT: Endpoint = Endpoint::new(
    "GET",
    "/docs",
    &[],
    || web::route().to(docs_redirect),
    docs_redirect_doc,
);

/// `GET /docs/{file}`: Swagger UI.
pub const DOCS_FILE: Endpoint = Endpoint::new(
    "GET",
    super::UI_FILE,
    &[],
    || web::route().to(docs_file),
    docs_file_doc,
)
.pattern("/docs/{file:.*}");

fn healthz_doc() -> Op {
    Op::new("healthz", "operations", "Liveness")
        .notes("`200` while the process lives.")
        .ok(200, json_response("The process is alive.", r("Health")))
}

fn readyz_doc() -> Op {
    Op::new("readyz", "operations", "Readiness")
        .notes(
            "`200` once the store is loaded, else `503` with the same body. Redis being down does \
             not make it `503` (gates are then answered from the engine); `redis` is `disabled` \
             when the server runs without Redis (an in-process cache stands in).",
        )
        .ok(200, json_response("Ready.", r("Readiness")))
        .ok(
            503,
            json_response("Still loading the store.", r("Readiness")),
        )
}

fn metrics_doc() -> Op {
    Op::new("metrics", "operations", "Prometheus metrics")
        .notes(
            "Prometheus text format, every series prefixed `rollcall_`: requests by route and \
             status, records and results by outcome, gate lookup latency, cache hits and misses, \
             round coverage.",
        )
        .ok(
            200,
            json!({
                "description": "Prometheus text exposition format 0.0.4.",
                "content": { "text/plain": { "schema": { "type": "string" } } }
            }),
        )
}

fn openapi_doc() -> Op {
    Op::new("openapi", "operations", "This document")
        .notes("The OpenAPI 3.0 document of the whole contract. Browse it at `/docs/`.")
        .ok(
            200,
            json!({
                "description": "The OpenAPI document.",
                "content": { "application/json": { "schema": { "type": "object" } } }
            }),
        )
}

fn dashboard_doc() -> Op {
    Op::new("dashboard", "operations", "Officials' dashboard")
        .notes("One self-contained HTML page over the public API; it asks for a token itself.")
        .ok(
            200,
            json!({
                "description": "The dashboard page.",
                "content": { "text/html": { "schema": { "type": "string" } } }
            }),
        )
}

fn docs_redirect_doc() -> Op {
    Op::new("docsRedirect", "operations", "Swagger UI (redirect)")
        .notes("Redirects to `/docs/`, so the UI's relative asset paths resolve.")
        .ok(
            308,
            json!({
                "description": "Permanent redirect to `/docs/`.",
                "headers": { "Location": { "description": "`/docs/`", "schema": { "type": "string" } } }
            }),
        )
}

fn docs_file_doc() -> Op {
    Op::new("docsFile", "operations", "Swagger UI")
        .notes(
            "Swagger UI for this document, served from files built into the binary (no CDN). \
             `/docs/` (an empty `file`) is the UI's `index.html`; an unknown file is \
             `404 not_found`. The HTML page carries a `Content-Security-Policy` that allows \
             nothing from other origins.",
        )
        .param(path_param(
            "file",
            json!({ "type": "string" }),
            "A file of the UI, e.g. `index.html`, `swagger-ui.css`; empty for the UI itself.",
        ))
        .ok(
            200,
            json!({
                "description": "A file of the UI (HTML, JavaScript, CSS or an image).",
                "content": { "text/html": { "schema": { "type": "string" } } }
            }),
        )
        .errors(&[Code::NotFound])
}

/// The schemas this file's operations name.
pub(crate) fn schemas() -> Vec<(&'static str, Value)> {
    vec![
        (
            "Health",
            object("", &["status"], vec![("status", enum_of(["ok"]))]),
        ),
        (
            "Readiness",
            object(
                "",
                &["store", "redis", "role"],
                vec![
                    ("store", enum_of(["ready", "loading"])),
                    ("redis", enum_of(["ok", "unreachable", "disabled"])),
                    ("role", enum_of(["leader", "standby", "starting"])),
                ],
            ),
        ),
    ]
}
