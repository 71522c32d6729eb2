//! `/v1/tokens`: issue, list and revoke tokens (admin). Audited with the
//! token's id, role and binding as `target`; a listing never shows a secret.

use crate::domain::AuditAction;
use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use crate::domain::{AreaPath, Role};
use crate::http::auth::{Principal, new_token};
use crate::http::body::{self, Fields};
use crate::http::error::{ApiError, Code};
use crate::http::openapi::build::{
    JSON_BODY_ERRORS, NOT_BLANK, Op, WRITE_ERRORS, closed_object, enum_of, json_body,
    json_response, object, path_param, r, string, time,
};
use crate::http::routes::Endpoint;
use crate::http::{AppState, routes::audit::record_about};
use crate::store::{NewToken, TokenRow};

pub async fn create(
    state: web::Data<AppState>,
    who: Principal,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    who.require(CREATE.roles)?;
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

pub async fn revoke(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    who.require(REVOKE.roles)?;
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

pub async fn list(state: web::Data<AppState>, who: Principal) -> Result<HttpResponse, ApiError> {
    who.require(LIST.roles)?;
    let tokens: Vec<Value> = state.store.tokens().iter().map(token_json).collect();
    Ok(HttpResponse::Ok().json(json!({ "tokens": tokens })))
}

// ---------------------------------------------------------------------------
// This file's endpoints: the route table's entries and their OpenAPI operations.
// ---------------------------------------------------------------------------

/// `POST /v1/tokens`: issue a token.
pub const CREATE: Endpoint = Endpoint::new(
    "POST",
    "/v1/tokens",
    &[Role::Admin],
    || web::route().to(create),
    create_token_doc,
);

/// `GET /v1/tokens`: list tokens.
pub const LIST: Endpoint = Endpoint::new(
    "GET",
    "/v1/tokens",
    &[Role::Admin],
    || web::route().to(list),
    list_tokens_doc,
);

/// `DELETE /v1/tokens/{id}`: revoke a token.
pub const REVOKE: Endpoint = Endpoint::new(
    "DELETE",
    "/v1/tokens/{id}",
    &[Role::Admin],
    || web::route().to(revoke),
    revoke_token_doc,
);

fn create_token_doc() -> Op {
    Op::new("createToken", "tokens", "Issue a token")
        .notes(
            "`site` (1–64 characters) is required for a `scanner`, `area` (a valid area path; it \
             need not be in the register yet) for an `official`; each is ignored for the other \
             roles. An unknown role or a missing binding is `400 invalid_field`. The token is \
             shown only in this answer; the server keeps only a keyed hash. Audited \
             (`token_create`, `target` naming the token: `token 7 scanner S01`).",
        )
        .body(json_body(
            r("TokenRequest"),
            &json!({"role": "scanner", "name": "S01 phone 2", "site": "S01"}),
        ))
        .ok(
            201,
            json_response("The token, shown only here.", r("TokenCreated")),
        )
        .errors(
            &[
                &JSON_BODY_ERRORS[..],
                &[Code::UnknownField, Code::InvalidField],
                &WRITE_ERRORS[..],
            ]
            .concat(),
        )
}

fn list_tokens_doc() -> Op {
    Op::new("listTokens", "tokens", "List tokens")
        .notes(
            "Every token, revoked ones too, in creation order, so an admin can find the one to \
             revoke. Never shows a token itself (the server keeps only a keyed hash). \
             `bootstrap` marks the admin token `ROLLCALL_ADMIN_TOKEN` gives (or the one generated \
             when it was unset): starting the server with another value revokes it and creates \
             the new one (audited as `token_revoke` and `token_create`); starting with a revoked \
             value refuses to start.",
        )
        .ok(200, json_response("The tokens.", r("TokenList")))
        .errors(&[])
}

fn revoke_token_doc() -> Op {
    Op::new("revokeToken", "tokens", "Revoke a token")
        .notes(
            "The token stops working at once. A token revoked already is `404 unknown_token`, and \
         writes no audit entry. Audited (`token_revoke`, `target` naming the token).",
        )
        .param(path_param(
            "id",
            json!({ "type": "string" }),
            "The token's id, as `POST /v1/tokens` gave it.",
        ))
        .ok(204, json!({ "description": "Revoked." }))
        .errors(&[&[Code::UnknownToken][..], &WRITE_ERRORS[..]].concat())
}

/// `POST /v1/tokens`'s body for these roles, with these fields required.
pub(crate) fn token_request(roles: &[Role], required: &[&str]) -> Value {
    closed_object(
        "",
        required,
        vec![
            ("role", enum_of(roles.iter().map(|r| r.as_str()))),
            (
                "name",
                json!({ "type": "string", "minLength": 1, "pattern": NOT_BLANK, "description": "Who holds it (shown in the audit log)." }),
            ),
            (
                "site",
                json!({ "type": "string", "minLength": 1, "maxLength": 64, "pattern": NOT_BLANK, "description": "Required for `scanner`; checked but not kept otherwise." }),
            ),
            (
                "area",
                json!({ "allOf": [r("AreaPath")], "description": "Required for `official`; checked but not kept otherwise." }),
            ),
        ],
    )
}

/// The schemas this file's operations name.
pub(crate) fn schemas() -> Vec<(&'static str, Value)> {
    vec![
        (
            "TokenRequest",
            json!({
                "description": "One of three shapes by `role`: a `scanner` needs `site`, an `official` \
                                needs `area`; a binding the role does not use is checked but not kept.",
                "oneOf": [
                    token_request(&[Role::Scanner], &["role", "name", "site"]),
                    token_request(&[Role::Official], &["role", "name", "area"]),
                    token_request(
                        &[Role::Admin, Role::Lab, Role::Gate],
                        &["role", "name"],
                    ),
                ]
            }),
        ),
        (
            "TokenInfo",
            object(
                "A token as listed: never the token itself.",
                &[
                    "id",
                    "role",
                    "name",
                    "site",
                    "area",
                    "created_at",
                    "revoked_at",
                    "bootstrap",
                ],
                vec![
                    ("id", string("For `DELETE /v1/tokens/{id}`.")),
                    ("role", r("Role")),
                    ("name", string("")),
                    (
                        "site",
                        json!({ "type": "string", "nullable": true, "description": "A scanner's site; null for other roles." }),
                    ),
                    (
                        "area",
                        json!({ "allOf": [r("AreaPath")], "nullable": true, "description": "An official's area; null for other roles." }),
                    ),
                    ("created_at", time("", false)),
                    ("revoked_at", time("Null while the token works.", true)),
                    (
                        "bootstrap",
                        json!({ "type": "boolean", "description": "The bootstrap admin (`ROLLCALL_ADMIN_TOKEN`)." }),
                    ),
                ],
            ),
        ),
        (
            "TokenList",
            object(
                "In creation order.",
                &["tokens"],
                vec![(
                    "tokens",
                    json!({ "type": "array", "items": r("TokenInfo") }),
                )],
            ),
        ),
        (
            "TokenCreated",
            object(
                "",
                &["id", "token"],
                vec![
                    ("id", string("For `DELETE /v1/tokens/{id}`.")),
                    ("token", string("The bearer token; shown only here.")),
                ],
            ),
        ),
    ]
}
