//! One `Settings` for `rollcall serve`: flags, `ROLLCALL_*` environment and an
//! optional TOML file (`--config`), with precedence file < environment < flag.
//! Unknown keys in the file are rejected. Nothing else reads the environment;
//! tests build `Settings` directly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use crate::engine::{Policy, RestoreOn};

/// Command-line and environment options of `rollcall serve`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// Data directory (the `SQLite` log, the lock, the cache key).
    #[arg(long, env = "ROLLCALL_DATA")]
    pub data: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "ROLLCALL_LISTEN")]
    pub listen: Option<String>,
    /// Redis URL for the gate status cache (`redis://host:port`); without it an
    /// in-process cache stands in.
    #[arg(long, env = "ROLLCALL_REDIS")]
    pub redis: Option<String>,
    /// Redis Cluster seed nodes, comma-separated (`redis://a:7000,redis://b:7001`).
    #[arg(long, env = "ROLLCALL_REDIS_CLUSTER", value_delimiter = ',')]
    pub redis_cluster: Option<Vec<String>>,
    /// TOML configuration file (sections `[server]` and `[policy]`).
    #[arg(long, env = "ROLLCALL_CONFIG")]
    pub config: Option<PathBuf>,
    /// When a missed-round flag clears: `sample` or `negative_result`.
    #[arg(long, env = "ROLLCALL_RESTORE_ON")]
    pub restore_on: Option<RestoreOn>,
    /// Yellow `no_recent_sample` after this many hours without a sample.
    #[arg(long, env = "ROLLCALL_MAX_SAMPLE_AGE_HOURS")]
    pub max_sample_age_hours: Option<u32>,
    /// Red `repeated_misses` when flagged in each of the last N closed rounds.
    #[arg(long, env = "ROLLCALL_RED_AFTER_CONSECUTIVE_MISSES")]
    pub red_after_consecutive_misses: Option<u32>,
    /// The most people one tube may hold.
    #[arg(long, env = "ROLLCALL_POOL_MAX")]
    pub pool_max: Option<u32>,
    /// Days after its close a round is archived (0: at the close).
    #[arg(long, env = "ROLLCALL_RETENTION_DAYS")]
    pub retention_days: Option<u32>,
    /// Days an audit entry is kept.
    #[arg(long, env = "ROLLCALL_AUDIT_RETENTION_DAYS")]
    pub audit_retention_days: Option<u32>,
    /// HTTP worker threads (default: the number of cores).
    #[arg(long, env = "ROLLCALL_WORKERS")]
    pub workers: Option<usize>,
    /// Where the log lives: `sqlite:DIR` (the same as `--data DIR`) or
    /// `postgres://USER@HOST/DB`, shared by several servers.
    #[arg(long, env = "ROLLCALL_STORE")]
    pub store: Option<String>,
    /// The URL clients reach this server at (told to the others while it leads).
    #[arg(long, env = "ROLLCALL_ADVERTISE")]
    pub advertise: Option<String>,
}

/// The secrets `serve` takes, only from the environment or a file named in
/// it — never from a flag, which every user of the machine can read in the
/// process list:
///
/// - `ROLLCALL_ADMIN_TOKEN` (or `ROLLCALL_ADMIN_TOKEN_FILE`): the bootstrap
///   admin token, 32+ characters; generated and printed once when unset and
///   the store has no admin.
/// - `ROLLCALL_CACHE_KEY` (or `ROLLCALL_CACHE_KEY_FILE`): the key that hashes
///   IDs in the cache; generated once and kept in the data directory when unset.
///
/// A file's content is taken whole, less trailing line breaks.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    pub admin_token: Option<String>,
    pub cache_key: Option<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |s: &Option<String>| s.as_ref().map(|_| "<set>");
        f.debug_struct("Secrets")
            .field("admin_token", &shown(&self.admin_token))
            .field("cache_key", &shown(&self.cache_key))
            .finish()
    }
}

impl Secrets {
    /// From the process environment.
    pub fn from_env() -> anyhow::Result<Secrets> {
        Secrets::from_lookup(|k| std::env::var(k).ok())
    }

