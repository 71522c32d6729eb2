//! `GET /v1/rounds/{id}/missing`: who is still missing, for door knocking —
//! JSON (flat or grouped by responsible head), CSV (streamed) and XLSX (a
//! summary sheet, then one sheet per grid, split only past Excel's row limit).
//! IDs are masked unless an admin asks `unmask=true`. Every call is audited.

use crate::domain::AuditAction;
use actix_web::{HttpRequest, HttpResponse, get, web};
use serde::Serialize;
use serde_json::json;

use super::{parse_round_id, resolve, view_area};
use crate::domain::{AreaPath, Role};
use crate::engine::{Counts, Engine};
use crate::http::auth::Principal;
use crate::http::body;
use crate::http::error::{ApiError, Code};
use crate::http::{AppState, routes::audit::record};

/// A responsible head as the list shows it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct HeadOut {
    pub title: String,
    pub name: String,
    pub phone: String,
}

/// One person of a missing list.
#[derive(Clone, Debug, Serialize)]
pub struct PersonOut {
    pub person_id: String,
    pub name: String,
    pub phone: String,
    pub area: String,
    pub household: String,
    pub head: Option<HeadOut>,
    /// The area node whose head `head` is (grouping key), not serialised.
    #[serde(skip)]
    pub head_area: Option<String>,
}

/// The CSV and XLSX columns, in order.
pub const COLUMNS: [&str; 8] = [
    "person_id",
    "name",
    "phone",
    "area",
    "household",
    "head_title",
    "head_name",
    "head_phone",
];

impl PersonOut {
    /// The CSV and XLSX cells, in [`COLUMNS`] order.
    pub fn cells(&self) -> [&str; 8] {
        let (t, n, p) = self
            .head
            .as_ref()
            .map_or(("", "", ""), |h| (&*h.title, &*h.name, &*h.phone));
        [
            &self.person_id,
            &self.name,
            &self.phone,
            &self.area,
            &self.household,
            t,
            n,
            p,
        ]
    }
}

/// The missing people of a round under a node, in list order.
pub fn people(e: &Engine, round: u32, node: Option<u32>, unmask: bool) -> Vec<PersonOut> {
    let r = e.round(round).expect("resolved round");
    e.missing(r, node)
        .into_iter()
        .map(|row| person_out(e, row, unmask))
        .collect()
}

/// The person of a register row as lists show them (masked unless `unmask`).
pub fn person_out(e: &Engine, row: u32, unmask: bool) -> PersonOut {
    let reg = e.register();
    let p = reg.resident(row);
    let head = reg.nearest_head(p.node);
    PersonOut {
        person_id: if unmask {
            p.person_id.to_string()
        } else {
            p.person_id.masked()
        },
        name: p.name.to_owned(),
        phone: p.phone.to_owned(),
        area: p.area.to_string(),
        household: p.household.to_owned(),
        head_area: head.map(|(n, _)| reg.nodes()[n as usize].path.to_string()),
        head: head.map(|(_, h)| HeadOut {
            title: h.title.clone(),
            name: h.name.clone(),
            phone: h.phone.clone(),
        }),
    }
}

/// Groups in the order of the head's area path; the head-less group last.
pub fn group_by_head(people: Vec<PersonOut>) -> Vec<(Option<HeadOut>, Vec<PersonOut>)> {
    let mut groups: std::collections::BTreeMap<String, (Option<HeadOut>, Vec<PersonOut>)> =
        std::collections::BTreeMap::new();
    let mut headless = Vec::new();
    for p in people {
        match p.head_area.clone() {
            Some(a) => groups
                .entry(a)
                .or_insert_with(|| (p.head.clone(), Vec::new()))
                .1
                .push(p),
            None => headless.push(p),
        }
    }
    let mut out: Vec<_> = groups.into_values().collect();
    if !headless.is_empty() {
        out.push((None, headless));
    }
    out
}

