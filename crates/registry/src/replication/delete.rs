//! Replicating deletions (rules with `replicate_deletions`, opt-in).
//!
//! - A **push** rule follows `tag.deleted` and `manifest.deleted` events of
//!   what it selects: the tag is deleted at the target, or the manifest
//!   (by digest) when no tag outside the rule's tag filter names it there
//!   (the [`Transport`] checks at the target). Each deletion done there
//!   leaves a `replication.delete` audit event here.
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
        event: i64,
        out: &mut Outcome,
    ) -> Result<()> {
        let name = match deletion {
            Deletion::Tag(t) => format!("{repository}:{t}"),
            Deletion::Manifest(d) => format!("{repository}@{d}"),
        };
        match transport.delete(rule, repository, deletion).await {
            Ok(Deleted::Deleted) => {
                let mut e = deleter(rule)
                    .actor()
                    .event(action::REPLICATION_DELETE)
                    .repository(repository.as_str())
                    .detail(json!({"rule": rule.name, "url": rule.url}));
                e = match deletion {
                    Deletion::Tag(t) => e.tag(t.as_str()),
                    Deletion::Manifest(d) => e.digest(d.as_str()),
                };
                self.meta.record_event(e).await?;
                out.deleted.push(name);
            }
            Ok(Deleted::Absent) => out.up_to_date += 1,
            Ok(Deleted::Kept(why)) => out.kept.push(format!("{name}: {why}")),
            Err(e) => out.note_failure(Some(event), format!("deleting {name}: {e}")),
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
        for made in self.meta.replicated_tags(rule.id).await? {
            if !selects_repository(rule, &made.repository) || !selects_tag(rule, made.tag.as_str())
            {
                continue;
            }
            let item = Item {
                repository: made.repository.to_string(),
                tag: made.tag.to_string(),
            };
            if listed.contains(&item) {
                continue;
            }
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
