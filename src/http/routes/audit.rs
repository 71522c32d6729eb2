//! `/v1/audit` (admin), the helpers every audited handler calls, and the
//! middleware that audits what an official was denied (`denied`).

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse, ResponseError, get, web};
use serde_json::json;

use crate::domain::{AuditAction, Role, Timestamp};
use crate::http::AppState;
use crate::http::auth::Principal;
use crate::http::error::{ApiError, Code};
use crate::store::AuditEntry;

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

#[get("/v1/audit")]
pub async fn list(
    state: web::Data<AppState>,
    who: Principal,
    req: actix_web::HttpRequest,
) -> Result<HttpResponse, ApiError> {
    who.require(&[Role::Admin])?;
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
