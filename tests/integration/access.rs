//! Who may learn what (issue 14, items 3, 6, 7 and 8): an official never
//! learns where a resident outside their area lives and is audited when
//! refused; the bootstrap admin token follows `ROLLCALL_ADMIN_TOKEN`; tokens
//! are listed without secrets; an official's round counts stop at their
//! area; audit entries name their target.

use std::process::Command;

use serde_json::{Value, json};

use crate::helpers::*;
use rollcall::domain::Timestamp;

const HOUR: i64 = 3_600_000;
const A: &str = "崇文路街道/学院社区";
const B: &str = "崇文路街道/南苑社区";
const GRID: &str = "崇文路街道/学院社区/第01网格";
const NEW_ADMIN: &str = "a-second-bootstrap-admin-token-0123456789";

fn t(ts: Timestamp) -> String {
    ts.to_rfc3339()
}

fn mask(id: &str) -> String {
    format!("{}********{}", &id[..6], &id[14..])
}

async fn audit(app: &TestApp) -> Vec<Value> {
    let r = app.get("/v1/audit", ADMIN).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["entries"].as_array().unwrap().clone()
}

/// Starts on `data` (a new directory without it) with `admin` as
/// `ROLLCALL_ADMIN_TOKEN`.
async fn start(data: Option<tempfile::TempDir>, admin: Option<&str>) -> TestApp {
    let data = data.unwrap_or_else(|| tempfile::tempdir().unwrap());
    start_with_admin(data, admin)
        .await
        .map_err(|(_, e)| e)
        .expect("server starts")
}

/// Stops `app` and gives back its data directory.
async fn stopped(mut app: TestApp) -> tempfile::TempDir {
    app.stop().await;
    app.data
}

/// The admin token generated at this start, if any.
fn generated(app: &TestApp) -> Option<String> {
    app.running.as_ref().unwrap().generated_admin_token.clone()
}

