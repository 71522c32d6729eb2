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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::future::join_all;
use serde_json::{Value, json};

use super::sim::{self, Api, City, Counts, DayConfig, DayPlan, Upload, thousands};
use crate::domain::Timestamp;
use crate::engine::clock::SystemClock;
use crate::http::{self, Running};
use crate::settings::{CacheTarget, Settings};

/// The fixture city, built into the binary so `rollcall demo` runs from any directory.
pub const REGISTER_CSV: &str = include_str!("../../fixtures/chongwen/register.csv");
pub const HEADS_CSV: &str = include_str!("../../fixtures/chongwen/heads.csv");
pub const SITES_CSV: &str = include_str!("../../fixtures/chongwen/sites.csv");

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
            tokio::signal::ctrl_c()
                .await
                .context("waiting for Ctrl-C")?;
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

/// Starts the server and runs the round day; `narrate` prints each step to stderr.
#[allow(clippy::too_many_lines)] // one story, told in order
pub async fn run_demo(args: &DemoArgs, narrate: bool) -> anyhow::Result<Demo> {
    let started = Instant::now();
    let tag = sim::run_tag();
    let data = match &args.data {
        Some(p) => DataDir {
            path: p.clone(),
            remove: false,
        },
        None => {
            let p =
                std::env::temp_dir().join(format!("rollcall-demo-{}-{tag}", std::process::id()));
            std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
            DataDir {
                path: p,
                remove: true,
            }
        }
    };
    let admin = http::auth::new_token();
    let mut settings = Settings::for_data(&data.path);
    settings.listen.clone_from(&args.listen);
    settings.cache = CacheTarget::InProcess;
    settings.admin_token = Some(admin.clone());
    let running = http::start(&settings, Arc::new(SystemClock))
        .await
        .context("starting the server")?;
    let url = format!("http://{}", running.addr);
    say!(
        narrate,
        "rollcall demo: serving {url} (data in {}, in-process status cache)",
        data.path.display()
    );

    let city = City::from_csv(REGISTER_CSV, Some(SITES_CSV))
        .context("reading the embedded fixture city")?;
    let api = Api::new(&url, 64)?;
    let body = |v: &str| v.as_bytes().to_vec();

    // The register and the heads, as an administrator would upload them.
    let t = Instant::now();
    let reg = api
        .post_raw("/v1/register", &admin, "text/csv", body(REGISTER_CSV))
        .await?
        .expect(200, "loading the register")?;
    let heads = api
        .post_raw("/v1/heads", &admin, "text/csv", body(HEADS_CSV))
        .await?
        .expect(200, "loading the heads")?;
    let residents = reg["residents"].as_u64().unwrap_or_default();
    say!(
        narrate,
        "  register: {} residents, {} heads ({:.1} s)",
        thousands(residents),
        thousands(heads["heads"].as_u64().unwrap_or_default()),
        t.elapsed().as_secs_f64()
    );
    let subdistrict = city
        .communities
        .first()
        .and_then(|c| c.split('/').next())
        .context("the fixture city has no communities")?
        .to_owned();

    // Tokens: one scanner per site, a lab, a gate, an official for the subdistrict.
    let mut scanners = Vec::with_capacity(city.sites.len());
    for s in &city.sites {
        scanners.push(
            api.token(&admin, &json!({"role": "scanner", "name": format!("{} scanner (demo)", s.id), "site": s.id}))
                .await?,
        );
    }
    let lab = api
        .token(&admin, &json!({"role": "lab", "name": "city lab (demo)"}))
        .await?;
    let gate = api
        .token(&admin, &json!({"role": "gate", "name": "mall gate (demo)"}))
        .await?;
    let official = api
        .token(
            &admin,
            &json!({"role": "official", "name": format!("{subdistrict} office (demo)"), "area": subdistrict}),
        )
        .await?;
    let earlier_rounds = api
        .get("/v1/rounds", &admin, &[])
        .await?
        .expect(200, "listing rounds")?["rounds"]
        .as_array()
        .map_or(0, Vec::len);

    // The day: the window opened ten hours ago; everything scanned so far
    // is uploaded now, in time order, compressed into seconds.
    let t0 = Timestamp::from_datetime(chrono::Utc::now()).as_millis() / 1000 * 1000;
    let opens_ms = t0 - WINDOW_HOURS * HOUR_MS;
    let cfg = DayConfig {
        opens_ms,
        ends_ms: t0 - 2 * 60_000,
        show_up: 0.95,
        offline_sites: 4,
        offline_hours: (2.0, 4.0),
        upload_minutes: args.upload_minutes,
        resend_rate: 0.03,
        bad_scans: 12,
        visitors: 30,
        sync_batch: 500,
        seed: args.seed,
    };
    let plan = DayPlan::new(&city, &cfg, &tag);
    let on_time_total: usize = plan.waves.iter().flatten().map(|u| u.items).sum();
    say!(
        narrate,
        "  the day: {} people turn up at {} sites; {} sites go offline for hours",
        thousands((plan.on_time_people.len() + plan.held_people.len()) as u64),
        city.sites.len(),
        plan.offline.len()
    );

    // Scanners upload wave by wave. The round is created once a tenth of
    // the day is in: its deadline is set from the upload rate seen so far,
    // so the rest arrives before it and the demo still takes seconds.
    let mut on_time = Uploads::default();
    let mut round: Option<(String, i64)> = None;
    let mut sent_items = 0usize;
    let mut exemptions = Vec::new();
    let t_up = Instant::now();
    for wave in &plan.waves {
        if round.is_none() && sent_items * 10 >= on_time_total {
            let rate = sent_items as f64 / t_up.elapsed().as_secs_f64().max(1e-3);
            let rest = (on_time_total - sent_items) as f64 / rate;
            let budget = (rest * 1.5 + 1.5).clamp(3.0, 120.0);
            let now = Timestamp::from_datetime(chrono::Utc::now()).as_millis();
            // Whole seconds, as an official would type it.
            let deadline = (now + (budget * 1000.0) as i64 + 999) / 1000 * 1000;
            let id = create_round(&api, &official, &subdistrict, opens_ms, deadline).await?;
            say!(
                narrate,
                "  round {id} created: window {} → {} (the day compressed into {budget:.0} s of uploads)",
                Timestamp::from_millis(opens_ms),
                Timestamp::from_millis(deadline)
            );
            exemptions = exempt(&api, &official, &plan, &city, opens_ms, deadline).await?;
            round = Some((id, deadline));
        }
        let deadline = round.as_ref().map(|r| r.1);
        post_uploads(&api, &scanners, wave, &mut on_time, deadline).await?;
        sent_items += wave.iter().map(|u| u.items).sum::<usize>();
    }
    on_time.seconds = t_up.elapsed().as_secs_f64();
    let (round_id, deadline_ms) = match round {
        Some(r) => r,
        None => {
            let deadline =
                (Timestamp::from_datetime(chrono::Utc::now()).as_millis() + 3999) / 1000 * 1000;
            let id = create_round(&api, &official, &subdistrict, opens_ms, deadline).await?;
            exemptions = exempt(&api, &official, &plan, &city, opens_ms, deadline).await?;
            (id, deadline)
        }
    };
    say!(
        narrate,
        "  uploads: {} records in {} requests ({:.1} s): {} accepted, {} duplicates, {} rejected",
        thousands(on_time.items),
        thousands(on_time.requests),
        on_time.seconds,
        thousands(on_time.accepted),
        thousands(on_time.duplicates),
        thousands(on_time.rejected_total())
    );

    // The deadline passes; the server closes the round by itself.
    say!(
        narrate,
        "  waiting for the deadline ({:.1} s)…",
        ((deadline_ms - Timestamp::from_datetime(chrono::Utc::now()).as_millis()) as f64 / 1000.0)
            .max(0.0)
    );
    let round_path = format!("/v1/rounds/{round_id}");
    let closed = loop {
        let r = api
            .get(&round_path, &official, &[])
            .await?
            .expect(200, "reading the round")?;
        if r["state"] == "closed" {
            break r;
        }
        let late_by = Timestamp::from_datetime(chrono::Utc::now()).as_millis() - deadline_ms;
        anyhow::ensure!(
            late_by < 30_000,
            "the round did not close within 30 s of its deadline"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let at_close = Counts::from_json(&closed["counts"])?;
    let closed_at = closed["closed_at"].as_str().unwrap_or_default().to_owned();
    say!(
        narrate,
        "  closed at {closed_at}: {} codes turned yellow",
        thousands(at_close.missing)
    );

    // The lab reports every tube, offline sites' too (their tubes reached
    // the lab before their records reached us); one pooled tube is positive.
    let positive = plan
        .tubes
        .iter()
        .position(|t| {
            !t.held
                && t.members
                    .iter()
                    .filter(|&&m| plan.scans[m as usize].person.is_some())
                    .count()
                    >= 5
        })
        .context("no pooled tube to make positive")?;
    let reported_at = Timestamp::from_datetime(chrono::Utc::now()).to_rfc3339();
    let results: Vec<Value> = plan
        .tubes
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({"tube_id": t.id, "result": if i == positive { "positive" } else { "negative" }, "reported_at": reported_at})
        })
        .collect();
    let mut lab_out = Lab {
        tubes: results.len() as u64,
        positive_tube: plan.tubes[positive].id.clone(),
        positive_members: plan.tubes[positive].members.len() as u64,
        ..Lab::default()
    };
    for chunk in results.chunks(10_000) {
        let v = api
            .post_json("/v1/results", &lab, &json!({ "results": chunk }))
            .await?
            .expect(200, "posting lab results")?;
        lab_out.accepted += v["accepted"].as_u64().unwrap_or_default();
        lab_out.unmatched += v["unmatched"].as_u64().unwrap_or_default();
    }
    say!(
        narrate,
        "  lab: {} tubes, 1 positive pool of {}; {} results wait for their records",
        thousands(lab_out.tubes),
        lab_out.positive_members,
        thousands(lab_out.unmatched)
    );

    // Offline sites come back and sync (late), one batch resent.
    let mut late_sync = Uploads::default();
    let t = Instant::now();
    post_uploads(&api, &scanners, &plan.held, &mut late_sync, None).await?;
    late_sync.seconds = t.elapsed().as_secs_f64();
    let mut offline: Vec<OfflineSite> = plan
        .offline
        .iter()
        .map(|&(s, a, b)| OfflineSite {
            site: city.sites[s as usize].id.clone(),
            from: Timestamp::from_millis(a).to_rfc3339(),
            until: Timestamp::from_millis(b).to_rfc3339(),
            records: plan
                .held
                .iter()
                .filter(|u| u.site == s)
                .map(|u| u.items as u64)
                .sum(),
        })
        .collect();
    offline.sort_by(|a, b| a.site.cmp(&b.site));

    // Grid heads knock on doors: some of the missing come for a make-up sample.
    let exempted: BTreeSet<u32> = exemptions.iter().copied().collect();
    let make_up_people: Vec<u32> = plan
        .no_shows
        .iter()
        .copied()
        .filter(|p| !exempted.contains(p))
        .enumerate()
        .filter(|(i, _)| i % 7 == 3)
        .map(|(_, p)| p)
        .collect();
    let make_ups = make_up_uploads(&city, &make_up_people, &tag);
    let mut make_up_tally = Uploads::default();
    let t = Instant::now();
    post_uploads(&api, &scanners, &make_ups, &mut make_up_tally, None).await?;
    make_up_tally.seconds = t.elapsed().as_secs_f64();
    say!(
        narrate,
        "  after the close: {} late records synced, {} make-up samples",
        thousands(late_sync.accepted),
        thousands(make_up_tally.accepted)
    );

    // What gates see now.
    let pick = |v: &[u32]| v.first().map(|&p| city.people[p as usize].id.clone());
    let missing_people: Vec<u32> = plan
        .no_shows
        .iter()
        .copied()
        .filter(|p| !exempted.contains(p) && !make_up_people.contains(p))
        .collect();
    let pos_member = plan.tubes[positive]
        .members
        .iter()
        .find_map(|&m| plan.scans[m as usize].person)
        .map(|p| city.people[p as usize].id.clone());
    let on_time_clean: Vec<u32> = {
        let in_pos: BTreeSet<u32> = plan.tubes[positive]
            .members
            .iter()
            .filter_map(|&m| plan.scans[m as usize].person)
            .collect();
        plan.on_time_people
            .iter()
            .copied()
            .filter(|p| !in_pos.contains(p))
            .take(1)
            .collect()
    };
    let mut gates = Vec::new();
    for (who, id) in [
        ("sampled on time", pick(&on_time_clean)),
        ("synced late", pick(&plan.held_people)),
        ("made up", pick(&make_up_people)),
        ("still missing", pick(&missing_people)),
        ("in the positive pool", pos_member),
    ] {
        let Some(id) = id else { continue };
        let v = api
            .get(&format!("/v1/status/{id}"), &gate, &[])
            .await?
            .expect(200, "asking a gate")?;
        gates.push(GateCheck {
            who,
            person_id: mask(&id),
            color: v["color"].as_str().unwrap_or_default().to_owned(),
            reasons: v["reasons"]
                .as_array()
                .map(|rs| {
                    rs.iter()
                        .filter_map(|r| r["code"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        });
    }

    // What the official pulls.
    let final_round = api
        .get(&round_path, &official, &[])
        .await?
        .expect(200, "reading the round")?;
    let counts = Counts::from_json(&final_round["counts"])?;
    let cov_path = format!("{round_path}/coverage");
    let cov1 = api
        .get(
            &cov_path,
            &official,
            &[("area", &subdistrict), ("depth", "1")],
        )
        .await?
        .expect(200, "reading coverage by community")?;
    let communities = children(&cov1)?;
    let cov2 = api
        .get(
            &cov_path,
            &official,
            &[("area", &subdistrict), ("depth", "2")],
        )
        .await?
        .expect(200, "reading coverage by grid")?;
    let mut grids = Vec::new();
    for c in cov2["children"].as_array().into_iter().flatten() {
        grids.extend(children(c)?);
    }
    grids.sort_by(|a, b| {
        b.counts
            .missing
            .cmp(&a.counts.missing)
            .then_with(|| a.area.cmp(&b.area))
    });
    grids.truncate(10);
    let (top_list, top_list_total) = match grids.first() {
        Some(g) => {
            let v = api
                .get(
                    &format!("{round_path}/missing"),
                    &official,
                    &[("area", &g.area), ("format", "json")],
                )
                .await?
                .expect(200, "pulling a missing list")?;
            let people = v["people"].as_array().cloned().unwrap_or_default();
            let list = people
                .iter()
                .take(5)
                .map(|p| ListedPerson {
                    person_id: p["person_id"].as_str().unwrap_or_default().to_owned(),
                    name: p["name"].as_str().unwrap_or_default().to_owned(),
                    household: p["household"].as_str().unwrap_or_default().to_owned(),
                    head: match &p["head"] {
                        Value::Null => "—".to_owned(),
                        h => format!(
                            "{} {} {}",
                            h["title"].as_str().unwrap_or_default(),
                            h["name"].as_str().unwrap_or_default(),
                            h["phone"].as_str().unwrap_or_default()
                        ),
                    },
                })
                .collect();
            (list, v["total"].as_u64().unwrap_or_default())
        }
        None => (Vec::new(), 0),
    };
    let progress = api
        .get(
            &format!("{round_path}/progress"),
            &official,
            &[("area", &subdistrict)],
        )
        .await?
        .expect(200, "reading progress")?["buckets"]
        .as_array()
        .map(|bs| {
            bs.iter()
                .map(|b| {
                    (
                        b["hour"].as_str().unwrap_or_default().to_owned(),
                        b["sampled"].as_u64().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();

    // What the plan says the counts must be (each person scanned at most once).
    let expected = (earlier_rounds == 0).then(|| {
        let in_scope = city.people.len() as u64;
        let sampled = (plan.on_time_people.len() + plan.held_people.len()) as u64;
        let made_up = make_up_people.len() as u64;
        let exempt = exemptions.len() as u64;
        Counts {
            in_scope,
            sampled,
            late: plan.held_people.len() as u64,
            made_up,
            exempt,
            missing: in_scope - sampled - made_up - exempt,
        }
    });

    let next = next_day(
        &api,
        &official,
        &scanners,
        &city,
        &plan,
        &make_up_people,
        &subdistrict,
        &tag,
        &grids,
    )
    .await?;
    say!(
        narrate,
        "  the next day: round {} closed, {} missing; {} people missed both rounds",
        next.round_id,
        thousands(next.counts.missing),
        thousands(next.repeat_missers)
    );

    let summary = DemoSummary {
        url,
        admin_token: admin,
        official_token: official,
        subdistrict: subdistrict.clone(),
        data_dir: data.path.clone(),
        temporary: data.remove,
        residents,
        heads: heads["heads"].as_u64().unwrap_or_default(),
        sites: city.sites.len(),
        round_id,
        round_name: final_round["name"].as_str().unwrap_or_default().to_owned(),
        opens_at: final_round["opens_at"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        deadline: final_round["deadline"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        closed_at,
        exemptions: exemptions.len() as u64,
        on_time,
        offline,
        flipped: at_close.missing,
        at_close,
        lab: lab_out,
        late_sync,
        make_ups: make_up_tally,
        counts,
        expected,
        communities,
        top_grids: grids,
        top_list,
        top_list_total,
        progress,
        gates,
        next,
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok(Demo {
        running,
        summary,
        data,
    })
}

/// The next day's round: created now over the subdistrict, everyone who
/// came the first day (on time, late or for a make-up) sampled again save one
/// in 25, closed by the official once the uploads are in. Whoever missed the
/// first day and still has not come misses this one too: the repeat missers.
/// Only people sampled in the first round are sampled, so its counts stay
/// as printed.
#[allow(clippy::too_many_arguments)] // the demo's state, handed over as it is
async fn next_day(
    api: &Api,
    official: &str,
    scanners: &[String],
    city: &City,
    plan: &DayPlan,
    make_up_people: &[u32],
    subdistrict: &str,
    tag: &str,
    grids: &[AreaCounts],
) -> anyhow::Result<NextRound> {
    // The next whole second: every earlier sample (the make-ups) stays out
    // of its window, every one taken from here on is in it.
    let opens = Timestamp::from_datetime(chrono::Utc::now()).as_millis() / 1000 * 1000 + 1000;
    while Timestamp::from_datetime(chrono::Utc::now()).as_millis() <= opens {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = opens + 10 * 60 * 1000;
    let name = "第2轮全员核酸（次日）";
    let id = api
        .post_raw(
            "/v1/rounds",
            official,
            "application/json",
            serde_json::to_vec(&json!({
                "name": name,
                "scope": [subdistrict],
                "opens_at": Timestamp::from_millis(opens).to_rfc3339(),
                "deadline": Timestamp::from_millis(deadline).to_rfc3339(),
            }))?,
        )
        .await?
        .expect(201, "creating the next day's round")?["id"]
        .as_str()
        .context("the round has no id")?
        .to_owned();
    let came: Vec<u32> = plan
        .on_time_people
        .iter()
        .chain(&plan.held_people)
        .chain(make_up_people)
        .copied()
        .enumerate()
        .filter(|(i, _)| i % 25 != 7)
        .map(|(_, p)| p)
        .collect();
    let mut sent = Uploads::default();
    // Under the batch limit per upload; each chunk in its own tubes.
    for (k, chunk) in came.chunks(5_000).enumerate() {
        let uploads = make_up_uploads(city, chunk, &format!("{tag}N{k}"));
        post_uploads(api, scanners, &uploads, &mut sent, None).await?;
    }
    let closed = api
        .post_raw(
            &format!("/v1/rounds/{id}/close"),
            official,
            "application/json",
            "{}",
        )
        .await?
        .expect(200, "closing the next day's round")?;
    let counts = Counts::from_json(&closed["round"]["counts"])?;
    let repeat = api
        .get(
            "/v1/repeat-missing",
            official,
            &[("last", "2"), ("min", "2")],
        )
        .await?
        .expect(200, "reading the repeat missers")?;
    let messages = match grids.first() {
        Some(g) => {
            api.get_text(
                &format!("/v1/rounds/{id}/missing"),
                official,
                &[
                    ("area", g.area.as_str()),
                    ("group_by", "head"),
                    ("format", "text"),
                ],
            )
            .await?
        }
        None => String::new(),
    };
    let blocks: Vec<&str> = messages
        .split("\n\n")
        .filter(|m| !m.trim().is_empty())
        .collect();
    Ok(NextRound {
        round_id: id,
        round_name: name.to_owned(),
        counts,
        sent: sent.accepted,
        repeat_missers: repeat["total"].as_u64().unwrap_or_default(),
        messages: blocks.len(),
        first_message: blocks
            .first()
            .map(|m| m.trim_end().to_owned())
            .unwrap_or_default(),
    })
}

async fn create_round(
    api: &Api,
    token: &str,
    scope: &str,
    opens_ms: i64,
    deadline_ms: i64,
) -> anyhow::Result<String> {
    let v = api
        .post_json(
            "/v1/rounds",
            token,
            &json!({
                "name": format!("{scope}全员核酸（演示）"),
                "scope": [scope],
                "opens_at": Timestamp::from_millis(opens_ms).to_rfc3339(),
                "deadline": Timestamp::from_millis(deadline_ms).to_rfc3339(),
            }),
        )
        .await?
        .expect(201, "creating the round")?;
    v["id"]
        .as_str()
        .map(str::to_owned)
        .context("the round has no id")
}

/// Exempts a few of the people who will not turn up (bedridden elders,
/// infants, people in hospital or away), as an official records them
/// before the deadline. Returns who.
async fn exempt(
    api: &Api,
    token: &str,
    plan: &DayPlan,
    city: &City,
    opens_ms: i64,
    deadline_ms: i64,
) -> anyhow::Result<Vec<u32>> {
    let chosen: Vec<u32> = plan.no_shows.iter().copied().step_by(60).take(40).collect();
    let from = Timestamp::from_millis(opens_ms - 24 * HOUR_MS).to_rfc3339();
    let until = Timestamp::from_millis(deadline_ms + 7 * 24 * HOUR_MS).to_rfc3339();
    let this_year = Timestamp::from_millis(deadline_ms)
        .shanghai_date()
        .format("%Y")
        .to_string();
    let this_year: i32 = this_year.parse().unwrap_or(2026);
    for &p in &chosen {
        let id = &city.people[p as usize].id;
        let born: i32 = id.get(6..10).and_then(|y| y.parse().ok()).unwrap_or(1980);
        let reason = match this_year - born {
            age if age < 2 => "infant",
            age if age >= 80 => "bedridden",
            _ if p % 2 == 0 => "hospitalized",
            _ => "away",
        };
        api.post_json(
            "/v1/exemptions",
            token,
            &json!({"person_id": id, "reason": reason, "from": from, "until": until, "note": "demo"}),
        )
        .await?
        .expect(201, "granting an exemption")?;
    }
    Ok(chosen)
}

/// Posts uploads concurrently (each site's scanner its own), resending
/// those marked for it, and adds the verdicts to `tally`. With a deadline,
/// counts the registered people in uploads answered after it.
async fn post_uploads(
    api: &Api,
    scanners: &[String],
    uploads: &[Upload],
    tally: &mut Uploads,
    deadline_ms: Option<i64>,
) -> anyhow::Result<()> {
    let sends = uploads.iter().map(|u| async move {
        let token = &scanners[u.site as usize];
        let mut answers = Vec::new();
        for _ in 0..if u.resend { 2 } else { 1 } {
            let v = api
                .post_raw("/v1/records", token, "application/json", u.body.clone())
                .await?
                .expect(200, "uploading records")?;
            answers.push(v);
        }
        let answered = Timestamp::from_datetime(chrono::Utc::now()).as_millis();
        anyhow::Ok((u, answers, answered))
    });
    for r in join_all(sends).await {
        let (u, answers, answered) = r?;
        tally.resent += u64::from(u.resend);
        for v in &answers {
            tally.requests += 1;
            tally.items += u.items as u64;
            tally.accepted += v["accepted"].as_u64().unwrap_or_default();
            tally.duplicates += v["duplicates"].as_u64().unwrap_or_default();
            tally.unregistered += v["unregistered"].as_u64().unwrap_or_default();
            for rej in v["rejected"].as_array().into_iter().flatten() {
                let code = rej["code"].as_str().unwrap_or("?").to_owned();
                *tally.rejected.entry(code).or_default() += 1;
            }
        }
        if let Some(d) = deadline_ms
            && answered > d
        {
            tally.overran += answers
                .first()
                .map_or(0, |v| v["accepted"].as_u64().unwrap_or_default());
        }
    }
    Ok(())
}

/// One upload per site for the make-up samples, taken now, in fresh tubes.
fn make_up_uploads(city: &City, people: &[u32], tag: &str) -> Vec<Upload> {
    let now = Timestamp::from_datetime(chrono::Utc::now()).to_rfc3339();
    let mut per_site: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for &p in people {
        let c = city.people[p as usize].community;
        let site = city
            .sites
            .iter()
            .position(|s| s.community == c)
            .unwrap_or(0) as u32;
        per_site.entry(site).or_default().push(p);
    }
    per_site
        .into_iter()
        .map(|(site, ps)| {
            let mut body = String::from(r#"{"records":["#);
            for (i, &p) in ps.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                let tube = format!("T{tag}-M{}-{:04}", city.sites[site as usize].id, i / 10);
                sim::push_record(&mut body, &city.people[p as usize].id, &tube, &now, None);
            }
            body.push_str("]}");
            Upload {
                site,
                body,
                items: ps.len(),
                bad: 0,
                resend: false,
            }
        })
        .collect()
}

fn children(node: &Value) -> anyhow::Result<Vec<AreaCounts>> {
    node["children"]
        .as_array()
        .context("a coverage node without children")?
        .iter()
        .map(|c| {
            Ok(AreaCounts {
                area: c["area"].as_str().unwrap_or_default().to_owned(),
                counts: Counts::from_json(c)?,
            })
        })
        .collect()
}

/// The contract's mask: the first 6 and last 4 characters.
fn mask(id: &str) -> String {
    if id.len() == 18 {
        format!("{}********{}", &id[..6], &id[14..])
    } else {
        id.to_owned()
    }
}

/// The last `n` segments of an area path.
fn tail(area: &str, n: usize) -> String {
    let segs: Vec<&str> = area.split('/').collect();
    segs[segs.len().saturating_sub(n)..].join("/")
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// `HH:MM` of an RFC 3339 time.
fn hhmm(t: &str) -> &str {
    t.get(11..16).unwrap_or(t)
}

impl fmt::Display for DemoSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        writeln!(f)?;
        writeln!(f, "══ {} — round {} ══", self.round_name, self.round_id)?;
        writeln!(
            f,
            "window {} → {}, closed by the server at {}",
            self.opens_at, self.deadline, self.closed_at
        )?;
        writeln!(
            f,
            "{} residents, {} heads, {} sampling sites; {} exemptions granted before the deadline",
            thousands(self.residents),
            thousands(self.heads),
            self.sites,
            self.exemptions
        )?;
        let o = &self.on_time;
        writeln!(
            f,
            "scanners: {} records in {} uploads ({} resent after a lost answer): {} accepted, {} duplicates, \
             {} bad scans rejected {:?}, {} visitors not in the register",
            thousands(o.items),
            thousands(o.requests),
            o.resent,
            thousands(o.accepted),
            thousands(o.duplicates),
            o.rejected_total(),
            o.rejected,
            o.unregistered
        )?;
        for s in &self.offline {
            writeln!(
                f,
                "  {} offline {}–{}, synced {} records after the close",
                s.site,
                hhmm(&s.from),
                hhmm(&s.until),
                thousands(s.records)
            )?;
        }
        writeln!(
            f,
            "close: {} codes flipped to yellow (missed_round) — {:.1}% of {} in scope were missing",
            thousands(self.flipped),
            pct(self.at_close.missing, self.at_close.in_scope),
            thousands(self.at_close.in_scope)
        )?;
        writeln!(
            f,
            "lab: {} tubes reported, 1 positive pool {} ({} people now yellow pool_positive); \
             {} results waited for records from offline sites",
            thousands(self.lab.tubes),
            self.lab.positive_tube,
            self.lab.positive_members,
            thousands(self.lab.unmatched)
        )?;
        writeln!(
            f,
            "after the close: {} late records synced ({} duplicates from a resent batch), {} make-up samples",
            thousands(self.late_sync.accepted),
            thousands(self.late_sync.duplicates),
            thousands(self.make_ups.accepted)
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "round now: in scope {} · sampled {} ({:.1}%, {} late) · made up {} · exempt {} · missing {} ({:.1}%)",
            thousands(c.in_scope),
            thousands(c.sampled),
            pct(c.sampled, c.in_scope),
            thousands(c.late),
            thousands(c.made_up),
            thousands(c.exempt),
            thousands(c.missing),
            pct(c.missing, c.in_scope)
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "coverage by community              in scope   sampled   late  made up  exempt  missing   sampled%"
        )?;
        for a in &self.communities {
            let k = &a.counts;
            writeln!(
                f,
                "  {:<30}{:>10}{:>10}{:>7}{:>9}{:>8}{:>9}{:>10.1}%",
                tail(&a.area, 1),
                thousands(k.in_scope),
                thousands(k.sampled),
                thousands(k.late),
                thousands(k.made_up),
                thousands(k.exempt),
                thousands(k.missing),
                pct(k.sampled, k.in_scope)
            )?;
        }
        writeln!(f)?;
        writeln!(f, "longest missing lists (grid: missing of in scope)")?;
        for g in &self.top_grids {
            writeln!(
                f,
                "  {:<36}{:>6} of {}",
                tail(&g.area, 2),
                thousands(g.counts.missing),
                thousands(g.counts.in_scope)
            )?;
        }
        if let Some(g) = self.top_grids.first() {
            writeln!(
                f,
                "first of the {} on {}'s list:",
                self.top_list_total,
                tail(&g.area, 2)
            )?;
            for p in &self.top_list {
                writeln!(
                    f,
                    "  {}  {}  {}  → {}",
                    p.person_id, p.name, p.household, p.head
                )?;
            }
        }
        writeln!(f)?;
        let peak = self.progress.iter().map(|p| p.1).max().unwrap_or(0).max(1);
        let bars: String = self
            .progress
            .iter()
            .map(|p| ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'][((p.1 * 7) / peak) as usize])
            .collect();
        writeln!(
            f,
            "sampled by hour {} → {}: {bars} (peak {}/h)",
            self.progress.first().map_or("", |p| hhmm(&p.0)),
            self.progress.last().map_or("", |p| hhmm(&p.0)),
            thousands(peak)
        )?;
        writeln!(f, "gates see:")?;
        for g in &self.gates {
            writeln!(
                f,
                "  {}  {:<7} {:<22} ({})",
                g.person_id,
                g.color,
                g.reasons.join(","),
                g.who
            )?;
        }
        writeln!(f)?;
        let n = &self.next;
        writeln!(
            f,
            "══ the next day: {} — round {} ══",
            n.round_name, n.round_id
        )?;
        writeln!(
            f,
            "{} records accepted; closed by the official: sampled {} ({:.1}%), exempt {}, missing {}",
            thousands(n.sent),
            thousands(n.counts.sampled),
            pct(n.counts.sampled, n.counts.in_scope),
            thousands(n.counts.exempt),
            thousands(n.counts.missing)
        )?;
        writeln!(
            f,
            "repeat missers (still flagged in both rounds, GET /v1/repeat-missing?last=2&min=2): {}",
            thousands(n.repeat_missers)
        )?;
        writeln!(
            f,
            "door-knock messages for the longest grid's heads: {}; the first:",
            n.messages
        )?;
        for line in n.first_message.lines() {
            writeln!(f, "  │ {line}")?;
        }
        writeln!(f)?;
        match (self.matches_plan(), self.expected) {
            (Some(true), _) => writeln!(
                f,
                "check: the server's counts are exactly what the simulator sent ✓"
            )?,
            (Some(false), Some(e)) => writeln!(
                f,
                "check: MISMATCH — the simulator expected sampled {} late {} made up {} exempt {} missing {}",
                e.sampled, e.late, e.made_up, e.exempt, e.missing
            )?,
            _ => writeln!(f, "check: skipped (the data directory held earlier rounds)")?,
        }
        if self.on_time.overran > 0 {
            writeln!(
                f,
                "note: {} on-time records were answered after the deadline and count as late (a slow machine)",
                thousands(self.on_time.overran)
            )?;
        }
        writeln!(f, "took {:.1} s", self.seconds)?;
        writeln!(f)?;
        writeln!(f, "dashboard:      {}/", self.url)?;
        writeln!(f, "admin token:    {}", self.admin_token)?;
        write!(
            f,
            "official token: {} ({})",
            self.official_token, self.subdistrict
        )?;
        if !self.temporary {
            write!(f, "\ndata kept in {}", self.data_dir.display())?;
        }
        Ok(())
    }
}
