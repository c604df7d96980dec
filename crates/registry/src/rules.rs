//! Tag rules: protected and immutable tags.
//!
//! Rules live in the metadata database ([`berth_meta::TagRule`]) and are
//! cached here as one list (small: a handful per namespace; see
//! `snapshot`), reloaded after every change made through this registry
//! and, when other processes may change them (a shared PostgreSQL), after
//! the cache TTL. [`TagRules`] is
//! the pure matcher for one repository; enforcement builds a
//! [`berth_meta::TagGuard`] from it so that the decision is taken inside
//! the transaction that moves or deletes the tag.
//!
//! Semantics:
//! - **protected**: moving or deleting the tag needs a namespace admin;
//!   retention never deletes it ([`TagRules::is_protected`]).
//! - **immutable**: once the tag exists, nobody may move it to another
//!   manifest (pushing the same manifest again is fine); deleting it needs
//!   a namespace admin.

use std::sync::Arc;

use berth_meta::{TagGuard, TagRule, TagRuleKind};
use berth_oci::{Namespace, RepositoryName, Tag};

use crate::glob::{is_glob, scope_covers, scope_namespace};
use crate::{Caller, Error, Registry, Result};

/// The tag rules that apply to one repository.
#[derive(Debug, Clone, Default)]
pub struct TagRules {
    rules: Vec<TagRule>,
}

impl TagRules {
    /// The rules of `all` whose scope covers `repository`.
    pub fn for_repository(all: &[TagRule], repository: &RepositoryName) -> TagRules {
        TagRules {
            rules: all
                .iter()
                .filter(|r| scope_covers(&r.scope, repository))
                .cloned()
                .collect(),
        }
    }

    /// Whether no rule applies.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules that apply, by id.
    pub fn rules(&self) -> &[TagRule] {
        &self.rules
    }

    /// The first rule of `kind` matching `tag`.
    pub fn matching(&self, tag: &Tag, kind: TagRuleKind) -> Option<&TagRule> {
        self.rules
            .iter()
            .find(|r| r.kind == kind && crate::glob::matches(&r.pattern, tag.as_str()))
    }

    /// Whether `tag` is protected (never deleted by retention, moved or
    /// deleted only by a namespace admin).
    pub fn is_protected(&self, tag: &Tag) -> bool {
        self.matching(tag, TagRuleKind::Protected).is_some()
    }

    /// Whether `tag` is immutable (never moved once it exists).
    pub fn is_immutable(&self, tag: &Tag) -> bool {
        self.matching(tag, TagRuleKind::Immutable).is_some()
    }

    /// Why `caller` may not move `tag` to another manifest, if it may not:
    /// immutable for everyone, protected for all but namespace admins.
    pub fn refuse_move(&self, tag: &Tag, caller: &Caller) -> Option<String> {
        if let Some(r) = self.matching(tag, TagRuleKind::Immutable) {
            return Some(refusal(tag, r, "it cannot be overwritten"));
        }
        match self.matching(tag, TagRuleKind::Protected) {
            Some(r) if !caller.namespace_admin => {
                Some(refusal(tag, r, "only a namespace admin may move it"))
            }
            _ => None,
        }
    }

    /// Why `caller` may not delete `tag`, if it may not: protected and
    /// immutable tags are deleted only by namespace admins.
    pub fn refuse_delete(&self, tag: &Tag, caller: &Caller) -> Option<String> {
        if caller.namespace_admin {
            return None;
        }
        self.matching(tag, TagRuleKind::Immutable)
            .or_else(|| self.matching(tag, TagRuleKind::Protected))
            .map(|r| refusal(tag, r, "only a namespace admin may delete it"))
    }

    /// A guard refusing moves `caller` may not make ([`Self::refuse_move`]).
    pub(crate) fn move_guard(self: &Arc<Self>, caller: &Caller) -> TagGuard {
        let (rules, caller) = (self.clone(), caller.clone());
        Arc::new(move |tag: &Tag| rules.refuse_move(tag, &caller))
    }

