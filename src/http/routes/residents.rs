//! `/v1/residents/{person_id}`: look-up (official in scope, admin), move-out
//! and clearing a `positive` (admin). All audited.

use crate::domain::AuditAction;
use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use serde_json::json;

use crate::domain::{AreaPath, PersonId, Role};
use crate::engine::Command;
use crate::http::auth::Principal;
use crate::http::body::{self, Fields};
use crate::http::error::{ApiError, Code, Denial};
use crate::http::{AppState, routes::audit::record_about};

fn parse_id(s: &str) -> Result<PersonId, ApiError> {
    s.parse()
        .map_err(|e| ApiError::new(Code::InvalidPersonId, format!("{e}")))
}

/// The answer for an ID that is not registered — and, to an official, for
/// a resident outside their area (it must read the same).
pub(crate) fn unknown() -> ApiError {
    ApiError::new(Code::UnknownResident, "no registered resident has this ID")
}

#[get("/v1/residents/{person_id}")]
pub async fn get(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    who.require(&[Role::Admin, Role::Official])?;
    let id = parse_id(&id)?;
    let now = state.now();
    let (view, status) = state
        .read(move |e| (e.resident_view(id), e.status(id, now)))
        .await?;
    let view = view.ok_or_else(unknown)?;
    let area: AreaPath = view.area.parse().map_err(|_| unknown())?;
    if !who.holds(&area) {
        // Exactly the answer for someone not registered: the area is never
        // named, and whether they exist at all is not told.
        return Err(unknown().denied(Denial {
            target: Some(id.masked()),
            ..Denial::default()
        }));
    }
    record_about(
        &state,
        &who,
        AuditAction::ResidentView,
        Some(view.area.clone()),
        None,
        Some(1),
        Some(id.masked()),
    )
    .await?;
    Ok(HttpResponse::Ok().json(json!({
        "person_id": view.person_id.to_string(),
        "name": view.name,
        "phone": view.phone,
        "area": view.area,
        "household": view.household,
        "status": status,
        "last_sample_at": view.last_sample_at,
        "flagged_rounds": view.flagged_rounds,
    })))
}

#[delete("/v1/residents/{person_id}")]
pub async fn delete(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    who.require(&[Role::Admin])?;
    let id = parse_id(&id)?;
    let _w = state.admit_write()?;
    let area = state
        .read(move |e| e.area_of(id).map(ToString::to_string))
        .await?;
    state.store.command(Command::ResidentDelete(id)).await?;
    record_about(
        &state,
        &who,
        AuditAction::ResidentDelete,
        area,
        None,
        Some(1),
        Some(id.masked()),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[post("/v1/residents/{person_id}/clear")]
pub async fn clear(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    who.require(&[Role::Admin])?;
    let id = parse_id(&id)?;
    let note = match body::optional_json(&req, payload).await? {
        Some(v) => {
            let mut f = Fields::object(v)?;
            f.check_known(&["note"])?;
            let n = f.opt_text("note")?;
            f.finish()?;
            n.unwrap_or_default()
        }
        None => String::new(),
    };
    let _w = state.admit_write()?;
    let out = state
        .store
        .command(Command::Clear {
            person_id: id,
            note,
        })
        .await?;
    state.cache.flushed(out.ticket).await;
    let now = state.now();
    let (status, area) = state
        .read(move |e| (e.status(id, now), e.area_of(id).map(ToString::to_string)))
        .await?;
    record_about(
        &state,
        &who,
        AuditAction::Clear,
        area,
        None,
        Some(1),
        Some(id.masked()),
    )
    .await?;
    Ok(HttpResponse::Ok().json(status))
}
