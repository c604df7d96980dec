//! Trust policies as pure rules: validating a new one, and matching the
//! verified claims of a token against them.
//!
//! A policy matches a token when the token's issuer and audience are the
//! policy's and every claim condition matches: the claim is present, is a
//! string (or a number or boolean, compared as its JSON text) and matches
//! the condition's glob (the syntax of [`crate::glob`]: `*` stops at `/`,
//! `**` does not). A policy must pin the token to its source with at least
//! one identifying claim ([`IDENTIFYING`]) without a wildcard-only value:
//! a policy that any repository on GitHub satisfies would let anyone push.

use std::collections::BTreeMap;

use berth_meta::oidc::OidcPolicy;
use serde_json::Value;

use crate::auth::permission::{Access, Action};
use crate::{glob, Error, Result};

/// Claims that say whose job a token is: a policy needs a condition on
/// one of them. GitHub Actions: `repository`, `repository_id`,
/// `repository_owner`, `repository_owner_id`, `sub`; GitLab:
/// `project_path`, `project_id`, `namespace_path`, `namespace_id`.
pub const IDENTIFYING: &[&str] = &[
    "sub",
    "repository",
    "repository_id",
    "repository_owner",
    "repository_owner_id",
    "project_path",
    "project_id",
    "namespace_path",
    "namespace_id",
];

/// Longest policy name.
pub const MAX_NAME: usize = 64;

/// Checks a policy an administrator asks for, and normalises its scopes.
pub fn validate(p: &mut OidcPolicy) -> Result<()> {
    let bad = |m: String| Err(Error::InvalidParameter(m));
    if p.name.is_empty()
        || p.name.len() > MAX_NAME
        || !p
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return bad(format!(
            "policy name {:?}: use 1 to {MAX_NAME} letters, digits, '-', '_' or '.'",
            p.name
        ));
    }
    super::issuer::check_issuer_url(&p.issuer)?;
    if p.audience.trim().is_empty() {
        return bad("the audience is empty: give the `aud` the CI job requests its token for (for example the registry's host name)".into());
    }
    let identifying = p.claims.iter().any(|(k, v)| {
        IDENTIFYING.contains(&k.as_str()) && v.chars().any(|c| !matches!(c, '*' | '?' | '/'))
    });
    if !identifying {
        return bad(format!(
            "policy {:?} does not pin the token's source: add a condition on one of {} \
             (for GitHub Actions, repository=OWNER/REPO or repository_owner_id=ID)",
            p.name,
            IDENTIFYING.join(", ")
        ));
    }
    if let Some((k, _)) = p.claims.iter().find(|(k, _)| k.is_empty()) {
        return bad(format!("claim condition with an empty name: {k:?}"));
    }
    let repos = p.repositories.trim_matches('/');
    if repos.is_empty() || repos == "**" {
        return bad(
            "give the repositories the policy grants: a namespace (acme) or a glob (acme/app-*)"
                .into(),
        );
    }
    p.repositories = repos.to_owned();
    let mut actions = Vec::new();
    for s in &p.scopes {
        match Action::parse(s.trim()) {
            Some(Action::Admin) | None => {
                return bad(format!(
                    "scope {s:?}: a trust policy grants pull, push or delete"
                ))
            }
            Some(a) => actions.push(a),
        }
    }
    if actions.is_empty() {
        return bad("give the scopes the policy grants (pull, push, delete)".into());
    }
    p.scopes = Access::of_scopes(&actions.iter().map(|a| a.as_str()).collect::<Vec<_>>())
        .names()
        .into_iter()
        .map(str::to_owned)
        .collect();
    Ok(())
}

