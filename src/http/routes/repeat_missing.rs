//! `GET /v1/repeat-missing` (official in scope, admin): the residents still
//! flagged in at least `min` of the last `last` closed rounds that covered
//! them — the people a campaign must chase first. JSON, CSV or XLSX; masked
//! and audited like missing lists. The count itself is the engine's
//! (`Engine::repeat_missing`).

use crate::domain::AuditAction;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use super::rounds::export::{self, COLUMNS, MissingList, csv_cell};
use super::rounds::{area_node, view_area};
use crate::domain::{AreaPath, Role};
use crate::http::auth::Principal;
use crate::http::body;
use crate::http::error::{ApiError, Code};
use crate::http::openapi::build::{Op, area_query, count, object, query_param, r};
use crate::http::routes::Endpoint;
use crate::http::{AppState, routes::audit::record};

/// Defaults of `last` and `min`.
pub const DEFAULT_LAST: usize = 3;
pub const DEFAULT_MIN: usize = 2;
/// The most rounds `last` may look back over.
pub const MAX_LAST: usize = 1000;

/// The repeat missers as the answer shows them: the people copied out as
/// a missing list is, each with the rounds that still flag them.
struct Missers {
    people: MissingList,
    round_ids: Vec<Vec<String>>,
}

fn count_param(
    q: &std::collections::HashMap<String, String>,
    k: &str,
    default: usize,
) -> Result<usize, ApiError> {
    match q.get(k) {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LAST).contains(n))
            .ok_or_else(|| {
                ApiError::new(
                    Code::InvalidQuery,
                    format!("`{k}` must be a whole number from 1 to {MAX_LAST}"),
                )
            }),
    }
}

pub async fn list(
    state: web::Data<AppState>,
    who: Principal,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    who.require(LIST.roles)?;
    let q = body::query(&req, &["area", "last", "min", "format", "unmask"])?;
    let last = count_param(&q, "last", DEFAULT_LAST)?;
    let min = count_param(&q, "min", DEFAULT_MIN)?;
    let format = q.get("format").map_or("json", String::as_str).to_owned();
    if !matches!(format.as_str(), "json" | "csv" | "xlsx") {
        return Err(ApiError::new(
            Code::InvalidQuery,
            "`format` must be json, csv or xlsx",
        ));
    }
    let unmask = export::unmask_param(&q, &who)?;
    let area = view_area(&who, &q)?;
    // A heavy read like missing lists: within their budget, or shed at once.
    let _admitted = state.admit_heavy_read()?;
    let area_for_read = area.clone();
    let missers = state
        .read(move |e| -> Result<Missers, ApiError> {
            let node = area_node(e, area_for_read.as_ref())?;
            let found = e.repeat_missing(node, last, min);
            let rows: Vec<u32> = found.iter().map(|m| m.row).collect();
            Ok(Missers {
                people: MissingList::copy(e, &rows, unmask),
                round_ids: found
                    .iter()
                    .map(|m| m.round_ids.iter().map(ToString::to_string).collect())
                    .collect(),
            })
        })
        .await??;
    let total = missers.round_ids.len() as u64;
    let area_s = area.as_ref().map(AreaPath::to_string);
    // The answer is built before the pull is audited: a pull that failed
    // is never recorded.
    let answer = match format.as_str() {
        "csv" => {
            let bytes = state.build(move || csv_bytes(&missers)).await??;
            HttpResponse::Ok()
                .content_type("text/csv; charset=utf-8")
                .body(bytes)
        }
        "xlsx" => {
            let bytes = state
                .build(move || xlsx_bytes(&missers))
                .await?
                .map_err(|e| ApiError::internal(&e))?;
            HttpResponse::Ok()
                .content_type(body::XLSX)
                .insert_header((
                    "Content-Disposition",
                    "attachment; filename=\"repeat-missing.xlsx\"",
                ))
                .body(bytes)
        }
        _ => {
            let people: Vec<Value> = (0..missers.round_ids.len())
                .map(|i| misser_json(&missers, i))
                .collect();
            HttpResponse::Ok().json(json!({
                "area": area_s, "last": last, "min": min, "total": total, "people": people
            }))
        }
    };
    record(
        &state,
        &who,
        AuditAction::MissingList,
        area_s.clone(),
        None,
        Some(total),
    )
    .await?;
    if unmask {
        record(&state, &who, AuditAction::Unmask, area_s, None, Some(total)).await?;
    }
    Ok(answer)
}

fn misser_json(m: &Missers, i: usize) -> Value {
    let mut v = serde_json::to_value(m.people.person(i)).unwrap_or_default();
    v["misses"] = json!(m.round_ids[i].len());
    v["round_ids"] = json!(m.round_ids[i]);
    v
}

/// The CSV and XLSX columns: a missing list's, then `misses` and
/// `round_ids` (the rounds' ids joined by spaces).
fn columns() -> Vec<&'static str> {
    COLUMNS
        .iter()
        .copied()
        .chain(["misses", "round_ids"])
        .collect()
}

/// The `i`th row's cells; for CSV (`guard`) with formulas defused as in
/// missing lists, since a spreadsheet opening a CSV runs them (an XLSX cell
/// written as a string never is a formula).
fn row_cells(m: &Missers, i: usize, guard: bool) -> Vec<String> {
    let person = m.people.person(i);
    let mut cells: Vec<String> = person
        .cells()
        .iter()
        .map(|c| {
            if guard {
                csv_cell(c).into_owned()
            } else {
                (*c).to_owned()
            }
        })
        .collect();
    cells.push(m.round_ids[i].len().to_string());
    cells.push(m.round_ids[i].join(" "));
    cells
}

