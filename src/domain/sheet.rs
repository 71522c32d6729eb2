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
//!
//! A workbook is a zip: the request's size limit bounds the compressed
//! bytes only, so a hostile file is held to [`MAX_UNZIPPED`] bytes unpacked
//! (the zip reader refuses an entry longer than it declares), to
//! [`MAX_CELLS`] cells, [`MAX_TEXT`] bytes of cell text and [`MAX_COLUMNS`]
//! columns, and its cells are kept sparse (one far cell never allocates
//! the rectangle up to it).

use std::io::Cursor;

use calamine::{Data, DataRef, Reader, Xlsx};

use super::register::{LineCode, LineProblem, Table};

/// Reads the first sheet of the workbook in `bytes` and hands it to
/// `judge`; every problem it reports carries the sheet's name. A file that
/// is not a workbook, or has no sheet, is one problem on line 0.
/// The most bytes a workbook may hold unpacked (its zip entries together).
pub const MAX_UNZIPPED: u64 = 160 << 20;
/// The most non-empty cells the first sheet may hold.
pub const MAX_CELLS: usize = 4_000_000;
/// The most bytes of text its cells may hold together.
pub const MAX_TEXT: usize = 128 << 20;
/// The most columns a row may reach (a register has a dozen).
pub const MAX_COLUMNS: u32 = 256;

/// The sum of the sizes the zip in `bytes` declares for its entries, or
/// why it cannot be read.
fn unzipped_size(bytes: &[u8]) -> Result<u64, String> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| e.to_string())?;
    let mut total = 0u64;
    for i in 0..zip.len() {
        let entry = zip.by_index_raw(i).map_err(|e| e.to_string())?;
        total = total.saturating_add(entry.size());
    }
    Ok(total)
}

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
    let unzipped = unzipped_size(bytes)
        .map_err(|e| file_problem(format!("not a readable XLSX workbook: {e}")))?;
    if unzipped > MAX_UNZIPPED {
        return Err(file_problem(format!(
            "the workbook unpacks to {unzipped} bytes, more than {MAX_UNZIPPED}"
        )));
    }
    let mut book: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(bytes))
        .map_err(|e| file_problem(format!("not a readable XLSX workbook: {e}")))?;
    let Some(name) = book.sheet_names().first().cloned() else {
        return Err(file_problem("the workbook has no sheet".into()));
    };
    let rows = read_rows(&mut book, &name).map_err(file_problem)?;
    let mut table = SheetTable::new(rows, name.clone());
    judge(&mut table).map_err(|mut problems| {
        for p in &mut problems {
            p.sheet = Some(name.clone());
        }
        problems
    })
}

/// The non-blank cells of a sheet as `(row, column, text)`, sorted by
/// position, within the bounds above.
fn read_rows(
    book: &mut Xlsx<Cursor<&[u8]>>,
    name: &str,
) -> Result<Vec<(u32, u32, String)>, String> {
    let unreadable = |e: &dyn std::fmt::Display| format!("the sheet {name:?} is unreadable: {e}");
    let mut reader = book
        .worksheet_cells_reader(name)
        .map_err(|e| unreadable(&e))?;
    let mut cells = Vec::new();
    let mut text = 0usize;
    while let Some(cell) = reader.next_cell().map_err(|e| unreadable(&e))? {
        let (row, col) = cell.get_position();
        let value = match cell.get_value() {
            DataRef::SharedString(s) => Data::String((*s).to_owned()),
            other => Data::from(other.clone()),
        };
        let t = cell_text(&value);
        if t.trim().is_empty() {
            continue;
        }
        if col >= MAX_COLUMNS {
            return Err(format!(
                "the sheet {name:?} has a cell beyond its first {MAX_COLUMNS} columns"
            ));
        }
        text = text.saturating_add(t.len());
        if cells.len() >= MAX_CELLS || text > MAX_TEXT {
            return Err(format!(
                "the sheet {name:?} holds more than {MAX_CELLS} cells or {MAX_TEXT} bytes of text"
            ));
        }
        cells.push((row, col, t));
    }
    // Columns count from the sheet's first filled one, as a table pasted
    // from column B still starts with its first column.
    let first_col = cells.iter().map(|c| c.1).min().unwrap_or(0);
    for c in &mut cells {
        c.1 -= first_col;
    }
    cells.sort_by_key(|&(r, c, _)| (r, c));
    // A cell written twice: the last one stands, as in the sheet.
    cells.dedup_by(|later, earlier| {
        let same = (later.0, later.1) == (earlier.0, earlier.1);
        if same {
            std::mem::swap(&mut earlier.2, &mut later.2);
        }
        same
    });
    Ok(cells)
}

