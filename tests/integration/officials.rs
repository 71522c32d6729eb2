//! Officials through a campaign (issue 17): spreadsheets in (register,
//! heads, exemptions), door-knock messages out, repeat missers. The real
//! server on port 0 with its own data directory.

use calamine::Reader;
use rust_xlsxwriter::Workbook;
use serde_json::json;

use crate::helpers::*;
use rollcall::domain::Timestamp;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_workbook_is_refused_and_the_server_lives_on() {
    let app = no_redis().await;
    let (csv, people) = small_city(1);
    let r = app.register(&csv).await;
    assert_eq!(r.status, 200);
    // The header at A1 and one cell at XFD1048576: a dense read of the
    // sheet would allocate 17 billion cells.
    let mut wb = Workbook::new();
    let ws = wb.add_worksheet();
    for (c, h) in csv.lines().next().unwrap().split(',').enumerate() {
        ws.write_string(0, c as u16, h).unwrap();
    }
    ws.write_string(1_048_575, 16_383, "x").unwrap();
    let far = wb.save_to_buffer().unwrap();
    for path in ["/v1/register", "/v1/heads", "/v1/exemptions/import"] {
        let r = post_file(&app, path, ADMIN, XLSX, far.clone()).await;
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert_eq!(r.json()["lines"][0]["line"], 0, "{path}: {}", r.text());
    }
    // Unpacking to more than the bound: refused before it is read.
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    w.start_file("xl/worksheets/sheet1.xml", opts).unwrap();
    let chunk = vec![b' '; 1 << 20];
    for _ in 0..200 {
        std::io::Write::write_all(&mut w, &chunk).unwrap();
    }
    let bomb = w.finish().unwrap().into_inner();
    let r = post_file(&app, "/v1/register", ADMIN, XLSX, bomb).await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_register"));
    // Nothing changed, and the server answers.
    let r = app
        .get(&format!("/v1/residents/{}", people[0].0), ADMIN)
        .await;
    assert_eq!(r.status, 200);
}

const HOUR: i64 = 3_600_000;
const A: &str = "崇文路街道/学院社区";
const B: &str = "崇文路街道/南苑社区";

fn t(ts: Timestamp) -> String {
    ts.to_rfc3339()
}

/// The audit log's entries of one action.
async fn audited(app: &TestApp, action: &str) -> Vec<serde_json::Value> {
    let entries = app.get("/v1/audit", ADMIN).await.json()["entries"].clone();
    entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action)
        .cloned()
        .collect()
}

