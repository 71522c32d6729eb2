//! The durable store against real SQLite files in temporary directories:
//! replay equality, group commit, refusals, and a real write failure.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{Days, NaiveDate};
use parking_lot::RwLock;

use rollcall::domain::register::{HeadRow, RegisterRow};
use rollcall::domain::{
    AreaPath, AuditAction, ExemptionReason, PersonId, Role, TestResult, Timestamp, TubeId,
};
use rollcall::engine::clock::{Clock, ManualClock};
use rollcall::engine::{
    Command, CommandError, Engine, NewExemption, Policy, Prepared, RecordItem, RejectCode,
    ResultItem, SharedEngine, Verdict,
};
use rollcall::store::{
    AuditEntry, DB_FILE, NewToken, OnChanged, SCHEMA_VERSION, Store, StoreError,
};

use crate::helpers::{damage_audit, fill_audit};

const HOUR: i64 = 3_600_000;

pub(crate) fn now0() -> Timestamp {
    Timestamp::parse("2022-04-19T12:00:00+08:00").unwrap()
}

/// The `n`-th synthetic resident ID: region 610802, a birth date from 1950
/// on, a sequence number; the check character is derived.
pub(crate) fn pid(n: u64) -> PersonId {
    let date = NaiveDate::from_ymd_opt(1950, 1, 1).unwrap() + Days::new(n / 999);
    let ymd: u64 = date.format("%Y%m%d").to_string().parse().unwrap();
    PersonId::from_u64(610_802 * 100_000_000_000 + ymd * 1000 + n % 999 + 1).unwrap()
}

fn area(n: u64) -> AreaPath {
    let community = n % 3;
    let grid = n % 7;
    let block = n % 5;
    AreaPath::parse(&format!(
        "崇文路街道/社区{community}/第{grid:02}网格/{block}号楼"
    ))
    .unwrap()
}

pub(crate) fn resident(n: u64) -> RegisterRow {
    RegisterRow {
        person_id: pid(n),
        name: format!("居民{n}"),
        phone: format!("139{n:08}"),
        area: area(n),
        household: format!("{}-{}", n % 5, n / 4),
    }
}

pub(crate) fn tube(n: u64) -> TubeId {
    TubeId::parse(&format!("T{n:08}")).unwrap()
}

pub(crate) fn record(person: u64, tube_no: u64, at: Timestamp) -> RecordItem {
    RecordItem {
        person_id: pid(person),
        tube_id: tube(tube_no),
        collected_at: at,
        site: "S01".into(),
    }
}

pub(crate) fn result(tube_no: u64, r: TestResult, at: Timestamp) -> ResultItem {
    ResultItem {
        tube_id: tube(tube_no),
        result: r,
        reported_at: at,
    }
}

pub(crate) fn new_engine() -> SharedEngine {
    Arc::new(RwLock::new(Engine::new(
        Policy::default(),
        Engine::build_pool(2),
    )))
}

/// A status-cache stand-in: counts calls, returns increasing tickets.
pub(crate) fn counting_cache() -> (OnChanged, Arc<AtomicU64>) {
    let n = Arc::new(AtomicU64::new(0));
    let m = n.clone();
    let f: OnChanged = Arc::new(move |_people: Vec<PersonId>| m.fetch_add(1, Ordering::SeqCst) + 1);
    (f, n)
}

pub(crate) fn open(dir: &Path, clock: &Arc<ManualClock>) -> (Store, SharedEngine) {
    let engine = new_engine();
    let (cache, _) = counting_cache();
    let clock: Arc<dyn Clock> = clock.clone();
    let store = Store::open(dir, engine.clone(), clock, cache).expect("open the store");
    (store, engine)
}

/// Removes every snapshot file of a data directory.
pub(crate) fn remove_snapshots(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rcsnap") {
            std::fs::remove_file(path).unwrap();
        }
    }
}

pub(crate) fn accepted(v: &[Verdict]) -> usize {
    v.iter()
        .filter(|v| matches!(v, Verdict::Accepted { .. }))
        .count()
}

fn file_bytes(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join(DB_FILE)).unwrap()
}

