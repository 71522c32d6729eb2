//! Route files mirror the URL tree, one file per resource:
//!
//! - `ops.rs`: `/healthz`, `/readyz`, `/metrics`, `/openapi.json`, the dashboard at `/`.
//! - `cluster.rs`: `/leader`, `/standby` (several servers on PostgreSQL).
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
pub mod cluster;
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

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};

use super::error::{ApiError, Code};

/// Every route [`configure`] registers, as (method, path template in
/// OpenAPI's `{name}` form). Kept by hand: `tests/integration/openapi.rs`
/// checks it against the server (each entry is served; no other method is),
/// against the handlers' route attributes, and against `/openapi.json`
/// (exactly these operations), so a route added in one place only fails CI.
///
/// It is also what the server answers from when no route matches: a path
/// some entry matches gets `405 method_not_allowed` with an `Allow` header
/// made from the entries (see [`allowed_methods`]); `HEAD` is served
/// wherever `GET` is (`head_as_get` in `http/mod.rs`). A `{…}` segment
/// matches one non-empty segment, except [`UI_FILE`], the rest of the path.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/leader"),
    ("GET", "/standby"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/"),
    ("GET", "/docs"),
    ("GET", UI_FILE),
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

/// The Swagger UI's files: `/docs/` and everything under it (served by
/// [`docs_file`]; an unknown file is `404 not_found`).
pub const UI_FILE: &str = "/docs/{file}";

/// Whether `path` is an instance of the route `template` (see [`ROUTES`]).
fn matches(template: &str, path: &str) -> bool {
    if template == UI_FILE {
        return path.starts_with("/docs/");
    }
    let mut want = template.split('/');
    let mut have = path.split('/');
    loop {
        match (want.next(), have.next()) {
            (None, None) => return true,
            (Some(w), Some(h)) if w.starts_with('{') => {
                if h.is_empty() {
                    return false;
                }
            }
            (Some(w), Some(h)) if w == h => {}
            _ => return false,
        }
    }
}

/// The methods served on `path`, in [`ROUTES`] order with `HEAD` after
/// `GET`; empty for a path no route has.
pub fn allowed_methods(path: &str) -> Vec<&'static str> {
    // A literal route (`/v1/exemptions/import`) is that path alone: a
    // template that would also match it (`/v1/exemptions/{id}`) does not
    // add its methods.
    let literal = ROUTES.iter().any(|&(_, t)| t == path);
    let mut out = Vec::new();
    for &(m, template) in ROUTES {
        if (!literal || template == path) && matches(template, path) && !out.contains(&m) {
            out.push(m);
            if m == "GET" {
                out.push("HEAD");
            }
        }
    }
    out
}

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
        .service(cluster::leader)
        .service(cluster::standby)
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
        // to `not_found`, which answers 405 with the `Allow` header.
        .service(
            web::resource("/docs")
                .guard(actix_web::guard::Get())
                .to(docs_redirect),
        )
        .service(
            web::resource("/docs/{file:.*}")
                .guard(actix_web::guard::Get())
                .to(docs_file),
        )
        .default_service(web::to(not_found));
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
async fn docs_file(file: web::Path<String>) -> Result<HttpResponse, ApiError> {
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
async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((actix_web::http::header::LOCATION, "/docs/"))
        .finish()
}

/// What no route matched: `405 method_not_allowed` with `Allow` on a path
/// some route serves with another method, else `404 not_found`.
async fn not_found(req: HttpRequest) -> HttpResponse {
    unrouted(&req)
}

/// The answer for a method and path no route serves (see [`not_found`]);
/// also for a handler whose pattern caught a path that is another route's.
pub fn unrouted(req: &HttpRequest) -> HttpResponse {
    use actix_web::ResponseError;
    let allowed = allowed_methods(req.path());
    if allowed.is_empty() || allowed.contains(&req.method().as_str()) {
        return ApiError::new(
            Code::NotFound,
            format!("no route for {} {}", req.method(), req.path()),
        )
        .error_response();
    }
    let allow = allowed.join(", ");
    let mut res = ApiError::new(
        Code::MethodNotAllowed,
        format!(
            "{} {} is not served; allowed: {allow}",
            req.method(),
            req.path()
        ),
    )
    .error_response();
    res.headers_mut().insert(
        actix_web::http::header::ALLOW,
        actix_web::http::header::HeaderValue::from_str(&allow)
            .expect("method names are header-safe"),
    );
    res
}

/// Whether a `HEAD` request for `path` is answered as a `GET` (whose body
/// the server then leaves out).
pub fn head_is_get(method: &Method, path: &str) -> bool {
    method == Method::HEAD && allowed_methods(path).contains(&"GET")
}
