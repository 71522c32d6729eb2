//! `GET /v1/rounds/{id}/missing`: who is still missing, for door knocking —
//! JSON (flat or grouped by responsible head), CSV (streamed), XLSX (a
//! summary sheet, then one sheet per grid, split only past Excel's row limit)
//! and the door-knock messages per head as plain text (`messages`).
//! IDs are masked unless an admin asks `unmask=true`. Every answer that
//! succeeds is audited. A heavy read: admitted within the read budget, the
//! list copied under the engine's lock and every file built outside it
//! (`export`).

use actix_web::{HttpRequest, HttpResponse, get, web};

use super::export::{self, EXCEL_MAX_PEOPLE_ROWS, MissingList};
use super::{parse_round_id, resolve, view_area};
use crate::domain::{AreaPath, AuditAction, Role};
use crate::engine::{Counts, Engine};
use crate::http::auth::Principal;
use crate::http::body;
use crate::http::error::{ApiError, Code};
use crate::http::{AppState, routes::audit::record};

/// The missing people of a round under a node, copied out in list order.
pub fn people(e: &Engine, round: u32, node: Option<u32>, unmask: bool) -> MissingList {
    let r = e.round(round).expect("resolved round");
    MissingList::copy(e, &e.missing(r, node), unmask)
}

#[get("/v1/rounds/{id}/missing")]
pub async fn missing(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    who.require(&[Role::Admin, Role::Official])?;
    let id = parse_round_id(&id)?;
    let q = body::query(&req, &["area", "format", "unmask", "group_by"])?;
    let format = q.get("format").map_or("json", String::as_str).to_owned();
    if !matches!(format.as_str(), "json" | "csv" | "xlsx" | "text") {
        return Err(ApiError::new(
            Code::InvalidQuery,
            "`format` must be json, csv, xlsx or (with group_by=head) text",
        ));
    }
    let unmask = export::unmask_param(&q, &who)?;
    let grouped = match q.get("group_by").map(String::as_str) {
        None => false,
        Some("head") => true,
        Some(_) => return Err(ApiError::new(Code::InvalidQuery, "`group_by` must be head")),
    };
    // Messages are per head: `format=text` implies `group_by=head`.
    let grouped = grouped || format == "text";
    if grouped && !matches!(format.as_str(), "json" | "text") {
        return Err(ApiError::new(
            Code::InvalidQuery,
            "`group_by=head` is for format=json or text",
        ));
    }
    let area = view_area(&who, &q)?;
    let admitted = state.admit_heavy_read()?;
    let area_for_read = area.clone();
    let xlsx = format == "xlsx";
    // Under the engine's lock: only the copy of the list (and the summary).
    let (list, summary, round_name) = state
        .read(move |e| -> Result<_, ApiError> {
            let (id, node) = resolve(e, id, area_for_read.as_ref())?;
            let list = people(e, id, node, unmask);
            let summary = if xlsx {
                grid_summary(e, id, node)
            } else {
                Vec::new()
            };
            let name = e.round(id).map(|r| r.name.clone()).unwrap_or_default();
            Ok((list, summary, name))
        })
        .await??;
    let total = list.len() as u64;
    let list = std::sync::Arc::new(list);
    let area_s = area.as_ref().map(AreaPath::as_str).map(str::to_owned);
    // Outside it: the workbook, before the audit, so a pull that fails is
    // never audited. (The CSV and JSON streams cannot fail once begun.)
    let workbook = if xlsx {
        let list = list.clone();
        let bytes = state
            .build(move || export::xlsx_bytes(&summary, &list, EXCEL_MAX_PEOPLE_ROWS))
            .await?
            .map_err(|e| ApiError::internal(&e))?;
        Some(bytes)
    } else {
        None
    };
    record(
        &state,
        &who,
        AuditAction::MissingList,
        area_s.clone(),
        Some(id.to_string()),
        Some(total),
    )
    .await?;
    if unmask {
        record(
            &state,
            &who,
            AuditAction::Unmask,
            area_s.clone(),
            Some(id.to_string()),
            Some(total),
        )
        .await?;
    }
    if let Some(bytes) = workbook {
        let len = bytes.len() as u64;
        let bytes = web::Bytes::from(bytes);
        let n = bytes.len().div_ceil(export::CHUNK_BYTES);
        let chunks = export::chunked(Vec::new(), n, b"", admitted, move |i, buf| {
            let end = ((i + 1) * export::CHUNK_BYTES).min(bytes.len());
            buf.extend_from_slice(&bytes[i * export::CHUNK_BYTES..end]);
            Ok(())
        });
        return Ok(HttpResponse::Ok()
            .content_type("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
            .insert_header((
                "Content-Disposition",
                format!("attachment; filename=\"missing-round-{id}.xlsx\""),
            ))
            .body(actix_web::body::SizedStream::new(len, chunks)));
    }
    if format == "text" {
        let text = state
            .build(move || super::messages::messages(&round_name, &list))
            .await?;
        drop(admitted);
        return Ok(HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body(text));
    }
    if format == "csv" {
        return Ok(HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .streaming(export::csv_stream(list, admitted)));
    }
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .streaming(export::json_stream(
            list,
            &id.to_string(),
            area_s.as_deref(),
            grouped,
            admitted,
        )))
}

/// Counts per grid under the view (or the view's own node when it is a grid or below).
fn grid_summary(e: &Engine, round: u32, node: Option<u32>) -> Vec<(String, Counts)> {
    let r = e.round(round).expect("resolved round");
    let root = node.or_else(|| e.scope_root(r));
    let Some(root) = root else { return Vec::new() };
    let reg = e.register();
    let depth = reg.nodes()[root as usize].depth;
    let levels = 3u32.saturating_sub(depth);
    let tree = e.coverage(r, root, levels);
    let mut out = Vec::new();
    let mut stack = vec![(&tree, 0u32)];
    while let Some((n, d)) = stack.pop() {
        if d == levels {
            out.push((n.area.to_string(), n.counts));
        } else {
            stack.extend(n.children.iter().rev().map(|c| (c, d + 1)));
        }
    }
    out
}
