//! Gate reads over a plain socket: the `MGET`s of one worker's reader,
//! written and parsed here rather than through the `redis` crate.
//!
//! A gate lookup is the most frequent request, and on its path the client
//! crate's general machinery (a channel to its connection task, a
//! combinator parser, a `Value` tree with a `Vec` per value) cost more than
//! the protocol itself. This speaks only what the reads need: the handshake
//! (`AUTH`, `SELECT`), `INFO server` for the `run_id`, and `MGET`, whose
//! values come back as slices of the read buffer, without a copy.
//!
//! Only for one Redis over plain TCP; a cluster, TLS or a Unix socket keep
//! the crate's connection. Whatever this parses is still checked by the
//! lookup (MAC, epoch, expiry), and any error here is the lookup's error: it
//! distrusts Redis and is answered from the engine.

use std::io;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use redis::{ConnectionAddr, ConnectionInfo, ProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::format::Key;
use super::redis_conn::run_ids_in;

/// The largest single value (or `INFO` text) accepted: a status is a few
/// hundred bytes, so anything near this is not one of ours.
const MAX_BULK: usize = 1 << 20;

/// A reply, as far as the reads need one.
#[derive(Debug, PartialEq)]
pub enum Reply {
    /// `+OK` and the like.
    Simple(Bytes),
    /// `$n` (a value), or `None` for `$-1` / RESP3's `_`.
    Bulk(Option<Bytes>),
    Integer(i64),
    Array(Vec<Reply>),
}

/// One plain-TCP connection that gate reads go through.
pub struct RawConn {
    stream: TcpStream,
    buf: BytesMut,
    out: Vec<u8>,
}

impl RawConn {
    /// Connects and authenticates as `info` says, within `timeout`. `None`
    /// when `info` is not one Redis over plain TCP with RESP2 (the caller
    /// then reads through the `redis` crate).
    pub async fn open(info: &ConnectionInfo, timeout: Duration) -> io::Result<Option<RawConn>> {
        let ConnectionAddr::Tcp(host, port) = info.addr() else {
            return Ok(None);
        };
        let settings = info.redis_settings();
        if settings.protocol() != ProtocolVersion::RESP2 {
            return Ok(None);
        }
        let open = async {
            let stream = TcpStream::connect((host.as_str(), *port)).await?;
            stream.set_nodelay(true)?;
            let mut conn = RawConn {
                stream,
                buf: BytesMut::with_capacity(64 * 1024),
                out: Vec::with_capacity(16 * 1024),
            };
            if let Some(password) = settings.password() {
                let reply = match settings.username() {
                    Some(user) => {
                        conn.call(&[b"AUTH", user.as_bytes(), password.as_bytes()])
                            .await?
                    }
                    None => conn.call(&[b"AUTH", password.as_bytes()]).await?,
                };
                expect_ok(reply)?;
            }
            if settings.db() != 0 {
                let db = settings.db().to_string();
                expect_ok(conn.call(&[b"SELECT", db.as_bytes()]).await?)?;
            }
            Ok(conn)
        };
        match tokio::time::timeout(timeout, open).await {
            Ok(opened) => opened.map(Some),
            Err(_) => Err(timed_out()),
        }
    }

    /// The `run_id` of the Redis this connection reaches (`INFO server`).
    pub async fn run_id(&mut self) -> io::Result<String> {
        let Reply::Bulk(Some(info)) = self.call(&[b"INFO", b"server"]).await? else {
            return Err(protocol("INFO server did not answer a text"));
        };
        std::str::from_utf8(&info)
            .ok()
            .and_then(|text| run_ids_in(text).next().map(str::to_owned))
            .ok_or_else(|| protocol("INFO server holds no run_id"))
    }

    /// `MGET keys…`: what each key holds, in the keys' order.
    pub async fn mget<'a>(
        &mut self,
        keys: impl ExactSizeIterator<Item = &'a Key>,
    ) -> io::Result<Vec<Option<Bytes>>> {
        let asked = keys.len();
        self.out.clear();
        encode_header(&mut self.out, asked + 1);
        encode_bulk(&mut self.out, b"MGET");
        for key in keys {
            encode_bulk(&mut self.out, key);
        }
        match self.round_trip().await? {
            Reply::Array(values) if values.len() == asked => values
                .into_iter()
                .map(|v| match v {
                    Reply::Bulk(found) => Ok(found),
                    _ => Err(protocol("MGET answered something other than values")),
                })
                .collect(),
            _ => Err(protocol(
                "MGET answered a different number of values than keys asked",
            )),
        }
    }

    async fn call(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        self.out.clear();
        encode_header(&mut self.out, args.len());
        for a in args {
            encode_bulk(&mut self.out, a);
        }
        self.round_trip().await
    }

    /// Sends `out` and reads one whole reply.
    async fn round_trip(&mut self) -> io::Result<Reply> {
        self.stream.write_all(&self.out).await?;
        loop {
            if let Some(len) = frame_len(&self.buf)? {
                let mut frame = self.buf.split_to(len).freeze();
                return decode(&mut frame);
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(64 * 1024);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "Redis closed the connection",
                ));
            }
        }
    }
}

