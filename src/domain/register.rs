//! The register and heads parser, for CSV files and spreadsheets alike: the
//! one used by the offline import and by `POST /v1/register` /
//! `POST /v1/heads`. Its frame ([`parse_table`]: header, columns, widths,
//! the problem list) also reads the exemptions file.
//!
//! All or nothing: a file is returned whole or not at all, with every problem
//! found (the first [`MAX_PROBLEMS`]) so an official can fix them in one go.
//! Line numbers count the header as line 1; `0` is the file as a whole.
//! Messages never repeat a resident ID. No I/O: the caller hands in bytes.

use std::collections::hash_map::Entry;

use chrono::NaiveDate;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::area_path::AreaPath;
use super::person_id::PersonId;
pub(crate) use super::sheet::first_sheet;

/// Most problems reported for one file.
pub const MAX_PROBLEMS: usize = 100;
/// Most characters of a name, title or household.
pub const MAX_TEXT_CHARS: usize = 64;
/// Columns of a register file, in their usual order.
pub const REGISTER_COLUMNS: [&str; 5] = ["person_id", "name", "phone", "area", "household"];
/// Columns of a heads file, in their usual order.
pub const HEADS_COLUMNS: [&str; 4] = ["area", "title", "name", "phone"];

/// One resident as the register file lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterRow {
    pub person_id: PersonId,
    /// Trimmed, 1–64 characters, no control characters.
    pub name: String,
    /// 5–20 characters: digits, an optional leading `+`, `-` or space inside.
    pub phone: String,
    pub area: AreaPath,
    /// Trimmed, 1–64 characters, no control characters.
    pub household: String,
}

/// The responsible head of one area node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeadRow {
    pub area: AreaPath,
    /// Trimmed, 1–64 characters (e.g. `楼层长`).
    pub title: String,
    /// Trimmed, 1–64 characters.
    pub name: String,
    /// Same rule as [`RegisterRow::phone`].
    pub phone: String,
}

/// One problem with a file: `{"line","code","message"}` on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineProblem {
    /// 1 is the header; 0 is the file as a whole. In a spreadsheet, the
    /// row number as the spreadsheet shows it.
    pub line: u64,
    /// The sheet's name, for a spreadsheet (absent for CSV).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sheet: Option<String>,
    pub code: LineCode,
    /// For people; may change between releases.
    pub message: String,
}

/// What is wrong with a line (or the file). Wire names never change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum LineCode {
    #[serde(rename = "invalid_person_id")]
    InvalidPersonId,
    #[serde(rename = "invalid_area")]
    InvalidArea,
    /// Empty or bad name, title, phone or household; an unknown or doubled column.
    #[serde(rename = "invalid_field")]
    InvalidField,
    #[serde(rename = "wrong_column_count")]
    WrongColumnCount,
    #[serde(rename = "duplicate_person")]
    DuplicatePerson,
    #[serde(rename = "duplicate_area")]
    DuplicateArea,
    /// The header lacks a required column (or there is no header at all).
    #[serde(rename = "missing_column")]
    MissingColumn,
    #[serde(rename = "invalid_utf8")]
    InvalidUtf8,
    /// Exemptions: a time that is not RFC 3339 with an offset.
    #[serde(rename = "invalid_time")]
    InvalidTime,
    /// Exemptions: `until` before `from`.
    #[serde(rename = "invalid_window")]
    InvalidWindow,
    /// Exemptions: nobody registered by that ID (inside the official's area).
    #[serde(rename = "unknown_resident")]
    UnknownResident,
}

