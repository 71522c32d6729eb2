//! `rollcall sim campaign`: a campaign of daily rounds driven through the
//! real engine and store (in process, no HTTP) on a simulated clock, to
//! show that memory, the data directory and a restart stay bounded by the
//! 30-day window rather than growing with the campaign.
//!
//! Each day: a round over the whole city (08:00–20:00 Beijing time), about
//! 95% of the residents sampled along the daily curve into pooled tubes of
//! ten, a few uploads arriving after the close (late), the day's missing
//! making up the next day, a few exemptions, the scheduler's close, every
//! tube's result in the evening (a few positive pools), and a snapshot
//! (which lets retention purge the log). Every `--restart-every` days the
//! store is closed and reopened from the data directory, timed. Per day it
//! prints the process's resident memory (`VmRSS`), the data directory's
//! size, the newest snapshot's size and the restart time; `--json` prints
//! one object per day instead. `--svg FILE` draws memory and restart time.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use parking_lot::RwLock;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::domain::register::RegisterRow;
use crate::domain::{ExemptionReason, PersonId, TestResult, Timestamp, TubeId};
use crate::engine::clock::{Clock, ManualClock};
use crate::engine::{Command, Engine, Policy, RecordItem, ResultItem, SharedEngine};
use crate::store::{Store, StoreOptions};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
const BATCH: usize = 1000;
const POOL: usize = 10;

#[derive(clap::Args, Debug, Clone)]
pub struct CampaignArgs {
    /// Residents in the generated city.
    #[arg(long, default_value_t = 100_000)]
    pub residents: u64,
    /// Daily rounds.
    #[arg(long, default_value_t = 60)]
    pub days: u32,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Close and reopen the store every this many days.
    #[arg(long, default_value_t = 3)]
    pub restart_every: u32,
    /// The data directory (default: a temporary one, removed at the end).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// One JSON object per day instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Draw memory and restart time per day into this SVG file.
    #[arg(long)]
    pub svg: Option<PathBuf>,
}

/// One day's figures.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct DayFigures {
    pub day: u32,
    pub rss_bytes: u64,
    /// `RssAnon`: resident memory without file pages (a restart's integrity
    /// check reads the log through a memory map, which `VmRSS` counts
    /// while it runs).
    pub anon_bytes: u64,
    /// What the engine's tube storage (records and tubes) holds on the heap.
    pub tube_bytes: u64,
    /// Records inside the window the engine holds.
    pub records: u64,
    /// The day's snapshot: milliseconds the writer waited for the engine's
    /// lock, then spent copying the engine (the stall the snapshot adds),
    /// and spent encoding the copy beside the writes.
    pub wait_ms: f64,
    pub copy_ms: f64,
    pub encode_ms: f64,
    pub data_bytes: u64,
    pub snapshot_bytes: u64,
    /// The reopen's time, on the days the store was restarted.
    pub restart_s: Option<f64>,
}

