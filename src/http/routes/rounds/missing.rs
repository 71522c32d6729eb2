//! `GET /v1/rounds/{id}/missing`: who is still missing, for door knocking —
//! JSON (flat or grouped by responsible head), CSV (streamed), XLSX (a
//! summary sheet, then one sheet per grid, split only past Excel's row limit)
//! and the door-knock messages per head as plain text (`messages`).
//! IDs are masked unless an admin asks `unmask=true`. Every answer that
//! succeeds is audited. A heavy read: admitted within the read budget, the
//! list copied under the engine's lock and every file built outside it
//! (`export`).

use actix_web::{HttpRequest, HttpResponse, web};

use super::export::{self, EXCEL_MAX_PEOPLE_ROWS, MissingList};
use super::{parse_round_id, resolve, view_area};
use crate::domain::{AreaPath, AuditAction, Role};
use crate::engine::{Counts, Engine};
use crate::http::auth::Principal;
use crate::http::body;
use crate::http::error::{ApiError, Code};
use crate::http::openapi::build::{
    Op, area_query, count, nullable_ref, object, query_param, r, round_id_param, string,
};
use crate::http::routes::Endpoint;
use crate::http::{AppState, routes::audit::record};
use serde_json::{Value, json};

/// The missing people of a round under a node, copied out in list order.
pub fn people(e: &Engine, round: u32, node: Option<u32>, unmask: bool) -> MissingList {
    let r = e.round(round).expect("resolved round");
    MissingList::copy(e, &e.missing(r, node), unmask)
}

pub async fn missing(
    state: web::Data<AppState>,
    who: Principal,
    id: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    who.require(MISSING.roles)?;
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

// ---------------------------------------------------------------------------
// This file's endpoints: the route table's entries and their OpenAPI operations.
// ---------------------------------------------------------------------------

/// `GET /v1/rounds/{id}/missing`: who is still missing.
pub const MISSING: Endpoint = Endpoint::new(
    "GET",
    "/v1/rounds/{id}/missing",
    &[Role::Admin, Role::Official],
    || web::route().to(missing),
    missing_list_doc,
);

fn missing_list_doc() -> Op {
    let xlsx = crate::http::body::XLSX;
    Op::new("missingList", "rounds", "Who is still missing")
        .notes(
            "People of the round in `missing` under `area`, sorted by area, household, name (by \
             code point). `person_id` is masked to its first 6 and last 4 characters in every \
             format unless an admin asks `unmask=true` (anyone else: `403 forbidden`). \
             `group_by=head` (JSON or text; with `format=csv|xlsx` it is `400 invalid_query`) returns \
             one group per head, in the order of the head's area path, people without a head last \
             with `\"head\": null`. `format=text` (`group_by=head` implied) gives the same groups \
             as door-knock messages in plain Chinese (`text/plain; charset=utf-8`), one per head, \
             separated by one blank line: the round, the head's title and name, their area, then \
             each household with the names still missing — never an ID or phone number. CSV columns: \
             `person_id,name,phone,area,household,head_title,head_name,head_phone` (three empty \
             fields without a head), streamed. XLSX: a summary sheet with a row per grid \
             (`grid,in_scope,sampled,made_up,exempt,missing`), then one sheet per grid with the \
             CSV's columns; sheet names are valid in Excel for any area name (at most 31 \
             characters, unique, none of `[]:*?/\\`, no leading or trailing apostrophe, never \
             `History`). In CSV a cell beginning with `=`, `+`, `-`, `@`, a tab or a carriage \
             return gets a leading `'`. JSON and CSV are streamed. A heavy read: past the read \
             budget it is `503 overloaded` with `Retry-After`. Any other query parameter, or one \
             given twice, is `400 invalid_query`. Every answered call is audited \
             (`missing_list`; also `unmask` when unmasked).",
        )
        .param(round_id_param())
        .param(area_query(
            "an official's own area; for an admin the whole round, answered as `\"area\": null`.",
        ))
        .param(query_param(
            "format",
            json!({ "type": "string", "enum": ["json", "csv", "xlsx", "text"], "default": "json" }),
            "The answer's format (`text`: messages per head).",
        ))
        .param(query_param(
            "unmask",
            json!({ "type": "boolean", "default": false }),
            "`true` shows whole ID numbers (admin only). Exactly `true` or `false`; anything else \
             is `400 invalid_query`.",
        ))
        .param(query_param(
            "group_by",
            json!({ "type": "string", "enum": ["head"] }),
            "`head`: group the list by responsible head (JSON, or messages with `format=text`).",
        ))
        .ok(
            200,
            json!({
                "description": "The missing list (JSON flat, JSON grouped by head, CSV, XLSX, or text messages per head).",
                "headers": {
                    "Content-Disposition": {
                        "description": "XLSX only: `attachment; filename=\"missing-round-{id}.xlsx\"`.",
                        "schema": { "type": "string" }
                    }
                },
                "content": {
                    "application/json": { "schema": { "oneOf": [r("MissingList"), r("MissingGroups")] } },
                    "text/csv": { "schema": { "type": "string", "description": "CSV with header `person_id,name,phone,area,household,head_title,head_name,head_phone`." } },
                    xlsx: { "schema": { "type": "string", "format": "binary" } },
                    "text/plain": { "schema": { "type": "string", "description": "One message per head, separated by a blank line." } }
                }
            }),
        )
        .errors(&[&super::VIEW_ERRORS[..], &[Code::StorageUnavailable, Code::Overloaded]].concat())
}

/// The schemas this file's operations name.
pub(crate) fn schemas() -> Vec<(&'static str, Value)> {
    vec![
        (
            "Head",
            object(
                "A responsible head of an area node.",
                &["title", "name", "phone"],
                vec![
                    ("title", string("")),
                    ("name", string("")),
                    ("phone", string("")),
                ],
            ),
        ),
        (
            "MissingPerson",
            object(
                "",
                &["person_id", "name", "phone", "area", "household", "head"],
                vec![
                    ("person_id", r("MaskedPersonId")),
                    ("name", string("")),
                    ("phone", string("")),
                    ("area", r("AreaPath")),
                    ("household", string("")),
                    ("head", {
                        let mut v = nullable_ref("Head");
                        v["description"] = json!(
                            "The head of the person's own area node, or failing that the nearest one above; null if none."
                        );
                        v
                    }),
                ],
            ),
        ),
        (
            "MissingList",
            object(
                "",
                &["round_id", "area", "total", "people"],
                vec![
                    ("round_id", r("RoundId")),
                    (
                        "area",
                        json!({ "type": "string", "nullable": true, "description": "The area shown; null for an admin's whole round." }),
                    ),
                    ("total", count("")),
                    (
                        "people",
                        json!({ "type": "array", "items": r("MissingPerson") }),
                    ),
                ],
            ),
        ),
        (
            "MissingGroup",
            object(
                "",
                &["head", "people"],
                vec![
                    ("head", {
                        let mut v = nullable_ref("Head");
                        v["description"] = json!("Null for the last group: people without a head.");
                        v
                    }),
                    (
                        "people",
                        json!({ "type": "array", "items": r("MissingPerson") }),
                    ),
                ],
            ),
        ),
        (
            "MissingGroups",
            object(
                "`group_by=head`.",
                &["round_id", "area", "total", "groups"],
                vec![
                    ("round_id", r("RoundId")),
                    ("area", json!({ "type": "string", "nullable": true })),
                    ("total", count("")),
                    (
                        "groups",
                        json!({ "type": "array", "items": r("MissingGroup") }),
                    ),
                ],
            ),
        ),
    ]
}
