//! Load harness for the durable store (not a criterion micro-bench: each run
//! takes seconds and prints throughput and latency percentiles).
//!
//! ```text
//! cargo run --release --example store_load -- fsync
//! cargo run --release --example store_load -- ingest 1 8 64
//! cargo run --release --example store_load -- replay 1000000
//! KEEP=1 … replay N; cargo run --release --example store_load -- open DIR
//! ```
//!
//! `DIR` (default `./target/store-load`) holds the scratch stores; it must be
//! on the disk being measured (not tmpfs).

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{Days, NaiveDate};
use hdrhistogram::Histogram;
use parking_lot::RwLock;

use rollcall::domain::register::RegisterRow;
use rollcall::domain::{AreaPath, PersonId, Timestamp, TubeId};
use rollcall::engine::clock::{Clock, ManualClock};
use rollcall::engine::{Command, Engine, Policy, RecordItem, SharedEngine, Verdict};
use rollcall::store::{OnChanged, Store};

const BATCH: u64 = 500;

fn now0() -> Timestamp {
    Timestamp::parse("2022-04-19T12:00:00+08:00").unwrap()
}

fn pid(n: u64) -> PersonId {
    let date = NaiveDate::from_ymd_opt(1930, 1, 1).unwrap() + Days::new(n / 999);
    let ymd: u64 = date.format("%Y%m%d").to_string().parse().unwrap();
    PersonId::from_u64(610_802 * 100_000_000_000 + ymd * 1000 + n % 999 + 1).unwrap()
}

fn resident(n: u64) -> RegisterRow {
    let area = format!(
        "崇文路街道/社区{}/第{:02}网格/{}号楼/{}层",
        n % 7,
        n / 7 % 64,
        n / 448 % 40,
        n / 17_920 % 18
    );
    RegisterRow {
        person_id: pid(n),
        name: format!("居民{}", n % 100_000),
        phone: format!("139{:08}", n % 100_000_000),
        area: AreaPath::parse(&area).unwrap(),
        household: format!("{}", n / 3),
    }
}

fn batch(first: u64, at: Timestamp) -> Vec<RecordItem> {
    let site: Arc<str> = format!("S{:02}", first / BATCH % 38).into();
    (first..first + BATCH)
        .map(|k| RecordItem {
            person_id: pid(k),
            tube_id: TubeId::parse(&format!("T{:010}", k / 10)).unwrap(),
            collected_at: at,
            site: site.clone(),
        })
        .collect()
}

fn engine() -> SharedEngine {
    Arc::new(RwLock::new(Engine::new(
        Policy::default(),
        Engine::build_pool(2),
    )))
}

fn open(dir: &Path) -> (Store, SharedEngine) {
    let e = engine();
    let clock: Arc<dyn Clock> = ManualClock::new(now0());
    let cache: OnChanged = Arc::new(|_| 1);
    let s = Store::open(dir, e.clone(), clock, cache).unwrap();
    (s, e)
}

fn fresh(base: &Path, name: &str) -> PathBuf {
    let d = base.join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn pct(h: &Histogram<u64>) -> String {
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.max() as f64 / 1000.0
    )
}

/// Raw `fdatasync` after a 4 KiB write, and a one-record SQLite commit.
fn fsync(base: &Path) {
    std::fs::create_dir_all(base).unwrap();
    let path = base.join("fsync.bin");
    let f = std::fs::File::create(&path).unwrap();
    let mut h = Histogram::<u64>::new(3).unwrap();
    let page = [7u8; 4096];
    for i in 0..2000u64 {
        f.write_all_at(&page, (i % 256) * 4096).unwrap();
        let t = Instant::now();
        f.sync_data().unwrap();
        h.record(t.elapsed().as_micros() as u64).unwrap();
    }
    println!("fdatasync after a 4 KiB write: {}", pct(&h));
    let _ = std::fs::remove_file(path);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = fresh(base, "commit");
    let (store, _e) = open(&dir);
    let mut h = Histogram::<u64>::new(3).unwrap();
    rt.block_on(async {
        for k in 0..2000u64 {
            let mut b = batch(k * BATCH, now0().plus_millis(-3_600_000));
            b.truncate(1);
            let t = Instant::now();
            store.records(b).await.unwrap();
            h.record(t.elapsed().as_micros() as u64).unwrap();
        }
    });
    println!(
        "one-record request through the writer (one commit each): {}",
        pct(&h)
    );
}

