//! Signature verification and enforcement: the trust material of each
//! namespace, the verdict per manifest, and the check on the pull path.
//!
//! - **Trust material** (`berth trust add acme --cosign-key cosign.pub`,
//!   `--notation-root ca.pem`): public keys (cosign signatures, sigstore
//!   bundles) and X.509 roots (notation signatures) per namespace, stored
//!   in the metadata database and held
//!   here as one parsed snapshot of every namespace's keys and policy
//!   (small: a few keys per namespace), kept through the invalidation
//!   seam as tag rules are: changes through this process drop it, and
//!   with replicas sharing a PostgreSQL so does the database's
//!   notification of a change through another. Keyless trust (`fulcio`:
//!   a Fulcio root, the identities allowed, a Rekor key) is stored as
//!   JSON in the same table.
//! - **Verdicts** (see `verdicts`): whether trusted material verifies a
//!   signature of a manifest ([`berth_trust`] does the cryptography). A
//!   verdict is a function of its inputs: the manifest, its signature
//!   manifests (the `sha256-<hex>.sig` tag, the sigstore bundle and
//!   notation referrers) and the namespace's trust (its fingerprint). It
//!   is cached in memory (on replicas too, through the invalidation
//!   seam) and stored in the database with those inputs, and recomputed
//!   when an input changed: a signature push or a trust change
//!   invalidates it by construction, with no invalidation message to
//!   lose.
//! - **Policy** per namespace: `enforce` refuses a pull (manifest `GET` by
//!   tag or digest, image or index) without a verified signature, 403
//!   DENIED naming the policy; `warn` allows it, logs and counts it. The
//!   reads signing itself needs stay allowed: HEAD requests, the
//!   `sha256-<hex>.sig`/`.att`/`.sbom` tags, manifests that are signatures
//!   or have a subject (artifacts, referrers), blobs, tag lists and the
//!   referrers API (none of which reach this check). A platform image is
//!   allowed when an index of the repository listing it is verified.
//!   Namespaces without a policy cost one lookup in the in-memory
//!   snapshot per pull.

use std::collections::HashMap;
use std::sync::Arc;

use berth_meta::trust::{TrustKey, TrustPolicy};
use berth_oci::Namespace;
use berth_trust::notation::RootCerts;
use berth_trust::{FulcioTrust, PublicKey, Trust, TrustedKey, TrustedRoot};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::{Caller, Error, Registry, Result};

mod evidence;
mod verdicts;

pub use berth_trust::cosign::signature_tag;
pub use berth_trust::{Format, FulcioConfig, Reason, Verdict};
pub(crate) use evidence::is_signature_type;
pub use verdicts::VerdictView;
pub(crate) use verdicts::Verdicts;

/// What a namespace's policy does to unverified pulls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Refuse them (403 DENIED).
    Enforce,
    /// Allow them; log and count them.
    Warn,
}

impl Mode {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Warn => "warn",
        }
    }

    /// `enforce`, `warn`; `off` (no policy) is `Ok(None)`.
    pub fn parse(s: &str) -> Result<Option<Mode>> {
        match s {
            "enforce" => Ok(Some(Mode::Enforce)),
            "warn" => Ok(Some(Mode::Warn)),
            "off" | "none" => Ok(None),
            other => Err(Error::InvalidParameter(format!(
                "signature policy {other:?} must be enforce, warn or off"
            ))),
        }
    }
}

/// One namespace's trust material and policy, parsed.
#[derive(Debug, Clone, Default)]
pub(crate) struct NamespaceTrust {
    pub(crate) trust: Trust,
    /// SHA-256 over the material's kinds, names and fingerprints: what a
    /// stored verdict was computed against.
    pub(crate) fingerprint: String,
    pub(crate) mode: Option<Mode>,
}

/// Every namespace's trust, by namespace name.
pub(crate) type TrustConfig = HashMap<String, NamespaceTrust>;

/// A key as the management API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyView {
    /// Its name in the namespace.
    pub name: String,
    /// `cosign-key`, `notation-root` or `fulcio`.
    pub kind: String,
    /// `ecdsa-p256`, `ecdsa-p384`, `rsa`, `ed25519`; for a root `x509-`
    /// and its key's kind; `keyless` for a `fulcio` trust.
    pub algorithm: String,
    /// SHA-256 of its DER (of the first certificate's), hex.
    pub fingerprint: String,
    /// The PEM (of a `fulcio` trust: its roots).
    pub public_key: String,
    /// A `fulcio` trust: its roots, identity, OIDC issuer and Rekor keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyless: Option<FulcioConfig>,
    /// When it was added (Unix ms).
    pub created_at: i64,
    /// Who added it.
    pub created_by: Option<String>,
}

impl From<TrustKey> for KeyView {
    fn from(k: TrustKey) -> KeyView {
        let keyless = (k.kind == FULCIO_KIND)
            .then(|| serde_json::from_str::<FulcioConfig>(&k.material).ok())
            .flatten();
        KeyView {
            name: k.name,
            kind: k.kind,
            algorithm: k.algorithm,
            fingerprint: k.fingerprint,
            public_key: keyless
                .as_ref()
                .map_or(k.material, |c| c.fulcio_roots.clone()),
            keyless,
            created_at: k.created_at,
            created_by: k.created_by,
        }
    }
}

