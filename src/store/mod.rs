//! The store: the source of truth. An append-only log of what happened
//! (register imports, heads, records, results, rounds, closes, exemptions,
//! clears) plus tokens, the audit log and a little metadata, in SQLite (WAL,
//! `synchronous=FULL`) in the data directory; the engine is rebuilt from it
//! at start-up.
//!
//! - `schema`: tables, schema version and migrations, the checks made before
//!   a file is touched.
//! - `log`: an event as rows; `replay`: rows back into events, merged by `seq`.
//! - `writer`: the single writer thread with group commit.
//! - `side`: tokens, audit entries, `meta`.
//! - `snapshot`: the engine's state at a log position, in a file; start-up
//!   loads the newest whole one and replays only the log after it, and
//!   retention purges the log rows (and audit entries) it no longer needs.
//!
//! The promise: a request is answered only after everything it wrote is
//! committed and fsynced, and what was answered is applied to the engine in
//! the order it was logged, so replay rebuilds the same engine. Nothing here
//! blocks an async worker: the API sends to the writer thread and awaits a
//! oneshot. Depends on `domain` and `engine`; knows nothing of HTTP or Redis
//! (the status cache is told of changes through the `on_changed` callback).

mod log;
mod pg;
mod replay;
mod schema;
mod side;
mod snapshot;
mod writer;

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot};

pub use pg::{Cluster, PG_SCHEMA_VERSION, Role as ClusterRole};
pub use replay::ReplayStats;
pub use schema::{DB_FILE, LOCK_FILE, SCHEMA_VERSION};
pub use side::{AuditEntry, NewToken, TokenRow, describe_token};
pub use writer::{MAX_GROUP_BATCHES, MAX_GROUP_RECORDS, SnapshotInfo};

use crate::domain::{PersonId, Timestamp};
use crate::engine::clock::Clock;
use crate::engine::{
    Applied, Command, CommandError, Prepared, RecordItem, ResultItem, SharedEngine, Verdict,
};
use writer::{Reply, Request, Visible, Writer};

/// Told which people may have changed status after each durable write;
/// returns a ticket from the status cache (what the HTTP layer may wait on).
/// Called on the writer thread, outside every engine lock: it must hand the
/// work off rather than do network I/O itself.
pub type OnChanged = Arc<dyn Fn(Vec<PersonId>) -> u64 + Send + Sync>;

/// Requests that may wait for the writer before `send` itself waits: a
/// bound, so an overloaded store pushes back instead of queueing without end.
const QUEUE: usize = 4096;

/// How the store keeps snapshots and what retention deletes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// Days an audit entry is kept.
    pub audit_retention_days: u32,
    /// How often the writer writes a snapshot while events come (zero: only
    /// at a clean shutdown and when asked).
    pub snapshot_every: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            audit_retention_days: 365,
            snapshot_every: Duration::from_mins(15),
        }
    }
}

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A write could not be made durable (disk full, I/O error, writer gone).
    /// Nothing of the request was acknowledged or applied.
    #[error("the store could not make the write durable")]
    Unavailable,
    /// The engine refused the command; nothing was logged.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// A token with the same hash exists (the caller should draw a new
    /// token). Nothing was written.
    #[error("a token with this hash exists already")]
    DuplicateToken,
    /// Another process holds the data directory's lock.
    #[error(
        "another rollcall process is using the data directory {0} (its lock file {LOCK_FILE} is held); refusing to start a second one on it"
    )]
    Locked(PathBuf),
    /// The file was written by a newer rollcall. It was not touched.
    #[error(
        "the store has schema version {found}, newer than the {supported} this build understands; upgrade rollcall (the file was not touched)"
    )]
    NewerSchema { found: u32, supported: u32 },
    /// The file is damaged, truncated or not a rollcall store. It was not touched.
    #[error("the store is damaged and was left untouched: {0}")]
    Corrupt(String),
    /// The PostgreSQL log lacks the events after `after` that come before
    /// `next`: retention purged them (they are held by a stored snapshot),
    /// or the log is damaged.
    #[error("the log jumps from seq {after} to {next}")]
    LogGap { after: u64, next: u64 },
    #[error("store I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Any other SQLite failure while opening.
    #[error("SQLite: {0}")]
    Sqlite(rusqlite::Error),
    /// A PostgreSQL failure (connecting, migrating, reading).
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    /// This server is a standby on a shared PostgreSQL store: writes go to
    /// the leader (its advertised URL, when known). Nothing was written.
    #[error("this server is a standby; writes go to the leader")]
    NotLeader(Option<String>),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
        match e.sqlite_error_code() {
            Some(DatabaseCorrupt | NotADatabase) => StoreError::Corrupt(e.to_string()),
            _ => StoreError::Sqlite(e),
        }
    }
}

