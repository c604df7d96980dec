//! Client certificates as credentials (mutual TLS).
//!
//! The HTTP layer hands over the subject of a verified client certificate
//! (an RFC 4514 distinguished name); a site admin maps subjects to user or
//! robot accounts. A mapped subject authenticates as its account without
//! a password, for pulls and pushes (and registry tokens from `/token`);
//! like a login session it never manages the account (mints no tokens,
//! changes no password, administers nothing site-wide). An unmapped
//! subject is anonymous: the client gets the usual challenge. Explicit
//! credentials in `Authorization` win over the certificate.

use std::net::IpAddr;

use berth_meta::accounts::AccountKind;
use berth_meta::certificates::CertificateIdentity;
use serde_json::json;

use super::cache::through;
use super::identity::Identity;
use super::login::account_of;
use super::Authority;
use crate::{Caller, Error, Result};

/// The longest subject accepted.
pub const MAX_SUBJECT: usize = 1024;

fn check_subject(subject: &str) -> Result<()> {
    if subject.trim().is_empty()
        || subject.len() > MAX_SUBJECT
        || subject.contains(char::is_control)
    {
        return Err(Error::InvalidParameter(format!(
            "invalid certificate subject {subject:?}: give the RFC 4514 distinguished name \
             (`openssl x509 -noout -subject -nameopt RFC2253` prints it), at most \
             {MAX_SUBJECT} characters"
        )));
    }
    Ok(())
}

impl Authority {
    /// Who a verified client certificate with `subject` is: its mapped
    /// account (enabled), or anonymous. `login` marks a login proper (the
    /// token endpoint), which is audited.
    pub async fn authenticate_certificate(
        &self,
        subject: &str,
        ip: Option<IpAddr>,
        login: bool,
    ) -> Result<Identity> {
        if !self.enforced() {
            return Ok(Identity::anonymous());
        }
        let mapped = through(
            &self.meta,
            &self.cache.certificates,
            subject.to_owned(),
            async {
                Ok(self
                    .meta
                    .certificate_identity(subject)
                    .await?
                    .map(|m| m.account))
            },
        )
        .await?;
        let Some(name) = mapped else {
            return Ok(Identity::anonymous());
        };
        let Some(user) = self.account(&name).await? else {
            return Ok(Identity::anonymous());
        };
        if login {
            self.succeeded(
                &user.name,
                ip,
                json!({"method": "certificate", "subject": subject}),
            )
            .await;
        }
        Ok(Identity {
            account: Some(account_of(&user)),
            certificate: Some(subject.to_owned()),
            ..Identity::default()
        })
    }

    /// Every certificate mapping, by subject.
    pub async fn certificate_identities(&self) -> Result<Vec<CertificateIdentity>> {
        Ok(self.meta.certificate_identities().await?)
    }

    /// Maps `subject` to the user or robot `account`, replacing an earlier
    /// mapping of the subject.
    pub async fn map_certificate(
        &self,
        subject: &str,
        account: &str,
        caller: &Caller,
    ) -> Result<CertificateIdentity> {
        check_subject(subject)?;
        let user = self.meta.user(account).await?;
        if !user.is_some_and(|u| matches!(u.kind, AccountKind::User | AccountKind::Robot)) {
            return Err(Error::NotFound(format!(
                "no user or robot account named {account:?} to map the certificate to"
            )));
        }
        if !self
            .meta
            .map_certificate(subject, account, &caller.actor())
            .await?
        {
            return Err(Error::NotFound(format!("no account named {account:?}")));
        }
        self.meta
            .certificate_identity(subject)
            .await?
            .ok_or_else(|| Error::Internal("a certificate mapping vanished as it was made".into()))
    }

    /// Removes the mapping of `subject`.
    pub async fn unmap_certificate(&self, subject: &str, caller: &Caller) -> Result<()> {
        if self
            .meta
            .unmap_certificate(subject, &caller.actor())
            .await?
        {
            Ok(())
        } else {
            Err(Error::NotFound(format!(
                "no certificate subject {subject:?} is mapped"
            )))
        }
    }
}
