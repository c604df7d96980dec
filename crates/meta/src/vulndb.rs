//! The offline vulnerability database: OSV advisories imported in batches,
//! looked up by ecosystem family and package name.
//!
//! This layer stores what it is given: the registry's vulndb service reads
//! the OSV records (`berth_scan::vuln::osv`) and hands over one
//! [`NewAdvisory`] per record. An import batch is one transaction: the
//! `modified` of each record is compared with the stored one (unchanged:
//! skipped; changed: the old rows go, cascading to its affected packages
//! and aliases, and the new ones are written), rows are written with
//! multi-row `INSERT`s, and the import's counts and the ecosystems' last
//! import time are updated. The first batch of an import also records a
//! [`action::VULNDB_IMPORT`] audit event.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;
use serde_json::json;
use sqlx::{AnyConnection, Row as _};

use crate::audit::{self, action, Actor};
use crate::{Meta, Result};

/// One OSV record to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAdvisory {
    /// The record's id.
    pub id: String,
    /// `modified` as the record writes it (compared as text).
    pub modified: String,
    /// `modified` in Unix ms.
    pub modified_at: i64,
    /// `published` in Unix ms.
    pub published_at: Option<i64>,
    /// `withdrawn` in Unix ms.
    pub withdrawn_at: Option<i64>,
    /// The record's JSON without its affected packages.
    pub record: String,
    /// Its aliases.
    pub aliases: Vec<String>,
    /// Its affected packages.
    pub affected: Vec<NewAffected>,
}

/// One affected package of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAffected {
    /// The OSV ecosystem (`Debian:12`).
    pub ecosystem: String,
    /// Its family (`Debian`).
    pub family: String,
    /// The package key.
    pub name: String,
    /// Ranges and versions, as JSON.
    pub detail: String,
}

/// A batch of one import.
#[derive(Debug, Clone)]
pub struct ImportBatch {
    /// The import's id (the same for every batch of one run).
    pub import_id: String,
    /// Where the records come from (a file or directory name).
    pub source: String,
    /// Who imports, and when.
    pub actor: Actor,
    /// The records.
    pub advisories: Vec<NewAdvisory>,
    /// The ecosystem families of every record of the batch (changed or
    /// not): their data counts as checked now.
    pub families: BTreeSet<String>,
    /// Records of the batch that could not be read.
    pub invalid: u64,
}

/// What a batch or an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ImportCounts {
    /// Records not stored before.
    pub new: u64,
    /// Records whose `modified` changed.
    pub changed: u64,
    /// Records whose `modified` did not change (skipped).
    pub unchanged: u64,
    /// New or changed records that are withdrawn (stored; they match
    /// nothing).
    pub withdrawn: u64,
    /// Records that could not be read.
    pub invalid: u64,
}

/// One import run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportRecord {
    /// Its id.
    pub id: String,
    /// Where the records came from.
    pub source: String,
    /// Who ran it.
    pub actor: String,
    /// When its first batch was written (Unix ms).
    pub started_at: i64,
    /// When its last batch was written (Unix ms).
    pub updated_at: i64,
    /// Its counts.
    #[serde(flatten)]
    pub counts: ImportCounts,
}

/// What is loaded for one ecosystem family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EcosystemStatus {
    /// The family (`Debian`, `PyPI`).
    pub ecosystem: String,
    /// Records affecting it (withdrawn ones not counted).
    pub records: u64,
    /// The newest `modified` of those records (Unix ms).
    pub newest_modified_at: Option<i64>,
    /// When an import last carried its records (Unix ms).
    pub last_import_at: Option<i64>,
    /// That import's source.
    pub last_import_source: Option<String>,
}

/// An affected entry found by [`Meta::advisories_affecting`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAffected {
    /// The record's id.
    pub advisory_id: String,
    /// The record's JSON without its affected packages.
    pub record: String,
    /// The entry's OSV ecosystem.
    pub ecosystem: String,
    /// The entry's ranges and versions (JSON).
    pub detail: String,
}