/// The answer to a record or result batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchOutcome {
    /// One per item, in batch order.
    pub verdicts: Vec<Verdict>,
    /// The status cache's ticket for this batch's changes; 0 if none.
    pub ticket: u64,
}

/// The answer to a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandOutcome {
    pub prepared: Prepared,
    pub applied: Applied,
    /// The status cache's ticket for `applied.changed`; 0 if none.
    pub ticket: u64,
}

/// A snapshot of the writer's counters since open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Successful commits (group commits and commands; each one fsync).
    pub commits: u64,
    /// Commits that failed (their requests were answered `Unavailable`).
    pub failed_commits: u64,
    /// Record and result batches judged.
    pub batches: u64,
    /// Records and results judged (accepted or not).
    pub items: u64,
    /// Rows appended to the event tables by successful commits.
    pub rows: u64,
    /// Time the writer spent judging batches, inserting rows, committing
    /// (the fsync) and applying to the engine (with the cache callback).
    pub judge: Duration,
    pub insert: Duration,
    pub commit: Duration,
    pub apply: Duration,
}

/// A handle on the store. Cheap to clone; the writer thread stops (and the
/// directory lock is released) once the last handle is dropped.
#[derive(Clone)]
pub struct Store {
    // Declared first so it is dropped before `inner`: the writer sees the
    // channel close before the last handle waits for it to finish.
    tx: mpsc::Sender<Request>,
    inner: Arc<Inner>,
}

struct Inner {
    visible: Arc<Visible>,
    replay: ReplayStats,
    /// The integrity check of the file opened, as the writer last saw it.
    check: tokio::sync::watch::Receiver<Check>,
    // A Mutex because a rusqlite connection is not Sync; only audit reads use
    // it, on a blocking thread, one at a time. `None` once closing.
    reader: Mutex<Option<Connection>>,
    /// On PostgreSQL: the cluster's state, the database URL, and a session
    /// for audit reads (and a standby's audit writes), opened when needed.
    pg: Option<PgSide>,
    // Joined when the last handle goes, so a reopen after drop finds the
    // directory unlocked and the file closed.
    writer: Mutex<Option<JoinHandle<()>>>,
}

struct PgSide {
    cluster: Arc<Cluster>,
    url: String,
    reader: Mutex<Option<postgres::Client>>,
}

impl PgSide {
    /// Runs `f` on the side session (connecting first if needed); a failed
    /// call drops the session, so the next one reconnects.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut slot = self.reader.lock();
        if slot.as_ref().is_none_or(postgres::Client::is_closed) {
            *slot = Some(pg::connect(&self.url)?);
        }
        let r = f(slot.as_mut().expect("connected just above"));
        if r.is_err() {
            *slot = None;
        }
        r
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Close the reader first, so the writer's connection is the last one
        // and checkpoints the log into the database file as it closes.
        drop(self.reader.lock().take());
        // A synchronous PostgreSQL client closes by blocking on a runtime of
        // its own, which cannot start inside the caller's (a handle dropped
        // in async code): closed on a thread of its own.
        if let Some(c) = self.pg.as_ref().and_then(|pg| pg.reader.lock().take())
            && std::thread::spawn(move || drop(c)).join().is_err()
        {
            tracing::error!("closing the PostgreSQL side session panicked");
        }
        if let Some(h) = self.writer.lock().take()
            && h.join().is_err()
        {
            tracing::error!("the store's writer thread panicked");
        }
    }
}

