//! `/v1/tokens`: issue, list and revoke tokens (admin). Audited with the
//! token's id, role and binding as `target`; a listing never shows a secret.

use crate::domain::AuditAction;
use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use serde_json::{Value, json};

use crate::domain::{AreaPath, Role};
use crate::http::auth::{Principal, new_token};
use crate::http::body::{self, Fields};
use crate::http::error::{ApiError, Code};
use crate::http::{AppState, routes::audit::record_about};
use crate::store::{NewToken, TokenRow};

#[post("/v1/tokens")]
pub async fn create(
    state: web::Data<AppState>,
    who: Principal,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    who.require(&[Role::Admin])?;
    let mut f = Fields::object(body::json(&req, payload).await?)?;
    f.check_known(&["role", "name", "site", "area"])?;
    let role: Role = f.str("role")?.parse().map_err(|_| {
        ApiError::new(
            Code::InvalidField,
            "`role` must be admin, official, scanner, lab or gate",
        )
    })?;
    let name = f.str("name")?;
    let site = f.opt_str("site")?;
    let area = match f.opt_str("area")? {
        Some(a) => Some(a.parse::<AreaPath>().map_err(|e| {
            ApiError::new(
                Code::InvalidField,
                format!("`area` is not an area path: {e}"),
            )
        })?),
        None => None,
    };
    f.finish()?;
    // Checked whatever the role, so a bad binding is never silently dropped.
    if let Some(s) = &site
        && !(1..=64).contains(&s.chars().count())
    {
        return Err(ApiError::new(
            Code::InvalidField,
            "`site` must be 1 to 64 characters",
        ));
    }
    let (site, area) = match role {
        Role::Scanner => (
            Some(site.ok_or_else(|| {
                ApiError::new(Code::InvalidField, "a scanner token needs its `site`")
            })?),
            None,
        ),
        Role::Official => (
            None,
            Some(area.ok_or_else(|| {
                ApiError::new(Code::InvalidField, "an official token needs its `area`")
            })?),
        ),
        _ => (None, None),
    };
    let token = new_token();
    let hash = state.tokens.hash(&token);
    let _w = state.admit_write()?;
    let row = state
        .store
        .create_token(NewToken {
            hash,
            role,
            name: name.clone(),
            site: site.clone(),
            area: area.clone(),
            bootstrap: false,
        })
        .await?;
    state.tokens.insert(
        hash,
        Principal {
            token_id: row.id.clone(),
            name,
            role,
            site: site.as_deref().map(Arc::from),
            area: area.clone(),
        },
    );
    record_about(
        &state,
        &who,
        AuditAction::TokenCreate,
        area.map(|a| a.to_string()),
        None,
        None,
        Some(row.describe()),
    )
    .await?;
    Ok(HttpResponse::Created().json(json!({"id": row.id, "token": token})))
}

#[delete("/v1/tokens/{id}")]
pub async fn revoke(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    who.require(&[Role::Admin])?;
    let unknown = || ApiError::new(Code::UnknownToken, "no such token, or revoked already");
    let row = state
        .store
        .tokens()
        .into_iter()
        .find(|t| t.id == *id)
        .ok_or_else(unknown)?;
    let _w = state.admit_write()?;
    // The store judges "live" itself, so of two revokes racing only one
    // writes, and only that one is audited.
    if !state.store.revoke_token(&id).await? {
        return Err(unknown());
    }
    state.tokens.remove_id(&id);
    record_about(
        &state,
        &who,
        AuditAction::TokenRevoke,
        row.area.as_ref().map(ToString::to_string),
        None,
        None,
        Some(row.describe()),
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// One token as `GET /v1/tokens` lists it: never its secret or hash.
fn token_json(t: &TokenRow) -> Value {
    json!({
        "id": t.id,
        "role": t.role.as_str(),
        "name": t.name,
        "site": t.site,
        "area": t.area.as_ref().map(AreaPath::as_str),
        "created_at": t.created_at,
        "revoked_at": t.revoked_at,
        "bootstrap": t.bootstrap,
    })
}

#[get("/v1/tokens")]
pub async fn list(state: web::Data<AppState>, who: Principal) -> Result<HttpResponse, ApiError> {
    who.require(&[Role::Admin])?;
    let tokens: Vec<Value> = state.store.tokens().iter().map(token_json).collect();
    Ok(HttpResponse::Ok().json(json!({ "tokens": tokens })))
}