fn line_codes(r: &Resp) -> Vec<(u64, String)> {
    r.json()["lines"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|l| {
            (
                l["line"].as_u64().unwrap(),
                l["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exemptions_import_is_all_or_nothing_with_each_line_code() {
    let app = spawn_app().await;
    let (csv, people) = small_city(2);
    app.register(&csv).await;
    let (_, off_a) = app.token("official", None, Some(A)).await;
    let in_a: Vec<&String> = people
        .iter()
        .filter(|(_, a)| a.starts_with(A))
        .map(|(id, _)| id)
        .collect();
    let in_b = &people.iter().find(|(_, a)| a.starts_with(B)).unwrap().0;
    let now = app.now();
    let (from, until) = (t(now.plus_millis(-HOUR)), t(now.plus_millis(240 * HOUR)));
    let header = "person_id,reason,from,until,note\n";
    let row = |id: &str, reason: &str, f: &str, u: &str| format!("{id},{reason},{f},{u},卧床\n");

    // Every line code, and good lines beside them: nothing is granted.
    let unregistered = pid("19900101", 999);
    let mut bad = header.to_owned();
    bad += &row(in_a[0], "bedridden", &from, &until); // 2: good
    bad += &row(&in_a[1][..17], "away", &from, &until); // 3
    bad += &row(in_a[1], "sleepy", &from, &until); // 4
    bad += &row(in_a[1], "away", "2022-04-19T08:00:00", &until); // 5
    bad += &row(in_a[1], "away", &until, &from); // 6
    bad += &format!("{},away,{from},{until}\n", in_a[1]); // 7
    bad += &row(in_b, "away", &from, &until); // 8: registered, outside A
    bad += &row(&unregistered, "away", &from, &until); // 9
    let r = app.post_csv("/v1/exemptions/import", &off_a, &bad).await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_exemptions"));
    let want: Vec<(u64, String)> = [
        (3, "invalid_person_id"),
        (4, "invalid_field"),
        (5, "invalid_time"),
        (6, "invalid_window"),
        (7, "wrong_column_count"),
    ]
    .into_iter()
    .map(|(l, c)| (l, c.to_owned()))
    .collect();
    assert_eq!(line_codes(&r), want);
    // Once the lines parse, the residents are judged: outside the area is
    // exactly as unknown as unregistered, and never says where they live.
    let mut bad = header.to_owned();
    bad += &row(in_a[0], "bedridden", &from, &until);
    bad += &row(in_b, "away", &from, &until);
    bad += &row(&unregistered, "away", &from, &until);
    let r = app.post_csv("/v1/exemptions/import", &off_a, &bad).await;
    assert_eq!(r.code(), "invalid_exemptions");
    let lines = line_codes(&r);
    assert_eq!(
        lines,
        [
            (3, "unknown_resident".to_owned()),
            (4, "unknown_resident".to_owned())
        ]
    );
    assert!(!r.text().contains(B), "{}", r.text());
    // The probe for a registered resident outside the area is audited as
    // `denied` (about them, masked); the unregistered one is not.
    let denied = audited(&app, "denied").await;
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(
        denied[0]["target"],
        format!("{}********{}", &in_b[..6], &in_b[14..])
    );
    let listed = app.get("/v1/exemptions", &off_a).await.json();
    assert_eq!(listed["exemptions"], json!([]), "nothing was granted");

    // A good file: created, listed (masked), durable, audited once.
    let mut good = header.to_owned();
    for id in &in_a[..3] {
        good += &row(id, "bedridden", &from, &until);
    }
    let r = app.post_csv("/v1/exemptions/import", &off_a, &good).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let j = r.json();
    assert_eq!(j["created"], 3);
    assert_eq!(j["ids"].as_array().unwrap().len(), 3);
    let app = app.restart().await;
    let r = app.get(&format!("/v1/exemptions?area={A}"), &off_a).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let listed = r.json()["exemptions"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 3);
    for x in &listed {
        assert_eq!(x["reason"], "bedridden");
        assert!(x["area"].as_str().unwrap().starts_with(A));
        assert!(x["name"].as_str().is_some());
        assert!(x["person_id"].as_str().unwrap().contains("********"));
    }
    let ids: Vec<&str> = j["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for x in &listed {
        assert!(ids.contains(&x["id"].as_str().unwrap()));
    }
    // B's official sees none of them; an official may not list outside.
    let (_, off_b) = app.token("official", None, Some(B)).await;
    assert_eq!(
        app.get("/v1/exemptions", &off_b).await.json()["exemptions"],
        json!([])
    );
    let r = app.get(&format!("/v1/exemptions?area={A}"), &off_b).await;
    assert_eq!((r.status, r.code().as_str()), (403, "out_of_scope"));
    let creates = audited(&app, "exemption_create").await;
    assert_eq!(creates.len(), 1);
    assert_eq!(creates[0]["rows"], 3);

    // The same list as a spreadsheet; a bad row is named with its sheet.
    let rows: Vec<Vec<String>> = csv_rows(&good.replace(in_a[2].as_str(), &in_a[2][..17]));
    let r = post_file(
        &app,
        "/v1/exemptions/import",
        ADMIN,
        XLSX,
        xlsx("豁免", &rows),
    )
    .await;
    assert_eq!(r.code(), "invalid_exemptions");
    let l = &r.json()["lines"][0];
    assert_eq!(
        (l["line"].as_u64(), l["code"].as_str(), l["sheet"].as_str()),
        (Some(4), Some("invalid_person_id"), Some("豁免"))
    );
    let r = post_file(
        &app,
        "/v1/exemptions/import",
        ADMIN,
        XLSX,
        xlsx("豁免", &csv_rows(&good)),
    )
    .await;
    assert_eq!(r.json()["created"], 3, "{}", r.text());
    assert_eq!(
        app.get("/v1/exemptions", ADMIN).await.json()["exemptions"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_exemptions_lift_the_flags_of_a_closed_round() {
    let app = no_redis().await;
    let (csv, people) = small_city(1);
    app.register(&csv).await;
    let now = app.now();
    let r = app
        .create_round(
            ADMIN,
            &[A],
            now.plus_millis(-2 * HOUR),
            now.plus_millis(-HOUR),
        )
        .await;
    let rid = r.json()["id"].as_str().unwrap().to_owned();
    app.close_round(ADMIN, &rid).await;
    let (_, gate) = app.token("gate", None, None).await;
    let id = &people[0].0;
    assert_eq!(app.status(&gate, id).await.json()["color"], "yellow");
    let file = format!(
        "person_id,reason,from,until,note\n{id},hospitalized,{},{},\n",
        t(now.plus_millis(-3 * HOUR)),
        t(now.plus_millis(HOUR))
    );
    let r = app.post_csv("/v1/exemptions/import", ADMIN, &file).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(app.status(&gate, id).await.json()["color"], "green");
    let missing = app
        .get(&format!("/v1/rounds/{rid}/missing"), ADMIN)
        .await
        .json();
    assert!(!missing.to_string().contains(&id[14..]), "{missing}");
}

/// Whether `text` holds a run of 18 ID characters (17 digits, then a digit
/// or X), or any run of 11 digits (a phone number).
fn has_id_or_phone(text: &str) -> bool {
    let mut digits = 0;
    for &c in text.as_bytes() {
        if c.is_ascii_digit() {
            digits += 1;
            if digits >= 11 {
                return true;
            }
        } else {
            if digits == 17 && (c == b'X' || c == b'x') {
                return true;
            }
            digits = 0;
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_text_messages_for_the_fixture_city_match_the_json_groups() {
    let app = no_redis().await;
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/chongwen");
    let register = std::fs::read_to_string(fixtures.join("register.csv")).unwrap();
    let heads = std::fs::read_to_string(fixtures.join("heads.csv")).unwrap();
    assert_eq!(app.register(&register).await.status, 200);
    assert_eq!(app.heads(&heads).await.status, 200);
    let now = app.now();
    let r = app
        .post(
            "/v1/rounds",
            ADMIN,
            &json!({"name": "第3轮全员核酸", "scope": [A], "opens_at": t(now.plus_millis(-2 * HOUR)), "deadline": t(now.plus_millis(HOUR))}),
        )
        .await;
    let rid = r.json()["id"].as_str().unwrap().to_owned();
    // Sample every third resident of the community, so households are
    // partly missing.
    let (_, scanner) = app.token("scanner", Some("S01"), None).await;
    let sampled: Vec<serde_json::Value> = register
        .lines()
        .skip(1)
        .filter(|l| l.contains(A))
        .step_by(3)
        .enumerate()
        .map(|(i, l)| {
            let id = l.split(',').next().unwrap();
            json!({"person_id": id, "tube_id": format!("T{:06}", i / 10), "collected_at": t(now.plus_millis(-HOUR))})
        })
        .collect();
    for chunk in sampled.chunks(5000) {
        assert_eq!(app.records(&scanner, json!(chunk)).await.status, 200);
    }
    let (_, off) = app.token("official", None, Some(A)).await;
    let j = app
        .get(&format!("/v1/rounds/{rid}/missing?group_by=head"), &off)
        .await
        .json();
    let r = app
        .get(
            &format!("/v1/rounds/{rid}/missing?group_by=head&format=text"),
            &off,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers["content-type"].to_str().unwrap(),
        "text/plain; charset=utf-8"
    );
    let text = r.text();
    assert!(
        !has_id_or_phone(&text),
        "an ID or phone number in the messages"
    );
    let groups = j["groups"].as_array().unwrap();
    assert!(groups.len() > 10, "{} groups", groups.len());
    let messages: Vec<&str> = text.trim_end().split("\n\n").collect();
    assert_eq!(messages.len(), groups.len());
    let mut total = 0;
    for (m, g) in messages.iter().zip(groups) {
        let mut lines = m.lines();
        let first = lines.next().unwrap();
        assert!(first.starts_with("【第3轮全员核酸】"), "{first}");
        if let Some(h) = g["head"].as_object() {
            let who = format!(
                "{}{}",
                h["title"].as_str().unwrap(),
                h["name"].as_str().unwrap()
            );
            assert!(first.contains(&who), "{first} names {who}");
        }
        assert!(
            m.lines().all(|l| !l.trim().is_empty()),
            "a blank line inside {m}"
        );
        // Household lines, back to (household, name) in list order.
        let from_text: Vec<(String, String)> = lines
            .flat_map(|l| {
                let (household, names) = l.split_once('：').unwrap();
                names
                    .split('、')
                    .map(|n| (household.to_owned(), n.to_owned()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let from_json: Vec<(String, String)> = g["people"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["household"].as_str().unwrap().to_owned(),
                    p["name"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(from_text, from_json);
        total += from_json.len();
    }
    assert_eq!(
        total as u64,
        j["total"].as_u64().unwrap(),
        "every missing person once"
    );
    // The messages are audited like any missing list.
    assert_eq!(audited(&app, "missing_list").await.len(), 2);
    // Grouping is for JSON and text only.
    let r = app
        .get(
            &format!("/v1/rounds/{rid}/missing?group_by=head&format=csv"),
            &off,
        )
        .await;
    assert_eq!(r.code(), "invalid_query");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeat_missers_are_those_still_flagged_in_enough_of_their_last_rounds() {
    let app = spawn_with(Opts {
        redis: false,
        manual_clock: Some(rollcall::engine::clock::Clock::now(
            &rollcall::engine::clock::SystemClock,
        )),
        ..Opts::default()
    })
    .await;
    let clock = app.clock.clone().unwrap();
    let (csv, people) = small_city(2);
    app.register(&csv).await;
    let in_a: Vec<&String> = people
        .iter()
        .filter(|(_, a)| a.starts_with(A))
        .map(|(id, _)| id)
        .collect();
    let (_, scanner) = app.token("scanner", Some("S01"), None).await;
    // Four daily rounds over A. Person k of A is sampled in the first k
    // rounds (k ≥ 4: in every round).
    for round in 0..4usize {
        let opens = app.now();
        let r = app
            .create_round(ADMIN, &[A], opens, opens.plus_millis(8 * HOUR))
            .await;
        let rid = r.json()["id"].as_str().unwrap().to_owned();
        clock.advance_millis(HOUR);
        let records: Vec<serde_json::Value> = in_a
            .iter()
            .enumerate()
            .filter(|(k, _)| *k > round)
            .map(|(k, id)| json!({"person_id": id, "tube_id": format!("R{round}K{k}"), "collected_at": t(app.now())}))
            .collect();
        assert_eq!(app.records(&scanner, json!(records)).await.status, 200);
        clock.advance_millis(7 * HOUR);
        assert_eq!(app.close_round(ADMIN, &rid).await.status, 200);
        clock.advance_millis(16 * HOUR);
    }
    let (_, off_a) = app.token("official", None, Some(A)).await;
    let who = |j: &serde_json::Value| -> Vec<(String, u64, Vec<String>)> {
        j["people"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["person_id"].as_str().unwrap().to_owned(),
                    p["misses"].as_u64().unwrap(),
                    p["round_ids"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| r.as_str().unwrap().to_owned())
                        .collect(),
                )
            })
            .collect()
    };
    let masked = |k: usize| format!("{}********{}", &in_a[k][..6], &in_a[k][14..]);
    let ids = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    // Defaults: last 3, min 2.
    let r = app.get("/v1/repeat-missing", &off_a).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(
        (j["area"].as_str(), j["last"].as_u64(), j["min"].as_u64()),
        (Some(A), Some(3), Some(2))
    );
    assert_eq!(
        who(&j),
        [
            (masked(0), 3, ids(&["2", "3", "4"])),
            (masked(1), 3, ids(&["2", "3", "4"])),
            (masked(2), 2, ids(&["3", "4"])),
        ]
    );
    assert_eq!(j["total"], 3);
    assert!(j["people"][0]["head"].is_null() || j["people"][0]["head"].is_object());
    let j = app
        .get("/v1/repeat-missing?last=4&min=4", &off_a)
        .await
        .json();
    assert_eq!(who(&j), [(masked(0), 4, ids(&["1", "2", "3", "4"]))]);
    let j = app
        .get("/v1/repeat-missing?last=1&min=1", &off_a)
        .await
        .json();
    assert_eq!(j["total"], 4);
    // Unmasked for an admin only; B's official sees nobody of A's rounds.
    let j = app
        .get("/v1/repeat-missing?unmask=true", ADMIN)
        .await
        .json();
    assert_eq!(j["people"][0]["person_id"], in_a[0].as_str());
    assert_eq!(j["area"], serde_json::Value::Null);
    let r = app.get("/v1/repeat-missing?unmask=true", &off_a).await;
    assert_eq!((r.status, r.code().as_str()), (403, "forbidden"));
    let (_, off_b) = app.token("official", None, Some(B)).await;
    assert_eq!(
        app.get("/v1/repeat-missing", &off_b).await.json()["total"],
        0
    );
    let r = app
        .get(&format!("/v1/repeat-missing?area={A}"), &off_b)
        .await;
    assert_eq!((r.status, r.code().as_str()), (403, "out_of_scope"));
    // More misses than rounds looked at: nobody, not an error.
    assert_eq!(
        app.get("/v1/repeat-missing?last=2&min=3", &off_a)
            .await
            .json()["total"],
        0
    );
    for bad in [
        "last=0",
        "min=0",
        "last=1001",
        "last=x",
        "min=-1",
        "format=pdf",
        "sort=name",
    ] {
        let r = app.get(&format!("/v1/repeat-missing?{bad}"), &off_a).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (400, "invalid_query"),
            "{bad}"
        );
    }
    // CSV and XLSX hold the same people, with their misses.
    let r = app.get("/v1/repeat-missing?format=csv", &off_a).await;
    let text = r.text();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(
        rows[0],
        "person_id,name,phone,area,household,head_title,head_name,head_phone,misses,round_ids"
    );
    assert_eq!(rows.len(), 4);
    assert!(
        rows[1].starts_with(&masked(0)) && rows[1].ends_with(",3,2 3 4"),
        "{}",
        rows[1]
    );
    let r = app.get("/v1/repeat-missing?format=xlsx", &off_a).await;
    assert_eq!(r.headers["content-type"].to_str().unwrap(), XLSX);
    let mut wb: calamine::Xlsx<_> =
        calamine::open_workbook_from_rs(std::io::Cursor::new(r.body.clone())).unwrap();
    let range = wb.worksheet_range_at(0).unwrap().unwrap();
    let cells: Vec<Vec<String>> = range
        .rows()
        .map(|r| r.iter().map(ToString::to_string).collect())
        .collect();
    assert_eq!(cells.len(), 4);
    assert_eq!(cells[3][0], masked(2));
    assert_eq!(cells[3][8], "2");
    // Every call is audited as a list of people.
    assert_eq!(
        audited(&app, "missing_list").await.len(),
        8,
        "one per list answered"
    );
}
