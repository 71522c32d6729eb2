//! Failover through one address, with the real `haproxy` (issue 15): three
//! `rollcall serve` processes on one fresh PostgreSQL database behind the
//! `haproxy` binary running the committed `deploy/haproxy.cfg` (only its
//! addresses changed to this test's free ports, so the file operators deploy
//! is the one tested). Clients post record batches through the one address,
//! retrying on 502/503; the leader is killed (SIGKILL) mid-ingest; writes must
//! resume through the same address, every acknowledged record must be on
//! every surviving server and on the killed one restarted, and reads and gate
//! lookups through the address must keep answering.
//!
//! Skipped, with a message, when PostgreSQL cannot be reached or `haproxy` is
//! not installed (`.ci/run` installs both, so in CI it always runs).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::json;

use crate::cluster::{
    PgDb, Sent, Server, acknowledged, batch, get, post, recent, three_servers, wait_for,
};
use crate::helpers::{ADMIN, free_port};

/// The committed configuration, as operators deploy it.
const COMMITTED: &str = include_str!("../../deploy/haproxy.cfg");

/// The committed configuration with this test's addresses: the frontend's
/// `bind` and each backend's three `server` lines. Each address must be found
/// where the committed file has it, so a change to the file that this test no
/// longer covers fails here rather than testing something else.
fn config(front: u16, servers: [u16; 3]) -> String {
    let mut cfg = COMMITTED.to_owned();
    let mut swap = |from: &str, to: String, times: usize| {
        assert_eq!(
            cfg.matches(from).count(),
            times,
            "{from} in deploy/haproxy.cfg"
        );
        cfg = cfg.replace(from, &to);
    };
    swap("bind 127.0.0.1:8080", format!("bind 127.0.0.1:{front}"), 1);
    for (i, port) in servers.iter().enumerate() {
        let at = format!("127.0.0.1:{}", 8081 + i);
        swap(&at, format!("127.0.0.1:{port}"), 2);
    }
    cfg
}

/// The `haproxy` binary in the foreground (`-db`), stopped with the test.
struct Haproxy {
    child: Child,
    log: std::path::PathBuf,
}

