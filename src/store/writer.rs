//! The single writer thread and its group commit.
//!
//! Requests arrive on one bounded channel. The writer takes the first one,
//! then drains whatever else is already queued (up to [`MAX_GROUP_BATCHES`]
//! batches or [`MAX_GROUP_RECORDS`] items): each record or result batch is
//! judged against the engine plus the overlay of the batches judged before it
//! in the same group, and all their accepted rows — with any token, audit and
//! meta writes that arrived meanwhile — go into ONE transaction and one
//! commit (one fsync). Requests that queue up during that fsync form the next
//! group, so the busier the store, the larger the groups.
//!
//! Only after the commit succeeds are the events applied to the engine and
//! every request of the group answered. If any write or the commit fails, the
//! transaction is rolled back, nothing of the group is applied, the overlay is
//! dropped, and every request of the group is answered `Unavailable`. (A
//! failed commit's log frames are overwritten by the next successful commit,
//! whose checksums do not chain to them, so they cannot resurface.)
//!
//! Commands (register imports, rounds, closes, exemptions, clears) run between
//! groups: the group queued before them is committed first, then the command
//! is prepared against the engine, logged, committed and applied on its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::RwLock;
use rusqlite::Connection;
use rustc_hash::FxHashMap;
use tokio::sync::{mpsc, oneshot};

use super::side::{self, AuditEntry, NewToken, TokenRow};
use super::{
    BatchOutcome, Check, CheckFailure, CheckHandle, CommandOutcome, OnChanged, StoreError,
    StoreOptions, join_check, log, replay, snapshot,
};
use crate::domain::{PersonId, Timestamp};
use crate::engine::clock::Clock;
use crate::engine::{
    Applied, Command, Event, Overlay, RecordItem, ResultItem, SharedEngine, Verdict,
};

/// Most record/result batches judged into one group commit.
pub const MAX_GROUP_BATCHES: usize = 64;
/// Most records/results judged into one group commit (bounds the time the
/// writer spends before an fsync, and the transaction's size). Measured with
/// 64 writers of 500-record batches: 10–20 k ran as fast as 50 k or faster
/// (the overlay of a smaller group stays in cache), and answers sooner.
pub const MAX_GROUP_RECORDS: usize = 20_000;

pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// What the async API sends to the writer.
pub(super) enum Request {
    Records {
        items: Vec<RecordItem>,
        reply: Reply<BatchOutcome>,
    },
    Results {
        items: Vec<ResultItem>,
        reply: Reply<BatchOutcome>,
    },
    Command {
        cmd: Command,
        reply: Reply<CommandOutcome>,
    },
    CreateToken {
        token: NewToken,
        reply: Reply<TokenRow>,
    },
    RevokeToken {
        id: String,
        reply: Reply<bool>,
    },
    Audit {
        entry: AuditEntry,
        reply: Reply<()>,
    },
    MetaPut {
        key: String,
        value: String,
        reply: Reply<()>,
    },
    /// Write a snapshot of the engine now (and purge what it lets go).
    Snapshot {
        reply: Reply<SnapshotInfo>,
    },
    /// Write a snapshot if one is due: the periodic snapshot of an idle
    /// server, which no write would otherwise prompt.
    SnapshotIfDue,
    /// Commit what came before, close the file, release the directory's
    /// lock, then answer.
    Close {
        reply: oneshot::Sender<()>,
    },
    /// Sent now and then to a PostgreSQL node: a leader checks it still
    /// holds its database session (and so the leadership lock).
    Heartbeat,
}

impl Request {
    /// Answers the request with `err()` without doing it.
    pub(super) fn refuse(self, err: impl Fn() -> StoreError) {
        // A dropped receiver means the caller went away; nothing to tell.
        match self {
            Request::Records { reply, .. } | Request::Results { reply, .. } => {
                drop(reply.send(Err(err())));
            }
            Request::Command { reply, .. } => drop(reply.send(Err(err()))),
            Request::CreateToken { reply, .. } => drop(reply.send(Err(err()))),
            Request::RevokeToken { reply, .. } => drop(reply.send(Err(err()))),
            Request::Audit { reply, .. } | Request::MetaPut { reply, .. } => {
                drop(reply.send(Err(err())));
            }
            Request::Snapshot { reply } => drop(reply.send(Err(err()))),
            Request::Close { reply } => drop(reply.send(())),
            Request::SnapshotIfDue | Request::Heartbeat => {}
        }
    }
}