impl LineCode {
    /// Every code.
    pub const ALL: [LineCode; 11] = [
        LineCode::InvalidPersonId,
        LineCode::InvalidArea,
        LineCode::InvalidField,
        LineCode::WrongColumnCount,
        LineCode::DuplicatePerson,
        LineCode::DuplicateArea,
        LineCode::MissingColumn,
        LineCode::InvalidUtf8,
        LineCode::InvalidTime,
        LineCode::InvalidWindow,
        LineCode::UnknownResident,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            LineCode::InvalidPersonId => "invalid_person_id",
            LineCode::InvalidArea => "invalid_area",
            LineCode::InvalidField => "invalid_field",
            LineCode::WrongColumnCount => "wrong_column_count",
            LineCode::DuplicatePerson => "duplicate_person",
            LineCode::DuplicateArea => "duplicate_area",
            LineCode::MissingColumn => "missing_column",
            LineCode::InvalidUtf8 => "invalid_utf8",
            LineCode::InvalidTime => "invalid_time",
            LineCode::InvalidWindow => "invalid_window",
            LineCode::UnknownResident => "unknown_resident",
        }
    }
}

/// What a file is: the same rules hold for both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Csv,
    /// An XLSX workbook: its first sheet, every cell as text.
    Xlsx,
}

/// Parses a register file (`person_id,name,phone,area,household`, columns in
/// any order), judging birth dates against `today`. Any problem rejects the
/// whole file; see the module docs.
pub fn parse_register(
    bytes: &[u8],
    today: NaiveDate,
) -> Result<Vec<RegisterRow>, Vec<LineProblem>> {
    parse_register_as(FileKind::Csv, bytes, today)
}

/// [`parse_register`] for a CSV file or a spreadsheet.
pub fn parse_register_as(
    kind: FileKind,
    bytes: &[u8],
    today: NaiveDate,
) -> Result<Vec<RegisterRow>, Vec<LineProblem>> {
    match kind {
        FileKind::Csv => register_rows(&mut CsvTable::new(bytes), today),
        FileKind::Xlsx => first_sheet(bytes, |t| register_rows(t, today)),
    }
}

fn register_rows(
    table: &mut impl Table,
    today: NaiveDate,
) -> Result<Vec<RegisterRow>, Vec<LineProblem>> {
    let mut first_line: FxHashMap<PersonId, u64> = FxHashMap::default();
    parse_table(
        table,
        REGISTER_COLUMNS,
        |line, [id, name, phone, area, household], problems| {
            let person_id = PersonId::parse_on(id, today)
                .map_err(|e| {
                    problems.push(line, LineCode::InvalidPersonId, format!("person_id: {e}"));
                })
                .ok();
            let name = text(line, "name", name, problems);
            let phone = phone_field(line, phone, problems);
            let area = area_field(line, area, problems);
            let household = text(line, "household", household, problems);
            if let Some(id) = person_id {
                match first_line.entry(id) {
                    Entry::Occupied(first) => {
                        let message =
                            format!("the same person_id is already on line {}", first.get());
                        problems.push(line, LineCode::DuplicatePerson, message);
                        return None;
                    }
                    Entry::Vacant(slot) => {
                        slot.insert(line);
                    }
                }
            }
            Some(RegisterRow {
                person_id: person_id?,
                name: name?,
                phone: phone?,
                area: area?,
                household: household?,
            })
        },
    )
}

/// Parses a heads file (`area,title,name,phone`, columns in any order). One
/// head per area node: an area listed twice is a problem on its second line.
pub fn parse_heads(bytes: &[u8]) -> Result<Vec<HeadRow>, Vec<LineProblem>> {
    parse_heads_as(FileKind::Csv, bytes)
}

/// [`parse_heads`] for a CSV file or a spreadsheet.
pub fn parse_heads_as(kind: FileKind, bytes: &[u8]) -> Result<Vec<HeadRow>, Vec<LineProblem>> {
    match kind {
        FileKind::Csv => heads_rows(&mut CsvTable::new(bytes)),
        FileKind::Xlsx => first_sheet(bytes, heads_rows),
    }
}

fn heads_rows(table: &mut impl Table) -> Result<Vec<HeadRow>, Vec<LineProblem>> {
    let mut first_line: FxHashMap<AreaPath, u64> = FxHashMap::default();
    parse_table(
        table,
        HEADS_COLUMNS,
        |line, [area, title, name, phone], problems| {
            let area = area_field(line, area, problems);
            let title = text(line, "title", title, problems);
            let name = text(line, "name", name, problems);
            let phone = phone_field(line, phone, problems);
            if let Some(area) = &area {
                match first_line.entry(area.clone()) {
                    Entry::Occupied(first) => {
                        let message = format!("the same area is already on line {}", first.get());
                        problems.push(line, LineCode::DuplicateArea, message);
                        return None;
                    }
                    Entry::Vacant(slot) => {
                        slot.insert(line);
                    }
                }
            }
            Some(HeadRow {
                area: area?,
                title: title?,
                name: name?,
                phone: phone?,
            })
        },
    )
}

