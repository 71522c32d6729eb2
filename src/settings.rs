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
    /// The admin token (32+ characters); generated and printed once when unset.
    #[arg(long, env = "ROLLCALL_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Key for hashing IDs in the cache; generated once and kept in the data directory when unset.
    #[arg(long, env = "ROLLCALL_CACHE_KEY", hide_env_values = true)]
    pub cache_key: Option<String>,
    /// HTTP worker threads (default: the number of cores).
    #[arg(long, env = "ROLLCALL_WORKERS")]
    pub workers: Option<usize>,
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
        }
    }

    /// Resolves flags and environment over the optional file over defaults.
    pub fn resolve(args: &ServeArgs) -> anyhow::Result<Settings> {
        let file = match &args.config {
            Some(p) => FileConfig::load(p)?,
            None => FileConfig::default(),
        };
        let server = file.server.unwrap_or_default();
        let policy_file = file.policy.unwrap_or_default();
        let data = args
            .data
            .clone()
            .or(server.data)
            .unwrap_or_else(|| PathBuf::from("./rollcall-data"));
        let mut s = Settings::for_data(&data);
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
        s.admin_token.clone_from(&args.admin_token);
        if let Some(t) = &s.admin_token {
            anyhow::ensure!(
                t.chars().count() >= 32,
                "ROLLCALL_ADMIN_TOKEN must be at least 32 characters"
            );
        }
        s.cache_key.clone_from(&args.cache_key);
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
        let args = ServeArgs {
            admin_token: Some("short".into()),
            ..ServeArgs::default()
        };
        assert!(Settings::resolve(&args).is_err());
        let args = ServeArgs {
            pool_max: Some(0),
            ..ServeArgs::default()
        };
        assert!(Settings::resolve(&args).is_err());
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
