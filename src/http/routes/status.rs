//! `GET /v1/status/{person_id}`: what a venue gate sees (gate, admin).

use actix_web::{HttpResponse, get, web};

use crate::domain::{PersonId, Role};
use crate::http::AppState;
use crate::http::auth::Principal;
use crate::http::error::{ApiError, Code};

#[get("/v1/status/{person_id}")]
pub async fn get(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    who.require(&[Role::Gate, Role::Admin])?;
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