impl Store {
    /// Opens (or creates) the store in `dir` and replays it into `engine`,
    /// which should be empty.
    ///
    /// Fails with `Locked` when another process (or handle) holds the
    /// directory, `NewerSchema` for a file from a newer rollcall, `Corrupt`
    /// for a damaged, truncated or foreign file — in all three cases without
    /// writing to the database file — and `Io`/`Sqlite` otherwise.
    pub fn open(
        dir: &Path,
        engine: SharedEngine,
        clock: Arc<dyn Clock>,
        on_changed: OnChanged,
    ) -> Result<Store, StoreError> {
        Self::open_with(dir, engine, clock, on_changed, StoreOptions::default())
    }

    /// [`Store::open`] with snapshot and retention options.
    pub fn open_with(
        dir: &Path,
        engine: SharedEngine,
        clock: Arc<dyn Clock>,
        on_changed: OnChanged,
        options: StoreOptions,
    ) -> Result<Store, StoreError> {
        let started = Instant::now();
        std::fs::create_dir_all(dir)?;
        let lock = lock_dir(dir)?;
        let db = dir.join(DB_FILE);

        // Checks first, on read-only connections; the file is opened for
        // writing only once they pass.
        let mut rw = None;
        // Whether `quick_check` is still to run (after the replay).
        let mut check_later = false;
        let mut quick_check = Duration::ZERO;
        let on_disk = schema::precheck(&db)?;
        match on_disk {
            schema::OnDisk::Absent => {
                let mut c = open_rw(&db, true)?;
                // Set before the first table: retention's deletes then give
                // their pages back to the file system.
                c.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
                schema::migrate(&mut c, 0)?;
                // SQLite fsyncs the log's directory entry but not the new
                // database file's; without this a power cut could lose the file.
                File::open(dir)?.sync_all()?;
                rw = Some(c);
            }
            schema::OnDisk::Present => {
                let v = schema::user_version(&open_ro(&db)?)?;
                if v > SCHEMA_VERSION {
                    return Err(StoreError::NewerSchema {
                        found: v,
                        supported: SCHEMA_VERSION,
                    });
                }
                if v < SCHEMA_VERSION {
                    // Migrate only a sound file.
                    quick_check = run_quick_check(&db)?;
                    if v == 0 && has_tables(&open_ro(&db)?)? {
                        return Err(StoreError::Corrupt(format!(
                            "{} has tables but no rollcall schema version: not a rollcall store",
                            db.display()
                        )));
                    }
                    let mut c = open_rw(&db, false)?;
                    schema::migrate(&mut c, v)?;
                    rw = Some(c);
                } else {
                    check_later = true;
                }
            }
        }

        // Replay first, on both cores (a reader and decoder thread, and this
        // one applying), then the integrity check: the engine is whole and
        // may serve reads while the check runs. The writer waits for it
        // before its first write, so nothing is written to a file that has
        // not passed it.
        // The newest whole snapshot first (only for a log that exists: a
        // snapshot without its log is no store), then the log after it.
        snapshot::remove_leftovers(dir)?;
        let loading = Instant::now();
        let after = if on_disk == schema::OnDisk::Absent {
            0
        } else {
            let (policy, pool) = {
                let e = engine.read();
                (*e.policy(), e.pool().clone())
            };
            match snapshot::load_newest(dir, policy, &pool)? {
                Some((seq, loaded)) => {
                    *engine.write() = loaded;
                    seq
                }
                None => 0,
            }
        };
        let snapshot_load = loading.elapsed();
        let replayed = open_scan(&db).and_then(|ro| replay::replay(ro, &mut engine.write(), after));
        let mut stats = match replayed {
            Ok(s) => s,
            Err(e) => {
                // A damaged file explains a failed replay better than the replay.
                if check_later {
                    run_quick_check(&db)?;
                }
                return Err(e);
            }
        };
        let check = check_later
            .then(|| spawn_quick_check(db.clone()))
            .transpose()?;
        let (check_tx, check_rx) = tokio::sync::watch::channel(match check {
            Some(_) => Check::Pending,
            None => Check::Passed(quick_check),
        });
        stats.quick_check = quick_check;
        stats.snapshot_load = snapshot_load;

        let conn = match rw {
            Some(c) => c,
            None => open_rw(&db, false)?,
        };
        let (tokens, next_token) = side::load(&conn)?;
        let meta = side::meta_load(&conn)?;
        let visible = Arc::new(Visible {
            tokens: parking_lot::RwLock::new(tokens),
            meta: parking_lot::RwLock::new(meta.into_iter().collect()),
            counters: writer::Counters::default(),
        });
        let reader = Mutex::new(Some(open_ro(&db)?));

        // Background checkpoints; the writer's own stay as a backstop at
        // 64 MiB of log, and a log that grew past that is cut back after.
        conn.pragma_update(None, "wal_autocheckpoint", 16_384)?;
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
        conn.set_prepared_statement_cache_capacity(64);
        let checkpointer = writer::Checkpointer::start(open_rw(&db, false)?)?;

        let (tx, rx) = mpsc::channel(QUEUE);
        let w = Writer {
            backend: writer::Backend::Sqlite {
                conn,
                checkpointer,
                lock,
            },
            engine,
            clock,
            on_changed,
            visible: visible.clone(),
            next_seq: stats.last_seq + 1,
            next_token,
            check: check.map(|h| (h, check_tx)),
            snapshots: writer::Snapshots {
                dir: dir.to_owned(),
                options,
                seq: stats.snapshot_seq,
                at: Instant::now(),
                writing: None,
            },
        };
        let handle = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || w.run(rx))?;
        stats.open = started.elapsed();
        tracing::info!(
            events = stats.events,
            register_rows = stats.register_rows,
            records = stats.records,
            results = stats.results,
            snapshot_seq = stats.snapshot_seq,
            snapshot_load_ms = stats.snapshot_load.as_millis() as u64,
            replay_ms = stats.replay.as_millis() as u64,
            quick_check_ms = stats.quick_check.as_millis() as u64,
            quick_check_pending = matches!(*check_rx.borrow(), Check::Pending),
            open_ms = stats.open.as_millis() as u64,
            "store opened"
        );
        Ok(Store {
            tx,
            inner: Arc::new(Inner {
                visible,
                replay: stats,
                check: check_rx,
                reader,
                pg: None,
                writer: Mutex::new(Some(handle)),
            }),
        })
    }

    /// Opens a PostgreSQL store (`postgres://…`) shared with other servers:
    /// migrates it (refusing a newer schema untouched), loads the newest
    /// whole snapshot stored in it into `engine` and replays the log after
    /// it, then returns once this server is the leader (it took the lock) or
    /// a standby (another holds it). `advertise` is the URL clients reach
    /// this server at, told to others while it leads. `dir` is this server's
    /// own scratch directory (locked like a SQLite store's): a leader writes
    /// its snapshot files there before storing them in PostgreSQL.
    pub fn open_postgres(
        url: &str,
        dir: &Path,
        advertise: Option<String>,
        engine: SharedEngine,
        clock: Arc<dyn Clock>,
        on_changed: OnChanged,
        options: StoreOptions,
    ) -> Result<Store, StoreError> {
        let started = Instant::now();
        std::fs::create_dir_all(dir)?;
        let lock = lock_dir(dir)?;
        snapshot::remove_leftovers(dir)?;
        let dir = dir.to_owned();
        let cluster = Arc::new(pg::new_cluster());
        let (tx, rx) = mpsc::channel(QUEUE);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let node_url = url.to_owned();
        let node_cluster = cluster.clone();
        // Everything on the node's own thread: the synchronous client runs
        // its own small runtime, which must not nest inside the caller's.
        let handle = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                let opened = (|| {
                    let mut c = pg::connect(&node_url)?;
                    pg::migrate(&mut c)?;
                    // The snapshot and the log after it in one view of the
                    // database: a snapshot pruned (and the log it held
                    // purged) meanwhile is still there for this read.
                    let mut tx = pg::consistent_view(&mut c)?;
                    let loading = Instant::now();
                    let (policy, pool) = {
                        let e = engine.read();
                        (*e.policy(), e.pool().clone())
                    };
                    let snapshot_seq = match pg::load_newest(&mut tx, policy, &pool)? {
                        Some((seq, loaded)) => {
                            *engine.write() = loaded;
                            seq
                        }
                        None => 0,
                    };
                    let snapshot_load = loading.elapsed();
                    let replay = Instant::now();
                    let mut changed = Vec::new();
                    let mut last = snapshot_seq;
                    let events = pg::apply_after(&mut tx, &engine, &mut last, &mut changed)?;
                    let replay = replay.elapsed();
                    tx.commit()?;
                    let (tokens, _) = pg::load_tokens(&mut c)?;
                    let meta = pg::load_meta(&mut c)?;
                    let stats = ReplayStats {
                        events,
                        last_seq: last,
                        snapshot_seq,
                        snapshot_load,
                        replay,
                        ..ReplayStats::default()
                    };
                    Ok::<_, StoreError>((c, stats, tokens, meta))
                })();
                let (c, stats, tokens, meta) = match opened {
                    Ok(o) => o,
                    Err(e) => {
                        drop(ready_tx.send(Err(e)));
                        return;
                    }
                };
                let visible = Arc::new(Visible {
                    tokens: parking_lot::RwLock::new(tokens),
                    meta: parking_lot::RwLock::new(meta.into_iter().collect()),
                    counters: writer::Counters::default(),
                });
                let (applied, snapshot_seq) = (stats.last_seq, stats.snapshot_seq);
                drop(ready_tx.send(Ok((visible.clone(), stats))));
                pg::Node {
                    url: node_url,
                    dir,
                    _lock: lock,
                    snapshot_seq,
                    advertise,
                    cluster: node_cluster,
                    engine,
                    clock,
                    on_changed,
                    visible,
                    options,
                    applied,
                    hold_off: None,
                }
                .run(c, rx);
            })?;
        let (visible, mut stats) = match ready_rx.recv() {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                drop(handle.join());
                return Err(e);
            }
            Err(_) => {
                drop(handle.join());
                return Err(StoreError::Postgres("the store's thread stopped".into()));
            }
        };
        pg::spawn_heartbeat(tx.downgrade())?;
        // The first poll decides: leader or standby (a few milliseconds).
        let decide = Instant::now();
        while cluster.role() == ClusterRole::Starting && decide.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        stats.open = started.elapsed();
        tracing::info!(
            events = stats.events,
            last_seq = stats.last_seq,
            snapshot_seq = stats.snapshot_seq,
            snapshot_load_ms = stats.snapshot_load.as_millis() as u64,
            replay_ms = stats.replay.as_millis() as u64,
            role = cluster.role().as_str(),
            "PostgreSQL store opened"
        );
        let (_, check) = tokio::sync::watch::channel(Check::Passed(Duration::ZERO));
        Ok(Store {
            tx,
            inner: Arc::new(Inner {
                visible,
                replay: stats,
                check,
                reader: Mutex::new(None),
                pg: Some(PgSide {
                    cluster,
                    url: url.to_owned(),
                    reader: Mutex::new(None),
                }),
                writer: Mutex::new(Some(handle)),
            }),
        })
    }

    /// Waits for the integrity check of the file opened (`PRAGMA
    /// quick_check`, which may still run after `open` returned) and returns
    /// how long it took. A file that fails it is `Corrupt`: the store then
    /// writes nothing more to it and refuses every write with
    /// `Unavailable`, and whoever opened it should stop.
    pub async fn checked(&self) -> Result<Duration, StoreError> {
        let mut rx = self.inner.check.clone();
        let state = rx
            .wait_for(|c| !matches!(c, Check::Pending))
            .await
            .map_err(|_| StoreError::Unavailable)?;
        match &*state {
            Check::Passed(d) => Ok(*d),
            Check::Failed(e) => Err(e.to_error()),
            Check::Pending => unreachable!("waited until it was not"),
        }
    }

    /// What the replay at open loaded, and how long it took.
    pub fn replay_stats(&self) -> &ReplayStats {
        &self.inner.replay
    }

    /// The writer's counters since open.
    pub fn stats(&self) -> StoreStats {
        let c = &self.inner.visible.counters;
        StoreStats {
            commits: c.commits.load(Ordering::Relaxed),
            failed_commits: c.failed_commits.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            items: c.items.load(Ordering::Relaxed),
            rows: c.rows.load(Ordering::Relaxed),
            judge: Duration::from_nanos(c.judge_ns.load(Ordering::Relaxed)),
            insert: Duration::from_nanos(c.insert_ns.load(Ordering::Relaxed)),
            commit: Duration::from_nanos(c.commit_ns.load(Ordering::Relaxed)),
            apply: Duration::from_nanos(c.apply_ns.load(Ordering::Relaxed)),
        }
    }

    /// Writes a snapshot of everything applied so far now (then purges what
    /// retention lets go), and says what it wrote. On PostgreSQL (the leader
    /// only) it answers once the snapshot is stored there and the purge
    /// after it has run.
    pub async fn snapshot(&self) -> Result<SnapshotInfo, StoreError> {
        self.call(|reply| Request::Snapshot { reply }).await
    }

    /// [`Store::snapshot`] for synchronous callers.
    pub fn snapshot_blocking(&self) -> Result<SnapshotInfo, StoreError> {
        self.call_blocking(|reply| Request::Snapshot { reply })
    }

    /// Asks the writer for the periodic snapshot if one is due (an idle
    /// server's; a busy one's writes prompt it). Never waits: with the
    /// writer's queue full, a later call asks again.
    pub fn snapshot_if_due(&self) {
        drop(self.tx.try_send(Request::SnapshotIfDue));
    }

    /// Requests waiting for the writer (for load shedding).
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// `NotLeader` on a standby (or a server still starting) of a
    /// PostgreSQL store.
    fn leader_only(&self) -> Result<(), StoreError> {
        match &self.inner.pg {
            Some(pg) if pg.cluster.role() != ClusterRole::Leader => {
                Err(StoreError::NotLeader(pg.cluster.leader()))
            }
            _ => Ok(()),
        }
    }

    /// On a PostgreSQL store: the cluster's state (role, leader, lag).
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.inner.pg.as_ref().map(|p| &p.cluster)
    }

    /// Whether this server takes writes: always on SQLite.
    pub fn is_leader(&self) -> bool {
        self.leader_only().is_ok()
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, StoreError> {
        self.leader_only()?;
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| StoreError::Unavailable)?;
        answer.await.map_err(|_| StoreError::Unavailable)?
    }

    fn call_blocking<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, StoreError> {
        self.leader_only()?;
        let (reply, answer) = oneshot::channel();
        self.tx
            .blocking_send(make(reply))
            .map_err(|_| StoreError::Unavailable)?;
        answer
            .blocking_recv()
            .map_err(|_| StoreError::Unavailable)?
    }

    /// Judges and durably appends a batch of records; answers after the
    /// group commit that holds it.
    pub async fn records(&self, items: Vec<RecordItem>) -> Result<BatchOutcome, StoreError> {
        self.call(|reply| Request::Records { items, reply }).await
    }

    /// Judges and durably appends a batch of lab results.
    pub async fn results(&self, items: Vec<ResultItem>) -> Result<BatchOutcome, StoreError> {
        self.call(|reply| Request::Results { items, reply }).await
    }

    /// Prepares, logs and applies a command. A refused command is
    /// `StoreError::Command`.
    pub async fn command(&self, cmd: Command) -> Result<CommandOutcome, StoreError> {
        self.call(|reply| Request::Command { cmd, reply }).await
    }

    /// [`Store::command`] for synchronous callers (the offline import). Must
    /// not be called from inside an async runtime.
    pub fn command_blocking(&self, cmd: Command) -> Result<CommandOutcome, StoreError> {
        self.call_blocking(|reply| Request::Command { cmd, reply })
    }

    /// Stores a new token (its hash only) and returns it with its id.
    pub async fn create_token(&self, t: NewToken) -> Result<TokenRow, StoreError> {
        self.call(|reply| Request::CreateToken { token: t, reply })
            .await
    }

    /// Revokes a live token; `false` when no live token has that id (none
    /// ever had, or it is revoked already): then nothing is written.
    pub async fn revoke_token(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.call(|reply| Request::RevokeToken { id, reply }).await
    }

    /// Every token (revoked ones too), in creation order.
    pub fn tokens(&self) -> Vec<TokenRow> {
        self.inner.visible.tokens.read().clone()
    }

    /// Durably appends an audit entry.
    pub async fn audit(&self, e: AuditEntry) -> Result<(), StoreError> {
        // The audit log is not the event log: a standby appends to it
        // itself (the reads it audits are its own).
        if self.inner.pg.is_some() && !self.is_leader() {
            let inner = self.inner.clone();
            return tokio::task::spawn_blocking(move || {
                let pg = inner.pg.as_ref().expect("checked above");
                pg.with(|c| pg::audit_append(c, &e))
            })
            .await
            .map_err(|_| StoreError::Unavailable)?;
        }
        self.call(|reply| Request::Audit { entry: e, reply }).await
    }

    /// Audit entries at or after `since` (all without it), oldest first.
    pub async fn audit_since(
        &self,
        since: Option<Timestamp>,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(pg) = &inner.pg {
                return pg.with(|c| pg::audit_since(c, since));
            }
            match &*inner.reader.lock() {
                Some(conn) => side::audit_since(conn, since),
                None => Err(StoreError::Unavailable),
            }
        })
        .await
        .map_err(|_| StoreError::Unavailable)?
    }

    /// A `meta` value (loaded at open, kept current).
    pub fn meta_get(&self, key: &str) -> Option<String> {
        self.inner.visible.meta.read().get(key).cloned()
    }

    /// Commits what was sent before, closes the database and releases the
    /// data directory, then returns: a new `open` of the directory may follow
    /// at once, although other handles (and requests still in flight on
    /// them) may outlive this call; they get `Unavailable` from now on.
    pub async fn close(&self) {
        // The reader first, so the writer's connection is the last one and
        // checkpoints the log as it closes.
        drop(self.inner.reader.lock().take());
        let (reply, done) = oneshot::channel();
        if self.tx.send(Request::Close { reply }).await.is_ok() {
            let _ = done.await;
        }
        let handle = self.inner.writer.lock().take();
        if let Some(h) = handle {
            match tokio::task::spawn_blocking(move || h.join()).await {
                Ok(Ok(())) => {}
                _ => tracing::error!("the store's writer thread panicked"),
            }
        }
    }

    /// Durably sets a `meta` value.
    pub async fn meta_put(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.call(|reply| Request::MetaPut { key, value, reply })
            .await
    }
}

