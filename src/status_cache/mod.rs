//! The status cache: what venue gates read. Every status change the store
//! applies is written through, in pipelined batches, to Redis (one server or
//! a cluster) or, without `--redis`, to an in-process stand-in; a gate's
//! lookup reads the cache and falls back to the engine whenever the cache
//! cannot be trusted.
//!
//! Depends on `domain` and on `engine`'s `Status` and `Clock` only; the
//! engine itself is reached through [`StatusSource`], implemented by the app
//! layer. Knows nothing of HTTP or of the store.
//!
//! # Never stale
//!
//! A stale green lets an untested person in, so an answer comes from the
//! cache only when all of this holds, and from the engine otherwise:
//! - the person has no change queued or in flight ([`StatusCache::changed`]
//!   marks them pending before it returns; the writer unmarks them only once
//!   a status computed after that change is acknowledged by Redis);
//! - Redis is trusted: after any error or timeout, on reads or writes, it is
//!   not read again until fresh connections have written every change made
//!   meanwhile (the dirty set) and, if Redis restarted (its `run_id`s or the
//!   epoch marker changed) or this process just started, a full rewrite of
//!   [`StatusSource::everyone`];
//! - the value belongs to the current epoch (a value from before the latest
//!   full rewrite is treated as a miss) and its `valid_until` has not come;
//! - the value carries its MAC (see `format`): one written by anyone without
//!   the cache key, or copied from another person's key, is a miss, counted
//!   in [`METRIC_FORGED`], logged (by its key, never the ID) and replaced by
//!   the engine's answer if nothing else replaced it meanwhile.
//!
//! Every value carries a version. A miss's write-back is written with a
//! Lua script that keeps it only if it is newer than what Redis holds, so a
//! late write-back never puts an older status over a newer one (why the
//! versions order correctly is told at [`Shared::next_version`]).
//! Write-through to one Redis is plain `MSET` (a third of the script's cost
//! per key, for a round close's million flips): chunks are computed and sent
//! strictly in order over one connection, and after any error the new write
//! connection first kills the old one (`CLIENT KILL ID`), so a pipeline that
//! timed out can never land after the statuses that replace it. On a
//! cluster, whose client retries and reroutes on its own, write-through uses
//! the versioned script too.
//!
//! # Layout
//! - `format`: keys (keyed hashes of IDs) and values (version, expiry, JSON).
//! - `pending`: the change queue and the set of people not yet written.
//! - `memory`: the in-process backend.
//! - `redis_conn`: connections, the write script, `run_id`s and the epoch.
//! - `reads`: gate reads, coalesced into `MGET`s per connection; a read
//!   Redis is slow to answer is not waited for (answered from the engine).
//! - `resp`: a worker's own socket for those `MGET`s (one Redis over TCP),
//!   written and parsed without the `redis` crate.
//! - `writer`: the background task that writes and resynchronises.

mod format;
mod memory;
mod pending;
mod reads;
mod redis_conn;
mod resp;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{Notify, watch};

use crate::domain::{PersonId, Timestamp};
use crate::engine::clock::Clock;
use crate::engine::status::Status;

use format::{decode_value, epoch_of};
use memory::MemoryMap;
use pending::{Pending, Queue};
use reads::{Found, OnError, Reader};
use redis_conn::{Entry, READ_TIMEOUT, Target};

pub use format::{KEY_PREFIX, Keyer};

/// Counter: lookups answered from the cache.
pub const METRIC_HITS: &str = "rollcall_cache_hits_total";

thread_local! {
    /// [`METRIC_HITS`], resolved once per thread: counted on every gate
    /// lookup, where finding it by name each time was a measurable share.
    static HITS: metrics::Counter = metrics::counter!(METRIC_HITS);
}

/// Counter: lookups the cache did not hold (computed and written back).
pub const METRIC_MISSES: &str = "rollcall_cache_misses_total";
/// Counter: statuses written to the cache (write-through and write-back).
pub const METRIC_WRITES: &str = "rollcall_cache_writes_total";
/// Counter: values read from Redis that failed their MAC (written by
/// someone without the cache key, or copied from another person's key);
/// each is answered from the engine like a miss.
pub const METRIC_FORGED: &str = "rollcall_cache_forged_total";
/// Counter: lookups answered from the engine because the cache was not
/// trusted (Redis unreachable or resynchronising, or a change of that person
/// not yet written).
pub const METRIC_FALLBACKS: &str = "rollcall_cache_fallbacks_total";
/// Counter: lookups answered from the engine because Redis, still trusted,
/// had not answered their read within `reads::HEDGE`.
pub const METRIC_HEDGED: &str = "rollcall_cache_hedged_total";

