//! `berth serve` settings: one struct, [`Settings`], that is at once the
//! clap flags (each with its `BERTH_*` environment variable) and the keys of
//! the TOML file. Each setting is documented once (its `///` comment is the
//! `--help` text) and defaulted once (its clap `default_value`, which serde
//! also uses for keys the file leaves out).
//!
//! Precedence: a flag beats its environment variable (clap handles both),
//! which beats the configuration file, which beats the default. Values are
//! parsed into their types as they are read ([`Span`] for durations,
//! [`ByteSize`], [`Listen`], enums), and [`Settings::check`] validates what
//! spans several settings before anything starts.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context};
use berth_meta::accounts::Visibility;
use berth_oci::Span;
use berth_registry::auth::{AuthMode, AuthSettings, RateLimit};
use berth_server::listener::ConnectionLimits;
use berth_server::tls::{ClientAuth, TlsFiles};

pub use crate::storage::Storage;
pub use networks::Networks;

mod mirror;
mod networks;
use clap::parser::ValueSource;
use clap::{ArgMatches, FromArgMatches};
pub use mirror::{PullAccessChoice, Upstreams};
use serde::{Deserialize, Serialize};

/// Arguments of `berth serve`: the configuration file and the settings.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file: every setting below is also a key of it
    /// (unknown keys are an error).
    #[arg(long, env = "BERTH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: Settings,
}

