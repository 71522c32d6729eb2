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
use actix_web::{HttpResponse, web};
use metrics::{Counter, Histogram};

use crate::domain::{PersonId, Role};
use crate::http::AppState;
use crate::http::auth::{Principal, bearer};
use crate::http::error::{ApiError, Code};
use crate::http::openapi::build::{Op, json_response, object, person_id_param, r, time};
use crate::http::routes::Endpoint;
use serde_json::{Value, json};

pub async fn get(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    who.require(GET.roles)?;
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
        requests: metrics::counter!("rollcall_http_requests_total", "route" => GET.path, "status" => "200"),
        request_seconds: metrics::histogram!("rollcall_http_request_seconds", "route" => GET.path),
    };
}

static JSON: HeaderValue = HeaderValue::from_static("application/json");

/// The gate lookup's fast path: a `GET /v1/status/{id}` whose ID is
/// well-formed as sent and whose token is a live gate's or admin's is
/// answered here, with the same body, headers (`headers`: those every
/// answer carries) and metrics as the routed handler; any other request is
/// handed back for routing.
pub fn fast(
    req: ServiceRequest,
    headers: &'static [(HeaderName, HeaderValue)],
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
    if !bearer(req.headers()).is_some_and(|t| state.tokens.permits(t, GET.roles)) {
        return Err(req);
    }
    let (http, _) = req.into_parts();
    Ok(async move {
        let looked = std::time::Instant::now();
        let body = state.cache.get_json(id).await;
        let mut res = HttpResponse::Ok().body(body);
        let h = res.headers_mut();
        h.insert(CONTENT_TYPE, JSON.clone());
        for (k, v) in headers {
            h.insert(k.clone(), v.clone());
        }
        let done = std::time::Instant::now();
        FAST_METRICS.with(|m| {
            m.lookup.record((done - looked).as_secs_f64());
            m.requests.increment(1);
            m.request_seconds.record((done - started).as_secs_f64());
        });
        Ok(ServiceResponse::new(http, res))
    })
}

// ---------------------------------------------------------------------------
// This file's endpoints: the route table's entries and their OpenAPI operations.
// ---------------------------------------------------------------------------

/// `GET /v1/status/{person_id}`: a person's gate status.
pub const GET: Endpoint = Endpoint::new(
    "GET",
    "/v1/status/{person_id}",
    &[Role::Gate, Role::Admin],
    || web::route().to(get),
    gate_status_doc,
);

fn gate_status_doc() -> Op {
    Op::new("gateStatus", "status", "A person's gate status")
        .notes(
            "Served from the status cache (Redis, or in-process without it); a change is visible \
             within one second of the response to the write or close that caused it. Holds no \
             name, address or phone. An unknown but valid ID with no records is `green` unless the \
             sample-age policy makes it `yellow`. Gate lookups are the last requests shed under \
             overload.",
        )
        .param(person_id_param())
        .ok(200, json_response("The status.", r("Status")))
        .errors(&[Code::InvalidPersonId])
}

/// The schemas this file's operations name.
pub(crate) fn schemas() -> Vec<(&'static str, Value)> {
    vec![
        (
            "Status",
            object(
                "What a venue gate sees: red if any red reason, else yellow if any reason, else green.",
                &[
                    "color",
                    "reasons",
                    "valid_until",
                    "last_sample_at",
                    "last_negative_at",
                ],
                vec![
                    ("color", r("Colour")),
                    ("reasons", json!({ "type": "array", "items": r("Reason") })),
                    (
                        "valid_until",
                        time(
                            "When the answer changes by itself with no new data (only the sample-age policy causes that); else null.",
                            true,
                        ),
                    ),
                    ("last_sample_at", time("The latest `collected_at`.", true)),
                    (
                        "last_negative_at",
                        time(
                            "The `collected_at` of the latest sample whose result is negative.",
                            true,
                        ),
                    ),
                ],
            ),
        ),
        (
            "Reason",
            object(
                "`positive` and `repeated_misses` are red; `pool_positive`, `missed_round` and \
                 `no_recent_sample` yellow.",
                &["code"],
                vec![
                    ("code", r("ReasonCode")),
                    (
                        "round_id",
                        json!({ "allOf": [r("RoundId")], "description": "For `missed_round`: the round." }),
                    ),
                ],
            ),
        ),
    ]
}
