//! Keyless push from CI: OpenID Connect tokens exchanged for registry
//! access under trust policies (as PyPI's trusted publishing does).
//!
//! A CI job (GitHub Actions with `permissions: id-token: write`, GitLab
//! with `id_tokens`, ...) asks its platform for an ID token whose audience
//! is this registry and logs in with the user name [`USERNAME`] and the
//! token as the password (`docker login -u oidc --password "$ID_TOKEN"`,
//! or `POST /token` with `grant_type=password`). The exchange:
//!
//! 1. reads the token's issuer (unverified) and loads the trust policies
//!    naming it: an issuer no policy names is refused without contacting
//!    it;
//! 2. verifies the signature with the issuer's key (`issuer`: discovery,
//!    JWKS, cache), the issuer, the audience, expiry and not-before (with
//!    [`jwt::LEEWAY_SECS`] of skew), RS256/384/512, PS256, ES256, ES384;
//! 3. matches the claims against every policy (`policy`): the union of
//!    what the matching policies grant is the workload's access;
//! 4. records the token's `jti` until it expires: a token is exchanged
//!    once, a replay is refused;
//! 5. records the exchange in the audit log with the token's claims (never
//!    the token).
//!
//! The identity it yields is a [`Workload`]: no account, only its grants,
//! for a session of [`SESSION_SECS`]. Registry tokens issued for it carry
//! the workload in their `wkl` claim; a login that asks for a refresh
//! token (`docker login`) gets a *session token*, a registry token that
//! carries the whole grants, which the client then presents instead of
//! the (spent) ID token, as a refresh token or as the password of
//! [`USERNAME`].

use std::collections::BTreeMap;
use std::net::IpAddr;

use berth_meta::audit::{action, Actor};
pub use berth_meta::oidc::OidcPolicy;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{json, Value};

use super::identity::{Identity, Workload};
use super::jwt::{self, Claims, ResourceAccess, WorkloadClaim};
use super::permission::Access;
use super::{scope, secret, Authority};
use crate::{Caller, Error, Result};

pub mod issuer;
pub mod policy;

/// The user name that marks a keyless login (no account can have it).
pub const USERNAME: &str = "oidc";

/// How long a keyless session lasts (seconds): registry tokens issued for
/// it never outlive it.
pub const SESSION_SECS: i64 = 15 * 60;

/// Algorithms accepted on ID tokens.
const ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// What a policy names of a token's claims, recorded with each exchange.
fn recorded_claims(claims: &BTreeMap<String, Value>) -> Value {
    // Every claim but large or nested ones: ID tokens carry no secrets,
    // and an audit entry should say exactly which job it was.
    let kept: serde_json::Map<String, Value> = claims
        .iter()
        .filter(|(_, v)| match v {
            Value::String(s) => s.len() <= 512,
            Value::Number(_) | Value::Bool(_) => true,
            Value::Array(a) => a.len() <= 8 && a.iter().all(Value::is_string),
            _ => false,
        })
        .take(64)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Value::Object(kept)
}

fn string_claim<'a>(claims: &'a BTreeMap<String, Value>, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(Value::as_str)
}

