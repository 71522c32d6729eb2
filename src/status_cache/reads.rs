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
//! On a cluster, keys of different hash slots cannot share an `MGET`, and the
//! cluster client routes each command itself: lookups there keep one `GET`
//! each.

use bytes::Bytes;
use redis::RedisResult;
use tokio::sync::{mpsc, oneshot};

use super::format::Key;
use super::redis_conn::{Conn, READ_TIMEOUT};
use super::resp::{RawConn, timed_out};

/// Keys per `MGET` at most: a few tens of microseconds of Redis's time, so a
/// batch never holds up the commands queued behind it for long.
const MAX_BATCH: usize = 256;

/// What a read finds: the raw value, if the key holds one.
pub type Found = RedisResult<Option<Bytes>>;

/// One lookup's read, waiting for its batch.
struct Read {
    key: Key,
    reply: oneshot::Sender<Found>,
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
    /// through `conn`.
    pub fn new(conn: Conn, raw: Option<RawConn>) -> Reader {
        let queue = match &conn {
            Conn::Single(_) => {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(batch_reads(conn.clone(), raw, rx));
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
            return Ok(self.conn.clone().get(&key).await?.map(Bytes::from));
        };
        let (reply, answer) = oneshot::channel();
        queue.send(Read { key, reply }).map_err(|_| gone())?;
        // The task is gone only with its runtime (a worker thread shutting
        // down): the lookup is then answered from the engine.
        answer.await.unwrap_or_else(|_| Err(gone()))
    }
}

/// The batching task: waits for a read, takes every read queued by then (up
/// to `MAX_BATCH`), sends them as one `MGET`, answers each, and again.
///
/// A failed read on `raw` leaves its socket mid-reply, so it is dropped and
/// later batches go through `conn` (the same, verified Redis); by then the
/// failed lookups have distrusted Redis, and the reader is replaced when it
/// is trusted again.
async fn batch_reads(
    mut conn: Conn,
    mut raw: Option<RawConn>,
    mut queue: mpsc::UnboundedReceiver<Read>,
) {
    let mut batch: Vec<Read> = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let keys = batch.iter().map(|r| &r.key);
        let read = match &mut raw {
            Some(r) => match tokio::time::timeout(READ_TIMEOUT, r.mget(keys)).await {
                Ok(Ok(values)) => Ok(values),
                Ok(Err(e)) => Err(redis::RedisError::from(e)),
                Err(_) => Err(redis::RedisError::from(timed_out())),
            },
            None => conn
                .mget(keys)
                .await
                .map(|values| values.into_iter().map(|v| v.map(Bytes::from)).collect()),
        };
        if read.is_err() {
            raw = None;
        }
        match read {
            Ok(values) => {
                for (read, value) in batch.drain(..).zip(values) {
                    // A lookup that was cancelled meanwhile is not waiting.
                    let _ = read.reply.send(Ok(value));
                }
            }
            Err(e) => {
                // Whatever queued behind a failed read fails with it rather
                // than wait out another timeout: each is answered from the
                // engine, and Redis is distrusted by the first of them.
                while let Ok(read) = queue.try_recv() {
                    batch.push(read);
                }
                for read in batch.drain(..) {
                    let _ = read.reply.send(Err(e.clone()));
                }
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
