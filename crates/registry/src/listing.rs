//! Tag lists, the catalog and the referrers API.

use std::sync::Arc;

use berth_oci::{media, Digest, RepositoryName, Tag};
use serde::Serialize;

use crate::{Error, Registry, Result};

/// Largest page a client may ask for (`n`); larger values are clamped.
pub const MAX_PAGE: i64 = 10_000;

/// One page of a sorted listing: a window onto a shared sorted list, so
/// serving a page of a large cached tag list copies nothing.
#[derive(Debug, Clone)]
pub struct Page {
    list: Arc<[String]>,
    start: usize,
    end: usize,
    /// Whether more items follow the last one.
    pub more: bool,
}

impl Page {
    /// The items of this page, sorted.
    pub fn items(&self) -> &[String] {
        &self.list[self.start..self.end]
    }
}

/// The OCI index the referrers API returns.
#[derive(Debug, Clone, Serialize)]
pub struct ReferrersIndex {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// The OCI index media type.
    #[serde(rename = "mediaType")]
    pub media_type: &'static str,
    /// One descriptor per referrer.
    pub manifests: Vec<serde_json::Value>,
}

/// The page of at most `n` items of `list` after `last`.
pub(crate) fn page(list: Arc<[String]>, last: Option<&str>, n: i64) -> Page {
    let start = match last {
        Some(l) => list.partition_point(|t| t.as_str() <= l),
        None => 0,
    };
    let end = start.saturating_add(n as usize).min(list.len());
    Page {
        more: end < list.len(),
        list,
        start,
        end,
    }
}

impl Registry {
    /// Tags of `repo`, sorted, `n` at most, after `last`.
    pub async fn tags(
        &self,
        repo: &RepositoryName,
        n: Option<i64>,
        last: Option<&str>,
    ) -> Result<Page> {
        let n = n.unwrap_or(MAX_PAGE).clamp(0, MAX_PAGE);
        let list = match self.cache.tag_list(repo) {
            Some(list) => list,
            None => {
                let epoch = self.cache.epoch();
                let all = self
                    .meta
                    .tags(repo, None, i64::MAX)
                    .await?
                    .ok_or_else(|| Error::NameUnknown(repo.to_string()))?;
                let list: Arc<[String]> = all.into_iter().map(Tag::into_string).collect();
                self.cache.fill_tag_list(repo, list.clone(), &epoch);
                list
            }
        };
        Ok(page(list, last, n))
    }

    /// Repository names, sorted, `limit` at most, after `last`.
    pub(crate) async fn repository_names(
        &self,
        last: Option<&str>,
        limit: i64,
    ) -> Result<Vec<RepositoryName>> {
        Ok(self.meta.repositories(last, limit).await?)
    }

    /// The catalog: every repository, sorted, `n` at most, after `last`.
    pub async fn catalog(&self, n: Option<i64>, last: Option<&str>) -> Result<Page> {
        let n = n.unwrap_or(MAX_PAGE).clamp(0, MAX_PAGE);
        let list: Arc<[String]> = self
            .meta
            .repositories(last, n + 1)
            .await?
            .into_iter()
            .map(RepositoryName::into_string)
            .collect();
        Ok(page(list, None, n))
    }

    /// Manifests of `repo` whose subject is `subject`, optionally filtered by
    /// artifact type.
    pub async fn referrers(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<ReferrersIndex> {
        let rows = self.meta.referrers(repo, subject, artifact_type).await?;
        let manifests = rows
            .into_iter()
            .map(|r| {
                let mut d = serde_json::json!({
                    "mediaType": r.media_type,
                    "digest": r.digest,
                    "size": r.size,
                });
                if let Some(at) = r.artifact_type {
                    d["artifactType"] = serde_json::Value::String(at);
                }
                if let Some(a) = r
                    .annotations
                    .and_then(|a| serde_json::from_str::<serde_json::Value>(&a).ok())
                {
                    d["annotations"] = a;
                }
                d
            })
            .collect();
        Ok(ReferrersIndex {
            schema_version: 2,
            media_type: media::OCI_INDEX,
            manifests,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages() {
        let list: Arc<[String]> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let p = page(list.clone(), None, 2);
        assert_eq!(p.items(), ["a", "b"]);
        assert!(p.more);
        let p = page(list.clone(), Some("b"), 2);
        assert_eq!(p.items(), ["c", "d"]);
        assert!(!p.more);
        let p = page(list.clone(), Some("bb"), 10);
        assert_eq!(p.items(), ["c", "d"]);
        let p = page(list.clone(), Some("z"), 10);
        assert!(p.items().is_empty() && !p.more);
        let p = page(list, None, 0);
        assert!(p.items().is_empty() && p.more);
    }
}