    /// From `var`, a look-up of environment variables. Fails when both a
    /// value and a file are given, or the file cannot be read.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> anyhow::Result<Secrets> {
        let one = |name: &str| -> anyhow::Result<Option<String>> {
            let file_var = format!("{name}_FILE");
            match (var(name), var(&file_var)) {
                (Some(_), Some(_)) => anyhow::bail!("set {name} or {file_var}, not both"),
                (Some(v), None) => Ok(Some(v)),
                (None, Some(path)) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {file_var} ({path})"))?;
                    Ok(Some(text.trim_end_matches(['\n', '\r']).to_owned()))
                }
                (None, None) => Ok(None),
            }
        };
        Ok(Secrets {
            admin_token: one("ROLLCALL_ADMIN_TOKEN")?,
            cache_key: one("ROLLCALL_CACHE_KEY")?,
        })
    }
}

/// Where gate statuses are cached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheTarget {
    InProcess,
    Redis(String),
    Cluster(Vec<String>),
}

/// Everything `serve` needs, resolved.
#[derive(Clone, Debug)]
pub struct Settings {
    pub data: PathBuf,
    pub listen: String,
    pub cache: CacheTarget,
    pub policy: Policy,
    /// Days an audit entry is kept (Retention).
    pub audit_retention_days: u32,
    pub admin_token: Option<String>,
    pub cache_key: Option<String>,
    pub workers: usize,
    /// `Some(URL)`: the log is in PostgreSQL, shared by several servers
    /// (`data` is then this server's scratch directory, where a leader
    /// writes its snapshots before storing them in PostgreSQL).
    pub postgres: Option<String>,
    /// This server's URL for clients (`--advertise`).
    pub advertise: Option<String>,
}

impl Settings {
    /// Defaults for a data directory: embedded everything, policy defaults.
    pub fn for_data(data: &Path) -> Settings {
        Settings {
            data: data.to_owned(),
            listen: "127.0.0.1:8080".into(),
            cache: CacheTarget::InProcess,
            policy: Policy::default(),
            audit_retention_days: 365,
            admin_token: None,
            cache_key: None,
            workers: std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
            postgres: None,
            advertise: None,
        }
    }

    /// Resolves flags and environment over the optional file over defaults,
    /// with the secrets from the environment.
    pub fn resolve(args: &ServeArgs) -> anyhow::Result<Settings> {
        Settings::resolve_with(args, Secrets::from_env()?)
    }