/// Problems found so far, capped at [`MAX_PROBLEMS`].
pub(crate) struct Problems(Vec<LineProblem>);

impl Problems {
    pub(crate) fn push(&mut self, line: u64, code: LineCode, message: impl Into<String>) {
        if !self.is_full() {
            self.0.push(LineProblem {
                line,
                sheet: None,
                code,
                message: message.into(),
            });
        }
    }

    pub(crate) fn is_full(&self) -> bool {
        self.0.len() >= MAX_PROBLEMS
    }
}

/// A table read row by row: a CSV file's records or a sheet's rows.
/// [`parse_table`] judges either through the same rules.
pub(crate) trait Table {
    /// Moves to the next row that is not blank: `Ok(Some(line))` (1 is the
    /// first line of the file), `Ok(None)` at the end.
    fn advance(&mut self) -> Result<Option<u64>, LineProblem>;
    /// How many fields the current row holds.
    fn width(&self) -> usize;
    /// Field `i` of the current row as text; `None` when it is not UTF-8.
    fn field(&self, i: usize) -> Option<&str>;
    /// The sheet's name, for a spreadsheet.
    fn sheet(&self) -> Option<&str> {
        None
    }
    /// Whether a row narrower than the header is wrong. A CSV line must hold
    /// every column; a sheet's row simply ends at its last filled cell.
    const SHORT_ROWS_ARE_WRONG: bool;
}

/// A CSV file in memory as a [`Table`].
pub(crate) struct CsvTable<'a> {
    reader: csv::Reader<&'a [u8]>,
    record: csv::ByteRecord,
}

impl<'a> CsvTable<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> CsvTable<'a> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        CsvTable {
            reader: csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_reader(bytes),
            record: csv::ByteRecord::new(),
        }
    }
}

impl Table for CsvTable<'_> {
    fn advance(&mut self) -> Result<Option<u64>, LineProblem> {
        match self.reader.read_byte_record(&mut self.record) {
            Ok(true) => Ok(Some(self.record.position().map_or(0, csv::Position::line))),
            Ok(false) => Ok(None),
            Err(e) => Err(LineProblem {
                line: e.position().map_or(0, csv::Position::line),
                sheet: None,
                // Reading bytes from memory, the csv reader has no other failure;
                // report anything it says as a malformed field rather than panic.
                code: LineCode::InvalidField,
                message: format!("unreadable CSV: {e}"),
            }),
        }
    }

    fn width(&self) -> usize {
        self.record.len()
    }

    fn field(&self, i: usize) -> Option<&str> {
        std::str::from_utf8(&self.record[i]).ok()
    }

    const SHORT_ROWS_ARE_WRONG: bool = true;
}

