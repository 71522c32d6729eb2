//! The PostgreSQL store (`--store postgres://…`), for several servers on one
//! database: the same log and rules as the embedded SQLite store, behind the
//! same [`Store`](super::Store) handle and the same writer.
//!
//! - Schema: `events(seq, at, body)` holds the log, one row per event (the
//!   body is `codec`'s JSON), plus `tokens`, `audit`, `meta` and `leader`
//!   (the advertised URL of the server holding the lock). Versioned in
//!   `rollcall_schema`; a newer version is refused untouched.
//! - Leadership: a session-level advisory lock, taken and held on the one
//!   connection the writer commits through. Every group's insert checks, in
//!   the same statement, that this session still holds it; a session that
//!   ended (`pg_terminate_backend`, a network cut) cannot commit at all. So
//!   a server cut off from the database never acknowledges a write.
//! - `seq` is assigned by the single writer (the lock holder) inside its
//!   transaction, after it has applied the whole log: no gaps, no races.
//! - Snapshots (`snap`): the leader stores its snapshot files in
//!   `snapshots`/`snapshot_parts`; every server starts from the newest whole
//!   one and replays only the log after it, and retention deletes the record
//!   and result events the oldest kept one holds.
//! - Standbys (`node`): follow the log by `seq`, woken by `NOTIFY` as a
//!   hint and polling as the guarantee, and try for the lock on every poll.

mod codec;
mod node;
mod snap;

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use postgres::{Client, NoTls, Statement};

use super::StoreError;
use super::side::{AuditEntry, TokenRow};
use super::writer::{Counters, Job, Visible};
use crate::domain::{AreaPath, Role as TokenRole, Timestamp};
use crate::engine::{Engine, Event};

pub(super) use node::{Node, spawn_heartbeat};
pub(super) use snap::{Uploads, load_newest};

/// The schema version this build writes and understands.
pub const PG_SCHEMA_VERSION: u32 = 2;

/// The leadership lock's key pair (`pg_try_advisory_lock(int, int)`).
const LOCK: (i32, i32) = (0x726f_6c6c, 0x6361_6c6c);
/// Serialises migrations of servers starting together.
const MIGRATE_LOCK: (i32, i32) = (0x726f_6c6c, 1);
/// The channel the leader notifies after each commit.
const CHANNEL: &str = "rollcall_log";

/// Migrations, in order: `MIGRATIONS[i]` takes version `i` to `i + 1`.
const MIGRATIONS: [&str; 2] = ["
CREATE TABLE events (seq bigint PRIMARY KEY, at bigint NOT NULL, body bytea NOT NULL);
CREATE TABLE tokens (
    id text PRIMARY KEY, token_hash bytea NOT NULL UNIQUE, role text NOT NULL,
    name text NOT NULL, site text, area text, created_at bigint NOT NULL,
    revoked_at bigint, bootstrap boolean NOT NULL DEFAULT false);
CREATE TABLE audit (
    id bigserial PRIMARY KEY, at bigint NOT NULL, token_name text NOT NULL,
    role text NOT NULL, action text NOT NULL, area text, round_id text,
    rows bigint, target text);
CREATE INDEX audit_at ON audit (at, id);
CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE leader (one boolean PRIMARY KEY DEFAULT true CHECK (one), url text, since bigint NOT NULL);
", snap::MIGRATION];

/// Inserts a group's events (one row each) only if this session holds the
/// leadership lock, and notifies standbys at commit; answers whether the
/// lock is held. One round trip.
const INSERT_EVENTS: &str = "
WITH held AS (
    SELECT 1 FROM pg_locks
    WHERE pid = pg_backend_pid() AND locktype = 'advisory' AND granted
      AND classid = 1919904876 AND objid = 1667329132 AND objsubid = 2),
ins AS (
    INSERT INTO events (seq, at, body)
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[])
    WHERE EXISTS (SELECT 1 FROM held))
SELECT (SELECT count(*) FROM held), pg_notify('rollcall_log', $4::text)";

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        // The server's own message, not just "db error".
        StoreError::Postgres(match e.as_db_error() {
            Some(db) => db.to_string(),
            None => e.to_string(),
        })
    }
}