/// Every setting of `berth serve`.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
// Unknown keys are refused by `read_file` (serde cannot deny them
// together with the flattened `s3`).
#[serde(default)]
pub struct Settings {
    /// Address to listen on: HOST:PORT, the host a name or an IP address
    /// (`0.0.0.0:5000` for all interfaces, port 0 for any free port).
    #[arg(
        long,
        env = "BERTH_LISTEN",
        default_value = "127.0.0.1:5000",
        value_name = "HOST:PORT"
    )]
    pub listen: Listen,
    /// Directory holding all state: `blobs/`, `uploads/`, `tmp/`, `berth.db`
    /// (SQLite) and, when generated, `admin-password`.
    #[arg(
        long,
        env = "BERTH_DATA_DIR",
        default_value = "berth-data",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,
    /// Where blobs are kept: `fs` (the `blobs/` and `uploads/` directories
    /// of the data directory) or `s3://BUCKET[/PREFIX]`, an S3-compatible
    /// bucket shared by replicas (credentials from the standard AWS
    /// environment variables; see docs/scale-out.md).
    #[arg(
        long,
        env = "BERTH_STORAGE",
        default_value = "fs",
        value_name = "fs|s3://BUCKET[/PREFIX]"
    )]
    pub storage: Storage,
    /// How to reach an `s3://` store: `s3_endpoint`, `s3_region`,
    /// `s3_path_style` (the flags `berth migrate` and `berth backup` take
    /// too).
    #[command(flatten)]
    #[serde(flatten)]
    pub s3: crate::storage::S3Flags,
    /// Answer blob GETs with a 307 redirect to a presigned object-store URL
    /// (valid 10 minutes), issued after berth's own authorization; clients
    /// must reach the object store (see s3_public_endpoint).
    #[arg(
        long,
        env = "BERTH_S3_REDIRECT",
        default_value = "false",
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set,
        value_name = "BOOL"
    )]
    pub s3_redirect: bool,
    /// The object-store endpoint clients reach, for redirect URLs
    /// [default: s3_endpoint].
    #[arg(long, env = "BERTH_S3_PUBLIC_ENDPOINT", value_name = "URL")]
    pub s3_public_endpoint: Option<String>,
    /// Metadata database: `postgres://USER:PASSWORD@HOST:PORT/DB` (or
    /// `postgresql://`) for several replicas sharing one PostgreSQL, or
    /// `sqlite://PATH` [default: SQLite in DATA_DIR/berth.db]. The password
    /// is never logged; prefer the environment or the file to the flag.
    #[arg(
        long,
        env = "BERTH_DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub database_url: Option<DatabaseUrl>,
    /// PostgreSQL connections per replica, at most (ignored on SQLite).
    #[arg(
        long,
        env = "BERTH_DATABASE_POOL_SIZE",
        default_value = "16",
        value_name = "N"
    )]
    pub database_pool_size: u32,
    /// PostgreSQL statements running longer than this are cancelled and the
    /// request fails with 503 (0: no limit; ignored on SQLite).
    #[arg(
        long,
        env = "BERTH_DATABASE_STATEMENT_TIMEOUT",
        default_value = "30s",
        value_name = "DURATION"
    )]
    pub database_statement_timeout: Span,
    /// Log level or tracing filter: error, warn, info, debug, trace, or a
    /// filter such as `berth=debug,sqlx=warn`.
    #[arg(
        long,
        env = "BERTH_LOG_LEVEL",
        default_value = "info",
        value_name = "LEVEL"
    )]
    pub log_level: String,
    /// Log format on stderr: text, or json (one object per line).
    #[arg(
        long,
        env = "BERTH_LOG_FORMAT",
        default_value = "text",
        value_name = "FORMAT"
    )]
    pub log_format: LogFormat,
    /// One log line per request (method, route, repository, status, bytes,
    /// duration, client address, account) at info on the target
    /// `berth::access`; JSON with log_format = json. See
    /// docs/observability.md.
    #[arg(
        long,
        env = "BERTH_ACCESS_LOG",
        default_value = "true",
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set,
        value_name = "BOOL"
    )]
    pub access_log: bool,
    /// Record Prometheus metrics and serve them on /metrics (false: neither;
    /// /livez and /readyz stay).
    #[arg(
        long,
        env = "BERTH_METRICS",
        default_value = "true",
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set,
        value_name = "BOOL"
    )]
    pub metrics: bool,
    /// Serve /metrics (with /livez and /readyz) on this address only,
    /// instead of on the main listener [default: the main listener].
    #[arg(long, env = "BERTH_METRICS_LISTEN", value_name = "HOST:PORT")]
    pub metrics_listen: Option<Listen>,
    /// Bearer token /metrics requires (`Authorization: Bearer TOKEN`)
    /// [default: none, open]. Prefer the environment or the file to the
    /// flag.
    #[arg(
        long,
        env = "BERTH_METRICS_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub metrics_token: Option<Secret>,
    /// Label pushes and pulls with the repository as well as the
    /// namespace (one series per repository: mind the cardinality).
    #[arg(
        long,
        env = "BERTH_METRICS_PER_REPOSITORY",
        default_value = "false",
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set,
        value_name = "BOOL"
    )]
    pub metrics_per_repository: bool,
    /// Write the bound address to this file once listening (for scripts and
    /// tests that listen on port 0).
    #[arg(long, env = "BERTH_ADDR_FILE", value_name = "FILE")]
    pub addr_file: Option<PathBuf>,
    /// Largest manifest accepted (bytes, or KiB/MiB/GiB, kB/MB/GB); larger
    /// pushes get 413. At least 1KiB.
    #[arg(
        long,
        env = "BERTH_MAX_MANIFEST_SIZE",
        default_value = "4MiB",
        value_name = "SIZE"
    )]
    pub max_manifest_size: ByteSize,
    /// Upload sessions that received nothing for this long are removed.
    #[arg(
        long,
        env = "BERTH_UPLOAD_TTL",
        default_value = "24h",
        value_name = "DURATION"
    )]
    pub upload_ttl: Span,
    /// How often abandoned uploads are looked for.
    #[arg(
        long,
        env = "BERTH_UPLOAD_PURGE_INTERVAL",
        default_value = "1h",
        value_name = "DURATION"
    )]
    pub upload_purge_interval: Span,
    /// If not zero, advertised to clients as `OCI-Chunk-Min-Length` (bytes
    /// or a size).
    #[arg(
        long,
        env = "BERTH_CHUNK_MIN_LENGTH",
        default_value = "0",
        value_name = "SIZE"
    )]
    pub chunk_min_length: ByteSize,
    /// How often pull counts kept in memory are written to the database
    /// (also at shutdown).
    #[arg(
        long,
        env = "BERTH_PULL_STATS_FLUSH_INTERVAL",
        default_value = "30s",
        value_name = "DURATION"
    )]
    pub pull_stats_flush_interval: Span,
    /// Authentication: token (credentials and permissions enforced) or none
    /// (open to everyone; local development only).
    #[arg(long, env = "BERTH_AUTH", default_value = "token", value_name = "MODE")]
    pub auth: AuthChoice,
    /// Password of the site administrator `admin`, used when the account is
    /// created on first start; without it a password is generated and
    /// written to `DATA_DIR/admin-password` (mode 0600). Prefer the
    /// environment or the file to the flag, which other users can see.
    #[arg(
        long,
        env = "BERTH_ADMIN_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub admin_password: Option<Secret>,
    /// URL clients reach the registry at (`https://registry.example.com`);
    /// the token realm is URL/token [default: from each request's Host].
    #[arg(long, env = "BERTH_EXTERNAL_URL", value_name = "URL")]
    pub external_url: Option<ExternalUrl>,
    /// Take client addresses (rate limits, login throttling, the audit log)
    /// from the last X-Forwarded-For entry: only behind a proxy clients
    /// cannot bypass.
    #[arg(
        long,
        env = "BERTH_TRUST_FORWARDED_FOR",
        default_value = "false",
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set,
        value_name = "BOOL"
    )]
    pub trust_forwarded_for: bool,
    /// Service name in token challenges and the audience of registry tokens
    /// (replicas must agree).
    #[arg(
        long,
        env = "BERTH_TOKEN_SERVICE",
        default_value = "berth",
        value_name = "NAME"
    )]
    pub token_service: String,
    /// Lifetime of registry tokens issued by /token.
    #[arg(
        long,
        env = "BERTH_TOKEN_TTL",
        default_value = "5m",
        value_name = "DURATION"
    )]
    pub token_ttl: Span,
    /// Lifetime of refresh tokens (`docker login`'s identity token).
    #[arg(
        long,
        env = "BERTH_REFRESH_TOKEN_TTL",
        default_value = "30d",
        value_name = "DURATION"
    )]
    pub refresh_token_ttl: Span,
    /// Visibility of new namespaces and of namespaces nobody owns: private
    /// or public.
    #[arg(
        long,
        env = "BERTH_DEFAULT_VISIBILITY",
        default_value = "private",
        value_name = "VISIBILITY"
    )]
    pub default_visibility: VisibilityChoice,
    /// Manifest GETs allowed per account (or anonymous client address) per
    /// pull rate window; 0: unlimited.
    #[arg(
        long,
        env = "BERTH_PULL_RATE_LIMIT",
        default_value = "0",
        value_name = "N"
    )]
    pub pull_rate_limit: u32,
    /// The pull rate limit's window.
    #[arg(
        long,
        env = "BERTH_PULL_RATE_WINDOW",
        default_value = "6h",
        value_name = "DURATION"
    )]
    pub pull_rate_window: Span,
    /// How long verified passwords (and, on SQLite, permission facts) are
    /// cached: changes through this server apply at once (0s: verify on
    /// every request). On PostgreSQL permission facts are never cached and
    /// a password changed anywhere ends its cached logins at once.
    #[arg(
        long,
        env = "BERTH_AUTH_CACHE_TTL",
        default_value = "10s",
        value_name = "DURATION"
    )]
    pub auth_cache_ttl: Span,
    /// Keyless push (OIDC): the shortest time between two fetches of an
    /// issuer's keys caused by tokens naming a key id berth does not know
    /// (an issuer rotating its keys is picked up after at most this).
    #[arg(
        long,
        env = "BERTH_OIDC_KEY_REFETCH",
        default_value = "1m",
        value_name = "DURATION"
    )]
    pub oidc_key_refetch: Span,
    /// How often garbage collection runs on its own, counted from the last
    /// run (the first one a minute after the first start); 0: only on
    /// demand (`berth gc`).
    #[arg(
        long,
        env = "BERTH_GC_INTERVAL",
        default_value = "24h",
        value_name = "DURATION"
    )]
    pub gc_interval: Span,
    /// Unreferenced content younger than this is never collected: the
    /// longest a push may take from its first blob to its manifest.
    #[arg(
        long,
        env = "BERTH_GC_GRACE_PERIOD",
        default_value = "1h",
        value_name = "DURATION"
    )]
    pub gc_grace_period: Span,
    /// Connections open at once, in total (lowered to fit the open-files
    /// limit); more get 503 and are closed.
    #[arg(
        long,
        env = "BERTH_MAX_CONNECTIONS",
        default_value = "10000",
        value_name = "N"
    )]
    pub max_connections: usize,
    /// Connections open at once from one client address (the TCP peer); 0:
    /// no cap (set it behind a reverse proxy).
    #[arg(
        long,
        env = "BERTH_MAX_CONNECTIONS_PER_CLIENT",
        default_value = "256",
        value_name = "N"
    )]
    pub max_connections_per_client: usize,
    /// Time a client has to send a request's headers (for HTTP/1.1 also the
    /// longest wait for the next request on a kept-alive connection).
    #[arg(
        long,
        env = "BERTH_HEADER_READ_TIMEOUT",
        default_value = "30s",
        value_name = "DURATION"
    )]
    pub header_read_timeout: Span,
    /// A connection with no request in flight is closed after this long
    /// without traffic.
    #[arg(
        long,
        env = "BERTH_IDLE_TIMEOUT",
        default_value = "120s",
        value_name = "DURATION"
    )]
    pub idle_timeout: Span,
    /// A request whose body makes no progress, or whose client stops
    /// reading the response, for this long is closed; progress is timed,
    /// not the total.
    #[arg(
        long,
        env = "BERTH_BODY_TIMEOUT",
        default_value = "60s",
        value_name = "DURATION"
    )]
    pub body_timeout: Span,
    /// Serve HTTPS with this PEM certificate chain (the server's
    /// certificate first); needs --tls-key. Reloaded when the file changes
    /// and on SIGHUP. See docs/tls.md.
    #[arg(long, env = "BERTH_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (RSA, ECDSA or Ed25519) of the --tls-cert
    /// certificate.
    #[arg(long, env = "BERTH_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// PEM certificates of the CAs that sign client certificates (mutual
    /// TLS); a certificate's subject maps to an account with `berth user
    /// cert-map`.
    #[arg(long, env = "BERTH_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// With --tls-client-ca: required (connections without a client
    /// certificate are refused) or optional.
    #[arg(
        long,
        env = "BERTH_TLS_CLIENT_AUTH",
        default_value = "required",
        value_name = "MODE"
    )]
    pub tls_client_auth: ClientAuthChoice,
    /// How often the TLS files are checked for changes (they are reloaded
    /// when their size or modification time changes).
    #[arg(
        long,
        env = "BERTH_TLS_RELOAD_INTERVAL",
        default_value = "10s",
        value_name = "DURATION"
    )]
    pub tls_reload_interval: Span,
    /// With TLS: also listen on this address for plain HTTP, answering 308
    /// redirects to HTTPS (the registry API is not served there).
    #[arg(long, env = "BERTH_TLS_REDIRECT_LISTEN", value_name = "HOST:PORT")]
    pub tls_redirect_listen: Option<Listen>,
    /// Serve the registry API, not a redirect, to loopback clients of the
    /// redirect listener (local tools and health checks on this host).
    #[arg(
        long,
        env = "BERTH_TLS_REDIRECT_LOOPBACK_API",
        default_value = "false",
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set,
        value_name = "BOOL"
    )]
    pub tls_redirect_loopback_api: bool,
    /// Networks webhooks may call although they are private, loopback or
    /// link-local (CIDRs, comma-separated: `10.0.0.0/8,fd00::/8`); by
    /// default webhooks reach public addresses only. See docs/webhooks.md.
    #[arg(long, env = "BERTH_WEBHOOK_ALLOW_NETWORKS", value_name = "CIDRS")]
    pub webhook_allow_networks: Option<Networks>,
    /// Longest a webhook delivery may take (connection, request and
    /// answer); a slower receiver counts as failed.
    #[arg(
        long,
        env = "BERTH_WEBHOOK_TIMEOUT",
        default_value = "10s",
        value_name = "DURATION"
    )]
    pub webhook_timeout: Span,
    /// Attempts per webhook delivery before it is given up.
    #[arg(
        long,
        env = "BERTH_WEBHOOK_MAX_ATTEMPTS",
        default_value = "12",
        value_name = "N"
    )]
    pub webhook_max_attempts: u32,
    /// Wait before the first retry of a failed webhook delivery; it
    /// doubles after each failure (at most an hour), less a random part.
    #[arg(
        long,
        env = "BERTH_WEBHOOK_RETRY_DELAY",
        default_value = "1s",
        value_name = "DURATION"
    )]
    pub webhook_retry_delay: Span,
    /// A webhook is disabled (and audited) after this many failed
    /// deliveries in a row; 0: never.
    #[arg(
        long,
        env = "BERTH_WEBHOOK_DISABLE_AFTER",
        default_value = "50",
        value_name = "N"
    )]
    pub webhook_disable_after: u32,
    /// Webhook deliveries in flight at once.
    #[arg(
        long,
        env = "BERTH_WEBHOOK_CONCURRENCY",
        default_value = "8",
        value_name = "N"
    )]
    pub webhook_concurrency: usize,
    /// Finished webhook deliveries and delivered events are kept this long.
    #[arg(
        long,
        env = "BERTH_WEBHOOK_HISTORY",
        default_value = "30d",
        value_name = "DURATION"
    )]
    pub webhook_history: Span,
    /// How often the integrity scrub reads every blob and checks its
    /// digest and size, counted from the last run (a pass cut short
    /// resumes at the next minute); 0: only on demand (`berth scrub`).
    #[arg(
        long,
        env = "BERTH_SCRUB_INTERVAL",
        default_value = "0",
        value_name = "DURATION"
    )]
    pub scrub_interval: Span,
    /// Bytes per second the scrub reads at most while the server is idle;
    /// a tenth of it while requests are in flight (so that it never
    /// starves pulls, yet always progresses); 0: no limit, no yielding.
    #[arg(
        long,
        env = "BERTH_SCRUB_RATE",
        default_value = "50MiB",
        value_name = "SIZE"
    )]
    pub scrub_rate: ByteSize,
    /// Another registry holding the same content (a replica, the mirror's
    /// upstream) from which the scrub fetches good copies of missing or
    /// corrupt blobs: `http(s)://HOST[:PORT]`, pulled anonymously.
    #[arg(long, env = "BERTH_SCRUB_REPAIR_FROM", value_name = "URL")]
    pub scrub_repair_from: Option<String>,
    /// Upstream registries the pull-through mirror fronts: a TOML array of
    /// tables `{ name, url, username, password, hosts, max_concurrent,
    /// rate_limit, tag_ttl, timeout, cache_max }` (inline for the flag and
    /// variable).
    /// See docs/mirror.md.
    #[arg(
        long,
        env = "BERTH_MIRROR_UPSTREAMS",
        hide_env_values = true,
        default_value = "[]",
        value_name = "TOML"
    )]
    pub mirror_upstreams: Upstreams,
    /// The upstream that hostless requests for repositories berth does not
    /// hold (`/v2/library/postgres/...`, from the Docker daemon's
    /// `registry-mirrors`) go to.
    #[arg(long, env = "BERTH_MIRROR_DOCKER_HUB_DEFAULT", value_name = "NAME")]
    pub mirror_docker_hub_default: Option<String>,
    /// Who may pull through the mirror: `anonymous` (anyone) or
    /// `authenticated` (any account).
    #[arg(
        long,
        env = "BERTH_MIRROR_PULL_ACCESS",
        default_value = "anonymous",
        value_name = "WHO"
    )]
    pub mirror_pull_access: PullAccessChoice,
    /// The most the mirror's cache (everything fetched from all upstreams)
    /// may hold; past it, the least recently pulled images are evicted.
    /// `0`: no limit. An upstream's `cache_max` limits its own cache.
    #[arg(
        long,
        env = "BERTH_MIRROR_CACHE_MAX",
        default_value = "0",
        value_name = "SIZE"
    )]
    pub mirror_cache_max: ByteSize,
    /// Serve the web UI under /ui/ (and redirect / there); see docs/ui.md.
    #[arg(
        long,
        env = "BERTH_UI",
        default_value = "true",
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set,
        value_name = "BOOL"
    )]
    pub ui: bool,
    /// A web UI session unused this long ends (the user signs in again).
    #[arg(
        long,
        env = "BERTH_UI_SESSION_IDLE",
        default_value = "1h",
        value_name = "DURATION"
    )]
    pub ui_session_idle: Span,
    /// A web UI session ends this long after sign-in, however it is used.
    #[arg(
        long,
        env = "BERTH_UI_SESSION_LIFETIME",
        default_value = "12h",
        value_name = "DURATION"
    )]
    pub ui_session_lifetime: Span,
}

