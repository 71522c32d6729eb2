//! The on-disk layout: the tables, the schema version with its forward
//! migrations, and the checks made before anything is written.
//!
//! Tables hold what happened, shaped as PostgreSQL would hold it (typed
//! columns, times as UTC milliseconds, IDs as integers), so a PostgreSQL store
//! can follow with the same rows. Every engine event has a log sequence
//! number `seq`, one counter across the event tables; the rows of one event
//! share it and keep their order in `id`. `id` is an `INTEGER PRIMARY KEY`
//! (SQLite's rowid, stable across `VACUUM`), increasing with `seq`, so replay
//! reads each table in one ordered scan without an index and merges them by
//! `seq`. (A PostgreSQL store would use `bigserial` for `id`.)
//!
//! Nothing here opens a connection for writing until the file has passed
//! [`precheck`] and the read-only checks in `mod.rs`: a file this version does
//! not understand, or a damaged one, is refused with its bytes untouched.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use rusqlite::Connection;

use super::StoreError;

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "rollcall.sqlite3";
/// File name of the lock file inside the data directory.
pub const LOCK_FILE: &str = "rollcall.lock";

/// `MIGRATIONS[v]` takes a store from schema version `v` to `v + 1`; version
/// 0 is an empty file. Never edit a released entry: append a new one.
const MIGRATIONS: &[&str] = &[V1, V2, V3];

/// The schema version this build writes (and the newest it can open).
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Version 1: every table of the first release.
const V1: &str = "
CREATE TABLE register_rows (
    id        INTEGER PRIMARY KEY,
    seq       INTEGER NOT NULL,
    person_id INTEGER NOT NULL,
    name      TEXT    NOT NULL,
    phone     TEXT    NOT NULL,
    area      TEXT    NOT NULL,
    household TEXT    NOT NULL,
    at        INTEGER NOT NULL
) STRICT;
CREATE TABLE heads (
    id    INTEGER PRIMARY KEY,
    seq   INTEGER NOT NULL,
    area  TEXT    NOT NULL,
    title TEXT    NOT NULL,
    name  TEXT    NOT NULL,
    phone TEXT    NOT NULL,
    at    INTEGER NOT NULL
) STRICT;
CREATE TABLE resident_deletes (
    id        INTEGER PRIMARY KEY,
    seq       INTEGER NOT NULL,
    person_id INTEGER NOT NULL,
    at        INTEGER NOT NULL
) STRICT;
-- (tube_id, person_id) is unique in effect: the engine judges duplicates
-- before anything is logged. No index, so appends stay sequential writes.
CREATE TABLE records (
    id           INTEGER PRIMARY KEY,
    seq          INTEGER NOT NULL,
    person_id    INTEGER NOT NULL,
    tube_id      TEXT    NOT NULL,
    site         TEXT    NOT NULL,
    collected_at INTEGER NOT NULL,
    arrived_at   INTEGER NOT NULL
) STRICT;
CREATE TABLE results (
    id          INTEGER PRIMARY KEY,
    seq         INTEGER NOT NULL,
    tube_id     TEXT    NOT NULL,
    result      TEXT    NOT NULL CHECK (result IN ('negative', 'positive')),
    reported_at INTEGER NOT NULL,
    arrived_at  INTEGER NOT NULL
) STRICT;
-- scope: a JSON array of area paths (text[] in PostgreSQL).
CREATE TABLE rounds (
    id         INTEGER PRIMARY KEY,
    seq        INTEGER NOT NULL,
    round_id   INTEGER NOT NULL,
    name       TEXT    NOT NULL,
    scope      TEXT    NOT NULL,
    opens_at   INTEGER NOT NULL,
    deadline   INTEGER NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
CREATE TABLE round_closes (
    id       INTEGER PRIMARY KEY,
    seq      INTEGER NOT NULL,
    round_id INTEGER NOT NULL,
    at       INTEGER NOT NULL
) STRICT;
CREATE TABLE exemptions (
    id           INTEGER PRIMARY KEY,
    seq          INTEGER NOT NULL,
    exemption_id INTEGER NOT NULL,
    person_id    INTEGER NOT NULL,
    reason       TEXT    NOT NULL,
    from_at      INTEGER NOT NULL,
    until_at     INTEGER NOT NULL,
    note         TEXT    NOT NULL,
    created_at   INTEGER NOT NULL
) STRICT;
CREATE TABLE exemption_deletes (
    id           INTEGER PRIMARY KEY,
    seq          INTEGER NOT NULL,
    exemption_id INTEGER NOT NULL,
    at           INTEGER NOT NULL
) STRICT;
CREATE TABLE clears (
    id        INTEGER PRIMARY KEY,
    seq       INTEGER NOT NULL,
    person_id INTEGER NOT NULL,
    note      TEXT    NOT NULL,
    at        INTEGER NOT NULL
) STRICT;
-- Tokens are stored as a keyed hash only; the clear text is shown once.
CREATE TABLE tokens (
    id         TEXT    PRIMARY KEY,
    token_hash BLOB    NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    role       TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    site       TEXT,
    area       TEXT,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
) STRICT;
CREATE TABLE audit (
    id         INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    token_name TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    area       TEXT,
    round_id   TEXT,
    rows       INTEGER
) STRICT;
CREATE INDEX audit_at ON audit (at);
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
";

/// Version 2: which token is the bootstrap admin (the one
/// `ROLLCALL_ADMIN_TOKEN` gives; at most one live), and what an audit entry
/// was about (`target`: a token, a masked ID, an exemption). Version 1
/// named every admin token it created at start-up `bootstrap admin`; the
/// next start revokes all of them but the one its value gives.
const V2: &str = "
ALTER TABLE tokens ADD COLUMN bootstrap INTEGER NOT NULL DEFAULT 0 CHECK (bootstrap IN (0, 1));
UPDATE tokens SET bootstrap = 1 WHERE role = 'admin' AND name = 'bootstrap admin';
ALTER TABLE audit ADD COLUMN target TEXT;
";

/// Version 3: records are logged one row per batch, packed
/// ([`super::log::pack_records`]): a row per record took a fifth of the
/// writer's time and 55 bytes of the file against 34. Rows an earlier version
/// wrote to `records` stay there, replayed in `seq` order with the batches,
/// until retention purges them.
const V3: &str = "
CREATE TABLE record_batches (
    id         INTEGER PRIMARY KEY,
    seq        INTEGER NOT NULL,
    arrived_at INTEGER NOT NULL,
    count      INTEGER NOT NULL,
    body       BLOB    NOT NULL
) STRICT;
";

/// What [`precheck`] found on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDisk {
    /// No database yet (no file, or an empty one with no write-ahead log).
    Absent,
    /// A database whose header passed the checks.
    Present,
}

