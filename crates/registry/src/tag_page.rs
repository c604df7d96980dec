//! What the web UI's tag table shows, at a cost bound by the page, not
//! the repository: one page of tags filtered, sorted and cut in the
//! database with their images' sizes ([`Registry::tag_page`]), and, for
//! the page's manifests only, their stored scan summaries and signature
//! verdicts in one query each ([`Registry::scan_summaries`],
//! [`Registry::signature_states`]).

use std::collections::HashMap;

pub use berth_meta::tag_page::{TagOrder, TagPageQuery};
use berth_meta::trust::StoredVerdict;
use berth_oci::{Digest, RepositoryName, Tag};

use crate::inventory::TagView;
use crate::scanning::ScanSummary;
use crate::{Error, Registry, Result};

/// One page of a repository's tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagPage {
    /// Tags matching the filter, on every page.
    pub total: u64,
    /// The page's tags, in order, with pull statistics including what this
    /// process counted and has not flushed yet.
    pub tags: Vec<TagView>,
    /// The tag to show pull commands for: `latest`, else the most
    /// recently pushed.
    pub featured: Option<(Tag, Digest)>,
}

/// The last signature verdict stored for a manifest, in short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureState {
    /// Verified by the trusted key `key`.
    Verified {
        /// The key's name.
        key: String,
        /// When (Unix ms).
        checked_at: i64,
    },
    /// Not verified, for `reason` (a stable name: `no_signature`,
    /// `no_trust`, `bad_signature`, `expired`, ...).
    Unverified {
        /// Why.
        reason: String,
        /// A sentence for people.
        detail: String,
        /// When (Unix ms).
        checked_at: i64,
    },
}

impl SignatureState {
    /// The short form of `v` at `now` (a verified verdict past its
    /// signature's validity is expired).
    fn of(v: StoredVerdict, now: i64) -> SignatureState {
        match v.key {
            Some(key) if v.verified && v.valid_until.is_none_or(|u| now < u) => {
                SignatureState::Verified {
                    key,
                    checked_at: v.checked_at,
                }
            }
            _ if v.verified => SignatureState::Unverified {
                reason: "expired".into(),
                detail: "the signature's validity has passed".into(),
                checked_at: v.checked_at,
            },
            _ => SignatureState::Unverified {
                reason: v.reason.unwrap_or_else(|| "unknown".into()),
                detail: v.detail.unwrap_or_default(),
                checked_at: v.checked_at,
            },
        }
    }
}

impl Registry {
    /// The page `query` asks for of `repo`'s tags.
    pub async fn tag_page(&self, repo: &RepositoryName, query: &TagPageQuery) -> Result<TagPage> {
        let page = self
            .meta
            .tag_page(repo, query)
            .await?
            .ok_or_else(|| Error::NameUnknown(repo.to_string()))?;
        let (_, pending) = self.pulls.pending(repo);
        let tags = page
            .tags
            .into_iter()
            .map(|t| {
                let (pull_count, last_pulled_at) = crate::inventory::merged(
                    t.pull_count,
                    t.last_pulled_at,
                    pending.get(t.name.as_str()),
                );
                TagView {
                    name: t.name,
                    digest: t.digest,
                    media_type: t.media_type,
                    pushed_at: t.pushed_at,
                    updated_at: t.updated_at,
                    size: t.size,
                    pull_count,
                    last_pulled_at,
                }
            })
            .collect();
        Ok(TagPage {
            total: page.total,
            tags,
            featured: page.featured,
        })
    }

    /// The stored scan summary of each entry of `images` (the image
    /// manifests it covers: an image itself, an index its platform
    /// images), in one query; "not scanned" where one has no result.
    pub async fn scan_summaries(
        &self,
        repo: &RepositoryName,
        images: &[Vec<Digest>],
    ) -> Result<Vec<ScanSummary>> {
        let mut all: Vec<Digest> = images.iter().flatten().cloned().collect();
        all.sort();
        all.dedup();
        let rows = self.meta.scan_rows_of(repo, &all).await?;
        let rows: HashMap<&str, &berth_meta::scans::ScanRow> =
            rows.iter().map(|r| (r.digest.as_str(), r)).collect();
        Ok(images
            .iter()
            .map(|covered| {
                if covered.is_empty() {
                    ScanSummary::not_scanned()
                } else {
                    ScanSummary::of(covered, &rows)
                }
            })
            .collect())
    }

    /// The last signature verdict stored for each of `digests` in `repo`
    /// that has one, in one query. A verdict is computed when a signature
    /// is pushed, when a pull is checked and when the image page or the
    /// API asks; these are those results, not a new verification.
    pub async fn signature_states(
        &self,
        repo: &RepositoryName,
        digests: &[Digest],
    ) -> Result<HashMap<Digest, SignatureState>> {
        let now = crate::now_ms();
        Ok(self
            .meta
            .signature_verdicts_of(repo, digests)
            .await?
            .into_iter()
            .map(|(d, v)| (d, SignatureState::of(v, now)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(verified: bool, until: Option<i64>) -> StoredVerdict {
        StoredVerdict {
            signatures: None,
            referrers: vec![],
            trust: String::new(),
            verified,
            key: verified.then(|| "release".to_owned()),
            algorithm: None,
            format: None,
            signature: None,
            valid_until: until,
            reason: (!verified).then(|| "no_signature".to_owned()),
            detail: (!verified).then(|| "nothing signs it".to_owned()),
            checked_at: 5,
        }
    }

    #[test]
    fn a_stored_verdict_reads_as_its_state_now() {
        assert_eq!(
            SignatureState::of(stored(true, None), 10),
            SignatureState::Verified {
                key: "release".into(),
                checked_at: 5
            }
        );
        assert_eq!(
            SignatureState::of(stored(true, Some(20)), 10),
            SignatureState::Verified {
                key: "release".into(),
                checked_at: 5
            }
        );
        assert!(matches!(
            SignatureState::of(stored(true, Some(10)), 10),
            SignatureState::Unverified { reason, .. } if reason == "expired"
        ));
        assert!(matches!(
            SignatureState::of(stored(false, None), 10),
            SignatureState::Unverified { reason, .. } if reason == "no_signature"
        ));
    }
}