/// Rows per multi-row statement (kept well under both engines' limits on
/// bound parameters).
const ROWS: usize = 100;

fn placeholders(rows: usize, columns: usize) -> String {
    let mut out = String::with_capacity(rows * columns * 5);
    for r in 0..rows {
        if r > 0 {
            out.push(',');
        }
        out.push('(');
        for c in 0..columns {
            if c > 0 {
                out.push(',');
            }
            out.push('$');
            out.push_str(&(r * columns + c + 1).to_string());
        }
        out.push(')');
    }
    out
}

fn list(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(",")
}

async fn import(c: &mut AnyConnection, batch: ImportBatch) -> Result<ImportCounts> {
    let mut counts = ImportCounts {
        invalid: batch.invalid,
        ..ImportCounts::default()
    };
    // The last of a repeated id wins.
    let mut by_id: HashMap<String, NewAdvisory> = HashMap::with_capacity(batch.advisories.len());
    for a in batch.advisories {
        by_id.insert(a.id.clone(), a);
    }
    let ids: Vec<String> = by_id.keys().cloned().collect();
    let mut stored: HashMap<String, String> = HashMap::new();
    for chunk in ids.chunks(ROWS * 4) {
        let sql = format!(
            "SELECT id, modified FROM vuln_advisories WHERE id IN ({})",
            list(chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(id.as_str());
        }
        for r in q.fetch_all(&mut *c).await? {
            stored.insert(r.try_get(0)?, r.try_get(1)?);
        }
    }
    let mut fresh = Vec::new();
    let mut replaced = Vec::new();
    for (id, a) in by_id {
        match stored.get(&id) {
            Some(m) if *m == a.modified => {
                counts.unchanged += 1;
                continue;
            }
            Some(_) => {
                counts.changed += 1;
                replaced.push(id);
            }
            None => counts.new += 1,
        }
        if a.withdrawn_at.is_some() {
            counts.withdrawn += 1;
        }
        fresh.push(a);
    }
    fresh.sort_by(|a, b| a.id.cmp(&b.id));
    for chunk in replaced.chunks(ROWS * 4) {
        let sql = format!(
            "DELETE FROM vuln_advisories WHERE id IN ({})",
            list(chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(id.as_str());
        }
        q.execute(&mut *c).await?;
    }
    let now = batch.actor.at;
    for chunk in fresh.chunks(ROWS) {
        let sql = format!(
            "INSERT INTO vuln_advisories (id, modified, modified_at, published_at, withdrawn_at,
               record, import_id, imported_at) VALUES {}",
            placeholders(chunk.len(), 8)
        );
        let mut q = sqlx::query(&sql);
        for a in chunk {
            q = q
                .bind(a.id.as_str())
                .bind(a.modified.as_str())
                .bind(a.modified_at)
                .bind(a.published_at)
                .bind(a.withdrawn_at)
                .bind(a.record.as_str())
                .bind(batch.import_id.as_str())
                .bind(now);
        }
        q.execute(&mut *c).await?;
    }
    let affected: Vec<(&str, &NewAffected)> = fresh
        .iter()
        .flat_map(|a| a.affected.iter().map(move |f| (a.id.as_str(), f)))
        .collect();
    for chunk in affected.chunks(ROWS) {
        let sql = format!(
            "INSERT INTO vuln_affected (advisory_id, ecosystem, family, name, detail) VALUES {}",
            placeholders(chunk.len(), 5)
        );
        let mut q = sqlx::query(&sql);
        for (id, f) in chunk {
            q = q
                .bind(*id)
                .bind(f.ecosystem.as_str())
                .bind(f.family.as_str())
                .bind(f.name.as_str())
                .bind(f.detail.as_str());
        }
        q.execute(&mut *c).await?;
    }
    let aliases: Vec<(&str, &str)> = fresh
        .iter()
        .flat_map(|a| {
            let unique: BTreeSet<&str> = a.aliases.iter().map(String::as_str).collect();
            unique.into_iter().map(move |alias| (alias, a.id.as_str()))
        })
        .collect();
    for chunk in aliases.chunks(ROWS * 2) {
        let sql = format!(
            "INSERT INTO vuln_aliases (alias, advisory_id) VALUES {}",
            placeholders(chunk.len(), 2)
        );
        let mut q = sqlx::query(&sql);
        for (alias, id) in chunk {
            q = q.bind(*alias).bind(*id);
        }
        q.execute(&mut *c).await?;
    }
    let started = sqlx::query(
        "INSERT INTO vuln_imports (id, source, actor, started_at, updated_at, new_records,
           changed_records, unchanged_records, withdrawn_records, invalid_records)
         VALUES ($1, $2, $3, $4, $4, 0, 0, 0, 0, 0) ON CONFLICT (id) DO NOTHING",
    )
    .bind(batch.import_id.as_str())
    .bind(batch.source.as_str())
    .bind(batch.actor.name.as_str())
    .bind(now)
    .execute(&mut *c)
    .await?
    .rows_affected()
        > 0;
    sqlx::query(
        "UPDATE vuln_imports SET updated_at = $2, new_records = new_records + $3,
           changed_records = changed_records + $4, unchanged_records = unchanged_records + $5,
           withdrawn_records = withdrawn_records + $6, invalid_records = invalid_records + $7
         WHERE id = $1",
    )
    .bind(batch.import_id.as_str())
    .bind(now)
    .bind(counts.new as i64)
    .bind(counts.changed as i64)
    .bind(counts.unchanged as i64)
    .bind(counts.withdrawn as i64)
    .bind(counts.invalid as i64)
    .execute(&mut *c)
    .await?;
    for family in &batch.families {
        sqlx::query(
            "INSERT INTO vuln_ecosystems (family, last_import_at, last_import_id) VALUES ($1, $2, $3)
             ON CONFLICT (family) DO UPDATE SET last_import_at = excluded.last_import_at,
               last_import_id = excluded.last_import_id",
        )
        .bind(family.as_str())
        .bind(now)
        .bind(batch.import_id.as_str())
        .execute(&mut *c)
        .await?;
    }
    if started {
        let event = batch.actor.event(action::VULNDB_IMPORT).detail(json!({
            "import": batch.import_id, "source": batch.source,
        }));
        audit::record(c, &event).await?;
    }
    Ok(counts)
}

