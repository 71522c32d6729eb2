//! The first round day of `rollcall demo`, step by step as it narrates
//! them: the server starts, the city is loaded and the tokens issued, the
//! day's uploads come in while the round is created and people exempted,
//! the deadline passes, the lab reports, late syncs and make-ups arrive.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use super::next_day::{create_round, exempt, make_up_uploads, post_uploads};
use super::{
    DataDir, DemoArgs, HEADS_CSV, HOUR_MS, Lab, OfflineSite, REGISTER_CSV, SITES_CSV, Uploads,
    WINDOW_HOURS,
};
use crate::cli::sim::{Api, City, Counts, DayConfig, DayPlan, thousands};
use crate::domain::Timestamp;
use crate::engine::clock::SystemClock;
use crate::http::{self, Running};
use crate::settings::{CacheTarget, Settings};

/// The server as the demo started it.
pub(super) struct Server {
    pub data: DataDir,
    pub running: Running,
    pub url: String,
    pub admin: String,
}

/// Starts the server on a data directory of its own (or the one asked
/// for), with the in-process status cache and a fresh admin token.
pub(super) async fn start(args: &DemoArgs, narrate: bool, tag: &str) -> anyhow::Result<Server> {
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
    Ok(Server {
        data,
        running,
        url,
        admin,
    })
}

/// Who acts in the story besides the admin: a scanner per site, a lab, a
/// gate, an official for the subdistrict; the city they work in.
pub(super) struct Cast {
    pub api: Api,
    pub scanners: Vec<String>,
    pub lab: String,
    pub gate: String,
    pub official: String,
    pub city: City,
    pub subdistrict: String,
    pub narrate: bool,
}

/// The city as loaded: what the server counted, and how many rounds the
/// data directory held before.
pub(super) struct Loaded {
    pub residents: u64,
    pub heads: u64,
    pub earlier_rounds: usize,
}

/// Loads the register and the heads as an administrator would, and issues
/// the tokens.
pub(super) async fn load_city(
    url: &str,
    admin: &str,
    narrate: bool,
) -> anyhow::Result<(Cast, Loaded)> {
    let city = City::from_csv(REGISTER_CSV, Some(SITES_CSV))
        .context("reading the embedded fixture city")?;
    let api = Api::new(url, 64)?;
    let body = |v: &str| v.as_bytes().to_vec();

    // The register and the heads, as an administrator would upload them.
    let t = Instant::now();
    let reg = api
        .post_raw("/v1/register", admin, "text/csv", body(REGISTER_CSV))
        .await?
        .expect(200, "loading the register")?;
    let heads = api
        .post_raw("/v1/heads", admin, "text/csv", body(HEADS_CSV))
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
            api.token(admin, &json!({"role": "scanner", "name": format!("{} scanner (demo)", s.id), "site": s.id}))
                .await?,
        );
    }
    let lab = api
        .token(admin, &json!({"role": "lab", "name": "city lab (demo)"}))
        .await?;
    let gate = api
        .token(admin, &json!({"role": "gate", "name": "mall gate (demo)"}))
        .await?;
    let official = api
        .token(
            admin,
            &json!({"role": "official", "name": format!("{subdistrict} office (demo)"), "area": subdistrict}),
        )
        .await?;
    let earlier_rounds = api
        .get("/v1/rounds", admin, &[])
        .await?
        .expect(200, "listing rounds")?["rounds"]
        .as_array()
        .map_or(0, Vec::len);
    let loaded = Loaded {
        residents,
        heads: heads["heads"].as_u64().unwrap_or_default(),
        earlier_rounds,
    };
    let cast = Cast {
        api,
        scanners,
        lab,
        gate,
        official,
        city,
        subdistrict,
        narrate,
    };
    Ok((cast, loaded))
}

/// The first round day as uploaded.
pub(super) struct Day {
    pub plan: DayPlan,
    pub on_time: Uploads,
    pub round_id: String,
    pub deadline_ms: i64,
    /// Who the official exempted.
    pub exemptions: Vec<u32>,
}

