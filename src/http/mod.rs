//! The HTTP API of `docs/api.md`, on actix-web: thin handlers over the engine
//! (reads, on the engine's rayon pool), the store (writes, through its
//! single writer) and the status cache (gate lookups).
//!
//! Depends on `engine`, `store`, `status_cache`, `settings`; nothing depends on it but `cli`.

pub mod auth;
pub mod body;
mod bootstrap;
pub mod dashboard;
pub mod error;
pub mod openapi;
pub mod routes;
mod scheduler;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use actix_web::dev::ServiceResponse;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::DefaultHeaders;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::domain::Timestamp;
use crate::engine::clock::Clock;
use crate::engine::{Engine, SharedEngine, Status};
use crate::settings::{CacheTarget, Settings};
use crate::status_cache::{CacheBackend, CacheConfig, StatusCache, StatusSource};
use crate::store::Store;
use auth::{Principal, Tokens};
use error::{ApiError, Code};

/// Shared by every handler.
pub struct AppState {
    pub engine: SharedEngine,
    pub pool: Arc<rayon::ThreadPool>,
    pub store: Store,
    pub cache: StatusCache,
    pub clock: Arc<dyn Clock>,
    pub tokens: Arc<Tokens>,
    pub metrics: PrometheusHandle,
    /// Set once replay has finished (`/readyz`).
    pub ready: AtomicBool,
    /// Write requests in flight; past `MAX_INFLIGHT_WRITES` new ones are shed
    /// with `503 overloaded` (a counter, not a queue: shedding must be instant).
    pub inflight_writes: AtomicUsize,
    /// Heavy reads (missing lists, coverage trees, exports) in flight: a
    /// budget of their own, apart from writes; past [`MAX_HEAVY_READS`] they
    /// are shed with `503 overloaded`.
    pub heavy_reads: Arc<AtomicUsize>,
    /// Where files are built (workbooks) and uploads parsed: a few threads,
    /// at most half the cores, so exports can never take the CPU that record
    /// uploads and gate lookups need; never under the engine's lock.
    pub build_pool: Arc<rayon::ThreadPool>,
}

/// Write requests allowed in flight before shedding.
pub const MAX_INFLIGHT_WRITES: usize = 512;

/// Heavy reads allowed in flight before shedding. Each holds its copy of a
/// list (about 70 bytes a person) and one chunk or one workbook, so this
/// bounds what a crowd of exports can take.
pub const MAX_HEAVY_READS: usize = 8;

/// The build pool: half the cores, at least one thread.
fn build_pool(cores: usize) -> Arc<rayon::ThreadPool> {
    Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads((cores / 2).max(1))
            .thread_name(|i| format!("rollcall-build-{i}"))
            .build()
            .expect("the build pool starts"),
    )
}

impl AppState {
    /// Runs a read of the engine on its rayon pool (never on an actix worker)
    /// and brings the answer back through a oneshot channel.
    pub async fn read<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> T + Send + 'static,
    {
        let engine = self.engine.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.pool.spawn(move || {
            let e = engine.read();
            let _ = tx.send(f(&e));
        });
        rx.await
            .map_err(|_| ApiError::internal(&"an engine read was dropped"))
    }

    /// Runs `f` on the build pool, holding no lock, and brings its answer back.
    pub async fn build<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.build_pool.spawn(move || {
            let _ = tx.send(f());
        });
        rx.await
            .map_err(|_| ApiError::internal(&"a build was dropped"))
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Admits one heavy read (a missing list, a coverage tree, an export),
    /// or sheds it at once with `503 overloaded` and `Retry-After`. The
    /// admission is held until the answer is sent (move it into the body).
    pub fn admit_heavy_read(&self) -> Result<HeavyRead, ApiError> {
        let n = self.heavy_reads.fetch_add(1, Ordering::AcqRel);
        if n >= MAX_HEAVY_READS {
            self.heavy_reads.fetch_sub(1, Ordering::AcqRel);
            metrics::counter!("rollcall_read_shed_total").increment(1);
            return Err(ApiError::new(
                Code::Overloaded,
                "too many exports and large reads in flight; retry shortly",
            ));
        }
        Ok(HeavyRead(self.heavy_reads.clone()))
    }

