//! The status cache against a real `redis-server` (and a real three-node
//! Redis Cluster), started by the tests on free ports. Only the engine is
//! faked, as the cache's `StatusSource`: a map of statuses.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{Days, NaiveDate};
use parking_lot::Mutex;
use redis::AsyncCommands as _;
use redis_test::cluster::{RedisCluster, RedisClusterConfiguration};
use redis_test::server::RedisServer;

use rollcall::domain::{PersonId, ReasonCode, Timestamp};
use rollcall::engine::clock::{Clock, ManualClock};
use rollcall::engine::status::{Reason, Status};
use rollcall::status_cache::{
    CacheBackend, CacheConfig, Keyer, RedisState, StatusCache, StatusSource, cache_key, cached_json,
};

const KEY: [u8; 32] = [0x5a; 32];

// ---------------------------------------------------------------- fakes

/// The engine, as far as the cache sees it: statuses in a map, green by
/// default. Can hold one person's next computation (to stage a race).
#[derive(Default)]
struct FakeEngine {
    statuses: Mutex<HashMap<PersonId, Status>>,
    calls: AtomicU64,
    hold: Mutex<Option<Hold>>,
}

struct Hold {
    person: PersonId,
    entered: tokio::sync::oneshot::Sender<()>,
    release: std::sync::mpsc::Receiver<()>,
}

impl FakeEngine {
    fn set(&self, person: PersonId, status: Status) {
        self.statuses.lock().insert(person, status);
    }

    fn status(&self, person: PersonId) -> Status {
        self.statuses
            .lock()
            .get(&person)
            .cloned()
            .unwrap_or_else(Status::green)
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

impl StatusSource for FakeEngine {
    fn statuses(&self, people: &[PersonId], _now: Timestamp) -> Vec<Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let computed: Vec<Status> = people.iter().map(|&p| self.status(p)).collect();
        let held = {
            let mut hold = self.hold.lock();
            if hold.as_ref().is_some_and(|h| people == [h.person]) {
                hold.take()
            } else {
                None
            }
        };
        if let Some(h) = held {
            // Computed already; the answer is delayed past a newer change.
            let _ = h.entered.send(());
            let _ = h.release.recv();
        }
        computed
    }

    fn everyone(&self) -> Vec<PersonId> {
        self.statuses.lock().keys().copied().collect()
    }
}

/// A distinct valid ID per `n` (region 610802, birth dates from 1950 on).
fn person(n: u64) -> PersonId {
    let birth = NaiveDate::from_ymd_opt(1950, 1, 1)
        .unwrap()
        .checked_add_days(Days::new(n / 1000))
        .unwrap();
    let date: u64 = birth.format("%Y%m%d").to_string().parse().unwrap();
    PersonId::from_u64(610_802 * 100_000_000_000 + date * 1000 + n % 1000).unwrap()
}

fn at(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}

fn yellow(round: &str) -> Status {
    Status::from_reasons(
        vec![Reason {
            code: ReasonCode::MissedRound,
            round_id: Some(round.into()),
        }],
        None,
        Some(at("2022-04-15T09:02:00+08:00")),
        Some(at("2022-04-15T21:40:00+08:00")),
    )
}

fn red() -> Status {
    Status::from_reasons(
        vec![Reason {
            code: ReasonCode::Positive,
            round_id: None,
        }],
        None,
        Some(at("2022-04-18T09:00:00+08:00")),
        None,
    )
}

// ---------------------------------------------------------------- servers

fn start_redis() -> RedisServer {
    let server = RedisServer::new();
    wait_for_server(&server);
    server
}

fn restart_redis(old: &mut RedisServer) -> RedisServer {
    let addr = old.client_addr().clone();
    old.stop();
    let server = RedisServer::new_with_addr_and_modules(addr, &[], false);
    wait_for_server(&server);
    server
}

fn wait_for_server(server: &RedisServer) {
    let client = redis::Client::open(server.connection_info()).unwrap();
    for _ in 0..200 {
        if let Ok(mut c) = client.get_connection()
            && redis::cmd("PING").query::<String>(&mut c).is_ok()
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("redis-server did not come up");
}

fn url(server: &RedisServer) -> String {
    let (host, port) = server.host_and_port().unwrap();
    format!("redis://{host}:{port}")
}

fn signal(server: &RedisServer, sig: &str) {
    let ok = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(server.process.id().to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig}");
}

/// Resumes a paused server even if the test fails, so its `Drop` can stop it.
struct Resume<'a>(&'a RedisServer);

impl Drop for Resume<'_> {
    fn drop(&mut self) {
        // No assertion here: a panic while unwinding would abort the run.
        let _ = std::process::Command::new("kill")
            .arg("-CONT")
            .arg(self.0.process.id().to_string())
            .status();
    }
}

