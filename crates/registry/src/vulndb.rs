//! The offline vulnerability database: imports of OSV records, what is
//! loaded, and the advisories an inventory's packages are filed under.
//!
//! `berth vulndb import` reads OSV `all.zip` files or directories of
//! records on the operator's machine and sends them here in batches (the
//! management API's `POST /api/v1/vulndb/imports`); every batch of one run
//! carries the run's import id. This service reads each record
//! (`berth_scan::vuln::osv`: a record it cannot read is reported back, not
//! stored), files its affected packages under their ecosystem family and
//! package key, and stores the batch in one transaction in the metadata
//! database, where every replica sees it. A record whose `modified` has
//! not changed is skipped.

use std::collections::BTreeSet;

use berth_meta::vulndb::{
    EcosystemStatus, ImportBatch, ImportCounts, ImportRecord, NewAdvisory, NewAffected,
};
use berth_oci::time::Timestamp;
use berth_scan::vuln::{self, matcher, osv, Advisory, Affected};
use serde::Serialize;

use crate::{Caller, Error, Registry, Result};

/// Records one batch may carry at most.
pub const MAX_BATCH_RECORDS: usize = 5_000;

/// The longest import source name kept.
const MAX_SOURCE: usize = 1_024;

/// One batch of an import.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// The import run's id (letters, digits, `-`, `_`, `.`; at most 64).
    pub import: String,
    /// Where the records come from (a file or directory name).
    pub source: String,
    /// OSV records, as JSON objects.
    pub records: Vec<serde_json::Value>,
}

/// A record that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct InvalidRecord {
    /// Its id, or `?`.
    pub id: String,
    /// What is wrong.
    pub message: String,
}

/// What one batch did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// The counts.
    #[serde(flatten)]
    pub counts: ImportCounts,
    /// The records refused (counted as `invalid`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub invalid_records: Vec<InvalidRecord>,
}

/// What is loaded for an ecosystem, and how old it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EcosystemView {
    /// The stored status.
    #[serde(flatten)]
    pub status: EcosystemStatus,
    /// Seconds since an import last carried its records.
    pub age_seconds: Option<i64>,
}

/// What `berth vulndb status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VulndbStatus {
    /// Per ecosystem family.
    pub ecosystems: Vec<EcosystemView>,
    /// The latest imports, newest first.
    pub imports: Vec<ImportRecord>,
}

fn valid_import_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn ms(t: &str) -> Option<i64> {
    Timestamp::parse(t).ok().map(|t| t.0.saturating_mul(1000))
}

/// The rows of one advisory.
pub fn rows(a: &Advisory, now: i64) -> Result<NewAdvisory> {
    let mut bare = a.clone();
    let affected = std::mem::take(&mut bare.affected);
    let record = json(&bare)?;
    let mut rows = Vec::with_capacity(affected.len());
    for f in &affected {
        let family = f.family().to_owned();
        rows.push(NewAffected {
            name: matcher::package_key(&family, &f.name),
            family,
            ecosystem: f.ecosystem.clone(),
            detail: json(f)?,
        });
    }
    Ok(NewAdvisory {
        id: a.id.clone(),
        modified: a.modified.clone(),
        modified_at: ms(&a.modified).unwrap_or(now),
        published_at: a.published.as_deref().and_then(ms),
        withdrawn_at: a.withdrawn.as_deref().map(|w| ms(w).unwrap_or(now)),
        record,
        aliases: a.aliases.clone(),
        affected: rows,
    })
}

fn json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Internal(format!("serialising an advisory: {e}")))
}

impl Registry {
    /// Stores one batch of an import (site admins; the server checks).
    pub async fn import_advisories(
        &self,
        caller: &Caller,
        req: ImportRequest,
    ) -> Result<ImportReport> {
        if !valid_import_id(&req.import) {
            return Err(Error::InvalidParameter(format!(
                "import id {:?} must be 1 to 64 letters, digits, '-', '_' or '.'",
                req.import
            )));
        }
        if req.records.len() > MAX_BATCH_RECORDS {
            return Err(Error::InvalidParameter(format!(
                "a batch carries at most {MAX_BATCH_RECORDS} records, not {}: send more batches",
                req.records.len()
            )));
        }
        let actor = caller.actor();
        let mut advisories = Vec::with_capacity(req.records.len());
        let mut families = BTreeSet::new();
        let mut invalid = Vec::new();
        for value in req.records {
            match osv::from_value(value) {
                Ok(a) => {
                    families.extend(a.affected.iter().map(|f| f.family().to_owned()));
                    advisories.push(rows(&a, actor.at)?);
                }
                Err(e) => invalid.push(InvalidRecord {
                    id: e.id,
                    message: e.message,
                }),
            }
        }
        let source: String = req.source.chars().take(MAX_SOURCE).collect();
        let counts = self
            .meta
            .import_advisories(ImportBatch {
                import_id: req.import,
                source,
                actor,
                advisories,
                families,
                invalid: invalid.len() as u64,
            })
            .await?;
        Ok(ImportReport {
            counts,
            invalid_records: invalid,
        })
    }

