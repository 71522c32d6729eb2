//! Talking to Redis, single or cluster: connecting with short timeouts,
//! writes (plain and versioned), reads, fencing off old connections, and what
//! tells one Redis instance from the next (`run_id`s and the epoch marker).
//!
//! Two ways to write, chosen for cost and safety:
//! - Write-through on one Redis: plain `MSET` (and `SET … PX` for statuses
//!   with an expiry), about a third of Redis's time per key of the versioned
//!   script. Safe because the writer sends them in the order it computed
//!   them, over one connection at a time, and fences off the connection
//!   before (`CLIENT KILL`) when it reconnects, so nothing older can land
//!   after them; and because anything newer than what they carry is still
//!   pending (answered from the engine) until its own write lands.
//! - Everything else — a miss's write-back, and write-through on a cluster
//!   (whose connection retries and reroutes requests on its own) — goes
//!   through the versioned script, which keeps a value only if it is newer.

use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;
use redis::{AsyncConnectionConfig, Client, Cmd, RedisResult, Value};
use rustc_hash::FxHashMap;

use super::format::{Digest, Key, key_of};
use super::resp::RawConn;

/// How long a connection attempt may take before Redis counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(250);
/// How long a gate's read may wait: past this the gate is answered from the
/// engine and Redis is distrusted until resynchronised.
pub const READ_TIMEOUT: Duration = Duration::from_millis(250);
/// How long one write pipeline may take. A pipeline carries thousands of
/// keys and a loaded Redis may take a while; a paused one is noticed sooner
/// by the reads and the health check, which use `READ_TIMEOUT`.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Keys per command (`MSET`, script call): a fraction of a millisecond of
/// Redis's time, so gate reads queued behind a write never wait long.
const KEYS_PER_CALL: usize = 100;
/// Script calls in flight at once on a cluster (each is one slot's keys).
const CLUSTER_CALLS_IN_FLIGHT: usize = 128;

/// The marker key holding the epoch of the last full rewrite.
pub const EPOCH_KEY: &str = "rc:epoch";

/// Writes each key only if its value's version (the first 16 hex digits) is
/// newer than the stored one's. The comparison is numeric, in two 32-bit
/// halves (Lua numbers are doubles), so it holds whatever locale Redis's
/// `strcoll` uses. `SET` without `KEEPTTL` clears a previous expiry.
const WRITE_SCRIPT: &str = r"
local function ver(v)
  local hi = tonumber(string.sub(v, 1, 8), 16)
  local lo = tonumber(string.sub(v, 9, 16), 16)
  if hi == nil or lo == nil then return -1, -1 end
  return hi, lo
end
local written = 0
for i, key in ipairs(KEYS) do
  local value = ARGV[2 * i - 1]
  local current = redis.call('GET', key)
  local newer = true
  if current then
    local ch, cl = ver(current)
    local nh, nl = ver(value)
    newer = nh > ch or (nh == ch and nl > cl)
  end
  if newer then
    local px = ARGV[2 * i]
    if px ~= '0' then
      redis.call('SET', key, value, 'PX', px)
    else
      redis.call('SET', key, value)
    end
    written = written + 1
  end
end
return written
";

/// Writes `ARGV[2]` (with `PX ARGV[3]` unless `0`) to `KEYS[1]` only if it
/// still holds exactly `ARGV[1]`: replaces a forged value without ever
/// overwriting a write that landed after it was read.
const REPLACE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] ~= '0' then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[2])
end
return 1
";

/// Bumps the epoch marker to more than both its stored value and `ARGV[1]`
/// (our current epoch): a Redis that restarted empty has lost the marker,
/// one restored from a snapshot holds an older one.
const EPOCH_SCRIPT: &str = r"
local v = redis.call('INCR', KEYS[1])
local floor = tonumber(ARGV[1])
if v <= floor then
  v = floor + 1
  redis.call('SET', KEYS[1], v)
end
return v
";

/// Where the cache's Redis is, parsed once at start-up.
pub enum Target {
    Single(Client),
    Cluster(Vec<String>),
}

impl Target {
    /// Opens a fresh connection. Every resynchronisation uses fresh ones, so
    /// a connection that failed is never quietly reused against a Redis that
    /// came back in another state.
    pub async fn connect(&self, response_timeout: Duration) -> RedisResult<Conn> {
        let attempt = async {
            match self {
                Target::Single(client) => {
                    let config = AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(CONNECT_TIMEOUT))
                        .set_response_timeout(Some(response_timeout));
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await
                        .map(Conn::Single)
                }
                Target::Cluster(nodes) => ClusterClientBuilder::new(nodes.clone())
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(response_timeout)
                    .overall_response_timeout(Some(response_timeout * 2))
                    .retries(2)
                    .min_retry_wait(10)
                    .max_retry_wait(100)
                    .build()?
                    .get_async_connection()
                    .await
                    .map(Conn::Cluster),
            }
        };
        // The handshake of a paused Redis can outlast the TCP connect.
        tokio::time::timeout(CONNECT_TIMEOUT * 4, attempt)
            .await
            .unwrap_or_else(|_| Err(timeout_error()))
    }

    /// A plain socket for gate reads (see `resp`), when this is one Redis
    /// over plain TCP; `None` otherwise.
    pub async fn raw_read_conn(&self, timeout: Duration) -> RedisResult<Option<RawConn>> {
        match self {
            Target::Single(client) => {
                Ok(RawConn::open(client.get_connection_info(), timeout).await?)
            }
            Target::Cluster(_) => Ok(None),
        }
    }
}