/// Checks the database file's header with plain file reads, before SQLite
/// touches it: the magic string, the page size, the schema version, and — when
/// no write-ahead log holds newer pages — that the file is as long as its
/// header says. Refuses a foreign, truncated or newer file.
pub fn precheck(db: &Path) -> Result<OnDisk, StoreError> {
    let mut file = match File::open(db) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(OnDisk::Absent),
        Err(e) => return Err(StoreError::Io(e)),
    };
    let len = file.metadata()?.len();
    let wal_len = wal_len(db)?;
    if len == 0 {
        // SQLite creates the file empty and writes page 1 with the first
        // transaction; with a non-empty log the log holds the data.
        return if wal_len == 0 {
            Ok(OnDisk::Absent)
        } else {
            Ok(OnDisk::Present)
        };
    }
    if len < 100 {
        return Err(StoreError::Corrupt(format!(
            "{} is {len} bytes, shorter than a SQLite header (truncated?)",
            db.display()
        )));
    }
    let mut header = [0u8; 100];
    file.read_exact(&mut header)?;
    if &header[..16] != b"SQLite format 3\0" {
        return Err(StoreError::Corrupt(format!(
            "{} is not a SQLite database (bad header)",
            db.display()
        )));
    }
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65_536,
        n if n >= 512 && n.is_power_of_two() => u64::from(n),
        n => {
            return Err(StoreError::Corrupt(format!(
                "{} has an impossible page size {n}",
                db.display()
            )));
        }
    };
    let user_version = be32(&header[60..64]);
    if user_version > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found: user_version,
            supported: SCHEMA_VERSION,
        });
    }
    // The in-header page count is valid when the change counter equals the
    // version-valid-for number. A checkpoint interrupted by a crash can leave
    // page 1 ahead of the rest, but then the log still holds every page, so
    // the length is only judged when there is no log.
    let pages = u64::from(be32(&header[28..32]));
    let count_valid = header[24..28] == header[92..96];
    if wal_len == 0 && (len % page_size != 0 || (count_valid && len < pages * page_size)) {
        return Err(StoreError::Corrupt(format!(
            "{} is {len} bytes but its header says {} (truncated?)",
            db.display(),
            pages * page_size
        )));
    }
    Ok(OnDisk::Present)
}

fn wal_len(db: &Path) -> Result<u64, StoreError> {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    match std::fs::metadata(&wal) {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(StoreError::Io(e)),
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The schema version recorded in the file (`PRAGMA user_version`).
pub fn user_version(conn: &Connection) -> Result<u32, StoreError> {
    let v: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(StoreError::from)?;
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("schema version {v} is not valid")))
}

/// `PRAGMA quick_check`: walks every page and b-tree (not the indexes'
/// contents). Returns the problems found, empty when the file is sound.
pub fn quick_check(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn
        .prepare("PRAGMA quick_check(20)")
        .map_err(StoreError::from)?;
    let lines: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(Iterator::collect)
        .map_err(StoreError::from)?;
    Ok(if lines.len() == 1 && lines[0] == "ok" {
        Vec::new()
    } else {
        lines
    })
}