/// This server's part in a cluster on PostgreSQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Replaying the log; not yet leader or standby.
    Starting,
    Leader,
    Standby,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Starting => "starting",
            Role::Leader => "leader",
            Role::Standby => "standby",
        }
    }
}

/// What the HTTP layer needs to know of the cluster: the role, the leader's
/// URL, how far behind this standby is. Kept current by the node thread.
#[derive(Debug)]
pub struct Cluster {
    role: AtomicU8,
    leader: RwLock<Option<String>>,
    /// When this server last saw the whole log applied (a standby's lag is
    /// the time since).
    caught_up: Mutex<Option<Instant>>,
    /// Bumped whenever the token list changed under a standby.
    tokens_gen: AtomicU64,
}

impl Cluster {
    fn new() -> Cluster {
        Cluster {
            role: AtomicU8::new(0),
            leader: RwLock::new(None),
            caught_up: Mutex::new(None),
            tokens_gen: AtomicU64::new(0),
        }
    }

    pub fn role(&self) -> Role {
        match self.role.load(Ordering::Acquire) {
            1 => Role::Leader,
            2 => Role::Standby,
            _ => Role::Starting,
        }
    }

    fn set_role(&self, r: Role) {
        let v = match r {
            Role::Starting => 0,
            Role::Leader => 1,
            Role::Standby => 2,
        };
        self.role.store(v, Ordering::Release);
    }

    /// The leader's advertised URL, if it gave one.
    pub fn leader(&self) -> Option<String> {
        self.leader.read().clone()
    }

    /// Milliseconds this server's state trails the log: 0 on the leader,
    /// `None` while starting.
    pub fn lag_ms(&self) -> Option<u64> {
        match self.role() {
            Role::Leader => Some(0),
            Role::Starting => None,
            Role::Standby => self
                .caught_up
                .lock()
                .map(|t| t.elapsed().as_millis() as u64),
        }
    }

    /// Changes whenever a standby reloaded a changed token list.
    pub fn tokens_generation(&self) -> u64 {
        self.tokens_gen.load(Ordering::Acquire)
    }
}

/// A connection with the settings every rollcall session uses.
pub(super) fn connect(url: &str) -> Result<Client, StoreError> {
    let mut cfg: postgres::Config = url
        .parse()
        .map_err(|e: postgres::Error| StoreError::Postgres(format!("store URL: {e}")))?;
    // A dead peer is noticed in seconds on both sides: here (so a writer
    // waiting on a cut link fails its commit instead of hanging) and on the
    // server (so the session of a leader cut off ends, releasing the lock
    // for a standby, instead of after the kernel's two-hour default).
    cfg.connect_timeout(Duration::from_secs(5))
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(5))
        .keepalives_interval(Duration::from_secs(2))
        .keepalives_retries(3)
        .tcp_user_timeout(Duration::from_secs(10))
        .options(
            "-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 \
             -c tcp_keepalives_count=3 -c tcp_user_timeout=10000",
        )
        .application_name("rollcall");
    Ok(cfg.connect(NoTls)?)
}

