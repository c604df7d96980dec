//! Typed label sets of berth's metric families.
//!
//! Label values that come from a fixed set are enums or `&'static str`, so
//! looking a series up on the hot path hashes a few words and allocates
//! nothing; only namespace (and, behind a setting, repository) labels carry
//! an owned string.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use std::fmt::Write;

/// Writes an enum's lower-case name as a label value.
macro_rules! label_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                encoder.write_str(self.as_str())
            }
        }
    };
}

/// `{route, method, status}` of `berth_http_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpStatusLabels {
    /// The route template (`/v2/{name}/manifests/{reference}`), never a raw
    /// path.
    pub route: &'static str,
    /// The request method (`GET`, ..., or `OTHER`).
    pub method: &'static str,
    /// The response status code.
    pub status: u16,
}

/// `{route, method}` of the HTTP latency and byte families.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpRouteLabels {
    /// The route template.
    pub route: &'static str,
    /// The request method.
    pub method: &'static str,
}

label_enum! {
    /// What was pushed or pulled.
    ArtifactKind {
        /// A manifest or index.
        Manifest => "manifest",
        /// A blob (layer or config).
        Blob => "blob",
    }
}

/// `{namespace, repository, kind}` of the push and pull families. The
/// repository is empty unless per-repository labels are switched on (see
/// [`crate::Metrics::set_per_repository`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransferLabels {
    /// The namespace (first path component of the repository name).
    pub namespace: String,
    /// The full repository name, or empty.
    pub repository: String,
    /// Manifest or blob.
    pub kind: ArtifactKind,
}

/// `{namespace}` of the storage and quota gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceLabels {
    /// The namespace.
    pub namespace: String,
}

/// `{ecosystem}` of the vulnerability database gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EcosystemLabels {
    /// The OSV ecosystem family (`Debian`, `PyPI`).
    pub ecosystem: String,
}

label_enum! {
    /// A background job that deletes content.
    Job {
        /// Garbage collection of unreferenced blobs and manifests.
        Gc => "gc",
        /// Tag retention policies.
        Retention => "retention",
    }
}

label_enum! {
    /// How a job run ended.
    Outcome {
        /// It finished.
        Success => "success",
        /// It failed.
        Failure => "failure",
    }
}

/// `{task}` of the job families. (Not `job`: Prometheus sets that label
/// on every scraped series and would rename ours to `exported_job`.)
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    /// The job.
    pub task: Job,
}

/// `{task, outcome}` of `berth_job_runs_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobRunLabels {
    /// The job.
    pub task: Job,
    /// How the run ended.
    pub outcome: Outcome,
}

/// `{task, kind}` of `berth_job_deleted_total`: what a job deleted
/// (`link`, `blob`, `upload`, `tag`, `manifest`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobDeletedLabels {
    /// The job.
    pub task: Job,
    /// What kind of item was deleted.
    pub kind: &'static str,
}

label_enum! {
    /// Why an authentication attempt failed.
    AuthFailure {
        /// A wrong password or token secret, or an unknown account.
        BadCredentials => "bad_credentials",
        /// A bearer token that does not verify (signature, issuer, audience).
        InvalidToken => "invalid_token",
        /// A bearer token past its expiry.
        ExpiredToken => "expired_token",
        /// A disabled account or revoked token.
        Disabled => "disabled",
        /// A malformed `Authorization` header.
        Malformed => "malformed",
        /// A known caller asked for something it may not do.
        Denied => "denied",
    }
}

/// `{kind}` of `berth_auth_failures_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthFailureLabels {
    /// Why it failed.
    pub kind: AuthFailure,
}

label_enum! {
    /// How one webhook delivery attempt ended.
    DeliveryOutcome {
        /// The receiver answered 2xx.
        Delivered => "delivered",
        /// The attempt failed (error status, timeout, connection); it will be
        /// retried.
        Failed => "failed",
        /// The attempt failed and no retry is left (or the webhook was
        /// auto-disabled).
        Abandoned => "abandoned",
        /// The address was refused before connecting (allow-list).
        Refused => "refused",
    }
}

/// `{outcome}` of `berth_webhook_deliveries_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    /// How the attempt ended.
    pub outcome: DeliveryOutcome,
}

/// `{state}` of `berth_db_pool_connections` (`idle` or `in_use`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    /// `idle` or `in_use`.
    pub state: &'static str,
}

label_enum! {
    /// A kind of metadata operation.
    DbOperation {
        /// A read on the pull path (outside a transaction).
        Read => "read",
        /// A transaction that changes state.
        Write => "write",
    }
}

/// `{operation}` of the database latency family.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DbLabels {
    /// Read or write.
    pub operation: DbOperation,
}

/// `{backend, operation}` of the storage latency and error families.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StorageLabels {
    /// `filesystem` or `s3`.
    pub backend: &'static str,
    /// `stat`, `read`, `write`, `commit`, `delete`, `list`, ...
    pub operation: &'static str,
}

/// `{version}` of `berth_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    /// berth's version.
    pub version: &'static str,
}

label_enum! {
    /// What the integrity scrub found wrong with a blob.
    ScrubProblem {
        /// The metadata names it but storage does not hold it.
        Missing => "missing",
        /// Its bytes do not hash to its digest, or its size is wrong.
        Corrupt => "corrupt",
    }
}

label_enum! {
    /// What the scrub did about a finding.
    ScrubAction {
        /// A good copy was fetched from the repair source.
        Repaired => "repaired",
        /// Nothing could be fetched: the blob stays missing (a corrupt
        /// one was set aside).
        Unrepaired => "unrepaired",
    }
}

/// `{problem, action}` of `berth_scrub_findings_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScrubLabels {
    /// What was wrong.
    pub problem: ScrubProblem,
    /// What was done.
    pub action: ScrubAction,
}

/// `{upstream, outcome}` of `berth_mirror_upstream_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MirrorLabels {
    /// The upstream's configured name.
    pub upstream: String,
    /// `ok`, `not_found`, `rate_limited`, `error`.
    pub outcome: &'static str,
}

/// `{upstream, kind}` of `berth_mirror_evicted_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MirrorEvictLabels {
    /// The upstream's configured name.
    pub upstream: String,
    /// `manifest` or `blob`.
    pub kind: &'static str,
}

/// `{upstream}` of `berth_mirror_stale_served_total` and
/// `berth_mirror_evicted_bytes_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MirrorUpstreamLabels {
    /// The upstream's configured name.
    pub upstream: String,
}

/// `{policy, outcome}` of `berth_signature_pull_checks_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SignatureCheckLabels {
    /// `enforce` or `warn`.
    pub policy: &'static str,
    /// `verified`, `exempt`, `allowed_unverified`, `refused`.
    pub outcome: &'static str,
}

/// `{namespace, reason}` of `berth_pulls_blocked_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PullBlockedLabels {
    /// The namespace whose policy refused the pull.
    pub namespace: String,
    /// `vulnerable` or `unscanned`.
    pub reason: &'static str,
}

/// `{outcome}` of `berth_scans_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScanLabels {
    /// `clean`, `vulnerable`, `unreadable`, `failed`.
    pub outcome: &'static str,
}