/// Brings a store at version `from` up to [`SCHEMA_VERSION`], one transaction
/// per step so a crash leaves a whole version behind.
pub fn migrate(conn: &mut Connection, from: u32) -> Result<(), StoreError> {
    for (v, sql) in MIGRATIONS.iter().enumerate().skip(from as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", v as u32 + 1)?;
        tx.commit()?;
        tracing::info!(from = v, to = v + 1, "store schema migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(page_size: u16, pages: u32, user_version: u32) -> Vec<u8> {
        let mut h = vec![0u8; 100];
        h[..16].copy_from_slice(b"SQLite format 3\0");
        h[16..18].copy_from_slice(&page_size.to_be_bytes());
        h[24..28].copy_from_slice(&7u32.to_be_bytes());
        h[28..32].copy_from_slice(&pages.to_be_bytes());
        h[60..64].copy_from_slice(&user_version.to_be_bytes());
        h[92..96].copy_from_slice(&7u32.to_be_bytes());
        h
    }

    fn file(bytes: &[u8], len: usize) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DB_FILE);
        let mut b = bytes.to_vec();
        b.resize(len.max(b.len()), 0);
        std::fs::write(&path, b).unwrap();
        (dir, path)
    }

    #[test]
    fn no_file_or_an_empty_one_is_a_new_store() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(precheck(&dir.path().join(DB_FILE)).unwrap(), OnDisk::Absent);
        let (_d, p) = file(b"", 0);
        assert_eq!(precheck(&p).unwrap(), OnDisk::Absent);
    }

    #[test]
    fn a_sound_header_passes() {
        let (_d, p) = file(&header(4096, 3, SCHEMA_VERSION), 3 * 4096);
        assert_eq!(precheck(&p).unwrap(), OnDisk::Present);
    }

    #[test]
    fn a_newer_version_in_the_header_is_refused() {
        let (_d, p) = file(&header(4096, 1, SCHEMA_VERSION + 1), 4096);
        assert!(matches!(
            precheck(&p),
            Err(StoreError::NewerSchema { found, .. }) if found == SCHEMA_VERSION + 1
        ));
    }

    #[test]
    fn foreign_short_truncated_and_odd_files_are_corrupt() {
        let (_d, p) = file(b"not a database at all, but long enough to hold a header........................................", 4096);
        assert!(matches!(precheck(&p), Err(StoreError::Corrupt(_))));
        let (_d, p) = file(b"SQLite format 3\0", 0);
        assert!(matches!(precheck(&p), Err(StoreError::Corrupt(_))));
        let (_d, p) = file(&header(4096, 10, 1), 4 * 4096);
        assert!(matches!(precheck(&p), Err(StoreError::Corrupt(m)) if m.contains("truncated")));
        let (_d, p) = file(&header(4096, 1, 1), 4096 + 100);
        assert!(matches!(precheck(&p), Err(StoreError::Corrupt(_))));
        let (_d, p) = file(&header(1000, 1, 1), 4096);
        assert!(matches!(precheck(&p), Err(StoreError::Corrupt(m)) if m.contains("page size")));
    }

    #[test]
    fn version_1_stores_gain_bootstrap_and_target_and_keep_their_rows() {
        let mut c = Connection::open_in_memory().unwrap();
        let tx = c.transaction().unwrap();
        tx.execute_batch(V1).unwrap();
        tx.pragma_update(None, "user_version", 1).unwrap();
        tx.commit().unwrap();
        c.execute_batch(
            "INSERT INTO tokens (id, token_hash, role, name, created_at)
               VALUES ('1', zeroblob(32), 'admin', 'bootstrap admin', 5),
                      ('2', randomblob(32), 'admin', 'ops', 6),
                      ('3', randomblob(32), 'gate', 'bootstrap admin', 7);
             INSERT INTO audit (at, token_name, role, action) VALUES (1, 'x', 'admin', 'clear');",
        )
        .unwrap();
        migrate(&mut c, 1).unwrap();
        assert_eq!(user_version(&c).unwrap(), SCHEMA_VERSION);
        let (tokens, next) = super::super::side::load(&c).unwrap();
        assert_eq!(next, 4);
        let boot: Vec<bool> = tokens.iter().map(|t| t.bootstrap).collect();
        assert_eq!(boot, [true, false, false]);
        let audit = super::super::side::audit_since(&c, None).unwrap();
        assert_eq!(audit.len(), 1);
        assert_eq!(audit[0].target, None);
    }

    #[test]
    fn migrations_create_every_table_and_record_the_version() {
        let mut c = Connection::open_in_memory().unwrap();
        migrate(&mut c, 0).unwrap();
        assert_eq!(user_version(&c).unwrap(), SCHEMA_VERSION);
        for t in super::super::replay::EVENT_TABLES
            .iter()
            .chain(&["tokens", "audit", "meta"])
        {
            let n: i64 = c
                .query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
                .unwrap();
            assert_eq!(n, 0);
        }
    }
}
