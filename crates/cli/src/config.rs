//! `berth serve` settings: flags, environment and the TOML file.
//!
//! Precedence: a flag beats its environment variable (clap handles both),
//! which beats the configuration file, which beats the built-in default.
//! Raw values are turned into a validated [`ServeConfig`] before use.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use berth_meta::accounts::Visibility;
use berth_registry::auth::{AuthMode, AuthSettings, RateLimit};
use berth_server::listener::ConnectionLimits;
use serde::Deserialize;

/// Flags of `berth serve`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:5000].
    #[arg(long, env = "BERTH_LISTEN")]
    pub listen: Option<String>,
    /// Directory holding all state (blobs, uploads, metadata) [default: ./berth-data].
    #[arg(long, env = "BERTH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// TOML configuration file.
    #[arg(long, env = "BERTH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log level or tracing filter (error, warn, info, debug, trace) [default: info].
    #[arg(long, env = "BERTH_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "BERTH_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Write the bound address to this file once listening (for scripts and
    /// tests that listen on port 0).
    #[arg(long, env = "BERTH_ADDR_FILE")]
    pub addr_file: Option<PathBuf>,
    /// Authentication: `token` (credentials and permissions enforced) or
    /// `none` (open to everyone; local development only) [default: token].
    #[arg(long, env = "BERTH_AUTH")]
    pub auth: Option<String>,
    /// URL clients reach the registry at (e.g. https://registry.example.com),
    /// used for the token realm [default: from each request's Host header].
    #[arg(long, env = "BERTH_EXTERNAL_URL")]
    pub external_url: Option<String>,
    /// Take client addresses (for rate limits, login throttling and the
    /// audit log) from the last X-Forwarded-For entry: set it only behind a
    /// proxy that clients cannot bypass.
    #[arg(long, env = "BERTH_TRUST_FORWARDED_FOR")]
    pub trust_forwarded_for: Option<bool>,
    /// Service name in token challenges and the audience of registry tokens
    /// [default: berth].
    #[arg(long, env = "BERTH_TOKEN_SERVICE")]
    pub token_service: Option<String>,
    /// Visibility of new namespaces and of unowned ones: private or public
    /// [default: private].
    #[arg(long, env = "BERTH_DEFAULT_VISIBILITY")]
    pub default_visibility: Option<String>,
    /// Manifest GETs allowed per account (or anonymous address) per
    /// `pull_rate_window`; 0: unlimited [default: 0].
    #[arg(long, env = "BERTH_PULL_RATE_LIMIT")]
    pub pull_rate_limit: Option<u32>,
    /// Connections open at once, in total [default: 10000, lowered to fit
    /// the open-files limit].
    #[arg(long, env = "BERTH_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Connections open at once from one client address; 0: no cap (behind
    /// a reverse proxy) [default: 256].
    #[arg(long, env = "BERTH_MAX_CONNECTIONS_PER_CLIENT")]
    pub max_connections_per_client: Option<usize>,
    /// Time a client has to send a request's headers (e.g. 30s) [default: 30s].
    #[arg(long, env = "BERTH_HEADER_READ_TIMEOUT")]
    pub header_read_timeout: Option<String>,
    /// A connection with no request in flight is closed after this long
    /// without traffic [default: 120s].
    #[arg(long, env = "BERTH_IDLE_TIMEOUT")]
    pub idle_timeout: Option<String>,
    /// A request whose body (or response) moves no byte for this long is
    /// closed; progress is timed, not the total [default: 60s].
    #[arg(long, env = "BERTH_BODY_TIMEOUT")]
    pub body_timeout: Option<String>,
}