/// The grid of an area: its first three segments (subdistrict/community/grid).
pub fn grid_of(area: &str) -> &str {
    match area.match_indices('/').nth(2) {
        Some((i, _)) => &area[..i],
        None => area,
    }
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
    let unmask = match q.get("unmask").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(ApiError::new(
                Code::InvalidQuery,
                "`unmask` must be true or false",
            ));
        }
    };
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
    if unmask && !who.is_admin() {
        return Err(ApiError::new(
            Code::Forbidden,
            "only an admin may unmask IDs",
        ));
    }
    let area = view_area(&who, &q)?;
    let area_for_read = area.clone();
    let xlsx = format == "xlsx";
    let (people, summary) = state
        .read(move |e| -> Result<_, ApiError> {
            let (id, node) = resolve(e, id, area_for_read.as_ref())?;
            let people = people(e, id, node, unmask);
            let summary = if xlsx {
                grid_summary(e, id, node)
            } else {
                Vec::new()
            };
            Ok((people, summary))
        })
        .await??;
    let total = people.len() as u64;
    let area_s = area.as_ref().map(AreaPath::as_str).map(str::to_owned);
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
    match format.as_str() {
        "csv" => Ok(csv_response(people)),
        "xlsx" => {
            let bytes = state
                .read(move |_| xlsx_bytes(&summary, &people, EXCEL_MAX_PEOPLE_ROWS))
                .await?
                .map_err(|e| ApiError::internal(&e))?;
            Ok(HttpResponse::Ok()
                .content_type("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
                .insert_header((
                    "Content-Disposition",
                    format!("attachment; filename=\"missing-round-{id}.xlsx\""),
                ))
                .body(bytes))
        }
        "text" => {
            let name = state
                .read(move |e| e.round(id).map(|r| r.name.clone()))
                .await?
                .unwrap_or_default();
            Ok(super::messages::text_response(
                &name,
                &group_by_head(people),
            ))
        }
        _ if grouped => {
            let groups: Vec<_> = group_by_head(people)
                .into_iter()
                .map(|(h, ps)| json!({"head": h, "people": ps}))
                .collect();
            Ok(HttpResponse::Ok().json(json!({
                "round_id": id.to_string(), "area": area_s, "total": total, "groups": groups
            })))
        }
        _ => Ok(HttpResponse::Ok().json(json!({
            "round_id": id.to_string(), "area": area_s, "total": total, "people": people
        }))),
    }
}

