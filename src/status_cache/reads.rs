//! Gate reads, coalesced: on one Redis, the lookups that arrive while a read
//! is in flight on a connection are gathered and sent as one `MGET` when it
//! returns. Redis then does one read and one write syscall (and one command
//! dispatch) for many keys, and this process one socket write and one wake
//! per batch rather than per lookup. The batching is natural: an idle
//! connection sends a lone lookup at once, as one key; there is no timer and
//! no added wait.
//!
//! Only the read is shared. Each lookup makes its own checks before and
//! after it (trust, pending, epoch, expiry, MAC) and writes back its own
//! misses, exactly as with a `GET` of its own (see the module docs of
//! `status_cache`). An error or timeout of a batch's `MGET` is every one of
//! its lookups' error, and that of every lookup queued behind it: each is
//! answered from the engine.
//!
//! A read that takes longer than [`HEDGE`] is not waited for: its lookups,
//! and any that queue behind it while it is still out, are told so at once
//! and answered from the engine, which is always right (it is what the cache
//! holds copies of). The `MGET` itself is still awaited, up to
//! `READ_TIMEOUT`, so the socket stays in step; if it then fails, Redis is
//! distrusted exactly as when a lookup sees the error. A Redis that is alive
//! but briefly stalled (descheduled mid-command on a busy machine, forking
//! for a snapshot, a network hiccup) so costs the gates a few milliseconds,
//! not the length of the stall.
//!
//! On a cluster, keys of different hash slots cannot share an `MGET`, and the
//! cluster client routes each command itself: lookups there keep one `GET`
//! each, and are not hedged.

use std::future::Future;
use std::sync::Weak;
use std::time::Duration;

use bytes::Bytes;
use redis::{RedisError, RedisResult};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::Shared;
use super::format::Key;
use super::redis_conn::{Conn, READ_TIMEOUT};
use super::resp::{RawConn, timed_out};

/// Keys per `MGET` at most: a few tens of microseconds of Redis's time, so a
/// batch never holds up the commands queued behind it for long.
const MAX_BATCH: usize = 256;

/// How long a lookup waits for its batch's `MGET` before it is answered from
/// the engine instead. A healthy Redis answers in well under a millisecond
/// on the same host and a millisecond or two across a network; on the 1 M
/// bench (two cores shared with the load generator) a lookup's p99.9 is
/// 3–5 ms, and Redis's own latency monitor saw single `MGET`s of a few keys
/// take up to 12 ms when it was descheduled mid-command.
pub const HEDGE: Duration = Duration::from_millis(5);

/// What a lookup's read comes to.
#[derive(Debug)]
pub enum Found {
    /// Redis answered: the raw value, if the key holds one.
    Value(Option<Bytes>),
    /// Redis had not answered within [`HEDGE`]: answer from the engine.
    /// Nothing is known to be wrong with Redis (if the read fails later, the
    /// batching task distrusts it).
    Slow,
    /// The read failed: Redis must be distrusted.
    Failed(RedisError),
}

/// One lookup's read, waiting for its batch.
struct Read {
    key: Key,
    reply: oneshot::Sender<Found>,
}

/// Who to tell when a batch's read fails after its lookups were answered
/// without it: the cache, under the trust the reader was opened with.
#[derive(Clone)]
pub struct OnError {
    pub shared: Weak<Shared>,
    pub trust: u64,
}

impl OnError {
    fn report(&self, e: &RedisError) {
        if let Some(s) = self.shared.upgrade() {
            s.distrust(self.trust, e);
        }
    }
}

/// A connection that gate lookups read through, with the task that batches
/// their reads. Cheap to clone; the task ends when the last clone goes.
#[derive(Clone)]
pub struct Reader {
    conn: Conn,
    /// Where reads queue for the batching task; `None` on a cluster (one
    /// `GET` per lookup). Unbounded: every entry is a lookup in progress,
    /// bounded by the requests the HTTP server admits.
    queue: Option<mpsc::UnboundedSender<Read>>,
}

impl Reader {
    /// Wraps `conn`. On one Redis this starts the batching task on the
    /// current Tokio runtime (so a worker thread's reader is driven by that
    /// thread); panics outside a runtime. The batches are read through
    /// `raw` when given (a plain socket to the same Redis, see `resp`), else
    /// through `conn`. A batch's failure that no lookup is waiting for is
    /// reported to `on_error`.
    pub fn new(conn: Conn, raw: Option<RawConn>, on_error: OnError) -> Reader {
        let queue = match &conn {
            Conn::Single(_) => {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(batch_reads(conn.clone(), raw, rx, on_error));
                Some(tx)
            }
            Conn::Cluster(_) => None,
        };
        Reader { conn, queue }
    }