    /// [`Settings::resolve`] with the secrets given.
    pub fn resolve_with(args: &ServeArgs, secrets: Secrets) -> anyhow::Result<Settings> {
        let file = match &args.config {
            Some(p) => FileConfig::load(p)?,
            None => FileConfig::default(),
        };
        let server = file.server.unwrap_or_default();
        let policy_file = file.policy.unwrap_or_default();
        let (store_dir, postgres) = match args.store.as_deref() {
            None => (None, None),
            Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
                (None, Some(u.to_owned()))
            }
            Some(u) => match u.strip_prefix("sqlite:") {
                Some(dir) if !dir.is_empty() => (Some(PathBuf::from(dir)), None),
                _ => anyhow::bail!("--store {u} is neither sqlite:DIR nor postgres://USER@HOST/DB"),
            },
        };
        let data = store_dir
            .or_else(|| args.data.clone())
            .or(server.data)
            .unwrap_or_else(|| PathBuf::from("./rollcall-data"));
        let mut s = Settings::for_data(&data);
        s.postgres = postgres;
        s.advertise.clone_from(&args.advertise);
        if let Some(l) = args.listen.clone().or(server.listen) {
            s.listen = l;
        }
        s.listen
            .parse::<SocketAddr>()
            .or_else(|_| {
                std::net::ToSocketAddrs::to_socket_addrs(&s.listen)
                    .map_err(anyhow::Error::from)
                    .and_then(|mut a| a.next().context("no address"))
            })
            .with_context(|| format!("--listen {} is not an address to listen on", s.listen))?;
        let cluster = args.redis_cluster.clone().or(server.redis_cluster);
        let redis = args.redis.clone().or(server.redis);
        s.cache = match (redis, cluster) {
            (_, Some(nodes)) if !nodes.is_empty() => CacheTarget::Cluster(nodes),
            (Some(url), _) => CacheTarget::Redis(url),
            _ => CacheTarget::InProcess,
        };
        let d = Policy::default();
        s.policy = Policy {
            restore_on: args
                .restore_on
                .or(policy_file.restore_on)
                .unwrap_or(d.restore_on),
            max_sample_age_hours: args
                .max_sample_age_hours
                .or(policy_file.max_sample_age_hours),
            red_after_consecutive_misses: args
                .red_after_consecutive_misses
                .or(policy_file.red_after_consecutive_misses),
            pool_max: args.pool_max.or(policy_file.pool_max).unwrap_or(d.pool_max),
            retention_days: args
                .retention_days
                .or(policy_file.retention_days)
                .unwrap_or(d.retention_days),
        };
        if let Some(days) = args
            .audit_retention_days
            .or(policy_file.audit_retention_days)
        {
            s.audit_retention_days = days;
        }
        anyhow::ensure!(s.policy.pool_max >= 1, "pool_max must be at least 1");
        anyhow::ensure!(
            s.policy.max_sample_age_hours != Some(0),
            "max_sample_age_hours must be at least 1"
        );
        anyhow::ensure!(
            s.policy.red_after_consecutive_misses != Some(0),
            "red_after_consecutive_misses must be at least 1"
        );
        s.admin_token = secrets.admin_token;
        if let Some(t) = &s.admin_token {
            anyhow::ensure!(
                t.chars().count() >= 32,
                "ROLLCALL_ADMIN_TOKEN must be at least 32 characters"
            );
        }
        s.cache_key = secrets.cache_key;
        if let Some(w) = args.workers.or(server.workers) {
            anyhow::ensure!(w >= 1, "workers must be at least 1");
            s.workers = w;
        }
        Ok(s)
    }
}