/// How [`Writer::serve`] ended.
pub(super) enum Served {
    /// Every sender is gone, or a `Close` came (with whom to tell).
    Closed(Option<oneshot::Sender<()>>),
    /// The PostgreSQL session (and with it the leadership) is gone: the
    /// node goes back to following the log.
    Lost,
}

/// Counters of the writer's work, for tests and benches (the same figures go
/// to the `metrics` recorder).
#[derive(Debug, Default)]
pub(super) struct Counters {
    // Atomics: written by the writer thread, read by any handle; each is an
    // independent tally, so relaxed ordering is enough.
    pub commits: AtomicU64,
    pub failed_commits: AtomicU64,
    pub batches: AtomicU64,
    pub items: AtomicU64,
    pub rows: AtomicU64,
    /// Nanoseconds spent judging batches, inserting rows, committing
    /// (fsync included) and applying to the engine.
    pub judge_ns: AtomicU64,
    pub insert_ns: AtomicU64,
    pub commit_ns: AtomicU64,
    pub apply_ns: AtomicU64,
}

impl Counters {
    pub(super) fn time(counter: &AtomicU64, since: Instant) {
        counter.fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
}

/// State the writer keeps current for readers on other threads.
#[derive(Debug, Default)]
pub(super) struct Visible {
    // RwLocks: read on every authenticated request (tokens) or now and then
    // (meta), written only by the writer after a commit.
    pub tokens: RwLock<Vec<TokenRow>>,
    pub meta: RwLock<FxHashMap<String, String>>,
    pub counters: Counters,
}

/// One request judged into the open group.
pub(super) enum Job {
    Batch {
        event: Option<(u64, Event)>,
        verdicts: Vec<Verdict>,
        reply: Reply<BatchOutcome>,
    },
    CreateToken {
        row: TokenRow,
        reply: Reply<TokenRow>,
    },
    RevokeToken {
        id: String,
        known: bool,
        at: Timestamp,
        reply: Reply<bool>,
    },
    Audit {
        entry: AuditEntry,
        reply: Reply<()>,
    },
    MetaPut {
        key: String,
        value: String,
        reply: Reply<()>,
    },
}

impl Job {
    fn writes(&self) -> bool {
        match self {
            Job::Batch { event, .. } => event.is_some(),
            Job::RevokeToken { known, .. } => *known,
            _ => true,
        }
    }

    fn fail(self) {
        // A dropped receiver means the caller went away; nothing to tell.
        match self {
            Job::Batch { reply, .. } => drop(reply.send(Err(StoreError::Unavailable))),
            Job::CreateToken { reply, .. } => drop(reply.send(Err(StoreError::Unavailable))),
            Job::RevokeToken { reply, .. } => drop(reply.send(Err(StoreError::Unavailable))),
            Job::Audit { reply, .. } | Job::MetaPut { reply, .. } => {
                drop(reply.send(Err(StoreError::Unavailable)));
            }
        }
    }
}

#[derive(Default)]
struct Group {
    jobs: Vec<Job>,
    batches: usize,
    items: usize,
}

impl Group {
    fn full(&self) -> bool {
        self.batches >= MAX_GROUP_BATCHES || self.items >= MAX_GROUP_RECORDS
    }
}

/// Rows written between two background checkpoints (a few MiB of log).
const CHECKPOINT_EVERY_ROWS: u64 = 20_000;

/// Copies committed log frames into the database file on its own thread and
/// connection, so the writer's commits pay only for the log's fsync and not
/// for the database file's writes and fsync. SQLite's own auto-checkpoint
/// stays on at a large size on the writer's connection, as a backstop should
/// this thread fall behind. A failed checkpoint loses nothing: the frames
/// stay in the fsynced log.
pub(super) struct Checkpointer {
    // A rendezvous of one slot: `try_send` coalesces requests made while a
    // checkpoint runs into one more.
    tx: Option<std::sync::mpsc::SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    rows: u64,
}

impl Checkpointer {
    pub fn start(conn: Connection) -> std::io::Result<Checkpointer> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("store-checkpt".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    let t = Instant::now();
                    match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                        Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                    }) {
                        Ok((log, done)) => {
                            metrics::histogram!("rollcall_store_checkpoint_seconds")
                                .record(t.elapsed().as_secs_f64());
                            tracing::debug!(log, done, "checkpoint");
                        }
                        Err(e) => tracing::warn!(error = %e, "background checkpoint failed"),
                    }
                }
            })?;
        Ok(Checkpointer {
            tx: Some(tx),
            thread: Some(thread),
            rows: 0,
        })
    }

    fn wrote(&mut self, rows: u64) {
        self.rows += rows;
        if self.rows >= CHECKPOINT_EVERY_ROWS {
            self.rows = 0;
            if let Some(tx) = &self.tx {
                // Full: a checkpoint is already due; it will see these frames.
                let _ = tx.try_send(());
            }
        }
    }

    fn stop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the checkpoint thread panicked");
        }
    }
}