pub fn run(args: &CampaignArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.residents > 0 && args.days > 0,
        "--residents and --days must be positive"
    );
    let tmp;
    let dir = match &args.data {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile_dir()?;
            tmp.clone()
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(campaign(args, &dir));
    if args.data.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let (days, register_bytes) = result?;
    if let Some(path) = &args.svg {
        std::fs::write(path, svg(&days, args))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let verdicts = verdicts(&days, register_bytes);
    if args.json {
        for d in &days {
            println!("{}", serde_json::to_string(d)?);
        }
    } else {
        println!("{verdicts}");
    }
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("rollcall-campaign-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn open(dir: &Path, clock: &Arc<ManualClock>) -> anyhow::Result<(Store, SharedEngine)> {
    let engine: SharedEngine = Arc::new(RwLock::new(Engine::new(
        Policy::default(),
        Engine::build_pool(2),
    )));
    let clock: Arc<dyn Clock> = clock.clone();
    let store = Store::open_with(
        dir,
        engine.clone(),
        clock,
        Arc::new(|_| 0),
        StoreOptions {
            // Snapshots are taken once a day below, on the simulated clock.
            snapshot_every: std::time::Duration::ZERO,
            ..StoreOptions::default()
        },
    )?;
    Ok((store, engine))
}

/// The days' figures, and the data directory's size right after the register import.
async fn campaign(args: &CampaignArgs, dir: &Path) -> anyhow::Result<(Vec<DayFigures>, u64)> {
    let mut rng = StdRng::seed_from_u64(args.seed);
    // Day 0, 07:00 Beijing time (23:00 UTC the day before).
    let start = Timestamp::parse("2022-04-01T07:00:00+08:00").expect("a valid time");
    let clock = ManualClock::new(start);
    let (mut store, mut engine) = open(dir, &clock)?;
    let rows: Vec<RegisterRow> = crate::synth::city(args.residents, args.seed).collect();
    let people: Vec<PersonId> = rows.iter().map(|r| r.person_id).collect();
    for chunk in rows.chunks(100_000) {
        store.command(Command::Register(chunk.to_vec())).await?;
    }
    drop(rows);
    let register_bytes = dir_bytes(dir)?;
    if !args.json {
        println!(
            "campaign: {} residents, {} days, data in {} (register {} MB)",
            args.residents,
            args.days,
            dir.display(),
            register_bytes / 1_000_000
        );
        println!(
            "day  rss_MB  anon_MB  tubes_MB  B/record  data_MB  snapshot_MB  wait_ms  copy_ms  encode_ms  restart_s  records_held"
        );
    }
    let mut out = Vec::new();
    let mut missed_yesterday: Vec<usize> = Vec::new();
    for day in 1..=args.days {
        let base = start.plus_millis(i64::from(day - 1) * DAY);
        let opens = base.plus_millis(HOUR);
        let deadline = opens.plus_millis(12 * HOUR);
        clock.set(base);
        // The city's top area (not a read guard held across the await below).
        let top = engine.read().register().nodes()[0].path.clone();
        store
            .command(Command::RoundCreate {
                name: format!("第{day}轮全员核酸"),
                scope: vec![top],
                opens_at: opens,
                deadline,
            })
            .await?;
        // A few exemptions: from today for three days.
        for _ in 0..(people.len() / 1000).max(1) {
            let p = people[rng.random_range(0..people.len())];
            store
                .command(Command::ExemptionCreate {
                    person_id: p,
                    reason: ExemptionReason::Away,
                    from: base,
                    until: base.plus_millis(3 * DAY),
                    note: String::new(),
                })
                .await?;
        }
        // Who comes: yesterday's missing first (their make-up), then 95%.
        let mut order: Vec<usize> = (0..people.len()).collect();
        order.shuffle(&mut rng);
        let cut = people.len() * 95 / 100;
        let (come, stay) = order.split_at(cut);
        let mut come: Vec<(i64, usize)> = come
            .iter()
            .chain(&missed_yesterday)
            .map(|&i| {
                let f = crate::cli::sim::curve_point(&mut rng);
                (opens.as_millis() + (f * 12.0 * HOUR as f64) as i64, i)
            })
            .collect();
        come.sort_unstable();
        come.dedup_by_key(|c| c.1);
        missed_yesterday = stay.to_vec();
        let mut late = Vec::new();
        let mut tubes = 0u64;
        let people = &people;
        for (b, chunk) in come.chunks(BATCH).enumerate() {
            let items: Vec<RecordItem> = chunk
                .chunks(POOL)
                .flat_map(|pool| {
                    tubes += 1;
                    let tube = TubeId::parse(&format!("D{day:03}T{tubes:08}")).expect("valid");
                    pool.iter().map(move |&(at, i)| RecordItem {
                        person_id: people[i],
                        tube_id: tube.clone(),
                        collected_at: Timestamp::from_millis(at),
                        site: Arc::from("S01"),
                    })
                })
                .collect();
            // One batch in a hundred comes from a site that synced after the close.
            if b % 100 == 57 {
                late.push(items);
                continue;
            }
            let last = chunk.last().map_or(opens.as_millis(), |c| c.0);
            clock.set(Timestamp::from_millis(last + 5 * 60_000));
            store.records(items).await?;
        }
        // The scheduler's close, dated at the deadline.
        clock.set(deadline.plus_millis(1000));
        let id = engine.read().rounds().len() as u32;
        store
            .command(Command::RoundClose {
                id,
                at: Some(deadline),
            })
            .await?;
        clock.set(deadline.plus_millis(HOUR));
        for items in late {
            store.records(items).await?;
        }
        // Results at 22:00: one pool in two thousand positive.
        clock.set(deadline.plus_millis(2 * HOUR));
        let results: Vec<ResultItem> = (1..=tubes)
            .map(|t| ResultItem {
                tube_id: TubeId::parse(&format!("D{day:03}T{t:08}")).expect("valid"),
                result: if rng.random_range(0..2000) == 0 {
                    TestResult::Positive
                } else {
                    TestResult::Negative
                },
                reported_at: clock.now(),
            })
            .collect();
        for chunk in results.chunks(BATCH) {
            store.results(chunk.to_vec()).await?;
        }
        clock.set(deadline.plus_millis(3 * HOUR));
        let snap = store.snapshot().await?;
        let mut restart_s = None;
        if args.restart_every > 0 && day % args.restart_every == 0 {
            store.close().await;
            drop(store);
            drop(engine);
            let t = Instant::now();
            let (s, e) = open(dir, &clock)?;
            restart_s = Some(t.elapsed().as_secs_f64());
            store = s;
            engine = e;
        }
        let figures = DayFigures {
            day,
            rss_bytes: rss_bytes(),
            anon_bytes: status_kb("RssAnon:") * 1024,
            tube_bytes: engine.read().tube_heap_bytes() as u64,
            records: engine.read().record_count(),
            wait_ms: snap.lock_wait_us as f64 / 1000.0,
            copy_ms: snap.copy_us as f64 / 1000.0,
            encode_ms: snap.encode_us as f64 / 1000.0,
            data_bytes: dir_bytes(dir)?,
            snapshot_bytes: newest_snapshot_bytes(dir)?,
            restart_s,
        };
        if !args.json {
            println!(
                "{:>3}  {:>6}  {:>7}  {:>8}  {:>8.1}  {:>7}  {:>11}  {:>7.0}  {:>7.0}  {:>9.0}  {:>9}  {}",
                day,
                figures.rss_bytes / 1_000_000,
                figures.anon_bytes / 1_000_000,
                figures.tube_bytes / 1_000_000,
                figures.tube_bytes as f64 / figures.records.max(1) as f64,
                figures.data_bytes / 1_000_000,
                figures.snapshot_bytes / 1_000_000,
                figures.wait_ms,
                figures.copy_ms,
                figures.encode_ms,
                restart_s.map_or_else(|| "-".into(), |s| format!("{s:.2}")),
                figures.records
            );
        }
        out.push(figures);
    }
    store.close().await;
    Ok((out, register_bytes))
}

/// The summary line: the issue's three verdicts, measured on this run
/// (the last day against the middle one).
fn verdicts(days: &[DayFigures], register_bytes: u64) -> String {
    let last = days.last().expect("at least one day");
    let mid = &days[(days.len() / 2).saturating_sub(1)];
    let rss_ok = last.rss_bytes as f64 <= 1.1 * mid.rss_bytes as f64;
    let data_ok = last.data_bytes as f64 <= 1.1 * mid.data_bytes as f64 + register_bytes as f64;
    let restart = days.iter().rev().find_map(|d| d.restart_s);
    let restart_ok = restart.is_none_or(|s| s <= 2.0);
    let word = |ok: bool| if ok { "ok" } else { "OVER" };
    format!(
        "summary: memory day {} {} MB vs day {} {} MB: {}; data {} MB vs {} MB (+ register {} MB): {}; last restart {}: {}",
        last.day,
        last.rss_bytes / 1_000_000,
        mid.day,
        mid.rss_bytes / 1_000_000,
        word(rss_ok),
        last.data_bytes / 1_000_000,
        mid.data_bytes / 1_000_000,
        register_bytes / 1_000_000,
        word(data_ok),
        restart.map_or_else(|| "none".into(), |s| format!("{s:.2} s")),
        word(restart_ok),
    )
}

/// This process's resident memory (`VmRSS` in `/proc/self/status`).
pub fn rss_bytes() -> u64 {
    status_kb("VmRSS:") * 1024
}

/// A `kB` line of `/proc/self/status` (0 when missing).
fn status_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .unwrap_or(0)
}

fn dir_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut n = 0;
    for e in std::fs::read_dir(dir)? {
        let m = e?.metadata()?;
        if m.is_file() {
            n += m.len();
        }
    }
    Ok(n)
}