    /// A guard refusing deletes `caller` may not make.
    pub(crate) fn delete_guard(self: &Arc<Self>, caller: &Caller) -> TagGuard {
        let (rules, caller) = (self.clone(), caller.clone());
        Arc::new(move |tag: &Tag| rules.refuse_delete(tag, &caller))
    }
}

/// `tag "v1.2.3" is immutable (rule "v*" on acme): it cannot be overwritten`
fn refusal(tag: &Tag, r: &TagRule, what: &str) -> String {
    format!(
        "tag {:?} is {} (rule {:?} on {}): {what}",
        tag.as_str(),
        r.kind,
        r.pattern,
        r.scope
    )
}

/// Checks that `scope` names `ns` or repositories below it and that
/// `pattern` is a tag glob.
fn validate(ns: &Namespace, scope: &str, pattern: &str) -> Result<()> {
    let ns = ns.as_str();
    let inside = scope == ns
        || scope
            .strip_prefix(ns)
            .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1);
    if !inside {
        return Err(Error::InvalidParameter(format!(
            "scope {scope:?} must be the namespace {ns:?} or a repository glob below it ({ns}/...)"
        )));
    }
    if !is_glob(scope) {
        berth_oci::validate_repository(scope).map_err(|e| Error::NameInvalid(e.to_string()))?;
    }
    let tag_chars = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '*' | '?');
    if pattern.is_empty() || pattern.len() > 128 || !pattern.chars().all(tag_chars) {
        return Err(Error::InvalidParameter(format!(
            "tag pattern {pattern:?} must be 1 to 128 characters of letters, digits, '_', '.', '-' and the globs '*', '?'"
        )));
    }
    Ok(())
}

impl Registry {
    /// Every rule (cached).
    async fn all_tag_rules(&self) -> Result<Arc<Vec<TagRule>>> {
        Ok(self.rules.get_or_load(|| self.meta.tag_rules()).await?)
    }

    /// The tag rules that apply to `repo`.
    pub async fn tag_rules(&self, repo: &RepositoryName) -> Result<TagRules> {
        Ok(TagRules::for_repository(&self.all_tag_rules().await?, repo))
    }

    /// The rules of namespace `ns` (scope `ns` or below it), by id.
    pub async fn namespace_tag_rules(&self, ns: &Namespace) -> Result<Vec<TagRule>> {
        Ok(self
            .all_tag_rules()
            .await?
            .iter()
            .filter(|r| scope_namespace(&r.scope) == ns.as_str())
            .cloned()
            .collect())
    }

    /// Adds a rule to namespace `ns`; `scope` is `ns` or a repository glob
    /// below it, `pattern` a tag glob. Returns the rule and whether it is
    /// new.
    pub async fn add_tag_rule(
        &self,
        ns: &Namespace,
        scope: &str,
        pattern: &str,
        kind: TagRuleKind,
        caller: &Caller,
    ) -> Result<(TagRule, bool)> {
        validate(ns, scope, pattern)?;
        let out = self
            .meta
            .add_tag_rule(scope, pattern, kind, &caller.actor())
            .await;
        self.rules.invalidate();
        Ok(out?)
    }