    /// Admits one write request, or sheds it.
    pub fn admit_write(&self) -> Result<WriteGuard<'_>, ApiError> {
        // A standby refuses at once, before reading the body: its answer
        // does not depend on what was sent.
        if !self.store.is_leader() {
            return Err(crate::store::StoreError::NotLeader(
                self.store.cluster().and_then(|c| c.leader()),
            )
            .into());
        }
        let n = self.inflight_writes.fetch_add(1, Ordering::AcqRel);
        if n >= MAX_INFLIGHT_WRITES {
            self.inflight_writes.fetch_sub(1, Ordering::AcqRel);
            metrics::counter!("rollcall_shed_total").increment(1);
            return Err(ApiError::new(
                Code::Overloaded,
                "too many writes in flight; retry shortly",
            ));
        }
        Ok(WriteGuard(self))
    }
}

/// Releases an admitted write on drop.
pub struct WriteGuard<'a>(&'a AppState);

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        self.0.inflight_writes.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Releases an admitted heavy read on drop; owns its counter, so it can go
/// with a streamed body.
#[derive(Debug)]
pub struct HeavyRead(Arc<AtomicUsize>);

impl Drop for HeavyRead {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The engine as the status cache's source of statuses.
struct EngineSource {
    engine: SharedEngine,
}

impl StatusSource for EngineSource {
    fn statuses(&self, people: &[crate::domain::PersonId], now: Timestamp) -> Vec<Status> {
        self.engine.read().statuses(people, now)
    }

    fn everyone(&self) -> Vec<crate::domain::PersonId> {
        self.engine.read().everyone()
    }
}

/// The headers every answer carries (HTML pages add their own
/// `Content-Security-Policy`). Built and checked at compile time, so the gate
/// lookups' fast path clones them (static bytes, no copy) instead of
/// validating every name and value on every answer.
static DEFAULT_HEADERS: [(HeaderName, HeaderValue); 4] = [
    (
        HeaderName::from_static("cache-control"),
        HeaderValue::from_static("no-store"),
    ),
    (
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    ),
    (
        HeaderName::from_static("referrer-policy"),
        HeaderValue::from_static("no-referrer"),
    ),
    (
        HeaderName::from_static("x-frame-options"),
        HeaderValue::from_static("DENY"),
    ),
];

/// How often the recorder folds histogram samples into their buckets.
/// Between scrapes of `/metrics` it keeps every sample it is given: ~33 bytes
/// per gate lookup (two histograms), 30 MB for every 10 s of gate load at
/// 93,000/s, without end when nothing scrapes. The exporter's own listener
/// would run this upkeep every 5 s; a recorder built for another server's
/// route has to run it itself.
const METRICS_UPKEEP: std::time::Duration = std::time::Duration::from_secs(5);
const METRICS_UPKEEP_THREAD: &str = "metrics-upkeep";

/// The process-wide Prometheus recorder (a process has one global recorder;
/// tests start several servers in one process and share it), with the
/// thread that keeps its histograms from growing.
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
                    0.1, 0.25, 0.5, 1.0, 2.5,
                ])
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (a test harness);
            // the handle still renders what this one records.
            let _ = metrics::set_global_recorder(recorder);
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name(METRICS_UPKEEP_THREAD.into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(METRICS_UPKEEP);
                        upkeep.run_upkeep();
                    }
                })
                .expect("a thread for the metrics' upkeep");
            handle
        })
        .clone()
}

/// A running server.
pub struct Running {
    pub addr: SocketAddr,
    pub handle: actix_web::dev::ServerHandle,
    pub state: web::Data<AppState>,
    /// The admin token generated at this start, if one was (printed once).
    pub generated_admin_token: Option<String>,
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
    scheduler: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting, finishes in-flight requests, and waits.
    /// Once the last handle on the state is gone the store's writer stops
    /// and the data directory is unlocked.
    pub async fn stop(self) {
        self.handle.stop(true).await;
        let _ = self.server.await;
        self.scheduler.abort();
        let _ = self.scheduler.await;
        // Workers may drop their handles on the store a little later; the
        // directory is released now, for whoever opens it next.
        self.state.store.close().await;
        drop(self.state);
    }
}