/// One entry to write: the digest, the value bytes, `PX` (0: no expiry).
pub struct Entry {
    pub digest: Digest,
    pub value: Vec<u8>,
    pub px: u64,
}

/// A multiplexed connection to one Redis or to a cluster; clones share it.
#[derive(Clone)]
pub enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Conn {
    async fn query<T: redis::FromRedisValue>(&mut self, cmd: &Cmd) -> RedisResult<T> {
        match self {
            Conn::Single(c) => cmd.query_async(c).await,
            Conn::Cluster(c) => cmd.query_async(c).await,
        }
    }

    /// `GET key`.
    pub async fn get(&mut self, key: &Key) -> RedisResult<Option<Vec<u8>>> {
        self.query(redis::cmd("GET").arg(&key[..])).await
    }

    /// `MGET keys…`: what each key holds, in the keys' order (one Redis;
    /// on a cluster the keys must share a slot).
    pub async fn mget<'a>(
        &mut self,
        keys: impl ExactSizeIterator<Item = &'a Key>,
    ) -> RedisResult<Vec<Option<Vec<u8>>>> {
        let asked = keys.len();
        let mut cmd = redis::cmd("MGET");
        for key in keys {
            cmd.arg(&key[..]);
        }
        let found: Vec<Option<Vec<u8>>> = self.query(&cmd).await?;
        if found.len() != asked {
            return Err(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "MGET answered a different number of values than keys asked",
            )));
        }
        Ok(found)
    }

    /// Writes statuses through. On one Redis: `MSET`s and `SET … PX`s in one
    /// pipeline, unconditionally (see the module docs for why that is safe;
    /// the caller must send in computation order on a fenced connection). On
    /// a cluster: one versioned script call per hash slot (a script's keys
    /// must share a slot), many in flight.
    pub async fn write_through(&mut self, entries: &[Entry]) -> RedisResult<()> {
        match self {
            Conn::Single(c) => {
                let mut pipe = redis::pipe();
                let (plain, expiring): (Vec<&Entry>, Vec<&Entry>) =
                    entries.iter().partition(|e| e.px == 0);
                for group in plain.chunks(KEYS_PER_CALL) {
                    let mut mset = redis::cmd("MSET");
                    for e in group {
                        mset.arg(&key_of(&e.digest)[..]).arg(&e.value[..]);
                    }
                    pipe.add_command(mset).ignore();
                }
                for e in expiring {
                    pipe.cmd("SET")
                        .arg(&key_of(&e.digest)[..])
                        .arg(&e.value[..])
                        .arg("PX")
                        .arg(e.px)
                        .ignore();
                }
                pipe.exec_async(c).await
            }
            Conn::Cluster(c) => {
                let mut by_slot: FxHashMap<Slot, Vec<&Entry>> = FxHashMap::default();
                for e in entries {
                    by_slot
                        .entry(Slot::for_key(key_of(&e.digest)))
                        .or_default()
                        .push(e);
                }
                // Built up front: an iterator borrowing the groups, held
                // across the awaits below, would make this future not `Send`.
                let calls: Vec<Cmd> = by_slot
                    .values()
                    .flat_map(|group| group.chunks(KEYS_PER_CALL))
                    .map(|group| write_call(group.iter().copied()))
                    .collect();
                drop(by_slot);
                let mut calls = calls.into_iter();
                let mut in_flight = FuturesUnordered::new();
                loop {
                    while in_flight.len() < CLUSTER_CALLS_IN_FLIGHT {
                        let Some(cmd) = calls.next() else {
                            break;
                        };
                        let mut conn = c.clone();
                        in_flight.push(async move { cmd.query_async::<i64>(&mut conn).await });
                    }
                    match in_flight.next().await {
                        None => return Ok(()),
                        Some(result) => {
                            result?;
                        }
                    }
                }
            }
        }
    }

    /// Writes one status back after a miss, with the versioned script: it
    /// lands only if it is newer than what Redis holds.
    pub async fn write_back(&mut self, entry: &Entry) -> RedisResult<()> {
        self.query::<i64>(&write_call(std::iter::once(entry)))
            .await
            .map(drop)
    }

    /// Writes one status over the value `old`, only if the key still holds
    /// exactly that (a forged value, whose version cannot be trusted).
    pub async fn replace(&mut self, entry: &Entry, old: &[u8]) -> RedisResult<()> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(REPLACE_SCRIPT)
            .arg(1)
            .arg(&key_of(&entry.digest)[..])
            .arg(old)
            .arg(&entry.value[..])
            .arg(entry.px);
        self.query::<i64>(&cmd).await.map(drop)
    }

    /// This connection's `CLIENT ID` (one Redis only).
    pub async fn client_id(&mut self) -> RedisResult<u64> {
        self.query(redis::cmd("CLIENT").arg("ID")).await
    }

    /// Closes the given client connections of the same Redis instance. Once
    /// this returns, no command they sent can still be executed: Redis runs
    /// a client's buffered commands as it reads them, and discards the rest
    /// with the connection.
    pub async fn kill_clients(&mut self, ids: &[u64]) -> RedisResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            // The filter form answers with a count (0 if already gone).
            pipe.cmd("CLIENT").arg("KILL").arg("ID").arg(*id).ignore();
        }
        match self {
            Conn::Single(c) => pipe.exec_async(c).await,
            Conn::Cluster(_) => Ok(()),
        }
    }

    /// The `run_id`s of every primary, sorted and joined: they change when
    /// any Redis restarts (or a replica takes over), which may have lost or
    /// rolled back writes.
    pub async fn run_ids(&mut self) -> RedisResult<String> {
        let info: Value = self.query(redis::cmd("INFO").arg("server")).await?;
        let mut ids = Vec::new();
        collect_run_ids(&info, &mut ids);
        if ids.is_empty() {
            return Err(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "INFO server holds no run_id",
            )));
        }
        ids.sort();
        Ok(ids.join(","))
    }

    /// The epoch marker, if present.
    pub async fn epoch_marker(&mut self) -> RedisResult<Option<u64>> {
        self.query(redis::cmd("GET").arg(EPOCH_KEY)).await
    }

    /// Starts a new epoch above both the marker and `current`; returns it.
    pub async fn bump_epoch(&mut self, current: u64) -> RedisResult<u64> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(EPOCH_SCRIPT).arg(1).arg(EPOCH_KEY).arg(current);
        self.query(&cmd).await
    }
}

