//! Snapshots and retention against real SQLite files and snapshot files:
//! a snapshot plus the log after it is the whole log (digest equality) with
//! open, closed and archived rounds, pending results, open exemptions and
//! late uploads; a corrupt, torn or half-written snapshot is skipped and
//! nothing is lost; the purge deletes only rows a kept snapshot holds; an
//! archived round answers over HTTP as before and its progress is `410`.

use std::path::Path;
use std::sync::Arc;

use parking_lot::RwLock;
use serde_json::{Value, json};

use rollcall::domain::{AreaPath, ExemptionReason, TestResult, Timestamp};
use rollcall::engine::clock::{Clock, ManualClock};
use rollcall::engine::{Command, Engine, Policy, Prepared, SharedEngine};
use rollcall::store::{AuditEntry, DB_FILE, SnapshotInfo, Store, StoreOptions};

use crate::helpers::{ADMIN, Opts, TestApp, spawn_with};
use crate::store::{
    counting_cache, drive_a_campaign, now0, pid, record, remove_snapshots, resident, result,
};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn open_with(
    dir: &Path,
    clock: &Arc<ManualClock>,
    policy: Policy,
    options: StoreOptions,
) -> (Store, SharedEngine) {
    let engine: SharedEngine = Arc::new(RwLock::new(Engine::new(policy, Engine::build_pool(2))));
    let (cache, _) = counting_cache();
    let clock: Arc<dyn Clock> = clock.clone();
    let store =
        Store::open_with(dir, engine.clone(), clock, cache, options).expect("open the store");
    (store, engine)
}

fn snapshots(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rcsnap"))
        .collect();
    v.sort();
    v
}

/// Records in the log: a row each in `records` (written before schema
/// version 3), `count` each batch of `record_batches`.
const RECORDS_LOGGED: &str = "SELECT (SELECT count(*) FROM records)
    + (SELECT coalesce(sum(count), 0) FROM record_batches)";