    /// Removes rule `id` of namespace `ns`.
    pub async fn remove_tag_rule(
        &self,
        ns: &Namespace,
        id: i64,
        caller: &Caller,
    ) -> Result<TagRule> {
        let out = self.meta.delete_tag_rule(ns, id, &caller.actor()).await;
        self.rules.invalidate();
        out?.ok_or_else(|| Error::NotFound(format!("no tag rule {id} in namespace {ns}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(tag: &str) -> Tag {
        Tag::parse(tag).unwrap()
    }

    fn n(name: &str) -> RepositoryName {
        RepositoryName::parse(name).unwrap()
    }

    fn rule(id: i64, scope: &str, pattern: &str, kind: TagRuleKind) -> TagRule {
        TagRule {
            id,
            scope: scope.into(),
            pattern: pattern.into(),
            kind,
            created_at: 0,
            created_by: None,
        }
    }

    fn all() -> Vec<TagRule> {
        vec![
            rule(1, "acme", "v*", TagRuleKind::Immutable),
            rule(2, "acme", "latest", TagRuleKind::Protected),
            rule(3, "acme/web-*", "main", TagRuleKind::Protected),
            rule(4, "other", "*", TagRuleKind::Protected),
        ]
    }

    fn admin(yes: bool) -> Caller {
        Caller {
            namespace_admin: yes,
            ..Caller::default()
        }
    }

    #[test]
    fn rules_apply_by_scope() {
        let web = TagRules::for_repository(&all(), &n("acme/web-api"));
        assert_eq!(
            web.rules().iter().map(|r| r.id).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert!(web.is_immutable(&t("v1.2.3")));
        assert!(!web.is_immutable(&t("1.2.3")));
        assert!(web.is_protected(&t("latest")) && web.is_protected(&t("main")));
        assert!(!web.is_protected(&t("v1")), "immutable is not protected");
        let tools = TagRules::for_repository(&all(), &n("acme/tools"));
        assert!(!tools.is_protected(&t("main")));
        assert!(TagRules::for_repository(&all(), &n("acmecorp/x")).is_empty());
        assert_eq!(
            tools
                .matching(&t("latest"), TagRuleKind::Protected)
                .map(|r| r.id),
            Some(2)
        );
    }

    #[test]
    fn moves_and_deletes() {
        let r = TagRules::for_repository(&all(), &n("acme/web-api"));
        let msg = r.refuse_move(&t("v1.2.3"), &admin(true)).unwrap();
        assert_eq!(
            msg,
            "tag \"v1.2.3\" is immutable (rule \"v*\" on acme): it cannot be overwritten"
        );
        assert!(r.refuse_move(&t("latest"), &admin(true)).is_none());
        let msg = r.refuse_move(&t("latest"), &admin(false)).unwrap();
        assert!(msg.contains("protected (rule \"latest\" on acme)"), "{msg}");
        let msg = r.refuse_move(&t("main"), &admin(false)).unwrap();
        assert!(msg.contains("rule \"main\" on acme/web-*"), "{msg}");
        assert!(r.refuse_move(&t("feature"), &admin(false)).is_none());

        assert!(r.refuse_delete(&t("v1"), &admin(true)).is_none());
        assert!(r.refuse_delete(&t("latest"), &admin(true)).is_none());
        assert!(r
            .refuse_delete(&t("v1"), &admin(false))
            .unwrap()
            .contains("immutable"));
        assert!(r
            .refuse_delete(&t("latest"), &admin(false))
            .unwrap()
            .contains("only a namespace admin may delete it"));
        assert!(r.refuse_delete(&t("feature"), &admin(false)).is_none());
    }

    #[test]
    fn validation() {
        let acme = Namespace::parse("acme").unwrap();
        assert!(validate(&acme, "acme", "v*").is_ok());
        assert!(validate(&acme, "acme/web-*", "v?.*").is_ok());
        assert!(validate(&acme, "acme/web", "latest").is_ok());
        assert!(validate(&acme, "acmecorp", "v*").is_err());
        assert!(validate(&acme, "**/x", "v*").is_err());
        assert!(validate(&acme, "acme/", "v*").is_err());
        assert!(validate(&acme, "acme", "").is_err());
        assert!(validate(&acme, "acme", "v/1").is_err());
        assert!(validate(&acme, "acme/Web", "v*").is_err());
        // A namespace is one name component: "acme/web" is not one, so no
        // rule can be asked for it (the type says so).
        assert!(Namespace::parse("acme/web").is_err());
    }
}
