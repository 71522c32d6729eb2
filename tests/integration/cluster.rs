//! Several servers on one PostgreSQL store (docs/api.md, Several servers),
//! against the real PostgreSQL on 127.0.0.1:5432 (each test creates and
//! drops its own database) and real `rollcall serve` processes: replay
//! equality with the SQLite store; a leader killed (SIGKILL) mid-ingest while
//! clients write with retries; a leader whose session is terminated; writes
//! to a standby; how far a standby trails.
//!
//! Skipped, with a message, only when PostgreSQL cannot be reached (`.ci/run`
//! installs and starts it, so in CI they always run).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};

use rollcall::engine::clock::{Clock, ManualClock};
use rollcall::store::{Store, StoreOptions};

use crate::helpers::{ADMIN, free_port, pid, small_city};
use crate::store::{counting_cache, drive_a_campaign, new_engine, now0};

const ADMIN_URL: &str = "postgres://root@127.0.0.1:5432/postgres";

/// A database of its own for one test, dropped at the end.
pub(crate) struct PgDb {
    name: String,
}

/// Runs `f` on a plain thread: the synchronous client runs its own runtime,
/// which must not start inside the test's.
fn off_runtime<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(f)
        .join()
        .expect("the PostgreSQL helper thread")
}

impl PgDb {
    /// `None` (after saying so) when PostgreSQL is unreachable.
    pub(crate) fn create() -> Option<PgDb> {
        let name = format!("rollcall_test_{:016x}", rand::random::<u64>());
        let n = name.clone();
        let made = off_runtime(move || -> Result<(), postgres::Error> {
            let mut c = postgres::Client::connect(ADMIN_URL, postgres::NoTls)?;
            c.batch_execute(&format!("CREATE DATABASE {n}"))
        });
        match made {
            Ok(()) => Some(PgDb { name }),
            Err(e) => {
                rollcall::skip_test(&format!(
                    "PostgreSQL is unreachable at {ADMIN_URL} ({e}); .ci/run installs and starts it"
                ));
                None
            }
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("postgres://root@127.0.0.1:5432/{}", self.name)
    }

    /// Runs SQL on this database, returning the first column of each row as text.
    pub(crate) fn query(&self, sql: &str) -> Vec<Option<String>> {
        let (url, sql) = (self.url(), sql.to_owned());
        off_runtime(move || {
            let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            c.simple_query(&sql)
                .unwrap()
                .into_iter()
                .filter_map(|m| match m {
                    postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_owned)),
                    _ => None,
                })
                .collect()
        })
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let n = self.name.clone();
        off_runtime(move || {
            if let Ok(mut c) = postgres::Client::connect(ADMIN_URL, postgres::NoTls) {
                let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {n} WITH (FORCE)"));
            }
        });
    }
}

pub(crate) fn open_pg(
    url: &str,
    dir: &std::path::Path,
    clock: &Arc<ManualClock>,
) -> (Store, rollcall::engine::SharedEngine) {
    open_pg_with(url, dir, clock, StoreOptions::default())
}