/// Where the writer's transactions go.
pub(super) enum Backend {
    /// The embedded store: its connection, the checkpoint thread, and the
    /// data directory's exclusive lock (held for the writer's lifetime).
    Sqlite {
        conn: Connection,
        checkpointer: Checkpointer,
        lock: std::fs::File,
    },
    /// The leader's PostgreSQL session (which holds the leadership lock).
    Postgres(super::pg::PgLog),
}

pub(super) struct Writer {
    pub backend: Backend,
    pub engine: SharedEngine,
    pub clock: Arc<dyn Clock>,
    pub on_changed: OnChanged,
    pub visible: Arc<Visible>,
    pub next_seq: u64,
    pub next_token: u64,
    /// The integrity check still running when the store opened, and where
    /// to tell its outcome: waited for before the first request.
    pub check: Option<(CheckHandle, tokio::sync::watch::Sender<Check>)>,
    /// Snapshots and retention.
    pub snapshots: Snapshots,
}

/// When and where the writer writes snapshots, and what retention purges.
pub(super) struct Snapshots {
    pub dir: std::path::PathBuf,
    pub options: StoreOptions,
    /// The `seq` the newest snapshot holds, and when it was written.
    pub seq: u64,
    pub at: Instant,
    /// A periodic snapshot being encoded and written on its own thread
    /// (the writer only copies the engine): reaped once it is done.
    pub writing: Option<Writing>,
}

/// A snapshot file being written off the writer thread.
pub(super) struct Writing {
    seq: u64,
    started: Instant,
    /// How long the writer waited for the engine's lock (for readers to let
    /// go of it, as every event's apply does), then spent copying it (the
    /// stall the snapshot itself adds).
    lock_wait: std::time::Duration,
    copy: std::time::Duration,
    /// The file's size and how long the encoding took.
    thread: std::thread::JoinHandle<std::io::Result<(u64, std::time::Duration)>>,
}

/// What one snapshot wrote and purged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The last event it holds (0: the log was empty, nothing written).
    pub seq: u64,
    pub bytes: u64,
    /// Log rows (records and results past the window) deleted after it.
    pub purged_rows: u64,
    /// Audit entries past `audit_retention_days` deleted.
    pub purged_audit: u64,
    /// Microseconds the writer waited for the engine's lock before the copy
    /// (readers finishing, as before any event's apply).
    pub lock_wait_us: u64,
    /// Microseconds the writer spent copying the engine: what a snapshot
    /// adds to the writes' wait.
    pub copy_us: u64,
    /// Microseconds spent encoding the copy (on the snapshot's own thread,
    /// beside the writes).
    pub encode_us: u64,
}

