//! `rollcall load`: the round-day simulator pointed at any running server,
//! as a load generator. Two modes:
//!
//! - `ingest`: scanners posting batches of records (`POST /v1/records`) of a
//!   city's people into fresh pooled tubes, at a set rate or flat out, from
//!   `--concurrency` connections;
//! - `gate`: venue gates asking `GET /v1/status/{id}` for random people of the city.
//!
//! It reports throughput, latency percentiles from an HDR histogram (per
//! request; at a set rate measured from each request's scheduled start, so a
//! stalled server cannot hide its queueing), and errors by status and code.
//! The progress display shows only on a terminal. Talks HTTP only; depends
//! on `cli::sim` and `synth`.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::sim::{self, Api, thousands};
use crate::domain::Timestamp;

/// What to load the server with.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `POST /v1/records` in batches (a scanner token, or an admin token with `--site`).
    Ingest,
    /// `GET /v1/status/{id}` (a gate or admin token).
    Gate,
}

/// Arguments of `rollcall load`.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// Base URL of the server, e.g. `http://127.0.0.1:8080`.
    #[arg(long)]
    pub target: String,
    /// Bearer token: a scanner's for ingest (or an admin's with `--site`), a gate's for lookups.
    #[arg(long)]
    pub token: String,
    /// `ingest` (records) or `gate` (status lookups).
    #[arg(long, value_enum, default_value_t = Mode::Ingest)]
    pub mode: Mode,
    /// Records per second (ingest) or lookups per second (gate). Without it, flat out.
    #[arg(long, conflicts_with = "flat_out")]
    pub rate: Option<u64>,
    /// As fast as the server answers (the default when no `--rate` is given).
    #[arg(long)]
    pub flat_out: bool,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Records per request (ingest).
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// The city's people: a `register.csv` or one ID per line. Without it, the
    /// city `rollcall gen --residents N --seed S` makes.
    #[arg(long)]
    pub ids: Option<PathBuf>,
    /// Residents of the generated city (without `--ids`).
    #[arg(long, default_value_t = crate::synth::DEFAULT_RESIDENTS)]
    pub residents: u64,
    /// Seed of the generated city (without `--ids`), and of the random choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The site of every record, for an admin token (a scanner's site comes from its token).
    #[arg(long)]
    pub site: Option<String>,
    /// Only this share of the city, chosen by a hash of the ID (the same people
    /// in every run and in `benches/compare/`).
    #[arg(long, default_value_t = 1.0)]
    pub fraction: f64,
    /// Ingest: send each chosen person once, then stop (or at `--duration`).
    #[arg(long)]
    pub once: bool,
    /// Ingest: people in one tube.
    #[arg(long, default_value_t = 10)]
    pub pool: usize,
    /// Ingest: `collected_at` falls within this many hours before the start,
    /// along the daily curve.
    #[arg(long, default_value_t = 8.0)]
    pub spread_hours: f64,
    /// Print the report as one line of JSON (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
}

impl LoadArgs {
    /// Defaults for a run against `target` with `token` (tests, scripts).
    pub fn new(target: &str, token: &str, mode: Mode) -> LoadArgs {
        LoadArgs {
            target: target.to_owned(),
            token: token.to_owned(),
            mode,
            rate: None,
            flat_out: true,
            duration: 10.0,
            batch: 500,
            concurrency: 8,
            ids: None,
            residents: crate::synth::DEFAULT_RESIDENTS,
            seed: 1,
            site: None,
            fraction: 1.0,
            once: false,
            pool: 10,
            spread_hours: 8.0,
            json: false,
        }
    }
}