    /// What is loaded, per ecosystem, and the latest imports.
    pub async fn vulndb_status(&self) -> Result<VulndbStatus> {
        let now = crate::now_ms();
        let ecosystems = self
            .meta
            .vulndb_status()
            .await?
            .into_iter()
            .map(|status| EcosystemView {
                age_seconds: status.last_import_at.map(|t| (now - t).max(0) / 1000),
                status,
            })
            .collect();
        let imports = self.meta.vulndb_imports(10).await?;
        Ok(VulndbStatus {
            ecosystems,
            imports,
        })
    }

    /// The advisories filed under `keys` (see
    /// [`berth_scan::vuln::lookup_keys`]), each with the affected entries
    /// found under those keys.
    pub async fn advisories_for(&self, keys: &[vuln::LookupKey]) -> Result<Vec<Advisory>> {
        let pairs: Vec<(String, String)> = keys
            .iter()
            .map(|k| (k.family.clone(), k.name.clone()))
            .collect();
        let found = self.meta.advisories_affecting(&pairs).await?;
        let mut by_id: std::collections::BTreeMap<String, Advisory> = Default::default();
        for f in found {
            let corrupt = |e: serde_json::Error| {
                Error::Metadata(berth_meta::Error::Corrupt(format!(
                    "stored advisory {}: {e}",
                    f.advisory_id
                )))
            };
            let affected: Affected = serde_json::from_str(&f.detail).map_err(corrupt)?;
            if !by_id.contains_key(&f.advisory_id) {
                let a: Advisory = serde_json::from_str(&f.record).map_err(corrupt)?;
                by_id.insert(f.advisory_id.clone(), a);
            }
            if let Some(a) = by_id.get_mut(&f.advisory_id) {
                if !a.affected.contains(&affected) {
                    a.affected.push(affected);
                }
            }
        }
        Ok(by_id.into_values().collect())
    }

    /// One page of the stored records as OSV JSON (withdrawn ones
    /// included), by id after `after`, at most `limit` (site admins; the
    /// server checks): `berth vulndb push` packs what is loaded with it.
    /// Returns the records and the id to continue after, if there are more.
    pub async fn export_advisories(
        &self,
        after: &str,
        limit: usize,
    ) -> Result<(Vec<serde_json::Value>, Option<String>)> {
        let limit = limit.clamp(1, MAX_BATCH_RECORDS);
        let page = self.meta.advisories_page(after, limit as i64).await?;
        let next = (page.len() == limit).then(|| page.last().map(|p| p.0.clone()));
        let mut out = Vec::with_capacity(page.len());
        for (id, record, details) in page {
            let corrupt = |e: serde_json::Error| {
                Error::Metadata(berth_meta::Error::Corrupt(format!(
                    "stored advisory {id}: {e}"
                )))
            };
            let mut a: Advisory = serde_json::from_str(&record).map_err(corrupt)?;
            for d in details {
                a.affected.push(serde_json::from_str(&d).map_err(corrupt)?);
            }
            out.push(osv::to_value(&a));
        }
        Ok((out, next.flatten()))
    }

    /// Sets `berth_vulndb_age_seconds{ecosystem}` (at scrape time).
    pub(crate) async fn refresh_vulndb_gauges(&self) -> Result<()> {
        let now = crate::now_ms();
        let ages: Vec<(String, f64)> = self
            .meta
            .vulndb_status()
            .await?
            .into_iter()
            .filter_map(|s| {
                s.last_import_at
                    .map(|t| (s.ecosystem, ((now - t).max(0) as f64) / 1000.0))
            })
            .collect();
        berth_metrics::get().vulndb_ages(ages);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_keep_what_matching_reads_back() {
        let a = osv::parse(
            br#"{"id":"GHSA-1","modified":"2024-05-01T10:00:00Z","withdrawn":"2024-05-02T00:00:00Z",
                 "aliases":["CVE-1"],"affected":[{"package":{"ecosystem":"PyPI","name":"Zope.Interface"},
                 "versions":["1.0"]}]}"#,
        )
        .unwrap();
        let r = rows(&a, 7).unwrap();
        assert_eq!(r.modified_at, 1_714_557_600_000);
        assert_eq!(r.withdrawn_at, Some(1_714_608_000_000));
        assert_eq!(r.affected[0].name, "zope-interface");
        assert_eq!(r.affected[0].family, "PyPI");
        let bare: Advisory = serde_json::from_str(&r.record).unwrap();
        assert!(bare.affected.is_empty());
        let back: Affected = serde_json::from_str(&r.affected[0].detail).unwrap();
        assert_eq!(back, a.affected[0]);
        assert!(valid_import_id("2024-05-01.abc_1"));
        assert!(!valid_import_id("a/b") && !valid_import_id(""));
    }
}