impl Default for Settings {
    /// The built-in defaults: clap's `default_value`s, environment ignored.
    fn default() -> Settings {
        let command = Settings::command_without_env();
        match command
            .try_get_matches_from(["berth"])
            .and_then(|m| Settings::from_arg_matches(&m))
        {
            Ok(s) => s,
            // A default that does not parse is a bug the tests catch.
            Err(e) => e.exit(),
        }
    }
}

impl Settings {
    /// The settings as a clap command of their own.
    pub fn command() -> clap::Command {
        <Settings as clap::Args>::augment_args(clap::Command::new("berth"))
    }

    fn command_without_env() -> clap::Command {
        Settings::command().mut_args(|a| a.env(None))
    }

    /// Merges the flags and environment (`args`, with clap's `matches`
    /// saying which were given) with the file and the defaults, then
    /// checks the result.
    pub fn resolve(args: ServeArgs, matches: &ArgMatches) -> anyhow::Result<Settings> {
        let mut merged = match &args.config {
            Some(path) => read_file(path)?,
            None => serde_json::Map::new(),
        };
        let given = serde_json::to_value(&args.settings)?;
        if let serde_json::Value::Object(given) = given {
            for (key, value) in given {
                let explicit = matches
                    .value_source(&key)
                    .is_some_and(|s| s != ValueSource::DefaultValue);
                if explicit {
                    merged.insert(key, value);
                }
            }
        }
        let settings: Settings = serde_json::from_value(serde_json::Value::Object(merged))
            .context("combining flags, environment and the configuration file")?;
        settings.check()?;
        Ok(settings)
    }

