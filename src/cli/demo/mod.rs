//! `rollcall demo`: the main job end to end on the embedded default (no
//! Redis, a temporary data directory). It starts the server in-process,
//! loads the fixture city (`fixtures/chongwen/`, built into the binary) over
//! HTTP with the admin token, runs a simulated round day over HTTP in
//! compressed time (`cli::sim`), lets the deadline pass so the server closes
//! the round by itself, and prints what an official wants to see; it ends
//! with the next day's round, so the campaign view and the repeat missers
//! have two rounds to show.
//!
//! [`run_demo`] returns a [`DemoSummary`] as well as printing it, so the
//! integration test can check every printed number against the engine.
//! Depends on `http` (to start the server), `cli::sim`; talks to the server
//! only through the API, like any client.
//!
//! [`run_demo`] tells the story step by step, one function a step:
//! - `steps.rs`: the first day — the server starts, the city is loaded and
//!   the tokens issued, the day's uploads (the round created and people
//!   exempted on the way), the close at the deadline, the lab, late syncs
//!   and make-ups;
//! - `views.rs`: what gates answer and what the official pulls, and the
//!   counts the plan expects;
//! - `next_day.rs`: the next day's round, and the upload helpers both days use;
//! - `report.rs`: the printed summary.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;

use super::sim::{self, Counts, thousands};
use crate::http::Running;

/// The fixture city, built into the binary so `rollcall demo` runs from any directory.
pub const REGISTER_CSV: &str = include_str!("../../../fixtures/chongwen/register.csv");
pub const HEADS_CSV: &str = include_str!("../../../fixtures/chongwen/heads.csv");
pub const SITES_CSV: &str = include_str!("../../../fixtures/chongwen/sites.csv");

const HOUR_MS: i64 = 3_600_000;
/// The simulated day: the round's window opened this long before the demo started.
const WINDOW_HOURS: i64 = 10;

/// Arguments of `rollcall demo`.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Stop after printing the summary instead of serving until Ctrl-C.
    #[arg(long)]
    pub exit: bool,
    /// Data directory to keep (default: a fresh temporary one, removed on exit).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Address to serve on (`127.0.0.1:0` picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Seed of the simulated day (who turns up when, which sites go offline).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Scanners upload what they scanned every this many minutes of the day.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(i64).range(1..=600))]
    pub upload_minutes: i64,
}

impl Default for DemoArgs {
    fn default() -> Self {
        DemoArgs {
            exit: true,
            data: None,
            listen: "127.0.0.1:0".into(),
            seed: 1,
            upload_minutes: 10,
        }
    }
}

/// Uploads of one phase and the server's verdicts on them.
#[derive(Debug, Clone, Default)]
pub struct Uploads {
    /// Requests sent (a resent upload counts twice).
    pub requests: u64,
    /// Uploads sent twice, as after a lost response.
    pub resent: u64,
    /// Items sent, resends included.
    pub items: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub unregistered: u64,
    /// Refused items by code.
    pub rejected: BTreeMap<String, u64>,
    /// Records accepted in on-time uploads answered only after the deadline
    /// (they count as late; only on a machine too slow for the set deadline).
    pub overran: u64,
    pub seconds: f64,
}