/// Takes the data directory's exclusive lock (`flock` on Linux), held until
/// the writer thread ends; a second process — or a second `open` in this
/// one — gets `Locked`. The lock file holds the owner's pid, for operators.
fn lock_dir(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(LOCK_FILE);
    let mut f = OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(false)
        .open(&path)?;
    match f.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Err(StoreError::Locked(dir.to_path_buf())),
        Err(TryLockError::Error(e)) => return Err(StoreError::Io(e)),
    }
    f.set_len(0)?;
    writeln!(f, "{}", std::process::id())?;
    Ok(f)
}

/// A read-only connection for the whole-file scans at open (replay and
/// `quick_check`): pages are read through a memory map rather than a
/// `pread` and a copy each. Only at open, while this process holds the lock:
/// a map turns a later I/O error into a signal instead of an error code.
fn open_scan(db: &Path) -> Result<Connection, StoreError> {
    let c = open_ro(db)?;
    c.pragma_update(None, "mmap_size", 1_i64 << 36)?;
    Ok(c)
}

fn open_ro(db: &Path) -> Result<Connection, StoreError> {
    let c = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    c.busy_timeout(Duration::from_secs(5))?;
    Ok(c)
}

fn open_rw(db: &Path, create: bool) -> Result<Connection, StoreError> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let c = Connection::open_with_flags(db, flags)?;
    let mode: String = c.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Io(std::io::Error::other(format!(
            "could not put {} in WAL mode (got {mode})",
            db.display()
        ))));
    }
    // FULL: in WAL mode every commit fsyncs the log before it returns, so an
    // answered request survives a power loss (NORMAL would not).
    c.pragma_update(None, "synchronous", "FULL")?;
    c.busy_timeout(Duration::from_secs(5))?;
    Ok(c)
}