/// A claim's value as a condition sees it.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Why a policy does not match, for the audit log; `None` if it matches.
pub fn mismatch(
    p: &OidcPolicy,
    issuer: &str,
    audiences: &[String],
    claims: &BTreeMap<String, Value>,
) -> Option<String> {
    if p.issuer != issuer {
        return Some(format!("issuer is not {}", p.issuer));
    }
    if !audiences.contains(&p.audience) {
        return Some(format!("audience is not {}", p.audience));
    }
    for (name, pattern) in &p.claims {
        match claims.get(name).and_then(text) {
            None => return Some(format!("claim {name} is missing")),
            Some(v) if !glob::matches(pattern, &v) => {
                return Some(format!("claim {name}={v:?} does not match {pattern:?}"))
            }
            Some(_) => {}
        }
    }
    None
}

/// What a matching policy grants.
pub fn grant(p: &OidcPolicy) -> (String, Access) {
    (p.repositories.clone(), Access::of_scopes(&p.scopes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy() -> OidcPolicy {
        OidcPolicy {
            name: "acme-ci".into(),
            issuer: "https://token.actions.githubusercontent.com".into(),
            audience: "registry.example.com".into(),
            claims: [
                ("repository".to_owned(), "acme/app".to_owned()),
                ("ref".to_owned(), "refs/heads/*".to_owned()),
            ]
            .into(),
            repositories: "acme".into(),
            scopes: vec!["push".into()],
            created_at: 0,
            created_by: None,
        }
    }

    fn claims(v: Value) -> BTreeMap<String, Value> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn policies_match_issuer_audience_and_every_claim() {
        let p = policy();
        let iss = "https://token.actions.githubusercontent.com";
        let aud = vec!["registry.example.com".to_owned()];
        let ok = claims(json!({"repository": "acme/app", "ref": "refs/heads/main"}));
        assert_eq!(mismatch(&p, iss, &aud, &ok), None);
        let other = claims(json!({"repository": "acme/other", "ref": "refs/heads/main"}));
        assert!(mismatch(&p, iss, &aud, &other)
            .unwrap()
            .contains("repository"));
        let tag = claims(json!({"repository": "acme/app", "ref": "refs/tags/v1"}));
        assert!(mismatch(&p, iss, &aud, &tag).is_some());
        // `*` does not cross `/`.
        let branch = claims(json!({"repository": "acme/app", "ref": "refs/heads/a/b"}));
        assert!(mismatch(&p, iss, &aud, &branch).is_some());
        let missing = claims(json!({"repository": "acme/app"}));
        assert!(mismatch(&p, iss, &aud, &missing)
            .unwrap()
            .contains("missing"));
        assert!(mismatch(&p, "https://gitlab.com", &aud, &ok).is_some());
        assert!(mismatch(&p, iss, &["other".to_owned()], &ok).is_some());
        // Numbers compare as their text.
        let mut by_id = policy();
        by_id.claims = [("repository_owner_id".to_owned(), "42".to_owned())].into();
        let n = claims(json!({"repository_owner_id": 42}));
        assert_eq!(mismatch(&by_id, iss, &aud, &n), None);
    }

    #[test]
    fn policies_must_pin_the_source_and_grant_no_admin() {
        let mut p = policy();
        validate(&mut p).unwrap();
        assert_eq!(p.scopes, vec!["pull", "push"]);
        let mut open = policy();
        open.claims = [("ref".to_owned(), "refs/heads/main".to_owned())].into();
        assert!(validate(&mut open).is_err());
        let mut wild = policy();
        wild.claims = [("repository".to_owned(), "*/*".to_owned())].into();
        assert!(validate(&mut wild).is_err());
        let mut admin = policy();
        admin.scopes = vec!["admin".into()];
        assert!(validate(&mut admin).is_err());
        let mut everything = policy();
        everything.repositories = "**".into();
        assert!(validate(&mut everything).is_err());
        let mut plain = policy();
        plain.issuer = "http://ci.example.com".into();
        assert!(validate(&mut plain).is_err());
        let mut name = policy();
        name.name = "a b".into();
        assert!(validate(&mut name).is_err());
    }
}
