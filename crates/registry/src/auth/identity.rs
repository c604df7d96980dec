//! Credentials as they arrive, and the identity they prove.

use std::net::IpAddr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use berth_oci::RepositoryName;

use super::permission::{Access, Account, TokenLimits};
use crate::Caller;

/// What a request presented in its `Authorization` header.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// Nothing.
    None,
    /// `Basic`: a user name and a password or access token.
    Basic {
        /// User name.
        username: String,
        /// Password or access token.
        password: String,
    },
    /// `Bearer`: a registry token (JWT) or an access token.
    Bearer(String),
    /// A header that is neither (undecodable Basic, unknown scheme).
    Malformed,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credentials::Bearer(_) => f.write_str("Bearer(***)"),
            Credentials::Malformed => f.write_str("Malformed"),
        }
    }
}

impl Credentials {
    /// Parses an `Authorization` header value (`None` for no header).
    pub fn from_header(value: Option<&str>) -> Credentials {
        let Some(value) = value.map(str::trim) else {
            return Credentials::None;
        };
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            let Some(text) = STANDARD
                .decode(rest)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
            else {
                return Credentials::Malformed;
            };
            match text.split_once(':') {
                Some((u, p)) => Credentials::Basic {
                    username: u.to_owned(),
                    password: p.to_owned(),
                },
                None => Credentials::Malformed,
            }
        } else if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
            Credentials::Bearer(rest.to_owned())
        } else {
            Credentials::Malformed
        }
    }
}

/// Access granted by a registry token (JWT), per repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Repository -> granted actions.
    pub repositories: Vec<(RepositoryName, Access)>,
    /// Whether listing the catalog was granted.
    pub catalog: bool,
    /// When the registry token expires (Unix seconds): a token issued in
    /// exchange for it never lives longer.
    pub expires_at: Option<i64>,
}

impl Grants {
    /// What the token grants on `repository`.
    pub fn on(&self, repository: &RepositoryName) -> Access {
        self.repositories
            .iter()
            .filter(|(r, _)| r == repository)
            .fold(Access::NONE, |a, (_, g)| a.union(*g))
    }
}

/// Who a request proved to be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// The account; `None` when anonymous.
    pub account: Option<Account>,
    /// The limits of the access token used (directly, or to obtain the
    /// registry token), if any.
    pub token: Option<TokenLimits>,
    /// With a registry token: what it grants (requests are held to it).
    pub grants: Option<Grants>,
    /// The client certificate subject the account was proved by (mutual
    /// TLS), when that was the credential: it pulls and pushes for the
    /// account, but, like a login session, never manages it.
    pub certificate: Option<String>,
    /// A CI job proved by an OpenID Connect token (keyless push): no
    /// account, only what the matching trust policies grant.
    pub workload: Option<Workload>,
}

/// A CI job (or other workload) that exchanged an OpenID Connect token
/// under trust policies: what it is and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// The token's issuer.
    pub issuer: String,
    /// The token's subject (`repo:acme/app:ref:refs/heads/main`).
    pub subject: String,
    /// The policies that matched, by name.
    pub policies: Vec<String>,
    /// Repository scopes ([`crate::glob::scope_covers`]) and what each
    /// grants.
    pub grants: Vec<(String, Access)>,
    /// When the session ends (Unix seconds): no token issued for it lives
    /// longer.
    pub expires_at: i64,
}

impl Workload {
    /// What the workload may do on `repository`.
    pub fn on(&self, repository: &RepositoryName) -> Access {
        self.grants
            .iter()
            .filter(|(scope, _)| crate::glob::scope_covers(scope, repository))
            .fold(Access::NONE, |a, (_, g)| a.union(*g))
    }

    /// How it is named in logs and audit events: `oidc:` and the subject.
    pub fn label(&self) -> String {
        format!("oidc:{}", self.subject)
    }
}

impl Identity {
    /// No credentials.
    pub fn anonymous() -> Identity {
        Identity::default()
    }

    /// The account name, if any.
    pub fn name(&self) -> Option<&str> {
        self.account.as_ref().map(|a| a.name.as_str())
    }

    /// Whether the credentials speak for the whole account: a password or
    /// an access token with the `admin` scope and no patterns. Never a
    /// registry token (it grants only the repository access it lists) nor
    /// a refresh token (a `docker login` session, which pulls and pushes
    /// for the account but outlives no password change): neither may
    /// manage the account (mint or list tokens, change the password,
    /// administer the site).
    pub fn unrestricted(&self) -> bool {
        self.grants.is_none()
            && self.certificate.is_none()
            && self.account.is_some()
            && self
                .token
                .as_ref()
                .is_none_or(|t| !t.session && t.scopes == Access::ALL && t.patterns.is_empty())
    }

    /// Whether the credentials are the account's password (not a token of
    /// any kind).
    pub fn by_password(&self) -> bool {
        self.account.is_some()
            && self.token.is_none()
            && self.grants.is_none()
            && self.certificate.is_none()
    }

    /// Whether this identity administers the whole registry: a site admin
    /// with [unrestricted](Self::unrestricted) credentials.
    pub fn is_site_admin(&self) -> bool {
        self.unrestricted()
            && self
                .account
                .as_ref()
                .is_some_and(|a| a.site_admin && a.kind == berth_meta::accounts::AccountKind::User)
    }

    /// Whether the account is a site admin, whichever credentials proved
    /// it (a registry token or a login session included): for reads a
    /// site admin needs past namespace policies (a pull of an image a
    /// vulnerability policy blocks), never to administer anything.
    pub fn is_site_admin_account(&self) -> bool {
        self.account
            .as_ref()
            .is_some_and(|a| a.site_admin && a.kind == berth_meta::accounts::AccountKind::User)
    }

    /// Who it is for logs and audit events: the account, or a workload's
    /// label (`oidc:repo:acme/app:ref:refs/heads/main`).
    pub fn label(&self) -> Option<String> {
        self.name()
            .map(str::to_owned)
            .or_else(|| self.workload.as_ref().map(Workload::label))
    }

    /// The [`Caller`] to hand the core services.
    pub fn caller(&self, ip: Option<IpAddr>, namespace_admin: bool) -> Caller {
        Caller {
            account: self.label(),
            ip,
            namespace_admin,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_headers_parse() {
        assert_eq!(Credentials::from_header(None), Credentials::None);
        assert_eq!(
            Credentials::from_header(Some("Basic YWxpY2U6czNjcjN0OndpdGg6Y29sb25z")),
            Credentials::Basic {
                username: "alice".into(),
                password: "s3cr3t:with:colons".into()
            }
        );
        assert_eq!(
            Credentials::from_header(Some("bearer abc.def.ghi")),
            Credentials::Bearer("abc.def.ghi".into())
        );
        assert_eq!(
            Credentials::from_header(Some("Basic !!!")),
            Credentials::Malformed
        );
        assert_eq!(
            Credentials::from_header(Some("Basic bm9jb2xvbg==")),
            Credentials::Malformed
        );
        assert_eq!(
            Credentials::from_header(Some("Digest x")),
            Credentials::Malformed
        );
        assert_eq!(
            Credentials::from_header(Some("Bearer")),
            Credentials::Malformed
        );
        let dbg = format!(
            "{:?}",
            Credentials::from_header(Some("Basic YWxpY2U6czNjcjN0"))
        );
        assert!(!dbg.contains("s3cr3t"), "{dbg}");
    }
}
