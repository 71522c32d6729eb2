//! `/v1/exemptions`: grant and delete exemptions (official in scope, admin).

use crate::domain::AuditAction;
use actix_web::{HttpRequest, HttpResponse, delete, post, web};
use serde_json::json;

use crate::domain::{ExemptionReason, PersonId, Role};
use crate::engine::{Command, Prepared};
use crate::http::auth::Principal;
use crate::http::body::{self, Fields};
use crate::http::error::{ApiError, Code, Denial};
use crate::http::routes::residents;
use crate::http::{AppState, routes::audit::record_about};

/// An official may act only for residents registered inside their area;
/// anyone else is answered `not_there()` exactly as if not registered (the
/// area is never named), and a registered one is audited as `denied`.
/// Returns the person's registered area, if any.
async fn require_person_in_scope(
    state: &AppState,
    who: &Principal,
    id: PersonId,
    not_there: fn() -> ApiError,
) -> Result<Option<String>, ApiError> {
    let area = state.read(move |e| e.area_of(id).cloned()).await?;
    if who.role == Role::Official {
        match &area {
            Some(a) if who.holds(a) => {}
            Some(_) => {
                return Err(not_there().denied(Denial {
                    target: Some(id.masked()),
                    ..Denial::default()
                }));
            }
            None => return Err(not_there()),
        }
    }
    Ok(area.map(|a| a.to_string()))
}

fn unknown_exemption() -> ApiError {
    ApiError::new(Code::UnknownExemption, "no such exemption")
}

#[post("/v1/exemptions")]
pub async fn create(
    state: web::Data<AppState>,
    who: Principal,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    who.require(&[Role::Admin, Role::Official])?;
    let mut f = Fields::object(body::json(&req, payload).await?)?;
    f.check_known(&["person_id", "reason", "from", "until", "note"])?;
    let person_id = f.person_id("person_id")?;
    let reason: ExemptionReason = f.str("reason")?.parse().map_err(|_| {
        ApiError::new(
            Code::InvalidField,
            "`reason` must be bedridden, infant, away, hospitalized or other",
        )
    })?;
    let from = f.time("from")?;
    let until = f.time("until")?;
    let note = f.opt_text("note")?.unwrap_or_default();
    f.finish()?;
    if until < from {
        return Err(ApiError::new(
            Code::InvalidWindow,
            "`until` is before `from`",
        ));
    }
    let area = require_person_in_scope(&state, &who, person_id, residents::unknown).await?;
    let _w = state.admit_write()?;
    let out = state
        .store
        .command(Command::ExemptionCreate {
            person_id,
            reason,
            from,
            until,
            note: note.clone(),
        })
        .await?;
    let Prepared::ExemptionId(id) = out.prepared else {
        return Err(ApiError::internal(&"exemption create returned no id"));
    };
    state.cache.flushed(out.ticket).await;
    record_about(
        &state,
        &who,
        AuditAction::ExemptionCreate,
        area,
        None,
        Some(1),
        Some(id.to_string()),
    )
    .await?;
    Ok(HttpResponse::Created().json(json!({
        "id": id.to_string(),
        "person_id": person_id.to_string(),
        "reason": reason,
        "from": from,
        "until": until,
        "note": note,
    })))
}

#[delete("/v1/exemptions/{id}")]
pub async fn delete(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    who.require(&[Role::Admin, Role::Official])?;
    let id: u32 = id.parse().map_err(|_| unknown_exemption())?;
    let person = state
        .read(move |e| e.exemption(id).map(|x| x.person_id))
        .await?
        .ok_or_else(unknown_exemption)?;
    let area = require_person_in_scope(&state, &who, person, unknown_exemption).await?;
    let _w = state.admit_write()?;
    let out = state.store.command(Command::ExemptionDelete { id }).await?;
    state.cache.flushed(out.ticket).await;
    record_about(
        &state,
        &who,
        AuditAction::ExemptionDelete,
        area,
        None,
        Some(1),
        Some(id.to_string()),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