/// Latency percentiles of one run, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub mode: Mode,
    pub target: String,
    pub concurrency: usize,
    /// Records per request (ingest) or 1 (gate).
    pub batch: usize,
    /// The asked rate per second, `None` when flat out.
    pub rate: Option<u64>,
    pub elapsed_s: f64,
    /// Requests answered 2xx.
    pub ok_requests: u64,
    /// Requests answered otherwise, or not at all.
    pub failed_requests: u64,
    /// Records sent in successful requests (ingest) or lookups answered (gate).
    pub items: u64,
    /// `items` per second.
    pub items_per_s: f64,
    pub requests_per_s: f64,
    pub latency: Latency,
    /// Ingest: the server's verdicts, summed over successful requests.
    pub accepted: u64,
    pub duplicates: u64,
    pub unregistered: u64,
    /// Ingest: refused records by code.
    pub rejected: BTreeMap<String, u64>,
    /// Failed requests by `status code` (or `transport …`).
    pub errors: BTreeMap<String, u64>,
    /// Gate: answers by colour.
    pub colors: BTreeMap<String, u64>,
}

impl LoadReport {
    /// Failed requests plus refused records.
    pub fn error_count(&self) -> u64 {
        self.failed_requests + self.rejected.values().sum::<u64>()
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (unit, per) = match self.mode {
            Mode::Ingest => ("records", format!("batches of {}", self.batch)),
            Mode::Gate => ("lookups", "one ID per request".to_owned()),
        };
        let pace = self.rate.map_or_else(
            || "flat out".to_owned(),
            |r| format!("at {} {unit}/s", thousands(r)),
        );
        writeln!(
            f,
            "{:?} → {}: {:.2} s, concurrency {}, {per}, {pace}",
            self.mode, self.target, self.elapsed_s, self.concurrency
        )?;
        writeln!(
            f,
            "  throughput  {} {unit}/s ({:.1} requests/s)",
            thousands(self.items_per_s.round() as u64),
            self.requests_per_s
        )?;
        let l = &self.latency;
        writeln!(
            f,
            "  latency     p50 {:.2} ms · p99 {:.2} ms · p99.9 {:.2} ms · max {:.2} ms ({} requests{})",
            l.p50_ms,
            l.p99_ms,
            l.p999_ms,
            l.max_ms,
            thousands(self.ok_requests + self.failed_requests),
            if self.rate.is_some() {
                ", from each request's scheduled start"
            } else {
                ""
            }
        )?;
        match self.mode {
            Mode::Ingest => {
                let rejected: u64 = self.rejected.values().sum();
                write!(
                    f,
                    "  records     {} sent · {} accepted · {} duplicates · {} unregistered · {} rejected",
                    thousands(self.items),
                    thousands(self.accepted),
                    thousands(self.duplicates),
                    thousands(self.unregistered),
                    thousands(rejected)
                )?;
                for (code, n) in &self.rejected {
                    write!(f, " ({code} ×{})", thousands(*n))?;
                }
                writeln!(f)?;
            }
            Mode::Gate => {
                write!(f, "  colours    ")?;
                for (c, n) in &self.colors {
                    write!(f, " {c} {}", thousands(*n))?;
                }
                writeln!(f)?;
            }
        }
        if self.errors.is_empty() {
            write!(f, "  errors      none")
        } else {
            write!(f, "  errors      {}:", thousands(self.failed_requests))?;
            for (k, n) in &self.errors {
                write!(f, " {k} ×{}", thousands(*n))?;
            }
            Ok(())
        }
    }
}

/// `rollcall load`: runs, then prints the report.
pub fn run(args: &LoadArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = rt.block_on(execute(args, std::io::stderr().is_terminal()))?;
    if args.json {
        // One line, so scripts can collect runs as JSON lines.
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{report}");
    }
    anyhow::ensure!(
        report.ok_requests > 0 || report.failed_requests == 0,
        "no request succeeded"
    );
    Ok(())
}

/// IDs as fixed 18-byte arrays: ten million of them fit in 180 MB.
type Id = [u8; 18];

fn id_str(id: &Id) -> &str {
    std::str::from_utf8(id).unwrap_or_default()
}