/// The TOML file. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Listen address.
    pub listen: Option<String>,
    /// Data directory (relative paths are relative to the working directory).
    pub data_dir: Option<PathBuf>,
    /// Log level or filter.
    pub log_level: Option<String>,
    /// `text` or `json`.
    pub log_format: Option<String>,
    /// Largest accepted manifest: bytes, or a size such as `4MiB`.
    pub max_manifest_size: Option<toml::Value>,
    /// Upload sessions idle longer than this are removed (e.g. `24h`).
    pub upload_ttl: Option<String>,
    /// How often abandoned uploads are looked for (e.g. `1h`).
    pub upload_purge_interval: Option<String>,
    /// Minimum chunk size advertised to clients (bytes or size; 0: none).
    pub chunk_min_length: Option<toml::Value>,
    /// How often pull statistics counted in memory are written to the
    /// database (e.g. `30s`).
    pub pull_stats_flush_interval: Option<String>,
    /// `token` or `none`.
    pub auth: Option<String>,
    /// URL clients reach the registry at, for the token realm.
    pub external_url: Option<String>,
    /// Trust the last `X-Forwarded-For` entry as the client address.
    pub trust_forwarded_for: Option<bool>,
    /// Service name of the token flow.
    pub token_service: Option<String>,
    /// Lifetime of registry tokens (e.g. `5m`).
    pub token_ttl: Option<String>,
    /// Lifetime of refresh tokens (e.g. `30d`).
    pub refresh_token_ttl: Option<String>,
    /// `private` or `public`.
    pub default_visibility: Option<String>,
    /// Manifest GETs per account or address per window (0: unlimited).
    pub pull_rate_limit: Option<u32>,
    /// The pull rate limit's window (e.g. `6h`).
    pub pull_rate_window: Option<String>,
    /// How long permission facts and verified logins are cached (e.g.
    /// `10s`; `0s` reads the database on every request).
    pub auth_cache_ttl: Option<String>,
    /// How often garbage collection runs on its own (`0`: only on demand).
    pub gc_interval: Option<String>,
    /// Unreferenced content younger than this is never collected.
    pub gc_grace_period: Option<String>,
    /// Connections open at once, in total.
    pub max_connections: Option<usize>,
    /// Connections open at once from one client address (0: no cap).
    pub max_connections_per_client: Option<usize>,
    /// Time a client has to send a request's headers (e.g. `30s`).
    pub header_read_timeout: Option<String>,
    /// Idle connections are closed after this long (e.g. `120s`).
    pub idle_timeout: Option<String>,
    /// A request making no progress is closed after this long (e.g. `60s`).
    pub body_timeout: Option<String>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Validated settings of `berth serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub log_level: String,
    pub log_format: LogFormat,
    pub addr_file: Option<PathBuf>,
    pub max_manifest_bytes: usize,
    pub upload_ttl: Duration,
    pub upload_purge_interval: Duration,
    pub chunk_min_length: u64,
    pub pull_stats_flush_interval: Duration,
    pub auth: AuthSettings,
    pub external_url: Option<String>,
    pub trust_forwarded_for: bool,
    /// `BERTH_ADMIN_PASSWORD`: the bootstrapped admin's password.
    pub admin_password: Option<String>,
    pub gc_interval: Option<Duration>,
    pub gc_grace_period: Duration,
    pub limits: ConnectionLimits,
}

/// Parses `30s`, `15m`, `24h`, `7d` (or a bare number of seconds).
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .with_context(|| format!("invalid duration {s:?}"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        other => bail!("invalid duration unit {other:?} in {s:?} (use s, m, h or d)"),
    };
    Ok(Duration::from_secs(secs))
}

/// Parses a size: an integer number of bytes, or `512KiB`, `4MiB`, `1GiB`,
/// `4MB`.
pub fn parse_size(v: &toml::Value) -> anyhow::Result<u64> {
    match v {
        toml::Value::Integer(i) if *i >= 0 => Ok(*i as u64),
        toml::Value::String(s) => {
            let s = s.trim();
            let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
            let n: u64 = num.parse().with_context(|| format!("invalid size {s:?}"))?;
            let mul = match unit.trim() {
                "" | "B" => 1,
                "KiB" => 1 << 10,
                "MiB" => 1 << 20,
                "GiB" => 1 << 30,
                "KB" | "kB" => 1000,
                "MB" => 1_000_000,
                "GB" => 1_000_000_000,
                other => bail!("invalid size unit {other:?} in {s:?}"),
            };
            Ok(n * mul)
        }
        other => bail!("invalid size {other:?}"),
    }
}

/// A duration that must not be zero (intervals of background jobs).
fn positive(s: &str, key: &str) -> anyhow::Result<Duration> {
    let d = parse_duration(s).context(key.to_owned())?;
    if d.is_zero() {
        bail!("{key} must be greater than zero");
    }
    Ok(d)
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading configuration file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing configuration file {}", path.display()))
}

impl ServeConfig {
    /// Merges flags/environment with the file and defaults, and validates.
    pub fn resolve(args: ServeArgs) -> anyhow::Result<ServeConfig> {
        let file = match &args.config {
            Some(p) => read_file(p)?,
            None => FileConfig::default(),
        };
        let auth = resolve_auth(&args, &file)?;
        let limits = resolve_limits(&args, &file)?;
        let listen = args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:5000".to_owned());
        let listen: SocketAddr = listen.parse().with_context(|| {
            format!("invalid listen address {listen:?} (expected HOST:PORT, e.g. 127.0.0.1:5000)")
        })?;
        let log_format = match args.log_format.or(file.log_format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => bail!("invalid log format {other:?} (use text or json)"),
        };
        let max_manifest_bytes = match &file.max_manifest_size {
            Some(v) => parse_size(v).context("max_manifest_size")? as usize,
            None => 4 << 20,
        };
        if max_manifest_bytes < 1024 {
            bail!("max_manifest_size must be at least 1KiB");
        }
        let external_url = args.external_url.clone().or(file.external_url.clone());
        if let Some(u) = &external_url {
            if !(u.starts_with("http://") || u.starts_with("https://")) || u.contains(['"', ' ']) {
                bail!("invalid external_url {u:?} (expected http(s)://host[:port][/path])");
            }
        }
        Ok(ServeConfig {
            auth,
            limits,
            external_url,
            trust_forwarded_for: args
                .trust_forwarded_for
                .or(file.trust_forwarded_for)
                .unwrap_or(false),
            admin_password: std::env::var("BERTH_ADMIN_PASSWORD")
                .ok()
                .filter(|p| !p.is_empty()),
            listen,
            data_dir: args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("berth-data")),
            log_level: args
                .log_level
                .or(file.log_level)
                .unwrap_or_else(|| "info".to_owned()),
            log_format,
            addr_file: args.addr_file,
            max_manifest_bytes,
            upload_ttl: parse_duration(file.upload_ttl.as_deref().unwrap_or("24h"))
                .context("upload_ttl")?,
            upload_purge_interval: parse_duration(
                file.upload_purge_interval.as_deref().unwrap_or("1h"),
            )
            .context("upload_purge_interval")?,
            chunk_min_length: match &file.chunk_min_length {
                Some(v) => parse_size(v).context("chunk_min_length")?,
                None => 0,
            },
            pull_stats_flush_interval: positive(
                file.pull_stats_flush_interval.as_deref().unwrap_or("30s"),
                "pull_stats_flush_interval",
            )?,
            gc_interval: Some(
                parse_duration(file.gc_interval.as_deref().unwrap_or("24h"))
                    .context("gc_interval")?,
            )
            .filter(|d| !d.is_zero()),
            gc_grace_period: parse_duration(file.gc_grace_period.as_deref().unwrap_or("1h"))
                .context("gc_grace_period")?,
        })
    }
}

fn resolve_limits(args: &ServeArgs, file: &FileConfig) -> anyhow::Result<ConnectionLimits> {
    let d = ConnectionLimits::default();
    let timeout =
        |arg: &Option<String>, key: &Option<String>, default: Duration, what: &str| match arg
            .as_ref()
            .or(key.as_ref())
        {
            Some(s) => positive(s, what),
            None => Ok(default),
        };
    let max_connections = args
        .max_connections
        .or(file.max_connections)
        .unwrap_or(d.max_connections);
    if max_connections == 0 {
        bail!("max_connections must be at least 1");
    }
    Ok(ConnectionLimits {
        header_read_timeout: timeout(
            &args.header_read_timeout,
            &file.header_read_timeout,
            d.header_read_timeout,
            "header_read_timeout",
        )?,
        idle_timeout: timeout(
            &args.idle_timeout,
            &file.idle_timeout,
            d.idle_timeout,
            "idle_timeout",
        )?,
        body_timeout: timeout(
            &args.body_timeout,
            &file.body_timeout,
            d.body_timeout,
            "body_timeout",
        )?,
        max_connections,
        max_connections_per_client: args
            .max_connections_per_client
            .or(file.max_connections_per_client)
            .unwrap_or(d.max_connections_per_client),
    })
}

fn resolve_auth(args: &ServeArgs, file: &FileConfig) -> anyhow::Result<AuthSettings> {
    let d = AuthSettings::default();
    let mode = match args.auth.as_deref().or(file.auth.as_deref()) {
        None | Some("token") => AuthMode::Token,
        Some("none") => AuthMode::None,
        Some(other) => bail!("invalid auth mode {other:?} (use token or none)"),
    };
    let default_visibility = match args
        .default_visibility
        .as_deref()
        .or(file.default_visibility.as_deref())
    {
        None => d.default_visibility,
        Some(v) => Visibility::parse(v)
            .with_context(|| format!("invalid default_visibility {v:?} (use private or public)"))?,
    };
    let service = args
        .token_service
        .clone()
        .or(file.token_service.clone())
        .unwrap_or(d.service);
    if service.is_empty() || service.contains(['"', '\\', ',']) {
        bail!("invalid token_service {service:?}");
    }
    let ttl = |v: &Option<String>, default: Duration, what: &str| match v {
        Some(s) => parse_duration(s).with_context(|| what.to_owned()),
        None => Ok(default),
    };
    let token_ttl = ttl(&file.token_ttl, d.token_ttl, "token_ttl")?;
    if token_ttl.is_zero() {
        bail!("token_ttl must be at least 1s");
    }
    let limit = args.pull_rate_limit.or(file.pull_rate_limit).unwrap_or(0);
    let window = ttl(
        &file.pull_rate_window,
        Duration::from_secs(6 * 3600),
        "pull_rate_window",
    )?;
    if limit > 0 && window.is_zero() {
        bail!("pull_rate_window must be at least 1s");
    }
    Ok(AuthSettings {
        mode,
        service,
        token_ttl,
        refresh_token_ttl: ttl(
            &file.refresh_token_ttl,
            d.refresh_token_ttl,
            "refresh_token_ttl",
        )?,
        default_visibility,
        pull_limit: (limit > 0).then_some(RateLimit { limit, window }),
        cache_ttl: ttl(&file.auth_cache_ttl, d.cache_ttl, "auth_cache_ttl")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86400)
        );
        assert!(parse_duration("7w").is_err());
        assert_eq!(
            parse_size(&toml::Value::String("4MiB".into())).unwrap(),
            4 << 20
        );
        assert_eq!(parse_size(&toml::Value::Integer(10)).unwrap(), 10);
        assert!(parse_size(&toml::Value::String("4XB".into())).is_err());
    }

    #[test]
    fn precedence() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("berth.toml");
        std::fs::write(
            &f,
            "listen = \"127.0.0.1:6000\"\nlog_level = \"debug\"\nmax_manifest_size = \"1MiB\"\n",
        )
        .unwrap();
        let c = ServeConfig::resolve(ServeArgs {
            config: Some(f.clone()),
            log_level: Some("warn".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.listen.port(), 6000);
        assert_eq!(c.log_level, "warn");
        assert_eq!(c.max_manifest_bytes, 1 << 20);
        assert_eq!(c.pull_stats_flush_interval, Duration::from_secs(30));
        assert_eq!(c.limits, ConnectionLimits::default());
        std::fs::write(&f, "pull_stats_flush_interval = \"0s\"\n").unwrap();
        assert!(ServeConfig::resolve(ServeArgs {
            config: Some(f.clone()),
            ..Default::default()
        })
        .is_err());
        assert_eq!(c.auth.mode, AuthMode::Token, "secure by default");
        assert_eq!(c.auth.default_visibility, Visibility::Private);
        assert!(c.auth.pull_limit.is_none());
        std::fs::write(
            &f,
            "auth = \"none\"\npull_rate_limit = 100\npull_rate_window = \"6h\"\ntoken_ttl = \"10m\"\n",
        )
        .unwrap();
        let c = ServeConfig::resolve(ServeArgs {
            config: Some(f.clone()),
            default_visibility: Some("public".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.auth.mode, AuthMode::None);
        assert_eq!(c.auth.default_visibility, Visibility::Public);
        assert_eq!(
            c.auth.pull_limit,
            Some(RateLimit {
                limit: 100,
                window: Duration::from_secs(21600)
            })
        );
        assert_eq!(c.auth.token_ttl, Duration::from_secs(600));
        for bad in ["auth = \"maybe\"\n", "default_visibility = \"secret\"\n"] {
            std::fs::write(&f, bad).unwrap();
            assert!(ServeConfig::resolve(ServeArgs {
                config: Some(f.clone()),
                ..Default::default()
            })
            .is_err());
        }
        std::fs::write(&f, "unknown_key = 1\n").unwrap();
        assert!(ServeConfig::resolve(ServeArgs {
            config: Some(f),
            ..Default::default()
        })
        .is_err());
    }
}

#[cfg(test)]
mod gc_tests {
    use super::*;

    fn with(text: &str) -> anyhow::Result<ServeConfig> {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("berth.toml");
        std::fs::write(&f, text).unwrap();
        ServeConfig::resolve(ServeArgs {
            config: Some(f),
            ..Default::default()
        })
    }

    #[test]
    fn gc_settings() {
        let c = with("").unwrap();
        assert_eq!(c.gc_interval, Some(Duration::from_secs(86_400)));
        assert_eq!(c.gc_grace_period, Duration::from_secs(3600));
        let c = with("gc_interval = \"0\"\ngc_grace_period = \"10m\"\n").unwrap();
        assert_eq!(c.gc_interval, None, "0 turns the schedule off");
        assert_eq!(c.gc_grace_period, Duration::from_secs(600));
        let e = with("gc_grace_period = \"soon\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("gc_grace_period"), "{e:#}");
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    #[test]
    fn listener_limits_from_file_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("berth.toml");
        std::fs::write(
            &f,
            "max_connections = 500\nmax_connections_per_client = 0\nheader_read_timeout = \"5s\"\nbody_timeout = \"2m\"\n",
        )
        .unwrap();
        let c = ServeConfig::resolve(ServeArgs {
            config: Some(f.clone()),
            idle_timeout: Some("30s".into()),
            max_connections: Some(600),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            c.limits,
            ConnectionLimits {
                header_read_timeout: Duration::from_secs(5),
                idle_timeout: Duration::from_secs(30),
                body_timeout: Duration::from_secs(120),
                max_connections: 600,
                max_connections_per_client: 0,
            }
        );
        for bad in ["body_timeout = \"0s\"\n", "max_connections = 0\n"] {
            std::fs::write(&f, bad).unwrap();
            assert!(ServeConfig::resolve(ServeArgs {
                config: Some(f.clone()),
                ..Default::default()
            })
            .is_err());
        }
    }
}