/// Where statuses come from (the engine behind its lock). Implemented by the
/// http/app layer.
pub trait StatusSource: Send + Sync + 'static {
    /// Current statuses of these people at `now`, in the same order.
    fn statuses(&self, people: &[PersonId], now: Timestamp) -> Vec<Status>;
    /// Everyone whose status may be other than the default green (for a full
    /// rewrite after Redis restarts empty or stale).
    fn everyone(&self) -> Vec<PersonId>;
}

/// Which cache stands behind the gates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheBackend {
    /// No Redis: an in-process map (`/readyz` says `"redis": "disabled"`).
    InProcess,
    /// One Redis server, e.g. `redis://127.0.0.1:6379`.
    Redis(String),
    /// A Redis Cluster, given by one or more of its nodes' URLs.
    Cluster(Vec<String>),
}

/// How to open the cache.
/// Says whether this server may write Redis now (see `Shared::writes_gate`).
pub type WritesGate = Arc<dyn Fn() -> bool + Send + Sync>;

#[derive(Clone)]
pub struct CacheConfig {
    pub backend: CacheBackend,
    /// The secret that keys the hash of IDs (`ROLLCALL_CACHE_KEY`).
    pub key: [u8; 32],
}

impl std::fmt::Debug for CacheConfig {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheConfig")
            .field("backend", &self.backend)
            .field("key", &"<secret>")
            .finish()
    }
}

/// Why the cache could not be opened. An unreachable Redis is not one of
/// them: the cache opens and keeps trying.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The Redis URL (or one of the cluster's) does not parse.
    #[error("invalid Redis URL")]
    InvalidRedisUrl(#[source] redis::RedisError),
    /// `Cluster` was given no node.
    #[error("a Redis Cluster needs at least one node URL")]
    NoClusterNodes,
    /// `open` was called outside a Tokio runtime.
    #[error("the status cache needs a Tokio runtime")]
    NoRuntime(#[source] tokio::runtime::TryCurrentError),
}

/// The state `/readyz` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedisState {
    /// Redis is trusted: gates are answered from it.
    Ok,
    /// Redis is down, or back but not yet resynchronised: gates are answered
    /// from the engine.
    Unreachable,
    /// No Redis configured (the in-process cache).
    Disabled,
}

impl RedisState {
    /// The wire name in `/readyz`.
    pub fn as_str(self) -> &'static str {
        match self {
            RedisState::Ok => "ok",
            RedisState::Unreachable => "unreachable",
            RedisState::Disabled => "disabled",
        }
    }
}

/// The Redis key under which `person`'s status is cached with `key`: for
/// operators and tests; the cache computes it itself.
pub fn cache_key(key: &[u8; 32], person: PersonId) -> String {
    String::from_utf8_lossy(&Keyer::new(key).key(person)).into_owned()
}

/// The wire JSON inside a raw cached value (header stripped), if the value
/// is one the cache wrote: for operators and tests.
pub fn cached_json(raw: &[u8]) -> Option<&[u8]> {
    decode_value(raw).map(|d| d.json)
}

/// The gates' status cache. Cheap to clone; open once at start-up, from the
/// runtime that lives as long as the server (its background task and Redis
/// connections run there).
#[derive(Clone)]
pub struct StatusCache {
    handle: Arc<Handle>,
}

/// Owned by the `StatusCache` clones only: when the last one goes, the
/// background task is told to stop.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.wake.notify_one();
    }
}