    /// Checks what the types alone do not.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.max_manifest_size.0 < 1024 {
            bail!("max_manifest_size must be at least 1KiB");
        }
        for (key, span) in [
            ("upload_purge_interval", self.upload_purge_interval),
            ("pull_stats_flush_interval", self.pull_stats_flush_interval),
            ("token_ttl", self.token_ttl),
            ("header_read_timeout", self.header_read_timeout),
            ("idle_timeout", self.idle_timeout),
            ("body_timeout", self.body_timeout),
            ("tls_reload_interval", self.tls_reload_interval),
            ("webhook_timeout", self.webhook_timeout),
            ("webhook_retry_delay", self.webhook_retry_delay),
            ("ui_session_idle", self.ui_session_idle),
            ("ui_session_lifetime", self.ui_session_lifetime),
        ] {
            if span.is_zero() {
                bail!("{key} must be greater than zero");
            }
        }
        if let Some(url) = &self.database_url {
            url.check()?;
        }
        if self.database_pool_size == 0 {
            bail!("database_pool_size must be at least 1");
        }
        if self.webhook_max_attempts == 0 || self.webhook_concurrency == 0 {
            bail!("webhook_max_attempts and webhook_concurrency must be at least 1");
        }
        if self.max_connections == 0 {
            bail!("max_connections must be at least 1");
        }
        if self.pull_rate_limit > 0 && self.pull_rate_window.is_zero() {
            bail!("pull_rate_window must be greater than zero when pull_rate_limit is set");
        }
        let service = &self.token_service;
        if service.is_empty() || service.contains(['"', '\\', ',']) {
            bail!("invalid token_service {service:?} (no quotes, backslashes or commas)");
        }
        EnvFilterCheck::check(&self.log_level)?;
        if let Some(t) = &self.metrics_token {
            let t = t.expose();
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()) {
                bail!("metrics_token must be non-empty printable ASCII without spaces");
            }
        }
        if !self.metrics && (self.metrics_listen.is_some() || self.metrics_token.is_some()) {
            bail!("metrics_listen and metrics_token need metrics = true");
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => bail!("tls_cert is set but tls_key is not: give both, or neither"),
            (None, Some(_)) => bail!("tls_key is set but tls_cert is not: give both, or neither"),
            (None, None) if self.tls_client_ca.is_some() => {
                bail!("tls_client_ca needs TLS: set tls_cert and tls_key as well")
            }
            (None, None) if self.tls_redirect_listen.is_some() => {
                bail!("tls_redirect_listen needs TLS: set tls_cert and tls_key as well")
            }
            _ => {}
        }
        crate::storage::check(self)?;
        Ok(())
    }

    /// The TLS files, when HTTPS is configured.
    pub fn tls_files(&self) -> Option<TlsFiles> {
        Some(TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.tls_client_ca.clone(),
            client_auth: match self.tls_client_auth {
                ClientAuthChoice::Required => ClientAuth::Required,
                ClientAuthChoice::Optional => ClientAuth::Optional,
            },
        })
    }

    /// The authentication settings.
    pub fn auth_settings(&self) -> AuthSettings {
        AuthSettings {
            mode: match self.auth {
                AuthChoice::Token => AuthMode::Token,
                AuthChoice::None => AuthMode::None,
            },
            service: self.token_service.clone(),
            token_ttl: self.token_ttl.get(),
            refresh_token_ttl: self.refresh_token_ttl.get(),
            default_visibility: match self.default_visibility {
                VisibilityChoice::Private => Visibility::Private,
                VisibilityChoice::Public => Visibility::Public,
            },
            pull_limit: (self.pull_rate_limit > 0).then_some(RateLimit {
                limit: self.pull_rate_limit,
                window: self.pull_rate_window.get(),
            }),
            cache_ttl: self.auth_cache_ttl.get(),
            shared_database: self.database().is_postgres(),
            oidc_key_refetch: self.oidc_key_refetch.get(),
        }
    }

    /// What the server records and serves about itself.
    pub fn observe(&self) -> berth_server::observe::Settings {
        berth_server::observe::Settings {
            metrics: self.metrics,
            metrics_route: self.metrics && self.metrics_listen.is_none(),
            metrics_token: self.metrics_token.as_ref().map(|t| t.expose().to_owned()),
            access_log: self.access_log,
            access_sink: None,
        }
    }

    /// The listener's timeouts and connection caps.
    pub fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: self.header_read_timeout.get(),
            idle_timeout: self.idle_timeout.get(),
            body_timeout: self.body_timeout.get(),
            max_connections: self.max_connections,
            max_connections_per_client: self.max_connections_per_client,
        }
    }

    /// The metadata database's URL: the one given, or SQLite in the data
    /// directory.
    pub fn database(&self) -> DatabaseUrl {
        self.database_url.clone().unwrap_or_else(|| {
            DatabaseUrl(format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("berth.db").display()
            ))
        })
    }

    /// The PostgreSQL pool's options.
    pub fn pool_options(&self) -> berth_meta::PoolOptions {
        berth_meta::PoolOptions {
            max_connections: self.database_pool_size,
            statement_timeout: Some(self.database_statement_timeout.get()).filter(|d| !d.is_zero()),
            ..Default::default()
        }
    }

    /// Webhook delivery settings.
    pub fn webhook_settings(&self) -> berth_registry::webhooks::Settings {
        berth_registry::webhooks::Settings {
            allow_networks: self
                .webhook_allow_networks
                .clone()
                .map(|n| n.0)
                .unwrap_or_default(),
            timeout: self.webhook_timeout.get(),
            max_attempts: self.webhook_max_attempts,
            retry_base: self.webhook_retry_delay.get(),
            disable_after: self.webhook_disable_after,
            concurrency: self.webhook_concurrency,
            history: self.webhook_history.get(),
            external_url: self.external_url.as_ref().map(|u| u.0.clone()),
            ..Default::default()
        }
    }

    /// How often the scrub runs on its own; `None`: only on demand.
    pub fn scrub_schedule(&self) -> Option<Duration> {
        Some(self.scrub_interval.get()).filter(|d| !d.is_zero())
    }

    /// The mirror's caches (one namespace per upstream) and their limits,
    /// for the registry (quota exemption, usage views, eviction).
    pub fn mirror_cache_settings(&self) -> berth_registry::mirror_cache::Settings {
        let limit = |b: u64| (b > 0).then_some(b);
        berth_registry::mirror_cache::Settings {
            namespaces: self
                .mirror_upstreams
                .0
                .iter()
                .filter_map(|u| {
                    Some(berth_registry::mirror_cache::Cached {
                        namespace: berth_oci::Namespace::parse(&u.name).ok()?,
                        max_bytes: u.cache_max.and_then(|b| limit(b.0)),
                    })
                })
                .collect(),
            max_bytes: limit(self.mirror_cache_max.0),
        }
    }

    /// The pull-through mirror's settings.
    pub fn mirror_settings(&self) -> berth_mirror::Settings {
        berth_mirror::Settings {
            upstreams: self.mirror_upstreams.0.iter().map(|u| u.config()).collect(),
            docker_hub_default: self.mirror_docker_hub_default.clone(),
            pull_access: match self.mirror_pull_access {
                PullAccessChoice::Anonymous => berth_mirror::PullAccess::Anonymous,
                PullAccessChoice::Authenticated => berth_mirror::PullAccess::Authenticated,
            },
            spool_dir: self.data_dir.join("mirror-spool"),
        }
    }

    /// The web UI's settings.
    pub fn ui(&self) -> berth_server::ui::Settings {
        berth_server::ui::Settings {
            enabled: self.ui,
            session_idle: self.ui_session_idle.get(),
            session_lifetime: self.ui_session_lifetime.get(),
        }
    }

    /// How often GC runs on its own; `None`: only on demand.
    pub fn gc_schedule(&self) -> Option<Duration> {
        Some(self.gc_interval.get()).filter(|d| !d.is_zero())
    }
}