impl Haproxy {
    /// `None` (after saying so) when `haproxy` is not installed.
    fn start(dir: &std::path::Path, cfg: &str) -> Option<Haproxy> {
        // Debian puts it in /usr/sbin, which is not on every user's PATH.
        let Some(bin) = ["haproxy", "/usr/sbin/haproxy"].into_iter().find(|b| {
            Command::new(b)
                .arg("-v")
                .output()
                .is_ok_and(|o| o.status.success())
        }) else {
            rollcall::skip_test(
                "haproxy is not installed; .ci/run installs it (apt-get install haproxy)",
            );
            return None;
        };
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, cfg).unwrap();
        let log = dir.join("haproxy.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin)
            .arg("-f")
            .arg(&path)
            .arg("-db")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("haproxy starts");
        Some(Haproxy { child, log })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port a server listens on, from its base URL.
fn port_of(s: &Server) -> u16 {
    s.base.rsplit(':').next().unwrap().parse().unwrap()
}

/// Posts `body` through `url` until it is answered 201 or 200 (a load
/// balancer without a leader for a moment answers 502/503), at most 30 s.
async fn post_until_ok(
    c: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> serde_json::Value {
    let t = Instant::now();
    loop {
        match post(c, url, ADMIN, body).await {
            Some((200 | 201, j, _)) => return j,
            r => assert!(t.elapsed() < Duration::from_secs(30), "{url}: {r:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many of `ids` have a sample on the server at `base`, a lookup that
/// got no answer at all (a pooled connection closed under it, seen once in
/// about ten runs) asked again, as any client of a load balancer does; the
/// number of such retries is added to `unanswered`.
async fn present(
    c: &reqwest::Client,
    base: &str,
    ids: &[String],
    unanswered: &AtomicUsize,
) -> usize {
    let mut n = 0;
    for id in ids {
        let mut tries = 0;
        let st = loop {
            match get(c, &format!("{base}/v1/status/{id}")).await {
                Some((200, st)) => break st,
                r => {
                    tries += 1;
                    unanswered.fetch_add(1, Ordering::Relaxed);
                    assert!(tries < 3, "{base}/v1/status/{id}: {r:?}");
                }
            }
        };
        n += usize::from(st["last_sample_at"].is_string());
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_resume_through_haproxy_after_the_leader_is_killed() {
    let Some(db) = PgDb::create() else { return };
    let dir = tempfile::tempdir().unwrap();
    let c = reqwest::Client::new();
    let (mut a, b, d) = three_servers(&db, &c).await;
    let front_port = free_port();
    let cfg = config(front_port, [port_of(&a), port_of(&b), port_of(&d)]);
    let Some(proxy) = Haproxy::start(dir.path(), &cfg) else {
        return;
    };
    let front = format!("http://127.0.0.1:{front_port}");
    assert!(
        wait_for(&c, &front, "/readyz", Duration::from_secs(30)).await,
        "HAProxy answers: {}",
        proxy.log()
    );

    // Everything through the one address: tokens for a scanner and a gate.
    let tok = post_until_ok(
        &c,
        &format!("{front}/v1/tokens"),
        &json!({"role": "scanner", "name": "haproxy", "site": "S01"}),
    )
    .await;
    let scanner = tok["token"].as_str().unwrap().to_owned();
    let tok = post_until_ok(
        &c,
        &format!("{front}/v1/tokens"),
        &json!({"role": "gate", "name": "haproxy gate"}),
    )
    .await;
    let gate = tok["token"].as_str().unwrap().to_owned();

    let sent: Sent = Arc::default();
    let killed_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let first_ack_after_kill: Arc<Mutex<Option<Instant>>> = Arc::default();
    // The clients write until told to stop: once the new leader has
    // acknowledged a write (however fast or slow the machine).
    let stop = Arc::new(AtomicBool::new(false));
    let at = recent();
    let mut writers = Vec::new();
    for client in 0..4u32 {
        let (c, front, scanner, at, sent) = (
            c.clone(),
            front.clone(),
            scanner.clone(),
            at.clone(),
            sent.clone(),
        );
        let (killed, first_ack, stop) = (
            killed_at.clone(),
            first_ack_after_kill.clone(),
            stop.clone(),
        );
        writers.push(tokio::spawn(async move {
            for b in 0..1_000u32 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let (ids, body) = batch(client, b, 10, &at);
                let ix = {
                    let mut s = sent.lock();
                    s.push((ids, false));
                    s.len() - 1
                };
                let started = Instant::now();
                while started.elapsed() < Duration::from_secs(20) {
                    match post(&c, &format!("{front}/v1/records"), &scanner, &body).await {
                        Some((200, j, _)) => {
                            acknowledged(&j, &sent, ix, &killed, &first_ack);
                            break;
                        }
                        // HAProxy's own 502/503 while its checks catch up, a
                        // standby's `503 not_leader`, or no answer at all:
                        // the same address again, a moment later.
                        Some((502 | 503, _, _)) | None => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Some((st, j, _)) => panic!("a write answered {st}: {j}"),
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }

    // A reader through the same address: gate lookups and a round list,
    // until the writers stop and 20 reads in a row after the kill answered.
    // The gate token reaches the standbys within the contract's second
    // first (until then a standby answers it 401).
    let t = Instant::now();
    let mut works = 0;
    while works < 6 {
        let r = c
            .get(format!(
                "{front}/v1/status/{}",
                crate::helpers::pid("19910101", 1)
            ))
            .bearer_auth(&gate)
            .send()
            .await
            .unwrap();
        works = if r.status() == 200 { works + 1 } else { 0 };
        assert!(t.elapsed() < Duration::from_secs(10), "{}", r.status());
    }
    // Failures before the kill, and after it.
    let failed_reads = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let reader = {
        let (c, front, gate, sent, killed, stop, failed) = (
            c.clone(),
            front.clone(),
            gate.clone(),
            sent.clone(),
            killed_at.clone(),
            stop.clone(),
            failed_reads.clone(),
        );
        tokio::spawn(async move {
            let (mut in_a_row, t) = (0, Instant::now());
            while !(stop.load(Ordering::Relaxed) && in_a_row >= 20) {
                assert!(t.elapsed() < Duration::from_mins(2), "reads stalled");
                let id = sent.lock().first().map(|(ids, _)| ids[0].clone());
                let gate_ok = match id {
                    Some(id) => {
                        let r = c
                            .get(format!("{front}/v1/status/{id}"))
                            .bearer_auth(&gate)
                            .timeout(Duration::from_secs(5))
                            .send()
                            .await;
                        matches!(r, Ok(r) if r.status() == 200)
                    }
                    None => true,
                };
                let list_ok =
                    matches!(get(&c, &format!("{front}/v1/rounds")).await, Some((200, _)));
                if gate_ok && list_ok {
                    if killed.lock().is_some() {
                        in_a_row += 1;
                    }
                } else {
                    failed[usize::from(killed.lock().is_some())].fetch_add(1, Ordering::Relaxed);
                    in_a_row = 0;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let before = sent.lock().iter().filter(|(_, acked)| *acked).count();
    assert!(before > 0, "writes went through HAProxy before the kill");
    a.kill();
    let killed = Instant::now();
    *killed_at.lock() = Some(killed);

    // The anchor: when a standby itself answers `GET /leader` 200 (what
    // HAProxy's check waits for).
    let mut leads = None;
    while first_ack_after_kill.lock().is_none() && killed.elapsed() < Duration::from_secs(30) {
        if leads.is_none() {
            for s in [&b, &d] {
                if let Some((200, _)) = get(&c, &format!("{}/leader", s.base)).await {
                    leads = Some(killed.elapsed());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    reader.await.unwrap();
    let took = first_ack_after_kill
        .lock()
        .map(|t| t.duration_since(killed));
    let acked = sent.lock().iter().filter(|(_, acked)| *acked).count();
    eprintln!(
        "failover through HAProxy: first acknowledged write {took:?} after the SIGKILL \
         (a standby answered /leader 200 after {leads:?}); \
         {acked} batches acknowledged ({before} before the kill); \
         reads or gate lookups unanswered: {} before the kill, {} after it",
        failed_reads[0].load(Ordering::Relaxed),
        failed_reads[1].load(Ordering::Relaxed)
    );
    assert!(
        took.is_some(),
        "writes resumed through the same address: {}",
        proxy.log()
    );

    // The killed server restarts where HAProxy expects it, as a standby.
    let a2 = Server::start_on(&db.url(), port_of(&a));
    assert!(
        wait_for(&c, &a2.base, "/standby", Duration::from_secs(30)).await,
        "the killed server is back as a standby"
    );
    let sent = sent.lock().clone();
    assert!(
        sent.iter().all(|(_, acked)| *acked),
        "every batch was acknowledged in the end"
    );
    let unanswered = AtomicUsize::new(0);
    for s in [&b, &d, &a2] {
        for (n, (ids, _)) in sent.iter().enumerate() {
            // Standbys trail by at most a second.
            let mut have = present(&c, &s.base, ids, &unanswered).await;
            if have < ids.len() {
                tokio::time::sleep(Duration::from_secs(1)).await;
                have = present(&c, &s.base, ids, &unanswered).await;
            }
            assert_eq!(have, ids.len(), "batch {n} on {}", s.base);
        }
    }
    // And through the one address, whichever server answers each lookup.
    for (n, (ids, _)) in sent.iter().enumerate() {
        assert_eq!(
            present(&c, &front, ids, &unanswered).await,
            ids.len(),
            "batch {n} through HAProxy"
        );
    }
    eprintln!(
        "lookups asked again after no answer: {}",
        unanswered.load(Ordering::Relaxed)
    );
}
