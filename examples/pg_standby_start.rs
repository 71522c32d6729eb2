//! Several servers: how long a new standby (an empty scratch directory)
//! takes to start on a PostgreSQL store, replaying the whole log, and then
//! from the snapshot the leader stored plus the log after it, in one run.
//!
//! ```text
//! cargo run --release --example pg_standby_start -- [RESIDENTS] [ROUNDS]
//! ```
//!
//! A database of its own on `ROLLCALL_PG_BASE` (default
//! `postgres://root@127.0.0.1:5432`), dropped at the end. A leader imports
//! RESIDENTS (default 1,000,000) generated residents and takes a record for
//! 95 % of them in batches of 500; a standby is started ROUNDS times (default
//! 3) with no snapshot stored; the leader stores a snapshot and takes 10,000
//! more records; a standby is started ROUNDS times again. A start is
//! `Store::open_postgres` until it returns a standby (connect, migrate, load,
//! replay, the first poll), which is what a `rollcall serve` standby does
//! before it answers `/readyz`. Every standby's engine is checked equal to
//! the leader's (digest).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

use rollcall::domain::{PersonId, Timestamp, TubeId};
use rollcall::engine::clock::{Clock, ManualClock};
use rollcall::engine::{Command, Engine, Policy, RecordItem, SharedEngine};
use rollcall::store::{OnChanged, Store, StoreOptions};

const BATCH: usize = 500;

fn open(url: &str, dir: &Path, clock: &Arc<ManualClock>) -> (Store, SharedEngine) {
    let engine: SharedEngine = Arc::new(RwLock::new(Engine::new(
        Policy::default(),
        Engine::build_pool(2),
    )));
    let cache: OnChanged = Arc::new(|_| 0);
    let clock: Arc<dyn Clock> = clock.clone();
    let store = Store::open_postgres(
        url,
        dir,
        None,
        engine.clone(),
        clock,
        cache,
        StoreOptions::default(),
    )
    .expect("open the PostgreSQL store");
    (store, engine)
}

/// Starts a standby with an empty scratch directory and checks its engine
/// against the leader's: how long the start took, and its replay stats.
fn standby(
    url: &str,
    clock: &Arc<ManualClock>,
    leader: &SharedEngine,
) -> (Duration, rollcall::store::ReplayStats) {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let t = Instant::now();
    let (store, engine) = open(url, dir.path(), clock);
    let took = t.elapsed();
    assert!(!store.is_leader(), "the leader holds the lock");
    let now = clock.now();
    assert_eq!(
        engine.read().digest(now),
        leader.read().digest(now),
        "the standby's state is the leader's"
    );
    let stats = store.replay_stats().clone();
    drop(store);
    (took, stats)
}

async fn records(store: &Store, people: &[PersonId], first_tube: usize, at: Timestamp) {
    for (i, chunk) in people.chunks(BATCH).enumerate() {
        let items = chunk
            .iter()
            .enumerate()
            .map(|(j, p)| RecordItem {
                person_id: *p,
                tube_id: TubeId::parse(&format!("B{:09}", first_tube + (i * BATCH + j) / 10))
                    .expect("a tube id"),
                collected_at: at,
                site: "S01".into(),
            })
            .collect();
        store.records(items).await.expect("records stored");
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let residents: u64 = args
        .next()
        .map_or(1_000_000, |a| a.parse().expect("RESIDENTS"));
    let rounds: usize = args.next().map_or(3, |a| a.parse().expect("ROUNDS"));
    let base = std::env::var("ROLLCALL_PG_BASE")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432".into());
    let name = format!("rollcall_bench_{:016x}", rand::random::<u64>());
    let admin = format!("{base}/postgres");
    let mut c = postgres::Client::connect(&admin, postgres::NoTls).expect("PostgreSQL");
    c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    let url = format!("{base}/{name}");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let clock = ManualClock::new(Timestamp::parse("2022-04-19T12:00:00+08:00").unwrap());
    let leader_dir = tempfile::tempdir().unwrap();
    let (leader, engine) = open(&url, leader_dir.path(), &clock);
    rt.block_on(async {
        let rows: Vec<_> = rollcall::synth::city(residents, 1).collect();
        let people: Vec<PersonId> = rows.iter().map(|r| r.person_id).collect();
        let t = Instant::now();
        leader.command(Command::Register(rows)).await.unwrap();
        let sampled = &people[..people.len() * 95 / 100];
        let at = clock.now().plus_millis(-3_600_000);
        records(&leader, sampled, 0, at).await;
        println!(
            "leader: {residents} residents, {} records in {:.1} s",
            sampled.len(),
            t.elapsed().as_secs_f64()
        );
    });
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let (rows, bytes): (i64, i64) = db
        .query_one(
            "SELECT count(*), pg_total_relation_size('events') FROM events",
            &[],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    println!("events table: {rows} rows, {} MB", bytes >> 20);

    let mut without = Vec::new();
    for r in 1..=rounds {
        let (took, s) = standby(&url, &clock, &engine);
        println!(
            "round {r}, no snapshot: start {:.2} s (replay {:.2} s, {} events)",
            took.as_secs_f64(),
            s.replay.as_secs_f64(),
            s.events
        );
        without.push(took.as_secs_f64());
    }

    let t = Instant::now();
    let snap = rt.block_on(leader.snapshot()).expect("a snapshot stored");
    println!(
        "leader: snapshot at seq {} of {} MB, encoded in {} ms, written and stored in {:.2} s",
        snap.seq,
        snap.bytes >> 20,
        snap.encode_us / 1000,
        t.elapsed().as_secs_f64()
    );
    rt.block_on(async {
        let more: Vec<PersonId> = rollcall::synth::city(residents, 1)
            .skip(residents as usize * 95 / 100)
            .take(10_000)
            .map(|r| r.person_id)
            .collect();
        records(&leader, &more, 10_000_000, clock.now()).await;
    });

    let mut with = Vec::new();
    for r in 1..=rounds {
        let (took, s) = standby(&url, &clock, &engine);
        assert_eq!(s.snapshot_seq, snap.seq, "started from the stored snapshot");
        println!(
            "round {r}, snapshot: start {:.2} s (snapshot load {:.2} s, replay {:.2} s, {} events)",
            took.as_secs_f64(),
            s.snapshot_load.as_secs_f64(),
            s.replay.as_secs_f64(),
            s.events
        );
        with.push(took.as_secs_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (a, b) = (median(&mut without), median(&mut with));
    println!(
        "median start: {a:.2} s replaying the whole log, {b:.2} s from the snapshot: {:.2}x faster",
        a / b
    );
    rt.block_on(leader.close());
    drop(leader);
    drop(db);
    c.batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .unwrap();
}