/// A small city with a round, records from concurrent scanners in several
/// groups, pooled and single results, exemptions, a move-out, a close, a late
/// record, a make-up, a clear, tokens, audit entries and meta.
pub(crate) async fn drive_a_campaign(store: &Store, clock: &ManualClock) {
    let now = clock.now();
    let first: Vec<RegisterRow> = (0..200).map(resident).collect();
    let out = store.command(Command::Register(first)).await.unwrap();
    assert_eq!(
        out.prepared,
        Prepared::Import {
            total: 200,
            inserted: 200,
            updated: 0,
            unchanged: 0
        }
    );
    // A second file: 50 updated (new phone), 100 new.
    let mut second: Vec<RegisterRow> = (150..300).map(resident).collect();
    for r in &mut second[..50] {
        r.phone = "13800000000".into();
    }
    store.command(Command::Register(second)).await.unwrap();
    let heads = vec![HeadRow {
        area: AreaPath::parse("崇文路街道/社区1").unwrap(),
        title: "社区书记".into(),
        name: "王芳".into(),
        phone: "13900000000".into(),
    }];
    store.command(Command::Heads(heads)).await.unwrap();

    let scope = vec![
        AreaPath::parse("崇文路街道/社区1").unwrap(),
        AreaPath::parse("崇文路街道/社区2").unwrap(),
    ];
    let round = store
        .command(Command::RoundCreate {
            name: "第3轮全员核酸".into(),
            scope,
            opens_at: now.plus_millis(-6 * HOUR),
            deadline: now.plus_millis(6 * HOUR),
        })
        .await
        .unwrap();
    let Prepared::RoundId(round_id) = round.prepared else {
        panic!("a round id")
    };

    // Eight scanners at once, three batches each, ten people per tube, and
    // every batch resent once (duplicates).
    let mut tasks = Vec::new();
    for s in 0..8u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut acc = 0;
            for b in 0..3u64 {
                let base = s * 30 + b * 10;
                let batch: Vec<RecordItem> = (base..base + 10)
                    .map(|p| record(p, p / 10, now.plus_millis(-HOUR)))
                    .collect();
                acc += accepted(&store.records(batch.clone()).await.unwrap().verdicts);
                let again = store.records(batch).await.unwrap();
                assert!(again.verdicts.iter().all(|v| *v == Verdict::Duplicate));
                assert_eq!(again.ticket, 0);
            }
            acc
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, 240);

    // Results: tube 0 negative, tube 1 positive (pooled), tube 99 before its
    // records (unmatched), then a single-person tube positive.
    let r = store
        .results(vec![
            result(0, TestResult::Negative, now),
            result(1, TestResult::Positive, now),
            result(99, TestResult::Negative, now),
            result(1, TestResult::Negative, now),
        ])
        .await
        .unwrap();
    assert_eq!(
        r.verdicts,
        vec![
            Verdict::Accepted { flag: false },
            Verdict::Accepted { flag: false },
            Verdict::Accepted { flag: true },
            Verdict::Rejected(RejectCode::ConflictingResult),
        ]
    );
    store
        .records(vec![record(250, 500, now.plus_millis(-HOUR))])
        .await
        .unwrap();
    store
        .results(vec![result(500, TestResult::Positive, now)])
        .await
        .unwrap();

    let ex = store
        .command(Command::ExemptionCreate {
            person_id: pid(280),
            reason: ExemptionReason::Bedridden,
            from: now.plus_millis(-48 * HOUR),
            until: now.plus_millis(48 * HOUR),
            note: "卧床".into(),
        })
        .await
        .unwrap();
    assert!(matches!(ex.prepared, Prepared::ExemptionId(_)));
    let ex2 = store
        .command(Command::ExemptionCreate {
            person_id: pid(281),
            reason: ExemptionReason::Away,
            from: now,
            until: now.plus_millis(48 * HOUR),
            note: String::new(),
        })
        .await
        .unwrap();
    let Prepared::ExemptionId(ex2) = ex2.prepared else {
        panic!("an exemption id")
    };
    store
        .command(Command::ExemptionDelete { id: ex2 })
        .await
        .unwrap();
    store
        .command(Command::ResidentDelete(pid(7)))
        .await
        .unwrap();
    let refused = store
        .command(Command::RoundClose { id: 99, at: None })
        .await;
    assert!(matches!(
        refused,
        Err(StoreError::Command(CommandError::UnknownRound))
    ));

    // Past the deadline: close, then a late record inside the window and a
    // make-up after it.
    clock.advance_millis(7 * HOUR);
    let closed = store
        .command(Command::RoundClose {
            id: round_id,
            at: None,
        })
        .await
        .unwrap();
    assert!(closed.applied.flipped > 0);
    assert!(closed.ticket > 0);
    let late = clock.now();
    store
        .records(vec![
            record(241, 600, now.plus_millis(HOUR)),
            record(242, 601, late.plus_millis(-HOUR / 2)),
        ])
        .await
        .unwrap();
    store
        .command(Command::Clear {
            person_id: pid(250),
            note: "复核阴性".into(),
        })
        .await
        .unwrap();

    let a = store
        .create_token(NewToken {
            hash: [1; 32],
            role: Role::Scanner,
            name: "S01 phone 2".into(),
            site: Some("S01".into()),
            area: None,
            bootstrap: false,
        })
        .await
        .unwrap();
    let b = store
        .create_token(NewToken {
            hash: [2; 32],
            role: Role::Official,
            name: "社区1".into(),
            site: None,
            area: Some(AreaPath::parse("崇文路街道/社区1").unwrap()),
            bootstrap: false,
        })
        .await
        .unwrap();
    assert_eq!((a.id.as_str(), b.id.as_str()), ("1", "2"));
    assert!(store.revoke_token(&a.id).await.unwrap());
    assert!(
        !store.revoke_token(&a.id).await.unwrap(),
        "a revoked token is revoked once"
    );
    assert!(!store.revoke_token("77").await.unwrap());
    for action in [AuditAction::MissingList, AuditAction::RoundClose] {
        store
            .audit(AuditEntry {
                at: clock.now(),
                token_name: "admin".into(),
                role: Role::Admin,
                action,
                area: Some("崇文路街道".into()),
                round_id: Some(round_id.to_string()),
                rows: Some(3),
                target: (action == AuditAction::RoundClose).then(|| "token 1 scanner S01".into()),
            })
            .await
            .unwrap();
    }
    store.meta_put("cache_key", "abc").await.unwrap();
}

