//! Operations: liveness, readiness, metrics, the OpenAPI document, the dashboard.

use std::sync::atomic::Ordering;

use actix_web::{HttpResponse, get, web};
use serde_json::json;

use crate::http::AppState;

#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

#[get("/readyz")]
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

#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}

#[get("/openapi.json")]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(crate::http::openapi::document())
}

#[get("/")]
pub async fn dashboard() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Content-Security-Policy", crate::http::dashboard::csp()))
        .body(crate::http::dashboard::INDEX_HTML)
}