impl Writer {
    /// Serves requests until every sender is gone.
    pub fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        if let Some((check, tell)) = self.check.take() {
            match join_check(check) {
                Ok(took) => {
                    tracing::info!(quick_check_ms = took.as_millis() as u64, "store checked");
                    tell.send_replace(Check::Passed(took));
                }
                Err(e) => {
                    tracing::error!(error = %e, "the store failed its integrity check; it takes no writes");
                    tell.send_replace(Check::Failed(CheckFailure::new(&e)));
                    self.refuse(rx);
                    return;
                }
            }
        }
        let Served::Closed(closer) = self.serve(&mut rx) else {
            unreachable!("only a PostgreSQL session can be lost")
        };
        // A clean shutdown leaves a snapshot of everything, so the next start
        // replays nothing.
        self.reap_snapshot_logged(true);
        if self.next_seq - 1 > self.snapshots.seq
            && let Err(e) = self.snapshot()
        {
            tracing::error!(error = %e, "the snapshot at shutdown failed; the next start replays the log");
        }
        self.shut(rx);
        if let Some(reply) = closer {
            let _ = reply.send(());
        }
    }

    /// Whether the backend lost its database session (PostgreSQL only).
    pub(super) fn lost(&self) -> bool {
        match &self.backend {
            Backend::Sqlite { .. } => false,
            Backend::Postgres(p) => p.lost(),
        }
    }

    /// The request loop: group commits and commands, until the senders are
    /// gone, a `Close` comes, or the PostgreSQL session is lost (then what
    /// is still queued is for the caller to refuse).
    pub(super) fn serve(&mut self, rx: &mut mpsc::Receiver<Request>) -> Served {
        let mut overlay = Overlay::default();
        let mut next: Option<Request> = None;
        loop {
            if self.lost() {
                if let Some(r) = next.take() {
                    r.refuse(|| StoreError::NotLeader(None));
                }
                return Served::Lost;
            }
            let Some(first) = next.take().or_else(|| rx.blocking_recv()) else {
                return Served::Closed(None);
            };
            match first {
                Request::Command { cmd, reply } => {
                    self.command(cmd, reply);
                    self.snapshot_if_due();
                    continue;
                }
                Request::Snapshot { reply } => {
                    match (self.snapshot(), &self.backend) {
                        // Answered once stored in PostgreSQL.
                        (Ok(info), Backend::Postgres(p)) if info.seq > 0 => {
                            p.snapshot_stored(info, reply);
                        }
                        (done, _) => drop(reply.send(done)),
                    }
                    continue;
                }
                Request::SnapshotIfDue => {
                    self.snapshot_if_due();
                    continue;
                }
                Request::Close { reply } => return Served::Closed(Some(reply)),
                Request::Heartbeat => {
                    if let Backend::Postgres(p) = &mut self.backend {
                        p.check_alive();
                    }
                    continue;
                }
                _ => {}
            }
            let mut group = Group::default();
            let (first_seq, first_token) = (self.next_seq, self.next_token);
            self.admit(first, &mut group, &mut overlay);
            while !group.full() {
                match rx.try_recv() {
                    Ok(
                        r @ (Request::Command { .. }
                        | Request::Close { .. }
                        | Request::Snapshot { .. }
                        | Request::SnapshotIfDue
                        | Request::Heartbeat),
                    ) => {
                        next = Some(r);
                        break;
                    }
                    Ok(r) => self.admit(r, &mut group, &mut overlay),
                    Err(_) => break,
                }
            }
            overlay.clear();
            if let Err(e) = self.commit_group(group) {
                self.next_seq = first_seq;
                self.next_token = first_token;
                tracing::error!(error = %e, "group commit failed; its requests are answered storage_unavailable");
            }
            self.snapshot_if_due();
        }
    }

    /// After a failed integrity check: closes the file without writing to
    /// it (no checkpoint on close either) and lets every request, queued or
    /// to come, find the writer gone (`Unavailable`).
    fn refuse(self, rx: mpsc::Receiver<Request>) {
        if let Backend::Sqlite { conn, .. } = &self.backend
            && let Err(e) = conn.set_db_config(
                rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                true,
            )
        {
            tracing::error!(error = %e, "could not turn off the checkpoint on close");
        }
        self.shut(rx);
    }

    /// Closes the file, then releases the directory's lock.
    fn shut(self, rx: mpsc::Receiver<Request>) {
        // The checkpointer's connection closes first, so the writer's is the
        // last one and checkpoints the whole log as it closes (unless told
        // not to); the lock goes only after that.
        if let Backend::Sqlite {
            conn,
            mut checkpointer,
            lock,
        } = self.backend
        {
            checkpointer.stop();
            drop(conn);
            drop(lock);
        }
        // Requests queued behind a close are refused (their senders see the
        // channel gone) rather than written after it.
        drop(rx);
    }

    /// A judged record or result batch joins the group: its event (the
    /// accepted items, if any) takes the next sequence number.
    fn push_batch(
        &mut self,
        group: &mut Group,
        event: Option<Event>,
        verdicts: Vec<Verdict>,
        reply: Reply<BatchOutcome>,
    ) {
        group.batches += 1;
        group.items += verdicts.len();
        let event = event.map(|e| (self.take_seq(), e));
        group.jobs.push(Job::Batch {
            event,
            verdicts,
            reply,
        });
    }

    /// Judges one request into the open group.
    fn admit(&mut self, req: Request, group: &mut Group, overlay: &mut Overlay) {
        let started = Instant::now();
        let now = self.clock.now();
        match req {
            Request::Records { items, reply } => {
                let verdicts = self.engine.read().judge_records(&items, now, overlay);
                let accepted: Vec<RecordItem> = keep_accepted(items, &verdicts);
                let event = (!accepted.is_empty()).then_some(Event::Records {
                    arrived_at: now,
                    items: accepted,
                });
                self.push_batch(group, event, verdicts, reply);
            }
            Request::Results { items, reply } => {
                let verdicts = self.engine.read().judge_results(&items, now, overlay);
                let accepted: Vec<ResultItem> = keep_accepted(items, &verdicts);
                let event = (!accepted.is_empty()).then_some(Event::Results {
                    arrived_at: now,
                    items: accepted,
                });
                self.push_batch(group, event, verdicts, reply);
            }
            Request::CreateToken { token, reply } => {
                // The hash is UNIQUE in the table; a clash must not fail the
                // whole group's transaction, so it is refused here.
                let taken = self
                    .visible
                    .tokens
                    .read()
                    .iter()
                    .any(|t| t.hash == token.hash)
                    || group.jobs.iter().any(
                        |j| matches!(j, Job::CreateToken { row, .. } if row.hash == token.hash),
                    );
                if taken {
                    drop(reply.send(Err(StoreError::DuplicateToken)));
                    return;
                }
                let id = self.next_token;
                self.next_token += 1;
                let row = TokenRow {
                    id: id.to_string(),
                    hash: token.hash,
                    role: token.role,
                    name: token.name,
                    site: token.site,
                    area: token.area,
                    created_at: now,
                    revoked_at: None,
                    bootstrap: token.bootstrap,
                };
                group.jobs.push(Job::CreateToken { row, reply });
            }
            Request::RevokeToken { id, reply } => {
                // Only a live token can be revoked: a second revoke (here or
                // earlier in this group) finds nothing to do.
                let live = self
                    .visible
                    .tokens
                    .read()
                    .iter()
                    .any(|t| t.id == id && !t.revoked())
                    || group
                        .jobs
                        .iter()
                        .any(|j| matches!(j, Job::CreateToken { row, .. } if row.id == id));
                let known = live
                    && !group.jobs.iter().any(
                        |j| matches!(j, Job::RevokeToken { id: other, known: true, .. } if *other == id),
                    );
                group.jobs.push(Job::RevokeToken {
                    id,
                    known,
                    at: now,
                    reply,
                });
            }
            Request::Audit { entry, reply } => group.jobs.push(Job::Audit { entry, reply }),
            Request::MetaPut { key, value, reply } => {
                group.jobs.push(Job::MetaPut { key, value, reply });
            }
            Request::Command { .. }
            | Request::Close { .. }
            | Request::Snapshot { .. }
            | Request::SnapshotIfDue
            | Request::Heartbeat => {
                unreachable!("commands, snapshots and closes never join a group")
            }
        }
        Counters::time(&self.visible.counters.judge_ns, started);
    }

    /// A snapshot once `snapshot_every` has passed since the last one, if
    /// anything was logged since (see [`Writer::start_snapshot`]). Purges
    /// once a later call finds the file written.
    fn snapshot_if_due(&mut self) {
        self.reap_snapshot_logged(false);
        let every = self.snapshots.options.snapshot_every;
        if every.is_zero()
            || self.snapshots.writing.is_some()
            || self.snapshots.at.elapsed() < every
            || self.next_seq - 1 <= self.snapshots.seq
        {
            return;
        }
        // Not retried before the next interval; the log still holds everything.
        self.snapshots.at = Instant::now();
        if let Err(e) = self.start_snapshot() {
            tracing::error!(error = %e, "starting the snapshot thread failed");
        }
    }

    /// Starts a snapshot of everything applied so far. The writer is
    /// between requests, so the engine is exactly what is committed: it
    /// takes a copy of it ([`crate::engine::Engine::frozen`], the only stall
    /// the writes that come meanwhile see), and another thread encodes it,
    /// writes, fsyncs and renames the file.
    fn start_snapshot(&mut self) -> std::io::Result<()> {
        let seq = self.next_seq - 1;
        let started = Instant::now();
        let mut engine = self.engine.write();
        let locked = Instant::now();
        let frozen = engine.frozen();
        drop(engine);
        let copy = locked.elapsed();
        let lock_wait = locked - started;
        let dir = self.snapshots.dir.clone();
        let thread = std::thread::Builder::new()
            .name("rollcall-snapshot".into())
            .spawn(move || {
                let encoding = Instant::now();
                let bytes = frozen.encode_snapshot();
                drop(frozen);
                let encode = encoding.elapsed();
                snapshot::write(&dir, seq, &bytes).map(|(_, size)| (size, encode))
            })?;
        self.snapshots.writing = Some(Writing {
            seq,
            started,
            lock_wait,
            copy,
            thread,
        });
        Ok(())
    }

    /// Takes the outcome of the snapshot being written, when it is done or
    /// (`wait`) waiting for it; `None` if none is, or it is not done. A
    /// written file moves `seq` and lets retention purge what it holds.
    fn reap_snapshot(&mut self, wait: bool) -> Option<Result<SnapshotInfo, StoreError>> {
        let done = self
            .snapshots
            .writing
            .as_ref()
            .is_some_and(|w| wait || w.thread.is_finished());
        let w = done.then(|| self.snapshots.writing.take()).flatten()?;
        let written = w
            .thread
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the snapshot thread panicked")));
        let (size, encode) = match written {
            Ok(w) => w,
            Err(e) => return Some(Err(e.into())),
        };
        self.snapshots.seq = self.snapshots.seq.max(w.seq);
        self.snapshot_written(w.seq, &snapshot::path(&self.snapshots.dir, w.seq));
        let (purged_rows, purged_audit) = match self.purge() {
            Ok(p) => p,
            Err(e) => return Some(Err(e)),
        };
        tracing::info!(
            seq = w.seq,
            bytes = size,
            lock_wait_ms = w.lock_wait.as_millis() as u64,
            copy_ms = w.copy.as_millis() as u64,
            encode_ms = encode.as_millis() as u64,
            total_ms = w.started.elapsed().as_millis() as u64,
            purged_rows,
            purged_audit,
            "snapshot written"
        );
        Some(Ok(SnapshotInfo {
            seq: w.seq,
            bytes: size,
            purged_rows,
            purged_audit,
            lock_wait_us: w.lock_wait.as_micros() as u64,
            copy_us: w.copy.as_micros() as u64,
            encode_us: encode.as_micros() as u64,
        }))
    }

    /// [`Writer::reap_snapshot`] where a failure is only told (the log
    /// still holds everything; the next interval tries again).
    fn reap_snapshot_logged(&mut self, wait: bool) {
        if let Some(Err(e)) = self.reap_snapshot(wait) {
            tracing::error!(error = %e, "writing a snapshot failed");
        }
    }

    /// A snapshot of everything applied so far, now (the one being written,
    /// if any, is finished first), then the purge it allows; the same path
    /// as the periodic one, waited for.
    fn snapshot(&mut self) -> Result<SnapshotInfo, StoreError> {
        self.reap_snapshot_logged(true);
        if self.next_seq == 1 {
            return Ok(SnapshotInfo::default());
        }
        self.snapshots.at = Instant::now();
        self.start_snapshot()?;
        self.reap_snapshot(true)
            .expect("a snapshot was just started")
    }

    /// A snapshot file for log position `seq` is complete at `path`: on
    /// PostgreSQL it is stored there too, for every server to start from.
    fn snapshot_written(&self, seq: u64, path: &std::path::Path) {
        if let Backend::Postgres(p) = &self.backend {
            p.snapshot_written(seq, path);
        }
    }

    /// Retention on disk: records and results that arrived before the
    /// acceptance window and that the oldest snapshot kept holds (never a
    /// row no snapshot holds), and audit entries past their retention.
    /// Audited as `retention_purge` with the log rows deleted.
    fn purge(&mut self) -> Result<(u64, u64), StoreError> {
        let Some(oldest) = snapshot::oldest_kept(&self.snapshots.dir)? else {
            return Ok((0, 0));
        };
        let now = self.clock.now();
        let window_start = now.as_millis() - crate::engine::ACCEPT_WINDOW_MS;
        let audit_start =
            now.as_millis() - i64::from(self.snapshots.options.audit_retention_days) * 86_400_000;
        let Backend::Sqlite { conn, .. } = &mut self.backend else {
            return Ok((0, 0));
        };
        let tx = begin(conn)?;
        let mut rows = 0u64;
        // (table, what counts its records or results): rows of `records`
        // and `results` are one each, a row of `record_batches` is a batch.
        for (table, count) in [
            ("records", "count(*)"),
            ("record_batches", "sum(count)"),
            ("results", "count(*)"),
        ] {
            let held = replay::first_id_after(&tx, table, oldest)?;
            let old = replay::first_id_above(&tx, table, "arrived_at", window_start - 1)?;
            let end = held.min(old);
            if end > i64::MIN {
                let n: Option<i64> = tx.query_row(
                    &format!("SELECT {count} FROM {table} WHERE id < ?1"),
                    [end],
                    |r| r.get(0),
                )?;
                rows += n.unwrap_or(0) as u64;
                tx.execute(&format!("DELETE FROM {table} WHERE id < ?1"), [end])?;
            }
        }
        let audit = tx.execute("DELETE FROM audit WHERE at < ?1", [audit_start])? as u64;
        if rows > 0 {
            side::audit_insert(
                &tx,
                &AuditEntry {
                    at: now,
                    token_name: "rollcall".into(),
                    role: crate::domain::Role::Admin,
                    action: crate::domain::AuditAction::RetentionPurge,
                    area: None,
                    round_id: None,
                    rows: Some(rows),
                    target: None,
                },
            )?;
        }
        if rows > 0 || audit > 0 {
            commit(tx, &self.visible)?;
            // Frees the pages of a store created with incremental
            // auto-vacuum; older stores reuse them for new rows instead.
            conn.execute_batch("PRAGMA incremental_vacuum")?;
        } else {
            tx.rollback()?;
        }
        Ok((rows, audit))
    }

    fn take_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    /// Writes the group in one transaction; on success applies and answers
    /// it, on failure answers every request `Unavailable`.
    fn commit_group(&mut self, group: Group) -> Result<(), StoreError> {
        let visible = self.visible.clone();
        let counters = &visible.counters;
        counters
            .batches
            .fetch_add(group.batches as u64, Ordering::Relaxed);
        counters
            .items
            .fetch_add(group.items as u64, Ordering::Relaxed);
        if group.jobs.iter().any(Job::writes) {
            let written = match &mut self.backend {
                Backend::Sqlite {
                    conn, checkpointer, ..
                } => write_group(conn, checkpointer, &self.visible, &group.jobs)
                    .map_err(StoreError::from),
                Backend::Postgres(p) => p.write_group(&group.jobs, &self.visible),
            };
            if let Err(e) = written {
                counters.failed_commits.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("rollcall_store_failed_commits_total").increment(1);
                group.jobs.into_iter().for_each(Job::fail);
                return Err(e);
            }
            metrics::histogram!("rollcall_store_group_size").record(group.batches as f64);
        }
        self.finish(group.jobs);
        Ok(())
    }
}