/// A namespace's trust as the management API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TrustView {
    /// The namespace.
    pub namespace: Namespace,
    /// `enforce`, `warn`, or `None` (off).
    pub policy: Option<Mode>,
    /// When and by whom the policy was set.
    pub policy_updated_at: Option<i64>,
    /// Who set it.
    pub policy_updated_by: Option<String>,
    /// The trusted keys, by name.
    pub keys: Vec<KeyView>,
}

const KEY_KIND: &str = "cosign-key";
const ROOT_KIND: &str = "notation-root";
const FULCIO_KIND: &str = "fulcio";

/// Trust material to add to a namespace, as PEM.
#[derive(Debug, Clone, Copy)]
pub enum Material<'a> {
    /// A cosign public key (`cosign.pub`).
    CosignKey(&'a str),
    /// A root CA certificate for notation signatures (`ca.pem`).
    NotationRoot(&'a str),
    /// Keyless signatures: a Fulcio root, the identities allowed, the
    /// Rekor key.
    Fulcio(&'a FulcioConfig),
}

/// Key names: what a CLI flag and a URL path segment carry unescaped.
fn validate_name(name: &str) -> Result<()> {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > 64 || !name.chars().all(ok) {
        return Err(Error::InvalidParameter(format!(
            "key name {name:?} must be 1 to 64 characters of a-z, 0-9, '.', '_' and '-'"
        )));
    }
    Ok(())
}

fn build(keys: Vec<TrustKey>, policies: Vec<TrustPolicy>) -> Result<TrustConfig> {
    let mut out = TrustConfig::new();
    for k in keys {
        let corrupt = |e: String| {
            Error::Internal(format!(
                "stored trust material {:?} of {} no longer parses: {e}",
                k.name, k.namespace
            ))
        };
        let t = &mut out
            .entry(k.namespace.as_str().to_owned())
            .or_default()
            .trust;
        if k.kind == FULCIO_KIND {
            let config: FulcioConfig =
                serde_json::from_str(&k.material).map_err(|e| corrupt(e.to_string()))?;
            t.fulcio
                .push(FulcioTrust::new(&k.name, &config).map_err(|e| corrupt(e.to_string()))?);
        } else if k.kind == ROOT_KIND {
            let certs = RootCerts::from_pem(&k.material).map_err(|e| corrupt(e.to_string()))?;
            t.roots.push(TrustedRoot {
                name: k.name,
                certs,
            });
        } else {
            let key = PublicKey::from_pem(&k.material).map_err(|e| corrupt(e.to_string()))?;
            t.keys.push(TrustedKey { name: k.name, key });
        }
    }
    for p in policies {
        out.entry(p.namespace.as_str().to_owned()).or_default().mode = Mode::parse(&p.mode)?;
    }
    for t in out.values_mut() {
        let mut h = Sha256::new();
        for k in &t.trust.keys {
            h.update(k.name.as_bytes());
            h.update([0]);
            h.update(k.key.fingerprint().as_bytes());
            h.update([0]);
        }
        for r in &t.trust.roots {
            h.update(ROOT_KIND.as_bytes());
            h.update([0]);
            h.update(r.name.as_bytes());
            h.update([0]);
            h.update(r.certs.fingerprint().as_bytes());
            h.update([0]);
        }
        for f in &t.trust.fulcio {
            h.update(FULCIO_KIND.as_bytes());
            h.update([0]);
            h.update(f.name.as_bytes());
            h.update([0]);
            h.update(f.fingerprint().as_bytes());
            h.update([0]);
        }
        t.fingerprint = hex::encode(h.finalize());
    }
    Ok(out)
}

impl Registry {
    /// Every namespace's trust (cached).
    pub(crate) async fn trust_config(&self) -> Result<Arc<TrustConfig>> {
        self.trust
            .get_or_load(|| async {
                let keys = self.meta.trust_keys().await?;
                let policies = self.meta.trust_policies().await?;
                build(keys, policies)
            })
            .await
    }

    /// The trust material and policy of `ns`.
    pub async fn namespace_trust(&self, ns: &Namespace) -> Result<TrustView> {
        let mut views = self.all_trust(Some(ns)).await?;
        Ok(views.pop().unwrap_or_else(|| TrustView {
            namespace: ns.clone(),
            policy: None,
            policy_updated_at: None,
            policy_updated_by: None,
            keys: Vec::new(),
        }))
    }

    /// The trust of every namespace that has keys or a policy (only `ns`
    /// when given), by namespace.
    pub async fn all_trust(&self, ns: Option<&Namespace>) -> Result<Vec<TrustView>> {
        let keys = self.meta.trust_keys().await?;
        let policies = self.meta.trust_policies().await?;
        let mut by_ns: std::collections::BTreeMap<String, TrustView> = Default::default();
        let wanted = |n: &Namespace| ns.is_none_or(|w| w == n);
        for p in policies.into_iter().filter(|p| wanted(&p.namespace)) {
            by_ns.insert(
                p.namespace.as_str().to_owned(),
                TrustView {
                    namespace: p.namespace.clone(),
                    policy: Mode::parse(&p.mode)?,
                    policy_updated_at: Some(p.updated_at),
                    policy_updated_by: p.updated_by,
                    keys: Vec::new(),
                },
            );
        }
        for k in keys.into_iter().filter(|k| wanted(&k.namespace)) {
            by_ns
                .entry(k.namespace.as_str().to_owned())
                .or_insert_with(|| TrustView {
                    namespace: k.namespace.clone(),
                    policy: None,
                    policy_updated_at: None,
                    policy_updated_by: None,
                    keys: Vec::new(),
                })
                .keys
                .push(k.into());
        }
        Ok(by_ns.into_values().collect())
    }

    /// Adds trust material to what `ns` trusts, under `name` (default:
    /// `cosign-` or `notation-` and the start of its fingerprint): a cosign
    /// public key, or a root certificate for notation signatures.
    /// Verdicts of the namespace are recomputed on their next use.
    pub async fn add_trust_key(
        &self,
        ns: &Namespace,
        name: Option<&str>,
        material: Material<'_>,
        caller: &Caller,
    ) -> Result<KeyView> {
        let invalid = |e: String| Error::InvalidParameter(e);
        let stored;
        let (kind, prefix, algorithm, fingerprint, pem) = match material {
            Material::Fulcio(config) => {
                let f = FulcioTrust::new(name.unwrap_or("fulcio"), config)
                    .map_err(|e| invalid(e.to_string()))?;
                stored = serde_json::to_string(config)
                    .map_err(|e| Error::Internal(format!("fulcio trust: {e}")))?;
                (
                    FULCIO_KIND,
                    "fulcio",
                    "keyless".to_owned(),
                    f.fingerprint().to_owned(),
                    stored.as_str(),
                )
            }
            Material::CosignKey(pem) => {
                let key = PublicKey::from_pem(pem).map_err(|e| invalid(e.to_string()))?;
                let algorithm = key.algorithm().as_str().to_owned();
                (
                    KEY_KIND,
                    "cosign",
                    algorithm,
                    key.fingerprint().to_owned(),
                    pem,
                )
            }
            Material::NotationRoot(pem) => {
                let certs = RootCerts::from_pem(pem).map_err(|e| invalid(e.to_string()))?;
                let algorithm = certs.algorithm().to_owned();
                (
                    ROOT_KIND,
                    "notation",
                    algorithm,
                    certs.fingerprint().to_owned(),
                    pem,
                )
            }
        };
        let name = match name {
            Some(n) => n.to_owned(),
            None => format!("{prefix}-{}", &fingerprint[..12]),
        };
        validate_name(&name)?;
        let record = TrustKey {
            namespace: ns.clone(),
            name: name.clone(),
            kind: kind.to_owned(),
            algorithm,
            fingerprint,
            material: pem.trim().to_owned() + "\n",
            created_at: 0,
            created_by: None,
        };
        let actor = caller.actor();
        let added = self.meta.add_trust_key(&record, &actor).await;
        self.trust.invalidate();
        if !added? {
            return Err(Error::Conflict(format!(
                "namespace {ns} already trusts a key named {name:?}; remove it first or choose another --name"
            )));
        }
        Ok(KeyView {
            created_at: actor.at,
            created_by: Some(actor.name),
            ..record.into()
        })
    }

    /// Removes the key `name` from those `ns` trusts.
    pub async fn remove_trust_key(
        &self,
        ns: &Namespace,
        name: &str,
        caller: &Caller,
    ) -> Result<()> {
        let removed = self.meta.remove_trust_key(ns, name, &caller.actor()).await;
        self.trust.invalidate();
        if !removed? {
            return Err(Error::NotFound(format!(
                "namespace {ns} trusts no key named {name:?} (berth trust list {ns})"
            )));
        }
        Ok(())
    }

    /// Sets the signature policy of `ns` (`None`: off).
    pub async fn set_signature_policy(
        &self,
        ns: &Namespace,
        mode: Option<Mode>,
        caller: &Caller,
    ) -> Result<()> {
        let out = self
            .meta
            .set_trust_policy(ns, mode.map(Mode::as_str), &caller.actor())
            .await;
        self.trust.invalidate();
        Ok(out?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_names() {
        assert_eq!(Mode::parse("enforce").unwrap(), Some(Mode::Enforce));
        assert_eq!(Mode::parse("warn").unwrap(), Some(Mode::Warn));
        assert_eq!(Mode::parse("off").unwrap(), None);
        assert!(Mode::parse("strict").is_err());
        assert!(validate_name("release-2024.1").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("Release").is_err());
        assert!(validate_name("a/b").is_err());
        assert!(validate_name(&"a".repeat(65)).is_err());
    }
}