/// Creates or upgrades the schema; refuses a newer one without touching it.
pub(super) fn migrate(c: &mut Client) -> Result<(), StoreError> {
    let mut tx = c.transaction()?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&MIGRATE_LOCK.0, &MIGRATE_LOCK.1],
    )?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS rollcall_schema (version integer NOT NULL)")?;
    let found: Option<i32> = tx
        .query_opt("SELECT max(version) FROM rollcall_schema", &[])?
        .and_then(|r| r.get(0));
    let found = found.unwrap_or(0) as u32;
    if found > PG_SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found,
            supported: PG_SCHEMA_VERSION,
        });
    }
    for sql in &MIGRATIONS[found as usize..] {
        tx.batch_execute(sql)?;
    }
    if found < PG_SCHEMA_VERSION {
        tx.execute("DELETE FROM rollcall_schema", &[])?;
        tx.execute(
            "INSERT INTO rollcall_schema (version) VALUES ($1)",
            &[&(PG_SCHEMA_VERSION as i32)],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// Applies every event after `*applied` to the engine, in order, in
/// chunks, moving `*applied` along with each (so an error part way leaves
/// it at the last event really applied); returns how many were applied and
/// adds the people whose status may have changed to `changed`. A gap in
/// `seq` is [`StoreError::LogGap`]; a body the domain refuses is `Corrupt`.
pub(super) fn apply_after(
    c: &mut impl postgres::GenericClient,
    engine: &RwLock<Engine>,
    applied: &mut u64,
    changed: &mut Vec<crate::domain::PersonId>,
) -> Result<u64, StoreError> {
    let mut events = 0u64;
    loop {
        let rows = c.query(
            "SELECT seq, body FROM events WHERE seq > $1 ORDER BY seq LIMIT 2000",
            &[&(*applied as i64)],
        )?;
        if rows.is_empty() {
            return Ok(events);
        }
        let mut decoded = Vec::with_capacity(rows.len());
        let mut next = *applied;
        for r in &rows {
            let seq = r.get::<_, i64>(0) as u64;
            if seq != next + 1 {
                // What decoded before the gap is applied first.
                apply_decoded(engine, &decoded, applied, changed);
                return Err(StoreError::LogGap {
                    after: next,
                    next: seq,
                });
            }
            let ev = codec::decode(r.get::<_, &[u8]>(1))
                .map_err(|e| StoreError::Corrupt(format!("event {seq}: {e}")))?;
            decoded.push(ev);
            next = seq;
        }
        apply_decoded(engine, &decoded, applied, changed);
        events += decoded.len() as u64;
    }
}

fn apply_decoded(
    engine: &RwLock<Engine>,
    decoded: &[Event],
    applied: &mut u64,
    changed: &mut Vec<crate::domain::PersonId>,
) {
    for ev in decoded {
        // One short write lock per event, so readers interleave.
        changed.extend(engine.write().apply(ev).changed);
        *applied += 1;
    }
}

/// A read-only transaction that sees one state of the database throughout:
/// a snapshot and the log after it read in it stay whole even if the
/// leader prunes the one and purges the other meanwhile.
pub(super) fn consistent_view(c: &mut Client) -> Result<postgres::Transaction<'_>, StoreError> {
    Ok(c.build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()?)
}

/// Every token, in creation order, and the next id to assign.
pub(super) fn load_tokens(c: &mut Client) -> Result<(Vec<TokenRow>, u64), StoreError> {
    let mut out = Vec::new();
    let mut next = 1u64;
    for r in c.query(
        "SELECT id, token_hash, role, name, site, area, created_at, revoked_at, bootstrap
         FROM tokens",
        &[],
    )? {
        let id: String = r.get(0);
        let bad = |what: &str| StoreError::Corrupt(format!("token {id:?}: {what}"));
        let hash: Vec<u8> = r.get(1);
        let hash: [u8; 32] = hash.try_into().map_err(|_| bad("hash is not 32 bytes"))?;
        let role = r
            .get::<_, &str>(2)
            .parse::<TokenRole>()
            .map_err(|e| bad(&e.to_string()))?;
        let area = r
            .get::<_, Option<&str>>(5)
            .map(AreaPath::parse)
            .transpose()
            .map_err(|e| bad(&e.to_string()))?;
        if let Ok(n) = id.parse::<u64>() {
            next = next.max(n + 1);
        }
        out.push(TokenRow {
            hash,
            role,
            name: r.get(3),
            site: r.get(4),
            area,
            created_at: Timestamp::from_millis(r.get(6)),
            revoked_at: r.get::<_, Option<i64>>(7).map(Timestamp::from_millis),
            bootstrap: r.get(8),
            id,
        });
    }
    out.sort_by_key(|t| (t.id.len(), t.id.clone()));
    Ok((out, next))
}

pub(super) fn load_meta(c: &mut Client) -> Result<Vec<(String, String)>, StoreError> {
    Ok(c.query("SELECT key, value FROM meta", &[])?
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// The advertised URL of the server that last took the lock.
fn load_leader(c: &mut Client) -> Result<Option<String>, StoreError> {
    Ok(c.query_opt("SELECT url FROM leader", &[])?
        .and_then(|r| r.get(0)))
}

fn audit_insert(c: &mut impl postgres::GenericClient, e: &AuditEntry) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO audit (at, token_name, role, action, area, round_id, rows, target)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &e.at.as_millis(),
            &e.token_name,
            &e.role.as_str(),
            &e.action.as_str(),
            &e.area,
            &e.round_id,
            &e.rows.map(|n| n as i64),
            &e.target,
        ],
    )?;
    Ok(())
}