/// State shared by the handles and the background writer.
pub(crate) struct Shared {
    /// Unique in the process (see `LocalRead`).
    id: u64,
    /// Itself, for the reads' batching tasks (see `reads::OnError`).
    me: std::sync::Weak<Shared>,
    source: Arc<dyn StatusSource>,
    clock: Arc<dyn Clock>,
    keyer: Keyer,
    backend: Backend,
    /// Tickets and versions, from one counter so that they order together
    /// (see `next_version`). An atomic: taken on every change and miss from
    /// many threads, and only ever incremented.
    seq: AtomicU64,
    /// The epoch of the latest full rewrite (0 before the first). An atomic:
    /// read with every version and hit, written only by the writer, only
    /// upwards.
    epoch: AtomicU64,
    /// Whether Redis may be read: odd = trusted, even = not. Each change of
    /// trust adds one, so a reader that saw value `t` before its read can tell
    /// whether trust was lost (or lost and regained) meanwhile. One atomic
    /// rather than a flag and a counter, so both move together. Only the
    /// writer makes it odd (after a resync); anyone may make it even.
    trust: AtomicU64,
    /// Changes waiting for the writer. A mutex: `changed` (the store's writer
    /// thread) and the background writer both touch it briefly, and ticket
    /// order must equal queue order.
    queue: Mutex<Queue>,
    /// People whose latest change is not yet written (sharded locks inside).
    pending: Pending,
    /// Wakes the writer: a `Notify` keeps one permit when the writer is busy,
    /// so no change is missed, repeated calls coalesce, and it can be
    /// signalled from a plain thread.
    wake: Notify,
    /// What `flushed` waits for. A watch channel: any number of callers wait
    /// on it and only the latest value matters.
    progress: watch::Sender<Progress>,
    /// Whether this server may write Redis (`None`: always). Several servers
    /// share one Redis and only the leader writes it: a standby neither
    /// writes nor reads it (its gates ask its engine), and a standby that
    /// becomes leader rewrites everyone before Redis is read again.
    writes_gate: Option<WritesGate>,
    /// Set when the last handle drops. An atomic flag, read by the writer
    /// after each wake-up.
    shutdown: AtomicBool,
}

/// How far the writer has come.
#[derive(Clone, Copy, Debug)]
struct Progress {
    /// The ticket up to which every change is written (or remembered).
    done: u64,
    /// Mirrors `trust`: while Redis is not trusted, every reported change
    /// is remembered (queued, pending, or in the writer's dirty set) and
    /// will be written before its person is read from Redis again.
    trusted: bool,
}

enum Backend {
    Memory(MemoryMap),
    // Boxed: the Redis side is a few hundred bytes, the map a pointer or two.
    Redis(Box<RedisSide>),
}

struct RedisSide {
    target: Target,
    /// The connection gate reads use (batched, see `reads`), replaced by the
    /// writer at each resync. A read/write lock: every lookup clones it
    /// (shared), a resync swaps it (exclusive) a few times a day at most.
    read: RwLock<Option<Reader>>,
    /// The trust value the last resync granted and the `run_id`s it checked:
    /// a worker thread's own read connection is used only under that trust,
    /// and only if it reaches the same instance.
    verified: RwLock<Option<(u64, String)>>,
}

/// A worker thread's own read connection: on an actix worker (a
/// single-threaded runtime) a connection opened there is driven there, so a
/// lookup's read does not hop to another thread and back (measured: a
/// fifth of the server's time under load went to those context switches),
/// and the thread's concurrent lookups share one `MGET` (see `reads`).
struct LocalRead {
    /// Which cache it belongs to (`Shared::id`: an address could be reused
    /// by a later cache) and under which trust value it was opened: a new
    /// resync means a new connection.
    cache: u64,
    trust: u64,
    reader: Reader,
}

/// The next `Shared::id`.
static NEXT_CACHE_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static LOCAL_READ: std::cell::RefCell<Option<LocalRead>> = const { std::cell::RefCell::new(None) };
}

/// A lookup's answer: the wire JSON from the cache, or a status computed now.
enum Answer {
    Cached(Bytes),
    Computed(Status),
}

impl StatusCache {
    /// Opens the cache and starts its background writer. With Redis, the
    /// cache starts untrusted (`Unreachable`): gates are answered from the
    /// engine until the first connection has written a full rewrite; an
    /// unreachable Redis is retried in the background.
    ///
    /// Fails only on a malformed URL, an empty cluster list or when called
    /// outside a Tokio runtime.
    // Async by contract (callers await it at start-up), though opening itself
    // does not wait: connecting is the background writer's job, so that an
    // unreachable Redis never holds up start-up.
    #[allow(clippy::unused_async)]
    pub async fn open(
        cfg: CacheConfig,
        source: Arc<dyn StatusSource>,
        clock: Arc<dyn Clock>,
    ) -> Result<StatusCache, CacheError> {
        Self::open_gated(cfg, source, clock, None).await
    }