fn count(dir: &Path, sql: &str) -> i64 {
    let c = rusqlite::Connection::open(dir.join(DB_FILE)).unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_plus_the_log_after_it_answers_as_the_whole_log() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(now0());
    // Archived a day after the close: round 1 ends archived, round 2 closed,
    // round 3 open.
    let policy = Policy {
        retention_days: 1,
        ..Policy::default()
    };
    let (store, engine) = open_with(dir.path(), &clock, policy, StoreOptions::default());
    drive_a_campaign(&store, &clock).await;
    let first = store.snapshot().await.unwrap();
    assert!(first.seq > 0 && first.bytes > 0);
    assert_eq!(first.purged_rows, 0);

    let scope = vec![AreaPath::parse("崇文路街道").unwrap()];
    let mut round_ids = Vec::new();
    for (opens, deadline) in [
        (0, 12 * HOUR),
        (26 * HOUR, 38 * HOUR),
        (36 * HOUR, 60 * HOUR),
    ] {
        let out = store
            .command(Command::RoundCreate {
                name: "第4轮".into(),
                scope: scope.clone(),
                opens_at: clock.now().plus_millis(opens),
                deadline: clock.now().plus_millis(deadline),
            })
            .await
            .unwrap();
        let Prepared::RoundId(id) = out.prepared else {
            panic!("a round id")
        };
        round_ids.push(id);
    }
    // Mid-round records, a tube still waiting for its result, an open
    // exemption, then round 2's close and a late upload for it.
    let t = clock.now();
    store
        .records(
            (0..40)
                .map(|p| record(p, 700 + p / 5, t.plus_millis(HOUR)))
                .collect(),
        )
        .await
        .unwrap();
    store
        .results(vec![result(
            700,
            TestResult::Negative,
            t.plus_millis(2 * HOUR),
        )])
        .await
        .unwrap();
    store
        .command(Command::ExemptionCreate {
            person_id: pid(60),
            reason: ExemptionReason::Infant,
            from: t,
            until: t.plus_millis(30 * DAY),
            note: String::new(),
        })
        .await
        .unwrap();
    clock.advance_millis(13 * HOUR);
    store
        .command(Command::RoundClose {
            id: round_ids[0],
            at: None,
        })
        .await
        .unwrap();
    store
        .records(vec![record(90, 800, t.plus_millis(3 * HOUR))])
        .await
        .unwrap();
    // A day on: the first two rounds are archived; the third closes early.
    clock.advance_millis(DAY);
    store
        .records(vec![record(91, 801, clock.now())])
        .await
        .unwrap();
    store
        .command(Command::RoundClose {
            id: round_ids[1],
            at: None,
        })
        .await
        .unwrap();
    let now = clock.now();
    let states: Vec<&str> = {
        let e = engine.read();
        e.rounds().iter().map(|r| e.round_state(r, now)).collect()
    };
    assert_eq!(states, ["archived", "archived", "closed", "open"]);
    let live = engine.read().digest(now);
    let live_bytes = engine.read().encode_snapshot();
    drop(store);
    drop(engine);
    let files = snapshots(dir.path());
    assert_eq!(files.len(), 2, "the shutdown wrote the second snapshot");

    // The newest snapshot: nothing to replay.
    let (store, engine) = open_with(dir.path(), &clock, policy, StoreOptions::default());
    assert_eq!(engine.read().digest(now), live);
    assert_eq!(engine.read().encode_snapshot(), live_bytes);
    assert_eq!(store.replay_stats().events, 0);
    drop(store);
    drop(engine);

    // The newest one damaged: skipped, the one before it and the log after it.
    let newest = files[1].clone();
    let good = std::fs::read(&newest).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 1;
    std::fs::write(&newest, &bad).unwrap();
    let (store, engine) = open_with(dir.path(), &clock, policy, StoreOptions::default());
    assert_eq!(store.replay_stats().snapshot_seq, first.seq);
    assert!(store.replay_stats().events > 0);
    assert_eq!(engine.read().digest(now), live);
    assert_eq!(engine.read().encode_snapshot(), live_bytes);
    drop(store);
    drop(engine);

    // A crash while writing one: a half-written temporary file, and a torn
    // file under a newer name. Both ignored (the temporary removed).
    let tmp = dir.path().join("snapshot-00000000000099999999.rcsnap.tmp");
    std::fs::write(&tmp, &good[..good.len() / 3]).unwrap();
    let torn = dir.path().join("snapshot-00000000000099999998.rcsnap");
    std::fs::write(&torn, &good[..good.len() - 7]).unwrap();
    let (store, engine) = open_with(dir.path(), &clock, policy, StoreOptions::default());
    assert!(!tmp.exists(), "the half-written snapshot is removed");
    assert_eq!(engine.read().digest(now), live);
    drop(store);
    drop(engine);
    std::fs::remove_file(&torn).unwrap();

    // No snapshot at all: the whole log (nothing was purged) gives the same.
    remove_snapshots(dir.path());
    let (store, engine) = open_with(dir.path(), &clock, policy, StoreOptions::default());
    assert_eq!(store.replay_stats().snapshot_seq, 0);
    assert_eq!(engine.read().digest(now), live);
    assert_eq!(engine.read().encode_snapshot(), live_bytes);
}

/// People `from..from + 100`, each in a tube of their own, sampled at `at`.
fn batch(from: u64, at: Timestamp) -> Vec<rollcall::engine::RecordItem> {
    (from..from + 100).map(|p| record(p, p, at)).collect()
}

