//! `spawn_app()`: the real server on port 0 with its own temporary data
//! directory and (optionally) its own real `redis-server` on a free port, and
//! a `TestApp` with one method per endpoint.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rollcall::domain::Timestamp;
use rollcall::domain::person_id::compute_check_char;
use rollcall::engine::clock::{Clock, ManualClock, SystemClock};
use rollcall::settings::{CacheTarget, Settings};
use serde_json::{Value, json};

pub const ADMIN: &str = "test-admin-token-0123456789abcdef0123456789";

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real `redis-server` on a free port, killed on drop.
pub struct RedisProc {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl RedisProc {
    pub fn start() -> RedisProc {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                dir.path().to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (.ci/run installs it)");
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        RedisProc {
            port,
            child,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response: status and JSON (or raw bytes).
pub struct Resp {
    pub status: u16,
    pub body: Vec<u8>,
    pub headers: reqwest::header::HeaderMap,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The contract's error code, if this is an error.
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub running: Option<rollcall::http::Running>,
    pub data: tempfile::TempDir,
    pub redis: Option<RedisProc>,
    pub clock: Option<Arc<ManualClock>>,
}

pub struct Opts {
    pub redis: bool,
    pub manual_clock: Option<Timestamp>,
    pub policy: rollcall::engine::Policy,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            redis: true,
            manual_clock: None,
            policy: rollcall::engine::Policy::default(),
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_with(Opts::default()).await
}

pub async fn spawn_with(opts: Opts) -> TestApp {
    let data = tempfile::tempdir().unwrap();
    let redis = opts.redis.then(RedisProc::start);
    start_on(
        data,
        redis,
        opts.manual_clock.map(ManualClock::new),
        opts.policy,
    )
    .await
}

pub async fn start_on(
    data: tempfile::TempDir,
    redis: Option<RedisProc>,
    clock: Option<Arc<ManualClock>>,
    policy: rollcall::engine::Policy,
) -> TestApp {
    let mut s = Settings::for_data(data.path());
    s.admin_token = Some(ADMIN.into());
    s.policy = policy;
    start_with(data, redis, clock, s)
        .await
        .map_err(|(_, e)| e)
        .expect("server starts")
}

/// Starts the server on `data` with `admin_token` as `ROLLCALL_ADMIN_TOKEN`
/// (in-process cache, system clock). A refusal to start gives the data
/// directory back with the error.
pub async fn start_with_admin(
    data: tempfile::TempDir,
    admin_token: Option<&str>,
) -> Result<TestApp, (tempfile::TempDir, anyhow::Error)> {
    let mut s = Settings::for_data(data.path());
    s.admin_token = admin_token.map(str::to_owned);
    start_with(data, None, None, s).await
}

async fn start_with(
    data: tempfile::TempDir,
    redis: Option<RedisProc>,
    clock: Option<Arc<ManualClock>>,
    mut s: Settings,
) -> Result<TestApp, (tempfile::TempDir, anyhow::Error)> {
    s.listen = "127.0.0.1:0".into();
    s.workers = 2;
    s.cache = match &redis {
        Some(r) => CacheTarget::Redis(r.url()),
        None => CacheTarget::InProcess,
    };
    let c: Arc<dyn Clock> = match &clock {
        Some(c) => c.clone(),
        None => Arc::new(SystemClock),
    };
    let running = match rollcall::http::start(&s, c).await {
        Ok(r) => r,
        Err(e) => return Err((data, e)),
    };
    Ok(TestApp {
        base: format!("http://{}", running.addr),
        client: reqwest::Client::new(),
        running: Some(running),
        data,
        redis,
        clock,
    })
}

impl TestApp {
    /// Stops the server, keeping its data directory and Redis.
    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }

    /// Stops and starts again on the same data (a restart).
    pub async fn restart(mut self) -> TestApp {
        self.stop().await;
        let policy = rollcall::engine::Policy::default();
        let TestApp {
            data, redis, clock, ..
        } = self;
        start_on(data, redis, clock, policy).await
    }

    pub fn now(&self) -> Timestamp {
        match &self.clock {
            Some(c) => c.now(),
            None => SystemClock.now(),
        }
    }

    pub async fn req(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> Resp {
        let mut rb = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        if let Some((ct, b)) = body {
            rb = rb.header("Content-Type", ct).body(b);
        }
        let r = rb.send().await.expect("request sent");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.bytes().await.unwrap_or_default().to_vec();
        Resp {
            status,
            body,
            headers,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.req(reqwest::Method::GET, path, Some(token), None)
            .await
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> Resp {
        self.req(
            reqwest::Method::POST,
            path,
            Some(token),
            Some(("application/json", serde_json::to_vec(body).unwrap())),
        )
        .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Resp {
        self.req(reqwest::Method::DELETE, path, Some(token), None)
            .await
    }

    pub async fn post_csv(&self, path: &str, token: &str, csv: &str) -> Resp {
        self.req(
            reqwest::Method::POST,
            path,
            Some(token),
            Some(("text/csv", csv.as_bytes().to_vec())),
        )
        .await
    }

    /// Issues a token; returns (id, token).
    pub async fn token(
        &self,
        role: &str,
        site: Option<&str>,
        area: Option<&str>,
    ) -> (String, String) {
        let mut b = json!({"role": role, "name": format!("test {role}")});
        if let Some(s) = site {
            b["site"] = json!(s);
        }
        if let Some(a) = area {
            b["area"] = json!(a);
        }
        let r = self.post("/v1/tokens", ADMIN, &b).await;
        assert_eq!(r.status, 201, "{}", r.text());
        let j = r.json();
        (
            j["id"].as_str().unwrap().to_owned(),
            j["token"].as_str().unwrap().to_owned(),
        )
    }

    pub async fn register(&self, csv: &str) -> Resp {
        self.post_csv("/v1/register", ADMIN, csv).await
    }

    pub async fn heads(&self, csv: &str) -> Resp {
        self.post_csv("/v1/heads", ADMIN, csv).await
    }

    pub async fn records(&self, token: &str, records: Value) -> Resp {
        self.post("/v1/records", token, &json!({ "records": records }))
            .await
    }

    pub async fn results(&self, token: &str, results: Value) -> Resp {
        self.post("/v1/results", token, &json!({ "results": results }))
            .await
    }

    pub async fn create_round(
        &self,
        token: &str,
        scope: &[&str],
        opens: Timestamp,
        deadline: Timestamp,
    ) -> Resp {
        self.post(
            "/v1/rounds",
            token,
            &json!({"name": "第1轮全员核酸", "scope": scope, "opens_at": opens, "deadline": deadline}),
        )
        .await
    }

    pub async fn close_round(&self, token: &str, id: &str) -> Resp {
        self.post(&format!("/v1/rounds/{id}/close"), token, &json!({}))
            .await
    }

    pub async fn status(&self, token: &str, pid: &str) -> Resp {
        self.get(&format!("/v1/status/{pid}"), token).await
    }
}

/// A valid ID: region 610802, the given birth date (YYYYMMDD) and sequence.
pub fn pid(birth: &str, seq: u32) -> String {
    let first = format!("610802{birth}{seq:03}");
    let arr: [u8; 17] = first.as_bytes().try_into().unwrap();
    format!("{first}{}", compute_check_char(&arr))
}

/// A small city: `n` residents per floor over two communities.
pub fn small_city(per_floor: u32) -> (String, Vec<(String, String)>) {
    let mut csv = String::from("person_id,name,phone,area,household\n");
    let mut people = Vec::new();
    let mut seq = 0;
    for c in ["学院社区", "南苑社区"] {
        for g in ["第01网格", "第02网格"] {
            for floor in ["01层", "02层"] {
                let area = format!("崇文路街道/{c}/{g}/01号楼/{floor}");
                for i in 0..per_floor {
                    seq += 1;
                    let id = pid("19850312", seq);
                    csv.push_str(&format!(
                        "{id},居民{seq:03},139{seq:08},{area},01号楼-{floor}-{i}\n"
                    ));
                    people.push((id, area.clone()));
                }
            }
        }
    }
    (csv, people)
}

pub const HEADS_CSV: &str = "area,title,name,phone\n\
崇文路街道/学院社区,社区书记,李书记,13900000001\n\
崇文路街道/学院社区/第01网格/01号楼/01层,楼层长,王芳,13900000002\n";

/// Audit entries enough to fill a few pages of the audit table.
pub async fn fill_audit(store: &rollcall::store::Store) {
    for i in 0..300 {
        store
            .audit(rollcall::store::AuditEntry {
                at: Timestamp::parse("2022-04-19T12:00:00+08:00").unwrap(),
                token_name: format!("official {i}"),
                role: rollcall::domain::Role::Official,
                action: rollcall::domain::AuditAction::MissingList,
                area: Some("崇文路街道/社区1".into()),
                round_id: Some("1".into()),
                rows: Some(i),
                target: None,
            })
            .await
            .unwrap();
    }
}

/// Writes garbage over the root page of the audit table of the closed store
/// in `dir` and returns the file's new bytes. Nothing reads that table at
/// start-up, so only the integrity check finds the damage.
pub fn damage_audit(dir: &std::path::Path) -> Vec<u8> {
    let file = dir.join(rollcall::store::DB_FILE);
    let (root, page): (usize, usize) = {
        let c = rusqlite::Connection::open(&file).unwrap();
        let root = c
            .query_row(
                "SELECT rootpage FROM sqlite_master WHERE name = 'audit'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let page = c.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
        (root, page)
    };
    let mut bytes = std::fs::read(&file).unwrap();
    let at = (root - 1) * page;
    for (i, b) in bytes[at..at + page].iter_mut().enumerate() {
        *b = (i * 31 + 7) as u8;
    }
    std::fs::write(&file, &bytes).unwrap();
    bytes
}
