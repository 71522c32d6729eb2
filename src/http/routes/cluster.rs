//! `GET /leader` and `GET /standby` (docs/api.md, Several servers): health
//! checks a load balancer uses to send writes to the leader and reads to
//! standbys in step. Kept apart from `ops.rs` so the cluster's routes change
//! in one place.

use actix_web::{HttpResponse, web};
use serde_json::{Value, json};

use crate::http::AppState;
use crate::http::openapi::build::{Op, enum_of, json_response, object, r};
use crate::http::routes::Endpoint;
use crate::store::ClusterRole;

/// A standby further behind than this is not "in step" (`/standby` 503).
pub const MAX_STANDBY_LAG_MS: u64 = 1_000;

/// This server's role, its leader's URL and its lag; on the embedded SQLite
/// store the one server is the leader.
pub fn state(app: &AppState) -> (ClusterRole, Value) {
    match app.store.cluster() {
        Some(c) => {
            let role = c.role();
            (
                role,
                json!({"role": role.as_str(), "leader": c.leader(), "lag_ms": c.lag_ms()}),
            )
        }
        None => (
            ClusterRole::Leader,
            json!({"role": "leader", "leader": null, "lag_ms": 0}),
        ),
    }
}

pub async fn leader(app: web::Data<AppState>) -> HttpResponse {
    let (role, body) = state(&app);
    if role == ClusterRole::Leader {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

pub async fn standby(app: web::Data<AppState>) -> HttpResponse {
    let (role, body) = state(&app);
    let in_step = role == ClusterRole::Standby
        && body["lag_ms"]
            .as_u64()
            .is_some_and(|l| l <= MAX_STANDBY_LAG_MS);
    if in_step {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

// ---------------------------------------------------------------------------
// This file's endpoints: the route table's entries and their OpenAPI operations.
// ---------------------------------------------------------------------------

/// `GET /leader`: `200` on the leader.
pub const LEADER: Endpoint = Endpoint::new(
    "GET",
    "/leader",
    &[],
    || web::route().to(leader),
    leader_doc,
);

/// `GET /standby`: `200` on a standby in step.
pub const STANDBY: Endpoint = Endpoint::new(
    "GET",
    "/standby",
    &[],
    || web::route().to(standby),
    standby_doc,
);

fn leader_doc() -> Op {
    Op::new("leader", "operations", "Is this server the leader?")
        .notes(
            "For a load balancer's health check (Several servers): `200` on the leader, which \
             takes writes; `503` on a standby or a server still starting. On the embedded \
             SQLite store the one server is always the leader.",
        )
        .ok(
            200,
            json_response("This server is the leader.", r("ClusterState")),
        )
        .ok(503, json_response("Not the leader.", r("ClusterState")))
}

fn standby_doc() -> Op {
    Op::new("standby", "operations", "Is this a standby in step?")
        .notes(
            "`200` on a standby no more than 1 second behind the leader (it answers every \
             read under `/v1`, gate lookups included); `503` otherwise (the leader included).",
        )
        .ok(200, json_response("A standby in step.", r("ClusterState")))
        .ok(
            503,
            json_response("Not a standby in step.", r("ClusterState")),
        )
}

/// The schemas this file's operations name.
pub(crate) fn schemas() -> Vec<(&'static str, Value)> {
    vec![(
        "ClusterState",
        object(
            "This server's part among several on one PostgreSQL store.",
            &["role", "leader", "lag_ms"],
            vec![
                ("role", enum_of(["leader", "standby", "starting"])),
                (
                    "leader",
                    json!({ "type": "string", "nullable": true, "description": "The leader's advertised URL (`--advertise`), if known." }),
                ),
                (
                    "lag_ms",
                    json!({ "type": "integer", "format": "int64", "minimum": 0, "nullable": true, "description": "How far this server trails the log: 0 on the leader, `null` while starting." }),
                ),
            ],
        ),
    )]
}
