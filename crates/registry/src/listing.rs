//! Tag lists, the catalog and the referrers API.

use berth_oci::{media, Digest};
use serde::Serialize;

use crate::{Error, Registry, Result};

/// Largest page a client may ask for (`n`); larger values are clamped.
pub const MAX_PAGE: i64 = 10_000;

/// One page of a sorted listing.
#[derive(Debug, Clone)]
pub struct Page {
    /// The items, sorted.
    pub items: Vec<String>,
    /// Whether more items follow the last one.
    pub more: bool,
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

fn page(mut items: Vec<String>, n: i64) -> Page {
    let more = items.len() as i64 > n;
    items.truncate(n as usize);
    Page { items, more }
}

impl Registry {
    /// Tags of `repo`, sorted, `n` at most, after `last`.
    pub async fn tags(&self, repo: &str, n: Option<i64>, last: Option<&str>) -> Result<Page> {
        let n = n.unwrap_or(MAX_PAGE).clamp(0, MAX_PAGE);
        let items = self
            .meta
            .tags(repo, last, n + 1)
            .await?
            .ok_or_else(|| Error::NameUnknown(repo.to_owned()))?;
        Ok(page(items, n))
    }

    /// Repository names, sorted, `n` at most, after `last`.
    pub async fn catalog(&self, n: Option<i64>, last: Option<&str>) -> Result<Page> {
        let n = n.unwrap_or(MAX_PAGE).clamp(0, MAX_PAGE);
        Ok(page(self.meta.repositories(last, n + 1).await?, n))
    }

    /// Manifests of `repo` whose subject is `subject`, optionally filtered by
    /// artifact type.
    pub async fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<ReferrersIndex> {
        let rows = self
            .meta
            .referrers(repo, subject.as_str(), artifact_type)
            .await?;
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