    /// [`StatusCache::open`] for one of several servers on one Redis:
    /// `gate` says whether this server may write it now (the leader).
    #[allow(clippy::unused_async)]
    pub async fn open_gated(
        cfg: CacheConfig,
        source: Arc<dyn StatusSource>,
        clock: Arc<dyn Clock>,
        gate: Option<WritesGate>,
    ) -> Result<StatusCache, CacheError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(CacheError::NoRuntime)?;
        let backend = match cfg.backend {
            CacheBackend::InProcess => Backend::Memory(MemoryMap::new()),
            CacheBackend::Redis(url) => Backend::Redis(Box::new(RedisSide {
                target: Target::Single(
                    redis::Client::open(url.as_str()).map_err(CacheError::InvalidRedisUrl)?,
                ),
                read: RwLock::new(None),
                verified: RwLock::new(None),
            })),
            CacheBackend::Cluster(nodes) => {
                if nodes.is_empty() {
                    return Err(CacheError::NoClusterNodes);
                }
                // Parse the URLs now so a typo fails start-up, not every retry.
                redis::cluster::ClusterClient::new(nodes.clone())
                    .map_err(CacheError::InvalidRedisUrl)?;
                Backend::Redis(Box::new(RedisSide {
                    target: Target::Cluster(nodes),
                    read: RwLock::new(None),
                    verified: RwLock::new(None),
                }))
            }
        };
        let trusted = matches!(backend, Backend::Memory(_));
        let shared = Arc::new_cyclic(|me| Shared {
            id: NEXT_CACHE_ID.fetch_add(1, Ordering::Relaxed),
            me: me.clone(),
            source,
            clock,
            keyer: Keyer::new(&cfg.key),
            backend,
            seq: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            trust: AtomicU64::new(u64::from(trusted)),
            queue: Mutex::new(Queue::default()),
            pending: Pending::new(),
            wake: Notify::new(),
            progress: watch::Sender::new(Progress { done: 0, trusted }),
            shutdown: AtomicBool::new(false),
            writes_gate: gate,
        });
        runtime.spawn(writer::run(Arc::clone(&shared)));
        Ok(StatusCache {
            handle: Arc::new(Handle { shared }),
        })
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// Reports that these people's statuses may have changed; call after the
    /// change is applied to the engine. Never blocks on Redis: it marks them
    /// pending (gates then get their status from the engine) and queues them
    /// for the background writer. Returns a ticket for [`Self::flushed`].
    pub fn changed(&self, people: Vec<PersonId>) -> u64 {
        let s = self.shared();
        let ticket = {
            let mut queue = s.queue.lock();
            let ticket = s.next_seq();
            // Under the queue lock, so that when the writer reads
            // `last_ticket` every change up to it is already pending: a
            // status it then computes includes those changes, and it may
            // unmark them after writing.
            s.pending.insert_all(&people, ticket);
            if !people.is_empty() {
                queue.batches.push(people);
            }
            queue.last_ticket = ticket;
            ticket
        };
        s.wake.notify_one();
        ticket
    }

    /// Resolves once every change up to `ticket` is written to the cache,
    /// or, while Redis is not trusted (down, paused, resynchronising),
    /// remembered: such a change is written before its person is read from
    /// Redis again, and until then gates get it from the engine. With Redis
    /// paused, this waits out one write timeout at most.
    pub async fn flushed(&self, ticket: u64) {
        let mut progress = self.shared().progress.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = progress.wait_for(|p| p.done >= ticket || !p.trusted).await;
    }

    /// The status a gate sees.
    pub async fn get(&self, person: PersonId) -> Status {
        match self.lookup(person).await {
            Answer::Computed(status) => status,
            Answer::Cached(json) => match serde_json::from_slice(&json) {
                Ok(status) => status,
                Err(e) => {
                    tracing::error!(error = %e, "status cache: a cached value does not parse");
                    self.shared().fallback(person)
                }
            },
        }
    }