fn newest_snapshot_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut best: Option<(String, u64)> = None;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".rcsnap") && best.as_ref().is_none_or(|(b, _)| name > *b) {
            best = Some((name, e.metadata()?.len()));
        }
    }
    Ok(best.map_or(0, |b| b.1))
}

/// Memory (MB, left axis) and restart time (s, right axis) per day, as SVG.
pub fn svg(days: &[DayFigures], args: &CampaignArgs) -> String {
    let (w, h, pad) = (720.0, 360.0, 50.0);
    let n = days.len().max(2) as f64;
    let max_mb = days
        .iter()
        .map(|d| d.rss_bytes as f64 / 1e6)
        .fold(1.0, f64::max)
        * 1.1;
    let max_data = days
        .iter()
        .map(|d| d.data_bytes as f64 / 1e6)
        .fold(1.0, f64::max)
        * 1.1;
    let max_mb = max_mb.max(max_data);
    let max_s = days.iter().filter_map(|d| d.restart_s).fold(0.1, f64::max) * 1.2;
    let x = |i: usize| pad + (w - 2.0 * pad) * i as f64 / (n - 1.0);
    let y = |v: f64, max: f64| h - pad - (h - 2.0 * pad) * v / max;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{pad}" y="20">rollcall sim campaign: {} residents, {} daily rounds (seed {})</text>
<line x1="{pad}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/>
<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{b}" stroke="black"/>
<line x1="{r}" y1="{pad}" x2="{r}" y2="{b}" stroke="black"/>
<text x="5" y="{pad}">{:.0} MB</text><text x="{rl}" y="{pad}">{:.2} s</text>
<text x="{pad}" y="{lb}">day 1</text><text x="{rr}" y="{lb}">day {}</text>
"#,
        args.residents,
        days.len(),
        args.seed,
        max_mb,
        max_s,
        days.len(),
        b = h - pad,
        r = w - pad,
        rl = w - pad + 4.0,
        lb = h - pad + 16.0,
        rr = w - pad - 40.0,
    );
    let line = |pts: Vec<(f64, f64)>, colour: &str| {
        let p: Vec<String> = pts.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
        format!(
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>
"#,
            p.join(" ")
        )
    };
    s.push_str(&line(
        days.iter()
            .enumerate()
            .map(|(i, d)| (x(i), y(d.rss_bytes as f64 / 1e6, max_mb)))
            .collect(),
        "steelblue",
    ));
    s.push_str(&line(
        days.iter()
            .enumerate()
            .map(|(i, d)| (x(i), y(d.data_bytes as f64 / 1e6, max_mb)))
            .collect(),
        "seagreen",
    ));
    for (i, d) in days.iter().enumerate() {
        if let Some(r) = d.restart_s {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="firebrick"/>"#,
                x(i),
                y(r, max_s)
            );
        }
    }
    let _ = write!(
        s,
        r#"<text x="{pad}" y="{l1}" fill="steelblue">resident memory (VmRSS, MB, left)</text>
<text x="300" y="{l1}" fill="seagreen">data directory (MB, left)</text>
<text x="500" y="{l1}" fill="firebrick">restart (s, right)</text>
</svg>
"#,
        l1 = h - 12.0,
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_campaign_restarts_on_schedule_and_keeps_two_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let args = CampaignArgs {
            residents: 300,
            days: 4,
            seed: 7,
            restart_every: 2,
            data: Some(dir.path().to_owned()),
            json: true,
            svg: None,
        };
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (days, register) = rt.block_on(campaign(&args, dir.path())).unwrap();
        assert_eq!(days.len(), 4);
        let restarted: Vec<u32> = days
            .iter()
            .filter(|d| d.restart_s.is_some())
            .map(|d| d.day)
            .collect();
        assert_eq!(restarted, vec![2, 4]);
        assert!(register > 0);
        assert!(
            days.iter()
                .all(|d| d.rss_bytes > 0 && d.snapshot_bytes > 0 && d.data_bytes > 0)
        );
        let snaps = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "rcsnap")
            })
            .count();
        assert_eq!(snaps, 2);
        let picture = svg(&days, &args);
        assert!(picture.starts_with("<svg") && picture.contains("polyline"));
        assert!(verdicts(&days, register).starts_with("summary: memory day 4"));
    }
}