fn write_group(
    conn: &mut Connection,
    checkpointer: &mut Checkpointer,
    visible: &Visible,
    jobs: &[Job],
) -> rusqlite::Result<()> {
    {
        let started = Instant::now();
        let tx = begin(conn)?;
        let mut rows = 0u64;
        for job in jobs {
            match job {
                Job::Batch {
                    event: Some((seq, ev)),
                    ..
                } => {
                    log::write_event(&tx, *seq, ev)?;
                    rows += event_rows(ev);
                }
                Job::Batch { event: None, .. } => {}
                Job::CreateToken { row, .. } => side::insert(&tx, row)?,
                Job::RevokeToken { id, known, at, .. } => {
                    if *known {
                        side::revoke(&tx, id, *at)?;
                    }
                }
                Job::Audit { entry, .. } => side::audit_insert(&tx, entry)?,
                Job::MetaPut { key, value, .. } => side::meta_put(&tx, key, value)?,
            }
        }
        Counters::time(&visible.counters.insert_ns, started);
        commit(tx, visible)?;
        checkpointer.wrote(rows);
        visible.counters.rows.fetch_add(rows, Ordering::Relaxed);
        Ok(())
    }
}

impl Writer {
    /// After a durable commit: apply the events in `seq` order, tell the
    /// status cache once for the group, make side-table changes visible, and
    /// answer everyone.
    fn finish(&mut self, jobs: Vec<Job>) {
        let started = Instant::now();
        let mut changed_all: Vec<PersonId> = Vec::new();
        let mut changed_by_job = Vec::with_capacity(jobs.len());
        for job in &jobs {
            let mut changed = false;
            if let Job::Batch {
                event: Some((_, ev)),
                ..
            } = job
            {
                // One short write lock per event, so gate readers interleave.
                let applied = self.engine.write().apply(ev);
                changed = !applied.changed.is_empty();
                changed_all.extend(applied.changed);
            }
            changed_by_job.push(changed);
        }
        let ticket = if changed_all.is_empty() {
            0
        } else {
            changed_all.sort_unstable();
            changed_all.dedup();
            (self.on_changed)(changed_all)
        };
        Counters::time(&self.visible.counters.apply_ns, started);
        for (job, changed) in jobs.into_iter().zip(changed_by_job) {
            // A dropped receiver means the caller went away; the write stands.
            match job {
                Job::Batch {
                    verdicts, reply, ..
                } => {
                    let ticket = if changed { ticket } else { 0 };
                    drop(reply.send(Ok(BatchOutcome { verdicts, ticket })));
                }
                Job::CreateToken { row, reply } => {
                    self.visible.tokens.write().push(row.clone());
                    drop(reply.send(Ok(row)));
                }
                Job::RevokeToken {
                    id,
                    known,
                    at,
                    reply,
                } => {
                    if known {
                        for t in self.visible.tokens.write().iter_mut() {
                            if t.id == id {
                                t.revoked_at.get_or_insert(at);
                            }
                        }
                    }
                    drop(reply.send(Ok(known)));
                }
                Job::Audit { reply, .. } => drop(reply.send(Ok(()))),
                Job::MetaPut { key, value, reply } => {
                    self.visible.meta.write().insert(key, value);
                    drop(reply.send(Ok(())));
                }
            }
        }
    }

