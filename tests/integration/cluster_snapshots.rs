//! Snapshots and retention on the PostgreSQL store, against the real
//! PostgreSQL (a database per test): a server with an empty scratch
//! directory starts from the snapshot the leader stored plus the log after
//! it and reaches the leader's state; a damaged stored snapshot is skipped
//! for the one before it, nothing lost; retention deletes only record and
//! result events the oldest kept snapshot holds, audits it, and a server
//! started after it still equals the leader; a standby cut off while
//! retention purged the log it needed next starts again from the stored
//! snapshot and equals the leader.

use std::sync::Arc;

use rollcall::domain::{AuditAction, Timestamp};
use rollcall::engine::Command;
use rollcall::engine::clock::{Clock, ManualClock};
use rollcall::store::{Store, StoreOptions};

use crate::cluster::{PgDb, open_pg, open_pg_with};
use crate::retention::two_snapshots_a_month_apart;
use crate::store::{drive_a_campaign, now0, record};

const DAY: i64 = 24 * 3_600_000;

fn number(db: &PgDb, sql: &str) -> u64 {
    db.query(sql)[0]
        .as_deref()
        .expect("a value")
        .parse()
        .expect("a number")
}

/// A server started now with an empty scratch directory (a standby beside
/// a running leader): the `seq` of the snapshot it started from, the events
/// it replayed, and its engine's digest at `at`.
fn fresh_server(db: &PgDb, at: Timestamp) -> (u64, u64, u64) {
    let clock = ManualClock::new(at);
    let scratch = tempfile::tempdir().unwrap();
    let (store, engine) = open_pg(&db.url(), scratch.path(), &clock);
    assert!(!store.is_leader(), "the leader still holds the lock");
    let stats = store.replay_stats();
    let out = (stats.snapshot_seq, stats.events, engine.read().digest(at));
    drop(store);
    out
}

/// Flips one byte of a stored snapshot's first part.
fn damage(db: &PgDb, seq: u64) {
    db.query(&format!(
        "UPDATE snapshot_parts SET bytes = set_byte(bytes, 100, get_byte(bytes, 100) # 1)
         WHERE seq = {seq} AND part = 0 RETURNING seq"
    ));
}

/// A leader that drove a campaign, stored a snapshot, then took more
/// records and a round.
async fn a_leader_with_a_snapshot(
    db: &PgDb,
    scratch: &std::path::Path,
    clock: &Arc<ManualClock>,
) -> (Store, rollcall::engine::SharedEngine, u64) {
    let (leader, engine) = open_pg(&db.url(), scratch, clock);
    assert!(leader.is_leader());
    drive_a_campaign(&leader, clock).await;
    let s1 = leader.snapshot().await.unwrap();
    assert!(s1.seq > 0 && s1.bytes > 0);
    assert_eq!(s1.purged_rows, 0);
    let now = clock.now();
    leader
        .records((300..340).map(|p| record(p, 900 + p / 10, now)).collect())
        .await
        .unwrap();
    leader
        .command(Command::RoundCreate {
            name: "第4轮".into(),
            scope: vec![rollcall::domain::AreaPath::parse("崇文路街道").unwrap()],
            opens_at: now,
            deadline: now.plus_millis(DAY),
        })
        .await
        .unwrap();
    (leader, engine, s1.seq)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_server_starts_from_the_stored_snapshot_and_the_log_after_it() {
    let Some(db) = PgDb::create() else { return };
    let clock = ManualClock::new(now0());
    let scratch = tempfile::tempdir().unwrap();
    let (leader, engine, s1) = a_leader_with_a_snapshot(&db, scratch.path(), &clock).await;
    assert_eq!(number(&db, "SELECT count(*) FROM snapshots"), 1);
    assert_eq!(
        number(
            &db,
            &format!("SELECT sum(length(bytes)) FROM snapshot_parts WHERE seq = {s1}")
        ),
        number(&db, "SELECT bytes FROM snapshots")
    );
    let last = number(&db, "SELECT max(seq) FROM events");
    assert!(last > s1, "written after the snapshot");

    let at = clock.now();
    let live = engine.read().digest(at);
    let (from, replayed, digest) = fresh_server(&db, at);
    assert_eq!(from, s1, "started from the stored snapshot");
    assert_eq!(replayed, last - s1, "and replayed only the log after it");
    assert_eq!(digest, live, "the leader's state exactly");
    leader.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_stored_snapshot_is_skipped_for_the_one_before_and_nothing_is_lost() {
    let Some(db) = PgDb::create() else { return };
    let clock = ManualClock::new(now0());
    let scratch = tempfile::tempdir().unwrap();
    let (leader, engine, s1) = a_leader_with_a_snapshot(&db, scratch.path(), &clock).await;
    let s2 = leader.snapshot().await.unwrap().seq;
    assert!(s2 > s1);
    leader
        .records((340..360).map(|p| record(p, 950, clock.now())).collect())
        .await
        .unwrap();
    let at = clock.now();
    let live = engine.read().digest(at);

    damage(&db, s2);
    let (from, _, digest) = fresh_server(&db, at);
    assert_eq!(from, s1, "the damaged newest one is skipped");
    assert_eq!(digest, live);
    // Both damaged: the whole log, which still holds everything.
    damage(&db, s1);
    let (from, replayed, digest) = fresh_server(&db, at);
    assert_eq!(from, 0);
    assert_eq!(replayed, number(&db, "SELECT max(seq) FROM events"));
    assert_eq!(digest, live);
    leader.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_only_what_the_oldest_stored_snapshot_holds_and_audits_it() {
    let Some(db) = PgDb::create() else { return };
    let clock = ManualClock::new(now0());
    let scratch = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        audit_retention_days: 30,
        ..StoreOptions::default()
    };
    let (leader, engine) = open_pg_with(&db.url(), scratch.path(), &clock, options);
    // The first record event is past the window and held by the older of
    // the two stored snapshots when the second is stored.
    let (s1, s2) = two_snapshots_a_month_apart(&leader, &clock).await;
    assert_eq!(s2.purged_rows, 1, "one event row (of 100 records)");
    let last = number(&db, "SELECT max(seq) FROM events");
    // Only the first record event went: the register import before it
    // stays, and every event after the oldest kept snapshot.
    assert_eq!(
        db.query("SELECT seq::text FROM events ORDER BY seq"),
        std::iter::once(1)
            .chain(s1.seq + 1..=last)
            .map(|s| Some(s.to_string()))
            .collect::<Vec<_>>()
    );
    let audit = leader.audit_since(None).await.unwrap();
    assert_eq!(audit.len(), 1, "the old entry went; the purge's came");
    assert_eq!(audit[0].action, AuditAction::RetentionPurge);
    assert_eq!(audit[0].rows, Some(1));

    let at = clock.now();
    let live = engine.read().digest(at);
    assert_eq!(engine.read().record_count(), 200);
    let (from, _, digest) = fresh_server(&db, at);
    assert_eq!(from, s2.seq);
    assert_eq!(digest, live, "a server started after the purge");
    // The newest damaged: the oldest kept one and the log after it.
    damage(&db, s2.seq);
    let (from, _, digest) = fresh_server(&db, at);
    assert_eq!(from, s1.seq);
    assert_eq!(
        digest, live,
        "nothing a stored snapshot did not hold was purged"
    );
    leader.close().await;
}

/// A TCP proxy in front of PostgreSQL that the test can hold: while held,
/// nothing passes either way (as a standby cut off from the database sees
/// it), and what was sent meanwhile passes once it is let go.
struct Proxy {
    port: u16,
    held: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    async fn start(to: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (held, watch) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pipe(cr, sw, watch.clone()));
                tokio::spawn(pipe(sr, cw, watch.clone()));
            }
        });
        Proxy { port, held }
    }

    /// Holds everything until the guard is dropped (also when the test
    /// panics, so the servers behind it can close).
    fn hold(&self) -> Held<'_> {
        self.held.send_replace(true);
        Held(self)
    }
}

