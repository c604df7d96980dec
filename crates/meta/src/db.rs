//! Connecting to the database and applying migrations.

use std::path::Path;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::AnyConnection;
use sqlx::{AnyPool, Connection as _, Executor as _};

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
/// SQLite allows one writer at a time, so writes go through a pool of one
/// connection (queued in-process instead of failing with `SQLITE_BUSY`) while
/// reads use a pool of several; on PostgreSQL both are the same pool.
#[derive(Clone)]
pub struct Meta {
    pub(crate) read: AnyPool,
    pub(crate) write: AnyPool,
    dialect: Dialect,
}

const SQLITE_PRAGMAS: &[&str] = &[
    "PRAGMA foreign_keys = ON",
    "PRAGMA busy_timeout = 10000",
    // Durable commits: an acknowledged push survives a power cut.
    "PRAGMA synchronous = FULL",
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

impl Meta {
    /// Opens (creating if needed) the SQLite database at `path`.
    pub async fn open_sqlite(path: &Path) -> Result<Meta> {
        let url = format!("sqlite://{}?mode=rwc", path.display());
        Meta::connect(&url).await
    }

    /// Connects to `sqlite://PATH` or `postgres://...` and migrates the schema.
    pub async fn connect(url: &str) -> Result<Meta> {
        sqlx::any::install_default_drivers();
        let meta = if url.starts_with("sqlite:") {
            // WAL is a property of the database file; set it once.
            let mut conn = AnyConnection::connect(url).await?;
            conn.execute("PRAGMA journal_mode = WAL").await?;
            conn.close().await?;
            let write = AnyPoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .after_connect(|c, _| sqlite_setup(c))
                .connect(url)
                .await?;
            let read = AnyPoolOptions::new()
                .max_connections(4)
                .min_connections(1)
                .idle_timeout(Duration::from_secs(300))
                .after_connect(|c, _| sqlite_setup(c))
                .connect(url)
                .await?;
            Meta {
                read,
                write,
                dialect: Dialect::Sqlite,
            }
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool = AnyPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await?;
            Meta {
                read: pool.clone(),
                write: pool,
                dialect: Dialect::Postgres,
            }
        } else {
            return Err(Error::UnsupportedUrl(url.to_owned()));
        };
        meta.migrate().await?;
        Ok(meta)
    }

    /// The engine in use.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    async fn migrate(&self) -> Result<()> {
        let list: &[Migration] = match self.dialect {
            Dialect::Sqlite => SQLITE,
            Dialect::Postgres => POSTGRES,
        };
        self.write
            .execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                    version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
            )
            .await?;
        for (version, statements) in list {
            let mut tx = self.write.begin().await?;
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

    /// Closes all connections.
    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}