fn with_action<'a>(entries: &'a [Value], action: &str) -> Vec<&'a Value> {
    entries.iter().filter(|e| e["action"] == action).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_official_is_told_nothing_of_residents_outside_their_area_and_is_audited() {
    let app = spawn_with(Opts {
        redis: false,
        ..Opts::default()
    })
    .await;
    let (csv, people) = small_city(2);
    app.register(&csv).await;
    let now = app.now();
    let (_, off_a) = app.token("official", None, Some(A)).await;
    let pid_b = &people.iter().find(|(_, a)| a.starts_with(B)).unwrap().0;
    let nobody = pid("19900101", 999);
    let exemption = |p: &str| json!({"person_id": p, "reason": "away", "from": t(now), "until": t(now.plus_millis(HOUR))});

    // A registered resident outside the area and an unregistered ID get the
    // same answer, which names no area.
    let outside = app.get(&format!("/v1/residents/{pid_b}"), &off_a).await;
    let unknown = app.get(&format!("/v1/residents/{nobody}"), &off_a).await;
    for r in [&outside, &unknown] {
        assert_eq!((r.status, r.code().as_str()), (404, "unknown_resident"));
    }
    assert_eq!(outside.json(), unknown.json());
    let created = app.post("/v1/exemptions", &off_a, &exemption(pid_b)).await;
    let not_registered = app
        .post("/v1/exemptions", &off_a, &exemption(&nobody))
        .await;
    for r in [&created, &not_registered] {
        assert_eq!((r.status, r.code().as_str()), (404, "unknown_resident"));
    }
    assert_eq!(created.json(), not_registered.json());
    let r = app.post("/v1/exemptions", ADMIN, &exemption(pid_b)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let ex_b = r.json()["id"].as_str().unwrap().to_owned();
    let deleted = app.delete(&format!("/v1/exemptions/{ex_b}"), &off_a).await;
    let missing = app.delete("/v1/exemptions/9999", &off_a).await;
    for r in [&deleted, &missing] {
        assert_eq!((r.status, r.code().as_str()), (404, "unknown_exemption"));
    }
    assert_eq!(deleted.json(), missing.json());
    for r in [&outside, &created, &deleted] {
        let text = r.text();
        assert!(
            !text.contains("南苑") && !text.contains("网格") && !text.contains("楼"),
            "an error names an area: {text}"
        );
    }
    // Nothing was changed: the admin's exemption still stands.
    assert_eq!(
        app.delete(&format!("/v1/exemptions/{ex_b}"), ADMIN)
            .await
            .status,
        204
    );

    // Each of the three refusals about a registered resident is audited as
    // `denied` with the masked ID; the unregistered ID is not.
    let entries = audit(&app).await;
    let denied = with_action(&entries, "denied");
    assert_eq!(denied.len(), 3, "{denied:?}");
    for e in &denied {
        assert_eq!(e["target"], mask(pid_b));
        assert_eq!(e["role"], "official");
        assert_eq!(
            e["area"],
            Value::Null,
            "the audit does not record where they live"
        );
    }
    assert!(!entries.iter().any(|e| e["target"] == mask(&nobody)));

    // A 403 out_of_scope answered to an official is audited too, with the
    // area asked for; an admin's 404 is not a denial.
    let rid = app
        .create_round(ADMIN, &[B], now.plus_millis(-HOUR), now.plus_millis(HOUR))
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .get(&format!("/v1/rounds/{rid}/coverage?area={B}"), &off_a)
        .await;
    assert_eq!((r.status, r.code().as_str()), (403, "out_of_scope"));
    let r = app.get(&format!("/v1/rounds/{rid}"), &off_a).await;
    assert_eq!((r.status, r.code().as_str()), (403, "out_of_scope"));
    assert_eq!(
        app.get(&format!("/v1/residents/{nobody}"), ADMIN)
            .await
            .code(),
        "unknown_resident"
    );
    let entries = audit(&app).await;
    let denied = with_action(&entries, "denied");
    assert_eq!(denied.len(), 5, "{denied:?}");
    assert_eq!(denied[3]["area"], B);
    assert_eq!(denied[3]["target"], Value::Null);
    assert_eq!(denied[4]["round_id"], rid.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_listed_without_secrets_and_a_second_revoke_is_unknown_and_unaudited() {
    let app = spawn_with(Opts {
        redis: false,
        ..Opts::default()
    })
    .await;
    let (id, secret) = app.token("scanner", Some("S01"), None).await;
    let (_, official) = app.token("official", None, Some(A)).await;
    assert_eq!(app.get("/v1/tokens", &official).await.code(), "forbidden");

    let r = app.get("/v1/tokens", ADMIN).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!r.text().contains(&secret) && !r.text().contains(ADMIN));
    let tokens = r.json()["tokens"].as_array().unwrap().clone();
    assert_eq!(tokens.len(), 3);
    let boot = &tokens[0];
    assert_eq!(boot["role"], "admin");
    assert_eq!(boot["bootstrap"], true);
    let mine = tokens.iter().find(|t| t["id"] == id.as_str()).unwrap();
    let keys: Vec<&str> = mine
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys.len(),
        8,
        "exactly id, role, name, site, area, created_at, revoked_at, bootstrap: {keys:?}"
    );
    assert_eq!(mine["role"], "scanner");
    assert_eq!(mine["site"], "S01");
    assert_eq!(mine["area"], Value::Null);
    assert_eq!(mine["revoked_at"], Value::Null);
    assert_eq!(mine["bootstrap"], false);
    assert!(mine["created_at"].as_str().unwrap().ends_with("+08:00"));
    assert_eq!(tokens[2]["area"], A);

    assert_eq!(
        app.delete(&format!("/v1/tokens/{id}"), ADMIN).await.status,
        204
    );
    let r = app.delete(&format!("/v1/tokens/{id}"), ADMIN).await;
    assert_eq!((r.status, r.code().as_str()), (404, "unknown_token"));
    let listed = app.get("/v1/tokens", ADMIN).await.json();
    let mine = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .unwrap()
        .clone();
    assert!(mine["revoked_at"].as_str().is_some(), "{mine}");

    let entries = audit(&app).await;
    let revokes = with_action(&entries, "token_revoke");
    assert_eq!(revokes.len(), 1, "{revokes:?}");
    assert_eq!(revokes[0]["target"], format!("token {id} scanner S01"));

    // Two revokes racing: one wins, one is unknown, one entry.
    let (id2, _) = app.token("gate", None, None).await;
    let path = format!("/v1/tokens/{id2}");
    let (a, b) = tokio::join!(app.delete(&path, ADMIN), app.delete(&path, ADMIN));
    let mut statuses = [a.status, b.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [204, 404]);
    let entries = audit(&app).await;
    assert_eq!(with_action(&entries, "token_revoke").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_admin_token_value_replaces_the_bootstrap_admin_and_a_revoked_one_refuses_to_start() {
    let app = start(None, Some(ADMIN)).await;
    let (scanner_id, _) = app.token("scanner", Some("S01"), None).await;
    let data = stopped(app).await;

    // A different value: the old one stops working, the new one works.
    let app = start(Some(data), Some(NEW_ADMIN)).await;
    assert_eq!(generated(&app), None);
    assert_eq!(app.get("/v1/tokens", ADMIN).await.code(), "unauthorized");
    let r = app.get("/v1/tokens", NEW_ADMIN).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let tokens = r.json()["tokens"].as_array().unwrap().clone();
    let boot: Vec<&Value> = tokens.iter().filter(|t| t["bootstrap"] == true).collect();
    assert_eq!(boot.len(), 2);
    assert!(boot[0]["revoked_at"].is_string(), "the old one is revoked");
    assert_eq!(boot[1]["revoked_at"], Value::Null);
    let (old_id, new_id) = (
        boot[0]["id"].as_str().unwrap().to_owned(),
        boot[1]["id"].as_str().unwrap().to_owned(),
    );
    let entries = app.get("/v1/audit", NEW_ADMIN).await.json()["entries"]
        .as_array()
        .unwrap()
        .clone();
    let revoke = with_action(&entries, "token_revoke");
    assert_eq!(revoke.len(), 1);
    assert_eq!(revoke[0]["target"], format!("token {old_id} admin"));
    let create = with_action(&entries, "token_create");
    assert_eq!(
        create.last().unwrap()["target"],
        format!("token {new_id} admin")
    );
    assert_eq!(
        revoke[0]["token_name"],
        create.last().unwrap()["token_name"]
    );
    // Other tokens are untouched.
    assert!(
        tokens
            .iter()
            .any(|t| t["id"] == scanner_id.as_str() && t["revoked_at"].is_null())
    );
    let data = stopped(app).await;

    // The revoked value refuses to start, saying so, and changes nothing.
    let Err((data, e)) = start_with_admin(data, Some(ADMIN)).await else {
        panic!("started with a revoked admin token");
    };
    let msg = format!("{e:#}");
    assert!(
        msg.contains("revoked") && msg.contains("ROLLCALL_ADMIN_TOKEN"),
        "{msg}"
    );
    assert!(
        !msg.contains(ADMIN),
        "the message repeats the secret: {msg}"
    );

    // The current value again, and no value at all: nothing changes.
    let app = start(Some(data), Some(NEW_ADMIN)).await;
    let data = stopped(app).await;
    let app = start(Some(data), None).await;
    assert_eq!(generated(&app), None);
    let entries = app.get("/v1/audit", NEW_ADMIN).await.json()["entries"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(with_action(&entries, "token_revoke").len(), 1);
    assert_eq!(with_action(&entries, "token_create").len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_admin_token_one_is_generated_once() {
    let app = start(None, None).await;
    let token = generated(&app).expect("an admin token is generated");
    let r = app.get("/v1/tokens", &token).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["tokens"][0]["bootstrap"], true);
    let data = stopped(app).await;
    let app = start(Some(data), None).await;
    assert_eq!(generated(&app), None);
    assert_eq!(app.get("/v1/tokens", &token).await.status, 200);
}

/// `rollcall serve` as an operator runs it.
fn serve(data: &std::path::Path, admin: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rollcall"));
    c.args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .env_remove("ROLLCALL_ADMIN_TOKEN_FILE")
        .env_remove("ROLLCALL_CACHE_KEY")
        .env_remove("ROLLCALL_CACHE_KEY_FILE")
        .env("ROLLCALL_ADMIN_TOKEN", admin);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_refuses_a_revoked_admin_token_and_takes_no_secret_flags() {
    let help = Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success() && text.contains("--data"), "{text}");
    assert!(
        !text.contains("--admin-token") && !text.contains("--cache-key"),
        "{text}"
    );
    let flag = serve(std::path::Path::new("/nonexistent"), ADMIN)
        .args(["--admin-token", ADMIN])
        .output()
        .unwrap();
    assert!(!flag.status.success());

    // Revoke the bootstrap admin through the API, then start the binary
    // with the same value.
    let mut app = start(None, Some(ADMIN)).await;
    let (_, other_admin) = app.token("admin", None, None).await;
    let boot = app.get("/v1/tokens", ADMIN).await.json()["tokens"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.delete(&format!("/v1/tokens/{boot}"), &other_admin)
            .await
            .status,
        204
    );
    app.stop().await;
    let out = serve(app.data.path(), ADMIN).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with a revoked token: {err}");
    assert!(err.contains("revoked"), "{err}");
    assert!(!err.contains(ADMIN), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_officials_round_counts_stop_at_their_area() {
    let app = spawn_with(Opts {
        redis: false,
        ..Opts::default()
    })
    .await;
    let (csv, people) = small_city(3);
    app.register(&csv).await;
    let now = app.now();
    let (_, grid_official) = app.token("official", None, Some(GRID)).await;
    let (_, community_official) = app.token("official", None, Some(A)).await;
    let community = app
        .create_round(ADMIN, &[A], now.plus_millis(-HOUR), now.plus_millis(HOUR))
        .await
        .json();
    let rid = community["id"].as_str().unwrap().to_owned();
    let grid_round = app
        .create_round(
            ADMIN,
            &[GRID],
            now.plus_millis(-HOUR),
            now.plus_millis(HOUR),
        )
        .await
        .json();
    let (_, scanner) = app.token("scanner", Some("S01"), None).await;
    // Sample one in the grid and one elsewhere in the community.
    let in_grid: Vec<&String> = people
        .iter()
        .filter(|(_, a)| a.starts_with(GRID))
        .map(|(p, _)| p)
        .collect();
    let elsewhere = people
        .iter()
        .find(|(_, a)| a.starts_with(A) && !a.starts_with(GRID))
        .unwrap();
    let r = app
        .records(
            &scanner,
            json!([
                {"person_id": in_grid[0], "tube_id": "T1", "collected_at": t(now)},
                {"person_id": elsewhere.0, "tube_id": "T2", "collected_at": t(now)},
            ]),
        )
        .await;
    assert_eq!(r.json()["accepted"], 2);

    let check = |round: Value, coverage: Value, whole: u64| {
        let c = &round["counts"];
        for k in [
            "in_scope", "sampled", "late", "made_up", "exempt", "missing",
        ] {
            assert_eq!(c[k], coverage[k], "{k}: {round} vs {coverage}");
        }
        assert!(c["in_scope"].as_u64().unwrap() < whole);
    };
    for closed in [false, true] {
        if closed {
            assert_eq!(app.close_round(ADMIN, &rid).await.status, 200);
        }
        let whole = app.get(&format!("/v1/rounds/{rid}"), ADMIN).await.json()["counts"]["in_scope"]
            .as_u64()
            .unwrap();
        assert_eq!(whole, 12);
        let cov = app
            .get(
                &format!("/v1/rounds/{rid}/coverage?area={GRID}&depth=0"),
                &grid_official,
            )
            .await
            .json();
        assert_eq!(cov["in_scope"], 6);
        assert_eq!(cov["sampled"], 1);
        let got = app.get(&format!("/v1/rounds/{rid}"), &grid_official).await;
        assert_eq!(got.status, 200, "{}", got.text());
        check(got.json(), cov.clone(), whole);
        let listed = app.get("/v1/rounds", &grid_official).await.json();
        let rounds = listed["rounds"].as_array().unwrap();
        assert_eq!(rounds.len(), 2);
        let mine = rounds.iter().find(|r| r["id"] == rid.as_str()).unwrap();
        check(mine.clone(), cov, whole);
    }
    // A round inside the official's area shows its whole counts; the grid
    // official may read but not close the community round.
    let gid = grid_round["id"].as_str().unwrap();
    let r = app
        .get(&format!("/v1/rounds/{gid}"), &community_official)
        .await;
    let whole = app.get(&format!("/v1/rounds/{gid}"), ADMIN).await.json();
    assert_eq!(r.json()["counts"], whole["counts"]);
    assert_eq!(whole["counts"]["sampled"], 1);
    let r = app.close_round(&grid_official, &rid).await;
    assert_eq!((r.status, r.code().as_str()), (403, "out_of_scope"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_entries_name_their_target() {
    let app = spawn_with(Opts {
        redis: false,
        ..Opts::default()
    })
    .await;
    let (csv, people) = small_city(1);
    app.register(&csv).await;
    let now = app.now();
    let p = &people[0].0;
    let (sid, _) = app.token("scanner", Some("S07"), None).await;
    let (oid, official) = app.token("official", None, Some(A)).await;
    app.get(&format!("/v1/residents/{p}"), &official).await;
    let r = app
        .post(
            "/v1/exemptions",
            &official,
            &json!({"person_id": p, "reason": "infant", "from": t(now), "until": t(now.plus_millis(HOUR))}),
        )
        .await;
    let ex = r.json()["id"].as_str().unwrap().to_owned();
    app.delete(&format!("/v1/exemptions/{ex}"), &official).await;
    app.post(&format!("/v1/residents/{p}/clear"), ADMIN, &json!({}))
        .await;
    app.delete(&format!("/v1/residents/{p}"), ADMIN).await;
    app.delete(&format!("/v1/tokens/{sid}"), ADMIN).await;
    app.create_round(ADMIN, &[A], now.plus_millis(-HOUR), now.plus_millis(HOUR))
        .await;

    let entries = audit(&app).await;
    let target = |action: &str| -> Vec<Value> {
        with_action(&entries, action)
            .into_iter()
            .map(|e| e["target"].clone())
            .collect()
    };
    assert_eq!(
        target("token_create")[1..],
        [
            json!(format!("token {sid} scanner S07")),
            json!(format!("token {oid} official {A}"))
        ]
    );
    assert_eq!(
        target("token_revoke"),
        [json!(format!("token {sid} scanner S07"))]
    );
    for action in ["resident_view", "clear", "resident_delete"] {
        assert_eq!(target(action), [json!(mask(p))], "{action}");
    }
    assert_eq!(target("exemption_create"), [json!(ex)]);
    assert_eq!(target("exemption_delete"), [json!(ex)]);
    assert_eq!(target("round_create"), [Value::Null]);
    assert_eq!(target("register_import"), [Value::Null]);
    assert!(
        entries
            .iter()
            .all(|e| e.as_object().unwrap().contains_key("target"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_leaves_one_live_bootstrap_admin_revoking_strays_of_older_versions() {
    // Older versions created a new admin at each new value and kept the old
    // one working; the migration marks them all bootstrap. Make such a
    // stray, then restart with the current value.
    let app = start(None, Some(ADMIN)).await;
    let state = &app.running.as_ref().unwrap().state;
    let stray = state
        .store
        .create_token(rollcall::store::NewToken {
            hash: state.tokens.hash(NEW_ADMIN),
            role: rollcall::domain::Role::Admin,
            name: "bootstrap admin".into(),
            site: None,
            area: None,
            bootstrap: true,
        })
        .await
        .unwrap();
    let app = start(Some(stopped(app).await), Some(ADMIN)).await;
    assert_eq!(
        app.get("/v1/tokens", NEW_ADMIN).await.code(),
        "unauthorized"
    );
    let r = app.get("/v1/tokens", ADMIN).await;
    let tokens = r.json()["tokens"].as_array().unwrap().clone();
    let live: Vec<&Value> = tokens
        .iter()
        .filter(|t| t["bootstrap"] == true && t["revoked_at"].is_null())
        .collect();
    assert_eq!(live.len(), 1);
    assert_ne!(live[0]["id"], stray.id.as_str());
    let entries = audit(&app).await;
    let revokes = with_action(&entries, "token_revoke");
    assert_eq!(revokes.len(), 1);
    assert_eq!(revokes[0]["target"], format!("token {} admin", stray.id));
}