    /// The connection itself (for writes and the health check).
    pub fn conn(&self) -> Conn {
        self.conn.clone()
    }

    /// Reads `key`, in the next batch of this connection.
    pub async fn get(&self, key: Key) -> Found {
        let Some(queue) = &self.queue else {
            return match self.conn.clone().get(&key).await {
                Ok(v) => Found::Value(v.map(Bytes::from)),
                Err(e) => Found::Failed(e),
            };
        };
        let (reply, answer) = oneshot::channel();
        if queue.send(Read { key, reply }).is_err() {
            return Found::Failed(gone());
        }
        // The task is gone only with its runtime (a worker thread shutting
        // down): the lookup is then answered from the engine.
        answer.await.unwrap_or_else(|_| Found::Failed(gone()))
    }
}

/// The batching task: waits for a read, takes every read queued by then (up
/// to `MAX_BATCH`), sends them as one `MGET`, answers each, and again.
///
/// A failed read on `raw` leaves its socket mid-reply, so it is dropped and
/// later batches go through `conn` (the same, verified Redis); by then Redis
/// is distrusted (by `on_error` and by the failed lookups), and the reader is
/// replaced when it is trusted again.
async fn batch_reads(
    mut conn: Conn,
    mut raw: Option<RawConn>,
    mut queue: mpsc::UnboundedReceiver<Read>,
    on_error: OnError,
) {
    let mut batch: Vec<Read> = Vec::with_capacity(MAX_BATCH);
    let mut keys: Vec<Key> = Vec::with_capacity(MAX_BATCH);
    let mut replies: Vec<oneshot::Sender<Found>> = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        for read in batch.drain(..) {
            keys.push(read.key);
            replies.push(read.reply);
        }
        let read = match &mut raw {
            Some(r) => {
                let mget = async { r.mget(keys.iter()).await.map_err(RedisError::from) };
                hedged(mget, &mut replies, &mut queue).await
            }
            None => {
                let mget = async {
                    let values = conn.mget(keys.iter()).await?;
                    Ok(values.into_iter().map(|v| v.map(Bytes::from)).collect())
                };
                hedged(mget, &mut replies, &mut queue).await
            }
        };
        keys.clear();
        match read {
            Ok(values) => {
                // Empty if the lookups were answered without it.
                for (reply, value) in replies.drain(..).zip(values) {
                    // A lookup that was cancelled meanwhile is not waiting.
                    let _ = reply.send(Found::Value(value));
                }
            }
            Err(e) => {
                raw = None;
                on_error.report(&e);
                // Whatever queued behind a failed read fails with it rather
                // than wait out another timeout: each is answered from the
                // engine.
                while let Ok(read) = queue.try_recv() {
                    replies.push(read.reply);
                }
                for reply in replies.drain(..) {
                    let _ = reply.send(Found::Failed(e.clone()));
                }
            }
        }
    }
}

/// Awaits one batch's `mget` for at most `READ_TIMEOUT`. Past [`HEDGE`] it
/// answers the batch's lookups `Slow` (leaving `replies` empty), and every
/// lookup that queues meanwhile too, until the read is done: none of them
/// waits on a stalled Redis. One timer serves both deadlines.
async fn hedged<F>(
    mget: F,
    replies: &mut Vec<oneshot::Sender<Found>>,
    queue: &mut mpsc::UnboundedReceiver<Read>,
) -> RedisResult<Vec<Option<Bytes>>>
where
    F: Future<Output = RedisResult<Vec<Option<Bytes>>>>,
{
    let sent = Instant::now();
    let timer = tokio::time::sleep_until(sent + HEDGE);
    tokio::pin!(mget, timer);
    let mut slow = false;
    loop {
        tokio::select! {
            biased;
            read = &mut mget => return read,
            () = &mut timer => {
                if slow {
                    return Err(RedisError::from(timed_out()));
                }
                slow = true;
                for reply in replies.drain(..) {
                    let _ = reply.send(Found::Slow);
                }
                timer.as_mut().reset(sent + READ_TIMEOUT);
            }
            Some(read) = queue.recv(), if slow => {
                let _ = read.reply.send(Found::Slow);
            }
        }
    }
}

fn gone() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::BrokenPipe,
        "the Redis reader's task has stopped",
    ))
}
