//! `/v1/exemptions`: grant and delete exemptions, import a community's list
//! of them (CSV or XLSX, all or nothing) and list those in force (official
//! in scope, admin).

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::domain::exemption_file::parse_exemptions;
use crate::domain::register::MAX_PROBLEMS;
use crate::domain::{
    AreaPath, AuditAction, ExemptionReason, LineCode, LineProblem, PersonId, Role,
};
use crate::engine::{Command, NewExemption, Prepared};
use crate::http::auth::Principal;
use crate::http::body::{self, Fields};
use crate::http::error::{ApiError, Code, Denial};
use crate::http::openapi::build::{
    JSON_BODY_ERRORS, Op, WRITE_ERRORS, area_query, closed_object, count, json_body, json_response,
    object, path_param, r, string, table_body, time,
};
use crate::http::routes::Endpoint;
use crate::http::routes::residents;
use crate::http::{
    AppState, WriteGuard,
    routes::audit::{record, record_about},
};
use serde_json::Value;

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

/// Makes `command` durable (admitted as a write) and waits until the status
/// changes it caused are in the gates' cache; returns what the engine
/// prepared and the admission, which the caller holds while it audits.
async fn write(state: &AppState, command: Command) -> Result<(Prepared, WriteGuard<'_>), ApiError> {
    let admitted = state.admit_write()?;
    let out = state.store.command(command).await?;
    state.cache.flushed(out.ticket).await;
    Ok((out.prepared, admitted))
}

/// Audits `action` on one exemption, named by its id.
async fn audit_one(
    state: &AppState,
    who: &Principal,
    action: AuditAction,
    area: Option<String>,
    id: u32,
) -> Result<(), ApiError> {
    record_about(
        state,
        who,
        action,
        area,
        None,
        Some(1),
        Some(id.to_string()),
    )
    .await
}

pub async fn create(
    state: web::Data<AppState>,
    who: Principal,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    who.require(CREATE.roles)?;
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
    let (prepared, _w) = write(
        &state,
        Command::ExemptionCreate {
            person_id,
            reason,
            from,
            until,
            note: note.clone(),
        },
    )
    .await?;
    let Prepared::ExemptionId(id) = prepared else {
        return Err(ApiError::internal(&"exemption create returned no id"));
    };
    audit_one(&state, &who, AuditAction::ExemptionCreate, area, id).await?;
    Ok(HttpResponse::Created().json(json!({
        "id": id.to_string(),
        "person_id": person_id.to_string(),
        "reason": reason,
        "from": from,
        "until": until,
        "note": note,
    })))
}

pub async fn delete(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    // `/v1/exemptions/import` is a route of its own (POST only), not an
    // exemption's id: answered `405` with its `Allow`, as any route is.
    if id.as_str() == "import" {
        return Ok(super::unrouted(&req));
    }
    who.require(DELETE.roles)?;
    let id: u32 = id.parse().map_err(|_| unknown_exemption())?;
    let person = state
        .read(move |e| e.exemption(id).map(|x| x.person_id))
        .await?
        .ok_or_else(unknown_exemption)?;
    let area = require_person_in_scope(&state, &who, person, unknown_exemption).await?;
    let (_, _w) = write(&state, Command::ExemptionDelete { id }).await?;
    audit_one(&state, &who, AuditAction::ExemptionDelete, area, id).await?;
    Ok(HttpResponse::NoContent().finish())
}

fn rejected(lines: Vec<LineProblem>) -> ApiError {
    super::register::rejected_file(Code::InvalidExemptions, lines, "exemptions")
}

