//! The background writer: drains reported changes, computes the new
//! statuses through the source, and writes them through in pipelined
//! batches; with Redis it also watches Redis's health and resynchronises
//! after any error before Redis is trusted again.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rustc_hash::FxHashSet;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::format::expiry_px;
use super::reads::Reader;
use super::redis_conn::{Conn, Entry, READ_TIMEOUT, WRITE_TIMEOUT};
use super::{Backend, METRIC_WRITES, RedisSide, Shared};
use crate::domain::PersonId;

/// People per computed-and-encoded chunk for one Redis: one pipeline of 50
/// `MSET`s. Large enough that the engine computes it in parallel and the
/// round trip is small beside Redis's work, small enough that a pipeline's
/// reply comes well within `WRITE_TIMEOUT`.
const SINGLE_CHUNK: usize = 5_000;
/// People per chunk on a cluster: spread over 16,384 slots, so a chunk must
/// be large for each slot's script call to carry more than a key or two.
const CLUSTER_CHUNK: usize = 50_000;
/// People per step of a resynchronisation, between which queued changes are
/// taken up (so `flushed` keeps answering during a long full rewrite).
const RESYNC_STEP: usize = 100_000;
/// How often a trusted Redis is checked for a restart or a lost marker.
const HEALTH_EVERY: Duration = Duration::from_millis(500);
/// How often a standby's writer looks whether this server leads now.
const GATE_POLL: Duration = Duration::from_millis(50);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Why a write or a resynchronisation failed.
#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("the status source failed: {0}")]
    Source(String),
    #[error("Redis restarted or lost its epoch marker")]
    Restarted,
    #[error("no connection to Redis")]
    NotConnected,
}

pub(super) async fn run(shared: Arc<Shared>) {
    match &shared.backend {
        Backend::Memory(_) => run_memory(&shared).await,
        Backend::Redis(_) => RedisWriter::new(shared).run().await,
    }
}

/// A chunk computed and encoded: its people, their entries, and the ticket
/// up to which every change is included in what was computed.
type Encoded = (Vec<PersonId>, Vec<Entry>, u64);

/// Starts computing and encoding the statuses of `people`, now, on the
/// blocking pool: the engine's work and the hashing stay off the async
/// threads, which keep driving the connections (gate reads) meanwhile.
fn start_encode(s: &Arc<Shared>, people: Vec<PersonId>) -> JoinHandle<Result<Encoded, SyncError>> {
    // Both before computing: every change up to `upto` was applied before
    // the statuses are read (see `changed`), and see `next_version`.
    let upto = s.queue.lock().last_ticket;
    let version = s.next_version();
    let now = s.clock.now();
    let s = Arc::clone(s);
    tokio::task::spawn_blocking(move || {
        let statuses = s.source.statuses(&people, now);
        if statuses.len() != people.len() {
            return Err(SyncError::Source(format!(
                "{} statuses for {} people",
                statuses.len(),
                people.len()
            )));
        }
        let entries = people
            .iter()
            .zip(&statuses)
            .map(|(&p, status)| {
                let digest = s.keyer.digest(p);
                Entry {
                    value: s.keyer.encode_value(&digest, version, status),
                    digest,
                    px: expiry_px(status, now),
                }
            })
            .collect();
        Ok((people, entries, upto))
    })
}

async fn finish_encode(task: JoinHandle<Result<Encoded, SyncError>>) -> Result<Encoded, SyncError> {
    task.await.map_err(|e| SyncError::Source(e.to_string()))?
}

async fn run_memory(s: &Arc<Shared>) {
    let Backend::Memory(map) = &s.backend else {
        return;
    };
    loop {
        s.wake.notified().await;
        if s.is_shut_down() {
            return;
        }
        let (people, upto) = s.queue.lock().drain();
        let mut chunks = Pipeline::new(s, &people, SINGLE_CHUNK);
        while let Some(encoded) = chunks.next().await {
            match encoded {
                Ok((people, entries, snapshot)) => {
                    let mut written = 0u64;
                    for e in entries {
                        written += u64::from(map.put_if_newer(e.digest, Bytes::from(e.value)));
                    }
                    s.pending.remove_upto(&people, snapshot);
                    metrics::counter!(METRIC_WRITES).increment(written);
                }
                // Those people stay pending: answered from the engine.
                Err(e) => tracing::error!(error = %e, "status cache: write-through failed"),
            }
        }
        s.publish_done(upto);
    }
}

/// The two-stage pipeline both writers store through: `people` cut into
/// chunks, each chunk's statuses computed and encoded on the blocking pool
/// while the caller stores the chunk before it. Chunks are computed one
/// after another and handed out one after another, in that same order, so
/// a person in two chunks ends with the later status (which plain writes
/// need).
struct Pipeline<'a> {
    s: &'a Arc<Shared>,
    chunks: std::slice::Chunks<'a, PersonId>,
    next: Option<JoinHandle<Result<Encoded, SyncError>>>,
}

