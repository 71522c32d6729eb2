//! `GET /v1/status/{person_id}`: what a venue gate sees (gate, admin).
//!
//! The most frequent request by far, so its answer has a fast path
//! ([`fast`]) that the app runs before any other middleware or the router:
//! a well-formed lookup by a live gate or admin token goes from the socket
//! to one cache read and back with nothing else on the way. Anything else
//! (a bad ID, no token, HEAD, an encoded path) takes the routed handler
//! below, which gives every error the contract's answer.

use std::future::Future;

use actix_web::body::BoxBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use actix_web::{HttpResponse, get, web};
use metrics::{Counter, Histogram};

use crate::domain::{PersonId, Role};
use crate::http::AppState;
use crate::http::auth::{Principal, bearer};
use crate::http::error::{ApiError, Code};

/// Who may look a status up.
const ROLES: &[Role] = &[Role::Gate, Role::Admin];
/// The route's pattern, as the request metrics name it.
const ROUTE: &str = "/v1/status/{person_id}";

#[get("/v1/status/{person_id}")]
pub async fn get(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    who.require(ROLES)?;
    let started = std::time::Instant::now();
    let id: PersonId = id
        .parse()
        .map_err(|e| ApiError::new(Code::InvalidPersonId, format!("{e}")))?;
    // A cache hit is answered with the cached wire JSON, unparsed.
    let body = state.cache.get_json(id).await;
    metrics::histogram!("rollcall_gate_lookup_seconds").record(started.elapsed().as_secs_f64());
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

/// The metrics a fast-path lookup records, resolved once per worker thread
/// instead of looked up by name (and labels) on every request.
struct FastMetrics {
    lookup: Histogram,
    requests: Counter,
    request_seconds: Histogram,
}

thread_local! {
    static FAST_METRICS: FastMetrics = FastMetrics {
        lookup: metrics::histogram!("rollcall_gate_lookup_seconds"),
        requests: metrics::counter!("rollcall_http_requests_total", "route" => ROUTE, "status" => "200"),
        request_seconds: metrics::histogram!("rollcall_http_request_seconds", "route" => ROUTE),
    };
}

/// The gate lookup's fast path: a `GET /v1/status/{id}` whose ID is
/// well-formed as sent and whose token is a live gate's or admin's is
/// answered here, with the same body, headers (`headers`: those every
/// answer carries) and metrics as the routed handler; any other request is
/// handed back for routing.
pub fn fast(
    req: ServiceRequest,
    headers: &'static [(&'static str, &'static str)],
) -> Result<impl Future<Output = Result<ServiceResponse<BoxBody>, actix_web::Error>>, ServiceRequest>
{
    let started = std::time::Instant::now();
    if req.method() != Method::GET {
        return Err(req);
    }
    let Some(Ok(id)) = req
        .path()
        .strip_prefix("/v1/status/")
        .map(str::parse::<PersonId>)
    else {
        return Err(req);
    };
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Err(req);
    };
    if !bearer(req.headers()).is_some_and(|t| state.tokens.permits(t, ROLES)) {
        return Err(req);
    }
    let (http, _) = req.into_parts();
    Ok(async move {
        let looked = std::time::Instant::now();
        let body = state.cache.get_json(id).await;
        let mut res = HttpResponse::Ok().body(body);
        let h = res.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (k, v) in headers {
            h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        FAST_METRICS.with(|m| {
            m.lookup.record(looked.elapsed().as_secs_f64());
            m.requests.increment(1);
            m.request_seconds.record(started.elapsed().as_secs_f64());
        });
        Ok(ServiceResponse::new(http, res))
    })
}
