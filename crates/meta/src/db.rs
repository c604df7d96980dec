//! Connecting to the database and applying migrations.

use std::path::Path;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::AnyConnection;
use sqlx::{AnyPool, Connection as _, Executor as _};

use crate::commit::{spawn_batcher, Writer};
use crate::inventory_cache::InventoryCache;
use crate::migrations::{Migration, POSTGRES, SQLITE};
use crate::{now_ms, Error, Result};

/// The database engine behind a [`Meta`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite (embedded default).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// Handle to the metadata database.
///
/// Reads use a pool. On SQLite, which allows one writer at a time, all writes
/// go to one task that owns the write connection and commits waiting writes
/// together (group commit, see the `commit` module); on PostgreSQL every
/// write is its own transaction on the shared pool.
#[derive(Clone)]
pub struct Meta {
    pub(crate) read: AnyPool,
    pub(crate) writer: Writer,
    dialect: Dialect,
    pub(crate) accounts_epoch: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Inventories kept until this process changes their repository (on
    /// SQLite only, see the `inventory_cache` module).
    pub(crate) inventories: std::sync::Arc<crate::inventory_cache::InventoryCache>,
    /// Changes of other processes heard (see the `changes` module).
    pub(crate) feed: std::sync::Arc<crate::changes::Feed>,
    /// PostgreSQL: the URL the change listener connects to.
    pub(crate) listen_url: Option<std::sync::Arc<str>>,
    /// SQLite: the URL that opens the database file read-only, for
    /// [`Meta::probe`] (open connections keep working on a file that was
    /// moved away; a new one finds out).
    probe_url: Option<std::sync::Arc<str>>,
}

const SQLITE_PRAGMAS: &[&str] = &[
    "PRAGMA foreign_keys = ON",
    "PRAGMA busy_timeout = 10000",
    // Durable commits: an acknowledged push survives a power cut.
    "PRAGMA synchronous = FULL",
    // Reads of the database file through a memory map: pages come from
    // the kernel's page cache without a read() and a copy each. A
    // connection's own page cache (2 MB) is dropped whenever another
    // connection commits, so a large read (a repository's inventory for a
    // retention plan, an image page's manifests) otherwise goes back to the
    // kernel page by page. Writes still go through write(); at most the
    // first 256 MiB of the file are mapped (docs/benchmarks.md, "Web UI").
    "PRAGMA mmap_size = 268435456",
];

fn sqlite_setup(
    conn: &mut AnyConnection,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), sqlx::Error>> + Send + '_>> {
    Box::pin(async move {
        for p in SQLITE_PRAGMAS {
            conn.execute(*p).await?;
        }
        Ok(())
    })
}

/// How to connect to PostgreSQL (SQLite ignores these: one write
/// connection and a small read pool suit an embedded file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolOptions {
    /// Connections per process, at most.
    pub max_connections: u32,
    /// Statements running longer than this are cancelled by the server
    /// (PostgreSQL's `statement_timeout`); `None`: no limit.
    pub statement_timeout: Option<Duration>,
    /// Longest wait for a free connection (or a new one) before a request
    /// fails as unavailable.
    pub acquire_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            max_connections: 16,
            statement_timeout: Some(Duration::from_secs(30)),
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// Whether `url` names a PostgreSQL database.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// `url` with its password (user-info or `password=` parameter) replaced
/// by `***`, for logs and error messages.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest = scheme_end + 3;
        let authority_end = out[rest..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| rest + i);
        if let Some(at) = out[rest..authority_end].rfind('@') {
            let userinfo = &out[rest..rest + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest + colon + 1..rest + at, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_owned(),
            })
            .collect();
        out = format!("{head}{}", query.join("&"));
    }
    out
}

impl Meta {
    /// Opens (creating if needed) the SQLite database at `path`.
    pub async fn open_sqlite(path: &Path) -> Result<Meta> {
        let url = format!("sqlite://{}?mode=rwc", path.display());
        Meta::connect(&url).await
    }

    /// Connects to `sqlite://PATH` or `postgres://...` and migrates the schema.
    pub async fn connect(url: &str) -> Result<Meta> {
        Meta::connect_with(url, &PoolOptions::default()).await
    }

    /// Connects with `options` (see [`PoolOptions`]) and migrates the
    /// schema. Errors never contain the URL's password.
    pub async fn connect_with(url: &str, options: &PoolOptions) -> Result<Meta> {
        Meta::connect_inner(url, options, true).await
    }