/// `POST /v1/exemptions/import`: every line a registered resident (inside
/// an official's area; one outside it is `unknown_resident`, exactly as if
/// not registered), else nothing is granted. One transaction for all.
pub async fn import(
    state: web::Data<AppState>,
    who: Principal,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    who.require(IMPORT.roles)?;
    let (kind, bytes) = body::table(&req, payload).await?;
    let today = state.now().shanghai_date();
    let file = state
        .build(move || parse_exemptions(kind, &bytes, today))
        .await?
        .map_err(rejected)?;
    let scope = who.area.clone().filter(|_| who.role == Role::Official);
    let (file, unknown, outside) = state
        .read(move |e| {
            let mut unknown = Vec::new();
            // Registered residents outside the official's area: answered as
            // unknown, and the probe audited as `denied`.
            let mut outside = Vec::new();
            for r in &file.rows {
                let registered = e
                    .register()
                    .slot(r.person_id)
                    .is_some_and(|s| e.register().is_active(s));
                let inside = match (&scope, e.area_of(r.person_id)) {
                    (None, _) => true,
                    (Some(mine), Some(area)) => mine.is_prefix_of(area),
                    (Some(_), None) => false,
                };
                if !(registered && inside) {
                    unknown.push(r.line);
                    if registered {
                        outside.push(r.person_id.masked());
                    }
                }
            }
            (file, unknown, outside)
        })
        .await?;
    if !unknown.is_empty() {
        let lines = unknown
            .into_iter()
            .take(crate::domain::register::MAX_PROBLEMS)
            .map(|line| {
                file.problem(
                    line,
                    LineCode::UnknownResident,
                    "no registered resident by this person_id (inside this token's area)",
                )
            })
            .collect();
        let mut refusal = rejected(lines);
        if !outside.is_empty() {
            refusal = refusal.denied(Denial {
                // `target` names one thing: the resident (masked) when the
                // file held one such line, else none.
                target: (outside.len() == 1).then(|| outside[0].clone()),
                ..Denial::default()
            });
        }
        return Err(refusal);
    }
    let n = file.rows.len() as u64;
    let rows: Vec<NewExemption> = file
        .rows
        .into_iter()
        .map(|r| NewExemption {
            person_id: r.person_id,
            reason: r.reason,
            from: r.from,
            until: r.until,
            note: r.note,
        })
        .collect();
    let ids = if rows.is_empty() {
        Vec::new()
    } else {
        let (prepared, _w) = write(&state, Command::ExemptionImport(rows)).await?;
        let Prepared::ExemptionIds(ids) = prepared else {
            return Err(ApiError::internal(&"exemption import returned no ids"));
        };
        ids
    };
    let area = who.area.as_ref().map(AreaPath::to_string);
    record(
        &state,
        &who,
        AuditAction::ExemptionCreate,
        area,
        None,
        Some(n),
    )
    .await?;
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    Ok(HttpResponse::Created().json(json!({ "created": n, "ids": ids })))
}

/// `GET /v1/exemptions?area=PATH`: the exemptions in force under an area
/// (an official's own by default, the whole city for an admin), IDs masked,
/// audited as a list of people (`missing_list`).
pub async fn list(
    state: web::Data<AppState>,
    who: Principal,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    who.require(LIST.roles)?;
    let q = body::query(&req, &["area"])?;
    let area = super::rounds::view_area(&who, &q)?;
    let area_for_read = area.clone();
    let now = state.now();
    let listed = state
        .read(move |e| -> Result<Vec<serde_json::Value>, ApiError> {
            let node = super::rounds::area_node(e, area_for_read.as_ref())?;
            let reg = e.register();
            Ok(e.exemptions_in_force(node, now)
                .into_iter()
                .map(|(x, row)| {
                    let person = row.map(|r| reg.resident(r));
                    json!({
                        "id": x.id.to_string(),
                        "person_id": x.person_id.masked(),
                        "name": person.map(|p| p.name),
                        "area": person.map(|p| p.area.as_str()),
                        "reason": x.reason,
                        "from": x.from,
                        "until": x.until,
                        "note": x.note,
                    })
                })
                .collect())
        })
        .await??;
    let area_s = area.as_ref().map(AreaPath::to_string);
    record(
        &state,
        &who,
        AuditAction::MissingList,
        area_s,
        None,
        Some(listed.len() as u64),
    )
    .await?;
    Ok(HttpResponse::Ok().json(json!({ "exemptions": listed })))
}