struct Held<'a>(&'a Proxy);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.held.send_replace(false);
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut held: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if held.wait_for(|h| !h).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Whether the standby's engine reaches the leader's (by digest) within 10 s.
async fn caught_up(
    standby: &rollcall::engine::SharedEngine,
    leader: &rollcall::engine::SharedEngine,
    clock: &ManualClock,
) -> bool {
    for _ in 0..200 {
        let now = clock.now();
        if standby.read().digest(now) == leader.read().digest(now) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_cut_off_while_its_next_events_were_purged_starts_again_from_the_snapshot() {
    let Some(db) = PgDb::create() else { return };
    let clock = ManualClock::new(now0());
    let scratch = tempfile::tempdir().unwrap();
    let (leader, engine) = open_pg(&db.url(), scratch.path(), &clock);
    assert!(leader.is_leader());
    leader
        .command(Command::Register(
            (0..300).map(crate::store::resident).collect(),
        ))
        .await
        .unwrap();

    // The standby reaches PostgreSQL through the proxy, and follows.
    let proxy = Proxy::start(5432).await;
    let url = db
        .url()
        .replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port));
    let standby_scratch = tempfile::tempdir().unwrap();
    let (standby, standby_engine) = open_pg(&url, standby_scratch.path(), &clock);
    assert!(!standby.is_leader());
    assert!(caught_up(&standby_engine, &engine, &clock).await);

    // Cut off: the leader takes records, stores a snapshot, a month passes,
    // more records and a second snapshot, whose purge deletes the first
    // record event — the very next event the standby needs.
    let held = proxy.hold();
    let batch = |from: u64| -> Vec<_> {
        (from..from + 100)
            .map(|p| record(p, p, clock.now()))
            .collect()
    };
    leader.records(batch(0)).await.unwrap();
    let s1 = leader.snapshot().await.unwrap();
    clock.advance_millis(31 * DAY);
    leader.records(batch(100)).await.unwrap();
    let s2 = leader.snapshot().await.unwrap();
    assert_eq!(s2.purged_rows, 1, "the first record event, past the window");
    leader.records(batch(200)).await.unwrap();
    assert!(s1.seq > 1);

    // Back: it finds the gap, starts again from the stored snapshot and the
    // log after it, and equals the leader.
    drop(held);
    assert!(
        caught_up(&standby_engine, &engine, &clock).await,
        "the standby did not reach the leader's state after the purge"
    );
    assert_eq!(
        standby_engine.read().record_count(),
        engine.read().record_count()
    );
    drop(standby);
    leader.close().await;
}