fn csv_bytes(missers: &Missers) -> Result<Vec<u8>, ApiError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let fail = |e: &dyn std::fmt::Display| ApiError::internal(e);
    w.write_record(columns()).map_err(|e| fail(&e))?;
    for i in 0..missers.round_ids.len() {
        w.write_record(row_cells(missers, i, true))
            .map_err(|e| fail(&e))?;
    }
    w.into_inner().map_err(|e| fail(&e))
}

fn xlsx_bytes(missers: &Missers) -> Result<Vec<u8>, rust_xlsxwriter::XlsxError> {
    use rust_xlsxwriter::{Format, Workbook};
    let mut wb = Workbook::new();
    let bold = Format::new().set_bold();
    let ws = wb.add_worksheet_with_constant_memory()?;
    ws.set_name("repeat missers")?;
    for (c, h) in columns().iter().enumerate() {
        ws.write_string_with_format(0, c as u16, *h, &bold)?;
    }
    for r in 0..missers.round_ids.len() {
        for (c, cell) in row_cells(missers, r, false).iter().enumerate() {
            ws.write_string(r as u32 + 1, c as u16, cell)?;
        }
    }
    ws.set_freeze_panes(1, 0)?;
    wb.save_to_buffer()
}

// ---------------------------------------------------------------------------
// This file's endpoints: the route table's entries and their OpenAPI operations.
// ---------------------------------------------------------------------------

/// `GET /v1/repeat-missing`: who misses round after round.
pub const LIST: Endpoint = Endpoint::new(
    "GET",
    "/v1/repeat-missing",
    &[Role::Admin, Role::Official],
    || web::route().to(list),
    repeat_missing_doc,
);

fn repeat_missing_doc() -> Op {
    let xlsx = crate::http::body::XLSX;
    Op::new("repeatMissing", "rounds", "Who misses round after round")
        .notes(
            "Residents under `area` still flagged in at least `min` of the last `last` closed \
             rounds whose scope covered them (rounds ordered by deadline, then id; moved-out \
             residents too while a round still flags them): the people a campaign must chase \
             first. Sorted by `misses` (most first), then area, household, name. Each person as in \
             missing lists, plus `misses` and `round_ids` (in round order). `person_id` is masked \
             unless an admin asks `unmask=true` (anyone else: `403 forbidden`). CSV and XLSX: the \
             missing list's columns, then `misses` and `round_ids` (space-separated). Any other \
             query parameter, or one given twice, is `400 invalid_query`. Every call is audited \
             (`missing_list`; also `unmask` when unmasked).",
        )
        .param(area_query(
            "an official's own area; for an admin the whole city, answered as `\"area\": null`.",
        ))
        .param(query_param(
            "last",
            json!({ "type": "integer", "minimum": 1, "maximum": crate::http::routes::repeat_missing::MAX_LAST, "default": crate::http::routes::repeat_missing::DEFAULT_LAST }),
            "How many of each person's last closed rounds to look at; otherwise `400 invalid_query`.",
        ))
        .param(query_param(
            "min",
            json!({ "type": "integer", "minimum": 1, "maximum": crate::http::routes::repeat_missing::MAX_LAST, "default": crate::http::routes::repeat_missing::DEFAULT_MIN }),
            "The fewest of those rounds that must still flag them (more than `last`: nobody).",
        ))
        .param(query_param(
            "format",
            json!({ "type": "string", "enum": ["json", "csv", "xlsx"], "default": "json" }),
            "The answer's format.",
        ))
        .param(query_param(
            "unmask",
            json!({ "type": "boolean", "default": false }),
            "`true` shows whole ID numbers (admin only).",
        ))
        .ok(
            200,
            json!({
                "description": "The repeat missers.",
                "content": {
                    "application/json": { "schema": r("RepeatMissing") },
                    "text/csv": { "schema": { "type": "string", "description": "CSV with header `person_id,name,phone,area,household,head_title,head_name,head_phone,misses,round_ids`." } },
                    xlsx: { "schema": { "type": "string", "format": "binary" } }
                }
            }),
        )
        .errors(&[Code::InvalidQuery, Code::UnknownArea, Code::OutOfScope, Code::Forbidden, Code::StorageUnavailable, Code::Overloaded])
}

/// The schemas this file's operations name.
pub(crate) fn schemas() -> Vec<(&'static str, Value)> {
    vec![(
        "RepeatMissing",
        object(
            "",
            &["area", "last", "min", "total", "people"],
            vec![
                (
                    "area",
                    json!({ "type": "string", "nullable": true, "description": "The area shown; null for an admin's whole city." }),
                ),
                ("last", count("")),
                ("min", count("")),
                ("total", count("")),
                (
                    "people",
                    json!({ "type": "array", "items": { "allOf": [
                            r("MissingPerson"),
                            object("", &["misses", "round_ids"], vec![
                                ("misses", count("How many of the rounds looked at still flag them.")),
                                ("round_ids", json!({ "type": "array", "items": r("RoundId") })),
                            ]),
                        ] } }),
                ),
            ],
        ),
    )]
}
