//! Replicating deletions (rules with `replicate_deletions`, opt-in).
//!
//! - A **push** rule follows `tag.deleted` and `manifest.deleted` events of
//!   what it selects: the tag is deleted at the target, or the manifest
//!   (by digest) when no tag outside the rule's tag filter names it there
//!   (the [`Transport`] checks at the target). Each deletion done there
//!   leaves a `replication.delete` audit event here.
//!   A push rule also records the tags it copies there
//!   (`replication_tags`, with the digest it put there): a full pass
//!   (schedule or on demand) deletes at the target those its filters
//!   still select that are gone here, when the target's tag still names
//!   that digest ([`Deletion::TagNaming`]; a tag moved there since is
//!   someone else's). So what an event did not carry (events given up
//!   after their attempts, a deletion while the rule's worker was behind)
//!   is deleted by the next full pass all the same.
//! - A **pull** rule records the tags it makes here (`replication_tags`);
//!   a full pass deletes here those its filters still select that are
//!   gone at the source, when they still name the digest the rule put
//!   there (a tag moved here since is someone else's: it stays). The
//!   deletion goes through the tag delete service (audited as
//!   `tag.delete` by `replication/<rule>`; a protected tag is refused).
//!
//! Nothing outside the rule's repository and tag filters is ever deleted.

use std::collections::BTreeSet;

use berth_meta::audit::action;
use berth_meta::replication::ReplicationRule;
use berth_oci::{Digest, Reference, RepositoryName, Tag};
use serde_json::json;

use super::run::{Item, Outcome, Transport};
use super::{selects_repository, selects_tag};
use crate::{Caller, Error, Registry, Result};

/// What a push rule deletes at its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deletion {
    /// A tag (only the tag: its manifest stays).
    Tag(Tag),
    /// A manifest by digest, with the tags naming it there (the transport
    /// keeps it when a tag the rule does not select names it).
    Manifest(Digest),
    /// A tag, only while it names this digest there (what the rule put
    /// there; a tag moved since is kept).
    TagNaming(Tag, Digest),
}

/// What a deletion at the target did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    /// It was there and is gone.
    Deleted,
    /// It was not there.
    Absent,
    /// It is kept, and why (a tag outside the rule's filter names it).
    Kept(String),
}

/// The caller that deletes for rule `rule`: no namespace admin, so a
/// protected tag is refused rather than deleted.
fn deleter(rule: &ReplicationRule) -> Caller {
    Caller {
        namespace_admin: false,
        ..Caller::system(&format!("replication/{}", rule.name))
    }
}

impl Registry {
    /// Carries out one deletion of a push rule at its target (see the
    /// module's documentation), noting it in `out`; the deletions done are
    /// audited.
    pub(super) async fn replicate_deletion(
        &self,
        rule: &ReplicationRule,
        transport: &dyn Transport,
        repository: &RepositoryName,
        deletion: &Deletion,
        event: Option<i64>,
        out: &mut Outcome,
    ) -> Result<Option<Deleted>> {
        let name = match deletion {
            Deletion::Tag(t) | Deletion::TagNaming(t, _) => format!("{repository}:{t}"),
            Deletion::Manifest(d) => format!("{repository}@{d}"),
        };
        let done = match transport.delete(rule, repository, deletion).await {
            Ok(d) => d,
            Err(e) => {
                out.note_failure(event, format!("deleting {name}: {e}"));
                return Ok(None);
            }
        };
        match &done {
            Deleted::Deleted => {
                let mut e = deleter(rule)
                    .actor()
                    .event(action::REPLICATION_DELETE)
                    .repository(repository.as_str())
                    .detail(json!({"rule": rule.name, "url": rule.url}));
                e = match deletion {
                    Deletion::Tag(t) => e.tag(t.as_str()),
                    Deletion::TagNaming(t, d) => e.tag(t.as_str()).digest(d.as_str()),
                    Deletion::Manifest(d) => e.digest(d.as_str()),
                };
                self.meta.record_event(e).await?;
                out.deleted.push(name);
            }
            Deleted::Absent => out.up_to_date += 1,
            Deleted::Kept(why) => out.kept.push(format!("{name}: {why}")),
        }
        Ok(Some(done))
    }

    /// The tags `rule` made whose repository and tag its filters select
    /// and that a full pass no longer listed (`listed`) on the side it
    /// copies from.
    async fn gone_since_made(
        &self,
        rule: &ReplicationRule,
        listed: &BTreeSet<Item>,
    ) -> Result<Vec<berth_meta::replication::ReplicatedTag>> {
        let mut gone = self.meta.replicated_tags(rule.id).await?;
        gone.retain(|made| {
            selects_repository(rule, &made.repository)
                && selects_tag(rule, made.tag.as_str())
                && !listed.contains(&Item {
                    repository: made.repository.to_string(),
                    tag: made.tag.to_string(),
                })
        });
        Ok(gone)
    }

    /// A push rule's full pass listed `listed` here: deletes at the target
    /// the tags the rule copied there that its filters select and that are
    /// gone here, while they name the digest the rule put there (see the
    /// module's documentation), noting them in `out`. A record is
    /// forgotten once its tag is gone there or was moved; a failed
    /// deletion keeps it for the next pass.
    pub(super) async fn delete_gone_at_target(
        &self,
        rule: &ReplicationRule,
        transport: &dyn Transport,
        listed: &BTreeSet<Item>,
        out: &mut Outcome,
        held: &crate::jobs::Held<'_>,
    ) -> Result<()> {
        for made in self.gone_since_made(rule, listed).await? {
            held.keep().await?;
            let deletion = Deletion::TagNaming(made.tag.clone(), made.digest.clone());
            let done = self
                .replicate_deletion(rule, transport, &made.repository, &deletion, None, out)
                .await?;
            if done.is_some() {
                self.meta
                    .forget_replicated_tag(rule.id, &made.repository, &made.tag)
                    .await?;
            }
        }
        Ok(())
    }

    /// A pull rule's full pass listed `listed` at the source: deletes here
    /// the tags the rule made that its filters select and that are gone
    /// there (see the module's documentation), noting them in `out`.
    pub(super) async fn delete_gone_tags(
        &self,
        rule: &ReplicationRule,
        listed: &BTreeSet<Item>,
        out: &mut Outcome,
    ) -> Result<()> {
        for made in self.gone_since_made(rule, listed).await? {
            let name = format!("{}:{}", made.repository, made.tag);
            let reference = Reference::Tag(made.tag.clone());
            let here = match self.get_manifest(&made.repository, &reference).await {
                Ok(m) => Some(m.digest.clone()),
                Err(Error::ManifestUnknown(_) | Error::NameUnknown(_)) => None,
                Err(e) => return Err(e),
            };
            match here {
                Some(d) if d == made.digest => {
                    match self
                        .delete_manifest(&made.repository, &reference, &deleter(rule))
                        .await
                    {
                        Ok(()) | Err(Error::ManifestUnknown(_)) => {
                            out.deleted.push(format!("{name}@{d}"))
                        }
                        // A tag rule protects it: kept, and said so.
                        Err(Error::Denied(why)) => out.kept.push(format!("{name}: {why}")),
                        Err(e) => {
                            out.note_failure(None, format!("deleting {name} here: {e}"));
                            continue;
                        }
                    }
                }
                Some(_) => out.kept.push(format!(
                    "{name}: gone at the source, but moved here since the rule made it"
                )),
                None => {}
            }
            self.meta
                .forget_replicated_tag(rule.id, &made.repository, &made.tag)
                .await?;
        }
        Ok(())
    }
}
