//! Snapshots kept in PostgreSQL, so every server on the store — a new one
//! with an empty disk too — starts from the newest one and replays only the
//! log after it; and retention, which deletes what the oldest kept one holds.
//!
//! - A snapshot is the bytes of a snapshot file (`snapshot.rs`: header,
//!   payload, SHA-256), in `snapshot_parts(seq, part, bytes)` chunks of
//!   [`PART`] bytes (a `bytea` holds at most 1 GB; a large city's snapshot
//!   is several), and complete only once its row in `snapshots(seq, parts,
//!   bytes, at)` is committed — written after every part, and only if the
//!   parts are all there. The newest [`KEEP`] complete ones are kept.
//! - The leader's writer writes the file in its data directory as on SQLite;
//!   once the file is complete it hands it here ([`Uploads::upload`]). The
//!   upload runs on its own thread and its own session, reading the file in
//!   parts: the writer never waits for it, and it writes nothing but these
//!   tables, the purge and its audit entry.
//! - After each upload the leader purges: record and result events that
//!   arrived before the acceptance window and that the oldest kept snapshot
//!   holds (`seq` at or below its), nothing else — register imports, rounds
//!   and exemptions stay, so a replay from the oldest snapshot gives the same
//!   state — and audit entries past their retention, audited as
//!   `retention_purge` with the log rows deleted.
//! - At start-up ([`load_newest`]) the newest complete snapshot that is whole
//!   (checksum, format version, decodes) is loaded; a bad one is skipped with
//!   a log line and the one before it used.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use postgres::{Client, GenericClient};

use super::{Cluster, Role, connect};
use crate::domain::{AuditAction, Role as TokenRole};
use crate::engine::clock::Clock;
use crate::engine::{Engine, Policy};
use crate::store::snapshot::{self, KEEP};
use crate::store::writer::{Reply, SnapshotInfo};
use crate::store::{StoreError, StoreOptions};

/// The largest part of a stored snapshot.
pub const PART: usize = 32 << 20;

/// The snapshot tables (schema version 2), and which events retention may
/// delete: `purgeable` is computed by PostgreSQL from the body's first bytes
/// (the codec's tag, `{"k":"records",` or `{"k":"results",`: see
/// `codec::PURGEABLE`), so the purge reads neither the other events nor any
/// body.
pub(super) const MIGRATION: &str = r"
CREATE TABLE snapshot_parts (
    seq bigint NOT NULL, part integer NOT NULL, bytes bytea NOT NULL,
    PRIMARY KEY (seq, part));
CREATE TABLE snapshots (
    seq bigint PRIMARY KEY, parts integer NOT NULL, bytes bigint NOT NULL, at bigint NOT NULL);
ALTER TABLE events ADD COLUMN purgeable boolean NOT NULL GENERATED ALWAYS AS
    (substring(body from 1 for 15) IN ('\x7b226b223a227265636f726473222c'::bytea,
                                       '\x7b226b223a22726573756c7473222c'::bytea)) STORED;
CREATE INDEX events_purgeable ON events (at, seq) WHERE purgeable;
";

/// What the upload thread is asked.
enum Job {
    /// Store the snapshot file at `path` (the state after event `seq`).
    Upload { seq: u64, path: PathBuf },
    /// Answer `reply` once the uploads before it are done: `info` (the
    /// snapshot written) with what the purge after its upload deleted.
    Tell {
        info: SnapshotInfo,
        reply: Reply<SnapshotInfo>,
    },
}

/// The leader's upload thread. Dropping it lets the thread finish what it
/// was given (a complete snapshot is worth keeping) and end, unwaited.
pub(in crate::store) struct Uploads {
    tx: std::sync::mpsc::Sender<Job>,
}