fn has_tables(c: &Connection) -> Result<bool, StoreError> {
    let n: i64 = c.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
    Ok(n > 0)
}

/// `PRAGMA quick_check` of the whole file: how long it took, or `Corrupt`
/// with what it found.
fn run_quick_check(db: &Path) -> Result<Duration, StoreError> {
    let t = Instant::now();
    let failed = |why: String| {
        StoreError::Corrupt(format!(
            "{} failed its integrity check: {why}",
            db.display()
        ))
    };
    // SQLite may give up on a damaged page with an error rather than list it.
    let problems = match schema::quick_check(&open_scan(db)?) {
        Err(StoreError::Corrupt(why)) => return Err(failed(why)),
        other => other?,
    };
    if problems.is_empty() {
        Ok(t.elapsed())
    } else {
        Err(failed(problems.join("; ")))
    }
}

/// [`run_quick_check`] on its own thread.
fn spawn_quick_check(db: PathBuf) -> Result<CheckHandle, StoreError> {
    Ok(std::thread::Builder::new()
        .name("store-check".into())
        .spawn(move || run_quick_check(&db))?)
}

/// Where the integrity check of an opened file stands.
#[derive(Clone, Debug)]
pub(crate) enum Check {
    Pending,
    Passed(Duration),
    Failed(CheckFailure),
}

/// Why the check failed, kept to be told to every caller of
/// [`Store::checked`] (a `StoreError` is not `Clone`).
#[derive(Clone, Debug)]
pub(crate) struct CheckFailure {
    corrupt: bool,
    message: String,
}

impl CheckFailure {
    pub(crate) fn new(e: &StoreError) -> CheckFailure {
        CheckFailure {
            corrupt: matches!(e, StoreError::Corrupt(_)),
            message: match e {
                StoreError::Corrupt(m) => m.clone(),
                other => other.to_string(),
            },
        }
    }

    fn to_error(&self) -> StoreError {
        if self.corrupt {
            StoreError::Corrupt(self.message.clone())
        } else {
            StoreError::Io(std::io::Error::other(self.message.clone()))
        }
    }
}

pub(crate) type CheckHandle = JoinHandle<Result<Duration, StoreError>>;

pub(crate) fn join_check(h: CheckHandle) -> Result<Duration, StoreError> {
    h.join()
        .map_err(|_| StoreError::Io(std::io::Error::other("the integrity check panicked")))?
}
