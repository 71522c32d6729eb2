//! `rollcall demo` and `rollcall load` end to end, on the in-process cache
//! (no Redis): the demo's printed numbers against the engine's own counts,
//! and the load harness against a healthy server and against one that refuses.

use rollcall::cli::demo::{self, DemoArgs};
use rollcall::cli::load::{self, LoadArgs, Mode};
use rollcall::cli::sim::{Counts, thousands};

use crate::helpers::{ADMIN, Opts, small_city, spawn_with};

fn no_redis() -> Opts {
    Opts {
        redis: false,
        ..Opts::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_prints_the_engines_own_counts_and_what_it_sent() {
    // Uploads every half hour of the day rather than every ten minutes: a
    // third of the requests, the same story, quicker in a debug build.
    let args = DemoArgs {
        upload_minutes: 30,
        ..DemoArgs::default()
    };
    let demo = demo::run_demo(&args, false).await.expect("the demo runs");
    let s = &demo.summary;

    // The engine's own counts, read from its state, not through HTTP.
    let id: u32 = s.round_id.parse().unwrap();
    let engine = {
        let e = demo.running.state.engine.read();
        let round = e.round(id).expect("the demo's round");
        assert!(round.is_closed());
        e.counts(round, None)
    };
    let printed = s.counts;
    assert_eq!(
        printed,
        Counts {
            in_scope: engine.in_scope,
            sampled: engine.sampled,
            late: engine.late,
            made_up: engine.made_up,
            exempt: engine.exempt,
            missing: engine.missing,
        }
    );
    assert_eq!(printed.in_scope, 56_717);
    assert_eq!(s.residents, 56_717);
    assert_eq!(
        printed.in_scope,
        printed.sampled + printed.made_up + printed.exempt + printed.missing
    );

    // ...and they are what the simulator sent.
    assert_eq!(s.matches_plan(), Some(true), "{s}");
    let expected = s.expected.unwrap();
    assert_eq!(printed.sampled, expected.sampled);
    assert_eq!(printed.missing, expected.missing);
    if s.on_time.overran == 0 {
        assert_eq!(printed.late, expected.late);
    }

    // The next day's round: the same subdistrict, closed by the official; the
    // first day's counts above are read after it, unchanged by it. Whoever
    // missed the first day and did not come since misses both.
    let n = &s.next;
    assert_eq!(n.counts.in_scope, 56_717);
    assert_eq!(
        n.counts.in_scope,
        n.counts.sampled + n.counts.made_up + n.counts.exempt + n.counts.missing
    );
    assert!(n.counts.sampled > 50_000, "{:?}", n.counts);
    assert!(
        n.repeat_missers > 0 && n.repeat_missers <= printed.missing.min(n.counts.missing),
        "{} repeat missers, {} then {} missing",
        n.repeat_missers,
        printed.missing,
        n.counts.missing
    );
    assert!(n.messages > 0);
    assert!(
        n.first_message.starts_with("【第2轮全员核酸（次日）】"),
        "{}",
        n.first_message
    );

    // The close flagged everyone then missing; nothing was made up before it.
    let c = s.at_close;
    assert_eq!(s.flipped, c.missing);
    assert_eq!(c.made_up, 0);
    assert_eq!(c.in_scope, c.sampled + c.exempt + c.missing);
    // On a machine too slow for the deadline the demo set, on-time uploads
    // still in flight at the deadline arrive late, before the demo reads the
    // closed round: its counts then already hold them, and the gap is not
    // what the late syncs filled (as with `late` above).
    if s.on_time.overran == 0 {
        assert_eq!(
            c.sampled + printed.late,
            printed.sampled,
            "late records filled the gap"
        );
    }

    // A real day: 90-97% sampled, short lists, every fault exercised.
    let share = printed.sampled_share();
    assert!((0.90..=0.97).contains(&share), "{share}");
    assert!(s.on_time.duplicates > 0 && s.late_sync.duplicates > 0);
    assert!(
        s.on_time.rejected.contains_key("invalid_person_id"),
        "{:?}",
        s.on_time.rejected
    );
    assert!(
        s.on_time.rejected.contains_key("invalid_tube_id"),
        "{:?}",
        s.on_time.rejected
    );
    assert!(s.on_time.unregistered > 0);
    assert!(!s.offline.is_empty() && printed.late > 0);
    assert!(s.lab.unmatched > 0 && s.lab.positive_members >= 5);
    // Late = the registered people offline sites synced (visitors are in no round).
    assert_eq!(
        printed.late,
        s.late_sync.accepted - s.late_sync.unregistered
    );

    // Coverage adds up, per community and over the top grids.
    let mut sum = Counts::default();
    for a in &s.communities {
        sum.in_scope += a.counts.in_scope;
        sum.sampled += a.counts.sampled;
        sum.late += a.counts.late;
        sum.made_up += a.counts.made_up;
        sum.exempt += a.counts.exempt;
        sum.missing += a.counts.missing;
    }
    assert_eq!(sum, printed);
    assert_eq!(s.communities.len(), 7);
    assert_eq!(s.top_grids.len(), 10);
    assert!(
        s.top_grids
            .windows(2)
            .all(|w| w[0].counts.missing >= w[1].counts.missing)
    );
    assert_eq!(s.top_list_total, s.top_grids[0].counts.missing);
    let hourly: u64 = s.progress.iter().map(|p| p.1).sum();
    assert_eq!(hourly, printed.sampled);

    // Gates see each story's colour.
    let gate = |who: &str| s.gates.iter().find(|g| g.who == who).unwrap();
    assert_eq!(gate("sampled on time").color, "green");
    assert_eq!(gate("synced late").color, "green");
    assert_eq!(gate("made up").color, "green");
    assert_eq!(gate("still missing").color, "yellow");
    assert_eq!(gate("still missing").reasons, ["missed_round"]);
    assert_eq!(gate("in the positive pool").reasons, ["pool_positive"]);

    // The printed summary carries these numbers.
    let text = s.to_string();
    for n in [
        printed.sampled,
        printed.missing,
        printed.made_up,
        s.flipped,
        printed.late,
    ] {
        assert!(text.contains(&thousands(n)), "{n} not in\n{text}");
    }
    assert!(text.contains(&format!("{} codes flipped", thousands(s.flipped))));
    assert!(text.contains("exactly what the simulator sent"));
    assert!(text.contains(&s.admin_token));
    assert!(text.contains(&format!("{}/", s.url)));
    demo.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_against_a_healthy_server_reports_throughput_and_no_errors() {
    let app = spawn_with(no_redis()).await;
    let (csv, people) = small_city(25);
    assert_eq!(app.register(&csv).await.status, 200);
    let dir = tempfile::tempdir().unwrap();
    let ids = dir.path().join("ids.txt");
    let lines: Vec<&str> = people.iter().map(|(id, _)| id.as_str()).collect();
    std::fs::write(&ids, lines.join("\n")).unwrap();

    let (_, scanner) = app.token("scanner", Some("S01"), None).await;
    let mut args = LoadArgs::new(&app.base, &scanner, Mode::Ingest);
    args.ids = Some(ids.clone());
    args.duration = 1.5;
    args.batch = 40;
    args.concurrency = 2;
    let r = load::execute(&args, false).await.unwrap();
    assert!(r.items > 0 && r.items_per_s > 0.0, "{r}");
    assert_eq!(r.error_count(), 0, "{r}");
    assert!(r.errors.is_empty() && r.rejected.is_empty(), "{r}");
    assert_eq!(
        r.accepted, r.items,
        "fresh tubes every batch: nothing is a duplicate"
    );
    assert_eq!(r.unregistered, 0);
    assert!(r.latency.p50_ms > 0.0 && r.latency.p50_ms <= r.latency.p99_ms);
    assert!(r.latency.p99_ms <= r.latency.p999_ms && r.latency.p999_ms <= r.latency.max_ms);

    // An admin token names the site in each record; `--once` sends each person once.
    let mut args = LoadArgs::new(&app.base, ADMIN, Mode::Ingest);
    args.ids = Some(ids);
    args.site = Some("S02".into());
    args.once = true;
    args.batch = 30;
    args.concurrency = 2;
    let r = load::execute(&args, false).await.unwrap();
    assert_eq!(
        (r.items, r.accepted),
        (people.len() as u64, people.len() as u64),
        "{r}"
    );
    assert_eq!(r.error_count(), 0, "{r}");

    // Gates, over a generated city (unknown but valid IDs are green).
    let (_, gate) = app.token("gate", None, None).await;
    let mut args = LoadArgs::new(&app.base, &gate, Mode::Gate);
    args.residents = 2_000;
    args.duration = 1.0;
    args.concurrency = 4;
    args.rate = Some(400);
    args.flat_out = false;
    let r = load::execute(&args, false).await.unwrap();
    assert!(r.items > 100 && r.items_per_s > 0.0, "{r}");
    assert_eq!(r.error_count(), 0, "{r}");
    assert_eq!(r.colors.get("green"), Some(&r.items), "{r}");
    assert!(r.to_string().contains("errors      none"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_counts_errors_against_a_server_that_refuses() {
    let app = spawn_with(no_redis()).await;
    let (csv, _) = small_city(2);
    assert_eq!(app.register(&csv).await.status, 200);

    // A gate token may not post records.
    let (_, gate) = app.token("gate", None, None).await;
    let mut args = LoadArgs::new(&app.base, &gate, Mode::Ingest);
    args.residents = 500;
    args.duration = 0.5;
    args.batch = 20;
    args.concurrency = 2;
    let r = load::execute(&args, false).await.unwrap();
    assert_eq!(r.ok_requests, 0, "{r}");
    assert!(r.failed_requests > 0, "{r}");
    assert_eq!(
        r.errors.get("403 forbidden"),
        Some(&r.failed_requests),
        "{r}"
    );
    assert_eq!(r.items, 0);
    assert!(r.to_string().contains("403 forbidden"));

    // A revoked scanner token is unknown at once.
    let (id, scanner) = app.token("scanner", Some("S01"), None).await;
    assert_eq!(
        app.delete(&format!("/v1/tokens/{id}"), ADMIN).await.status,
        204
    );
    let mut args = LoadArgs::new(&app.base, &scanner, Mode::Ingest);
    args.residents = 500;
    args.duration = 0.5;
    args.batch = 20;
    args.concurrency = 2;
    let r = load::execute(&args, false).await.unwrap();
    assert!(r.failed_requests > 0 && r.ok_requests == 0, "{r}");
    assert_eq!(
        r.errors.get("401 unauthorized"),
        Some(&r.failed_requests),
        "{r}"
    );

    // A scanner token whose records carry a site: every record refused, counted by code.
    let (_, scanner) = app.token("scanner", Some("S01"), None).await;
    let mut args = LoadArgs::new(&app.base, &scanner, Mode::Ingest);
    args.residents = 500;
    args.duration = 0.5;
    args.batch = 20;
    args.concurrency = 2;
    args.site = Some("S01".into());
    let r = load::execute(&args, false).await.unwrap();
    assert!(r.ok_requests > 0 && r.accepted == 0, "{r}");
    assert_eq!(r.rejected.get("unknown_field"), Some(&r.items), "{r}");
    assert_eq!(r.error_count(), r.items);

    // Nothing listening: transport errors, not a hang.
    let port = crate::helpers::free_port();
    let mut args = LoadArgs::new(&format!("http://127.0.0.1:{port}"), &scanner, Mode::Gate);
    args.residents = 100;
    args.duration = 0.3;
    args.concurrency = 1;
    let r = load::execute(&args, false).await.unwrap();
    assert!(r.failed_requests > 0 && r.ok_requests == 0, "{r}");
    assert!(r.errors.keys().all(|k| k.starts_with("transport")), "{r}");
}

/// `rollcall demo` serving after its day stops on SIGTERM (what `timeout`,
/// systemd and `docker stop` send) as on Ctrl-C: it exits at once, with its
/// temporary data directory removed. Before, the HTTP server stopped on it
/// and the process stayed, serving nothing.
#[test]
fn the_demo_serving_stops_on_sigterm_and_removes_its_data() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let mut child = Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .args(["demo", "--listen", "127.0.0.1:0"])
        .env_remove("ROLLCALL_REDIS")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut printed = Vec::new();
    for line in stdout.lines() {
        let line = line.unwrap();
        let serving = line.starts_with("Serving until Ctrl-C");
        printed.push(line);
        if serving {
            break;
        }
    }
    assert!(
        printed
            .iter()
            .any(|l| l.starts_with("Serving until Ctrl-C")),
        "the demo did not get to serving: {printed:#?}"
    );
    let ours = || {
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(&format!("rollcall-demo-{pid}-"))
            })
    };
    assert!(ours(), "its data directory is there while it serves");

    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the demo was still running 20 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    assert!(!ours(), "its data directory is removed");
}