impl Uploads {
    pub(in crate::store) fn start(
        url: String,
        cluster: Arc<Cluster>,
        clock: Arc<dyn Clock>,
        options: StoreOptions,
    ) -> std::io::Result<Uploads> {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut up = Uploader {
            url,
            cluster,
            clock,
            options,
            conn: None,
            last: None,
        };
        std::thread::Builder::new()
            .name("store-upload".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    up.run(job);
                }
            })?;
        Ok(Uploads { tx })
    }

    /// Queues the upload of the complete snapshot file `path`.
    pub(in crate::store) fn upload(&self, seq: u64, path: PathBuf) {
        if self.tx.send(Job::Upload { seq, path }).is_err() {
            tracing::error!(seq, "the snapshot upload thread is gone; not stored");
        }
    }

    /// Answers `reply` once what was queued before is stored (and purged).
    pub(in crate::store) fn tell(&self, info: SnapshotInfo, reply: Reply<SnapshotInfo>) {
        if let Err(std::sync::mpsc::SendError(Job::Tell { reply, .. })) =
            self.tx.send(Job::Tell { info, reply })
        {
            drop(reply.send(Err(StoreError::Unavailable)));
        }
    }
}

/// What a purge deleted (log rows, audit entries), or why the upload
/// before it failed.
type Purged = Result<(u64, u64), String>;

struct Uploader {
    url: String,
    cluster: Arc<Cluster>,
    clock: Arc<dyn Clock>,
    options: StoreOptions,
    /// Its own session, opened when needed and dropped after a failure.
    conn: Option<Client>,
    /// The last upload's `seq` and outcome: the rows and audit entries its
    /// purge deleted, or why it failed.
    last: Option<(u64, Purged)>,
}

impl Uploader {
    fn run(&mut self, job: Job) {
        match job {
            Job::Upload { seq, path } => {
                let started = Instant::now();
                let done = self.with(|c, me| {
                    let bytes = upload(c, seq, &path, me.clock.now().as_millis(), PART)?;
                    prune(c)?;
                    let purged = me.purge(c)?;
                    Ok((bytes, purged))
                });
                match &done {
                    Ok((bytes, (rows, audit))) => tracing::info!(
                        seq,
                        bytes,
                        upload_ms = started.elapsed().as_millis() as u64,
                        purged_rows = rows,
                        purged_audit = audit,
                        "snapshot stored in PostgreSQL"
                    ),
                    Err(e) => tracing::error!(
                        error = %e,
                        seq,
                        "storing a snapshot in PostgreSQL failed; the log still holds everything"
                    ),
                }
                self.last = Some((seq, done.map(|(_, p)| p).map_err(|e| e.to_string())));
            }
            Job::Tell { mut info, reply } => {
                let answer = match &self.last {
                    Some((seq, Ok((rows, audit)))) if *seq == info.seq => {
                        info.purged_rows = *rows;
                        info.purged_audit = *audit;
                        Ok(info)
                    }
                    Some((seq, Err(e))) if *seq == info.seq => {
                        Err(StoreError::Postgres(format!("storing the snapshot: {e}")))
                    }
                    _ => Err(StoreError::Postgres(format!(
                        "snapshot {} was not stored",
                        info.seq
                    ))),
                };
                drop(reply.send(answer));
            }
        }
    }

    /// Runs `f` on the session (connecting first if needed); a failure
    /// drops the session, so the next upload reconnects.
    fn with<T>(
        &mut self,
        f: impl FnOnce(&mut Client, &Self) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut c = match self.conn.take() {
            Some(c) if !c.is_closed() => c,
            _ => connect(&self.url)?,
        };
        let r = f(&mut c, self);
        if r.is_ok() {
            self.conn = Some(c);
        }
        r
    }