    /// The status a gate sees, as the wire JSON of `GET /v1/status`: a cache
    /// hit is answered with the cached bytes, without parsing them.
    pub async fn get_json(&self, person: PersonId) -> Bytes {
        match self.lookup(person).await {
            Answer::Cached(json) => json,
            Answer::Computed(status) => {
                let mut json = Vec::with_capacity(192);
                format::write_status_json(&mut json, &status);
                Bytes::from(json)
            }
        }
    }

    /// Whether gates are being answered from Redis (for `/readyz`).
    pub fn redis_state(&self) -> RedisState {
        let s = self.shared();
        match s.backend {
            Backend::Memory(_) => RedisState::Disabled,
            Backend::Redis(_) if s.trusted_now() => RedisState::Ok,
            Backend::Redis(_) => RedisState::Unreachable,
        }
    }

    async fn lookup(&self, person: PersonId) -> Answer {
        let s = self.shared();
        match &s.backend {
            Backend::Memory(map) => s.lookup_memory(map, person),
            Backend::Redis(redis) => s.lookup_redis(redis, person).await,
        }
    }

    /// How many people have a change not yet written (tests, diagnostics).
    pub fn pending_len(&self) -> usize {
        self.shared().pending.len()
    }
}

impl Shared {
    fn lookup_memory(&self, map: &MemoryMap, person: PersonId) -> Answer {
        if self.pending.contains(person) {
            return Answer::Computed(self.fallback(person));
        }
        let now = self.clock.now();
        let digest = self.keyer.digest(person);
        if let Some(raw) = map.get(&digest)
            && decode_value(&raw).is_some_and(|d| !d.expired_at(now))
        {
            HITS.with(|c| c.increment(1));
            return Answer::Cached(raw.slice(format::HEADER_LEN..));
        }
        metrics::counter!(METRIC_MISSES).increment(1);
        // Versioned before computing: see `next_version`.
        let version = self.next_version();
        let status = self.compute(person, now);
        // Values here never leave the process, so they are not checked
        // against their MAC on reading; they carry it all the same, so both
        // backends hold the same bytes.
        if map.put_if_newer(
            digest,
            Bytes::from(self.keyer.encode_value(&digest, version, &status)),
        ) {
            metrics::counter!(METRIC_WRITES).increment(1);
        }
        Answer::Computed(status)
    }

    async fn lookup_redis(&self, redis: &RedisSide, person: PersonId) -> Answer {
        let trust = self.trust.load(Ordering::SeqCst);
        if trust & 1 == 0 || self.pending.contains(person) {
            return Answer::Computed(self.fallback(person));
        }
        let Some(reader) = self.read_conn(redis, trust).await else {
            return Answer::Computed(self.fallback(person));
        };
        let now = self.clock.now();
        let digest = self.keyer.digest(person);
        let found = match reader.get(format::key_of(&digest)).await {
            Found::Value(found) => found,
            Found::Slow => {
                metrics::counter!(METRIC_HEDGED).increment(1);
                return Answer::Computed(self.compute(person, self.clock.now()));
            }
            Found::Failed(e) => {
                self.distrust(trust, &e);
                return Answer::Computed(self.fallback(person));
            }
        };
        if self.trust.load(Ordering::SeqCst) != trust {
            // Trust was lost while we read: the value may come from a Redis
            // that restarted or missed writes.
            return Answer::Computed(self.fallback(person));
        }
        let mut forged = None;
        if let Some(raw) = found {
            if self.keyer.authentic(&digest, &raw) {
                let epoch = self.epoch.load(Ordering::SeqCst);
                if decode_value(&raw)
                    .is_some_and(|d| epoch_of(d.version) == epoch && !d.expired_at(now))
                {
                    HITS.with(|c| c.increment(1));
                    return Answer::Cached(raw.slice(format::HEADER_LEN..));
                }
            } else {
                // Counted and logged when it is shaped like a value (a
                // forgery); anything else (a value of an older format) is a
                // plain miss. Either is replaced.
                if decode_value(&raw).is_some() {
                    metrics::counter!(METRIC_FORGED).increment(1);
                    tracing::warn!(
                        key = %String::from_utf8_lossy(&format::key_of(&digest)),
                        "status cache: a value failed its MAC (written without the cache key, \
                         or copied from another key); answered from the engine and replaced"
                    );
                }
                forged = Some(raw);
            }
        }
        // A miss (or a value from before the latest full rewrite, expired on
        // our clock, or forged): computed and written back. The write-back
        // cannot overwrite a newer write-through: see `next_version`. A
        // forged value is replaced only if it is still the one read (its
        // version may be anything, so the versioned write could keep it).
        metrics::counter!(METRIC_MISSES).increment(1);
        let version = self.next_version();
        let status = self.compute(person, now);
        let entry = Entry {
            digest,
            value: self.keyer.encode_value(&digest, version, &status),
            px: format::expiry_px(&status, now),
        };
        let mut conn = reader.conn();
        let written = match forged {
            Some(old) => conn.replace(&entry, &old).await,
            None => conn.write_back(&entry).await,
        };
        match written {
            Ok(()) => metrics::counter!(METRIC_WRITES).increment(1),
            Err(e) => self.distrust(trust, &e),
        }
        Answer::Computed(status)
    }