/// One call of the write script over `entries` (all in one slot on a cluster).
fn write_call<'a>(entries: impl Iterator<Item = &'a Entry> + Clone) -> Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(WRITE_SCRIPT).arg(entries.clone().count());
    for e in entries.clone() {
        cmd.arg(&key_of(&e.digest)[..]);
    }
    for e in entries {
        cmd.arg(&e.value[..]).arg(e.px);
    }
    cmd
}

fn collect_run_ids(v: &Value, out: &mut Vec<String>) {
    let text = match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) | Value::VerbatimString { text: s, .. } => s.clone(),
        Value::Array(items) | Value::Set(items) => {
            for i in items {
                collect_run_ids(i, out);
            }
            return;
        }
        Value::Map(pairs) => {
            for (_, i) in pairs {
                collect_run_ids(i, out);
            }
            return;
        }
        _ => return,
    };
    out.extend(run_ids_in(&text).map(str::to_owned));
}

/// The `run_id`s an `INFO server` text names (one per node it covers).
pub fn run_ids_in(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .filter_map(|l| l.strip_prefix("run_id:"))
        .map(str::trim)
}

fn timeout_error() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "connecting to Redis timed out",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_found_in_single_and_cluster_replies() {
        let single =
            Value::BulkString(b"# Server\r\nredis_version:7.0.15\r\nrun_id:abc\r\n".to_vec());
        let mut ids = Vec::new();
        collect_run_ids(&single, &mut ids);
        assert_eq!(ids, ["abc"]);
        let cluster = Value::Map(vec![
            (
                Value::SimpleString("n1".into()),
                Value::BulkString(b"run_id:b\r\n".to_vec()),
            ),
            (
                Value::SimpleString("n2".into()),
                Value::VerbatimString {
                    format: redis::VerbatimFormat::Text,
                    text: "x:1\nrun_id:a\n".into(),
                },
            ),
        ]);
        let mut ids = Vec::new();
        collect_run_ids(&cluster, &mut ids);
        ids.sort();
        assert_eq!(ids, ["a", "b"]);
    }

    #[test]
    fn one_script_call_carries_keys_then_value_and_expiry_pairs() {
        let entries = [
            Entry {
                digest: [1; 16],
                value: b"v1".to_vec(),
                px: 0,
            },
            Entry {
                digest: [2; 16],
                value: b"v2".to_vec(),
                px: 500,
            },
        ];
        let cmd = write_call(entries.iter());
        let args: Vec<Vec<u8>> = cmd
            .args_iter()
            .map(|a| match a {
                redis::Arg::Simple(b) => b.to_vec(),
                _ => Vec::new(),
            })
            .collect();
        assert_eq!(args[0], b"EVAL");
        assert_eq!(args[2], b"2");
        assert_eq!(args[3], key_of(&[1; 16]).to_vec());
        assert_eq!(args[4], key_of(&[2; 16]).to_vec());
        assert_eq!(
            &args[5..],
            [
                b"v1".to_vec(),
                b"0".to_vec(),
                b"v2".to_vec(),
                b"500".to_vec()
            ]
        );
    }
}