fn encode_header(out: &mut Vec<u8>, n: usize) {
    out.push(b'*');
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn encode_bulk(out: &mut Vec<u8>, arg: &[u8]) {
    out.push(b'$');
    out.extend_from_slice(itoa::Buffer::new().format(arg.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(arg);
    out.extend_from_slice(b"\r\n");
}

/// The length of the first whole reply in `buf`, `None` while it is still
/// arriving; an error for anything that is not a reply the reads expect
/// (a Redis error reply included).
fn frame_len(buf: &[u8]) -> io::Result<Option<usize>> {
    let mut at = 0;
    // Elements still to read; an array adds its own.
    let mut left: usize = 1;
    while left > 0 {
        let Some(line) = line_at(buf, at) else {
            return Ok(None);
        };
        let header = &buf[at..line];
        let next = line + 2;
        left -= 1;
        match header.first() {
            Some(b'+' | b':' | b'_') => at = next,
            Some(b'-') => {
                return Err(io::Error::other(format!(
                    "Redis answered an error: {}",
                    String::from_utf8_lossy(&header[1..])
                )));
            }
            Some(b'$') => match length(&header[1..])? {
                None => at = next,
                Some(n) => {
                    if n > MAX_BULK {
                        return Err(protocol("a value longer than any status"));
                    }
                    if buf.len() < next + n + 2 {
                        return Ok(None);
                    }
                    if &buf[next + n..next + n + 2] != b"\r\n" {
                        return Err(protocol("a value not ended by CRLF"));
                    }
                    at = next + n + 2;
                }
            },
            Some(b'*') => {
                at = next;
                if let Some(n) = length(&header[1..])? {
                    left = left
                        .checked_add(n)
                        .filter(|&l| l <= MAX_BULK)
                        .ok_or_else(|| protocol("an array longer than any MGET"))?;
                }
            }
            _ => return Err(protocol("an unknown reply type")),
        }
    }
    Ok(Some(at))
}

/// Decodes the one whole reply `frame` holds (checked by [`frame_len`]);
/// values are slices of it.
fn decode(frame: &mut Bytes) -> io::Result<Reply> {
    let line = line_at(frame, 0).ok_or_else(|| protocol("a cut reply"))?;
    let header = frame.split_to(line);
    frame.advance(2);
    Ok(match header[0] {
        b'+' => Reply::Simple(header.slice(1..)),
        b':' => Reply::Integer(
            std::str::from_utf8(&header[1..])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| protocol("a bad integer"))?,
        ),
        b'_' => Reply::Bulk(None),
        b'$' => match length(&header[1..])? {
            None => Reply::Bulk(None),
            Some(n) => {
                let value = frame.split_to(n);
                frame.advance(2);
                Reply::Bulk(Some(value))
            }
        },
        b'*' => match length(&header[1..])? {
            None => Reply::Array(Vec::new()),
            Some(n) => Reply::Array((0..n).map(|_| decode(frame)).collect::<io::Result<_>>()?),
        },
        _ => return Err(protocol("an unknown reply type")),
    })
}

/// Where the line starting at `at` ends (its CR), if its CRLF has arrived.
fn line_at(buf: &[u8], at: usize) -> Option<usize> {
    let rest = buf.get(at..)?;
    let cr = rest.iter().position(|&b| b == b'\r')?;
    (rest.get(cr + 1) == Some(&b'\n')).then_some(at + cr)
}

/// A length field: `-1` (null) is `None`.
fn length(digits: &[u8]) -> io::Result<Option<usize>> {
    if digits == b"-1" {
        return Ok(None);
    }
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(protocol("a bad length"));
    }
    Ok(Some(
        digits.iter().fold(0, |n, d| n * 10 + usize::from(d - b'0')),
    ))
}

fn expect_ok(reply: Reply) -> io::Result<()> {
    match reply {
        Reply::Simple(s) if &s[..] == b"OK" => Ok(()),
        _ => Err(protocol("the handshake was not answered OK")),
    }
}

fn protocol(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("Redis reply: {what}"))
}

