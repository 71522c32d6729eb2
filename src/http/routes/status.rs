//! `GET /v1/status/{person_id}`: what a venue gate sees (gate, admin).

use actix_web::{HttpResponse, web};

use crate::domain::{PersonId, Role};
use crate::http::AppState;
use crate::http::auth::Principal;
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