    /// A command, alone: prepare against the engine, log, commit, apply.
    /// A command of several events (an exemptions import) logs them all in
    /// the one transaction, with consecutive `seq`s: all or none.
    fn command(&mut self, cmd: Command, reply: Reply<CommandOutcome>) {
        let now = self.clock.now();
        let prepared = self.engine.read().prepare_all(cmd, now);
        let (events, prepared) = match prepared {
            Ok(p) => p,
            Err(e) => {
                drop(reply.send(Err(StoreError::Command(e))));
                return;
            }
        };
        let first = self.next_seq;
        let written = match &mut self.backend {
            Backend::Sqlite { conn, .. } => begin(conn)
                .and_then(|tx| {
                    for (seq, event) in (first..).zip(&events) {
                        log::write_event(&tx, seq, event)?;
                    }
                    commit(tx, &self.visible)
                })
                .map_err(StoreError::from),
            Backend::Postgres(p) => p.write_events(first, &events, &self.visible),
        };
        if let Err(e) = written {
            self.visible
                .counters
                .failed_commits
                .fetch_add(1, Ordering::Relaxed);
            metrics::counter!("rollcall_store_failed_commits_total").increment(1);
            tracing::error!(error = %e, "command commit failed; answered storage_unavailable");
            drop(reply.send(Err(StoreError::Unavailable)));
            return;
        }
        self.next_seq += events.len() as u64;
        let rows: u64 = events.iter().map(event_rows).sum();
        if let Backend::Sqlite { checkpointer, .. } = &mut self.backend {
            checkpointer.wrote(rows);
        }
        self.visible
            .counters
            .rows
            .fetch_add(rows, Ordering::Relaxed);
        let mut applied = Applied::default();
        for event in &events {
            let one = self.engine.write().apply(event);
            applied.flipped += one.flipped;
            applied.changed.extend(one.changed);
        }
        let ticket = if applied.changed.is_empty() {
            0
        } else {
            (self.on_changed)(applied.changed.clone())
        };
        drop(reply.send(Ok(CommandOutcome {
            prepared,
            applied,
            ticket,
        })));
    }
}