pub fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "Redis did not answer in time")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(wire: &[u8]) -> io::Result<Option<Reply>> {
        Ok(match frame_len(wire)? {
            None => None,
            Some(n) => Some(decode(&mut Bytes::copy_from_slice(&wire[..n]))?),
        })
    }

    fn bulk(v: &[u8]) -> Reply {
        Reply::Bulk(Some(Bytes::copy_from_slice(v)))
    }

    #[test]
    fn an_mget_reply_is_read_with_its_nulls() {
        let wire = b"*4\r\n$3\r\nabc\r\n$-1\r\n$0\r\n\r\n_\r\n";
        assert_eq!(
            parse(wire).unwrap(),
            Some(Reply::Array(vec![
                bulk(b"abc"),
                Reply::Bulk(None),
                bulk(b""),
                Reply::Bulk(None)
            ]))
        );
        // A value holding CR LF is read by its length, not its lines.
        assert_eq!(parse(b"$4\r\na\r\nb\r\n").unwrap(), Some(bulk(b"a\r\nb")));
        assert_eq!(
            parse(b"+OK\r\n").unwrap(),
            Some(Reply::Simple(Bytes::from_static(b"OK")))
        );
        assert_eq!(parse(b":42\r\n").unwrap(), Some(Reply::Integer(42)));
    }

    #[test]
    fn a_reply_still_arriving_is_waited_for_at_every_cut() {
        let wire = b"*3\r\n$3\r\nabc\r\n$-1\r\n$5\r\nhello\r\n";
        for cut in 0..wire.len() {
            assert_eq!(frame_len(&wire[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert_eq!(frame_len(wire).unwrap(), Some(wire.len()));
        // What follows a whole reply is not part of it.
        let mut two = wire.to_vec();
        two.extend_from_slice(b"+OK\r\n");
        assert_eq!(frame_len(&two).unwrap(), Some(wire.len()));
    }

    #[test]
    fn what_is_not_a_reply_we_expect_is_an_error() {
        for wire in [
            &b"-ERR wrong number of arguments\r\n"[..],
            b"*1\r\n-WRONGTYPE\r\n",
            b"?x\r\n",
            b"$abc\r\n",
            b"$-2\r\n",
            b"$3\r\nabcd\r\n",
            b"$99999999999\r\n",
            b"*99999999\r\n",
            b"$2000000\r\n",
        ] {
            assert!(
                frame_len(wire).is_err(),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn commands_are_encoded_as_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode_header(&mut out, 2);
        encode_bulk(&mut out, b"GET");
        encode_bulk(&mut out, b"k\r\n");
        assert_eq!(out, b"*2\r\n$3\r\nGET\r\n$3\r\nk\r\n\r\n");
    }

    // ------------------------------------------------ against a real Redis

    use redis::{AsyncCommands, IntoConnectionInfo};
    use redis_test::server::RedisServer;

    fn server() -> (RedisServer, String) {
        let server = RedisServer::new();
        let (host, port) = server.host_and_port().expect("a TCP server");
        let addr = format!("{host}:{port}");
        for _ in 0..200 {
            if std::net::TcpStream::connect(&addr).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        (server, addr)
    }

    fn info(url: &str) -> ConnectionInfo {
        url.into_connection_info().unwrap()
    }

    fn key(s: &str) -> Key {
        let mut k = [b'.'; std::mem::size_of::<Key>()];
        k[..s.len()].copy_from_slice(s.as_bytes());
        k
    }

    const WAIT: Duration = Duration::from_secs(5);

    /// From now on the server at `addr` wants the password `s3cret`.
    async fn require_password(addr: &str) {
        let mut admin = redis::Client::open(format!("redis://{addr}"))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("requirepass")
            .arg("s3cret")
            .query_async(&mut admin)
            .await
            .unwrap();
    }

    /// With a password and a database other than 0, the socket
    /// authenticates, reads that database's values (binary, empty, missing)
    /// in the keys' order, and names the same `run_id` as the crate does.
    #[tokio::test]
    async fn reads_a_password_protected_database_in_the_keys_order() {
        let (_server, addr) = server();
        let url = format!("redis://:s3cret@{addr}/3");
        require_password(&addr).await;
        let mut writer = redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let binary: Vec<u8> = (0..=255).collect();
        let () = writer.set(&key("a")[..], &binary).await.unwrap();
        let () = writer.set(&key("b")[..], b"").await.unwrap();
        let info_text: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut writer)
            .await
            .unwrap();

        let mut raw = RawConn::open(&info(&url), WAIT).await.unwrap().unwrap();
        let keys = [key("b"), key("none"), key("a")];
        let found = raw.mget(keys.iter()).await.unwrap();
        assert_eq!(
            found,
            [Some(Bytes::new()), None, Some(Bytes::from(binary.clone()))]
        );
        // In database 0 the keys are not there.
        let mut db0 = RawConn::open(&info(&format!("redis://:s3cret@{addr}")), WAIT)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(db0.mget(keys.iter()).await.unwrap(), [None, None, None]);
        let run_id = raw.run_id().await.unwrap();
        assert!(
            info_text.contains(&format!("run_id:{run_id}")),
            "{run_id} in {info_text}"
        );
        // A batch as large as a reader sends, twice on one socket.
        let many: Vec<Key> = (0..256).map(|i| key(&format!("k{i}"))).collect();
        for _ in 0..2 {
            let found = raw.mget(many.iter()).await.unwrap();
            assert_eq!(found.len(), 256);
            assert!(found.iter().all(Option::is_none));
        }
    }

    /// A wrong password is an error, not a connection that reads nothing.
    #[tokio::test]
    async fn a_wrong_password_is_refused() {
        let (_server, addr) = server();
        require_password(&addr).await;
        let wrong = RawConn::open(&info(&format!("redis://:nope@{addr}")), WAIT).await;
        assert!(wrong.is_err());
        // Without any password, the read itself is refused.
        let mut none = RawConn::open(&info(&format!("redis://{addr}")), WAIT)
            .await
            .unwrap()
            .unwrap();
        let err = none.mget([key("a")].iter()).await.unwrap_err();
        assert!(err.to_string().contains("NOAUTH"), "{err}");
    }

    /// A Unix socket or RESP3 keeps the crate's connection.
    #[tokio::test]
    async fn other_transports_keep_the_crates_connection() {
        for url in [
            "redis+unix:///tmp/rollcall-none.sock",
            "redis://127.0.0.1:1/?protocol=resp3",
        ] {
            assert!(
                RawConn::open(&info(url), WAIT).await.unwrap().is_none(),
                "{url}"
            );
        }
    }

    /// Nothing listening: an error within the timeout.
    #[tokio::test]
    async fn nothing_listening_is_an_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let r = RawConn::open(&info(&format!("redis://127.0.0.1:{port}")), WAIT).await;
        assert!(r.is_err());
    }
}