/// The day: the window opened ten hours ago; everything scanned so far is
/// uploaded now, in time order, compressed into seconds. The round is
/// created, and people exempted, on the way.
pub(super) async fn the_day(cast: &Cast, args: &DemoArgs, tag: &str) -> anyhow::Result<Day> {
    let (api, scanners, official) = (&cast.api, &cast.scanners, &cast.official);
    let (city, subdistrict, narrate) = (&cast.city, &cast.subdistrict, cast.narrate);
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
    let plan = DayPlan::new(city, &cfg, tag);
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
            let id = create_round(api, official, subdistrict, opens_ms, deadline).await?;
            say!(
                narrate,
                "  round {id} created: window {} → {} (the day compressed into {budget:.0} s of uploads)",
                Timestamp::from_millis(opens_ms),
                Timestamp::from_millis(deadline)
            );
            exemptions = exempt(api, official, &plan, city, opens_ms, deadline).await?;
            round = Some((id, deadline));
        }
        let deadline = round.as_ref().map(|r| r.1);
        post_uploads(api, scanners, wave, &mut on_time, deadline).await?;
        sent_items += wave.iter().map(|u| u.items).sum::<usize>();
    }
    on_time.seconds = t_up.elapsed().as_secs_f64();
    let (round_id, deadline_ms) = match round {
        Some(r) => r,
        None => {
            let deadline =
                (Timestamp::from_datetime(chrono::Utc::now()).as_millis() + 3999) / 1000 * 1000;
            let id = create_round(api, official, subdistrict, opens_ms, deadline).await?;
            exemptions = exempt(api, official, &plan, city, opens_ms, deadline).await?;
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

    Ok(Day {
        plan,
        on_time,
        round_id,
        deadline_ms,
        exemptions,
    })
}

/// The round as the server closed it by itself at its deadline.
pub(super) struct Closed {
    pub at_close: Counts,
    pub closed_at: String,
}

/// The deadline passes; the server closes the round by itself.
pub(super) async fn wait_for_close(cast: &Cast, day: &Day) -> anyhow::Result<Closed> {
    let (api, official, narrate) = (&cast.api, &cast.official, cast.narrate);
    let (round_id, deadline_ms) = (&day.round_id, day.deadline_ms);
    say!(
        narrate,
        "  waiting for the deadline ({:.1} s)…",
        ((deadline_ms - Timestamp::from_datetime(chrono::Utc::now()).as_millis()) as f64 / 1000.0)
            .max(0.0)
    );
    let round_path = format!("/v1/rounds/{round_id}");
    let closed = loop {
        let r = api
            .get(&round_path, official, &[])
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
    Ok(Closed {
        at_close,
        closed_at,
    })
}

/// The lab reports every tube, offline sites' too (their tubes reached the
/// lab before their records reached us); one pooled tube is positive.
/// Returns what it sent and the positive tube's index in the plan.
pub(super) async fn lab_reports(cast: &Cast, day: &Day) -> anyhow::Result<(Lab, usize)> {
    let (api, lab, narrate, plan) = (&cast.api, &cast.lab, cast.narrate, &day.plan);
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
            .post_json("/v1/results", lab, &json!({ "results": chunk }))
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
    Ok((lab_out, positive))
}

/// What came in after the close.
pub(super) struct AfterClose {
    pub late_sync: Uploads,
    pub offline: Vec<OfflineSite>,
    pub exempted: BTreeSet<u32>,
    pub make_up_people: Vec<u32>,
    pub make_ups: Uploads,
}

/// Offline sites come back and sync (late), one batch resent; grid heads
/// knock on doors and some of the missing come for a make-up sample.
pub(super) async fn after_close(cast: &Cast, day: &Day, tag: &str) -> anyhow::Result<AfterClose> {
    let (api, scanners, city, narrate) = (&cast.api, &cast.scanners, &cast.city, cast.narrate);
    let (plan, exemptions) = (&day.plan, &day.exemptions);
    let mut late_sync = Uploads::default();
    let t = Instant::now();
    post_uploads(api, scanners, &plan.held, &mut late_sync, None).await?;
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
    let make_ups = make_up_uploads(city, &make_up_people, tag);
    let mut make_up_tally = Uploads::default();
    let t = Instant::now();
    post_uploads(api, scanners, &make_ups, &mut make_up_tally, None).await?;
    make_up_tally.seconds = t.elapsed().as_secs_f64();
    say!(
        narrate,
        "  after the close: {} late records synced, {} make-up samples",
        thousands(late_sync.accepted),
        thousands(make_up_tally.accepted)
    );
    Ok(AfterClose {
        late_sync,
        offline,
        exempted,
        make_up_people,
        make_ups: make_up_tally,
    })
}
