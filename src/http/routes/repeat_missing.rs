//! `GET /v1/repeat-missing` (official in scope, admin): the residents still
//! flagged in at least `min` of the last `last` closed rounds that covered
//! them — the people a campaign must chase first. JSON, CSV or XLSX; masked
//! and audited like missing lists. The count itself is the engine's
//! (`Engine::repeat_missing`).

use crate::domain::AuditAction;
use actix_web::{HttpRequest, HttpResponse, get, web};
use serde_json::{Value, json};

use super::rounds::export::{self, COLUMNS, MissingList, csv_cell};
use super::rounds::{area_node, view_area};
use crate::domain::{AreaPath, Role};
use crate::http::auth::Principal;
use crate::http::body;
use crate::http::error::{ApiError, Code};
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

#[get("/v1/repeat-missing")]
pub async fn list(
    state: web::Data<AppState>,
    who: Principal,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    who.require(&[Role::Admin, Role::Official])?;
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