    /// Connects to an existing database (`sqlite://PATH?mode=rw` or
    /// `postgres://...`) without migrating it: for a tool that works
    /// beside running servers (`berth backup` takes a job lease through
    /// it), which must not change their schema.
    pub async fn attach(url: &str) -> Result<Meta> {
        Meta::connect_inner(url, &PoolOptions::default(), false).await
    }

    async fn connect_inner(url: &str, options: &PoolOptions, migrating: bool) -> Result<Meta> {
        sqlx::any::install_default_drivers();
        if url.starts_with("sqlite:") {
            let mut conn = AnyConnection::connect(url).await?;
            // WAL is a property of the database file; the rest is per
            // connection.
            conn.execute("PRAGMA journal_mode = WAL").await?;
            sqlite_setup(&mut conn).await?;
            if migrating {
                migrate(&mut conn, Dialect::Sqlite).await?;
            }
            let read = AnyPoolOptions::new()
                .max_connections(4)
                .min_connections(1)
                .idle_timeout(Duration::from_secs(300))
                .after_connect(|c, _| sqlite_setup(c))
                .connect(url)
                .await?;
            let path = url.split_once('?').map_or(url, |(path, _)| path);
            Ok(Meta {
                read,
                writer: Writer::Batched(spawn_batcher(conn)),
                dialect: Dialect::Sqlite,
                accounts_epoch: Default::default(),
                inventories: std::sync::Arc::new(InventoryCache::new(true)),
                feed: Default::default(),
                listen_url: None,
                probe_url: Some(format!("{path}?mode=ro").into()),
            })
        } else if is_postgres_url(url) {
            let timeout_ms = options
                .statement_timeout
                .map_or(0, |t| t.as_millis().clamp(1, i32::MAX as u128) as i64);
            let pool = AnyPoolOptions::new()
                .max_connections(options.max_connections.max(1))
                .acquire_timeout(options.acquire_timeout)
                .after_connect(move |c, _| {
                    Box::pin(async move {
                        // Statement parameters cannot be bound in SET.
                        c.execute(format!("SET statement_timeout = {timeout_ms}").as_str())
                            .await?;
                        Ok(())
                    })
                })
                .connect(url)
                .await?;
            if migrating {
                migrate(&mut *pool.acquire().await?, Dialect::Postgres).await?;
            }
            Ok(Meta {
                read: pool.clone(),
                writer: Writer::Pool(pool),
                dialect: Dialect::Postgres,
                accounts_epoch: Default::default(),
                inventories: std::sync::Arc::new(InventoryCache::new(false)),
                feed: Default::default(),
                listen_url: Some(url.into()),
                probe_url: None,
            })
        } else {
            Err(Error::UnsupportedUrl(redact_url(url)))
        }
    }