impl<'a> Pipeline<'a> {
    fn new(s: &'a Arc<Shared>, people: &'a [PersonId], size: usize) -> Pipeline<'a> {
        let mut chunks = people.chunks(size);
        let next = chunks.next().map(|c| start_encode(s, c.to_vec()));
        Pipeline { s, chunks, next }
    }

    /// The next chunk, computed; the one after it starts computing.
    async fn next(&mut self) -> Option<Result<Encoded, SyncError>> {
        let encoded = finish_encode(self.next.take()?).await;
        self.next = self.chunks.next().map(|c| start_encode(self.s, c.to_vec()));
        Some(encoded)
    }
}

/// Writes `people`'s current statuses over `conn`, chunk by chunk, through
/// a [`Pipeline`]: the next chunk is computed while this one is on the wire.
/// Each chunk's people leave the pending set once Redis has acknowledged it.
async fn write_people(s: &Arc<Shared>, conn: &Conn, people: &[PersonId]) -> Result<(), SyncError> {
    let size = match conn {
        Conn::Single(_) => SINGLE_CHUNK,
        Conn::Cluster(_) => CLUSTER_CHUNK,
    };
    let mut conn = conn.clone();
    let mut chunks = Pipeline::new(s, people, size);
    while let Some(encoded) = chunks.next().await {
        let (people, entries, upto) = encoded?;
        conn.write_through(&entries).await?;
        s.pending.remove_upto(&people, upto);
        metrics::counter!(METRIC_WRITES).increment(entries.len() as u64);
    }
    Ok(())
}

struct RedisWriter {
    s: Arc<Shared>,
    /// The write connection while trusted.
    conn: Option<Conn>,
    /// People changed while Redis was not trusted: written before it is.
    dirty: FxHashSet<PersonId>,
    /// People taken from the queue (their tickets already published as
    /// remembered) but not yet in `dirty` or written.
    carry: Vec<PersonId>,
    /// A full rewrite is due: at start-up, and after Redis restarted.
    need_full: bool,
    /// The `run_id`s of the Redis last resynchronised.
    run_ids: Option<String>,
    /// Every write connection opened so far, as (`run_id`s of the instance,
    /// `CLIENT ID`): a new one fences off the old ones of the same instance.
    write_clients: Vec<(String, u64)>,
}

impl RedisWriter {
    fn new(s: Arc<Shared>) -> RedisWriter {
        RedisWriter {
            s,
            conn: None,
            dirty: FxHashSet::default(),
            carry: Vec::new(),
            need_full: true,
            run_ids: None,
            write_clients: Vec::new(),
        }
    }

    fn redis(&self) -> &RedisSide {
        match &self.s.backend {
            Backend::Redis(r) => r,
            Backend::Memory(_) => unreachable!("the Redis writer runs only with Redis"),
        }
    }

