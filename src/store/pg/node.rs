//! One server's life on PostgreSQL, on the store's writer thread: open
//! (migrate, load the newest stored snapshot, replay the log after it), then follow the log as a standby until
//! the leadership lock is free, take it on the same connection, apply the
//! rest of the log, and serve writes as the leader through the ordinary
//! writer — until the session is lost, when it goes back to following.
//!
//! A standby wakes on the leader's `NOTIFY` (a hint: notifications can be
//! missed across reconnects) and polls every [`POLL`] regardless, so a write
//! the leader acknowledged is applied here within a poll or two. Requests
//! that reach a standby's writer thread (the handle checks the role first,
//! so only those racing a change of role) are answered `NotLeader`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres::Client;
use postgres::fallible_iterator::FallibleIterator;
use rustc_hash::FxHashMap;
use tokio::sync::mpsc;

use super::{
    CHANNEL, Cluster, LOCK, PgLog, Role, Uploads, apply_after, connect, load_leader, load_meta,
    load_newest, load_tokens,
};
use crate::engine::SharedEngine;
use crate::engine::clock::Clock;
use crate::store::writer::{Backend, Request, Served, Snapshots, Visible, Writer};
use crate::store::{OnChanged, StoreError, StoreOptions};

/// How often a standby reads the log and tries for the lock.
pub const POLL: Duration = Duration::from_millis(100);
/// How often a standby reloads the token list and `meta` (small tables:
/// every poll, so a token the leader issued works here within the second a
/// write has to show).
const SIDE_EVERY: Duration = POLL;
/// How often the leader checks it still holds its session and lock.
const HEARTBEAT: Duration = Duration::from_millis(250);
/// How long a server that lost its session leaves the lock to the others
/// (its link may be the trouble): it follows, and tries again only after.
const HOLD_OFF: Duration = Duration::from_secs(2);

pub(in crate::store) struct Node {
    pub url: String,
    /// Where this server writes its snapshot files (as leader) before they
    /// are stored in PostgreSQL, and its lock, held while the node runs.
    pub dir: PathBuf,
    pub _lock: std::fs::File,
    /// The `seq` of the newest snapshot this server knows of.
    pub snapshot_seq: u64,
    pub advertise: Option<String>,
    pub cluster: Arc<Cluster>,
    pub engine: SharedEngine,
    pub clock: Arc<dyn Clock>,
    pub on_changed: OnChanged,
    pub visible: Arc<Visible>,
    pub options: StoreOptions,
    /// The last `seq` applied to the engine.
    pub applied: u64,
    /// Until when this server does not try for the lock (after losing it).
    pub hold_off: Option<Instant>,
}

impl Node {
    /// Follows and leads in turn until the store closes.
    pub fn run(mut self, first: Client, mut rx: mpsc::Receiver<Request>) {
        let mut conn = Some(first);
        loop {
            let Some(client) = self.follow(&mut rx, conn.take()) else {
                return;
            };
            if !self.lead(client, &mut rx) {
                return;
            }
        }
    }

    /// Answers whatever is queued `NotLeader`; `true` once the store is
    /// closing (every sender gone, or a `Close`).
    fn drain(&self, rx: &mut mpsc::Receiver<Request>) -> bool {
        loop {
            match rx.try_recv() {
                Ok(Request::Close { reply }) => {
                    let _ = reply.send(());
                    return true;
                }
                Ok(r) => {
                    let leader = self.cluster.leader();
                    r.refuse(|| StoreError::NotLeader(leader.clone()));
                }
                Err(mpsc::error::TryRecvError::Empty) => return false,
                Err(mpsc::error::TryRecvError::Disconnected) => return true,
            }
        }
    }