    /// The engine in use.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// A counter bumped after every committed change to accounts,
    /// memberships, visibility or tokens made through this handle (or a
    /// clone of it) and, while [`Meta::listening`], whenever another
    /// process commits one (or the listener lost its connection). Caches
    /// of permission facts remember the value they were filled at and drop
    /// entries filled before a change.
    pub fn accounts_epoch(&self) -> u64 {
        self.accounts_epoch
            .load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn bump_accounts_epoch(&self) {
        self.accounts_epoch
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Checks that the database answers: on PostgreSQL a `SELECT 1` on the
    /// pool; on SQLite a new read-only connection to the database file and
    /// a read of the schema version, so that a file that was moved, removed
    /// or made unreadable fails here even while open connections still
    /// work.
    pub async fn probe(&self) -> Result<()> {
        match &self.probe_url {
            Some(url) => {
                let mut conn = AnyConnection::connect(url).await?;
                let read = sqlx::query("SELECT version FROM schema_migrations LIMIT 1")
                    .fetch_optional(&mut conn)
                    .await;
                let _ = conn.close().await;
                read?;
            }
            None => {
                sqlx::query("SELECT 1").execute(&self.read).await?;
            }
        }
        Ok(())
    }

    /// The read pool's connections: `(in use, idle, most allowed)`.
    pub fn pool_use(&self) -> (u32, u32, u32) {
        let size = self.read.size();
        let idle = u32::try_from(self.read.num_idle()).unwrap_or(u32::MAX);
        let max = self.read.options().get_max_connections();
        (size.saturating_sub(idle), idle.min(size), max)
    }

    /// Closes the read connections (and, on PostgreSQL, the write pool).
    /// On SQLite the write connection closes when the last handle is dropped.
    pub async fn close(&self) {
        self.stop_listening();
        if let Writer::Pool(pool) = &self.writer {
            pool.close().await;
        }
        self.read.close().await;
    }
}

/// Runs a read on the pull path, timing it into
/// `berth_db_query_duration_seconds{operation="read"}` (and counting a
/// database failure into `berth_db_errors_total`).
pub(crate) async fn timed_read<T>(read: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    let started = std::time::Instant::now();
    let out = read.await;
    let failed = matches!(&out, Err(Error::Db(_)));
    berth_metrics::get().db_operation(berth_metrics::DbOperation::Read, started.elapsed(), !failed);
    out
}

/// The PostgreSQL advisory lock key held while migrating ("berth" in
/// ASCII): replicas starting together migrate one after the other, and
/// the later ones find nothing left to do.
const MIGRATION_LOCK: i64 = 0x62_65_72_74_68;

/// Applies the dialect's pending migrations, each in its own transaction.
/// On PostgreSQL the whole pass holds a session advisory lock.
async fn migrate(conn: &mut AnyConnection, dialect: Dialect) -> Result<()> {
    if dialect == Dialect::Sqlite {
        // SQLite's write lock serialises migrators already.
        return apply(conn, SQLITE, "BEGIN IMMEDIATE").await;
    }
    sqlx::query("SELECT 1 AS locked FROM pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await?;
    let applied = apply(conn, POSTGRES, "BEGIN").await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1) AS unlocked")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await;
    applied?;
    unlocked?;
    Ok(())
}

/// Applies the migrations of `list` not applied yet, each in a transaction
/// opened by `begin` (SQLite: `BEGIN IMMEDIATE`, so that two processes
/// migrating one file wait for each other instead of failing on a stale
/// read).
async fn apply(conn: &mut AnyConnection, list: &[Migration], begin: &'static str) -> Result<()> {
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .await?;
    // A database a newer berth migrated is left alone: this build would
    // misread tables and columns it does not know.
    let known = list.iter().map(|(v, _)| *v).max().unwrap_or(0);
    let (stored,): (Option<i64>,) = sqlx::query_as("SELECT MAX(version) FROM schema_migrations")
        .fetch_one(&mut *conn)
        .await?;
    if let Some(stored) = stored.filter(|s| *s > known) {
        return Err(Error::NewerSchema { stored, known });
    }
    for (version, statements) in list {
        let mut tx = conn.begin_with(begin).await?;
        let done: Option<(i64,)> =
            sqlx::query_as("SELECT version FROM schema_migrations WHERE version = $1")
                .bind(*version)
                .fetch_optional(&mut *tx)
                .await?;
        if done.is_some() {
            continue;
        }
        for s in *statements {
            sqlx::query(s).execute(&mut *tx).await?;
        }
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
            .bind(*version)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version, "applied metadata migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn applied(conn: &mut AnyConnection) -> i64 {
        sqlx::query_as::<_, (i64,)>("SELECT COUNT(*) FROM schema_migrations")
            .fetch_one(conn)
            .await
            .unwrap()
            .0
    }

    /// The rollback step of the upgrade procedure (docs/operations.md): an
    /// older berth refuses a database a newer one migrated, and changes
    /// nothing in it.
    #[tokio::test]
    async fn a_database_migrated_by_a_newer_berth_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.db");
        let meta = Meta::open_sqlite(&path).await.unwrap();
        meta.close().await;
        drop(meta);
        let known = SQLITE.iter().map(|(v, _)| *v).max().unwrap();
        let url = format!("sqlite://{}?mode=rw", path.display());
        let mut conn = AnyConnection::connect(&url).await.unwrap();
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, 0)")
            .bind(known + 1)
            .execute(&mut conn)
            .await
            .unwrap();
        let before = applied(&mut conn).await;
        match Meta::open_sqlite(&path).await {
            Err(Error::NewerSchema { stored, known: k }) => {
                assert_eq!((stored, k), (known + 1, known));
            }
            Err(e) => panic!("another error: {e}"),
            Ok(_) => panic!("a newer schema was opened"),
        }
        assert_eq!(applied(&mut conn).await, before);
        let e = Error::NewerSchema {
            stored: known + 1,
            known,
        };
        assert!(e.to_string().contains("restore a backup"), "{e}");
    }

    #[test]
    fn passwords_never_leave_a_url() {
        assert_eq!(
            redact_url("postgres://berth:s3cret@db.example:5432/berth?sslmode=require"),
            "postgres://berth:***@db.example:5432/berth?sslmode=require"
        );
        assert_eq!(
            redact_url("postgresql://u:p%40ss@h/db?password=other&x=1"),
            "postgresql://u:***@h/db?password=***&x=1"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact_url("sqlite:///var/lib/berth.db"),
            "sqlite:///var/lib/berth.db"
        );
    }
}