/// Results are written 64 rows to a statement and the rest one by one: a
/// batch of 130 (two packed statements and two single rows) replays whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_results_batch_is_written_packed_and_replays_whole() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(now0());
    let (store, engine) = open(dir.path(), &clock);
    let now = clock.now();
    store
        .command(Command::Register((0..130).map(resident).collect()))
        .await
        .unwrap();
    let records = (0..130).map(|i| record(i, i, now.plus_millis(-HOUR)));
    store.records(records.collect()).await.unwrap();
    let results: Vec<ResultItem> = (0..130)
        .map(|i| {
            result(
                i,
                [TestResult::Negative, TestResult::Positive][(i % 2) as usize],
                now,
            )
        })
        .collect();
    let out = store.results(results.clone()).await.unwrap();
    assert!(
        out.verdicts
            .iter()
            .all(|v| matches!(v, Verdict::Accepted { .. }))
    );
    let before = engine.read().digest(now);
    drop(store);
    drop(engine);
    remove_snapshots(dir.path());
    let (store, engine) = open(dir.path(), &clock);
    assert_eq!(store.replay_stats().results, 130);
    assert_eq!(engine.read().digest(now), before, "replayed engine differs");
    let again = store.results(results).await.unwrap();
    assert!(again.verdicts.iter().all(|v| *v == Verdict::Duplicate));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_rebuilds_the_same_engine() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(now0());
    let (store, engine) = open(dir.path(), &clock);
    drive_a_campaign(&store, &clock).await;
    let now = clock.now();
    let before = engine.read().digest(now);
    let (records, residents) = (engine.read().record_count(), engine.read().resident_count());
    let tokens = store.tokens();
    let audit = store.audit_since(None).await.unwrap();
    assert_eq!(audit.len(), 2);
    assert_eq!(store.meta_get("cache_key").as_deref(), Some("abc"));
    drop(store);
    drop(engine);

    for round in 0..2u32 {
        if round == 0 {
            // The whole log, without the snapshot the shutdown wrote.
            remove_snapshots(dir.path());
        }
        let (store, engine) = open(dir.path(), &clock);
        assert_eq!(engine.read().digest(now), before, "replayed engine differs");
        assert_eq!(engine.read().record_count(), records);
        assert_eq!(engine.read().resident_count(), residents);
        assert_eq!(store.tokens()[..2], tokens[..]);
        assert!(store.tokens()[0].revoked() && !store.tokens()[1].revoked());
        assert_eq!(store.audit_since(None).await.unwrap(), audit);
        assert_eq!(
            store.audit_since(Some(now.plus_millis(1))).await.unwrap(),
            vec![]
        );
        assert_eq!(store.meta_get("cache_key").as_deref(), Some("abc"));
        let stats = store.replay_stats().clone();
        if round == 0 {
            assert_eq!(stats.snapshot_seq, 0);
            assert_eq!(stats.records, records);
            assert_eq!(stats.register_rows, 350);
            assert_eq!(stats.results, 4);
        } else {
            // Round 0's shutdown left a snapshot of everything: nothing to replay.
            assert!(stats.snapshot_seq > 0);
            assert_eq!(
                (stats.records, stats.register_rows, stats.events),
                (0, 0, 0)
            );
        }
        // The next token id continues after the stored ones.
        let c = store
            .create_token(NewToken {
                hash: [9 + round as u8; 32],
                role: Role::Gate,
                name: "gate".into(),
                site: None,
                area: None,
                bootstrap: false,
            })
            .await
            .unwrap();
        assert_eq!(c.id, (3 + round).to_string());
        let taken = store
            .create_token(NewToken {
                hash: [1; 32],
                role: Role::Gate,
                name: "same hash".into(),
                site: None,
                area: None,
                bootstrap: false,
            })
            .await;
        assert!(matches!(taken, Err(StoreError::DuplicateToken)));
        assert!(store.revoke_token(&c.id).await.unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_batches_share_commits_and_duplicates_count_once() {
    const TASKS: u64 = 64;
    const PER_TASK: u64 = 400;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(now0());
    let (store, engine) = open(dir.path(), &clock);
    let at = now0().plus_millis(-HOUR);
    // Task i sends keys [i*300, i*300+400): a quarter of each overlaps the
    // next task's, judged concurrently in the same or other groups.
    let mut handles = Vec::new();
    for i in 0..TASKS {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut acc = 0;
            let mut dup = 0;
            for half in 0..2 {
                let lo = i * 300 + half * PER_TASK / 2;
                let batch: Vec<RecordItem> = (lo..lo + PER_TASK / 2)
                    .map(|k| record(k, k / 10, at))
                    .collect();
                let out = store.records(batch).await.unwrap();
                acc += accepted(&out.verdicts);
                dup += out
                    .verdicts
                    .iter()
                    .filter(|v| **v == Verdict::Duplicate)
                    .count();
                assert_eq!(acc + dup, (half as usize + 1) * PER_TASK as usize / 2);
            }
            (acc, dup)
        }));
    }
    let (mut acc, mut dup) = (0, 0);
    for h in handles {
        let (a, d) = h.await.unwrap();
        acc += a;
        dup += d;
    }
    let unique = (TASKS - 1) * 300 + PER_TASK;
    assert_eq!(acc as u64, unique);
    assert_eq!(dup as u64, TASKS * PER_TASK - unique);
    assert_eq!(engine.read().record_count(), unique);
    let stats = store.stats();
    assert_eq!(stats.batches, TASKS * 2);
    assert_eq!(stats.rows, unique);
    assert!(
        stats.commits < stats.batches,
        "no group commit: {} commits for {} batches",
        stats.commits,
        stats.batches
    );
    let before = engine.read().digest(now0());
    drop(store);
    let (_store, engine) = open(dir.path(), &clock);
    assert_eq!(engine.read().digest(now0()), before);
}