    /// As a standby until the lock is taken: returns the connection that
    /// holds it, or `None` once the store is closing.
    fn follow(&mut self, rx: &mut mpsc::Receiver<Request>, conn: Option<Client>) -> Option<Client> {
        let mut conn = conn;
        let mut side_at: Option<Instant> = None;
        loop {
            let mut c = match conn.take() {
                Some(c) => c,
                None => match connect(&self.url) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot reach the database; retrying");
                        if self.drain(rx) {
                            return None;
                        }
                        std::thread::sleep(Duration::from_millis(500));
                        continue;
                    }
                },
            };
            if let Err(e) = c.batch_execute(&format!("LISTEN {CHANNEL}")) {
                tracing::warn!(error = %e, "LISTEN failed; reconnecting");
                continue;
            }
            loop {
                if self.drain(rx) {
                    return None;
                }
                match self.poll(&mut c, &mut side_at) {
                    Ok(true) => return Some(c),
                    Ok(false) => {
                        if self.cluster.role() == Role::Starting {
                            self.cluster.set_role(Role::Standby);
                            tracing::info!(leader = ?self.cluster.leader(), "this server is a standby");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "following the log failed; reconnecting");
                        break;
                    }
                }
                // Woken early by the leader's notification; polls anyway.
                let mut n = c.notifications();
                let woke = n.timeout_iter(POLL).next();
                let drained = woke.and_then(|_| n.iter().count());
                if let Err(e) = drained {
                    tracing::warn!(error = %e, "the standby's session broke; reconnecting");
                    break;
                }
            }
        }
    }

    /// Applies the log after what is applied, refreshes the leader's URL
    /// (and now and then tokens and meta), and tries for the lock.
    fn poll(&mut self, c: &mut Client, side_at: &mut Option<Instant>) -> Result<bool, StoreError> {
        let asked = Instant::now();
        self.catch_up(c)?;
        *self.cluster.leader.write() = load_leader(c)?;
        *self.cluster.caught_up.lock() = Some(asked);
        if side_at.is_none_or(|t| t.elapsed() >= SIDE_EVERY) {
            self.reload_side(c)?;
            *side_at = Some(Instant::now());
        }
        if self.hold_off.is_some_and(|t| Instant::now() < t) {
            return Ok(false);
        }
        let got: bool = c
            .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&LOCK.0, &LOCK.1])?
            .get(0);
        Ok(got)
    }

    fn catch_up(&mut self, c: &mut Client) -> Result<(), StoreError> {
        let mut changed = Vec::new();
        match apply_after(c, &self.engine, &mut self.applied, &mut changed) {
            Ok(_) => {}
            Err(StoreError::LogGap { after, next }) => self.reload(c, after, next)?,
            Err(e) => return Err(e),
        }
        if !changed.is_empty() {
            changed.sort_unstable();
            changed.dedup();
            (self.on_changed)(changed);
        }
        Ok(())
    }

    /// The events this server needs next were purged by retention while it
    /// was away (longer than two snapshot intervals): it starts again from
    /// the newest stored snapshot, which holds them, and the log after it —
    /// built beside the engine that keeps answering, then swapped in whole.
    /// A gap no stored snapshot covers is a damaged log: `LogGap` again.
    fn reload(&mut self, c: &mut Client, after: u64, next: u64) -> Result<(), StoreError> {
        let (policy, pool) = {
            let e = self.engine.read();
            (*e.policy(), e.pool().clone())
        };
        let mut tx = super::consistent_view(c)?;
        let Some((seq, fresh)) =
            load_newest(&mut tx, policy, &pool)?.filter(|(s, _)| *s + 1 >= next)
        else {
            return Err(StoreError::LogGap { after, next });
        };
        let fresh = parking_lot::RwLock::new(fresh);
        let mut last = seq;
        apply_after(&mut tx, &fresh, &mut last, &mut Vec::new())?;
        tx.commit()?;
        *self.engine.write() = fresh.into_inner();
        tracing::warn!(
            from = self.applied,
            snapshot = seq,
            to = last,
            "the log after this server's state was purged; reloaded from the stored snapshot"
        );
        self.applied = last;
        self.snapshot_seq = self.snapshot_seq.max(seq);
        Ok(())
    }

    /// Tokens and meta as the leader wrote them; returns the next token id.
    fn reload_side(&self, c: &mut Client) -> Result<u64, StoreError> {
        let (tokens, next) = load_tokens(c)?;
        let meta: FxHashMap<String, String> = load_meta(c)?.into_iter().collect();
        {
            let mut mine = self.visible.tokens.write();
            if *mine != tokens {
                *mine = tokens;
                self.cluster
                    .tokens_gen
                    .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            }
        }
        *self.visible.meta.write() = meta;
        Ok(next)
    }

    /// As the leader, on the connection that holds the lock, until the
    /// session is lost (`true`: follow again) or the store closes (`false`).
    fn lead(&mut self, mut c: Client, rx: &mut mpsc::Receiver<Request>) -> bool {
        // The last leader's session is over, so all it committed is visible.
        let uploads = match Uploads::start(
            self.url.clone(),
            self.cluster.clone(),
            self.clock.clone(),
            self.options,
        ) {
            Ok(u) => u,
            Err(e) => {
                tracing::error!(error = %e, "starting the snapshot upload thread failed; following again");
                return true;
            }
        };
        let ready = (|| -> Result<(PgLog, u64), StoreError> {
            self.catch_up(&mut c)?;
            c.batch_execute("UNLISTEN *")?;
            c.execute(
                "INSERT INTO leader (one, url, since) VALUES (true, $1, $2)
                 ON CONFLICT (one) DO UPDATE SET url = excluded.url, since = excluded.since",
                &[&self.advertise, &self.clock.now().as_millis()],
            )?;
            let next_token = self.reload_side(&mut c)?;
            Ok((PgLog::new(c, uploads)?, next_token))
        })();
        let (log, next_token) = match ready {
            Ok(r) => r,
            Err(e) => {
                // Dropping the connection releases the lock.
                tracing::error!(error = %e, "taking over as leader failed; following again");
                return true;
            }
        };
        self.cluster.leader.write().clone_from(&self.advertise);
        self.cluster.set_role(Role::Leader);
        tracing::info!(seq = self.applied, advertise = ?self.advertise, "this server is the leader");
        let mut w = Writer {
            backend: Backend::Postgres(log),
            engine: self.engine.clone(),
            clock: self.clock.clone(),
            on_changed: self.on_changed.clone(),
            visible: self.visible.clone(),
            next_seq: self.applied + 1,
            next_token,
            check: None,
            snapshots: Snapshots {
                dir: self.dir.clone(),
                options: self.options,
                seq: self.snapshot_seq,
                at: Instant::now(),
                writing: None,
            },
        };
        match w.serve(rx) {
            Served::Closed(reply) => {
                if let Some(r) = reply {
                    let _ = r.send(());
                }
                false
            }
            Served::Lost => {
                self.applied = w.next_seq - 1;
                self.snapshot_seq = w.snapshots.seq;
                self.hold_off = Some(Instant::now() + HOLD_OFF);
                self.cluster.set_role(Role::Standby);
                *self.cluster.leader.write() = None;
                *self.cluster.caught_up.lock() = None;
                tracing::error!(
                    seq = self.applied,
                    "lost the database session and with it the leadership; following the log"
                );
                true
            }
        }
    }
}

/// Nudges the writer thread every [`HEARTBEAT`] so an idle leader notices a
/// lost session; stops once the store's handles are gone.
pub(in crate::store) fn spawn_heartbeat(tx: mpsc::WeakSender<Request>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("store-heartbeat".into())
        .spawn(move || {
            loop {
                std::thread::sleep(HEARTBEAT);
                let Some(tx) = tx.upgrade() else { return };
                drop(tx.try_send(Request::Heartbeat));
            }
        })?;
    Ok(())
}
