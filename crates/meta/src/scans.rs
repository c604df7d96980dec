//! Stored vulnerability scans: the last scan of each image manifest,
//! removed with the manifest (its foreign key cascades).

use berth_oci::{Digest, RepositoryName};
use sqlx::Row as _;

use crate::{Meta, Result};

/// One image manifest's last scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredScan {
    /// The repository.
    pub repository: RepositoryName,
    /// The image manifest.
    pub digest: Digest,
    /// Its platform in an index.
    pub platform: Option<String>,
    /// When it was scanned (Unix ms).
    pub scanned_at: i64,
    /// When the vulnerability data it used last changed (Unix ms).
    pub vulndb_at: Option<i64>,
    /// Packages found.
    pub packages: u64,
    /// Findings: critical, high, medium, low, unknown.
    pub counts: [u64; 5],
    /// The report (JSON).
    pub report: String,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

impl Meta {
    /// Stores `scan`, replacing the manifest's previous one. Nothing is
    /// stored when the manifest is gone (`false`).
    pub async fn put_scan(&self, scan: StoredScan) -> Result<bool> {
        self.transact(move |c| {
            Box::pin(async move {
                let [critical, high, medium, low, unknown] = scan.counts.map(|n| n as i64);
                let done = sqlx::query(
                    "INSERT INTO scan_results (repository_id, digest, platform, scanned_at,
                       vulndb_at, packages, critical, high, medium, low, unknown, report, error)
                     SELECT m.repository_id, m.digest, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13
                     FROM manifests m JOIN repositories r ON r.id = m.repository_id
                     WHERE r.name = $1 AND m.digest = $2
                     ON CONFLICT (repository_id, digest) DO UPDATE SET platform = excluded.platform,
                       scanned_at = excluded.scanned_at, vulndb_at = excluded.vulndb_at,
                       packages = excluded.packages, critical = excluded.critical,
                       high = excluded.high, medium = excluded.medium, low = excluded.low,
                       unknown = excluded.unknown, report = excluded.report, error = excluded.error",
                )
                .bind(scan.repository.as_str().to_owned())
                .bind(scan.digest.as_str().to_owned())
                .bind(scan.platform)
                .bind(scan.scanned_at)
                .bind(scan.vulndb_at)
                .bind(scan.packages as i64)
                .bind(critical)
                .bind(high)
                .bind(medium)
                .bind(low)
                .bind(unknown)
                .bind(scan.report)
                .bind(scan.error)
                .execute(&mut *c)
                .await?
                .rows_affected()
                    > 0;
                Ok(done)
            })
        })
        .await
    }

    /// The last scan of the image manifest `digest` of `repository`.
    pub async fn scan(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<StoredScan>> {
        let row = sqlx::query(
            "SELECT s.platform, s.scanned_at, s.vulndb_at, s.packages, s.critical, s.high,
               s.medium, s.low, s.unknown, s.report, s.error
             FROM scan_results s JOIN repositories r ON r.id = s.repository_id
             WHERE r.name = $1 AND s.digest = $2",
        )
        .bind(repository.as_str().to_owned())
        .bind(digest.as_str().to_owned())
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| {
            let n = |i: usize| -> Result<u64> { Ok(r.try_get::<i64, _>(i)?.max(0) as u64) };
            Ok(StoredScan {
                repository: repository.clone(),
                digest: digest.clone(),
                platform: r.try_get(0)?,
                scanned_at: r.try_get(1)?,
                vulndb_at: r.try_get(2)?,
                packages: n(3)?,
                counts: [n(4)?, n(5)?, n(6)?, n(7)?, n(8)?],
                report: r.try_get(9)?,
                error: r.try_get(10)?,
            })
        })
        .transpose()
    }
}