impl Meta {
    /// Stores one batch of an import (see the module docs) and returns
    /// what it did.
    pub async fn import_advisories(&self, batch: ImportBatch) -> Result<ImportCounts> {
        self.transact(move |c| Box::pin(import(c, batch))).await
    }

    /// What is loaded, per ecosystem family, by family.
    pub async fn vulndb_status(&self) -> Result<Vec<EcosystemStatus>> {
        let rows = sqlx::query(
            "SELECT f.family, COUNT(DISTINCT f.advisory_id), MAX(a.modified_at)
             FROM vuln_affected f JOIN vuln_advisories a ON a.id = f.advisory_id
             WHERE a.withdrawn_at IS NULL GROUP BY f.family",
        )
        .fetch_all(&self.read)
        .await?;
        let mut out: std::collections::BTreeMap<String, EcosystemStatus> = Default::default();
        for r in rows {
            let family: String = r.try_get(0)?;
            out.insert(
                family.clone(),
                EcosystemStatus {
                    ecosystem: family,
                    records: r.try_get::<i64, _>(1)?.max(0) as u64,
                    newest_modified_at: r.try_get(2)?,
                    last_import_at: None,
                    last_import_source: None,
                },
            );
        }
        let rows = sqlx::query(
            "SELECT e.family, e.last_import_at, i.source FROM vuln_ecosystems e
             LEFT JOIN vuln_imports i ON i.id = e.last_import_id",
        )
        .fetch_all(&self.read)
        .await?;
        for r in rows {
            let family: String = r.try_get(0)?;
            let e = out
                .entry(family.clone())
                .or_insert_with(|| EcosystemStatus {
                    ecosystem: family,
                    records: 0,
                    newest_modified_at: None,
                    last_import_at: None,
                    last_import_source: None,
                });
            e.last_import_at = Some(r.try_get(1)?);
            e.last_import_source = r.try_get(2)?;
        }
        Ok(out.into_values().collect())
    }