/// A sheet's rows as text, one row at a time.
pub(crate) struct SheetTable {
    /// The non-blank cells, sorted by position.
    cells_at: std::vec::IntoIter<(u32, u32, String)>,
    /// The first cell of the next row, read ahead.
    pending: Option<(u32, u32, String)>,
    name: String,
    /// The current row's cells as text, up to its last filled cell.
    cells: Vec<String>,
}

impl SheetTable {
    fn new(cells: Vec<(u32, u32, String)>, name: String) -> SheetTable {
        let mut cells_at = cells.into_iter();
        let pending = cells_at.next();
        SheetTable {
            cells_at,
            pending,
            name,
            cells: Vec::new(),
        }
    }
}

impl Table for SheetTable {
    fn advance(&mut self) -> Result<Option<u64>, LineProblem> {
        // Only non-blank cells are kept, so every row met has one; row
        // numbers are the sheet's own (1-based).
        let Some((row, col, text)) = self.pending.take() else {
            return Ok(None);
        };
        self.cells.clear();
        let put = |cells: &mut Vec<String>, col: u32, text: String| {
            let col = col as usize;
            if cells.len() <= col {
                cells.resize(col + 1, String::new());
            }
            cells[col] = text;
        };
        put(&mut self.cells, col, text);
        for (r, c, t) in self.cells_at.by_ref() {
            if r != row {
                self.pending = Some((r, c, t));
                break;
            }
            put(&mut self.cells, c, t);
        }
        Ok(Some(u64::from(row) + 1))
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

    fn workbook(cells: &[(u32, u16, &str)]) -> Vec<u8> {
        let mut wb = rust_xlsxwriter::Workbook::new();
        let ws = wb.add_worksheet();
        for &(r, c, t) in cells {
            ws.write_string(r, c, t).unwrap();
        }
        wb.save_to_buffer().unwrap()
    }

    fn rows_of(bytes: &[u8]) -> Result<Vec<(u64, Vec<String>)>, Vec<LineProblem>> {
        first_sheet(bytes, |t| {
            let mut rows = Vec::new();
            while let Some(line) = t.advance().map_err(|p| vec![p])? {
                let cells = (0..t.width())
                    .map(|i| t.field(i).unwrap().to_owned())
                    .collect();
                rows.push((line, cells));
            }
            Ok(rows)
        })
    }

    #[test]
    fn one_far_cell_is_refused_without_allocating_the_rectangle_up_to_it() {
        // A1 and XFD1048576: read as a dense range this is 17 billion cells.
        let bytes = workbook(&[(0, 0, "person_id"), (1_048_575, 16_383, "x")]);
        let problems = rows_of(&bytes).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].code, LineCode::InvalidField);
        assert!(problems[0].message.contains("columns"), "{problems:?}");
    }

    #[test]
    fn rows_are_sparse_numbered_as_the_sheet_and_start_at_the_first_filled_column() {
        let bytes = workbook(&[
            (2, 1, "a"),
            (2, 3, "c"),
            (1_048_575, 2, "far"),
            (5, 1, "  "),
        ]);
        let rows = rows_of(&bytes).unwrap();
        assert_eq!(
            rows,
            vec![
                (3, vec!["a".to_owned(), String::new(), "c".to_owned()]),
                (1_048_576, vec![String::new(), "far".to_owned()]),
            ]
        );
    }

    #[test]
    fn a_workbook_that_unpacks_too_large_is_refused_before_it_is_read() {
        use std::io::Write;
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        w.start_file("xl/sharedStrings.xml", opts).unwrap();
        let chunk = vec![b' '; 1 << 20];
        for _ in 0..=(MAX_UNZIPPED >> 20) {
            w.write_all(&chunk).unwrap();
        }
        let bytes = w.finish().unwrap().into_inner();
        assert!(bytes.len() < 8 << 20, "the bomb fits a request");
        let problems = rows_of(&bytes).unwrap_err();
        assert!(problems[0].message.contains("unpacks to"), "{problems:?}");
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