    /// The connection a lookup under `trust` reads with: this thread's own
    /// when it runs a single-threaded runtime (an actix worker) and one
    /// reaching the verified instance could be opened, else the shared one.
    /// Opening waits at most `READ_TIMEOUT`; meanwhile nothing is trusted
    /// that the resync did not check (`run_id`s compared, trust unchanged).
    async fn read_conn(&self, redis: &RedisSide, trust: u64) -> Option<Reader> {
        use tokio::runtime::{Handle, RuntimeFlavor};
        let shared = || redis.read.read().clone();
        let local = matches!(redis.target, Target::Single(_))
            && Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::CurrentThread);
        if !local {
            return shared();
        }
        let me = self.id;
        let mine = LOCAL_READ.with_borrow(|l| {
            l.as_ref()
                .filter(|l| l.cache == me && l.trust == trust)
                .map(|l| l.reader.clone())
        });
        if mine.is_some() {
            return mine;
        }
        let Some((granted, ids)) = redis.verified.read().clone() else {
            return shared();
        };
        if granted != trust {
            return shared();
        }
        let opened = tokio::time::timeout(READ_TIMEOUT, async {
            let mut c = redis.target.connect(READ_TIMEOUT).await?;
            let mut found = c.run_ids().await?;
            // The reads' own socket must reach the same instance.
            let raw = match redis.target.raw_read_conn(READ_TIMEOUT).await? {
                Some(mut raw) => {
                    if raw.run_id().await? != found {
                        found.clear();
                    }
                    Some(raw)
                }
                None => None,
            };
            Ok::<_, redis::RedisError>((c, raw, found))
        })
        .await;
        match opened {
            Ok(Ok((conn, raw, found)))
                if found == ids && self.trust.load(Ordering::SeqCst) == trust =>
            {
                let reader = Reader::new(conn, raw, self.on_read_error(trust));
                LOCAL_READ.set(Some(LocalRead {
                    cache: me,
                    trust,
                    reader: reader.clone(),
                }));
                Some(reader)
            }
            // Another instance answers: the health check will see it too;
            // until then this lookup is answered from the engine.
            Ok(Ok(_)) => None,
            _ => shared(),
        }
    }

    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// A version for a status about to be computed. Taken *before* the
    /// engine is asked, which is what makes newer-version-wins safe:
    ///
    /// Let a change C be applied to the engine, then reported by `changed`.
    /// The writer takes the version `w` of its write for C after draining C,
    /// so after C was applied, and computes after that. Any status computed
    /// from the engine *before* C was applied (a miss's write-back racing
    /// with C) took its version even earlier, so it is below `w`: if it lands
    /// first, `w` overwrites it; if it lands after, the script drops it.
    /// Until `w` is acknowledged the person is pending and never read from
    /// Redis. A plain write-through may in turn overwrite a write-back with
    /// a *higher* version; that one was computed later, but if the engine
    /// changed in between, the change is pending until its own write lands,
    /// and if it did not, both carry the same status.
    ///
    /// The epoch is read before the counter is bumped; as both only grow,
    /// versions taken later compare higher in (epoch, counter) order.
    fn next_version(&self) -> u64 {
        let epoch = self.epoch.load(Ordering::SeqCst);
        format::version(epoch, self.next_seq())
    }

    fn trusted_now(&self) -> bool {
        self.trust.load(Ordering::SeqCst) & 1 == 1
    }

    /// Stops trusting Redis, if it is still trusted as of `seen` (a reader's
    /// or the writer's snapshot of `trust`), and wakes the writer to
    /// resynchronise.
    fn distrust(&self, seen: u64, why: &dyn std::fmt::Display) {
        if seen & 1 == 1
            && self
                .trust
                .compare_exchange(seen, seen + 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            tracing::warn!(error = %why, "status cache: Redis not trusted until resynchronised");
            self.mirror_trust();
            self.wake.notify_one();
        }
    }

    fn compute(&self, person: PersonId, now: Timestamp) -> Status {
        self.source
            .statuses(&[person], now)
            .pop()
            .expect("StatusSource::statuses returns one status per person")
    }

    /// Where a reader opened under `trust` reports a failed read that no
    /// lookup was waiting for.
    fn on_read_error(&self, trust: u64) -> OnError {
        OnError {
            shared: self.me.clone(),
            trust,
        }
    }

    fn fallback(&self, person: PersonId) -> Status {
        metrics::counter!(METRIC_FALLBACKS).increment(1);
        self.compute(person, self.clock.now())
    }

    fn publish_done(&self, upto: u64) {
        self.progress.send_if_modified(|p| {
            let newer = upto > p.done;
            if newer {
                p.done = upto;
            }
            newer
        });
    }

    /// Copies `trust` into `progress`. Read inside the channel's lock, so
    /// whichever of two racing updates runs last leaves the current value.
    fn mirror_trust(&self) {
        self.progress
            .send_modify(|p| p.trusted = self.trusted_now());
    }

    fn is_shut_down(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ReasonCode;
    use crate::engine::clock::ManualClock;
    use crate::engine::status::Reason;
    use rustc_hash::FxHashMap;

    /// A stand-in for the engine: a map of statuses, green by default.
    #[derive(Default)]
    struct FakeEngine {
        statuses: parking_lot::Mutex<FxHashMap<PersonId, Status>>,
        calls: AtomicU64,
    }

    impl StatusSource for FakeEngine {
        fn statuses(&self, people: &[PersonId], _now: Timestamp) -> Vec<Status> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let map = self.statuses.lock();
            people
                .iter()
                .map(|p| map.get(p).cloned().unwrap_or_else(Status::green))
                .collect()
        }
        fn everyone(&self) -> Vec<PersonId> {
            self.statuses.lock().keys().copied().collect()
        }
    }

    fn p(n: u64) -> PersonId {
        PersonId::from_u64(61_080_219_850_312_000 + n).unwrap()
    }

    fn yellow() -> Status {
        Status::from_reasons(
            vec![Reason {
                code: ReasonCode::MissedRound,
                round_id: Some("1".into()),
            }],
            None,
            None,
            None,
        )
    }

    async fn in_process() -> (StatusCache, Arc<FakeEngine>, Arc<ManualClock>) {
        let engine = Arc::new(FakeEngine::default());
        let clock = ManualClock::new(Timestamp::parse("2022-04-19T08:00:00+08:00").unwrap());
        let cache = StatusCache::open(
            CacheConfig {
                backend: CacheBackend::InProcess,
                key: [3; 32],
            },
            engine.clone(),
            clock.clone(),
        )
        .await
        .unwrap();
        (cache, engine, clock)
    }

    #[tokio::test]
    async fn in_process_cache_writes_through_and_then_answers_without_the_engine() {
        let (cache, engine, _) = in_process().await;
        assert_eq!(cache.redis_state(), RedisState::Disabled);
        assert_eq!(cache.redis_state().as_str(), "disabled");
        engine.statuses.lock().insert(p(1), yellow());
        let ticket = cache.changed(vec![p(1)]);
        cache.flushed(ticket).await;
        assert_eq!(cache.pending_len(), 0);
        let calls = engine.calls.load(Ordering::SeqCst);
        assert_eq!(cache.get(p(1)).await, yellow());
        assert_eq!(engine.calls.load(Ordering::SeqCst), calls, "a hit");
        assert_eq!(
            cache.get_json(p(1)).await,
            Bytes::from(serde_json::to_vec(&yellow()).unwrap())
        );
    }

    #[tokio::test]
    async fn a_queued_change_is_answered_from_the_engine_before_it_is_written() {
        let (cache, engine, _) = in_process().await;
        assert_eq!(cache.get(p(2)).await, Status::green(), "miss, written back");
        engine.statuses.lock().insert(p(2), yellow());
        // No await between changed and get: the writer has not run yet.
        let _ticket = cache.changed(vec![p(2)]);
        assert!(cache.pending_len() > 0);
        assert_eq!(cache.get(p(2)).await, yellow());
    }

    #[tokio::test]
    async fn an_expired_in_process_entry_is_recomputed() {
        let (cache, engine, clock) = in_process().await;
        let now = clock.now();
        let mut status = yellow();
        status.valid_until = Some(now.plus_millis(1_000));
        engine.statuses.lock().insert(p(3), status.clone());
        let t = cache.changed(vec![p(3)]);
        cache.flushed(t).await;
        assert_eq!(cache.get(p(3)).await, status);
        engine.statuses.lock().insert(p(3), Status::green());
        clock.advance_millis(1_000);
        assert_eq!(cache.get(p(3)).await, Status::green());
    }

    #[tokio::test]
    async fn in_process_writes_of_several_chunks_all_land_and_the_latest_status_wins() {
        let (cache, engine, _) = in_process().await;
        // Over two chunks' worth, so the pipeline computes one chunk while
        // it stores the one before.
        let people: Vec<PersonId> = (100..12_100).map(p).collect();
        {
            let mut map = engine.statuses.lock();
            for &who in &people {
                map.insert(who, yellow());
            }
        }
        let first = cache.changed(people.clone());
        // Some of them changed again, green now, before the first write is
        // known to be done: the later status must be the one kept.
        {
            let mut map = engine.statuses.lock();
            for who in &people[..7_000] {
                map.remove(who);
            }
        }
        let second = cache.changed(people[..7_000].to_vec());
        cache.flushed(first.max(second)).await;
        assert_eq!(cache.pending_len(), 0);
        let calls = engine.calls.load(Ordering::SeqCst);
        for (i, &who) in people.iter().enumerate() {
            let want = if i < 7_000 { Status::green() } else { yellow() };
            assert_eq!(cache.get(who).await, want, "person {i}");
        }
        assert_eq!(
            engine.calls.load(Ordering::SeqCst),
            calls,
            "every one a hit"
        );
    }

    #[tokio::test]
    async fn tickets_grow_and_flushed_waits_for_the_writer() {
        let (cache, _, _) = in_process().await;
        let a = cache.changed(vec![p(4)]);
        let b = cache.changed(Vec::new());
        assert!(b > a);
        cache.flushed(b).await;
        cache.flushed(a).await;
    }

    #[tokio::test]
    async fn a_malformed_redis_url_fails_to_open() {
        let engine = Arc::new(FakeEngine::default());
        let clock = ManualClock::new(Timestamp::from_millis(0));
        let err = StatusCache::open(
            CacheConfig {
                backend: CacheBackend::Redis("not a url".into()),
                key: [0; 32],
            },
            engine.clone(),
            clock.clone(),
        )
        .await
        .err()
        .unwrap();
        assert!(matches!(err, CacheError::InvalidRedisUrl(_)));
        let err = StatusCache::open(
            CacheConfig {
                backend: CacheBackend::Cluster(Vec::new()),
                key: [0; 32],
            },
            engine,
            clock,
        )
        .await
        .err()
        .unwrap();
        assert!(matches!(err, CacheError::NoClusterNodes));
    }

    #[test]
    fn the_cache_and_its_lookups_can_cross_threads() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: &T) {}
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (cache, _, _) = runtime.block_on(in_process());
        send_sync(&cache);
        send(&cache.get(p(1)));
        send(&cache.get_json(p(1)));
        send(&cache.flushed(0));
    }

    #[test]
    fn the_config_never_prints_its_key() {
        let cfg = CacheConfig {
            backend: CacheBackend::InProcess,
            key: [0xAB; 32],
        };
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("171"), "{shown}");
        assert!(shown.contains("<secret>"));
    }
}
