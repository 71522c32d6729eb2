//! `/v1/audit` (admin), and the one helper every audited handler calls.

use actix_web::{HttpResponse, get, web};
use serde_json::json;

use crate::domain::{Role, Timestamp};
use crate::http::AppState;
use crate::http::auth::Principal;
use crate::http::error::{ApiError, Code};
use crate::store::AuditEntry;

/// Writes one audit entry, durably, before the audited answer is sent.
pub async fn record(
    state: &AppState,
    who: &Principal,
    action: &str,
    area: Option<String>,
    round_id: Option<String>,
    rows: Option<u64>,
) -> Result<(), ApiError> {
    state
        .store
        .audit(AuditEntry {
            at: state.now(),
            token_name: who.name.clone(),
            role: who.role,
            action: action.to_owned(),
            area,
            round_id,
            rows,
        })
        .await?;
    Ok(())
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
