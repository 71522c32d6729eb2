//! Spreadsheets in: the first sheet of an XLSX workbook read as a
//! [`Table`], every cell as text, so a register, heads or exemptions file
//! kept in a spreadsheet goes through exactly the rules of its CSV twin.
//!
//! Cells come back from `calamine` typed. A phone number or a household
//! typed into a cell as a number is the digits as written (`13900000000`,
//! never `1.39e10` nor `13900000000.0`); a date cell is its ISO date and
//! time (without an offset, so a time column still asks for one). Row
//! numbers are the spreadsheet's own, as its user sees them. No I/O: the
//! caller hands in bytes.

use std::io::Cursor;

use calamine::{Data, Range, Reader, Xlsx};

use super::register::{LineCode, LineProblem, Table};

/// Reads the first sheet of the workbook in `bytes` and hands it to
/// `judge`; every problem it reports carries the sheet's name. A file that
/// is not a workbook, or has no sheet, is one problem on line 0.
pub(crate) fn first_sheet<T>(
    bytes: &[u8],
    judge: impl FnOnce(&mut SheetTable) -> Result<T, Vec<LineProblem>>,
) -> Result<T, Vec<LineProblem>> {
    let file_problem = |message: String| {
        vec![LineProblem {
            line: 0,
            sheet: None,
            code: LineCode::InvalidField,
            message,
        }]
    };
    let mut book: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(bytes))
        .map_err(|e| file_problem(format!("not a readable XLSX workbook: {e}")))?;
    let Some(name) = book.sheet_names().first().cloned() else {
        return Err(file_problem("the workbook has no sheet".into()));
    };
    let range = book
        .worksheet_range(&name)
        .map_err(|e| file_problem(format!("the sheet {name:?} is unreadable: {e}")))?;
    let mut table = SheetTable::new(range, name.clone());
    judge(&mut table).map_err(|mut problems| {
        for p in &mut problems {
            p.sheet = Some(name.clone());
        }
        problems
    })
}

/// A sheet's rows as text, one row at a time.
pub(crate) struct SheetTable {
    range: Range<Data>,
    name: String,
    /// The next row to read, counted from the range's first row.
    next: usize,
    /// The current row's cells as text, up to its last filled cell.
    cells: Vec<String>,
}

impl SheetTable {
    fn new(range: Range<Data>, name: String) -> SheetTable {
        SheetTable {
            range,
            name,
            next: 0,
            cells: Vec::new(),
        }
    }
}

impl Table for SheetTable {
    fn advance(&mut self) -> Result<Option<u64>, LineProblem> {
        // The range starts at the sheet's first used cell; row numbers are
        // the sheet's own (1-based).
        let first_row = self.range.start().map_or(0, |(r, _)| u64::from(r));
        let height = self.range.height();
        while self.next < height {
            let i = self.next;
            self.next += 1;
            self.cells.clear();
            // By position: `rows().nth(i)` would walk every earlier row.
            let width = self.range.width();
            self.cells.extend(
                (0..width).map(|j| self.range.get((i, j)).map_or_else(String::new, cell_text)),
            );
            while self.cells.last().is_some_and(|c| c.trim().is_empty()) {
                self.cells.pop();
            }
            if !self.cells.is_empty() {
                return Ok(Some(first_row + i as u64 + 1));
            }
        }
        Ok(None)
    }

    fn width(&self) -> usize {
        self.cells.len()
    }

    fn field(&self, i: usize) -> Option<&str> {
        Some(self.cells.get(i).map_or("", String::as_str))
    }

    fn sheet(&self) -> Option<&str> {
        Some(&self.name)
    }

    const SHORT_ROWS_ARE_WRONG: bool = false;
}

/// A cell as the text its user typed.
pub(crate) fn cell_text(cell: &Data) -> String {
    match cell {
        Data::Empty => String::new(),
        Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
        Data::Int(i) => i.to_string(),
        Data::Float(f) => float_text(*f),
        Data::Bool(b) => if *b { "TRUE" } else { "FALSE" }.to_owned(),
        Data::DateTime(d) if d.is_datetime() => {
            let (y, mo, day, h, mi, s, _) = d.to_ymd_hms_milli();
            format!("{y:04}-{mo:02}-{day:02}T{h:02}:{mi:02}:{s:02}")
        }
        Data::DateTime(d) => float_text(d.as_f64()),
        Data::Error(e) => format!("#{e:?}"),
    }
}

/// A number as written: whole numbers without a fraction or an exponent
/// (a phone number stored as a float is still its digits), others in the
/// shortest form that reads back the same.
fn float_text(f: f64) -> String {
    // Below 2^53 every whole number is exact, so the digits are the user's.
    if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
        format!("{}", f as i64)
    } else {
        // `Display` for f64 never uses an exponent.
        format!("{f}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_the_digits_typed() {
        assert_eq!(cell_text(&Data::Float(13_900_000_000.0)), "13900000000");
        assert_eq!(cell_text(&Data::Int(13_900_000_000)), "13900000000");
        assert_eq!(cell_text(&Data::Float(302.0)), "302");
        assert_eq!(cell_text(&Data::Float(-3.0)), "-3");
        assert_eq!(cell_text(&Data::Float(2.5)), "2.5");
        assert_eq!(cell_text(&Data::Float(1e20)), "100000000000000000000");
        assert_eq!(cell_text(&Data::Bool(true)), "TRUE");
        assert_eq!(cell_text(&Data::Empty), "");
        assert_eq!(cell_text(&Data::String("王芳".into())), "王芳");
    }

    #[test]
    fn a_file_that_is_not_a_workbook_is_one_problem_on_line_zero() {
        let problems = first_sheet(b"person_id,name\n", |_| Ok(())).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(
            (problems[0].line, problems[0].code),
            (0, LineCode::InvalidField)
        );
    }
}