    /// Retention, on the leader only: the record and result events that the
    /// oldest kept snapshot holds and that arrived before the acceptance
    /// window, and audit entries past theirs. Returns both counts.
    fn purge(&self, c: &mut Client) -> Result<(u64, u64), StoreError> {
        if self.cluster.role() != Role::Leader {
            return Ok((0, 0));
        }
        let Some(oldest) = oldest_kept(c)? else {
            return Ok((0, 0));
        };
        let now = self.clock.now();
        let window_start = now.as_millis() - crate::engine::ACCEPT_WINDOW_MS;
        let audit_start =
            now.as_millis() - i64::from(self.options.audit_retention_days) * 86_400_000;
        let mut tx = c.transaction()?;
        let rows = tx.execute(
            "DELETE FROM events WHERE purgeable AND at < $1 AND seq <= $2",
            &[&window_start, &(oldest as i64)],
        )?;
        let audit = tx.execute("DELETE FROM audit WHERE at < $1", &[&audit_start])?;
        if rows > 0 {
            super::audit_insert(
                &mut tx,
                &crate::store::AuditEntry {
                    at: now,
                    token_name: "rollcall".into(),
                    role: TokenRole::Admin,
                    action: AuditAction::RetentionPurge,
                    area: None,
                    round_id: None,
                    rows: Some(rows),
                    target: None,
                },
            )?;
        }
        tx.commit()?;
        Ok((rows, audit))
    }
}

/// Stores the file's bytes as the snapshot after event `seq`, in parts of
/// `part` bytes (nothing, if it is stored already), and returns their size. The parts are committed one
/// by one (`at` dates the snapshot); the `snapshots` row only after all of them, and only if they are
/// all there.
fn upload(c: &mut Client, seq: u64, path: &Path, at: i64, part: usize) -> Result<u64, StoreError> {
    let s = seq as i64;
    if c.query_opt("SELECT 1 FROM snapshots WHERE seq = $1", &[&s])?
        .is_some()
    {
        return Ok(0);
    }
    // Parts left by an upload that did not finish.
    c.execute("DELETE FROM snapshot_parts WHERE seq = $1", &[&s])?;
    let mut file = File::open(path)?;
    let mut buf = Vec::with_capacity(part);
    let (mut parts, mut size) = (0i32, 0i64);
    loop {
        buf.clear();
        (&mut file).take(part as u64).read_to_end(&mut buf)?;
        if buf.is_empty() {
            break;
        }
        c.execute(
            "INSERT INTO snapshot_parts (seq, part, bytes) VALUES ($1, $2, $3)",
            &[&s, &parts, &&buf[..]],
        )?;
        parts += 1;
        size += buf.len() as i64;
    }
    let marked = c.execute(
        "INSERT INTO snapshots (seq, parts, bytes, at)
         SELECT $1, $2::integer, $3, $4
         WHERE (SELECT count(*) FROM snapshot_parts WHERE seq = $1) = $2::integer
           AND (SELECT coalesce(sum(length(bytes)), 0) FROM snapshot_parts WHERE seq = $1) = $3
         ON CONFLICT (seq) DO NOTHING",
        &[&s, &parts, &size, &at],
    )?;
    if marked == 0 {
        return Err(StoreError::Postgres(format!(
            "snapshot {seq}'s parts changed while it was stored"
        )));
    }
    Ok(size as u64)
}

/// Keeps the newest [`KEEP`] complete snapshots, and the parts of an upload
/// newer than all of them (under way); deletes the rest.
fn prune(c: &mut Client) -> Result<(), StoreError> {
    let mut tx = c.transaction()?;
    if let Some(oldest) = oldest_kept(&mut tx)? {
        tx.execute("DELETE FROM snapshots WHERE seq < $1", &[&(oldest as i64)])?;
    }
    tx.execute(
        "DELETE FROM snapshot_parts p
         WHERE p.seq < (SELECT max(seq) FROM snapshots)
           AND NOT EXISTS (SELECT 1 FROM snapshots s WHERE s.seq = p.seq)",
        &[],
    )?;
    tx.commit()?;
    Ok(())
}