/// The log filter is checked before anything starts.
struct EnvFilterCheck;

impl EnvFilterCheck {
    fn check(level: &str) -> anyhow::Result<()> {
        tracing_subscriber::EnvFilter::try_new(level)
            .map(drop)
            .with_context(|| format!("invalid log_level {level:?}"))
    }
}

/// Reads the TOML file as JSON-shaped keys, refusing unknown keys and
/// mistyped values with the file's line and column.
fn read_file(path: &std::path::Path) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading configuration file {}", path.display()))?;
    let what = || format!("parsing configuration file {}", path.display());
    let table: toml::Table = toml::from_str(&text).with_context(what)?;
    let known = Settings::command();
    if let Some(key) = table
        .keys()
        .find(|k| !known.get_arguments().any(|a| a.get_id() == k.as_str()))
    {
        bail!("{}: unknown field `{key}`", what());
    }
    // Typed, for the error messages (key, line and column).
    toml::from_str::<Settings>(&text).with_context(what)?;
    match serde_json::to_value(table)? {
        serde_json::Value::Object(map) => Ok(map),
        _ => bail!("{}: not a table", what()),
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `auth`: enforce credentials or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthChoice {
    /// Credentials and permissions enforced.
    Token,
    /// Open to everyone (local development only).
    None,
}

/// `tls_client_auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuthChoice {
    /// Connections without a client certificate are refused.
    Required,
    /// A client certificate is asked for, not required.
    Optional,
}

