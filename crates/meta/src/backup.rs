//! Online copies of the SQLite metadata database, for `berth backup`.
//!
//! [`snapshot_sqlite`] copies the database while a server keeps writing
//! to it: `VACUUM INTO` runs inside one read transaction of a read-only
//! connection, so the copy is the database as of one commit (WAL readers
//! never block the writer, and the writer never changes what an open read
//! transaction sees). [`read_snapshot`] then says what the copy holds,
//! above all the blobs it names, which the backup copies next.

use std::path::Path;

use sqlx::{AnyConnection, Connection as _, Executor as _, Row as _};

use crate::{digest_at, Error, Result};

/// What a metadata snapshot holds.
#[derive(Debug, Clone)]
pub struct SnapshotSummary {
    /// The newest schema migration applied.
    pub schema_version: i64,
    /// Repositories.
    pub repositories: u64,
    /// Manifests (in all repositories).
    pub manifests: u64,
    /// Tags.
    pub tags: u64,
    /// Every blob row (digest and size), in digest order.
    pub blobs: Vec<(berth_oci::Digest, u64)>,
}

async fn connect_read_only(path: &Path) -> Result<AnyConnection> {
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}?mode=ro", path.display());
    let mut conn = AnyConnection::connect(&url).await?;
    conn.execute("PRAGMA busy_timeout = 10000").await?;
    Ok(conn)
}

/// Writes a consistent copy of the SQLite database at `live` to `out`
/// (which must not exist yet) while other processes keep writing to
/// `live`. The copy is compacted and in rollback-journal mode.
pub async fn snapshot_sqlite(live: &Path, out: &Path) -> Result<()> {
    let target = out
        .to_str()
        .ok_or_else(|| Error::Corrupt(format!("{} is not valid UTF-8", out.display())))?
        .to_owned();
    let mut conn = connect_read_only(live).await?;
    let done = sqlx::query("VACUUM INTO $1")
        .bind(target)
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    done?;
    Ok(())
}

async fn count(conn: &mut AnyConnection, table: &str) -> Result<u64> {
    let row = sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(&mut *conn)
        .await?;
    Ok(row.try_get::<i64, _>(0)?.max(0) as u64)
}

/// Reads the snapshot at `path` (read-only): its schema version, counts
/// and every blob it names. Fails if SQLite's own check finds damage.
pub async fn read_snapshot(path: &Path) -> Result<SnapshotSummary> {
    let mut conn = connect_read_only(path).await?;
    let out = summarize(&mut conn).await;
    let _ = conn.close().await;
    out
}

async fn summarize(conn: &mut AnyConnection) -> Result<SnapshotSummary> {
    let check: String = sqlx::query("PRAGMA quick_check")
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
    if check != "ok" {
        return Err(Error::Corrupt(format!("SQLite quick_check: {check}")));
    }
    let schema_version: i64 = sqlx::query("SELECT MAX(version) FROM schema_migrations")
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
    let rows = sqlx::query("SELECT digest, size FROM blobs ORDER BY digest")
        .fetch_all(&mut *conn)
        .await?;
    let mut blobs = Vec::with_capacity(rows.len());
    for r in &rows {
        let size: i64 = r.try_get(1)?;
        blobs.push((digest_at(r, 0)?, size.max(0) as u64));
    }
    Ok(SnapshotSummary {
        schema_version,
        repositories: count(conn, "repositories").await?,
        manifests: count(conn, "manifests").await?,
        tags: count(conn, "tags").await?,
        blobs,
    })
}

/// Removes every job lease from the restored database at `path`: the
/// leases were held by processes of the registry the backup came from
/// (the backup itself holds the `gc` lease while it copies), which do not
/// exist for the restored one.
pub async fn clear_leases(path: &Path) -> Result<u64> {
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}?mode=rw", path.display());
    let mut conn = AnyConnection::connect(&url).await?;
    let done = sqlx::query("DELETE FROM job_leases")
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    Ok(done?.rows_affected())
}