pub(crate) fn open_pg_with(
    url: &str,
    dir: &std::path::Path,
    clock: &Arc<ManualClock>,
    options: StoreOptions,
) -> (Store, rollcall::engine::SharedEngine) {
    let engine = new_engine();
    let (cache, _) = counting_cache();
    let clock: Arc<dyn Clock> = clock.clone();
    let store = Store::open_postgres(url, dir, None, engine.clone(), clock, cache, options)
        .expect("open the PostgreSQL store");
    (store, engine)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_and_sqlite_replay_the_same_campaign_to_the_same_engine() {
    let Some(db) = PgDb::create() else { return };
    let dir = tempfile::tempdir().unwrap();

    let clock = ManualClock::new(now0());
    let (sqlite, sqlite_engine) = crate::store::open(dir.path(), &clock);
    drive_a_campaign(&sqlite, &clock).await;
    let at = clock.now();
    let sqlite_live = sqlite_engine.read().digest(at);
    sqlite.close().await;
    drop(sqlite);

    let clock = ManualClock::new(now0());
    let scratch = tempfile::tempdir().unwrap();
    let (pg, pg_engine) = open_pg(&db.url(), scratch.path(), &clock);
    assert!(pg.is_leader(), "the only server takes the lock");
    drive_a_campaign(&pg, &clock).await;
    assert_eq!(clock.now(), at);
    let pg_live = pg_engine.read().digest(at);
    let tokens = pg.tokens();
    pg.close().await;
    drop(pg);
    assert_eq!(pg_live, sqlite_live, "the same campaign, the same engine");

    // Replays: each store's log rebuilds its engine.
    let (sqlite, e) = crate::store::open(dir.path(), &clock);
    assert_eq!(e.read().digest(at), sqlite_live);
    drop(sqlite);
    let (pg, e) = open_pg(&db.url(), scratch.path(), &clock);
    assert!(pg.replay_stats().events > 0);
    assert_eq!(e.read().digest(at), pg_live, "PostgreSQL replay");
    assert_eq!(pg.tokens(), tokens, "tokens kept");
    pg.close().await;

    // A schema from a newer rollcall is refused, untouched.
    db.query("UPDATE rollcall_schema SET version = 99");
    let engine = new_engine();
    let (cache, _) = counting_cache();
    let url = db.url();
    let scratch = scratch.path().to_owned();
    let refused = off_runtime(move || {
        Store::open_postgres(
            &url,
            &scratch,
            None,
            engine,
            Arc::new(rollcall::engine::clock::SystemClock),
            cache,
            StoreOptions::default(),
        )
        .err()
        .map(|e| e.to_string())
    });
    assert!(
        refused.as_deref().is_some_and(|e| e.contains("99")),
        "{refused:?}"
    );
    assert_eq!(
        db.query("SELECT version FROM rollcall_schema"),
        [Some("99".into())]
    );
}

/// Every batch sent: its people, and whether it was acknowledged.
pub(crate) type Sent = Arc<Mutex<Vec<(Vec<String>, bool)>>>;

/// Notes an answered batch of ten: sent entry `ix` is acknowledged, and the
/// first acknowledgement after the kill is timed. A retry of a batch whose
/// answer was lost with the killed leader finds it there: duplicates.
pub(crate) fn acknowledged(
    j: &Value,
    sent: &Sent,
    ix: usize,
    killed: &Mutex<Option<Instant>>,
    first_ack: &Mutex<Option<Instant>>,
) {
    let (acc, dup) = (
        j["accepted"].as_u64().unwrap(),
        j["duplicates"].as_u64().unwrap(),
    );
    assert_eq!(acc + dup, 10, "{j}");
    sent.lock()[ix].1 = true;
    if killed.lock().is_some() {
        first_ack.lock().get_or_insert_with(Instant::now);
    }
}

/// A `rollcall serve` child on the shared store.
pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
    /// Its own scratch directory (`--data`), as on a machine of its own.
    _data: tempfile::TempDir,
}

impl Server {
    pub(crate) fn start(url: &str) -> Server {
        Server::start_on(url, free_port())
    }

    /// On a given port: a killed server restarted where a load balancer
    /// expects it.
    pub(crate) fn start_on(url: &str, port: u16) -> Server {
        let base = format!("http://127.0.0.1:{port}");
        let data = tempfile::tempdir().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_rollcall"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data")
            .arg(data.path())
            .env("ROLLCALL_STORE", url)
            .env("ROLLCALL_ADVERTISE", &base)
            .env("ROLLCALL_ADMIN_TOKEN", ADMIN)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rollcall serve starts");
        Server {
            child,
            base,
            _data: data,
        }
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub(crate) async fn get(c: &reqwest::Client, url: &str) -> Option<(u16, Value)> {
    let r = c
        .get(url)
        .bearer_auth(ADMIN)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().await.unwrap_or(Value::Null)))
}