/// `default_visibility`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VisibilityChoice {
    /// Only accounts with a role may pull.
    Private,
    /// Anyone may pull.
    Public,
}

/// A listen address: `HOST:PORT` where the host is a name (`localhost`),
/// an IPv4 address or a bracketed IPv6 address (`[::1]:5000`).
#[derive(Clone, PartialEq, Eq)]
pub struct Listen(String);

impl Listen {
    /// The address as given, for binding (names are resolved then).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Listen {
    type Err = String;

    fn from_str(s: &str) -> Result<Listen, String> {
        let bad = || {
            format!("invalid listen address {s:?} (expected HOST:PORT, e.g. 127.0.0.1:5000, localhost:5000 or [::1]:5000)")
        };
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        port.parse::<u16>().map_err(|_| bad())?;
        let name_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        let v6_ok = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .is_some_and(|h| h.parse::<std::net::Ipv6Addr>().is_ok());
        if !(name_ok || v6_ok) {
            return Err(bad());
        }
        Ok(Listen(s.to_owned()))
    }
}

impl Serialize for Listen {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Listen, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// An `http(s)://` URL without quotes or spaces (it goes into challenges).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalUrl(pub String);

impl FromStr for ExternalUrl {
    type Err = String;

    fn from_str(u: &str) -> Result<ExternalUrl, String> {
        if !(u.starts_with("http://") || u.starts_with("https://")) || u.contains(['"', ' ']) {
            return Err(format!(
                "invalid external_url {u:?} (expected http(s)://host[:port][/path])"
            ));
        }
        Ok(ExternalUrl(u.trim_end_matches('/').to_owned()))
    }
}

impl Serialize for ExternalUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ExternalUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ExternalUrl, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A secret setting: never printed (`Debug` shows `***`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl FromStr for Secret {
    type Err = String;

    fn from_str(s: &str) -> Result<Secret, String> {
        Ok(Secret(s.to_owned()))
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// A metadata database URL: `postgres://...`, `postgresql://...` or
/// `sqlite://PATH`. `Debug` and `Display` hide the password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The URL itself, password included (to connect with).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether it names PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        berth_meta::is_postgres_url(&self.0)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&berth_meta::redact_url(&self.0))
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&berth_meta::redact_url(&self.0))
    }
}

impl DatabaseUrl {
    /// Checks the engine. Done by [`Settings::check`] rather than while
    /// parsing, because a parse error would echo the value, password
    /// included.
    fn check(&self) -> anyhow::Result<()> {
        let u = &self.0;
        let ok = berth_meta::is_postgres_url(u)
            || u.strip_prefix("sqlite://").is_some_and(|p| !p.is_empty());
        if !ok {
            bail!(
                "invalid database_url {:?} (expected postgres://USER:PASSWORD@HOST/DB, \
                 postgresql://... or sqlite://PATH)",
                berth_meta::redact_url(u)
            );
        }
        Ok(())
    }
}

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(u: &str) -> Result<DatabaseUrl, String> {
        Ok(DatabaseUrl(u.to_owned()))
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<DatabaseUrl, D::Error> {
        String::deserialize(d).map(DatabaseUrl)
    }
}

/// A number of bytes, written as an integer or with a unit (`512KiB`,
/// `4MiB`, `1GiB`, `4MB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ByteSize(pub u64);

/// Parses a size: a number of bytes, or `512KiB`, `4MiB`, `1GiB`, `4MB`.
pub fn parse_size(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().with_context(|| format!("invalid size {s:?}"))?;
    let mul: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" | "kB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        other => bail!("invalid size unit {other:?} in {s:?} (use B, KiB, MiB, GiB, kB, MB or GB)"),
    };
    n.checked_mul(mul)
        .with_context(|| format!("size {s:?} is too large"))
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<ByteSize, String> {
        parse_size(s).map(ByteSize).map_err(|e| format!("{e:#}"))
    }
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bytes(n) => Ok(ByteSize(n)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests;
