//! `GET /leader` and `GET /standby` (docs/api.md, Several servers): health
//! checks a load balancer uses to send writes to the leader and reads to
//! standbys in step. Kept apart from `ops.rs` so the cluster's routes change
//! in one place.

use actix_web::{HttpResponse, get, web};
use serde_json::{Value, json};

use crate::http::AppState;
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

#[get("/leader")]
pub async fn leader(app: web::Data<AppState>) -> HttpResponse {
    let (role, body) = state(&app);
    if role == ClusterRole::Leader {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

#[get("/standby")]
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