/// An actix worker's stand-in: a thread running a single-threaded runtime,
/// where the cache reads through the thread's own Redis connection (the
/// tests' own runtime is multi-threaded, where it reads through the shared
/// one). Failure tests look up through both.
struct Worker {
    tx: Option<std::sync::mpsc::Sender<(PersonId, tokio::sync::oneshot::Sender<Status>)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    fn new(cache: &StatusCache) -> Worker {
        let cache = cache.clone();
        let (tx, rx) =
            std::sync::mpsc::channel::<(PersonId, tokio::sync::oneshot::Sender<Status>)>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            for (p, reply) in rx {
                let _ = reply.send(rt.block_on(cache.get(p)));
            }
        });
        Worker {
            tx: Some(tx),
            thread: Some(thread),
        }
    }

    async fn get(&self, p: PersonId) -> Status {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.tx.as_ref().unwrap().send((p, reply)).unwrap();
        answer.await.unwrap()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.connection_info())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

fn start_cluster() -> (RedisCluster, Vec<String>) {
    let cluster = RedisCluster::new(RedisClusterConfiguration::default());
    let urls = cluster
        .iter_servers()
        .map(|s| {
            let (host, port) = s.host_and_port().unwrap();
            format!("redis://{host}:{port}")
        })
        .collect();
    (cluster, urls)
}

// ---------------------------------------------------------------- cache

struct Setup {
    cache: StatusCache,
    engine: Arc<FakeEngine>,
    clock: Arc<ManualClock>,
}

async fn open(backend: CacheBackend, engine: Arc<FakeEngine>) -> Setup {
    let clock = ManualClock::new(at("2022-04-19T08:00:00+08:00"));
    let cache = StatusCache::open(
        CacheConfig { backend, key: KEY },
        engine.clone(),
        clock.clone() as Arc<dyn Clock>,
    )
    .await
    .unwrap();
    Setup {
        cache,
        engine,
        clock,
    }
}

async fn wait_for_state(cache: &StatusCache, state: RedisState) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while cache.redis_state() != state {
        assert!(Instant::now() < deadline, "never reached {state:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn flush(cache: &StatusCache, ticket: u64) {
    tokio::time::timeout(Duration::from_secs(10), cache.flushed(ticket))
        .await
        .expect("flushed resolves");
}

/// Gives each of `people` the engine status `status_of(index)` and waits
/// until the cache holds them all.
async fn set_and_flush(
    cache: &StatusCache,
    engine: &FakeEngine,
    people: &[PersonId],
    status_of: impl Fn(usize) -> Status,
) {
    for (i, &p) in people.iter().enumerate() {
        engine.set(p, status_of(i));
    }
    let t = cache.changed(people.to_vec());
    flush(cache, t).await;
}

/// The status stored under `person`'s key, if any.
async fn stored(conn: &mut impl redis::aio::ConnectionLike, person: PersonId) -> Option<Status> {
    let raw: Option<Vec<u8>> = redis::cmd("GET")
        .arg(cache_key(&KEY, person))
        .query_async(conn)
        .await
        .unwrap();
    raw.map(|raw| serde_json::from_slice(cached_json(&raw).expect("a cache value")).unwrap())
}

/// Every key and value on one server.
async fn dump(conn: &mut redis::aio::MultiplexedConnection) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut iter: redis::AsyncIter<Vec<u8>> = conn.scan().await.unwrap();
    while let Some(k) = futures_util::StreamExt::next(&mut iter).await {
        keys.push(k.unwrap());
    }
    drop(iter);
    let mut out = Vec::new();
    for k in keys {
        let v: Vec<u8> = conn.get(&k).await.unwrap();
        out.push((k, v));
    }
    out
}

fn longest_digit_run(bytes: &[u8]) -> usize {
    bytes
        .split(|b| !b.is_ascii_digit())
        .map(<[u8]>::len)
        .max()
        .unwrap_or(0)
}

fn assert_no_ids(pairs: &[(Vec<u8>, Vec<u8>)], people: &[PersonId]) {
    assert!(!pairs.is_empty());
    // The 17 leading digits of every ID: with or without its check character,
    // an ID would show them.
    let ids: HashSet<Vec<u8>> = people
        .iter()
        .map(|p| p.to_string().into_bytes()[..17].to_vec())
        .collect();
    for (k, v) in pairs {
        for bytes in [k, v] {
            let text = String::from_utf8_lossy(bytes);
            assert!(longest_digit_run(bytes) < 17, "an ID-like run in {text}");
            assert!(
                !bytes.windows(17).any(|w| ids.contains(w)),
                "a raw ID in {text}"
            );
        }
    }
}