    /// The latest `limit` imports, newest first.
    pub async fn vulndb_imports(&self, limit: i64) -> Result<Vec<ImportRecord>> {
        let rows = sqlx::query(
            "SELECT id, source, actor, started_at, updated_at, new_records, changed_records,
               unchanged_records, withdrawn_records, invalid_records
             FROM vuln_imports ORDER BY started_at DESC, id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        let n = |r: &sqlx::any::AnyRow, i: usize| -> Result<u64> {
            Ok(r.try_get::<i64, _>(i)?.max(0) as u64)
        };
        rows.iter()
            .map(|r| {
                Ok(ImportRecord {
                    id: r.try_get(0)?,
                    source: r.try_get(1)?,
                    actor: r.try_get(2)?,
                    started_at: r.try_get(3)?,
                    updated_at: r.try_get(4)?,
                    counts: ImportCounts {
                        new: n(r, 5)?,
                        changed: n(r, 6)?,
                        unchanged: n(r, 7)?,
                        withdrawn: n(r, 8)?,
                        invalid: n(r, 9)?,
                    },
                })
            })
            .collect()
    }

    /// The affected entries filed under each `(family, name)` of `keys`, of
    /// records that are not withdrawn, with their records.
    pub async fn advisories_affecting(
        &self,
        keys: &[(String, String)],
    ) -> Result<Vec<StoredAffected>> {
        let mut out = Vec::new();
        for (family, name) in keys {
            let rows = sqlx::query(
                "SELECT f.advisory_id, a.record, f.ecosystem, f.detail
                 FROM vuln_affected f JOIN vuln_advisories a ON a.id = f.advisory_id
                 WHERE f.family = $1 AND f.name = $2 AND a.withdrawn_at IS NULL",
            )
            .bind(family.as_str())
            .bind(name.as_str())
            .fetch_all(&self.read)
            .await?;
            for r in rows {
                out.push(StoredAffected {
                    advisory_id: r.try_get(0)?,
                    record: r.try_get(1)?,
                    ecosystem: r.try_get(2)?,
                    detail: r.try_get(3)?,
                });
            }
        }
        Ok(out)
    }

    /// One page of the stored records, withdrawn ones included, by id:
    /// those after `after` (`""`: from the first), at most `limit`, each
    /// with the JSON of its record (without affected packages) and of its
    /// affected entries. For packing what is loaded into an artifact.
    pub async fn advisories_page(
        &self,
        after: &str,
        limit: i64,
    ) -> Result<Vec<(String, String, Vec<String>)>> {
        let rows = sqlx::query(
            "SELECT a.id, a.record, f.detail
             FROM vuln_advisories a LEFT JOIN vuln_affected f ON f.advisory_id = a.id
             WHERE a.id IN (SELECT id FROM vuln_advisories WHERE id > $1 ORDER BY id LIMIT $2)
             ORDER BY a.id",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        let mut out: Vec<(String, String, Vec<String>)> = Vec::new();
        for r in rows {
            let id: String = r.try_get(0)?;
            let detail: Option<String> = r.try_get(2)?;
            match out.last_mut() {
                Some(last) if last.0 == id => last.2.extend(detail),
                _ => out.push((id, r.try_get(1)?, detail.into_iter().collect())),
            }
        }
        Ok(out)
    }

    /// When the vulnerability data last changed (the last import that
    /// wrote a record, Unix ms): scans older than this may be stale.
    pub async fn vulndb_changed_at(&self) -> Result<Option<i64>> {
        let at: Option<i64> = sqlx::query_scalar("SELECT MAX(imported_at) FROM vuln_advisories")
            .fetch_one(&self.read)
            .await?;
        Ok(at)
    }
}
