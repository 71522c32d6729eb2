//! Route files mirror the URL tree, one file per resource:
//!
//! - `ops.rs`: `/healthz`, `/readyz`, `/metrics`, `/openapi.json`, the dashboard at `/`.
//! - `tokens.rs`: `/v1/tokens` (admin).
//! - `register.rs`: `/v1/register` and `/v1/heads` (admin imports).
//! - `residents.rs`: `/v1/residents/{person_id}` (look-up, move-out, clear).
//! - `records.rs`, `results.rs`: the scanners' and labs' batches, over `batch.rs`
//!   (the batch body's rules, the per-item split and the tally they share).
//! - `rounds/`: `/v1/rounds…` — create, list, read, close, coverage, progress;
//!   `rounds/missing.rs` the missing lists and their exports.
//! - `exemptions.rs`: `/v1/exemptions`.
//! - `status.rs`: `/v1/status/{person_id}` (gates).
//! - `audit.rs`: `/v1/audit`, the helpers that write audit entries, and the
//!   middleware that audits denials.

pub mod audit;
pub mod batch;
pub mod exemptions;
pub mod ops;
pub mod records;
pub mod register;
pub mod repeat_missing;
pub mod residents;
pub mod results;
pub mod rounds;
pub mod status;
pub mod tokens;

use actix_web::{HttpRequest, HttpResponse, web};

use super::error::{ApiError, Code};

/// Every route [`configure`] registers, as (method, path template in
/// OpenAPI's `{name}` form). Kept by hand: `tests/integration/openapi.rs`
/// checks it against the server (each entry is served; no other method is),
/// against the handlers' route attributes, and against `/openapi.json`
/// (exactly these operations), so a route added in one place only fails CI.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/"),
    ("GET", "/docs"),
    ("GET", "/docs/{file}"),
    ("POST", "/v1/tokens"),
    ("GET", "/v1/tokens"),
    ("DELETE", "/v1/tokens/{id}"),
    ("POST", "/v1/register"),
    ("POST", "/v1/heads"),
    ("GET", "/v1/residents/{person_id}"),
    ("DELETE", "/v1/residents/{person_id}"),
    ("POST", "/v1/residents/{person_id}/clear"),
    ("POST", "/v1/records"),
    ("POST", "/v1/results"),
    ("POST", "/v1/rounds"),
    ("GET", "/v1/rounds"),
    ("GET", "/v1/rounds/{id}"),
    ("POST", "/v1/rounds/{id}/close"),
    ("GET", "/v1/rounds/{id}/missing"),
    ("GET", "/v1/rounds/{id}/coverage"),
    ("GET", "/v1/rounds/{id}/progress"),
    ("GET", "/v1/repeat-missing"),
    ("POST", "/v1/exemptions"),
    ("GET", "/v1/exemptions"),
    ("POST", "/v1/exemptions/import"),
    ("DELETE", "/v1/exemptions/{id}"),
    ("GET", "/v1/status/{person_id}"),
    ("GET", "/v1/audit"),
];

/// Registers every route of the contract.
pub fn configure(cfg: &mut web::ServiceConfig) {
    // Resources are tried in this order: the gate lookup (by far the most
    // frequent request) and record uploads first, so they do not pay for
    // matching every other pattern. No two patterns overlap, so the order
    // changes nothing else.
    cfg.service(status::get)
        .service(records::post)
        .service(ops::healthz)
        .service(ops::readyz)
        .service(ops::metrics)
        .service(ops::openapi)
        .service(ops::dashboard)
        .service(tokens::create)
        .service(tokens::list)
        .service(tokens::revoke)
        .service(register::register)
        .service(register::heads)
        .service(residents::get)
        .service(residents::delete)
        .service(residents::clear)
        .service(results::post)
        .service(rounds::create)
        .service(rounds::list)
        .service(rounds::get)
        .service(rounds::close)
        .service(rounds::missing::missing)
        .service(rounds::coverage)
        .service(rounds::progress)
        .service(repeat_missing::list)
        .service(exemptions::create)
        .service(exemptions::list)
        .service(exemptions::import)
        .service(exemptions::delete)
        .service(audit::list)
        // Guarded like the handlers' `#[get]`, so another method falls through
        // to `not_found` rather than a bare 405.
        .service(
            web::resource("/docs")
                .guard(actix_web::guard::Get())
                .to(docs_redirect),
        )
        // Swagger UI from files built into the binary (the `vendored`
        // feature): no CDN. It fetches `/openapi.json`, which `ops::openapi`
        // serves, so the UI registers no document route of its own; its
        // default online validator badge (a request to swagger.io) is off.
        .service(
            utoipa_swagger_ui::SwaggerUi::new("/docs/{_:.*}")
                .config(utoipa_swagger_ui::Config::from("/openapi.json").validator_url("none")),
        )
        .default_service(web::to(not_found));
}

/// `/docs` → `/docs/`, so the UI's relative asset paths resolve under `/docs/`.
async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((actix_web::http::header::LOCATION, "/docs/"))
        .finish()
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        Code::NotFound,
        format!("no route for {} {}", req.method(), req.path()),
    ))
}
