//! `/v1/audit` (admin), the helpers every audited handler calls, and the
//! middleware that audits what an official was denied (`denied`).

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse, ResponseError, web};
use serde_json::json;

use crate::domain::{AuditAction, Role, Timestamp};
use crate::http::AppState;
use crate::http::auth::Principal;
use crate::http::error::{ApiError, Code};
use crate::http::openapi::build::{
    Op, enum_of, json_response, object, query_param, r, string, time,
};
use crate::http::routes::Endpoint;
use crate::store::AuditEntry;
use serde_json::Value;

/// Writes one audit entry, durably, before the audited answer is sent.
pub async fn record(
    state: &AppState,
    who: &Principal,
    action: AuditAction,
    area: Option<String>,
    round_id: Option<String>,
    rows: Option<u64>,
) -> Result<(), ApiError> {
    record_about(state, who, action, area, round_id, rows, None).await
}

/// [`record`] for an action about one thing, named by `target` (a token, a
/// resident's masked ID, an exemption's id).
pub async fn record_about(
    state: &AppState,
    who: &Principal,
    action: AuditAction,
    area: Option<String>,
    round_id: Option<String>,
    rows: Option<u64>,
    target: Option<String>,
) -> Result<(), ApiError> {
    state
        .store
        .audit(AuditEntry {
            at: state.now(),
            token_name: who.name.clone(),
            role: who.role,
            action,
            area,
            round_id,
            rows,
            target,
        })
        .await?;
    Ok(())
}

/// Middleware: an official answered `403 out_of_scope`, or a `404` that
/// hides a registered resident outside their area ([`ApiError::denied`]),
/// is audited as `denied` before the answer goes out. One place, so no
/// handler can forget it. If the entry cannot be written, the answer is the
/// store's error instead.
pub async fn audit_denials(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let res = next.call(req).await?;
    let denial = res
        .response()
        .error()
        .and_then(|e| e.as_error::<ApiError>())
        .filter(|e| e.code == Code::OutOfScope || e.denied.is_some())
        .map(|e| e.denied.as_deref().cloned().unwrap_or_default());
    let who = res.request().extensions().get::<Principal>().cloned();
    let state = res.request().app_data::<web::Data<AppState>>().cloned();
    let (Some(denial), Some(who), Some(state)) = (denial, who, state) else {
        return Ok(res.map_into_boxed_body());
    };
    if who.role != Role::Official {
        return Ok(res.map_into_boxed_body());
    }
    let written = record_about(
        &state,
        &who,
        AuditAction::Denied,
        denial.area,
        denial.round_id,
        None,
        denial.target,
    )
    .await;
    Ok(match written {
        Ok(()) => res.map_into_boxed_body(),
        Err(e) => {
            let (req, _) = res.into_parts();
            ServiceResponse::new(req, e.error_response())
        }
    })
}

pub async fn list(
    state: web::Data<AppState>,
    who: Principal,
    req: actix_web::HttpRequest,
) -> Result<HttpResponse, ApiError> {
    who.require(LIST.roles)?;
    let q = crate::http::body::query(&req, &["since"])?;
    let since = q
        .get("since")
        .map(String::as_str)
        .map(Timestamp::parse)
        .transpose()
        .map_err(|e| ApiError::new(Code::InvalidQuery, format!("`since`: {e}")))?;
    let entries = state.store.audit_since(since).await?;
    Ok(HttpResponse::Ok().json(json!({ "entries": entries })))
}

// ---------------------------------------------------------------------------
// This file's endpoints: the route table's entries and their OpenAPI operations.
// ---------------------------------------------------------------------------

/// `GET /v1/audit`: read the audit log.
pub const LIST: Endpoint = Endpoint::new(
    "GET",
    "/v1/audit",
    &[Role::Admin],
    || web::route().to(list),
    audit_log_doc,
);

fn audit_log_doc() -> Op {
    Op::new("auditLog", "audit", "Read the audit log")
        .notes(
            "Entries at or after `since` (all without it), oldest first. Any other query \
             parameter, or one given twice, is `400 invalid_query`.",
        )
        .param(query_param(
            "since",
            json!({ "type": "string", "format": "date-time" }),
            "RFC 3339 with an explicit offset (URL-encode the `+`); otherwise `400 invalid_query`.",
        ))
        .ok(200, json_response("The entries.", r("AuditList")))
        .errors(&[Code::InvalidQuery, Code::StorageUnavailable])
}

/// The schemas this file's operations name.
pub(crate) fn schemas() -> Vec<(&'static str, Value)> {
    vec![
        (
            "AuditEntry",
            object(
                "",
                &[
                    "at",
                    "token_name",
                    "role",
                    "action",
                    "area",
                    "round_id",
                    "rows",
                    "target",
                ],
                vec![
                    ("at", time("", false)),
                    ("token_name", string("The `name` of the token that acted.")),
                    ("role", r("Role")),
                    ("action", enum_of(AuditAction::ALL.map(AuditAction::as_str))),
                    ("area", json!({ "type": "string", "nullable": true })),
                    ("round_id", json!({ "type": "string", "nullable": true })),
                    (
                        "rows",
                        json!({ "type": "integer", "format": "int64", "minimum": 0, "nullable": true, "description": "How many people the action returned or changed; null where none." }),
                    ),
                    (
                        "target",
                        json!({ "type": "string", "nullable": true, "description": "What the action was about, where it is one thing: a token's id, role and binding (`token 7 scanner S01`) for `token_create`/`token_revoke`; the resident's masked ID for `resident_view`, `clear`, `resident_delete` and `denied`; the exemption's id for `exemption_create`/`exemption_delete`; null otherwise." }),
                    ),
                ],
            ),
        ),
        (
            "AuditList",
            object(
                "Oldest first.",
                &["entries"],
                vec![(
                    "entries",
                    json!({ "type": "array", "items": r("AuditEntry") }),
                )],
            ),
        ),
    ]
}