/// The people to draw from, filtered by `--fraction`, in city order.
fn people(args: &LoadArgs) -> anyhow::Result<Vec<Id>> {
    let mut out = Vec::new();
    let mut push = |s: &str| {
        if let Ok(id) = <Id>::try_from(s.as_bytes())
            && sim::selected(s, args.fraction)
        {
            out.push(id);
        }
    };
    match &args.ids {
        Some(path) => {
            let file =
                std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            let reader = std::io::BufReader::with_capacity(1 << 20, file);
            for (i, line) in reader.lines().enumerate() {
                let line = line.with_context(|| format!("reading {}", path.display()))?;
                if i == 0 && line.starts_with("person_id") {
                    continue;
                }
                push(line.split(',').next().unwrap_or_default().trim());
            }
        }
        None => {
            for row in crate::synth::city(args.residents, args.seed) {
                push(&row.person_id.to_string());
            }
        }
    }
    anyhow::ensure!(
        !out.is_empty(),
        "no people to draw from (check --ids, --residents and --fraction)"
    );
    Ok(out)
}

/// What one worker saw; merged at the end.
struct Tally {
    hist: Histogram<u64>,
    ok: u64,
    failed: u64,
    items: u64,
    accepted: u64,
    duplicates: u64,
    unregistered: u64,
    rejected: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    colors: BTreeMap<String, u64>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            // Microseconds, 1 µs to 10 min, 3 significant figures.
            hist: Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds"),
            ok: 0,
            failed: 0,
            items: 0,
            accepted: 0,
            duplicates: 0,
            unregistered: 0,
            rejected: BTreeMap::new(),
            errors: BTreeMap::new(),
            colors: BTreeMap::new(),
        }
    }

    fn merge(&mut self, o: Tally) {
        self.hist
            .add(&o.hist)
            .expect("histograms of the same bounds");
        self.ok += o.ok;
        self.failed += o.failed;
        self.items += o.items;
        self.accepted += o.accepted;
        self.duplicates += o.duplicates;
        self.unregistered += o.unregistered;
        for (m, o) in [
            (&mut self.rejected, o.rejected),
            (&mut self.errors, o.errors),
            (&mut self.colors, o.colors),
        ] {
            for (k, n) in o {
                *m.entry(k).or_default() += n;
            }
        }
    }

    fn error(&mut self, key: String) {
        self.failed += 1;
        *self.errors.entry(key).or_default() += 1;
    }
}

#[derive(Deserialize)]
struct BatchAnswer {
    accepted: u64,
    duplicates: u64,
    #[serde(default)]
    unregistered: u64,
    #[serde(default)]
    rejected: Vec<RejectedItem>,
}

#[derive(Deserialize)]
struct RejectedItem {
    code: String,
}

#[derive(Deserialize)]
struct StatusAnswer {
    color: String,
}

/// What every worker shares.
struct Shared {
    args: LoadArgs,
    people: Vec<Id>,
    api: Api,
    /// Next request number; workers claim them (a counter, not a queue: the
    /// number alone says which people and which scheduled start).
    next: AtomicU64,
    /// Items answered so far, for the progress display.
    done: AtomicU64,
    started: Instant,
    ends: Instant,
    /// Seconds between scheduled requests, when paced.
    interval: Option<f64>,
    /// Ingest: `collected_at` values along the daily curve, made once.
    times: Vec<String>,
    tag: String,
}