// ---------------------------------------------------------------- single Redis

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_is_in_redis_once_flushed_and_then_served_from_it() {
    let server = start_redis();
    let engine = Arc::new(FakeEngine::default());
    let Setup { cache, engine, .. } = open(CacheBackend::Redis(url(&server)), engine).await;
    wait_for_state(&cache, RedisState::Ok).await;
    assert_eq!(cache.redis_state().as_str(), "ok");

    let people: Vec<PersonId> = (0..2_000).map(person).collect();
    for (i, &p) in people.iter().enumerate() {
        engine.set(p, if i % 3 == 0 { red() } else { yellow("7") });
    }
    let ticket = cache.changed(people.clone());
    flush(&cache, ticket).await;
    assert_eq!(cache.pending_len(), 0);

    let mut conn = raw(&server).await;
    for &p in &people {
        assert_eq!(stored(&mut conn, p).await, Some(engine.status(p)));
    }
    let calls = engine.calls();
    for &p in people.iter().take(50) {
        assert_eq!(cache.get(p).await, engine.status(p));
        let json = cache.get_json(p).await;
        assert_eq!(&json[..], serde_json::to_vec(&engine.status(p)).unwrap());
    }
    assert_eq!(engine.calls(), calls, "answered from Redis, not the engine");

    // On a worker thread (a single-threaded runtime) lookups read through
    // the thread's own socket (its `MGET`s written and parsed by the cache
    // itself), opened once beside the thread's connection for write-backs,
    // and still from Redis.
    let clients = async |conn: &mut redis::aio::MultiplexedConnection| -> Vec<String> {
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(conn)
            .await
            .unwrap();
        list.lines().map(str::to_owned).collect()
    };
    let before = clients(&mut conn).await;
    let worker = Worker::new(&cache);
    for &p in people.iter().take(50) {
        assert_eq!(worker.get(p).await, engine.status(p));
    }
    let opened: Vec<String> = clients(&mut conn)
        .await
        .into_iter()
        .filter(|c| {
            let id = c.split(' ').next();
            !before.iter().any(|b| b.split(' ').next() == id)
        })
        .collect();
    let last_command = |c: &String| {
        c.split(' ')
            .find_map(|f| f.strip_prefix("cmd="))
            .map(str::to_owned)
    };
    let mut commands: Vec<_> = opened.iter().filter_map(last_command).collect();
    commands.sort();
    assert_eq!(
        commands,
        ["info", "mget"],
        "two connections of its own: one checked the run_id, the other read: {opened:?}"
    );
    for &p in people.iter().skip(50).take(50) {
        assert_eq!(worker.get(p).await, engine.status(p));
    }
    assert_eq!(
        clients(&mut conn).await.len(),
        before.len() + 2,
        "and only those"
    );
    assert_eq!(engine.calls(), calls, "answered from Redis, not the engine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_expires_at_valid_until_and_a_later_status_clears_the_expiry() {
    let server = start_redis();
    let engine = Arc::new(FakeEngine::default());
    let Setup {
        cache,
        engine,
        clock,
    } = open(CacheBackend::Redis(url(&server)), engine).await;
    wait_for_state(&cache, RedisState::Ok).await;
    let p = person(1);
    let mut status = yellow("2");
    status.reasons[0].code = ReasonCode::NoRecentSample;
    status.reasons[0].round_id = None;
    status.valid_until = Some(clock.now().plus_millis(90 * 60_000));
    engine.set(p, status.clone());
    let t = cache.changed(vec![p]);
    flush(&cache, t).await;

    let mut conn = raw(&server).await;
    let pttl: i64 = conn.pttl(cache_key(&KEY, p)).await.unwrap();
    let expected = 90 * 60_000;
    assert!(
        (expected - 2_000..=expected).contains(&pttl),
        "PTTL {pttl}, expected about {expected}"
    );
    assert_eq!(cache.get(p).await, status);

    // Past valid_until on our clock the cached answer is not served, even
    // though Redis (on its own clock) still holds the key.
    engine.set(p, yellow("2"));
    clock.advance_millis(90 * 60_000);
    assert_eq!(cache.get(p).await, yellow("2"));

    // A status without valid_until clears the expiry.
    let t = cache.changed(vec![p]);
    flush(&cache, t).await;
    let pttl: i64 = conn.pttl(cache_key(&KEY, p)).await.unwrap();
    assert_eq!(pttl, -1, "no expiry");
    assert_eq!(stored(&mut conn, p).await, Some(yellow("2")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_holds_no_raw_id_nor_any_eighteen_digit_string() {
    let server = start_redis();
    let engine = Arc::new(FakeEngine::default());
    let Setup { cache, engine, .. } = open(CacheBackend::Redis(url(&server)), engine).await;
    wait_for_state(&cache, RedisState::Ok).await;
    let people: Vec<PersonId> = (0..3_000).map(|n| person(n * 7)).collect();
    for &p in &people[..1_500] {
        engine.set(p, yellow("12"));
    }
    let t = cache.changed(people[..1_500].to_vec());
    flush(&cache, t).await;
    for &p in &people[1_500..] {
        cache.get(p).await; // misses, written back
    }
    let pairs = dump(&mut raw(&server).await).await;
    assert!(
        pairs.len() > people.len(),
        "every person and the epoch marker"
    );
    assert_no_ids(&pairs, &people);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_is_computed_by_the_engine_and_written_back() {
    let server = start_redis();
    let engine = Arc::new(FakeEngine::default());
    let Setup { cache, engine, .. } = open(CacheBackend::Redis(url(&server)), engine).await;
    wait_for_state(&cache, RedisState::Ok).await;
    let p = person(42);
    let mut conn = raw(&server).await;
    assert_eq!(stored(&mut conn, p).await, None);
    // The engine knows something the cache was never told (as after a
    // restart of this process): a miss asks the engine.
    engine.set(p, red());
    let calls = engine.calls();
    assert_eq!(cache.get(p).await, red());
    assert_eq!(engine.calls(), calls + 1);
    assert_eq!(stored(&mut conn, p).await, Some(red()));
    assert_eq!(cache.get(p).await, red());
    assert_eq!(engine.calls(), calls + 1, "now a hit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_write_back_never_overwrites_a_newer_write_through() {
    let server = start_redis();
    let engine = Arc::new(FakeEngine::default());
    let Setup { cache, engine, .. } = open(CacheBackend::Redis(url(&server)), engine).await;
    wait_for_state(&cache, RedisState::Ok).await;
    let p = person(9);

    // A gate's lookup misses and computes green, but its write-back is
    // delayed until after the person turned yellow and that was written.
    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel();
    *engine.hold.lock() = Some(Hold {
        person: p,
        entered: entered_tx,
        release: release_rx,
    });
    let lookup = tokio::spawn({
        let cache = cache.clone();
        async move { cache.get(p).await }
    });
    entered_rx.await.unwrap();
    engine.set(p, yellow("5"));
    let t = cache.changed(vec![p]);
    flush(&cache, t).await;
    let mut conn = raw(&server).await;
    assert_eq!(stored(&mut conn, p).await, Some(yellow("5")));

    release_tx.send(()).unwrap();
    assert_eq!(
        lookup.await.unwrap(),
        Status::green(),
        "the late lookup's own answer"
    );
    assert_eq!(
        stored(&mut conn, p).await,
        Some(yellow("5")),
        "not overwritten"
    );
    assert_eq!(cache.get(p).await, yellow("5"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_killed_lookups_come_from_the_engine_and_state_is_unreachable() {
    let mut server = start_redis();
    let engine = Arc::new(FakeEngine::default());
    let Setup { cache, engine, .. } = open(CacheBackend::Redis(url(&server)), engine).await;
    let worker = Worker::new(&cache);
    wait_for_state(&cache, RedisState::Ok).await;
    let people: Vec<PersonId> = (0..100).map(person).collect();
    for &p in &people {
        engine.set(p, yellow("1"));
    }
    let t = cache.changed(people.clone());
    flush(&cache, t).await;
    for &p in &people {
        assert_eq!(worker.get(p).await, yellow("1"));
    }

    server.stop();
    for &p in &people[..50] {
        engine.set(p, Status::green());
    }
    let t = cache.changed(people[..50].to_vec());
    for &p in &people {
        assert_eq!(cache.get(p).await, engine.status(p));
        assert_eq!(worker.get(p).await, engine.status(p));
    }
    wait_for_state(&cache, RedisState::Unreachable).await;
    assert_eq!(cache.redis_state().as_str(), "unreachable");
    flush(&cache, t).await; // remembered, not written
    for &p in &people {
        assert_eq!(cache.get(p).await, engine.status(p));
        assert_eq!(worker.get(p).await, engine.status(p));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_paused_no_old_colour_is_ever_served() {
    let server = start_redis();
    let engine = Arc::new(FakeEngine::default());
    let Setup { cache, engine, .. } = open(CacheBackend::Redis(url(&server)), engine).await;
    let worker = Worker::new(&cache);
    wait_for_state(&cache, RedisState::Ok).await;
    let people: Vec<PersonId> = (0..60).map(person).collect();
    for &p in &people {
        engine.set(p, Status::green());
    }
    let t = cache.changed(people.clone());
    flush(&cache, t).await;
    for &p in &people {
        assert_eq!(cache.get(p).await, Status::green());
    }

    let flip = |round: u64| {
        // Each round flips a different third of the people.
        let changed: Vec<PersonId> = people
            .iter()
            .copied()
            .enumerate()
            .filter(|(i, _)| (*i as u64 + round).is_multiple_of(3))
            .map(|(_, p)| p)
            .collect();
        for &p in &changed {
            let next = if engine.status(p) == Status::green() {
                yellow(&round.to_string())
            } else {
                Status::green()
            };
            engine.set(p, next);
        }
        changed
    };
    let mut lookups = 0u64;
    let mut check_all = async |cache: &StatusCache| {
        for &p in &people {
            assert_eq!(cache.get(p).await, engine.status(p), "an old colour served");
            assert_eq!(
                worker.get(p).await,
                engine.status(p),
                "an old colour served on a worker"
            );
            lookups += 1;
        }
    };

    signal(&server, "STOP");
    let resume = Resume(&server);
    let mut round = 0;
    let paused_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < paused_until {
        round += 1;
        let t = cache.changed(flip(round));
        check_all(&cache).await;
        flush(&cache, t).await; // remembered while Redis is paused
    }
    assert_eq!(cache.redis_state(), RedisState::Unreachable);
    drop(resume); // SIGCONT

    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        round += 1;
        let _ = cache.changed(flip(round));
        check_all(&cache).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for_state(&cache, RedisState::Ok).await;
    let t = cache.changed(Vec::new());
    flush(&cache, t).await;
    check_all(&cache).await;
    let mut conn = raw(&server).await;
    for &p in &people {
        assert_eq!(stored(&mut conn, p).await, Some(engine.status(p)));
    }
    assert!(lookups > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_is_rewritten_with_changes_made_while_it_was_down() {
    let mut server = start_redis();
    let engine = Arc::new(FakeEngine::default());
    let Setup { cache, engine, .. } = open(CacheBackend::Redis(url(&server)), engine).await;
    let worker = Worker::new(&cache);
    wait_for_state(&cache, RedisState::Ok).await;
    let people: Vec<PersonId> = (0..500).map(person).collect();
    for &p in &people {
        engine.set(p, yellow("3"));
    }
    let t = cache.changed(people.clone());
    flush(&cache, t).await;
    for &p in &people {
        assert_eq!(worker.get(p).await, yellow("3"));
    }

    server.stop();
    for &p in &people[..100] {
        engine.set(p, red());
    }
    let t = cache.changed(people[..100].to_vec());
    flush(&cache, t).await;
    for &p in &people {
        assert_eq!(cache.get(p).await, engine.status(p));
    }

    let server = restart_redis(&mut server);
    wait_for_state(&cache, RedisState::Ok).await;
    let mut conn = raw(&server).await;
    for &p in &people {
        assert_eq!(
            stored(&mut conn, p).await,
            Some(engine.status(p)),
            "rewritten"
        );
        assert_eq!(cache.get(p).await, engine.status(p));
        assert_eq!(worker.get(p).await, engine.status(p));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_noticed_only_by_the_health_check_still_forces_a_full_rewrite() {
    let mut server = start_redis();
    let engine = Arc::new(FakeEngine::default());
    let Setup { cache, engine, .. } = open(CacheBackend::Redis(url(&server)), engine).await;
    wait_for_state(&cache, RedisState::Ok).await;
    let people: Vec<PersonId> = (0..200).map(person).collect();
    for &p in &people {
        engine.set(p, yellow("4"));
    }
    let t = cache.changed(people.clone());
    flush(&cache, t).await;
    // No lookups or changes: only the periodic check can notice.
    let server = restart_redis(&mut server);
    let mut conn = raw(&server).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n: usize = redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
        if n > people.len() && cache.redis_state() == RedisState::Ok {
            break;
        }
        assert!(Instant::now() < deadline, "not rewritten");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for &p in &people {
        assert_eq!(stored(&mut conn, p).await, Some(yellow("4")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_with_redis_unreachable_succeeds_and_trusts_it_once_it_is_up() {
    // Take a free port, then start nothing on it yet.
    let probe = RedisServer::new();
    let addr = probe.client_addr().clone();
    let mut probe = probe;
    probe.stop();
    let (host, port) = match &addr {
        redis::ConnectionAddr::Tcp(h, p) => (h.clone(), *p),
        other => panic!("unexpected address {other:?}"),
    };
    let engine = Arc::new(FakeEngine::default());
    engine.set(person(1), red());
    let Setup { cache, engine, .. } = open(
        CacheBackend::Redis(format!("redis://{host}:{port}")),
        engine,
    )
    .await;
    assert_eq!(cache.redis_state(), RedisState::Unreachable);
    assert_eq!(cache.get(person(1)).await, red());
    let t = cache.changed(vec![person(2)]);
    flush(&cache, t).await;

    let server = RedisServer::new_with_addr_and_modules(addr, &[], false);
    wait_for_server(&server);
    wait_for_state(&cache, RedisState::Ok).await;
    let mut conn = raw(&server).await;
    assert_eq!(
        stored(&mut conn, person(1)).await,
        Some(red()),
        "full rewrite"
    );
    assert_eq!(
        stored(&mut conn, person(2)).await,
        Some(Status::green()),
        "dirty set"
    );
    assert_eq!(cache.get(person(1)).await, engine.status(person(1)));
}

// ---------------------------------------------------------------- batched reads

/// Runs `test` as an actix worker runs a lookup: on a single-threaded
/// runtime (so the cache reads through this thread's own connection, where
/// concurrent lookups share one `MGET`), with a metrics recorder of its own,
/// whose Prometheus text it returns beside the result (counters of other
/// tests in this process never mix in). The thread is a new one, as a
/// worker is: the cache resolves some metrics once per thread.
fn on_worker_thread<T: Send>(test: impl AsyncFnOnce() -> T + Send) -> (T, String) {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let out = std::thread::scope(|s| {
        s.spawn(|| {
            metrics::with_local_recorder(&recorder, || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(test())
            })
        })
        .join()
        .unwrap()
    });
    (out, handle.render())
}

/// A counter's value in Prometheus text (0 when never incremented).
fn counter(rendered: &str, name: &str) -> u64 {
    rendered
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// How many `MGET`s the server has run (`INFO commandstats`).
fn mgets_run(server: &RedisServer) -> u64 {
    let mut conn = redis::Client::open(server.connection_info())
        .unwrap()
        .get_connection()
        .unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut conn)
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_mget:calls="))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

/// Lookups of everyone at once, from one thread (as a worker's concurrent
/// requests are), in the order given.
async fn look_up_together(cache: &StatusCache, people: &[PersonId]) -> Vec<Status> {
    futures_util::future::join_all(people.iter().map(|&p| cache.get(p))).await
}

/// 300 lookups arriving together on one worker thread are read with two
/// `MGET`s (a batch holds at most 256 keys), and each gets its
/// own person's status; in the middle of the batch, a value copied from
/// another person's key is counted as forged, answered from the engine and
/// replaced, and a person with a change not yet written is answered from the
/// engine.
#[test]
fn lookups_arriving_together_share_mgets_and_each_keeps_every_check() {
    let server = start_redis();
    let ((), metrics) = on_worker_thread(async || {
        let engine = Arc::new(FakeEngine::default());
        let Setup { cache, engine, .. } = open(CacheBackend::Redis(url(&server)), engine).await;
        wait_for_state(&cache, RedisState::Ok).await;
        let people: Vec<PersonId> = (0..300).map(|n| person(n * 3)).collect();
        set_and_flush(&cache, &engine, &people, |i| match i % 3 {
            0 => red(),
            1 => yellow(&i.to_string()),
            _ => Status::green(),
        })
        .await;
        // This thread's connection is opened by a first lookup.
        assert_eq!(cache.get(people[0]).await, red());

        // A genuine green value copied under a red person's key.
        let (forged, source) = (people[150], people[152]);
        assert_eq!(
            (engine.status(forged), engine.status(source)),
            (red(), Status::green())
        );
        let mut conn = raw(&server).await;
        let copied: Vec<u8> = conn.get(cache_key(&KEY, source)).await.unwrap();
        let _: () = conn.set(cache_key(&KEY, forged), &copied).await.unwrap();
        // A change the writer has not written yet (it runs on this thread,
        // and every lookup below checks before this thread yields).
        let changed = people[200];
        engine.set(changed, yellow("late"));
        let _ticket = cache.changed(vec![changed]);

        let mgets = mgets_run(&server);
        let answers = look_up_together(&cache, &people).await;
        for (&p, answer) in people.iter().zip(&answers) {
            assert_eq!(*answer, engine.status(p), "each gets its own status");
        }
        assert_eq!(answers[200], yellow("late"));
        assert_eq!(
            mgets_run(&server),
            mgets + 2,
            "two MGETs: 256 keys, then the rest"
        );
        // The forged value was replaced by the engine's answer.
        assert_eq!(stored(&mut conn, forged).await, Some(red()));
        assert_eq!(cache.get(forged).await, red(), "now a hit");
    });
    assert_eq!(
        counter(&metrics, "rollcall_cache_forged_total"),
        1,
        "{metrics}"
    );
    assert_eq!(
        counter(&metrics, "rollcall_cache_fallbacks_total"),
        1,
        "{metrics}"
    );
    assert_eq!(
        counter(&metrics, "rollcall_cache_misses_total"),
        1,
        "{metrics}"
    );
    assert_eq!(
        counter(&metrics, "rollcall_cache_hits_total"),
        1 + 298 + 1,
        "{metrics}"
    );
}

/// A Redis that stalls (here stopped, as when it is descheduled mid-command
/// or forks) is not waited for: a batch's lookups are answered from the
/// engine once its read is `HEDGE` late, and so are lookups that queue behind
/// it meanwhile, without another read. Redis stays trusted: when it resumes,
/// the late read completes and the next lookups are hits again.
#[test]
fn lookups_are_answered_from_the_engine_while_redis_stalls_and_it_stays_trusted() {
    let server = start_redis();
    let (people, metrics) = on_worker_thread(async || {
        let engine = Arc::new(FakeEngine::default());
        let Setup { cache, engine, .. } = open(CacheBackend::Redis(url(&server)), engine).await;
        wait_for_state(&cache, RedisState::Ok).await;
        let people: Vec<PersonId> = (0..50).map(person).collect();
        set_and_flush(&cache, &engine, &people, |i| {
            if i % 2 == 0 { red() } else { yellow("4") }
        })
        .await;
        assert_eq!(cache.get(people[1]).await, yellow("4"), "a hit");
        let (calls, mgets) = (engine.calls(), mgets_run(&server));

        signal(&server, "STOP");
        let resume = Resume(&server);
        let first = look_up_together(&cache, &people[..25]).await;
        // Queued while the first batch's read is still out: answered at once.
        let then = look_up_together(&cache, &people[25..]).await;
        drop(resume); // SIGCONT
        for (&p, answer) in people.iter().zip(first.iter().chain(&then)) {
            assert_eq!(*answer, engine.status(p));
        }
        assert_eq!(engine.calls(), calls + 50, "all 50 from the engine");

        // The late read completes; Redis was never distrusted. (Lookups
        // still queue as `Slow` until the reader has taken in its reply.)
        wait_for_mgets(&server, mgets + 1).await;
        assert_eq!(cache.redis_state(), RedisState::Ok);
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let calls = engine.calls();
            assert_eq!(cache.get(people[0]).await, red());
            if engine.calls() == calls {
                break;
            }
            assert!(Instant::now() < until, "never a hit again");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let calls = engine.calls();
        let again = look_up_together(&cache, &people).await;
        for (&p, answer) in people.iter().zip(&again) {
            assert_eq!(*answer, engine.status(p));
        }
        assert_eq!(engine.calls(), calls, "hits again");
        assert_eq!(cache.redis_state(), RedisState::Ok);
        people
    });
    // 50 while stalled; any more are the probes above, before the reader
    // took in the late reply.
    let hedged = counter(&metrics, "rollcall_cache_hedged_total");
    assert!(hedged >= people.len() as u64, "{metrics}");
    assert_eq!(
        counter(&metrics, "rollcall_cache_fallbacks_total"),
        0,
        "{metrics}"
    );
    assert_eq!(
        counter(&metrics, "rollcall_cache_hits_total"),
        1 + 1 + people.len() as u64,
        "{metrics}"
    );
}

/// Waits until Redis has run `n` `MGET`s in all.
async fn wait_for_mgets(server: &RedisServer, n: u64) {
    let until = Instant::now() + Duration::from_secs(5);
    while mgets_run(server) < n {
        assert!(Instant::now() < until, "the late MGET never completed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Redis killed while a batch is in flight: every lookup of the batch is
/// still answered, from the engine (once the read is late), and Redis is no
/// longer trusted, though no lookup was waiting for the read when it failed.
#[test]
fn redis_killed_under_a_batch_leaves_every_lookup_answered_by_the_engine() {
    let server = start_redis();
    let (people, metrics) = on_worker_thread(async || {
        let engine = Arc::new(FakeEngine::default());
        let Setup { cache, engine, .. } = open(CacheBackend::Redis(url(&server)), engine).await;
        wait_for_state(&cache, RedisState::Ok).await;
        let people: Vec<PersonId> = (0..100).map(person).collect();
        set_and_flush(&cache, &engine, &people, |i| {
            if i % 2 == 0 { red() } else { yellow("9") }
        })
        .await;
        assert_eq!(cache.get(people[1]).await, yellow("9"));

        // Paused, the batch's MGET waits unanswered; then the server dies
        // under it (or the read times out first: either is an error).
        signal(&server, "STOP");
        let resume = Resume(&server);
        let kill = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            signal(&server, "KILL");
        };
        let (answers, ()) = tokio::join!(look_up_together(&cache, &people), kill);
        drop(resume);
        for (&p, answer) in people.iter().zip(&answers) {
            assert_eq!(*answer, engine.status(p));
        }
        // Distrusted by the batching task when the read fails (or by the
        // health check, if it looks first), though no lookup still waits.
        wait_for_state(&cache, RedisState::Unreachable).await;
        people
    });
    assert_eq!(
        counter(&metrics, "rollcall_cache_hedged_total")
            + counter(&metrics, "rollcall_cache_fallbacks_total"),
        people.len() as u64,
        "{metrics}"
    );
    assert_eq!(
        counter(&metrics, "rollcall_cache_hedged_total"),
        people.len() as u64,
        "answered once the read was late, before Redis died: {metrics}"
    );
    assert_eq!(
        counter(&metrics, "rollcall_cache_hits_total"),
        1,
        "{metrics}"
    );
}

// ---------------------------------------------------------------- cluster

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_is_written_through_by_slot_and_serves_lookups() {
    let (cluster, urls) = start_cluster();
    let engine = Arc::new(FakeEngine::default());
    let Setup { cache, engine, .. } = open(CacheBackend::Cluster(urls.clone()), engine).await;
    wait_for_state(&cache, RedisState::Ok).await;

    let people: Vec<PersonId> = (0..3_000).map(person).collect();
    set_and_flush(&cache, &engine, &people, |i| {
        if i % 2 == 0 { red() } else { yellow("8") }
    })
    .await;
    assert_eq!(cache.pending_len(), 0);

    let client = redis::cluster::ClusterClient::new(urls).unwrap();
    let mut conn = client.get_async_connection().await.unwrap();
    for &p in &people {
        assert_eq!(stored(&mut conn, p).await, Some(engine.status(p)));
    }
    // Spread over every node.
    for server in cluster.iter_servers() {
        let n: usize = redis::cmd("DBSIZE")
            .query_async(&mut raw(server).await)
            .await
            .unwrap();
        assert!(n > 500, "a node holds only {n} keys");
    }
    let calls = engine.calls();
    for &p in people.iter().take(100) {
        assert_eq!(cache.get(p).await, engine.status(p));
    }
    assert_eq!(engine.calls(), calls, "hits");

    // A miss is computed and written back; a change is written through.
    let q = person(5_000);
    engine.set(q, yellow("9"));
    assert_eq!(cache.get(q).await, yellow("9"));
    assert_eq!(stored(&mut conn, q).await, Some(yellow("9")));
    engine.set(q, Status::green());
    let t = cache.changed(vec![q]);
    flush(&cache, t).await;
    assert_eq!(stored(&mut conn, q).await, Some(Status::green()));
    assert_eq!(cache.get(q).await, Status::green());

    // Another person's genuine red value copied under q's key fails its MAC:
    // q is answered from the engine and the copy replaced (on the node that
    // holds q's slot).
    let red_raw: Vec<u8> = conn.get(cache_key(&KEY, people[0])).await.unwrap();
    let _: () = conn.set(cache_key(&KEY, q), &red_raw).await.unwrap();
    let calls = engine.calls();
    assert_eq!(cache.get(q).await, Status::green());
    assert_eq!(engine.calls(), calls + 1, "answered from the engine");
    let now_raw: Vec<u8> = conn.get(cache_key(&KEY, q)).await.unwrap();
    let keyer = Keyer::new(&KEY);
    assert!(keyer.authentic(&keyer.digest(q), &now_raw), "replaced");
    assert_eq!(stored(&mut conn, q).await, Some(Status::green()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_holds_no_raw_id_and_keys_expire_at_valid_until() {
    let (cluster, urls) = start_cluster();
    let engine = Arc::new(FakeEngine::default());
    let Setup {
        cache,
        engine,
        clock,
    } = open(CacheBackend::Cluster(urls.clone()), engine).await;
    wait_for_state(&cache, RedisState::Ok).await;

    let people: Vec<PersonId> = (0..1_000).map(|n| person(n * 13)).collect();
    let mut status = red();
    status.valid_until = Some(clock.now().plus_millis(3_600_000));
    for &p in &people {
        engine.set(p, status.clone());
    }
    let t = cache.changed(people.clone());
    flush(&cache, t).await;

    let client = redis::cluster::ClusterClient::new(urls).unwrap();
    let mut conn = client.get_async_connection().await.unwrap();
    for &p in people.iter().take(50) {
        let pttl: i64 = conn.pttl(cache_key(&KEY, p)).await.unwrap();
        assert!((3_598_000..=3_600_000).contains(&pttl), "PTTL {pttl}");
    }
    let mut pairs = Vec::new();
    for server in cluster.iter_servers() {
        pairs.extend(dump(&mut raw(server).await).await);
    }
    assert!(pairs.len() > people.len());
    assert_no_ids(&pairs, &people);
}

// ---------------------------------------------------------------- measurement

/// User and system CPU of this process so far (Linux).
fn own_cpu() -> (Duration, Duration) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let tick = |i: usize| Duration::from_millis(fields[i].parse::<u64>().unwrap() * 10);
    (tick(11), tick(12))
}

/// The cache's own cost, not the engine's: everyone has the same status.
struct SameForEveryone(Status);

impl StatusSource for SameForEveryone {
    fn statuses(&self, people: &[PersonId], _now: Timestamp) -> Vec<Status> {
        vec![self.0.clone(); people.len()]
    }
    fn everyone(&self) -> Vec<PersonId> {
        Vec::new()
    }
}

/// A close's worth of flips is entirely in Redis once `flushed` returns
/// (the timing at a million flips is measured by `examples/` and reported in
/// docs/benchmarks.md, not asserted here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_sized_batch_of_flips_is_all_in_redis_once_flushed() {
    let server = start_redis();
    let clock = ManualClock::new(at("2022-04-19T08:00:00+08:00"));
    let cache = StatusCache::open(
        CacheConfig {
            backend: CacheBackend::Redis(url(&server)),
            key: KEY,
        },
        Arc::new(SameForEveryone(yellow("3"))),
        clock as Arc<dyn Clock>,
    )
    .await
    .unwrap();
    wait_for_state(&cache, RedisState::Ok).await;
    let people: Vec<PersonId> = (0..50_000).map(person).collect();
    for run in 0..1 {
        let before = own_cpu();
        let started = Instant::now();
        let t = cache.changed(people.clone());
        let queued = started.elapsed();
        cache.flushed(t).await;
        let elapsed = started.elapsed();
        let after = own_cpu();
        let mut conn = raw(&server).await;
        let n: usize = redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
        let stats: String = redis::cmd("INFO")
            .arg("cpu")
            .query_async(&mut conn)
            .await
            .unwrap();
        let redis_cpu: f64 = stats
            .lines()
            .filter_map(|l| {
                l.strip_prefix("used_cpu_user:")
                    .or_else(|| l.strip_prefix("used_cpu_sys:"))
            })
            .map(|v| v.trim().parse::<f64>().unwrap())
            .sum();
        eprintln!(
            "run {run}: 50,000 flips: changed() {queued:?}, flushed after {elapsed:?}; {n} keys; \
             pending {}; this process's CPU {:?}; redis-server's CPU so far {redis_cpu:.2}s",
            cache.pending_len(),
            (after.0 + after.1).saturating_sub(before.0 + before.1),
        );
        assert_eq!(cache.pending_len(), 0);
        assert_eq!(n, 50_001);
    }
}