/// The `seq` of the oldest complete snapshot kept, once [`KEEP`] of them
/// are: what retention may purge up to.
fn oldest_kept(c: &mut impl GenericClient) -> Result<Option<u64>, StoreError> {
    Ok(c.query_opt(
        "SELECT seq FROM snapshots ORDER BY seq DESC OFFSET $1 LIMIT 1",
        &[&(KEEP as i64 - 1)],
    )?
    .map(|r| r.get::<_, i64>(0) as u64))
}

/// The newest stored snapshot that is whole and decodes, as an engine, with
/// the `seq` it holds; bad ones are skipped with a log line. Read in the
/// caller's transaction, so a snapshot pruned meanwhile is still whole.
pub(in crate::store) fn load_newest(
    c: &mut impl GenericClient,
    policy: Policy,
    pool: &Arc<rayon::ThreadPool>,
) -> Result<Option<(u64, Engine)>, StoreError> {
    let stored = c.query(
        "SELECT seq, parts, bytes FROM snapshots ORDER BY seq DESC",
        &[],
    )?;
    for r in stored {
        let (seq, parts, size) = (
            r.get::<_, i64>(0) as u64,
            r.get::<_, i32>(1),
            r.get::<_, i64>(2),
        );
        let loaded = read(c, seq, parts, size)?
            .and_then(|bytes| snapshot::decode_bytes(bytes, seq, policy, pool));
        match loaded {
            Ok(engine) => return Ok(Some((seq, engine))),
            Err(why) => tracing::warn!(
                seq,
                %why,
                "ignoring a stored snapshot that is not whole; trying the one before it"
            ),
        }
    }
    Ok(None)
}