/// Any server may append to the audit log (it is not the event log): a
/// standby audits the reads it answers.
pub(super) fn audit_append(c: &mut Client, e: &AuditEntry) -> Result<(), StoreError> {
    audit_insert(c, e)
}

/// Entries at or after `since` (all without it), oldest first.
pub(super) fn audit_since(
    c: &mut Client,
    since: Option<Timestamp>,
) -> Result<Vec<AuditEntry>, StoreError> {
    let rows = c.query(
        "SELECT at, token_name, role, action, area, round_id, rows, target FROM audit
         WHERE at >= $1 ORDER BY at, id",
        &[&since.map_or(i64::MIN, Timestamp::as_millis)],
    )?;
    rows.into_iter()
        .map(|r| {
            let bad = |e: String| StoreError::Corrupt(format!("audit entry: {e}"));
            Ok(AuditEntry {
                at: Timestamp::from_millis(r.get(0)),
                token_name: r.get(1),
                role: r
                    .get::<_, &str>(2)
                    .parse()
                    .map_err(|e: crate::domain::UnknownVariant| bad(e.to_string()))?,
                action: r
                    .get::<_, &str>(3)
                    .parse()
                    .map_err(|e: crate::domain::UnknownVariant| bad(e.to_string()))?,
                area: r.get(4),
                round_id: r.get(5),
                rows: r.get::<_, Option<i64>>(6).map(|n| n.max(0) as u64),
                target: r.get(7),
            })
        })
        .collect()
}

/// The leader's session, as the writer's backend.
pub(in crate::store) struct PgLog {
    client: Client,
    insert: Statement,
    lost: bool,
    /// Stores the snapshots the writer writes, off its thread.
    uploads: Uploads,
}

impl PgLog {
    fn new(mut client: Client, uploads: Uploads) -> Result<PgLog, StoreError> {
        let insert = client.prepare(INSERT_EVENTS)?;
        Ok(PgLog {
            client,
            insert,
            lost: false,
            uploads,
        })
    }

    /// A snapshot file for log position `seq` is complete at `path`: it is
    /// stored in PostgreSQL (then retention purges), on the upload thread.
    pub(in crate::store) fn snapshot_written(&self, seq: u64, path: &std::path::Path) {
        self.uploads.upload(seq, path.to_owned());
    }

    /// Answers a snapshot asked for once it is stored (and the purge after
    /// it done), with what the purge deleted.
    pub(in crate::store) fn snapshot_stored(
        &self,
        info: super::SnapshotInfo,
        reply: super::writer::Reply<super::SnapshotInfo>,
    ) {
        self.uploads.tell(info, reply);
    }

    /// Whether the session (and so the lock) is known gone.
    pub(in crate::store) fn lost(&self) -> bool {
        self.lost
    }