// ---------------------------------------------------------------------------
// This file's endpoints: the route table's entries and their OpenAPI operations.
// ---------------------------------------------------------------------------

/// `POST /v1/exemptions`: grant an exemption.
pub const CREATE: Endpoint = Endpoint::new(
    "POST",
    "/v1/exemptions",
    &[Role::Admin, Role::Official],
    || web::route().to(create),
    create_exemption_doc,
);

/// `POST /v1/exemptions/import`: import a list of exemptions (CSV or XLSX).
pub const IMPORT: Endpoint = Endpoint::new(
    "POST",
    "/v1/exemptions/import",
    &[Role::Admin, Role::Official],
    || web::route().to(import),
    import_exemptions_doc,
);

/// `GET /v1/exemptions`: list the exemptions in force.
pub const LIST: Endpoint = Endpoint::new(
    "GET",
    "/v1/exemptions",
    &[Role::Admin, Role::Official],
    || web::route().to(list),
    list_exemptions_doc,
);

/// `DELETE /v1/exemptions/{id}`: delete an exemption.
pub const DELETE: Endpoint = Endpoint::new(
    "DELETE",
    "/v1/exemptions/{id}",
    &[Role::Admin, Role::Official],
    || web::route().to(delete),
    delete_exemption_doc,
);

/// Who may grant or delete an exemption, as both operations say it.
const PERSON_SCOPE: &str = "An official only for a person registered inside its area: anyone else \
                            is answered exactly as if not registered (`404 unknown_resident` for a grant, \
                            `404 unknown_exemption` for a delete; no answer names where a resident lives), \
                            and a registered one outside its area is audited as `denied`. An admin may \
                            exempt any valid ID.";

fn create_exemption_doc() -> Op {
    Op::new("createExemption", "exemptions", "Grant an exemption")
        .notes(format!(
            "{PERSON_SCOPE} `until` before `from` is `400 invalid_window`. An exemption covers a \
             round when `from ≤ deadline ≤ until`; while in force it also suppresses \
             `no_recent_sample`. Answers once the status change is in the gates' cache. Audited \
             (`exemption_create`, `target` the exemption's id)."
        ))
        .body(json_body(
            r("ExemptionRequest"),
            &json!({"person_id": "61080219850312001X", "reason": "bedridden", "from": "2022-04-01T00:00:00+08:00", "until": "2022-05-01T00:00:00+08:00", "note": "卧床"}),
        ))
        .ok(201, json_response("The exemption.", r("Exemption")))
        .errors(
            &[
                &JSON_BODY_ERRORS[..],
                &[
                    Code::UnknownField,
                    Code::InvalidField,
                    Code::InvalidPersonId,
                    Code::InvalidTime,
                    Code::InvalidWindow,
                    Code::UnknownResident,
                ],
                &WRITE_ERRORS[..],
            ]
            .concat(),
        )
}

fn import_exemptions_doc() -> Op {
    Op::new("importExemptions", "exemptions", "Import a list of exemptions (CSV or XLSX)")
        .notes(format!(
            "A community's list of bedridden, away or hospitalised residents. All or nothing, \
             like the register: one bad line rejects the whole file with `400 invalid_exemptions` \
             and `lines` (the first {MAX_PROBLEMS} problems). Line codes: `invalid_person_id`, \
             `invalid_field` (an unknown `reason`, a note over 1000 characters), `invalid_time` \
             (not RFC 3339 with an offset), `invalid_window` (`until` before `from`), \
             `wrong_column_count`, `unknown_resident` (not a registered resident — for an \
             official, not one registered inside its area, exactly as if unregistered); for the \
             file: `missing_column`, `invalid_utf8`. Residents are judged once every line \
             parses. All exemptions are written in one transaction; answers once the status \
             changes are in the gates' cache. Audited as one `exemption_create` with `rows`."
        ))
        .body(table_body(
            "person_id,reason,from,until,note",
            "person_id,reason,from,until,note\n61080219850312001X,bedridden,2022-04-01T00:00:00+08:00,2022-05-01T00:00:00+08:00,卧床\n",
        ))
        .ok(201, json_response("Granted, ids in file order.", r("ExemptionImportAnswer")))
        .errors(&[
            Code::InvalidExemptions,
            Code::UnsupportedMediaType,
            Code::PayloadTooLarge,
            Code::StorageUnavailable,
            Code::Overloaded,
        ])
}

