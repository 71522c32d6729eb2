//! `POST /v1/register` and `POST /v1/heads` (admin): CSV or XLSX imports,
//! all or nothing, through the same parser as `rollcall import`. The file is
//! parsed on the build pool, holding no lock, before the engine is touched.

use crate::domain::AuditAction;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::domain::LineCode;
use crate::domain::Role;
use crate::domain::register::MAX_PROBLEMS;
use crate::domain::register::{LineProblem, parse_heads_as, parse_register_as};
use crate::engine::{Command, Prepared};
use crate::http::auth::Principal;
use crate::http::error::{ApiError, Code};
use crate::http::openapi::build::{Op, count, json_response, object, r, table_body};
use crate::http::routes::Endpoint;
use crate::http::{AppState, body, routes::audit::record};
use serde_json::Value;

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

pub async fn register(
    state: web::Data<AppState>,
    who: Principal,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    who.require(REGISTER.roles)?;
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

pub async fn heads(
    state: web::Data<AppState>,
    who: Principal,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    who.require(HEADS.roles)?;
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

// ---------------------------------------------------------------------------
// This file's endpoints: the route table's entries and their OpenAPI operations.
// ---------------------------------------------------------------------------

/// `POST /v1/register`: import the register (CSV or XLSX).
pub const REGISTER: Endpoint = Endpoint::new(
    "POST",
    "/v1/register",
    &[Role::Admin],
    || web::route().to(register),
    import_register_doc,
);

/// `POST /v1/heads`: import the responsible heads (CSV or XLSX).
pub const HEADS: Endpoint = Endpoint::new(
    "POST",
    "/v1/heads",
    &[Role::Admin],
    || web::route().to(heads),
    import_heads_doc,
);

/// The line codes a register file can get.
const REGISTER_LINE_CODES: [LineCode; 7] = [
    LineCode::InvalidPersonId,
    LineCode::InvalidArea,
    LineCode::InvalidField,
    LineCode::WrongColumnCount,
    LineCode::DuplicatePerson,
    LineCode::MissingColumn,
    LineCode::InvalidUtf8,
];

/// The line codes a heads file can get.
const HEADS_LINE_CODES: [LineCode; 6] = [
    LineCode::InvalidArea,
    LineCode::InvalidField,
    LineCode::WrongColumnCount,
    LineCode::DuplicateArea,
    LineCode::MissingColumn,
    LineCode::InvalidUtf8,
];

/// The error codes of both imports.
const IMPORT_ERRORS: [Code; 5] = [
    Code::InvalidRegister,
    Code::UnsupportedMediaType,
    Code::PayloadTooLarge,
    Code::StorageUnavailable,
    Code::Overloaded,
];

/// Line codes as the operations list them.
fn list(cs: &[LineCode]) -> String {
    cs.iter()
        .map(|c| format!("`{}`", c.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn import_register_doc() -> Op {
    Op::new("importRegister", "register", "Import the register (CSV or XLSX)")
        .notes(format!(
            "Upsert by `person_id`, all or nothing: one bad line rejects the whole file with \
             `400 invalid_register` and `lines` (the first {MAX_PROBLEMS} problems; line numbers count \
             the header as line 1, line 0 is the file as a whole). Line codes: {}. A `person_id` \
             twice in one file is `duplicate_person` on the second line. Audited \
             (`register_import`, `rows` = lines imported).",
            list(&REGISTER_LINE_CODES)
        ))
        .body(table_body(
            "person_id,name,phone,area,household",
            "person_id,name,phone,area,household\n61080219850312001X,王芳,13900000000,崇文路街道/学院社区/第03网格/5号楼/3层,5号楼-3层-301\n",
        ))
        .ok(200, json_response("Imported.", r("RegisterAnswer")))
        .errors(&IMPORT_ERRORS)
}

fn import_heads_doc() -> Op {
    Op::new(
        "importHeads",
        "register",
        "Import the responsible heads (CSV or XLSX)",
    )
    .notes(format!(
        "The responsible head of each area node; one head per node (a later file replaces \
             it; the same node twice in one file is `duplicate_area`). Same rules and error \
             shape as the register. Line codes: {}. Audited (`heads_import`).",
        list(&HEADS_LINE_CODES)
    ))
    .body(table_body(
        "area,title,name,phone",
        "area,title,name,phone\n崇文路街道/学院社区/第03网格/5号楼/3层,楼层长,王芳,13900000000\n",
    ))
    .ok(200, json_response("Imported.", r("HeadsAnswer")))
    .errors(&IMPORT_ERRORS)
}

/// The schemas this file's operations name.
pub(crate) fn schemas() -> Vec<(&'static str, Value)> {
    vec![
        (
            "RegisterAnswer",
            object(
                "",
                &["residents", "inserted", "updated", "unchanged"],
                vec![
                    (
                        "residents",
                        count("Registered residents now (moved-out ones not counted)."),
                    ),
                    ("inserted", count("")),
                    ("updated", count("")),
                    ("unchanged", count("")),
                ],
            ),
        ),
        (
            "HeadsAnswer",
            object(
                "",
                &["heads", "inserted", "updated", "unchanged"],
                vec![
                    ("heads", count("Heads now.")),
                    ("inserted", count("")),
                    ("updated", count("")),
                    ("unchanged", count("")),
                ],
            ),
        ),
    ]
}