    async fn run(mut self) {
        let mut health = tokio::time::interval(HEALTH_EVERY);
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut retry_at = Instant::now();
        let mut backoff = MIN_BACKOFF;
        loop {
            if self.s.is_shut_down() {
                return;
            }
            if let Some(gate) = &self.s.writes_gate
                && !gate()
            {
                // A standby: Redis is the leader's. Nothing written, nothing
                // read (gates ask the engine); should this server lead, a
                // full rewrite comes first, as at start-up.
                if self.s.trusted_now() {
                    self.distrust(&"this server is a standby");
                }
                self.conn = None;
                self.remember_queued();
                self.dirty.extend(std::mem::take(&mut self.carry));
                self.need_full = true;
                tokio::select! {
                    () = self.s.wake.notified() => {}
                    () = tokio::time::sleep(GATE_POLL) => {}
                }
                continue;
            }
            if self.s.trusted_now() {
                if self.carry.is_empty() {
                    tokio::select! {
                        () = self.s.wake.notified() => {}
                        _ = health.tick() => {
                            self.health_check().await;
                            continue;
                        }
                    }
                }
                self.write_queued().await;
            } else {
                self.conn = None;
                self.remember_queued();
                if Instant::now() >= retry_at {
                    self.dirty.extend(std::mem::take(&mut self.carry));
                    match self.resync().await {
                        Ok(()) => {
                            backoff = MIN_BACKOFF;
                            health.reset();
                            continue;
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "status cache: resynchronisation failed");
                            retry_at = Instant::now() + backoff;
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                        }
                    }
                }
                tokio::select! {
                    () = self.s.wake.notified() => {}
                    () = tokio::time::sleep_until(retry_at) => {}
                }
            }
        }
    }

    /// Trusted: writes what is queued (and carried over from a resync).
    async fn write_queued(&mut self) {
        let (mut people, upto) = self.s.queue.lock().drain();
        people.append(&mut self.carry);
        if !people.is_empty() {
            let result = match self.conn.clone() {
                Some(conn) => write_people(&self.s, &conn, &people).await,
                None => Err(SyncError::NotConnected),
            };
            if let Err(e) = result {
                self.distrust(&e);
                // All of them, even chunks that were acknowledged: rewriting
                // those is harmless, and they may be mixed with ones that
                // Redis did apply but never acknowledged.
                self.dirty.extend(people);
            }
        }
        self.s.publish_done(upto);
    }

    /// Not trusted: moves queued changes into `carry` (so a long outage
    /// holds each person once, in `dirty`, rather than every report).
    fn remember_queued(&mut self) {
        let (people, upto) = self.s.queue.lock().drain();
        self.carry.extend(people);
        self.s.publish_done(upto);
    }

    fn distrust(&self, why: &dyn std::fmt::Display) {
        let seen = self.s.trust.load(std::sync::atomic::Ordering::SeqCst);
        self.s.distrust(seen, why);
    }

    /// Trusted: checks that Redis is still the instance we resynchronised
    /// (a restart changes a `run_id`; a flush loses the epoch marker). Over
    /// the read connection, with its short timeout, and not queued behind
    /// writes: a paused Redis is noticed within a second even when no gate
    /// asks.
    async fn health_check(&mut self) {
        let Some(mut conn) = self.redis().read.read().as_ref().map(Reader::conn) else {
            return;
        };
        let epoch = self.s.epoch.load(std::sync::atomic::Ordering::SeqCst);
        let checked = async {
            Ok::<_, redis::RedisError>((conn.run_ids().await?, conn.epoch_marker().await?))
        };
        match checked.await {
            Ok((ids, marker)) => {
                if self.run_ids.as_deref() != Some(ids.as_str()) || marker != Some(epoch) {
                    self.need_full = true;
                    self.distrust(&SyncError::Restarted);
                }
            }
            Err(e) => self.distrust(&e),
        }
    }

    /// Not trusted: connects afresh, writes the dirty set (and everyone, if
    /// Redis restarted), checks Redis is still the same instance, and only
    /// then lets gates read it again.
    async fn resync(&mut self) -> Result<(), SyncError> {
        use std::sync::atomic::Ordering::SeqCst;
        let trust = self.s.trust.load(SeqCst);
        debug_assert_eq!(trust & 1, 0, "resynchronising a trusted Redis");
        let started = std::time::Instant::now();
        let target = &self.redis().target;
        let mut write = target.connect(WRITE_TIMEOUT).await?;
        let read = target.connect(READ_TIMEOUT).await?;
        let run_ids = write.run_ids().await?;
        if let Conn::Single(_) = write {
            // Fencing: writes through are plain, so nothing sent on an
            // earlier write connection may land after what this one sends.
            // Kill them first (a restarted Redis has no old connections).
            let old: Vec<u64> = self
                .write_clients
                .iter()
                .filter(|(ids, _)| *ids == run_ids)
                .map(|&(_, id)| id)
                .collect();
            write.kill_clients(&old).await?;
            let id = write.client_id().await?;
            self.write_clients = vec![(run_ids.clone(), id)];
        }
        let marker = write.epoch_marker().await?;
        if self.run_ids.as_deref() != Some(run_ids.as_str())
            || marker != Some(self.s.epoch.load(SeqCst))
        {
            self.need_full = true;
        }
        let mut people: Vec<PersonId> = self.dirty.iter().copied().collect();
        let full = self.need_full;
        if full {
            let epoch = write.bump_epoch(self.s.epoch.load(SeqCst)).await?;
            // From here on, values of earlier epochs read as misses.
            self.s.epoch.fetch_max(epoch, SeqCst);
            let s = Arc::clone(&self.s);
            let everyone = tokio::task::spawn_blocking(move || s.source.everyone())
                .await
                .map_err(|e| SyncError::Source(e.to_string()))?;
            people.extend(everyone);
        }
        for step in people.chunks(RESYNC_STEP) {
            write_people(&self.s, &write, step).await?;
            self.remember_queued();
        }
        // The Redis we wrote to must be the one we checked at the start.
        if write.run_ids().await? != run_ids
            || write.epoch_marker().await? != Some(self.s.epoch.load(SeqCst))
        {
            self.need_full = true;
            return Err(SyncError::Restarted);
        }
        // Gates' own connections (one per worker thread, opened lazily) must
        // reach this very instance, and only under the trust granted below.
        *self.redis().verified.write() = Some((trust + 1, run_ids.clone()));
        self.run_ids = Some(run_ids);
        self.need_full = false;
        // Replaced, not cleared: a long outage's set gives its memory back.
        self.dirty = FxHashSet::default();
        let on_error = self.s.on_read_error(trust + 1);
        *self.redis().read.write() = Some(Reader::new(read, None, on_error));
        self.conn = Some(write);
        // Only the writer makes `trust` odd, so this cannot race another
        // resync; a reader cannot have lowered it (it was even).
        let _ = self
            .s
            .trust
            .compare_exchange(trust, trust + 1, SeqCst, SeqCst);
        self.s.mirror_trust();
        tracing::info!(
            statuses = people.len(),
            full,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "status cache: Redis resynchronised and trusted"
        );
        Ok(())
    }
}