fn begin(conn: &mut Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    if !conn.is_autocommit() {
        // A rollback that failed after an earlier error left a transaction
        // open; end it so this one starts clean.
        conn.execute_batch("ROLLBACK")?;
    }
    conn.transaction()
}

/// Commits (the fsync) and counts it.
pub(super) fn commit(tx: rusqlite::Transaction<'_>, visible: &Visible) -> rusqlite::Result<()> {
    let t = Instant::now();
    tx.commit()?;
    Counters::time(&visible.counters.commit_ns, t);
    metrics::histogram!("rollcall_store_commit_seconds").record(t.elapsed().as_secs_f64());
    metrics::counter!("rollcall_store_commits_total").increment(1);
    visible.counters.commits.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// The items whose verdict is `Accepted`, in batch order.
fn keep_accepted<T>(items: Vec<T>, verdicts: &[Verdict]) -> Vec<T> {
    items
        .into_iter()
        .zip(verdicts)
        .filter(|(_, v)| matches!(v, Verdict::Accepted { .. }))
        .map(|(it, _)| it)
        .collect()
}

pub(super) fn event_rows(ev: &Event) -> u64 {
    match ev {
        Event::Register { rows, .. } => rows.len() as u64,
        Event::Heads { rows, .. } => rows.len() as u64,
        Event::Records { items, .. } => items.len() as u64,
        Event::Results { items, .. } => items.len() as u64,
        _ => 1,
    }
}