/// A store with some data, closed cleanly (everything in the main file).
async fn a_closed_store(dir: &Path) {
    let clock = ManualClock::new(now0());
    let (store, _engine) = open(dir, &clock);
    store
        .command(Command::Register((0..2000).map(resident).collect()))
        .await
        .unwrap();
    let at = now0().plus_millis(-HOUR);
    for b in 0..4 {
        let batch = (b * 500..b * 500 + 500)
            .map(|k| record(k, k / 10, at))
            .collect();
        store.records(batch).await.unwrap();
    }
}

/// The refusal of a store: at open, or by the integrity check that may
/// finish after it.
async fn open_err(dir: &Path) -> StoreError {
    let clock: Arc<dyn Clock> = ManualClock::new(now0());
    let (cache, _) = counting_cache();
    match Store::open(dir, new_engine(), clock, cache) {
        Ok(store) => match store.checked().await {
            Ok(_) => panic!("the store opened and passed its check"),
            Err(e) => e,
        },
        Err(e) => e,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_file_is_refused_and_left_untouched() {
    // Garbage over the header.
    let dir = tempfile::tempdir().unwrap();
    a_closed_store(dir.path()).await;
    let mut bytes = file_bytes(dir.path());
    bytes[..64].fill(0x5a);
    std::fs::write(dir.path().join(DB_FILE), &bytes).unwrap();
    let e = open_err(dir.path()).await;
    assert!(matches!(e, StoreError::Corrupt(_)), "{e}");
    assert_eq!(file_bytes(dir.path()), bytes);

    // Garbage over pages in the middle (record pages).
    let dir = tempfile::tempdir().unwrap();
    a_closed_store(dir.path()).await;
    let mut bytes = file_bytes(dir.path());
    let mid = bytes.len() / 2 / 4096 * 4096;
    for (i, b) in bytes[mid..mid + 3 * 4096].iter_mut().enumerate() {
        *b = (i * 7 + 13) as u8;
    }
    std::fs::write(dir.path().join(DB_FILE), &bytes).unwrap();
    let e = open_err(dir.path()).await;
    assert!(matches!(e, StoreError::Corrupt(_)), "{e}");
    assert_eq!(file_bytes(dir.path()), bytes);

    // Truncated: the last pages lost.
    let dir = tempfile::tempdir().unwrap();
    a_closed_store(dir.path()).await;
    let bytes = file_bytes(dir.path());
    let cut = &bytes[..bytes.len() - 3 * 4096];
    std::fs::write(dir.path().join(DB_FILE), cut).unwrap();
    let e = open_err(dir.path()).await;
    assert!(matches!(e, StoreError::Corrupt(_)), "{e}");
    assert!(e.to_string().contains("truncated"), "{e}");
    assert_eq!(file_bytes(dir.path()), cut);

    // Not a database at all, and shorter than a header.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(DB_FILE), b"hello").unwrap();
    assert!(matches!(open_err(dir.path()).await, StoreError::Corrupt(_)));
    assert_eq!(file_bytes(dir.path()), b"hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_only_the_integrity_check_sees_stops_every_write_and_is_left_untouched() {
    // The audit table is not read at open, so garbage over its root page
    // lets the replay succeed; the check that runs after it must catch it.
    let dir = tempfile::tempdir().unwrap();
    a_closed_store(dir.path()).await;
    {
        let clock = ManualClock::new(now0());
        let (store, _engine) = open(dir.path(), &clock);
        fill_audit(&store).await;
        store.close().await;
    }
    let bytes = damage_audit(dir.path());

    let clock = ManualClock::new(now0());
    let (store, engine) = open(dir.path(), &clock);
    // The replay is whole: reads are answered while the check runs.
    assert_eq!(engine.read().resident_count(), 2000);
    assert_eq!(engine.read().record_count(), 2000);
    let e = store.checked().await.unwrap_err();
    assert!(matches!(e, StoreError::Corrupt(_)), "{e}");
    assert!(e.to_string().contains("integrity check"), "{e}");
    // No write is taken, and none reaches the file.
    let e = store
        .records(vec![record(5000, 5000, now0())])
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Unavailable), "{e}");
    assert_eq!(engine.read().record_count(), 2000);
    store.close().await;
    drop(store);
    assert_eq!(file_bytes(dir.path()), bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    a_closed_store(dir.path()).await;
    {
        let c = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
        c.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
    }
    let bytes = file_bytes(dir.path());
    let e = open_err(dir.path()).await;
    match &e {
        StoreError::NewerSchema { found, supported } => {
            assert_eq!((*found, *supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        other => panic!("expected NewerSchema, got {other}"),
    }
    assert!(e.to_string().contains("newer"), "{e}");
    assert_eq!(file_bytes(dir.path()), bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_store_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    a_closed_store(dir.path()).await;
    let clock = ManualClock::new(now0());
    let (first, engine) = open(dir.path(), &clock);
    let bytes = file_bytes(dir.path());
    let e = open_err(dir.path()).await;
    assert!(matches!(e, StoreError::Locked(_)), "{e}");
    assert!(e.to_string().contains("another rollcall process"), "{e}");
    assert_eq!(file_bytes(dir.path()), bytes);
    // The first one still works, and once it is gone the directory opens.
    let out = first
        .records(vec![record(5000, 5000, now0())])
        .await
        .unwrap();
    assert_eq!(accepted(&out.verdicts), 1);
    let before = engine.read().digest(now0());
    drop(first);
    let (_again, engine) = open(dir.path(), &clock);
    assert_eq!(engine.read().digest(now0()), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_releases_the_directory_while_other_handles_live_and_refuses_later_writes() {
    let dir = tempfile::tempdir().unwrap();
    a_closed_store(dir.path()).await;
    let clock = ManualClock::new(now0());
    let (first, engine) = open(dir.path(), &clock);
    // A handle kept elsewhere (an HTTP worker still winding down, say).
    let straggler = first.clone();
    let out = first
        .records(vec![record(5000, 5000, now0())])
        .await
        .unwrap();
    assert_eq!(accepted(&out.verdicts), 1);
    let before = engine.read().digest(now0());
    first.close().await;

    // The directory opens at once, with what was acknowledged before the close.
    let (again, engine) = open(dir.path(), &clock);
    assert_eq!(engine.read().digest(now0()), before);
    // The old handle writes nothing any more, to either store.
    let e = straggler
        .records(vec![record(5001, 5001, now0())])
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Unavailable), "{e}");
    drop(straggler);
    assert_eq!(engine.read().digest(now0()), before);
    again.close().await;
    let (_third, engine) = open(dir.path(), &clock);
    assert_eq!(engine.read().digest(now0()), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_schema_version_zero_file_with_foreign_tables_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
        c.execute_batch("CREATE TABLE other (x INTEGER); INSERT INTO other VALUES (1);")
            .unwrap();
    }
    let bytes = file_bytes(dir.path());
    assert!(matches!(open_err(dir.path()).await, StoreError::Corrupt(_)));
    assert_eq!(file_bytes(dir.path()), bytes);
}

// ------------------------------------------------- a real write failure

/// Env var that turns [`write_failure_child`] from a no-op into the child.
const CHILD_DIR: &str = "ROLLCALL_STORE_FAILURE_CHILD_DIR";

/// The parent: runs the child (this same test binary) on a fresh directory,
/// then reopens what it left without any limit and checks that the engine
/// replayed from disk equals the engine the child ended with — so nothing a
/// failed commit answered `storage_unavailable` for was applied, and nothing
/// that was applied is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_is_unavailable_and_applies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "store::write_failure_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("CHILD-RESULT "))
        .unwrap_or_else(|| panic!("child said nothing:\n{stdout}\n{stderr}"));
    let nums: Vec<u64> = line
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    let (digest, records, failures) = (nums[0], nums[1], nums[2]);
    assert!(failures > 0, "no write failed");

    let clock = ManualClock::new(now0());
    let (_store, engine) = open(dir.path(), &clock);
    assert_eq!(engine.read().record_count(), records);
    assert_eq!(engine.read().digest(now0()), digest);
}

/// The child: fills the store, then caps its own file size (`RLIMIT_FSIZE`,
/// through util-linux `prlimit`) so that the kernel fails SQLite's writes
/// with EFBIG, as a full disk would. Every request answered `Unavailable`
/// must have changed nothing in the engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_failure_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return; // Only meaningful when started by the parent test.
    };
    let dir = std::path::PathBuf::from(dir);
    // Exceeding the limit also raises SIGXFSZ, which would kill the process;
    // with a handler installed the write just fails.
    let _sigxfsz =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(25)).unwrap();
    let clock = ManualClock::new(now0());
    let (store, engine) = open(&dir, &clock);
    store
        .command(Command::Register((0..1000).map(resident).collect()))
        .await
        .unwrap();
    let at = now0().plus_millis(-HOUR);
    let batch = |b: u64| -> Vec<RecordItem> {
        (b * 500..b * 500 + 500)
            .map(|k| record(k, k / 10, at))
            .collect()
    };
    for b in 0..4 {
        store.records(batch(b)).await.unwrap();
    }
    let biggest = ["", "-wal"]
        .iter()
        .map(|s| {
            let mut p = dir.join(DB_FILE).into_os_string();
            p.push(s);
            std::fs::metadata(&p).map_or(0, |m| m.len())
        })
        .max()
        .unwrap();
    let limit = biggest + 64 * 1024;
    let status = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &std::process::id().to_string(),
            &format!("--fsize={limit}:{limit}"),
        ])
        .status()
        .expect("run prlimit (util-linux)");
    assert!(status.success());

    let mut failures = 0;
    let mut b = 4;
    while failures < 3 && b < 2000 {
        let digest = engine.read().digest(now0());
        let records = engine.read().record_count();
        match store.records(batch(b)).await {
            Ok(out) => assert_eq!(accepted(&out.verdicts), 500),
            Err(StoreError::Unavailable) => {
                failures += 1;
                assert_eq!(
                    engine.read().record_count(),
                    records,
                    "a failed batch was applied"
                );
                assert_eq!(engine.read().digest(now0()), digest);
                // The same batch again after a failure is judged afresh:
                // still not a duplicate of itself.
                continue;
            }
            Err(e) => panic!("unexpected error {e}"),
        }
        b += 1;
    }
    assert!(failures > 0, "no write failed under the file-size limit");
    // An exemptions import far past the limit: none of it is applied.
    let before = engine.read().exemptions_in_force(None, now0()).len();
    let e = store
        .command(Command::ExemptionImport(exemptions(
            0..1000,
            &"卧床".repeat(400),
        )))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Unavailable), "{e}");
    assert_eq!(
        engine.read().exemptions_in_force(None, now0()).len(),
        before
    );
    assert!(store.stats().failed_commits >= failures);
    println!(
        "\nCHILD-RESULT {} {} {}",
        engine.read().digest(now0()),
        engine.read().record_count(),
        failures
    );
}