    /// Between requests: a session that no longer answers, or no longer
    /// holds the lock, is lost.
    pub(in crate::store) fn check_alive(&mut self) {
        let held = self
            .client
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid()
                 AND locktype = 'advisory' AND granted AND classid::bigint = $1 AND objid::bigint = $2
                 AND objsubid = 2",
                &[&i64::from(LOCK.0), &i64::from(LOCK.1)],
            )
            .map(|r| r.get::<_, i64>(0));
        match held {
            Ok(1) => {}
            Ok(_) => {
                tracing::error!("this server no longer holds the leadership lock");
                self.lost = true;
            }
            Err(e) => {
                tracing::error!(error = %e, "the leader's database session is gone");
                self.lost = true;
            }
        }
    }

    fn after_error(&mut self, e: &StoreError) {
        tracing::error!(error = %e, "a PostgreSQL commit failed");
        if self.client.is_closed() || self.client.is_valid(Duration::from_secs(2)).is_err() {
            self.lost = true;
        }
    }

    /// One transaction for the group: its events (one statement), tokens,
    /// audit and meta; committed before anything is answered.
    pub(in crate::store) fn write_group(
        &mut self,
        jobs: &[Job],
        visible: &Visible,
    ) -> Result<(), StoreError> {
        let r = self.write_group_inner(jobs, visible);
        if let Err(e) = &r {
            self.after_error(e);
        }
        r
    }

    fn write_group_inner(&mut self, jobs: &[Job], visible: &Visible) -> Result<(), StoreError> {
        let started = Instant::now();
        let mut tx = self.client.transaction()?;
        let (mut seqs, mut ats, mut bodies) = (Vec::new(), Vec::new(), Vec::new());
        let mut rows = 0u64;
        for job in jobs {
            match job {
                Job::Batch {
                    event: Some((seq, ev)),
                    ..
                } => {
                    seqs.push(*seq as i64);
                    ats.push(ev.at().as_millis());
                    bodies.push(codec::encode(ev));
                    rows += super::writer::event_rows(ev);
                }
                Job::Batch { event: None, .. } => {}
                Job::CreateToken { row: t, .. } => {
                    tx.execute(
                        "INSERT INTO tokens
                           (id, token_hash, role, name, site, area, created_at, bootstrap)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                        &[
                            &t.id,
                            &&t.hash[..],
                            &t.role.as_str(),
                            &t.name,
                            &t.site,
                            &t.area.as_ref().map(AreaPath::as_str),
                            &t.created_at.as_millis(),
                            &t.bootstrap,
                        ],
                    )?;
                }
                Job::RevokeToken { id, known, at, .. } => {
                    if *known {
                        tx.execute(
                            "UPDATE tokens SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1",
                            &[id, &at.as_millis()],
                        )?;
                    }
                }
                Job::Audit { entry, .. } => audit_insert(&mut tx, entry)?,
                Job::MetaPut { key, value, .. } => {
                    tx.execute(
                        "INSERT INTO meta (key, value) VALUES ($1, $2)
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        &[key, value],
                    )?;
                }
            }
        }
        if !seqs.is_empty() {
            let last = seqs.last().copied().unwrap_or_default().to_string();
            let held: i64 = tx
                .query_one(&self.insert, &[&seqs, &ats, &bodies, &last])?
                .get(0);
            if held != 1 {
                self.lost = true;
                return Err(StoreError::NotLeader(None));
            }
        }
        Counters::time(&visible.counters.insert_ns, started);
        let t = Instant::now();
        tx.commit()?;
        count_commit(visible, t);
        visible.counters.rows.fetch_add(rows, Ordering::Relaxed);
        Ok(())
    }

    /// A command's events, in one transaction.
    pub(in crate::store) fn write_events(
        &mut self,
        first: u64,
        events: &[Event],
        visible: &Visible,
    ) -> Result<(), StoreError> {
        let r = (|| {
            let mut tx = self.client.transaction()?;
            let seqs: Vec<i64> = (first..).take(events.len()).map(|s| s as i64).collect();
            let ats: Vec<i64> = events.iter().map(|e| e.at().as_millis()).collect();
            let bodies: Vec<Vec<u8>> = events.iter().map(codec::encode).collect();
            let last = seqs.last().copied().unwrap_or_default().to_string();
            let held: i64 = tx
                .query_one(&self.insert, &[&seqs, &ats, &bodies, &last])?
                .get(0);
            if held != 1 {
                self.lost = true;
                return Err(StoreError::NotLeader(None));
            }
            let t = Instant::now();
            tx.commit()?;
            count_commit(visible, t);
            Ok(())
        })();
        if let Err(e) = &r {
            self.after_error(e);
        }
        r
    }
}

fn count_commit(visible: &Visible, t: Instant) {
    Counters::time(&visible.counters.commit_ns, t);
    metrics::histogram!("rollcall_store_commit_seconds").record(t.elapsed().as_secs_f64());
    metrics::counter!("rollcall_store_commits_total").increment(1);
    visible.counters.commits.fetch_add(1, Ordering::Relaxed);
}

pub(super) fn new_cluster() -> Cluster {
    Cluster::new()
}