/// A stored snapshot's bytes, its parts joined (`Err` when some are missing
/// or the sizes disagree).
fn read(
    c: &mut impl GenericClient,
    seq: u64,
    parts: i32,
    size: i64,
) -> Result<Result<Vec<u8>, String>, StoreError> {
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    for part in 0..parts {
        let row = c.query_opt(
            "SELECT bytes FROM snapshot_parts WHERE seq = $1 AND part = $2",
            &[&(seq as i64), &part],
        )?;
        match row {
            Some(r) => bytes.extend_from_slice(r.get::<_, &[u8]>(0)),
            None => return Ok(Err(format!("part {part} of {parts} is missing"))),
        }
    }
    if bytes.len() as i64 != size {
        return Ok(Err(format!(
            "{} bytes where {size} were stored",
            bytes.len()
        )));
    }
    Ok(Ok(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN_URL: &str = "postgres://root@127.0.0.1:5432/postgres";

    /// A database of its own, migrated, dropped at the end.
    struct Db {
        name: String,
        client: Client,
    }

    impl Db {
        /// `None` (after saying so) when PostgreSQL is unreachable.
        fn create() -> Option<Db> {
            let mut db = Db::empty()?;
            super::super::migrate(&mut db.client).unwrap();
            Some(db)
        }

        fn empty() -> Option<Db> {
            let name = format!("rollcall_unit_{:016x}", rand::random::<u64>());
            let mut admin = match connect(ADMIN_URL) {
                Ok(c) => c,
                Err(e) => {
                    crate::skip_test(&format!("PostgreSQL is unreachable at {ADMIN_URL} ({e})"));
                    return None;
                }
            };
            admin
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .unwrap();
            let client = connect(&format!("postgres://root@127.0.0.1:5432/{name}")).unwrap();
            Some(Db { name, client })
        }
    }

    impl Drop for Db {
        fn drop(&mut self) {
            if let Ok(mut c) = connect(ADMIN_URL) {
                let _ = c.batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ));
            }
        }
    }

    fn stored(c: &mut Client) -> Vec<i64> {
        c.query("SELECT seq FROM snapshots ORDER BY seq", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    #[test]
    fn a_file_stored_in_parts_reads_back_whole_and_a_missing_part_is_refused() {
        let Some(mut db) = Db::create() else { return };
        let c = &mut db.client;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snap");
        let bytes: Vec<u8> = (0..100_003u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();

        assert_eq!(upload(c, 5, &path, 1, 7_000).unwrap(), 100_003);
        let (parts, size): (i32, i64) = {
            let r = c
                .query_one("SELECT parts, bytes FROM snapshots WHERE seq = 5", &[])
                .unwrap();
            (r.get(0), r.get(1))
        };
        assert_eq!(
            (parts, size),
            (15, 100_003),
            "14 whole parts and a short one"
        );
        assert_eq!(read(c, 5, parts, size).unwrap().unwrap(), bytes);
        // Stored already: nothing is written again.
        assert_eq!(upload(c, 5, &path, 1, 7_000).unwrap(), 0);

        c.execute("DELETE FROM snapshot_parts WHERE seq = 5 AND part = 3", &[])
            .unwrap();
        let missing = read(c, 5, parts, size).unwrap().unwrap_err();
        assert!(missing.contains("part 3"), "{missing}");
    }

    #[test]
    fn the_newest_two_are_kept_with_an_upload_under_way_and_retention_waits_for_two() {
        let Some(mut db) = Db::create() else { return };
        let c = &mut db.client;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snap");
        std::fs::write(&path, b"a snapshot's bytes").unwrap();
        assert_eq!(oldest_kept(c).unwrap(), None);
        upload(c, 10, &path, 1, 4).unwrap();
        prune(c).unwrap();
        assert_eq!(oldest_kept(c).unwrap(), None, "one is not enough to purge");
        upload(c, 20, &path, 2, 4).unwrap();
        upload(c, 30, &path, 3, 4).unwrap();
        // An upload that died half-way (below the newest: gone) and one
        // under way (above it: kept).
        for seq in [25i64, 40] {
            c.execute(
                "INSERT INTO snapshot_parts (seq, part, bytes) VALUES ($1, 0, 'x')",
                &[&seq],
            )
            .unwrap();
        }
        prune(c).unwrap();
        assert_eq!(stored(c), [20, 30]);
        assert_eq!(oldest_kept(c).unwrap(), Some(20));
        let parts: Vec<i64> = c
            .query("SELECT DISTINCT seq FROM snapshot_parts ORDER BY seq", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(parts, [20, 30, 40]);
    }

    #[test]
    fn a_version_1_log_gains_the_snapshot_tables_and_marks_its_record_and_result_events() {
        use crate::engine::Event;
        let Some(mut db) = Db::empty() else { return };
        let c = &mut db.client;
        c.batch_execute(super::super::MIGRATIONS[0]).unwrap();
        c.batch_execute(
            "CREATE TABLE rollcall_schema (version integer NOT NULL);
             INSERT INTO rollcall_schema VALUES (1);",
        )
        .unwrap();
        let at = crate::domain::Timestamp::from_millis(1_650_340_800_000);
        let events = [
            Event::RoundClose { id: 1, at },
            Event::Records {
                arrived_at: at,
                items: Vec::new(),
            },
            Event::ExemptionDelete { id: 2, at },
            Event::Results {
                arrived_at: at,
                items: Vec::new(),
            },
        ];
        for (seq, ev) in (1i64..).zip(&events) {
            c.execute(
                "INSERT INTO events (seq, at, body) VALUES ($1, $2, $3)",
                &[&seq, &at.as_millis(), &super::super::codec::encode(ev)],
            )
            .unwrap();
        }
        super::super::migrate(c).unwrap();
        let marked: Vec<bool> = c
            .query("SELECT purgeable FROM events ORDER BY seq", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(marked, [false, true, false, true]);
        assert_eq!(stored(c), Vec::<i64>::new());
        let version: i32 = c
            .query_one("SELECT version FROM rollcall_schema", &[])
            .unwrap()
            .get(0);
        assert_eq!(version as u32, super::super::PG_SCHEMA_VERSION);
    }
}