/// Retention's story, on either store: 300 residents, 100 records and an
/// audit entry, a snapshot; 31 days on, 100 more records, a snapshot (the
/// first batch is then past the window and held by the older of two
/// snapshots; the second by no snapshot yet); 100 more. Returns the two
/// snapshots, having checked the first purged nothing and the second one
/// audit entry.
pub(crate) async fn two_snapshots_a_month_apart(
    store: &Store,
    clock: &ManualClock,
) -> (SnapshotInfo, SnapshotInfo) {
    store
        .command(Command::Register((0..300).map(resident).collect()))
        .await
        .unwrap();
    store.records(batch(0, now0())).await.unwrap();
    store
        .audit(AuditEntry {
            at: now0(),
            token_name: "admin".into(),
            role: rollcall::domain::Role::Admin,
            action: rollcall::domain::AuditAction::MissingList,
            area: None,
            round_id: None,
            rows: Some(1),
            target: None,
        })
        .await
        .unwrap();
    let s1 = store.snapshot().await.unwrap();
    assert_eq!(s1.purged_rows, 0, "one snapshot is not enough to purge");
    clock.advance_millis(31 * DAY);
    store.records(batch(100, clock.now())).await.unwrap();
    let s2 = store.snapshot().await.unwrap();
    assert_eq!(s2.purged_audit, 1);
    store.records(batch(200, clock.now())).await.unwrap();
    (s1, s2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_purges_only_rows_a_kept_snapshot_holds_and_audits_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(now0());
    let options = StoreOptions {
        audit_retention_days: 30,
        ..StoreOptions::default()
    };
    let (store, engine) = open_with(dir.path(), &clock, Policy::default(), options);
    let (s1, s2) = two_snapshots_a_month_apart(&store, &clock).await;
    assert_eq!(s2.purged_rows, 100);
    assert_eq!(count(dir.path(), RECORDS_LOGGED), 200);
    assert_eq!(
        count(
            dir.path(),
            &format!(
                "SELECT count(*) FROM record_batches WHERE seq <= {}",
                s1.seq
            )
        ),
        0
    );
    let audit = store.audit_since(None).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(
        audit[0].action,
        rollcall::domain::AuditAction::RetentionPurge
    );
    assert_eq!(audit[0].rows, Some(100));
    let now = clock.now();
    let live = engine.read().digest(now);
    drop(store);
    drop(engine);

    // The newest snapshot damaged: the older one and the log after it still
    // hold everything (the purge kept every row after the older one).
    let files = snapshots(dir.path());
    assert_eq!(files.len(), 2);
    std::fs::write(&files[1], b"not a snapshot").unwrap();
    let (store, engine) = open_with(dir.path(), &clock, Policy::default(), options);
    assert_eq!(store.replay_stats().snapshot_seq, s2.seq);
    assert_eq!(engine.read().digest(now), live);
    assert_eq!(engine.read().record_count(), 200);
    // Another month: now the second batch goes too.
    clock.advance_millis(31 * DAY);
    store.records(batch(0, clock.now())).await.unwrap();
    let s3 = store.snapshot().await.unwrap();
    assert_eq!(s3.purged_rows, 200);
    assert_eq!(count(dir.path(), RECORDS_LOGGED), 100);
}

/// A round's counts, missing list, coverage, its people's statuses (without
/// `valid_until`) and its state, over HTTP.
async fn views(app: &TestApp, id: &str) -> (Value, Value, Value, Vec<Value>, Value) {
    let round = app.get(&format!("/v1/rounds/{id}"), ADMIN).await.json();
    let missing = app
        .get(&format!("/v1/rounds/{id}/missing"), ADMIN)
        .await
        .json();
    let coverage = app
        .get(&format!("/v1/rounds/{id}/coverage?depth=3"), ADMIN)
        .await
        .json();
    let mut statuses = Vec::new();
    for n in 0..6 {
        let mut s = app.status(ADMIN, &pid(n).to_string()).await.json();
        s.as_object_mut().map(|o| o.remove("valid_until"));
        statuses.push(s);
    }
    (
        round["counts"].clone(),
        missing,
        coverage,
        statuses,
        round["state"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archived_round_answers_as_before_and_its_progress_is_gone() {
    let start = now0();
    let app = spawn_with(Opts {
        redis: false,
        manual_clock: Some(start),
        policy: Policy {
            retention_days: 2,
            ..Policy::default()
        },
    })
    .await;
    let csv: String = std::iter::once("person_id,name,phone,area,household".to_owned())
        .chain((0..6).map(|n| {
            let r = resident(n);
            format!(
                "{},{},{},{},{}",
                r.person_id, r.name, r.phone, r.area, r.household
            )
        }))
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(app.register(&csv).await.status, 200);
    let r = app
        .create_round(
            ADMIN,
            &["崇文路街道"],
            start.plus_millis(-HOUR),
            start.plus_millis(HOUR),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let (_, scanner) = app.token("scanner", Some("S01"), None).await;
    let rec = |n: u64| {
        json!([{"person_id": pid(n).to_string(), "tube_id": format!("T{n:010}"),
                "collected_at": start}])
    };
    assert_eq!(app.records(&scanner, rec(0)).await.status, 200);
    app.clock.as_ref().unwrap().advance_millis(2 * HOUR);
    assert_eq!(app.close_round(ADMIN, &id).await.status, 200);
    let before = views(&app, &id).await;
    assert_eq!(before.4, "closed");
    let progress = app.get(&format!("/v1/rounds/{id}/progress"), ADMIN).await;
    assert_eq!(progress.status, 200);
    // Three days on: archived.
    app.clock.as_ref().unwrap().advance_millis(3 * DAY);
    let after = views(&app, &id).await;
    assert_eq!(after.4, "archived");
    assert_eq!(
        (&after.0, &after.1, &after.2, &after.3),
        (&before.0, &before.1, &before.2, &before.3)
    );
    let gone = app.get(&format!("/v1/rounds/{id}/progress"), ADMIN).await;
    assert_eq!(gone.status, 410);
    assert_eq!(gone.code(), "round_archived");
    let list = app.get("/v1/rounds", ADMIN).await.json();
    assert_eq!(list["rounds"][0]["state"], "archived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_store_writes_its_periodic_snapshot_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(now0());
    let options = StoreOptions {
        snapshot_every: std::time::Duration::from_secs(2),
        ..StoreOptions::default()
    };
    let (store, _engine) = open_with(dir.path(), &clock, Policy::default(), options);
    store
        .command(Command::Register((0..10).map(resident).collect()))
        .await
        .unwrap();
    store
        .records((0..10).map(|p| record(p, p, now0())).collect())
        .await
        .unwrap();
    assert!(snapshots(dir.path()).is_empty(), "not due yet");
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert!(
        snapshots(dir.path()).is_empty(),
        "no request came, so nothing prompted the writer"
    );
    // What the scheduler does once a minute.
    store.snapshot_if_due();
    for _ in 0..100 {
        if !snapshots(dir.path()).is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        snapshots(dir.path()).len(),
        1,
        "the due snapshot was written"
    );
    store.snapshot_if_due();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        snapshots(dir.path()).len(),
        1,
        "nothing new since: no second snapshot"
    );
}

/// Before schema version 3 the log held a row per record (`records`); since,
/// a row per batch (`record_batches`). A store upgraded part way holds both:
/// its replay takes them in `seq` order into the same state as a log of
/// batches alone, and the batches' bodies are read back exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_logged_a_row_each_before_version_3_replay_with_the_batches() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(now0());
    let (store, engine) = open_with(
        dir.path(),
        &clock,
        Policy::default(),
        StoreOptions::default(),
    );
    store
        .command(Command::Register((0..300).map(resident).collect()))
        .await
        .unwrap();
    let first = batch(0, clock.now());
    store.records(first.clone()).await.unwrap();
    clock.advance_millis(HOUR);
    store.records(batch(100, clock.now())).await.unwrap();
    clock.advance_millis(HOUR);
    // Another tube for some of the first batch's people, from another site.
    let mut again = batch(200, clock.now());
    for (i, r) in again.iter_mut().enumerate().take(50) {
        r.person_id = first[i].person_id;
        r.site = "站点 7".into();
    }
    store.records(again).await.unwrap();
    let now = clock.now();
    let live = engine.read().digest(now);
    assert_eq!(engine.read().record_count(), 300);
    drop(store);
    drop(engine);
    assert_eq!(count(dir.path(), RECORDS_LOGGED), 300);
    assert_eq!(count(dir.path(), "SELECT count(*) FROM record_batches"), 3);

    // Rewrite the first batch as an older version logged it: a row each.
    {
        let c = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
        let (seq, arrived): (i64, i64) = c
            .query_row(
                "SELECT seq, arrived_at FROM record_batches ORDER BY id LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        for r in &first {
            c.execute(
                "INSERT INTO records (seq, person_id, tube_id, site, collected_at, arrived_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                rusqlite::params![
                    seq,
                    r.person_id.as_u64() as i64,
                    r.tube_id.as_str(),
                    &*r.site,
                    r.collected_at.as_millis(),
                    arrived
                ],
            )
            .unwrap();
        }
        c.execute("DELETE FROM record_batches WHERE seq = ?1", [seq])
            .unwrap();
    }
    assert_eq!(count(dir.path(), "SELECT count(*) FROM records"), 100);
    assert_eq!(count(dir.path(), RECORDS_LOGGED), 300);

    // The whole log, without the shutdown's snapshot.
    remove_snapshots(dir.path());
    let (store, engine) = open_with(
        dir.path(),
        &clock,
        Policy::default(),
        StoreOptions::default(),
    );
    assert_eq!(store.replay_stats().snapshot_seq, 0);
    assert_eq!(store.replay_stats().records, 300);
    assert_eq!(engine.read().digest(now), live);
    // A duplicate of a record logged a row each is still a duplicate.
    let out = store.records(first[..1].to_vec()).await.unwrap();
    assert_eq!(out.verdicts, [rollcall::engine::Verdict::Duplicate]);
}