fn list_exemptions_doc() -> Op {
    Op::new(
        "listExemptions",
        "exemptions",
        "List the exemptions in force",
    )
    .notes(
        "Exemptions in force (not deleted, `until` not past) of residents registered under \
             `area`, in list order (area, household, name), then by id. Without `area`: an \
             official's own area; for an admin every exemption in force (a person not \
             registered has `name` and `area` null, listed last). `person_id` masked as in \
             missing lists. Audited as `missing_list`.",
    )
    .param(area_query(
        "the token's area for an official; every exemption for an admin.",
    ))
    .ok(200, json_response("The exemptions.", r("ExemptionList")))
    .errors(&[
        Code::InvalidQuery,
        Code::UnknownArea,
        Code::OutOfScope,
        Code::StorageUnavailable,
    ])
}

fn delete_exemption_doc() -> Op {
    Op::new("deleteExemption", "exemptions", "Delete an exemption")
        .notes(format!(
            "{PERSON_SCOPE} A round's flag returns if the deleted exemption was what cleared it. \
             Audited (`exemption_delete`, `target` the exemption's id)."
        ))
        .param(path_param(
            "id",
            json!({ "type": "string" }),
            "The exemption's id. An unknown (or non-numeric) id is `404 unknown_exemption`.",
        ))
        .ok(204, json!({ "description": "Deleted." }))
        .errors(&[&[Code::UnknownExemption][..], &WRITE_ERRORS[..]].concat())
}

/// The schemas this file's operations name.
pub(crate) fn schemas() -> Vec<(&'static str, Value)> {
    vec![
        (
            "ExemptionRequest",
            closed_object(
                "",
                &["person_id", "reason", "from", "until"],
                vec![
                    ("person_id", r("PersonId")),
                    ("reason", r("ExemptionReason")),
                    ("from", time("", false)),
                    ("until", time("Not before `from`.", false)),
                    ("note", json!({ "type": "string", "maxLength": 1000 })),
                ],
            ),
        ),
        (
            "Exemption",
            object(
                "",
                &["id", "person_id", "reason", "from", "until", "note"],
                vec![
                    ("id", string("For `DELETE /v1/exemptions/{id}`.")),
                    ("person_id", r("PersonId")),
                    ("reason", r("ExemptionReason")),
                    ("from", time("", false)),
                    ("until", time("", false)),
                    ("note", string("Empty when none was given.")),
                ],
            ),
        ),
        (
            "ExemptionImportAnswer",
            object(
                "",
                &["created", "ids"],
                vec![
                    ("created", count("Exemptions granted.")),
                    (
                        "ids",
                        json!({ "type": "array", "items": { "type": "string" }, "description": "Their ids, in file order." }),
                    ),
                ],
            ),
        ),
        (
            "ListedExemption",
            object(
                "",
                &[
                    "id",
                    "person_id",
                    "name",
                    "area",
                    "reason",
                    "from",
                    "until",
                    "note",
                ],
                vec![
                    ("id", string("For `DELETE /v1/exemptions/{id}`.")),
                    (
                        "person_id",
                        string("Masked: the first 6 and last 4 characters."),
                    ),
                    ("name", json!({ "type": "string", "nullable": true })),
                    ("area", json!({ "type": "string", "nullable": true })),
                    ("reason", r("ExemptionReason")),
                    ("from", time("", false)),
                    ("until", time("", false)),
                    ("note", string("Empty when none was given.")),
                ],
            ),
        ),
        (
            "ExemptionList",
            object(
                "",
                &["exemptions"],
                vec![(
                    "exemptions",
                    json!({ "type": "array", "items": r("ListedExemption") }),
                )],
            ),
        ),
    ]
}