/// Three servers on `db`: the first started leads (checked), the other two
/// follow as standbys in step (checked).
pub(crate) async fn three_servers(db: &PgDb, c: &reqwest::Client) -> (Server, Server, Server) {
    let a = Server::start(&db.url());
    assert!(
        wait_for(c, &a.base, "/leader", Duration::from_secs(30)).await,
        "A leads"
    );
    let (b, d) = (Server::start(&db.url()), Server::start(&db.url()));
    for s in [&b, &d] {
        assert!(
            wait_for(c, &s.base, "/standby", Duration::from_secs(30)).await,
            "a standby in step"
        );
    }
    (a, b, d)
}

/// Waits until `path` answers 200 on `base` (at most `within`).
pub(crate) async fn wait_for(
    c: &reqwest::Client,
    base: &str,
    path: &str,
    within: Duration,
) -> bool {
    let t = Instant::now();
    while t.elapsed() < within {
        if let Some((200, _)) = get(c, &format!("{base}{path}")).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

pub(crate) async fn post(
    c: &reqwest::Client,
    url: &str,
    token: &str,
    body: &Value,
) -> Option<(u16, Value, Option<String>)> {
    let r = c
        .post(url)
        .bearer_auth(token)
        .json(body)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Some((status, r.json().await.unwrap_or(Value::Null), retry))
}

/// A batch of `n` records, one person each, identified by (client, batch).
pub(crate) fn batch(client: u32, b: u32, n: u32, at: &str) -> (Vec<String>, Value) {
    let ids: Vec<String> = (0..n)
        .map(|i| {
            let k = client * 10_000 + b * 10 + i;
            let day = 1 + (k / 1000) % 28;
            let month = 1 + (k / 28_000) % 12;
            pid(&format!("1991{month:02}{day:02}"), k % 1000)
        })
        .collect();
    let recs: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| json!({"person_id": id, "tube_id": format!("F{client}B{b}T{i}"), "collected_at": at}))
        .collect();
    (ids, json!({ "records": recs }))
}

pub(crate) fn recent() -> String {
    rollcall::domain::Timestamp::from_datetime(chrono::Utc::now())
        .plus_millis(-60_000)
        .to_rfc3339()
}

/// How many of `ids` have a sample on the server at `base`.
pub(crate) async fn present(c: &reqwest::Client, base: &str, ids: &[String]) -> usize {
    let mut n = 0;
    for id in ids {
        let (_, st) = get(c, &format!("{base}/v1/status/{id}"))
            .await
            .expect("a status");
        n += usize::from(st["last_sample_at"].is_string());
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_from_a_killed_leader_with_every_acknowledged_record() {
    let Some(db) = PgDb::create() else { return };
    let c = reqwest::Client::new();
    let (mut a, b, d) = three_servers(&db, &c).await;

    // A register, a round due shortly, a scanner.
    let (csv, people) = small_city(2);
    let r = c
        .post(format!("{}/v1/register", a.base))
        .bearer_auth(ADMIN)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let now = rollcall::domain::Timestamp::from_datetime(chrono::Utc::now());
    let deadline = now.plus_millis(1_700);
    let (st, round, _) = post(
        &c,
        &format!("{}/v1/rounds", a.base),
        ADMIN,
        &json!({"name": "failover", "scope": ["崇文路街道"], "opens_at": now.plus_millis(-3_600_000), "deadline": deadline}),
    )
    .await
    .unwrap();
    assert_eq!(st, 201, "{round}");
    let round_id = round["id"].as_str().unwrap().to_owned();
    let (st, tok, _) = post(
        &c,
        &format!("{}/v1/tokens", a.base),
        ADMIN,
        &json!({"role": "scanner", "name": "failover", "site": "S01"}),
    )
    .await
    .unwrap();
    assert_eq!(st, 201);
    let scanner = tok["token"].as_str().unwrap().to_owned();

    // Clients write through any server, retrying elsewhere on 503 or no answer.
    let bases: Vec<String> = [&a, &b, &d].iter().map(|s| s.base.clone()).collect();
    let sent: Sent = Arc::default();
    let first_ack_after_kill: Arc<Mutex<Option<Instant>>> = Arc::default();
    let killed_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    // The clients write until told to stop: after the failover, once a write
    // was acknowledged by the new leader (however fast or slow the machine).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let at = recent();
    let mut tasks = Vec::new();
    for client in 0..4u32 {
        let (c, bases, scanner, at, sent) = (
            c.clone(),
            bases.clone(),
            scanner.clone(),
            at.clone(),
            sent.clone(),
        );
        let (first_ack, killed) = (first_ack_after_kill.clone(), killed_at.clone());
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut target = 0usize;
            for b in 0..1_000u32 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
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
                    match post(
                        &c,
                        &format!("{}/v1/records", bases[target]),
                        &scanner,
                        &body,
                    )
                    .await
                    {
                        Some((200, j, _)) => {
                            acknowledged(&j, &sent, ix, &killed, &first_ack);
                            break;
                        }
                        Some((503, j, retry)) if j["error"]["code"] == "not_leader" => {
                            assert_eq!(retry.as_deref(), Some("1"));
                            // Go where the standby says the leader is.
                            if let Some(l) = j["leader"].as_str()
                                && let Some(i) = bases.iter().position(|x| x == l)
                            {
                                target = i;
                            } else {
                                target = (target + 1) % bases.len();
                            }
                        }
                        _ => {
                            target = (target + 1) % bases.len();
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    a.kill();
    *killed_at.lock() = Some(Instant::now());
    let killed = Instant::now();

    // A standby is leader within 10 s.
    let mut leader = None;
    while killed.elapsed() < Duration::from_secs(10) && leader.is_none() {
        for s in [&b, &d] {
            if let Some((200, _)) = get(&c, &format!("{}/leader", s.base)).await {
                leader = Some(s.base.clone());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let leader = leader.expect("a standby became leader within 10 s");
    let waited = Instant::now();
    while first_ack_after_kill.lock().is_none() && waited.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let took = first_ack_after_kill
        .lock()
        .map(|t| t.duration_since(killed));
    eprintln!("failover: first acknowledged write {took:?} after the SIGKILL; leader {leader}");
    assert!(
        took.is_some(),
        "writes were acknowledged after the failover"
    );

    // The killed server comes back as a standby; every server has every
    // acknowledged record, and no batch is half there.
    let a2 = Server::start(&db.url());
    assert!(wait_for(&c, &a2.base, "/standby", Duration::from_secs(30)).await);
    let sent = sent.lock().clone();
    assert!(
        sent.iter().all(|(_, acked)| *acked),
        "every batch was acknowledged in the end"
    );
    for s in [&b, &d, &a2] {
        for (n, (ids, _)) in sent.iter().enumerate() {
            // Standbys trail by at most a second.
            let mut have = present(&c, &s.base, ids).await;
            if have < ids.len() {
                tokio::time::sleep(Duration::from_secs(1)).await;
                have = present(&c, &s.base, ids).await;
            }
            assert_eq!(have, ids.len(), "batch {n} on {}", s.base);
        }
        // The round whose deadline passed is closed, dated at its deadline.
        let (st, r) = get(&c, &format!("{}/v1/rounds/{round_id}", s.base))
            .await
            .unwrap();
        assert_eq!(st, 200, "{r}");
        assert_eq!(r["state"], "closed", "{r}");
        assert_eq!(r["closed_at"], json!(deadline), "{r}");
    }
    let _ = people;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_from_the_database_stops_acknowledging_and_becomes_a_standby() {
    let Some(db) = PgDb::create() else { return };
    let c = reqwest::Client::new();
    let a = Server::start(&db.url());
    assert!(wait_for(&c, &a.base, "/leader", Duration::from_secs(30)).await);
    let b = Server::start(&db.url());
    assert!(wait_for(&c, &b.base, "/standby", Duration::from_secs(30)).await);
    let (st, tok, _) = post(
        &c,
        &format!("{}/v1/tokens", a.base),
        ADMIN,
        &json!({"role": "scanner", "name": "cut", "site": "S01"}),
    )
    .await
    .unwrap();
    assert_eq!(st, 201);
    let scanner = tok["token"].as_str().unwrap().to_owned();
    let at = recent();

    // The new token works on the standby within the second a write has to show.
    let t = Instant::now();
    loop {
        let r = c
            .get(format!("{}/v1/tokens", b.base))
            .bearer_auth(&scanner)
            .send()
            .await
            .unwrap();
        if r.status() != 401 {
            break;
        }
        assert!(
            t.elapsed() <= Duration::from_secs(1),
            "the token did not reach the standby"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A write to the standby: 503 not_leader, Retry-After, the leader's URL.
    let (ids, body) = batch(1, 0, 5, &at);
    let (st, j, retry) = post(&c, &format!("{}/v1/records", b.base), &scanner, &body)
        .await
        .unwrap();
    assert_eq!(
        (st, j["error"]["code"].as_str()),
        (503, Some("not_leader")),
        "{j}"
    );
    assert_eq!(j["leader"], json!(a.base));
    assert_eq!(retry.as_deref(), Some("1"));
    assert_eq!(
        present(&c, &b.base, &ids).await,
        0,
        "nothing of it was kept"
    );
    let (st, j) = get(&c, &format!("{}/standby", b.base)).await.unwrap();
    assert_eq!(st, 200);
    assert_eq!(j["role"], "standby");
    assert_eq!(j["leader"], json!(a.base));
    let (st, j) = get(&c, &format!("{}/readyz", b.base)).await.unwrap();
    assert_eq!((st, j["role"].as_str()), (200, Some("standby")));

    // A write to the leader shows on the standby within the contract's second.
    let (st, _, _) = post(&c, &format!("{}/v1/records", a.base), &scanner, &body)
        .await
        .unwrap();
    assert_eq!(st, 200);
    let t = Instant::now();
    while present(&c, &b.base, &ids).await < ids.len() {
        assert!(
            t.elapsed() <= Duration::from_secs(1),
            "the standby trails by more than 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Cut the leader's session (the one holding the lock), waiting until
    // the backend is gone: from then on nothing may be acknowledged.
    let killed = db.query(
        "SELECT pg_terminate_backend(pid, 5000)::text FROM pg_locks
         WHERE locktype = 'advisory' AND granted AND objid = 1667329132
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    );
    assert_eq!(killed, [Some("true".into())]);
    // From now on A acknowledges nothing; B leads within 10 s.
    let (ids2, body2) = batch(1, 1, 5, &at);
    let cut = Instant::now();
    let mut new_leader = false;
    while cut.elapsed() < Duration::from_secs(10) {
        let r = post(&c, &format!("{}/v1/records", a.base), &scanner, &body2).await;
        assert!(
            !matches!(r, Some((200, _, _))),
            "a leader cut off acknowledged a write"
        );
        if let Some((200, _)) = get(&c, &format!("{}/leader", b.base)).await {
            new_leader = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(new_leader, "the standby took over within 10 s");
    assert!(
        wait_for(&c, &a.base, "/standby", Duration::from_secs(10)).await,
        "A follows now"
    );
    // It names the new leader once it has read who leads (its next poll).
    let t = Instant::now();
    loop {
        let (st, j) = get(&c, &format!("{}/leader", a.base)).await.unwrap();
        assert_eq!(st, 503, "{j}");
        if j["leader"] == json!(b.base) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(1), "{j}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The new leader takes writes; the old one sees them.
    let (ids3, body3) = batch(1, 2, 5, &at);
    let (st, _, _) = post(&c, &format!("{}/v1/records", b.base), &scanner, &body3)
        .await
        .unwrap();
    assert_eq!(st, 200);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(present(&c, &a.base, &ids3).await, ids3.len());
    // Whatever A refused is nowhere, or (its commit lost with the session
    // in flight) whole: never half.
    let on_b = present(&c, &b.base, &ids2).await;
    assert!(on_b == 0 || on_b == ids2.len(), "{on_b}");
}