/// Exemptions for residents `ns`, in force around `now0()`.
fn exemptions(ns: std::ops::Range<u64>, note: &str) -> Vec<NewExemption> {
    ns.map(|n| NewExemption {
        person_id: pid(n),
        reason: ExemptionReason::Away,
        from: now0().plus_millis(-HOUR),
        until: now0().plus_millis(24 * HOUR),
        note: note.to_owned(),
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exemptions_import_is_one_commit_with_ids_in_order_and_replays_whole() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(now0());
    let (store, engine) = open(dir.path(), &clock);
    store
        .command(Command::Register((0..50).map(resident).collect()))
        .await
        .unwrap();
    let single = store
        .command(Command::ExemptionImport(exemptions(0..1, "a")))
        .await
        .unwrap();
    assert_eq!(single.prepared, Prepared::ExemptionIds(vec![1]));
    let commits = store.stats().commits;
    let out = store
        .command(Command::ExemptionImport(exemptions(10..30, "b")))
        .await
        .unwrap();
    assert_eq!(store.stats().commits, commits + 1, "one transaction");
    assert_eq!(out.prepared, Prepared::ExemptionIds((2..22).collect()));
    assert_eq!(out.applied.changed.len(), 20);
    // A window the wrong way round refuses the whole command.
    let mut bad = exemptions(30..33, "c");
    bad[2].until = bad[2].from.plus_millis(-1);
    let e = store
        .command(Command::ExemptionImport(bad))
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::Command(CommandError::InvalidWindow)),
        "{e}"
    );
    let listed = |engine: &SharedEngine| -> Vec<(u32, PersonId)> {
        engine
            .read()
            .exemptions_in_force(None, now0())
            .iter()
            .map(|(x, _)| (x.id, x.person_id))
            .collect()
    };
    let before = listed(&engine);
    assert_eq!(before.len(), 21);
    let digest = engine.read().digest(now0());
    store.close().await;
    let (_store, engine) = open(dir.path(), &clock);
    assert_eq!(listed(&engine), before);
    assert_eq!(engine.read().digest(now0()), digest);
    // Past their `until`, they are no longer in force.
    assert!(
        engine
            .read()
            .exemptions_in_force(None, now0().plus_millis(25 * HOUR))
            .is_empty()
    );
}
