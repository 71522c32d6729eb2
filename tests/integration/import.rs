//! `rollcall import`: the real binary on a real data directory.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rollcall::engine::clock::SystemClock;
use rollcall::engine::{Engine, Policy, SharedEngine};
use rollcall::store::{DB_FILE, Store};

use crate::helpers::{ADMIN, damage_audit, fill_audit};

fn import(what: &str, file: &Path, data: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .args(["import", what])
        .arg(file)
        .arg("--data")
        .arg(data)
        .output()
        .expect("running rollcall import")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The store in `data`, opened as the server does.
fn open_store(data: &Path) -> (Store, SharedEngine) {
    let engine = Arc::new(parking_lot::RwLock::new(Engine::new(
        Policy::default(),
        Engine::build_pool(1),
    )));
    let store = Store::open(data, engine.clone(), Arc::new(SystemClock), Arc::new(|_| 0))
        .expect("the store opens");
    (store, engine)
}

/// (residents, heads) in the store.
fn held(data: &Path) -> (u64, u64) {
    let (store, engine) = open_store(data);
    drop(store);
    let e = engine.read();
    (e.resident_count(), e.register().heads_count())
}

#[test]
fn import_loads_the_fixture_city_and_a_bad_file_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/chongwen");

    let out = import("register", &fixtures.join("register.csv"), &data);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "residents: 56717 (inserted 56717, updated 0, unchanged 0)"
    );
    let out = import("heads", &fixtures.join("heads.csv"), &data);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (residents, heads) = held(&data);
    assert_eq!(residents, 56_717);
    assert!(heads > 0);

    // The same file again: nothing new.
    let out = import("register", &fixtures.join("register.csv"), &data);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "residents: 56717 (inserted 0, updated 0, unchanged 56717)"
    );

    // A file with a bad line: refused whole, with the line and the contract's
    // code, and the store keeps exactly what it had.
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "person_id,name,phone,area,household\n\
         610802193703098782,张嘉艳,13269988596,崇文路街道/新社区,新1号-101\n\
         610802193703098783,赵六,13800000001,崇文路街道/新社区,新1号-102\n",
    )
    .unwrap();
    let out = import("register", &bad, &data);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("line 3: invalid_person_id"), "{err}");
    assert!(err.contains("nothing was imported"), "{err}");
    assert_eq!(held(&data), (residents, heads));

    // A file that is not there: a clear error, no store touched.
    let out = import("register", &dir.path().join("missing.csv"), &data);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("missing.csv"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(held(&data), (residents, heads));
}

/// Damage only the integrity check sees (the replay does not read the audit
/// table): `import` refuses before writing, `serve` comes up from the
/// replay, then stops with the check's message; the file is never written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_and_serve_refuse_a_store_that_fails_its_integrity_check() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/chongwen");
    let out = import("register", &fixtures.join("register.csv"), &data);
    assert!(out.status.success(), "{}", text(&out.stderr));
    {
        let (store, _) = open_store(&data);
        fill_audit(&store).await;
        store.close().await;
    }
    let bytes = damage_audit(&data);
    let refused = |out: Output| {
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(err.contains("integrity check"), "{err}");
        assert_eq!(std::fs::read(data.join(DB_FILE)).unwrap(), bytes);
    };

    refused(import("heads", &fixtures.join("heads.csv"), &data));

    // A server that kept serving would never exit: wait a while, then fail.
    let mut serve = Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .env("ROLLCALL_ADMIN_TOKEN", ADMIN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running rollcall serve");
    let deadline = Instant::now() + Duration::from_mins(1);
    while serve.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            serve.kill().unwrap();
            panic!("rollcall serve kept running on a store that failed its check");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    refused(serve.wait_with_output().unwrap());
}

/// A workbook of one sheet from CSV text: every cell a string except the
/// phone column, written as a number (as a spreadsheet user's would be).
fn workbook(csv: &str, phone_col: usize) -> Vec<u8> {
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    ws.set_name("名册").unwrap();
    for (r, line) in csv.lines().enumerate() {
        for (c, cell) in line.split(',').enumerate() {
            let (row, col) = (r as u32, c as u16);
            match cell.parse::<f64>() {
                Ok(n) if r > 0 && c == phone_col => ws.write_number(row, col, n).unwrap(),
                _ => ws.write_string(row, col, cell).unwrap(),
            };
        }
    }
    wb.save_to_buffer().unwrap()
}

#[test]
fn import_takes_a_spreadsheet_and_names_the_sheet_and_row_of_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let (from_csv, from_xlsx) = (dir.path().join("a"), dir.path().join("b"));
    let csv = "person_id,name,phone,area,household\n\
               610802193703098782,张嘉艳,13269988596,崇文路街道/新社区,新1号-101\n\
               11010519491231002X,赵六,13800000001,崇文路街道/新社区,新1号-102\n";
    let csv_file = dir.path().join("register.csv");
    std::fs::write(&csv_file, csv).unwrap();
    let xlsx_file = dir.path().join("register.XLSX");
    std::fs::write(&xlsx_file, workbook(csv, 2)).unwrap();
    let a = import("register", &csv_file, &from_csv);
    let b = import("register", &xlsx_file, &from_xlsx);
    assert!(b.status.success(), "{}", text(&b.stderr));
    assert_eq!(text(&a.stdout), text(&b.stdout));
    let view = |data: &Path| {
        let (store, engine) = open_store(data);
        drop(store);
        let e = engine.read();
        let id = "610802193703098782".parse().unwrap();
        e.resident_view(id)
            .map(|v| (v.name, v.phone, v.area, v.household))
    };
    assert_eq!(view(&from_csv), view(&from_xlsx));
    assert_eq!(view(&from_xlsx).unwrap().1, "13269988596");

    let bad = dir.path().join("bad.xlsx");
    std::fs::write(&bad, workbook(&csv.replace("002X", "0021"), 2)).unwrap();
    let out = import("register", &bad, &from_xlsx);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("sheet \"名册\" row 3: invalid_person_id"),
        "{err}"
    );
}
