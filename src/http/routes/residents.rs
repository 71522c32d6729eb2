//! `/v1/residents/{person_id}`: look-up (official in scope, admin), move-out
//! and clearing a `positive` (admin). All audited.

use crate::domain::AuditAction;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::domain::{AreaPath, PersonId, Role};
use crate::engine::Command;
use crate::http::auth::Principal;
use crate::http::body::{self, Fields};
use crate::http::error::{ApiError, Code, Denial};
use crate::http::openapi::build::{
    JSON_BODY_ERRORS, Op, WRITE_ERRORS, closed_object, json_response, object, person_id_param, r,
    string, time,
};
use crate::http::routes::Endpoint;
use crate::http::{AppState, routes::audit::record_about};
use serde_json::Value;

fn parse_id(s: &str) -> Result<PersonId, ApiError> {
    s.parse()
        .map_err(|e| ApiError::new(Code::InvalidPersonId, format!("{e}")))
}

/// The answer for an ID that is not registered — and, to an official, for
/// a resident outside their area (it must read the same).
pub(crate) fn unknown() -> ApiError {
    ApiError::new(Code::UnknownResident, "no registered resident has this ID")
}

pub async fn get(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    who.require(GET.roles)?;
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

pub async fn delete(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    who.require(DELETE.roles)?;
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

pub async fn clear(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    who.require(CLEAR.roles)?;
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

// ---------------------------------------------------------------------------
// This file's endpoints: the route table's entries and their OpenAPI operations.
// ---------------------------------------------------------------------------

/// `GET /v1/residents/{person_id}`: look up a resident.
pub const GET: Endpoint = Endpoint::new(
    "GET",
    "/v1/residents/{person_id}",
    &[Role::Admin, Role::Official],
    || web::route().to(get),
    get_resident_doc,
);

/// `DELETE /v1/residents/{person_id}`: move a resident out.
pub const DELETE: Endpoint = Endpoint::new(
    "DELETE",
    "/v1/residents/{person_id}",
    &[Role::Admin],
    || web::route().to(delete),
    delete_resident_doc,
);

/// `POST /v1/residents/{person_id}/clear`: clear a `positive`.
pub const CLEAR: Endpoint = Endpoint::new(
    "POST",
    "/v1/residents/{person_id}/clear",
    &[Role::Admin],
    || web::route().to(clear),
    clear_resident_doc,
);

fn get_resident_doc() -> Op {
    Op::new("getResident", "residents", "Look up a resident")
        .notes(
            "An official only for a resident registered inside its area: anyone else is \
             `404 unknown_resident` for it, exactly as if not registered (no answer names where \
             a resident lives), and a registered one outside its area is audited as `denied`. An \
             unknown or moved-out resident is `404 unknown_resident` for every role. `person_id` \
             is shown whole. Audited (`resident_view`, `target` the masked ID).",
        )
        .param(person_id_param())
        .ok(200, json_response("The resident.", r("Resident")))
        .errors(&[
            Code::InvalidPersonId,
            Code::UnknownResident,
            Code::StorageUnavailable,
        ])
}

fn delete_resident_doc() -> Op {
    Op::new("deleteResident", "residents", "Move a resident out")
        .notes(
            "No longer counted in `residents`, nor in the scope of rounds not yet closed (closed \
             rounds keep them). Audited (`resident_delete`).",
        )
        .param(person_id_param())
        .ok(204, json!({ "description": "Moved out." }))
        .errors(
            &[
                &[Code::InvalidPersonId, Code::UnknownResident][..],
                &WRITE_ERRORS[..],
            ]
            .concat(),
        )
}

fn clear_resident_doc() -> Op {
    Op::new("clearResident", "residents", "Clear a `positive`")
        .notes(
            "Clears the red `positive` reason. Works for any valid ID with a status, registered \
             or not. The body is optional: empty, or a JSON object with an optional `note`. \
             Answers once the new status is in the gates' cache. Audited (`clear`).",
        )
        .param(person_id_param())
        .body(json!({
            "required": false,
            "description": "Optional. When not empty: `Content-Type: application/json`, else `415 unsupported_media_type`.",
            "content": { "application/json": { "schema": r("ClearRequest"), "example": {"note": "retest negative at the fever clinic"} } }
        }))
        .ok(200, json_response("The new status, as a gate sees it.", r("Status")))
        .errors(
            &[
                &[Code::InvalidPersonId][..],
                &JSON_BODY_ERRORS[..],
                &[Code::UnknownField, Code::InvalidField],
                &WRITE_ERRORS[..],
            ]
            .concat(),
        )
}

/// The schemas this file's operations name.
pub(crate) fn schemas() -> Vec<(&'static str, Value)> {
    vec![
        (
            "Resident",
            object(
                "",
                &[
                    "person_id",
                    "name",
                    "phone",
                    "area",
                    "household",
                    "status",
                    "last_sample_at",
                    "flagged_rounds",
                ],
                vec![
                    ("person_id", r("PersonId")),
                    ("name", string("")),
                    ("phone", string("")),
                    ("area", r("AreaPath")),
                    ("household", string("")),
                    ("status", r("Status")),
                    ("last_sample_at", time("The latest `collected_at`.", true)),
                    (
                        "flagged_rounds",
                        json!({ "type": "array", "items": r("RoundId"), "description": "The closed rounds they are still flagged in." }),
                    ),
                ],
            ),
        ),
        (
            "ClearRequest",
            closed_object(
                "",
                &[],
                vec![(
                    "note",
                    json!({ "type": "string", "maxLength": 1000, "description": "Why (kept with the clear)." }),
                )],
            ),
        ),
    ]
}