/// CSV, streamed in chunks so a city-sized list is never held twice.
fn csv_response(people: Vec<PersonOut>) -> HttpResponse {
    const CHUNK: usize = 2_000;
    let mut header = csv::Writer::from_writer(Vec::new());
    let _ = header.write_record(COLUMNS);
    let head = header.into_inner().unwrap_or_default();
    let people = std::sync::Arc::new(people);
    let n = people.len().div_ceil(CHUNK);
    let chunks = (0..n).map(move |i| {
        let mut w = csv::Writer::from_writer(Vec::with_capacity(CHUNK * 96));
        for p in &people[i * CHUNK..((i + 1) * CHUNK).min(people.len())] {
            w.write_record(p.cells())
                .map_err(|e| actix_web::error::ErrorInternalServerError(e.to_string()))?;
        }
        w.into_inner()
            .map(web::Bytes::from)
            .map_err(|e| actix_web::error::ErrorInternalServerError(e.to_string()))
    });
    let stream = futures_util::stream::iter(
        std::iter::once(Ok::<_, actix_web::Error>(web::Bytes::from(head))).chain(chunks),
    );
    HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .streaming(stream)
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

/// Excel's row limit less the header row.
pub const EXCEL_MAX_PEOPLE_ROWS: usize = 1_048_575;

fn display_width(s: &str) -> f64 {
    s.chars()
        .map(|c| if (c as u32) < 0x1100 { 1.0 } else { 2.1 })
        .sum()
}

/// The workbook: a summary sheet (one row per grid), then each grid's people
/// on its own sheet with the CSV's columns, split across sheets only when a
/// grid passes `max_rows` people.
pub fn xlsx_bytes(
    summary: &[(String, Counts)],
    people: &[PersonOut],
    max_rows: usize,
) -> Result<Vec<u8>, rust_xlsxwriter::XlsxError> {
    use rust_xlsxwriter::{Format, Workbook};
    let mut wb = Workbook::new();
    let bold = Format::new().set_bold();
    let mut used_names = std::collections::HashSet::new();
    let mut unique = |base: &str| -> String {
        // Sheet names: at most 31 characters, none of []:*?/\, unique.
        let clean: String = base
            .chars()
            .map(|c| if "[]:*?/\\".contains(c) { '_' } else { c })
            .take(28)
            .collect();
        let mut name = clean.clone();
        let mut k = 2;
        while !used_names.insert(name.to_lowercase()) {
            name = format!("{clean}~{k}");
            k += 1;
        }
        name
    };
    {
        let ws = wb.add_worksheet_with_constant_memory()?;
        ws.set_name(unique("汇总 summary"))?;
        let cols = [
            "grid", "in_scope", "sampled", "made_up", "exempt", "missing",
        ];
        for (c, h) in cols.iter().enumerate() {
            ws.write_string_with_format(0, c as u16, *h, &bold)?;
        }
        let mut widest = 10.0f64;
        for (i, (grid, c)) in summary.iter().enumerate() {
            let r = i as u32 + 1;
            ws.write_string(r, 0, grid)?;
            for (col, v) in [c.in_scope, c.sampled, c.made_up, c.exempt, c.missing]
                .into_iter()
                .enumerate()
            {
                ws.write_number(r, col as u16 + 1, v as f64)?;
            }
            widest = widest.max(display_width(grid));
        }
        ws.set_column_width(0, widest.min(80.0) + 2.0)?;
        ws.set_freeze_panes(1, 0)?;
    }
    // People are in list order (by area), so each grid's people are contiguous.
    let mut i = 0;
    while i < people.len() {
        let grid = grid_of(&people[i].area).to_owned();
        let mut j = i;
        while j < people.len() && grid_of(&people[j].area) == grid {
            j += 1;
        }
        let base = grid.rsplit('/').next().unwrap_or(&grid).to_owned();
        let parts = (j - i).div_ceil(max_rows);
        for part in 0..parts {
            let slice = &people[i + part * max_rows..(i + (part + 1) * max_rows).min(j)];
            let name = if parts > 1 {
                unique(&format!("{base} ({})", part + 1))
            } else {
                unique(&base)
            };
            let ws = wb.add_worksheet_with_constant_memory()?;
            ws.set_name(name)?;
            let mut widths: Vec<f64> = COLUMNS.iter().map(|h| display_width(h)).collect();
            for (c, h) in COLUMNS.iter().enumerate() {
                ws.write_string_with_format(0, c as u16, *h, &bold)?;
            }
            for (k, p) in slice.iter().enumerate() {
                for (c, cell) in p.cells().iter().enumerate() {
                    ws.write_string(k as u32 + 1, c as u16, *cell)?;
                    if k < 2_000 {
                        widths[c] = widths[c].max(display_width(cell));
                    }
                }
            }
            for (c, w) in widths.iter().enumerate() {
                ws.set_column_width(c as u16, w.min(80.0) + 2.0)?;
            }
            ws.set_freeze_panes(1, 0)?;
        }
        i = j;
    }
    wb.save_to_buffer()
}

#[cfg(test)]
mod tests {
    use super::*;
    use calamine::{Reader, Xlsx};

    fn person(i: usize, grid: &str) -> PersonOut {
        PersonOut {
            person_id: format!("610802********{i:04}"),
            name: format!("居民{i}"),
            phone: "13900000000".into(),
            area: format!("崇文路街道/学院社区/{grid}/01号楼/01层"),
            household: format!("H{i}"),
            head: i.is_multiple_of(2).then(|| HeadOut {
                title: "楼层长".into(),
                name: "王芳".into(),
                phone: "13900000001".into(),
            }),
            head_area: None,
        }
    }

    fn read(bytes: Vec<u8>) -> Vec<(String, Vec<Vec<String>>)> {
        let mut wb: Xlsx<_> = calamine::open_workbook_from_rs(std::io::Cursor::new(bytes)).unwrap();
        wb.sheet_names()
            .into_iter()
            .map(|name| {
                let range = wb.worksheet_range(&name).unwrap();
                let rows = range
                    .rows()
                    .map(|r| r.iter().map(ToString::to_string).collect())
                    .collect();
                (name, rows)
            })
            .collect()
    }

    #[test]
    fn the_workbook_has_a_summary_then_one_sheet_per_grid_with_the_csv_columns() {
        let people: Vec<_> = (0..5)
            .map(|i| person(i, "第01网格"))
            .chain((5..8).map(|i| person(i, "第02网格")))
            .collect();
        let summary = vec![
            (
                "崇文路街道/学院社区/第01网格".to_owned(),
                Counts {
                    in_scope: 9,
                    sampled: 4,
                    missing: 5,
                    ..Counts::default()
                },
            ),
            (
                "崇文路街道/学院社区/第02网格".to_owned(),
                Counts {
                    in_scope: 3,
                    missing: 3,
                    ..Counts::default()
                },
            ),
        ];
        let sheets = read(xlsx_bytes(&summary, &people, EXCEL_MAX_PEOPLE_ROWS).unwrap());
        assert_eq!(sheets.len(), 3);
        assert_eq!(
            sheets[0].1[0],
            [
                "grid", "in_scope", "sampled", "made_up", "exempt", "missing"
            ]
        );
        assert_eq!(sheets[0].1[1][0], "崇文路街道/学院社区/第01网格");
        assert_eq!(sheets[0].1[1][5], "5");
        assert_eq!(sheets[1].0, "第01网格");
        assert_eq!(sheets[1].1[0], COLUMNS);
        let rows: Vec<Vec<String>> = sheets[1..]
            .iter()
            .flat_map(|(_, rows)| rows[1..].to_vec())
            .collect();
        let want: Vec<Vec<String>> = people
            .iter()
            .map(|p| p.cells().iter().map(|c| (*c).to_owned()).collect())
            .collect();
        assert_eq!(rows, want, "the sheets hold exactly the list, in order");
    }

    #[test]
    fn a_grid_past_the_row_limit_is_split_across_sheets_never_truncated() {
        let people: Vec<_> = (0..7).map(|i| person(i, "第01网格")).collect();
        let sheets = read(xlsx_bytes(&[], &people, 3).unwrap());
        let names: Vec<&str> = sheets.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names[1..], ["第01网格 (1)", "第01网格 (2)", "第01网格 (3)"]);
        let total: usize = sheets[1..].iter().map(|(_, r)| r.len() - 1).sum();
        assert_eq!(total, 7);
        assert!(sheets[1..].iter().all(|(_, r)| r[0] == COLUMNS));
    }

    #[test]
    fn groups_follow_the_heads_area_path_and_the_headless_come_last() {
        let mut a = person(0, "第02网格");
        a.head_area = Some("崇文路街道/学院社区/第02网格".into());
        let mut b = person(2, "第01网格");
        b.head_area = Some("崇文路街道/学院社区/第01网格".into());
        let c = person(1, "第01网格");
        let groups = group_by_head(vec![a, c, b]);
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[0].1[0].name, "居民2");
        assert_eq!(groups[1].1[0].name, "居民0");
        assert!(groups[2].0.is_none());
    }

    #[test]
    fn the_grid_of_an_area_is_its_first_three_segments() {
        assert_eq!(grid_of("a/b/c/d/e"), "a/b/c");
        assert_eq!(grid_of("a/b"), "a/b");
    }
}
