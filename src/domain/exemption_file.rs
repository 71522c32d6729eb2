//! The exemptions file of `POST /v1/exemptions/import`: a community's list
//! of bedridden, away or hospitalised residents as CSV or a spreadsheet,
//! header `person_id,reason,from,until,note`, through the register's frame
//! ([`parse_table`]: header, widths, the problem list, sheets). All or
//! nothing, like the register. Whether each person is registered (inside
//! the official's area) is the caller's to judge, on the line given here.
//! No I/O.

use chrono::NaiveDate;

use super::enums::ExemptionReason;
use super::person_id::PersonId;
use super::register::{CsvTable, FileKind, LineCode, LineProblem, Table, first_sheet, parse_table};
use super::time::Timestamp;

/// Columns of an exemptions file, in their usual order.
pub const EXEMPTION_COLUMNS: [&str; 5] = ["person_id", "reason", "from", "until", "note"];
/// Most characters of a note (as for `POST /v1/exemptions`).
pub const MAX_NOTE_CHARS: usize = 1000;

/// One exemption as the file lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExemptionRow {
    /// Its line in the file (its row in a spreadsheet).
    pub line: u64,
    pub person_id: PersonId,
    pub reason: ExemptionReason,
    pub from: Timestamp,
    /// Not before `from`.
    pub until: Timestamp,
    /// Trimmed; may be empty.
    pub note: String,
}

/// A parsed file: its rows and, for a spreadsheet, the sheet they came from
/// (so later problems about a row can name it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExemptionFile {
    pub rows: Vec<ExemptionRow>,
    pub sheet: Option<String>,
}

impl ExemptionFile {
    /// A problem about one of this file's rows, found after parsing.
    pub fn problem(&self, line: u64, code: LineCode, message: impl Into<String>) -> LineProblem {
        LineProblem {
            line,
            sheet: self.sheet.clone(),
            code,
            message: message.into(),
        }
    }
}

/// Parses an exemptions file, judging birth dates against `today`.
pub fn parse_exemptions(
    kind: FileKind,
    bytes: &[u8],
    today: NaiveDate,
) -> Result<ExemptionFile, Vec<LineProblem>> {
    match kind {
        FileKind::Csv => exemption_rows(&mut CsvTable::new(bytes), today),
        FileKind::Xlsx => first_sheet(bytes, |t| exemption_rows(t, today)),
    }
}

fn exemption_rows(
    table: &mut impl Table,
    today: NaiveDate,
) -> Result<ExemptionFile, Vec<LineProblem>> {
    let sheet = table.sheet().map(str::to_owned);
    let rows = parse_table(
        table,
        EXEMPTION_COLUMNS,
        |line, [id, reason, from, until, note], problems| {
            let person_id = PersonId::parse_on(id, today)
                .map_err(|e| {
                    problems.push(line, LineCode::InvalidPersonId, format!("person_id: {e}"));
                })
                .ok();
            let reason = reason
                .trim()
                .parse::<ExemptionReason>()
                .map_err(|_| {
                    problems.push(
                        line,
                        LineCode::InvalidField,
                        "reason must be bedridden, infant, away, hospitalized or other",
                    );
                })
                .ok();
            let mut time = |column: &str, raw: &str| {
                Timestamp::parse(raw.trim())
                    .map_err(|e| {
                        problems.push(line, LineCode::InvalidTime, format!("{column}: {e}"));
                    })
                    .ok()
            };
            let from = time("from", from);
            let until = time("until", until);
            let note = note.trim();
            let note_ok = if note.chars().count() > MAX_NOTE_CHARS {
                let message = format!("note is longer than {MAX_NOTE_CHARS} characters");
                problems.push(line, LineCode::InvalidField, message);
                false
            } else {
                true
            };
            if let (Some(f), Some(u)) = (from, until)
                && u < f
            {
                problems.push(line, LineCode::InvalidWindow, "until is before from");
                return None;
            }
            note_ok.then_some(())?;
            Some(ExemptionRow {
                line,
                person_id: person_id?,
                reason: reason?,
                from: from?,
                until: until?,
                note: note.to_owned(),
            })
        },
    )?;
    Ok(ExemptionFile { rows, sheet })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::register::testing::{id, today};

    const HEADER: &str = "person_id,reason,from,until,note\n";
    const FROM: &str = "2022-04-19T00:00:00+08:00";
    const UNTIL: &str = "2022-04-29T00:00:00+08:00";

    /// The `(line, code)` of each problem of a refused CSV file.
    fn codes(file: &str) -> Vec<(u64, LineCode)> {
        crate::domain::register::testing::codes(parse_exemptions(
            FileKind::Csv,
            file.as_bytes(),
            today(),
        ))
    }

    #[test]
    fn a_good_file_parses_with_its_lines() {
        let file = format!(
            "{HEADER}{},bedridden,{FROM},{UNTIL},卧床\n{},away, {FROM} ,{UNTIL},\n",
            id(1),
            id(2)
        );
        let parsed = parse_exemptions(FileKind::Csv, file.as_bytes(), today()).unwrap();
        assert_eq!(parsed.sheet, None);
        assert_eq!(parsed.rows.len(), 2);
        assert_eq!(parsed.rows[0].line, 2);
        assert_eq!(parsed.rows[0].reason, ExemptionReason::Bedridden);
        assert_eq!(parsed.rows[0].note, "卧床");
        assert_eq!(parsed.rows[1].line, 3);
        assert_eq!(parsed.rows[1].from, Timestamp::parse(FROM).unwrap());
        assert_eq!(parsed.rows[1].note, "");
    }

    #[test]
    fn each_bad_line_gives_its_code() {
        let good = format!("{},other,{FROM},{UNTIL},x\n", id(1));
        let cases = [
            (
                format!("{}0,other,{FROM},{UNTIL},x\n", &id(2)[..17]),
                LineCode::InvalidPersonId,
            ),
            (
                format!("{},sleepy,{FROM},{UNTIL},x\n", id(2)),
                LineCode::InvalidField,
            ),
            (
                format!("{},away,2022-04-19T00:00:00,{UNTIL},x\n", id(2)),
                LineCode::InvalidTime,
            ),
            (
                format!("{},away,{FROM},tomorrow,x\n", id(2)),
                LineCode::InvalidTime,
            ),
            (
                format!("{},away,{UNTIL},{FROM},x\n", id(2)),
                LineCode::InvalidWindow,
            ),
            (
                format!("{},away,{FROM},{UNTIL}\n", id(2)),
                LineCode::WrongColumnCount,
            ),
            (
                format!("{},away,{FROM},{UNTIL},{}\n", id(2), "长".repeat(1001)),
                LineCode::InvalidField,
            ),
        ];
        for (bad, code) in cases {
            let file = format!("{HEADER}{good}{bad}{good}");
            assert_eq!(codes(&file), [(3, code)], "{bad:?}");
        }
        assert_eq!(
            codes("person_id,reason,from,until\n"),
            [(1, LineCode::MissingColumn)]
        );
    }
}
