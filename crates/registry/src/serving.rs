//! The one gate on the manifest read path: may this manifest be served to
//! this reader? A manifest `GET` (by tag or digest; HEAD requests are
//! never gated) passes each namespace policy in turn:
//!
//! - the **signature policy** (`trust`, issue 16): a manifest without a
//!   verified signature is refused under `enforce`;
//! - the **vulnerability policy** (`scanning::gate`, issue 15): an image,
//!   or an index with an image, whose stored scan has findings at or above
//!   the namespace's severity (allowances aside), or that was not scanned
//!   under `unscanned = deny`, is refused.
//!
//! Each is one lookup in memory for a namespace without that policy. Each
//! exempts the reads its own flow needs (signatures, attestations, SBOMs
//! and other artifacts with a subject). Blobs are never gated by digest:
//! the gate is the manifest, as in Harbor.

use berth_oci::{Reference, RepositoryName};

use crate::manifests::ManifestEntry;
use crate::{Caller, Registry, Result};

/// Who reads a manifest, as the gate needs to know.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    /// The caller (named in the audit event of a refusal).
    pub caller: &'a Caller,
    /// A site admin: never refused by a vulnerability policy.
    pub site_admin: bool,
}

impl Registry {
    /// Checks a manifest pull (`GET`) of `m` through `reference` by
    /// `reader` against the policies of `repo`'s namespace: `Ok` to serve
    /// it, else the refusal (403 DENIED naming the policy, why, and what to
    /// do next).
    pub async fn may_serve(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
        m: &ManifestEntry,
        reader: Reader<'_>,
    ) -> Result<()> {
        self.check_pull(repo, reference, m).await?;
        self.check_vulnerabilities(repo, reference, m, reader).await
    }
}