/// The TOML file. Every section and key is optional; unknown ones are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    server: Option<ServerSection>,
    policy: Option<PolicySection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerSection {
    data: Option<PathBuf>,
    listen: Option<String>,
    redis: Option<String>,
    redis_cluster: Option<Vec<String>>,
    workers: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicySection {
    restore_on: Option<RestoreOn>,
    max_sample_age_hours: Option<u32>,
    red_after_consecutive_misses: Option<u32>,
    pool_max: Option<u32>,
    retention_days: Option<u32>,
    audit_retention_days: Option<u32>,
}

impl FileConfig {
    fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading configuration file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("in configuration file {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let f = write(
            "[policy]\npool_max = 10\nrestore_on = \"negative_result\"\nmax_sample_age_hours = 72\n",
        );
        let args = ServeArgs {
            config: Some(f.path().to_owned()),
            pool_max: Some(5),
            ..ServeArgs::default()
        };
        let s = Settings::resolve(&args).unwrap();
        assert_eq!(s.policy.pool_max, 5);
        assert_eq!(s.policy.restore_on, RestoreOn::NegativeResult);
        assert_eq!(s.policy.max_sample_age_hours, Some(72));
        assert_eq!(s.policy.red_after_consecutive_misses, None);
        assert_eq!(s.cache, CacheTarget::InProcess);
        assert_eq!(s.data, PathBuf::from("./rollcall-data"));
    }

    #[test]
    fn retention_comes_from_the_policy_section_or_the_flags_with_defaults_30_and_365() {
        let s = Settings::resolve(&ServeArgs::default()).unwrap();
        assert_eq!((s.policy.retention_days, s.audit_retention_days), (30, 365));
        let f = write("[policy]\nretention_days = 0\naudit_retention_days = 90\n");
        let args = ServeArgs {
            config: Some(f.path().to_owned()),
            ..ServeArgs::default()
        };
        let s = Settings::resolve(&args).unwrap();
        assert_eq!((s.policy.retention_days, s.audit_retention_days), (0, 90));
        let args = ServeArgs {
            config: Some(f.path().to_owned()),
            retention_days: Some(7),
            audit_retention_days: Some(400),
            ..ServeArgs::default()
        };
        let s = Settings::resolve(&args).unwrap();
        assert_eq!((s.policy.retention_days, s.audit_retention_days), (7, 400));
    }

    #[test]
    fn store_takes_a_sqlite_directory_or_a_postgres_url_and_nothing_else() {
        let args = ServeArgs {
            data: Some("ignored".into()),
            store: Some("sqlite:/tmp/h".into()),
            ..ServeArgs::default()
        };
        let s = Settings::resolve(&args).unwrap();
        assert_eq!((s.data, s.postgres), (PathBuf::from("/tmp/h"), None));
        let url = "postgres://root@127.0.0.1:5432/city";
        let args = ServeArgs {
            store: Some(url.into()),
            advertise: Some("http://10.0.0.2:8080".into()),
            ..ServeArgs::default()
        };
        let s = Settings::resolve(&args).unwrap();
        assert_eq!(s.postgres.as_deref(), Some(url));
        assert_eq!(s.advertise.as_deref(), Some("http://10.0.0.2:8080"));
        for bad in ["mysql://x/y", "sqlite:", "/var/lib/rollcall"] {
            let args = ServeArgs {
                store: Some(bad.into()),
                ..ServeArgs::default()
            };
            let err = format!("{:#}", Settings::resolve(&args).unwrap_err());
            assert!(
                err.contains("neither sqlite:DIR nor postgres://"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn unknown_keys_in_the_file_are_rejected() {
        let f = write("[policy]\npool_maxx = 10\n");
        let args = ServeArgs {
            config: Some(f.path().to_owned()),
            ..ServeArgs::default()
        };
        let err = format!("{:#}", Settings::resolve(&args).unwrap_err());
        assert!(err.contains("pool_maxx"), "{err}");
        let f = write("[polcy]\n");
        let args = ServeArgs {
            config: Some(f.path().to_owned()),
            ..ServeArgs::default()
        };
        assert!(Settings::resolve(&args).is_err());
    }

    #[test]
    fn a_short_admin_token_and_a_zero_pool_are_refused() {
        let short = Secrets {
            admin_token: Some("short".into()),
            ..Secrets::default()
        };
        assert!(Settings::resolve_with(&ServeArgs::default(), short).is_err());
        let args = ServeArgs {
            pool_max: Some(0),
            ..ServeArgs::default()
        };
        assert!(Settings::resolve_with(&args, Secrets::default()).is_err());
    }

    #[test]
    fn secrets_come_from_the_environment_or_a_file_never_both() {
        let f = write("from-a-file-0123456789abcdef0123456789\n");
        let path = f.path().to_str().unwrap().to_owned();
        let env = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            move |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        };
        let s = Secrets::from_lookup(env(&[
            ("ROLLCALL_ADMIN_TOKEN_FILE", &path),
            ("ROLLCALL_CACHE_KEY", "k"),
        ]))
        .unwrap();
        assert_eq!(
            s.admin_token.as_deref(),
            Some("from-a-file-0123456789abcdef0123456789")
        );
        assert_eq!(s.cache_key.as_deref(), Some("k"));
        assert!(
            !format!("{s:?}").contains("from-a-file"),
            "Debug shows no secret"
        );
        let both = Secrets::from_lookup(env(&[
            ("ROLLCALL_ADMIN_TOKEN", "x"),
            ("ROLLCALL_ADMIN_TOKEN_FILE", &path),
        ]));
        assert!(both.is_err());
        let missing = Secrets::from_lookup(env(&[("ROLLCALL_CACHE_KEY_FILE", "/nonexistent/k")]));
        assert!(missing.is_err());
        assert_eq!(Secrets::from_lookup(env(&[])).unwrap(), Secrets::default());
    }

    #[test]
    fn redis_cluster_wins_over_a_single_redis() {
        let args = ServeArgs {
            redis: Some("redis://127.0.0.1:1".into()),
            redis_cluster: Some(vec!["redis://127.0.0.1:2".into()]),
            ..ServeArgs::default()
        };
        assert!(matches!(
            Settings::resolve(&args).unwrap().cache,
            CacheTarget::Cluster(_)
        ));
    }
}