/// The shared frame: header, column mapping, column counts, UTF-8.
/// `on_row` gets each data line's fields in the order of `columns` and
/// returns the row when it is good (having pushed its problems otherwise).
pub(crate) fn parse_table<const N: usize, T, R: Table>(
    table: &mut R,
    columns: [&str; N],
    mut on_row: impl FnMut(u64, [&str; N], &mut Problems) -> Option<T>,
) -> Result<Vec<T>, Vec<LineProblem>> {
    let mut problems = Problems(Vec::new());

    let header_line = match table.advance() {
        Ok(Some(line)) => line,
        Ok(None) => {
            let message = format!(
                "the file is empty; the header must be {}",
                columns.join(",")
            );
            problems.push(0, LineCode::MissingColumn, message);
            return Err(problems.0);
        }
        Err(problem) => return Err(vec![problem]),
    };
    let index = map_header(table, header_line, columns)?;
    let width = table.width();

    let mut rows = Vec::new();
    while !problems.is_full() {
        let line = match table.advance() {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(problem) => {
                problems.push(problem.line, problem.code, problem.message);
                break;
            }
        };
        let found = table.width();
        if found > width || (found < width && R::SHORT_ROWS_ARE_WRONG) {
            let message = format!("expected {width} fields, found {found}");
            problems.push(line, LineCode::WrongColumnCount, message);
            continue;
        }
        let mut fields = [""; N];
        let mut utf8_ok = true;
        for (field, &i) in fields.iter_mut().zip(&index) {
            match table.field(i) {
                Some(s) => *field = s,
                None => utf8_ok = false,
            }
        }
        if !utf8_ok {
            problems.push(line, LineCode::InvalidUtf8, "the line is not valid UTF-8");
            continue;
        }
        if let Some(row) = on_row(line, fields, &mut problems) {
            rows.push(row);
        }
    }
    if problems.0.is_empty() {
        Ok(rows)
    } else {
        Err(problems.0)
    }
}

/// For each expected column, its index in the header (the table's current row).
fn map_header<const N: usize>(
    header: &impl Table,
    line: u64,
    columns: [&str; N],
) -> Result<[usize; N], Vec<LineProblem>> {
    let mut problems = Problems(Vec::new());
    let mut index = [usize::MAX; N];
    for i in 0..header.width() {
        let Some(name) = header.field(i) else {
            problems.push(line, LineCode::InvalidUtf8, "the header is not valid UTF-8");
            continue;
        };
        let name = name.trim();
        match columns.iter().position(|&c| c == name) {
            Some(c) if index[c] == usize::MAX => index[c] = i,
            Some(_) => problems.push(
                line,
                LineCode::InvalidField,
                format!("column {name:?} appears twice"),
            ),
            None => problems.push(
                line,
                LineCode::InvalidField,
                format!(
                    "unknown column {name:?}; the columns are {}",
                    columns.join(",")
                ),
            ),
        }
    }
    for (c, &i) in columns.iter().zip(&index) {
        if i == usize::MAX {
            problems.push(
                line,
                LineCode::MissingColumn,
                format!("the header has no column {c:?}"),
            );
        }
    }
    if problems.0.is_empty() {
        Ok(index)
    } else {
        Err(problems.0)
    }
}

/// A name, title or household: trimmed, 1–64 characters, no control characters.
fn text(line: u64, column: &str, raw: &str, problems: &mut Problems) -> Option<String> {
    let s = raw.trim();
    let problem = if s.is_empty() {
        format!("{column} is empty")
    } else if s.len() > MAX_TEXT_CHARS && s.chars().count() > MAX_TEXT_CHARS {
        format!("{column} is longer than {MAX_TEXT_CHARS} characters")
    } else if s.chars().any(char::is_control) {
        format!("{column} contains a control character")
    } else {
        return Some(s.to_owned());
    };
    problems.push(line, LineCode::InvalidField, problem);
    None
}

fn phone_field(line: u64, raw: &str, problems: &mut Problems) -> Option<String> {
    if is_phone(raw) {
        Some(raw.to_owned())
    } else {
        let message = "phone must be 5–20 characters: digits, an optional leading '+', '-' or space between digits";
        problems.push(line, LineCode::InvalidField, message);
        None
    }
}

/// 5–20 characters of digits, optionally a leading `+`, and `-` or space
/// inside (never first or last).
fn is_phone(s: &str) -> bool {
    let bytes = s.as_bytes();
    let n = bytes.len();
    (5..=20).contains(&n)
        && (bytes[0].is_ascii_digit() || bytes[0] == b'+')
        && bytes[n - 1].is_ascii_digit()
        && bytes[1..n - 1]
            .iter()
            .all(|&b| b.is_ascii_digit() || b == b'-' || b == b' ')
}

fn area_field(line: u64, raw: &str, problems: &mut Problems) -> Option<AreaPath> {
    AreaPath::parse(raw)
        .map_err(|e| problems.push(line, LineCode::InvalidArea, format!("area: {e}")))
        .ok()
}