fn audiences(claims: &BTreeMap<String, Value>) -> Vec<String> {
    match claims.get("aud") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// The unverified issuer of a compact JWT, to find its policies.
fn peek_issuer(token: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Peek {
        iss: String,
    }
    jsonwebtoken::dangerous::insecure_decode::<Peek>(token)
        .ok()
        .map(|d| d.claims.iss)
}

/// A refused exchange: the reason for the client and the audit log, and
/// what is known of the token.
struct Refusal {
    why: String,
    issuer: Option<String>,
    subject: Option<String>,
    claims: Option<Value>,
}

impl Refusal {
    fn new(why: impl Into<String>) -> Refusal {
        Refusal {
            why: why.into(),
            issuer: None,
            subject: None,
            claims: None,
        }
    }
}

impl Authority {
    /// Every trust policy.
    pub async fn oidc_policies(&self) -> Result<Vec<OidcPolicy>> {
        Ok(self.meta.oidc_policies().await?)
    }

    /// Adds a trust policy (site admins; the caller checked).
    pub async fn add_oidc_policy(&self, policy: OidcPolicy, caller: &Caller) -> Result<OidcPolicy> {
        let mut policy = policy;
        policy::validate(&mut policy)?;
        let actor = caller.actor();
        policy.created_at = actor.at;
        policy.created_by = Some(actor.name.clone());
        if !self.meta.add_oidc_policy(&policy, &actor).await? {
            return Err(Error::Conflict(format!(
                "a trust policy named {} exists: remove it first or pick another name",
                policy.name
            )));
        }
        Ok(policy)
    }

    /// Removes the trust policy `name`. Sessions and registry tokens it
    /// granted end when they expire (at most [`SESSION_SECS`]).
    pub async fn remove_oidc_policy(&self, name: &str, caller: &Caller) -> Result<()> {
        if !self.meta.remove_oidc_policy(name, &caller.actor()).await? {
            return Err(Error::NotFound(format!("no trust policy named {name}")));
        }
        Ok(())
    }

    /// A keyless login: `password` is an ID token to exchange, or a
    /// session token an earlier exchange returned.
    pub(super) async fn oidc_login(&self, password: &str, ip: Option<IpAddr>) -> Result<Identity> {
        if jsonwebtoken::decode_header(password).is_ok_and(|h| h.alg == Algorithm::HS256) {
            let id = self.verify_registry_token(password).await?;
            return match id.workload {
                Some(_) if id.grants.is_none() => Ok(id),
                _ => Err(Error::Unauthorized(
                    "the password of user oidc is an OIDC ID token or a keyless session token"
                        .into(),
                )),
            };
        }
        // Not throttled like passwords: a signed token cannot be guessed,
        // and checking one costs no argon2 (the issuer is protected by the
        // refetch interval, the audit log by its failure budget).
        match self.exchange(password).await {
            Ok((workload, claims)) => {
                let actor = Actor {
                    name: workload.label(),
                    ip: ip.map(|i| i.to_string()),
                    at: berth_meta::now_ms(),
                };
                let detail = json!({
                    "method": "oidc",
                    "issuer": workload.issuer,
                    "policies": workload.policies,
                    "claims": recorded_claims(&claims),
                });
                // The exchange is audited before it is answered: no
                // registry access without its record.
                self.meta
                    .record_event(actor.event(action::LOGIN).detail(detail))
                    .await?;
                tracing::info!(
                    subject = %workload.subject,
                    issuer = %workload.issuer,
                    policies = ?workload.policies,
                    "keyless login"
                );
                Ok(Identity {
                    workload: Some(workload),
                    ..Identity::default()
                })
            }
            Err(Err(e)) => Err(e),
            Err(Ok(refusal)) => {
                self.oidc_refused(ip, &refusal).await;
                Err(Error::Unauthorized(format!(
                    "keyless login refused: {}",
                    refusal.why
                )))
            }
        }
    }

    async fn oidc_refused(&self, ip: Option<IpAddr>, r: &Refusal) {
        let name = match &r.subject {
            Some(s) => format!("oidc:{s}"),
            None => "oidc".to_owned(),
        };
        tracing::info!(user = %name, issuer = ?r.issuer, ip = ?ip, "keyless login refused: {}", r.why);
        if let super::failures::Verdict::Suppress { .. } =
            self.failure_log.admit(std::time::Instant::now())
        {
            return;
        }
        let actor = Actor {
            name,
            ip: ip.map(|i| i.to_string()),
            at: berth_meta::now_ms(),
        };
        let mut detail = json!({"method": "oidc", "reason": r.why});
        if let Some(i) = &r.issuer {
            detail["issuer"] = json!(i);
        }
        if let Some(c) = &r.claims {
            detail["claims"] = c.clone();
        }
        if let Err(e) = self
            .meta
            .record_event(actor.event(action::LOGIN_FAILED).detail(detail))
            .await
        {
            tracing::warn!(error = %e, "recording a refused keyless login failed");
        }
    }

    /// Verifies `token` and matches it: the workload and the claims, or
    /// the refusal (`Ok`) or a failure of berth's own (`Err`).
    async fn exchange(
        &self,
        token: &str,
    ) -> std::result::Result<(Workload, BTreeMap<String, Value>), Result<Refusal>> {
        jwt::provider();
        let refuse = |why: String| Err(Ok(Refusal::new(why)));
        let Some(issuer) = peek_issuer(token) else {
            return refuse(
                "the password is not an OIDC ID token (a JWT with an `iss` claim)".into(),
            );
        };
        let policies = self
            .meta
            .oidc_policies_of(&issuer)
            .await
            .map_err(|e| Err(e.into()))?;
        let with_issuer = |mut r: Refusal| {
            r.issuer = Some(issuer.clone());
            Err(Ok(r))
        };
        if policies.is_empty() {
            return with_issuer(Refusal::new(format!(
                "no trust policy of this registry names the issuer {issuer}"
            )));
        }
        let header = match jsonwebtoken::decode_header(token) {
            Ok(h) if ALGORITHMS.contains(&h.alg) => h,
            Ok(h) => {
                return with_issuer(Refusal::new(format!(
                    "the token's algorithm {:?} is not accepted (RS256, PS256, ES256, ...)",
                    h.alg
                )))
            }
            Err(_) => return with_issuer(Refusal::new("the token's header is malformed")),
        };
        let key = match self.issuers.key(&issuer, header.kid.as_deref()).await {
            Ok(Some(k)) => k,
            Ok(None) => {
                return with_issuer(Refusal::new(format!(
                    "the issuer has no key {:?} (a key it rotated out, or a forged token)",
                    header.kid.as_deref().unwrap_or("")
                )))
            }
            Err(Error::Unauthorized(why)) => return with_issuer(Refusal::new(why)),
            Err(e) => return Err(Err(e)),
        };
        if key.alg.is_some_and(|a| a != header.alg) {
            return with_issuer(Refusal::new("the token's algorithm is not its key's"));
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&issuer]);
        let mut wanted: Vec<&str> = policies.iter().map(|p| p.audience.as_str()).collect();
        wanted.dedup();
        validation.set_audience(&wanted);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = jwt::LEEWAY_SECS as u64;
        validation.validate_nbf = true;
        let claims =
            match jsonwebtoken::decode::<BTreeMap<String, Value>>(token, &key.key, &validation) {
                Ok(d) => d.claims,
                Err(e) => {
                    let why = match e.kind() {
                        ErrorKind::ExpiredSignature => "the token has expired",
                        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)",
                        ErrorKind::InvalidAudience => {
                            "the token's audience (aud) is not one a trust policy accepts"
                        }
                        ErrorKind::InvalidIssuer => "the token's issuer does not match",
                        ErrorKind::InvalidSignature => "the token's signature does not verify",
                        ErrorKind::MissingRequiredClaim(_) => "the token lacks exp, iss or aud",
                        _ => "the token is malformed",
                    };
                    return with_issuer(Refusal::new(why));
                }
            };
        let subject = string_claim(&claims, "sub").unwrap_or_default().to_owned();
        let refusal = |why: String| Refusal {
            why,
            issuer: Some(issuer.clone()),
            subject: Some(subject.clone()),
            claims: Some(recorded_claims(&claims)),
        };
        let auds = audiences(&claims);
        let mut names = Vec::new();
        let mut grants = Vec::new();
        let mut reasons = Vec::new();
        for p in &policies {
            match policy::mismatch(p, &issuer, &auds, &claims) {
                None => {
                    names.push(p.name.clone());
                    grants.push(policy::grant(p));
                }
                Some(why) => reasons.push(format!("{}: {why}", p.name)),
            }
        }
        if names.is_empty() {
            tracing::debug!(?reasons, "no trust policy matched");
            return Err(Ok(refusal(format!(
                "no trust policy matches the token of {subject:?} (checked: {})",
                reasons.join("; ")
            ))));
        }
        let Some(jti) = string_claim(&claims, "jti").filter(|j| !j.is_empty()) else {
            return Err(Ok(refusal(
                "the token has no id (jti), so a replay could not be told".into(),
            )));
        };
        let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
        let now = berth_meta::now_ms();
        let fresh = self
            .meta
            .claim_oidc_token(&issuer, jti, (exp + jwt::LEEWAY_SECS) * 1000, now)
            .await
            .map_err(|e| Err(e.into()))?;
        if !fresh {
            return Err(Ok(refusal(format!(
                "the token {jti} was exchanged before (a replay); ask the CI platform for a \
                 new one"
            ))));
        }
        let workload = Workload {
            issuer: issuer.clone(),
            subject,
            policies: names,
            grants,
            expires_at: now / 1000 + SESSION_SECS,
        };
        Ok((workload, claims))
    }

    /// A session token for a keyless login: a registry token carrying the
    /// workload's whole grants, valid until the session ends.
    pub(super) fn session_token(&self, w: &Workload) -> Result<String> {
        let now = berth_meta::now_ms() / 1000;
        let claims = Claims {
            iss: "berth".into(),
            sub: String::new(),
            aud: self.settings.service.clone(),
            exp: w.expires_at,
            nbf: now,
            iat: now,
            jti: secret::random_string(16)?,
            access: Vec::new(),
            tid: None,
            sct: None,
            wkl: Some(workload_claim(w, true)),
        };
        jwt::sign(&self.key, &claims).map_err(|e| Error::Internal(e.to_string()))
    }
}

/// The `wkl` claim of a workload.
pub(super) fn workload_claim(w: &Workload, session: bool) -> WorkloadClaim {
    WorkloadClaim {
        iss: w.issuer.clone(),
        sub: w.subject.clone(),
        pol: w.policies.clone(),
        grants: w
            .grants
            .iter()
            .map(|(scope, access)| ResourceAccess {
                kind: "scope".into(),
                name: scope.clone(),
                actions: access.names().into_iter().map(str::to_owned).collect(),
            })
            .collect(),
        ses: session,
    }
}

/// The workload a `wkl` claim describes, its session ending at `exp`.
pub(super) fn workload_of(c: &WorkloadClaim, exp: i64) -> Workload {
    Workload {
        issuer: c.iss.clone(),
        subject: c.sub.clone(),
        policies: c.pol.clone(),
        grants: c
            .grants
            .iter()
            .filter(|g| g.kind == "scope")
            .map(|g| (g.name.clone(), scope::parse_actions(&g.actions.join(","))))
            .filter(|(_, a): &(String, Access)| !a.is_empty())
            .collect(),
        expires_at: exp,
    }
}