/// `tasks` concurrent writers, each sending batches of 500 back to back.
fn ingest(base: &Path, tasks: u64, residents: u64) {
    let dir = fresh(base, &format!("ingest-{tasks}"));
    let (store, engine) = open(&dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        store
            .command(Command::Register((0..residents).map(resident).collect()))
            .await
            .unwrap();
    });
    let batches_per_task = (400 / tasks).max(6);
    let total = tasks * batches_per_task * BATCH;
    let at = now0().plus_millis(-3_600_000);
    let before = store.stats();
    let started = Instant::now();
    let hist = rt.block_on(async {
        let mut handles = Vec::new();
        for t in 0..tasks {
            let store = store.clone();
            handles.push(tokio::spawn(async move {
                let mut h = Histogram::<u64>::new(3).unwrap();
                for b in 0..batches_per_task {
                    let first = (t * batches_per_task + b) * BATCH;
                    let items = batch(first, at);
                    let s = Instant::now();
                    let out = store.records(items).await.unwrap();
                    h.record(s.elapsed().as_micros() as u64).unwrap();
                    assert!(
                        out.verdicts
                            .iter()
                            .all(|v| matches!(v, Verdict::Accepted { .. }))
                    );
                }
                h
            }));
        }
        let mut all = Histogram::<u64>::new(3).unwrap();
        for h in handles {
            all.add(h.await.unwrap()).unwrap();
        }
        all
    });
    let secs = started.elapsed().as_secs_f64();
    let after = store.stats();
    assert_eq!(engine.read().record_count(), total);
    let commits = after.commits - before.commits;
    println!(
        "ingest, {tasks:>2} writers: {total} records in {secs:.2} s = {:.0} records/s; {} commits, {:.1} batches/commit; per batch {}",
        total as f64 / secs,
        commits,
        (after.batches - before.batches) as f64 / commits as f64,
        pct(&hist)
    );
    let ms = |a: Duration, b: Duration| a.saturating_sub(b).as_secs_f64() * 1000.0;
    println!(
        "    writer time: judge {:.0} ms, insert {:.0} ms, commit {:.0} ms, apply {:.0} ms",
        ms(after.judge, before.judge),
        ms(after.insert, before.insert),
        ms(after.commit, before.commit),
        ms(after.apply, before.apply)
    );
}

/// Writes `n` residents and `n` records through the store, then times a
/// cold open (replay) into a fresh engine.
fn replay(base: &Path, n: u64) {
    let dir = fresh(base, &format!("replay-{n}"));
    {
        let (store, _engine) = open(&dir);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let t = Instant::now();
        // Register files of at most 1 M rows, as an import would send them.
        let mut first = 0;
        while first < n {
            let last = (first + 1_000_000).min(n);
            store
                .command_blocking(Command::Register((first..last).map(resident).collect()))
                .unwrap();
            first = last;
        }
        println!("wrote {n} residents in {:.1} s", t.elapsed().as_secs_f64());
        let t = Instant::now();
        rt.block_on(async {
            let at = now0().plus_millis(-3_600_000);
            let mut handles = Vec::new();
            for w in 0..8 {
                let store = store.clone();
                handles.push(tokio::spawn(async move {
                    let mut b = w;
                    while b * BATCH < n {
                        store.records(batch(b * BATCH, at)).await.unwrap();
                        b += 8;
                    }
                }));
            }
            for h in handles {
                h.await.unwrap();
            }
        });
        println!("wrote {n} records in {:.1} s", t.elapsed().as_secs_f64());
    }
    let size: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    println!("store on disk: {:.0} MiB", size as f64 / 1_048_576.0);
    let engine = timed_open(&dir);
    assert_eq!(engine.read().record_count(), n);
    assert_eq!(engine.read().resident_count(), n);
    std::io::stdout().flush().unwrap();
    if std::env::var_os("KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A cold open of `dir` into a fresh engine: the time until the store
/// answers (replay), then until its integrity check, which may run on after
/// the open, has passed (when the first write can commit).
fn timed_open(dir: &Path) -> SharedEngine {
    let t = Instant::now();
    let (store, engine) = open(dir);
    let opened = t.elapsed();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let check = rt.block_on(store.checked()).unwrap();
    let checked = t.elapsed();
    let s = store.replay_stats();
    println!(
        "open {}: {:.2} s (replay {:.2} s of which engine.apply {:.2} s; {} events); checked at {:.2} s (quick_check {:.2} s); {} residents, {} records",
        dir.display(),
        opened.as_secs_f64(),
        s.replay.as_secs_f64(),
        s.apply.as_secs_f64(),
        s.events,
        checked.as_secs_f64(),
        check.as_secs_f64(),
        engine.read().resident_count(),
        engine.read().record_count()
    );
    drop(store);
    engine
}

fn main() {
    let base = PathBuf::from(std::env::var("DIR").unwrap_or_else(|_| "target/store-load".into()));
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("fsync") => fsync(&base),
        Some("ingest") => {
            let residents = std::env::var("RESIDENTS").map_or(100_000, |s| s.parse().unwrap());
            for t in &args[1..] {
                ingest(&base, t.parse().unwrap(), residents);
            }
        }
        Some("replay") => {
            for n in &args[1..] {
                replay(&base, n.parse().unwrap());
            }
        }
        Some("open") => {
            for d in &args[1..] {
                timed_open(Path::new(d));
            }
        }
        _ => eprintln!("usage: store_load fsync | ingest TASKS... | replay N... | open DIR..."),
    }
}