/// What the tests of the file parsers (register, heads, exemptions) share:
/// the day they judge birth dates against, valid IDs, and a refused file's
/// problems as `(line, code)`.
#[cfg(test)]
pub(crate) mod testing {
    use chrono::NaiveDate;

    use super::{LineCode, LineProblem};
    use crate::domain::person_id::compute_check_char;

    pub(crate) fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2022, 4, 19).unwrap()
    }

    /// A valid ID with the given sequence number.
    pub(crate) fn id(seq: u32) -> String {
        let first17 = format!("61080219850312{seq:03}");
        let bytes: [u8; 17] = first17.as_bytes().try_into().unwrap();
        format!("{first17}{}", compute_check_char(&bytes))
    }

    /// The `(line, code)` of each problem of a refused file.
    pub(crate) fn codes<T: std::fmt::Debug>(
        result: Result<T, Vec<LineProblem>>,
    ) -> Vec<(u64, LineCode)> {
        result
            .unwrap_err()
            .into_iter()
            .map(|p| (p.line, p.code))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{codes, id, today};
    use super::*;

    const HEADER: &str = "person_id,name,phone,area,household\n";

    fn line(seq: u32) -> String {
        format!(
            "{},王芳,13900000000,崇文路街道/学院社区/第03网格/05号楼/03层,05号楼-302\n",
            id(seq)
        )
    }

    #[test]
    fn a_good_file_parses_with_columns_in_any_order() {
        let file = format!(
            "\u{feff}household,area,phone,name,person_id\r\n\
             05号楼-302,崇文路街道/学院社区,+86 139-0000-0000, 王芳 ,{}\r\n\
             \"5号楼-302, 东\",崇文路街道/学院社区,13900000000,\"李, 雷\",{}\r\n\
             \r\n\n",
            id(1),
            id(2).to_lowercase()
        );
        let rows = parse_register(file.as_bytes(), today()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].name, "王芳");
        assert_eq!(rows[0].phone, "+86 139-0000-0000");
        assert_eq!(rows[0].area.as_str(), "崇文路街道/学院社区");
        assert_eq!(rows[1].name, "李, 雷");
        assert_eq!(rows[1].household, "5号楼-302, 东");
        assert_eq!(rows[1].person_id.to_string(), id(2));
    }

    #[test]
    fn a_header_alone_is_an_empty_register() {
        assert_eq!(parse_register(HEADER.as_bytes(), today()).unwrap(), vec![]);
    }

    #[test]
    fn rejected_lines_give_the_matching_code() {
        let area = "崇文路街道/学院社区";
        let cases: Vec<(String, LineCode)> = vec![
            (
                format!("{}1,王芳,13900000000,{area},h\n", &id(1)[..17]),
                LineCode::InvalidPersonId,
            ),
            (
                format!(" {},王芳,13900000000,{area},h\n", id(1)),
                LineCode::InvalidPersonId,
            ),
            (
                format!("{},王芳,13900000000,{area}/,h\n", id(1)),
                LineCode::InvalidArea,
            ),
            (
                format!("{},王芳,13900000000, {area},h\n", id(1)),
                LineCode::InvalidArea,
            ),
            (
                format!("{},王芳,13900000000,,h\n", id(1)),
                LineCode::InvalidArea,
            ),
            (
                format!("{}, ,13900000000,{area},h\n", id(1)),
                LineCode::InvalidField,
            ),
            (
                format!("{},王芳,1390,{area},h\n", id(1)),
                LineCode::InvalidField,
            ),
            (
                format!("{},王芳,139000000001390000000,{area},h\n", id(1)),
                LineCode::InvalidField,
            ),
            (
                format!("{},王芳,1390000000-,{area},h\n", id(1)),
                LineCode::InvalidField,
            ),
            (
                format!("{},王芳,139O0000000,{area},h\n", id(1)),
                LineCode::InvalidField,
            ),
            (
                format!("{},王芳, 13900000000,{area},h\n", id(1)),
                LineCode::InvalidField,
            ),
            (
                format!("{},王芳,13900000000,{area},\n", id(1)),
                LineCode::InvalidField,
            ),
            (
                format!("{},王芳,13900000000,{area},{}\n", id(1), "户".repeat(65)),
                LineCode::InvalidField,
            ),
            (
                format!("{},王\u{7}芳,13900000000,{area},h\n", id(1)),
                LineCode::InvalidField,
            ),
            (
                format!("{},王芳,13900000000,{area}\n", id(1)),
                LineCode::WrongColumnCount,
            ),
            (
                format!("{},王芳,13900000000,{area},h,extra\n", id(1)),
                LineCode::WrongColumnCount,
            ),
        ];
        for (bad, code) in cases {
            let file = format!("{HEADER}{}{bad}", line(2));
            assert_eq!(
                codes(parse_register(file.as_bytes(), today())),
                [(3, code)],
                "line {bad:?}"
            );
        }
    }

    #[test]
    fn invalid_utf8_is_reported_on_its_line() {
        let mut file = format!("{HEADER}{}", line(1)).into_bytes();
        file.extend_from_slice(id(2).as_bytes());
        file.extend_from_slice(b",\xff\xfe,13900000000,a,h\n");
        assert_eq!(
            codes(parse_register(&file, today())),
            [(3, LineCode::InvalidUtf8)]
        );
        let mut header = b"person_id,na\xffme,phone,area,household\n".to_vec();
        header.extend_from_slice(line(1).as_bytes());
        let problems = codes(parse_register(&header, today()));
        assert!(
            problems.contains(&(1, LineCode::InvalidUtf8)),
            "{problems:?}"
        );
    }

    #[test]
    fn header_problems_reject_the_file_at_line_one() {
        let missing = "person_id,name,phone,household\n";
        assert_eq!(
            codes(parse_register(missing.as_bytes(), today())),
            [(1, LineCode::MissingColumn)]
        );
        let unknown = "person_id,name,phone,area,household,email\n";
        let problems = parse_register(unknown.as_bytes(), today()).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(
            (problems[0].line, problems[0].code),
            (1, LineCode::InvalidField)
        );
        assert!(problems[0].message.contains("email"));
        let doubled = "person_id,name,phone,area,household,name\n";
        assert_eq!(
            codes(parse_register(doubled.as_bytes(), today())),
            [(1, LineCode::InvalidField)]
        );
        assert_eq!(
            codes(parse_register(b"", today())),
            [(0, LineCode::MissingColumn)]
        );
        assert_eq!(
            codes(parse_register(b"\xEF\xBB\xBF", today())),
            [(0, LineCode::MissingColumn)]
        );
    }

    #[test]
    fn every_bad_line_is_reported_up_to_one_hundred() {
        let mut file = HEADER.to_string();
        for seq in 0..150 {
            if seq % 2 == 0 {
                file.push_str(&line(seq));
            } else {
                file.push_str(&id(seq));
                file.push_str(",王芳,bad,崇文路街道,h\n");
            }
        }
        let problems = parse_register(file.as_bytes(), today()).unwrap_err();
        assert_eq!(problems.len(), 75);
        assert!(
            problems
                .iter()
                .all(|p| p.code == LineCode::InvalidField && p.line % 2 == 1)
        );
        assert_eq!(problems[0].line, 3);

        let mut many = HEADER.to_string();
        for seq in 0..300 {
            many.push_str(&id(seq));
            many.push_str(",,bad,崇文路街道,h\n");
        }
        let problems = parse_register(many.as_bytes(), today()).unwrap_err();
        assert_eq!(problems.len(), MAX_PROBLEMS);
        // Two problems a line: the first 50 lines, in order.
        assert_eq!(problems.last().unwrap().line, 51);
    }

    #[test]
    fn a_duplicate_person_is_reported_on_the_second_line() {
        let file = format!(
            "{HEADER}{}{}{}",
            line(1),
            line(2),
            line(1).replace("王芳", "李雷")
        );
        let problems = parse_register(file.as_bytes(), today()).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(
            (problems[0].line, problems[0].code),
            (4, LineCode::DuplicatePerson)
        );
        assert!(problems[0].message.contains("line 2"));
        assert!(!problems[0].message.contains(&id(1)));
        // Upper and lower case x are the same person.
        let x = "11010519491231002X";
        let file = format!(
            "{HEADER}{x},a,13900000000,b,h\n{},a,13900000000,b,h\n",
            x.to_lowercase()
        );
        assert_eq!(
            codes(parse_register(file.as_bytes(), today())),
            [(3, LineCode::DuplicatePerson)]
        );
    }

    #[test]
    fn a_quoted_newline_is_rejected_and_later_line_numbers_stay_right() {
        let file = format!(
            "{HEADER}{},\"王\n芳\",13900000000,a,h\n{},,13900000000,a,h\n",
            id(1),
            id(2)
        );
        assert_eq!(
            codes(parse_register(file.as_bytes(), today())),
            [(2, LineCode::InvalidField), (4, LineCode::InvalidField)]
        );
    }

    #[test]
    fn future_birth_dates_depend_on_today() {
        let file = format!("{HEADER}{}", line(1));
        let before = NaiveDate::from_ymd_opt(1985, 3, 11).unwrap();
        assert_eq!(
            codes(parse_register(file.as_bytes(), before)),
            [(2, LineCode::InvalidPersonId)]
        );
        assert!(
            parse_register(
                file.as_bytes(),
                NaiveDate::from_ymd_opt(1985, 3, 12).unwrap()
            )
            .is_ok()
        );
    }

    #[test]
    fn a_good_heads_file_parses() {
        let file = "area,title,name,phone\n崇文路街道/学院社区,社区书记,张伟,13900000001\n崇文路街道/学院社区/第01网格,网格长, 李娜 ,13900000002\n";
        let heads = parse_heads(file.as_bytes()).unwrap();
        assert_eq!(heads.len(), 2);
        assert_eq!(heads[1].name, "李娜");
        assert_eq!(heads[1].title, "网格长");
    }

    #[test]
    fn rejected_head_lines_give_the_matching_code() {
        let header = "area,title,name,phone\n";
        let good = "崇文路街道,街道主任,张伟,13900000001\n";
        let cases = [
            (
                "崇文路街道/,社区书记,张伟,13900000001\n",
                LineCode::InvalidArea,
            ),
            (
                "崇文路街道/学院社区,,张伟,13900000001\n",
                LineCode::InvalidField,
            ),
            (
                "崇文路街道/学院社区,社区书记,,13900000001\n",
                LineCode::InvalidField,
            ),
            (
                "崇文路街道/学院社区,社区书记,张伟,phone\n",
                LineCode::InvalidField,
            ),
            (
                "崇文路街道/学院社区,社区书记,张伟\n",
                LineCode::WrongColumnCount,
            ),
            (
                "崇文路街道,社区书记,王芳,13900000001\n",
                LineCode::DuplicateArea,
            ),
        ];
        for (bad, code) in cases {
            let file = format!("{header}{good}{bad}");
            let problems: Vec<(u64, LineCode)> = parse_heads(file.as_bytes())
                .unwrap_err()
                .into_iter()
                .map(|p| (p.line, p.code))
                .collect();
            assert_eq!(problems, [(3, code)], "line {bad:?}");
        }
        let missing = parse_heads(b"area,name,phone\n").unwrap_err();
        assert_eq!(
            (missing[0].line, missing[0].code),
            (1, LineCode::MissingColumn)
        );
    }

    #[test]
    fn problems_serialise_as_line_code_message() {
        let problem = LineProblem {
            line: 7,
            sheet: None,
            code: LineCode::InvalidPersonId,
            message: "m".into(),
        };
        assert_eq!(
            serde_json::to_string(&problem).unwrap(),
            r#"{"line":7,"code":"invalid_person_id","message":"m"}"#
        );
        for code in LineCode::ALL {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
        let names: Vec<&str> = LineCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            names,
            [
                "invalid_person_id",
                "invalid_area",
                "invalid_field",
                "wrong_column_count",
                "duplicate_person",
                "duplicate_area",
                "missing_column",
                "invalid_utf8",
                "invalid_time",
                "invalid_window",
                "unknown_resident"
            ]
        );
    }
}