/// On a shared PostgreSQL store, tokens the leader creates or revokes reach
/// this server's store as it follows; this keeps the lookup table in step.
fn follow_tokens(state: Arc<AppState>) {
    let weak = Arc::downgrade(&state);
    drop(state);
    tokio::spawn(async move {
        let mut seen = u64::MAX;
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let Some(state) = weak.upgrade() else { return };
            let generation = state.store.cluster().map_or(0, |c| c.tokens_generation());
            if generation == seen {
                continue;
            }
            seen = generation;
            for t in state.store.tokens() {
                if t.revoked() {
                    state.tokens.remove_id(&t.id);
                } else {
                    state.tokens.insert(
                        t.hash,
                        Principal {
                            token_id: t.id.clone(),
                            name: t.name.clone(),
                            role: t.role,
                            site: t.site.as_deref().map(Arc::from),
                            area: t.area.clone(),
                        },
                    );
                }
            }
        }
    });
}

async fn cache_key(settings: &Settings, store: &Store) -> anyhow::Result<[u8; 32]> {
    use sha2::Digest;
    if let Some(k) = &settings.cache_key {
        return Ok(sha2::Sha256::digest(k.as_bytes()).into());
    }
    secret(store, "cache_key").await
}

/// A 32-byte secret kept in the store's meta table, generated once.
async fn secret(store: &Store, name: &str) -> anyhow::Result<[u8; 32]> {
    use rand::RngCore;
    // A standby waits for the leader to have written it (a first start of
    // several servers together).
    let waited = std::time::Instant::now();
    while store.meta_get(name).is_none()
        && !store.is_leader()
        && waited.elapsed() < std::time::Duration::from_secs(30)
    {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    if let Some(hexed) = store.meta_get(name) {
        let v = hex::decode(hexed).context("a stored secret is not hex")?;
        return v
            .try_into()
            .map_err(|_| anyhow::anyhow!("the stored {name} has the wrong length"));
    }
    let mut k = [0u8; 32];
    rand::rng().fill_bytes(&mut k);
    store
        .meta_put(name, &hex::encode(k))
        .await
        .with_context(|| format!("storing the {name}"))?;
    Ok(k)
}

/// Opens the store (replaying it), the cache, the tokens, and starts serving.
pub async fn start(settings: &Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Running> {
    let metrics = metrics_handle();
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let pool = Engine::build_pool(cores);
    let engine: SharedEngine = Arc::new(parking_lot::RwLock::new(Engine::new(
        settings.policy,
        pool.clone(),
    )));

    // The cache is opened before the store so the writer can report changes
    // to it; its key lives in the store, so a provisional in-process cache
    // is never needed: the key is read from the store's file first.
    let (store, cache) = {
        let slot: Arc<std::sync::OnceLock<StatusCache>> = Arc::new(std::sync::OnceLock::new());
        let on_changed = {
            let slot = slot.clone();
            Arc::new(move |people: Vec<crate::domain::PersonId>| -> u64 {
                slot.get().map_or(0, |c| c.changed(people))
            })
        };
        let options = crate::store::StoreOptions {
            audit_retention_days: settings.audit_retention_days,
            ..crate::store::StoreOptions::default()
        };
        let store = match &settings.postgres {
            Some(url) => Store::open_postgres(
                url,
                &settings.data,
                settings.advertise.clone(),
                engine.clone(),
                clock.clone(),
                on_changed,
                options,
            )
            .context("opening the PostgreSQL store")?,
            None => Store::open_with(
                &settings.data,
                engine.clone(),
                clock.clone(),
                on_changed,
                options,
            )
            .with_context(|| format!("opening the store in {}", settings.data.display()))?,
        };
        let key = cache_key(settings, &store).await?;
        let backend = match &settings.cache {
            CacheTarget::InProcess => CacheBackend::InProcess,
            CacheTarget::Redis(u) => CacheBackend::Redis(u.clone()),
            CacheTarget::Cluster(n) => CacheBackend::Cluster(n.clone()),
        };
        // Several servers on one Redis: only the leader writes it.
        let gate = store.cluster().map(|c| {
            let c = c.clone();
            let gate: crate::status_cache::WritesGate =
                Arc::new(move || c.role() == crate::store::ClusterRole::Leader);
            gate
        });
        let cache = StatusCache::open_gated(
            CacheConfig { backend, key },
            Arc::new(EngineSource {
                engine: engine.clone(),
            }),
            clock.clone(),
            gate,
        )
        .await
        .context("opening the status cache")?;
        let _ = slot.set(cache.clone());
        (store, cache)
    };

    let token_key = secret(&store, "token_key").await?;
    let tokens = Arc::new(Tokens::new(token_key));
    // A standby leaves the bootstrap admin to the leader (it cannot write);
    // the tokens the leader keeps reach it through the store.
    let generated_admin_token = if store.is_leader() {
        bootstrap::admin_token(
            &store,
            &tokens,
            settings.admin_token.as_deref(),
            clock.now(),
        )
        .await?
    } else {
        None
    };
    for t in store.tokens() {
        if !t.revoked() {
            tokens.insert(
                t.hash,
                Principal {
                    token_id: t.id.clone(),
                    name: t.name.clone(),
                    role: t.role,
                    site: t.site.as_deref().map(Arc::from),
                    area: t.area.clone(),
                },
            );
        }
    }

    let state = web::Data::new(AppState {
        engine,
        pool,
        store,
        cache,
        clock,
        tokens,
        metrics,
        ready: AtomicBool::new(true),
        inflight_writes: AtomicUsize::new(0),
        heavy_reads: Arc::new(AtomicUsize::new(0)),
        build_pool: build_pool(cores),
    });
    let scheduler = scheduler::spawn(state.clone().into_inner());
    if state.store.cluster().is_some() {
        follow_tokens(state.clone().into_inner());
    }

    let app_state = state.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(app_state.clone())
            .app_data(web::PayloadConfig::new(body::MAX_BODY * 32))
            // On every response, errors and unknown paths included; HTML
            // pages add their own `Content-Security-Policy`.
            .wrap(
                DEFAULT_HEADERS
                    .iter()
                    .fold(DefaultHeaders::new(), |d, h| d.add(h.clone())),
            )
            .wrap_fn(|mut req, srv| {
                use actix_web::dev::Service;
                let started = std::time::Instant::now();
                // HEAD is answered as GET wherever GET is served; the
                // connection (which saw HEAD) leaves the body out.
                if routes::head_is_get(req.method(), req.path()) {
                    req.head_mut().method = actix_web::http::Method::GET;
                }
                let fut = srv.call(req);
                async move {
                    let res = fut.await?;
                    let route = res
                        .request()
                        .match_pattern()
                        .unwrap_or_else(|| "unmatched".to_owned());
                    let status = res.status().as_u16().to_string();
                    metrics::counter!("rollcall_http_requests_total", "route" => route.clone(), "status" => status)
                        .increment(1);
                    metrics::histogram!("rollcall_http_request_seconds", "route" => route)
                        .record(started.elapsed().as_secs_f64());
                    Ok(res)
                }
            })
            .wrap(actix_web::middleware::from_fn(routes::audit::audit_denials))
            // Outermost: a gate lookup that needs no routing is answered
            // before any of the above (see `routes::status::fast`).
            .wrap_fn(|req, srv| {
                use actix_web::dev::Service;
                use futures_util::future::{Either, FutureExt};
                match routes::status::fast(req, &DEFAULT_HEADERS) {
                    Ok(fast) => Either::Left(fast.map(|r| r.map(ServiceResponse::map_into_right_body))),
                    Err(req) => Either::Right(
                        srv.call(req).map(|r| r.map(ServiceResponse::map_into_left_body)),
                    ),
                }
            })
            .configure(routes::configure)
    })
    .workers(settings.workers)
    .backlog(4096)
    .bind(&settings.listen)
    .with_context(|| format!("binding {}", settings.listen))?;
    let addr = *server.addrs().first().context("bound to no address")?;
    let server = server.run();
    let handle = server.handle();
    let server = tokio::spawn(server);
    Ok(Running {
        addr,
        handle,
        state,
        generated_admin_token,
        server,
        scheduler,
    })
}

#[cfg(test)]
mod tests {
    use super::{METRICS_UPKEEP_THREAD, metrics_handle};

    /// The names of this process's threads (Linux).
    fn thread_names() -> Vec<String> {
        std::fs::read_dir("/proc/self/task")
            .expect("/proc/self/task")
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .map(|n| n.trim_end().to_owned())
            .collect()
    }

    #[test]
    fn the_recorder_runs_its_upkeep_on_one_thread_however_often_it_is_asked_for() {
        let _ = metrics_handle();
        let _ = metrics_handle();
        let upkeep = || {
            thread_names()
                .iter()
                .filter(|n| *n == METRICS_UPKEEP_THREAD)
                .count()
        };
        // A new thread carries its parent's name until it has started and
        // named itself.
        let waited = std::time::Instant::now();
        while upkeep() == 0 && waited.elapsed() < std::time::Duration::from_secs(10) {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(upkeep(), 1, "threads: {:?}", thread_names());
    }
}