/// Runs the load and returns its report. `progress` shows an indicatif bar
/// on stderr (callers pass whether stderr is a terminal).
pub async fn execute(args: &LoadArgs, progress: bool) -> anyhow::Result<LoadReport> {
    anyhow::ensure!(args.duration > 0.0, "--duration must be positive");
    anyhow::ensure!(args.concurrency >= 1, "--concurrency must be at least 1");
    anyhow::ensure!(
        (1..=10_000).contains(&args.batch),
        "--batch must be 1 to 10,000"
    );
    anyhow::ensure!(args.pool >= 1, "--pool must be at least 1");
    anyhow::ensure!(
        args.fraction > 0.0 && args.fraction <= 1.0,
        "--fraction must be in (0, 1]"
    );
    let people = {
        let a = args.clone();
        tokio::task::spawn_blocking(move || people(&a)).await??
    };
    let per_request = match args.mode {
        Mode::Ingest => args.batch as f64,
        Mode::Gate => 1.0,
    };
    let interval = match args.rate {
        Some(0) => anyhow::bail!("--rate must be positive"),
        Some(r) => Some(per_request / r as f64),
        None => None,
    };
    let now = Timestamp::from_datetime(chrono::Utc::now()).as_millis();
    let spread = (args.spread_hours * 3_600_000.0) as i64;
    let mut rng = StdRng::seed_from_u64(args.seed);
    let times = (0..4096)
        .map(|_| {
            let back = ((1.0 - sim::curve_point(&mut rng)) * spread as f64) as i64;
            Timestamp::from_millis((now - back - 60_000) / 1000 * 1000).to_rfc3339()
        })
        .collect();
    let started = Instant::now();
    let shared = Arc::new(Shared {
        args: args.clone(),
        people,
        api: Api::new(&args.target, args.concurrency)?,
        next: AtomicU64::new(0),
        done: AtomicU64::new(0),
        started,
        ends: started + Duration::from_secs_f64(args.duration),
        interval,
        times,
        tag: sim::run_tag(),
    });

    let (bar, ticker) = progress_display(&shared, progress);

    let workers: Vec<_> = (0..args.concurrency)
        .map(|w| {
            let shared = shared.clone();
            tokio::spawn(async move { worker(&shared, w as u64).await })
        })
        .collect();
    let mut tally = Tally::new();
    for w in workers {
        tally.merge(w.await.context("a load worker panicked")?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    ticker.abort();
    bar.finish_and_clear();

    Ok(report(args, tally, elapsed))
}

/// The progress bar (hidden unless `show`) and the task that updates it.
fn progress_display(
    shared: &Arc<Shared>,
    show: bool,
) -> (ProgressBar, tokio::task::JoinHandle<()>) {
    let bar = if show {
        let bar = ProgressBar::with_draw_target(
            Some((shared.args.duration * 1000.0) as u64),
            ProgressDrawTarget::stderr(),
        );
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {elapsed} / {msg}")
                .expect("a valid progress template"),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let ticker = {
        let (bar, shared) = (bar.clone(), shared.clone());
        tokio::spawn(async move {
            let unit = match shared.args.mode {
                Mode::Ingest => "records",
                Mode::Gate => "lookups",
            };
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let secs = shared.started.elapsed().as_secs_f64();
                let done = shared.done.load(Ordering::Relaxed);
                bar.set_position((secs * 1000.0) as u64);
                bar.set_message(format!(
                    "{} {unit} ({}/s)",
                    thousands(done),
                    thousands((done as f64 / secs.max(1e-3)) as u64)
                ));
            }
        })
    };
    (bar, ticker)
}

fn report(args: &LoadArgs, tally: Tally, elapsed: f64) -> LoadReport {
    let h = &tally.hist;
    let ms = |v: u64| v as f64 / 1000.0;
    let latency = if h.is_empty() {
        Latency::default()
    } else {
        Latency {
            p50_ms: ms(h.value_at_quantile(0.50)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    };
    LoadReport {
        mode: args.mode,
        target: args.target.clone(),
        concurrency: args.concurrency,
        batch: if args.mode == Mode::Ingest {
            args.batch
        } else {
            1
        },
        rate: args.rate,
        elapsed_s: elapsed,
        ok_requests: tally.ok,
        failed_requests: tally.failed,
        items: tally.items,
        items_per_s: tally.items as f64 / elapsed,
        requests_per_s: (tally.ok + tally.failed) as f64 / elapsed,
        latency,
        accepted: tally.accepted,
        duplicates: tally.duplicates,
        unregistered: tally.unregistered,
        rejected: tally.rejected,
        errors: tally.errors,
        colors: tally.colors,
    }
}

/// One connection's loop: claims request numbers until the time is up (or,
/// with `--once`, the people run out), sends, and tallies the answers.
async fn worker(s: &Shared, w: u64) -> Tally {
    let mut tally = Tally::new();
    let mut rng = StdRng::seed_from_u64(s.args.seed ^ (w + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut body = String::new();
    loop {
        let k = s.next.fetch_add(1, Ordering::Relaxed);
        let scheduled = match s.interval {
            Some(iv) => {
                let at = s.started + Duration::from_secs_f64(iv * k as f64);
                if at >= s.ends {
                    break;
                }
                tokio::time::sleep_until(at.into()).await;
                at
            }
            None => Instant::now(),
        };
        if Instant::now() >= s.ends {
            break;
        }
        let request = match s.args.mode {
            Mode::Ingest => {
                let Some(items) = ingest_body(s, k, &mut body) else {
                    break;
                };
                let rb = s
                    .api
                    .client()
                    .post(s.api.url("/v1/records"))
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(std::mem::take(&mut body));
                (rb, items)
            }
            Mode::Gate => {
                let id = id_str(&s.people[rng.random_range(0..s.people.len())]);
                (
                    s.api.client().get(s.api.url(&format!("/v1/status/{id}"))),
                    1,
                )
            }
        };
        let (rb, items) = request;
        let answer = match rb.bearer_auth(&s.args.token).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                r.bytes().await.map(|b| (status, b))
            }
            Err(e) => Err(e),
        };
        tally
            .hist
            .saturating_record(scheduled.elapsed().as_micros().max(1) as u64);
        let unreachable = answer.is_err();
        if tally.answer(s.args.mode, items, answer) {
            s.done.fetch_add(items, Ordering::Relaxed);
        } else if unreachable {
            // A server that is down would otherwise be hammered in a tight loop.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    tally
}

/// Writes request `k`'s batch of records into `body`; returns how many, or
/// `None` when `--once` has sent everyone.
fn ingest_body(s: &Shared, k: u64, body: &mut String) -> Option<u64> {
    let n_people = s.people.len() as u64;
    let batch = s.args.batch as u64;
    let from = k * batch;
    if s.args.once && from >= n_people {
        return None;
    }
    let count = if s.args.once {
        batch.min(n_people - from)
    } else {
        batch
    };
    body.clear();
    body.push_str(r#"{"records":["#);
    for j in 0..count {
        if j > 0 {
            body.push(',');
        }
        let id = id_str(&s.people[((from + j) % n_people) as usize]);
        // Request numbers are unique, so these tubes are new city-wide.
        let tube = format!("L{}{k:x}-{}", s.tag, j / s.args.pool as u64);
        let at = &s.times[((k * 7919 + j * 31) % s.times.len() as u64) as usize];
        sim::push_record(body, id, &tube, at, s.args.site.as_deref());
    }
    body.push_str("]}");
    Some(count)
}

impl Tally {
    /// Adds one answer; returns whether it was a success.
    fn answer(
        &mut self,
        mode: Mode,
        items: u64,
        answer: Result<(u16, bytes::Bytes), reqwest::Error>,
    ) -> bool {
        match answer {
            Ok((200, bytes)) => {
                self.ok += 1;
                self.items += items;
                match mode {
                    Mode::Ingest => match serde_json::from_slice::<BatchAnswer>(&bytes) {
                        Ok(a) => {
                            self.accepted += a.accepted;
                            self.duplicates += a.duplicates;
                            self.unregistered += a.unregistered;
                            for r in a.rejected {
                                *self.rejected.entry(r.code).or_default() += 1;
                            }
                        }
                        Err(_) => {
                            *self.rejected.entry("unreadable_answer".into()).or_default() += items;
                        }
                    },
                    Mode::Gate => {
                        let c = serde_json::from_slice::<StatusAnswer>(&bytes)
                            .map_or_else(|_| "unreadable_answer".to_owned(), |a| a.color);
                        *self.colors.entry(c).or_default() += 1;
                    }
                }
                true
            }
            Ok((status, bytes)) => {
                let code = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                self.error(format!("{status} {code}").trim_end().to_owned());
                false
            }
            Err(e) => {
                let kind = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "other"
                };
                self.error(format!("transport {kind}"));
                false
            }
        }
    }
}
