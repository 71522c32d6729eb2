//! Officials through a campaign (issue 17): spreadsheets in (register,
//! heads, exemptions), door-knock messages out, repeat missers. The real
//! server on port 0 with its own data directory.

use rust_xlsxwriter::Workbook;
use serde_json::json;

use crate::helpers::*;
const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// A workbook of one sheet named `sheet`; a cell of only digits (and not an
/// 18-character ID) is written as a number, as a spreadsheet user's phone
/// column would hold it.
fn xlsx(sheet: &str, rows: &[Vec<String>]) -> Vec<u8> {
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    ws.set_name(sheet).unwrap();
    for (r, row) in rows.iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            let (r, c) = (r as u32, c as u16);
            if !cell.is_empty() && cell.len() < 16 && cell.bytes().all(|b| b.is_ascii_digit()) {
                ws.write_number(r, c, cell.parse::<f64>().unwrap()).unwrap();
            } else {
                ws.write_string(r, c, cell).unwrap();
            }
        }
    }
    wb.save_to_buffer().unwrap()
}

fn csv_rows(csv: &str) -> Vec<Vec<String>> {
    csv.lines()
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect()
}

async fn post_file(app: &TestApp, path: &str, token: &str, ct: &str, body: Vec<u8>) -> Resp {
    app.req(reqwest::Method::POST, path, Some(token), Some((ct, body)))
        .await
}

async fn no_redis() -> TestApp {
    spawn_with(Opts {
        redis: false,
        ..Opts::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_xlsx_register_imports_to_exactly_the_state_the_same_csv_gives() {
    let (a, b) = tokio::join!(no_redis(), no_redis());
    let (csv, people) = small_city(3);
    let ra = a.register(&csv).await;
    let rb = post_file(
        &b,
        "/v1/register",
        ADMIN,
        XLSX,
        xlsx("名册", &csv_rows(&csv)),
    )
    .await;
    assert_eq!((ra.status, rb.status), (200, 200), "{}", rb.text());
    assert_eq!(ra.json(), rb.json());
    for (id, _) in &people {
        let ja = a.get(&format!("/v1/residents/{id}"), ADMIN).await.json();
        let jb = b.get(&format!("/v1/residents/{id}"), ADMIN).await.json();
        assert_eq!(ja, jb, "resident {id}");
        // The phone was a number in the sheet: its digits, not 1.39e10.
        assert!(jb["phone"].as_str().unwrap().starts_with("139"), "{jb}");
    }
    // Heads from a sheet too, the same answer as their CSV.
    let rh = a.heads(HEADS_CSV).await;
    let hb = post_file(
        &b,
        "/v1/heads",
        ADMIN,
        XLSX,
        xlsx("heads", &csv_rows(HEADS_CSV)),
    )
    .await;
    assert_eq!(rh.json(), hb.json(), "{}", hb.text());
    // The same sheet again: all unchanged.
    let again = post_file(
        &b,
        "/v1/register",
        ADMIN,
        XLSX,
        xlsx("名册", &csv_rows(&csv)),
    )
    .await;
    assert_eq!(
        again.json(),
        json!({"residents": 24, "inserted": 0, "updated": 0, "unchanged": 24})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sheet_with_a_bad_row_is_refused_whole_with_its_sheet_and_row() {
    let app = no_redis().await;
    let (csv, people) = small_city(1);
    let mut rows = csv_rows(&csv);
    // Row 4 of the sheet (the header is row 1): a wrong check character.
    let id = &rows[3][0];
    let last = if id.ends_with('0') { "1" } else { "0" };
    rows[3][0] = format!("{}{last}", &id[..17]);
    // Row 6: an empty name; and a filled cell past the header on row 7.
    rows[5][1] = String::new();
    rows[6].push("多余".into());
    let r = post_file(&app, "/v1/register", ADMIN, XLSX, xlsx("名册", &rows)).await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_register"));
    let lines: Vec<(u64, String, String)> = r.json()["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["line"].as_u64().unwrap(),
                l["code"].as_str().unwrap().to_owned(),
                l["sheet"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want = |line: u64, code: &str| (line, code.to_owned(), "名册".to_owned());
    assert_eq!(
        lines,
        [
            want(4, "invalid_person_id"),
            want(6, "invalid_field"),
            want(7, "wrong_column_count")
        ]
    );
    // Nothing of the file was taken.
    let r = app
        .get(&format!("/v1/residents/{}", people[0].0), ADMIN)
        .await;
    assert_eq!(r.code(), "unknown_resident");

    // A short row is empty cells, judged by the same rules: no name.
    let mut rows = csv_rows(&csv);
    rows[2].truncate(1);
    let r = post_file(&app, "/v1/register", ADMIN, XLSX, xlsx("名册", &rows)).await;
    let j = r.json();
    let codes: Vec<&str> = j["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["code"].as_str().unwrap())
        .collect();
    assert!(
        codes.contains(&"invalid_field") && codes.contains(&"invalid_area"),
        "{codes:?}"
    );

    // A header missing a column: missing_column on row 1 of the sheet.
    let r = post_file(
        &app,
        "/v1/register",
        ADMIN,
        XLSX,
        xlsx("名册", &[vec!["person_id".into(), "name".into()]]),
    )
    .await;
    let l = &r.json()["lines"][0];
    assert_eq!(
        (l["line"].as_u64(), l["code"].as_str(), l["sheet"].as_str()),
        (Some(1), Some("missing_column"), Some("名册"))
    );

    // Not a workbook at all: one problem for the file, line 0.
    let r = post_file(
        &app,
        "/v1/register",
        ADMIN,
        XLSX,
        b"PK\x03\x04 not really".to_vec(),
    )
    .await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_register"));
    assert_eq!(r.json()["lines"][0]["line"], 0);
    // Another type: 415.
    let r = post_file(
        &app,
        "/v1/register",
        ADMIN,
        "application/pdf",
        b"%PDF".to_vec(),
    )
    .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (415, "unsupported_media_type")
    );
    assert_eq!(
        app.get("/v1/rounds", ADMIN).await.status,
        200,
        "the server still serves"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spreadsheet_over_eight_mebibytes_is_payload_too_large() {
    let app = no_redis().await;
    let r = post_file(
        &app,
        "/v1/register",
        ADMIN,
        XLSX,
        vec![0u8; 8 * 1024 * 1024 + 1],
    )
    .await;
    assert_eq!((r.status, r.code().as_str()), (413, "payload_too_large"));
}