impl Uploads {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

/// A site that lost its connection for a stretch of the day.
#[derive(Debug, Clone)]
pub struct OfflineSite {
    pub site: String,
    pub from: String,
    pub until: String,
    /// Records it held and synced after the close.
    pub records: u64,
}

/// What the lab sent.
#[derive(Debug, Clone, Default)]
pub struct Lab {
    pub tubes: u64,
    pub positive_tube: String,
    pub positive_members: u64,
    pub accepted: u64,
    /// Results for tubes whose records had not arrived yet (offline sites).
    pub unmatched: u64,
}

/// One line of a coverage table.
#[derive(Debug, Clone)]
pub struct AreaCounts {
    pub area: String,
    pub counts: Counts,
}

/// The first people on the longest missing list, as an official sees them.
#[derive(Debug, Clone)]
pub struct ListedPerson {
    pub person_id: String,
    pub name: String,
    pub household: String,
    pub head: String,
}

/// What a gate answered for one person the demo knows the story of.
#[derive(Debug, Clone)]
pub struct GateCheck {
    pub who: &'static str,
    pub person_id: String,
    pub color: String,
    pub reasons: Vec<String>,
}

/// Everything `rollcall demo` printed, as numbers.
#[derive(Debug, Clone)]
pub struct DemoSummary {
    pub url: String,
    pub admin_token: String,
    pub official_token: String,
    /// The round's scope and the official's area: the whole subdistrict.
    pub subdistrict: String,
    pub data_dir: PathBuf,
    pub temporary: bool,
    pub residents: u64,
    pub heads: u64,
    pub sites: usize,
    pub round_id: String,
    pub round_name: String,
    pub opens_at: String,
    pub deadline: String,
    pub closed_at: String,
    pub exemptions: u64,
    pub on_time: Uploads,
    pub offline: Vec<OfflineSite>,
    /// The round's counts right after it closed by itself.
    pub at_close: Counts,
    /// Codes the close turned yellow: everyone missing when it closed.
    pub flipped: u64,
    pub lab: Lab,
    pub late_sync: Uploads,
    pub make_ups: Uploads,
    /// The round's counts at the end (`GET /v1/rounds/{id}`).
    pub counts: Counts,
    /// What the simulator's plan says the counts must be; `None` when the
    /// data directory held earlier rounds whose records may overlap.
    pub expected: Option<Counts>,
    /// Coverage per community (`coverage?depth=1`).
    pub communities: Vec<AreaCounts>,
    /// The ten grids with the most people missing (`coverage?depth=2`).
    pub top_grids: Vec<AreaCounts>,
    /// The first people on the longest grid's missing list.
    pub top_list: Vec<ListedPerson>,
    pub top_list_total: u64,
    /// In-scope people by the hour of their first sample (`progress`).
    pub progress: Vec<(String, u64)>,
    pub gates: Vec<GateCheck>,
    /// The next day's round, so the campaign has more than one.
    pub next: NextRound,
    pub seconds: f64,
}

/// The second round the demo ends with: the next day's, over the same
/// subdistrict, compressed into seconds like the first.
#[derive(Clone, Debug, Default)]
pub struct NextRound {
    pub round_id: String,
    pub round_name: String,
    /// Its counts once the official closed it.
    pub counts: Counts,
    /// Records accepted for it (everyone sampled the first day, save one in 25).
    pub sent: u64,
    /// `GET /v1/repeat-missing?last=2&min=2`: still flagged in both rounds.
    pub repeat_missers: u64,
    /// Door-knock messages (`group_by=head&format=text`) for the longest
    /// grid's list, and the first of them.
    pub messages: usize,
    pub first_message: String,
}

impl DemoSummary {
    /// Whether the server's counts are what the plan says they must be.
    pub fn matches_plan(&self) -> Option<bool> {
        self.expected.map(|e| {
            e.in_scope == self.counts.in_scope
                && e.sampled == self.counts.sampled
                && e.made_up == self.counts.made_up
                && e.exempt == self.counts.exempt
                && e.missing == self.counts.missing
                && (self.counts.late == e.late || self.on_time.overran > 0)
        })
    }
}

/// A data directory the demo made and removes when dropped.
struct DataDir {
    path: PathBuf,
    remove: bool,
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A demo that has run: the server still serving, and what it printed.
pub struct Demo {
    pub running: Running,
    pub summary: DemoSummary,
    data: DataDir,
}

impl Demo {
    /// Stops the server and removes a temporary data directory.
    pub async fn stop(self) {
        self.running.stop().await;
        drop(self.data);
    }
}

/// `rollcall demo`.
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let demo = run_demo(args, true).await?;
        println!("{}", demo.summary);
        if !args.exit {
            println!("Serving until Ctrl-C.");
            // SIGTERM too, as `serve`: the HTTP server stops on it, and the
            // demo must not linger after it serving nothing.
            crate::cli::serve::shutdown_signal().await?;
            eprintln!("stopping…");
        }
        demo.stop().await;
        Ok(())
    })
}

/// Prints one step of the demo to stderr as it happens.
macro_rules! say {
    ($on:expr, $($t:tt)*) => {
        if $on {
            eprintln!($($t)*);
        }
    };
}

// The steps, after `say!` so they can narrate with it.
mod next_day;
mod report;
mod steps;
mod views;

/// Starts the server and runs the round day, step by step; `narrate`
/// prints each step to stderr.
pub async fn run_demo(args: &DemoArgs, narrate: bool) -> anyhow::Result<Demo> {
    let started = Instant::now();
    let tag = sim::run_tag();
    let server = steps::start(args, narrate, &tag).await?;
    let (cast, loaded) = steps::load_city(&server.url, &server.admin, narrate).await?;
    let day = steps::the_day(&cast, args, &tag).await?;
    let closed = steps::wait_for_close(&cast, &day).await?;
    let (lab, positive) = steps::lab_reports(&cast, &day).await?;
    let after = steps::after_close(&cast, &day, &tag).await?;
    let gates = views::gates(&cast, &day, positive, &after).await?;
    let round_path = format!("/v1/rounds/{}", day.round_id);
    let views = views::official_views(&cast, &round_path).await?;
    let expected = views::expected(&cast, &day, &after, loaded.earlier_rounds);

    let next = next_day::next_day(
        &cast.api,
        &cast.official,
        &cast.scanners,
        &cast.city,
        &day.plan,
        &after.make_up_people,
        &cast.subdistrict,
        &tag,
        &views.grids,
    )
    .await?;
    say!(
        narrate,
        "  the next day: round {} closed, {} missing; {} people missed both rounds",
        next.round_id,
        thousands(next.counts.missing),
        thousands(next.repeat_missers)
    );

    let text = |key: &str| {
        views.final_round[key]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let summary = DemoSummary {
        round_name: text("name"),
        opens_at: text("opens_at"),
        deadline: text("deadline"),
        url: server.url,
        admin_token: server.admin,
        official_token: cast.official.clone(),
        subdistrict: cast.subdistrict.clone(),
        data_dir: server.data.path.clone(),
        temporary: server.data.remove,
        residents: loaded.residents,
        heads: loaded.heads,
        sites: cast.city.sites.len(),
        round_id: day.round_id,
        closed_at: closed.closed_at,
        exemptions: day.exemptions.len() as u64,
        on_time: day.on_time,
        offline: after.offline,
        flipped: closed.at_close.missing,
        at_close: closed.at_close,
        lab,
        late_sync: after.late_sync,
        make_ups: after.make_ups,
        counts: views.counts,
        expected,
        communities: views.communities,
        top_grids: views.grids,
        top_list: views.top_list,
        top_list_total: views.top_list_total,
        progress: views.progress,
        gates,
        next,
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok(Demo {
        running: server.running,
        summary,
        data: server.data,
    })
}
