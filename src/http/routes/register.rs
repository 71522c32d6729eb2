//! `POST /v1/register` and `POST /v1/heads` (admin): CSV or XLSX imports,
//! all or nothing, through the same parser as `rollcall import`. The file is
//! parsed on the build pool, holding no lock, before the engine is touched.

use crate::domain::AuditAction;
use actix_web::{HttpRequest, HttpResponse, post, web};
use serde_json::json;

use crate::domain::Role;
use crate::domain::register::{LineProblem, parse_heads_as, parse_register_as};
use crate::engine::{Command, Prepared};
use crate::http::auth::Principal;
use crate::http::error::{ApiError, Code};
use crate::http::{AppState, body, routes::audit::record};

fn rejected(lines: Vec<LineProblem>, what: &str) -> ApiError {
    rejected_file(Code::InvalidRegister, lines, what)
}

/// A rejected file (register, heads, exemptions): `code` with its problems.
pub(crate) fn rejected_file(code: Code, lines: Vec<LineProblem>, what: &str) -> ApiError {
    let mut e = ApiError::new(
        code,
        format!(
            "the {what} file was rejected ({} problem(s)); nothing was changed",
            lines.len()
        ),
    );
    e.lines = Some(lines);
    e
}

fn answer(key: &str, p: &Prepared) -> HttpResponse {
    match p {
        Prepared::Import {
            total,
            inserted,
            updated,
            unchanged,
        } => HttpResponse::Ok().json(json!({
            key: total, "inserted": inserted, "updated": updated, "unchanged": unchanged
        })),
        _ => HttpResponse::Ok().finish(),
    }
}

#[post("/v1/register")]
pub async fn register(
    state: web::Data<AppState>,
    who: Principal,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    who.require(&[Role::Admin])?;
    let (kind, bytes) = body::table(&req, payload).await?;
    let today = state.now().shanghai_date();
    let rows = state
        .build(move || parse_register_as(kind, &bytes, today))
        .await?
        .map_err(|l| rejected(l, "register"))?;
    let n = rows.len() as u64;
    let _w = state.admit_write()?;
    let out = state.store.command(Command::Register(rows)).await?;
    record(
        &state,
        &who,
        AuditAction::RegisterImport,
        None,
        None,
        Some(n),
    )
    .await?;
    Ok(answer("residents", &out.prepared))
}

#[post("/v1/heads")]
pub async fn heads(
    state: web::Data<AppState>,
    who: Principal,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    who.require(&[Role::Admin])?;
    let (kind, bytes) = body::table(&req, payload).await?;
    let rows = state
        .build(move || parse_heads_as(kind, &bytes))
        .await?
        .map_err(|l| rejected(l, "heads"))?;
    let n = rows.len() as u64;
    let _w = state.admit_write()?;
    let out = state.store.command(Command::Heads(rows)).await?;
    record(&state, &who, AuditAction::HeadsImport, None, None, Some(n)).await?;
    Ok(answer("heads", &out.prepared))
}
