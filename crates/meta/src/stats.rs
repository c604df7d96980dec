//! Pull statistics: `pull_count` and `last_pulled_at` of manifests and tags.
//!
//! Pulls are never written on the pull path: the registry counts them in
//! memory and flushes them here in batches ([`Meta::add_pulls`]), each
//! delta one `UPDATE` adding to the count and moving the last pull time
//! forward (never back: batches of several replicas may arrive out of
//! order). Deltas for manifests or tags deleted since are dropped.
//!
//! What the columns mean, for retention and the API:
//! - `manifests.pull_count`, `manifests.last_pulled_at`: GETs of the
//!   manifest, by tag or by digest (a multi-arch pull counts the index and
//!   the platform's manifest).
//! - `tags.pull_count`, `tags.last_pulled_at`: GETs through that tag name,
//!   kept while the tag moves between manifests; gone with the tag.

use sqlx::AnyConnection;

use crate::{Meta, Result};

/// Most deltas written per transaction.
const BATCH: usize = 500;

/// Pulls of one manifest or tag since the last flush.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullDelta {
    /// Repository name.
    pub repository: berth_oci::RepositoryName,
    /// Manifest digest or tag name.
    pub key: String,
    /// Pulls to add.
    pub pulls: u64,
    /// Time of the latest of them (Unix ms).
    pub last_pulled_at: i64,
}

/// Which rows a delta applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullTarget {
    /// `manifests` (key: digest).
    Manifest,
    /// `tags` (key: tag name).
    Tag,
}

async fn apply(conn: &mut AnyConnection, target: PullTarget, d: &PullDelta) -> Result<()> {
    let (table, key) = match target {
        PullTarget::Manifest => ("manifests", "digest"),
        PullTarget::Tag => ("tags", "name"),
    };
    sqlx::query(&format!(
        "UPDATE {table} SET pull_count = pull_count + $1,
             last_pulled_at = CASE WHEN last_pulled_at IS NULL OR last_pulled_at < $2
                                   THEN $2 ELSE last_pulled_at END
         WHERE {key} = $3 AND repository_id = (SELECT id FROM repositories WHERE name = $4)"
    ))
    .bind(d.pulls as i64)
    .bind(d.last_pulled_at)
    .bind(&d.key)
    .bind(d.repository.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// What [`apply`] does to the row, done to a kept inventory (sorted as
/// `Meta::inventory` sorts it: tags by name, manifests by digest).
fn count(inv: &mut crate::Inventory, target: PullTarget, d: &PullDelta) {
    let (count, last) = match target {
        PullTarget::Tag => {
            let Ok(i) = inv
                .tags
                .binary_search_by(|t| t.name.as_str().cmp(d.key.as_str()))
            else {
                return;
            };
            let t = &mut inv.tags[i];
            (&mut t.pull_count, &mut t.last_pulled_at)
        }
        PullTarget::Manifest => {
            let Ok(i) = inv
                .manifests
                .binary_search_by(|m| m.digest.as_str().cmp(d.key.as_str()))
            else {
                return;
            };
            let m = &mut inv.manifests[i];
            (&mut m.pull_count, &mut m.last_pulled_at)
        }
    };
    *count += d.pulls as i64;
    *last = Some(last.map_or(d.last_pulled_at, |l| l.max(d.last_pulled_at)));
}

impl Meta {
    /// Adds pull counts, [`BATCH`] deltas per transaction, removing from
    /// `deltas` what was written: after an error, `deltas` holds exactly
    /// what is still to write.
    pub async fn add_pulls(&self, deltas: &mut Vec<(PullTarget, PullDelta)>) -> Result<()> {
        while !deltas.is_empty() {
            let n = deltas.len().min(BATCH);
            let chunk: Vec<_> = deltas[..n].to_vec();
            let written = self
                .transact(move |c| {
                    Box::pin(async move {
                        for (target, d) in &chunk {
                            apply(c, *target, d).await?;
                        }
                        Ok(())
                    })
                })
                .await;
            // The pull statistics of kept inventories changed: counted in
            // them as the statements above counted them, or, if the write
            // failed, the copies dropped (see `Meta::repository_write`).
            let mut told: Vec<&str> = Vec::new();
            for (_, d) in &deltas[..n] {
                let repo = d.repository.as_str();
                if told.contains(&repo) {
                    continue;
                }
                told.push(repo);
                if written.is_err() {
                    self.inventories.changed(repo);
                    continue;
                }
                let mine = deltas[..n]
                    .iter()
                    .filter(|(_, d)| d.repository.as_str() == repo);
                self.inventories.pulled(repo, |inv| {
                    for (target, d) in mine {
                        count(inv, *target, d);
                    }
                });
            }
            written?;
            deltas.drain(..n);
        }
        Ok(())
    }
}
