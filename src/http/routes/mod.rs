//! Route files mirror the URL tree, one file per resource:
//!
//! - `ops.rs`: `/healthz`, `/readyz`, `/metrics`, `/openapi.json`, the dashboard at `/`,
//!   the Swagger UI at `/docs`.
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
//!
//! Each file ends with its endpoints: one [`Endpoint`] constant per route
//! (method, path, roles, handler, OpenAPI operation), the operations, and
//! the schemas they name. [`ENDPOINTS`] below lists every route; the server
//! registers it, answers `405` from it and documents it.

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
use serde_json::Value;

use super::error::{ApiError, Code};
use super::openapi::build::Op;
use crate::domain::Role;

/// One endpoint: a method on a path, who may call it, its handler and its
/// OpenAPI operation. Each route file declares its endpoints as constants
/// beside their handlers (the handler checks `roles` from the same
/// constant); [`ENDPOINTS`] lists them all.
pub struct Endpoint {
    /// `GET`, `POST`, `DELETE`.
    pub method: &'static str,
    /// The path template in OpenAPI's `{name}` form.
    pub path: &'static str,
    /// The pattern actix matches (the template, unless it needs a regex).
    pattern: &'static str,
    /// The roles whose tokens may call it; empty: no token needed.
    pub roles: &'static [Role],
    /// The handler, as a route without its method guard.
    route: fn() -> actix_web::Route,
    /// Its operation in `/openapi.json`.
    pub(crate) doc: fn() -> Op,
}

impl Endpoint {
    pub(crate) const fn new(
        method: &'static str,
        path: &'static str,
        roles: &'static [Role],
        route: fn() -> actix_web::Route,
        doc: fn() -> Op,
    ) -> Endpoint {
        Endpoint {
            method,
            path,
            pattern: path,
            roles,
            route,
            doc,
        }
    }

    /// The same endpoint, matched by actix with `pattern` (e.g. a `{file:.*}`
    /// that spans segments).
    pub(crate) const fn pattern(mut self, pattern: &'static str) -> Endpoint {
        self.pattern = pattern;
        self
    }
}

/// Every endpoint of the contract: what [`configure`] registers, what the
/// 405 answers are made from (see [`allowed_methods`]) and what
/// `/openapi.json` documents. Adding an endpoint is its constant in its
/// route file and its line here.
///
/// Registered in this order: the gate lookup (by far the most frequent
/// request) and record uploads first, so they do not pay for matching every
/// other pattern. No two entries overlap, so the order changes nothing else.
///
/// A path no entry serves with the request's method gets
/// `405 method_not_allowed` with an `Allow` header made from the entries;
/// `HEAD` is served wherever `GET` is (`head_as_get` in `http/mod.rs`). A
/// `{…}` segment matches one non-empty segment, except [`UI_FILE`], the
/// rest of the path.
pub const ENDPOINTS: &[Endpoint] = &[
    status::GET,
    records::POST,
    ops::HEALTHZ,
    ops::READYZ,
    cluster::LEADER,
    cluster::STANDBY,
    ops::METRICS,
    ops::OPENAPI,
    ops::DASHBOARD,
    ops::DOCS_REDIRECT,
    ops::DOCS_FILE,
    tokens::CREATE,
    tokens::LIST,
    tokens::REVOKE,
    register::REGISTER,
    register::HEADS,
    residents::GET,
    residents::DELETE,
    residents::CLEAR,
    results::POST,
    rounds::CREATE,
    rounds::LIST,
    rounds::GET,
    rounds::CLOSE,
    rounds::missing::MISSING,
    rounds::COVERAGE,
    rounds::PROGRESS,
    repeat_missing::LIST,
    exemptions::CREATE,
    exemptions::LIST,
    exemptions::IMPORT,
    exemptions::DELETE,
    audit::LIST,
];

/// A route file's `schemas`: the named schemas its operations refer to.
pub(crate) type SchemasOf = fn() -> Vec<(&'static str, Value)>;

/// The schemas the route files' operations name, by file (a new route file
/// adds its `schemas` here).
pub(crate) const SCHEMAS: &[SchemasOf] = &[
    ops::schemas,
    tokens::schemas,
    register::schemas,
    residents::schemas,
    batch::schemas,
    records::schemas,
    results::schemas,
    rounds::schemas,
    rounds::missing::schemas,
    repeat_missing::schemas,
    exemptions::schemas,
    status::schemas,
    audit::schemas,
    cluster::schemas,
];

/// The entries of [`ENDPOINTS`].
pub fn endpoints() -> impl Iterator<Item = &'static Endpoint> {
    ENDPOINTS.iter()
}

/// The Swagger UI's files: `/docs/` and everything under it (served by
/// [`docs_file`]; an unknown file is `404 not_found`).
pub const UI_FILE: &str = "/docs/{file}";

/// Whether `path` is an instance of the route `template` (see [`ENDPOINTS`]).
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

/// The methods served on `path`, in [`ENDPOINTS`] order with `HEAD` after
/// `GET`; empty for a path no route has.
pub fn allowed_methods(path: &str) -> Vec<&'static str> {
    // A literal route (`/v1/exemptions/import`) is that path alone: a
    // template that would also match it (`/v1/exemptions/{id}`) does not
    // add its methods.
    let literal = ENDPOINTS.iter().any(|e| e.path == path);
    let mut out = Vec::new();
    for &Endpoint {
        method: m,
        path: template,
        ..
    } in ENDPOINTS
    {
        if (!literal || template == path) && matches(template, path) && !out.contains(&m) {
            out.push(m);
            if m == "GET" {
                out.push("HEAD");
            }
        }
    }
    out
}

/// Registers every route of the contract: the entries of [`ENDPOINTS`], in
/// order, each guarded by its method (another method falls through to
/// `not_found`, which answers 405 with the `Allow` header).
pub fn configure(cfg: &mut web::ServiceConfig) {
    for e in ENDPOINTS {
        let method = Method::from_bytes(e.method.as_bytes()).expect("a method name");
        cfg.route(e.pattern, (e.route)().method(method));
    }
    cfg.default_service(web::to(not_found));
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
