//! What each `/v2/` endpoint needs from the caller, and the pull rate
//! limit's headers.
//!
//! Reads (manifests, blobs, tags, referrers) need `pull`; uploads and
//! manifest pushes `pull,push` (the pair docker asks for); deletes
//! `delete`. `/v2/` itself needs valid credentials of any kind, so that
//! clients learn where to log in; the catalog needs nothing and lists what
//! the caller may pull.

use axum::http::{HeaderMap, HeaderValue, Method};
use berth_oci::RepositoryName;
use berth_registry::auth::{Access, Action, RateState};

use crate::route::Endpoint;

/// What a request needs.
pub(super) enum Need<'a> {
    /// Valid credentials (or open mode).
    Credentials,
    /// Nothing; the handler filters.
    Listing,
    /// These actions on this repository.
    Repository(&'a RepositoryName, Access),
}

fn push() -> Access {
    Access::of(&[Action::Pull, Action::Push])
}

/// What `method` on `endpoint` needs.
pub(super) fn need<'a>(endpoint: &'a Endpoint, method: &Method) -> Need<'a> {
    let read = matches!(*method, Method::GET | Method::HEAD);
    match endpoint {
        Endpoint::Base => Need::Credentials,
        Endpoint::Catalog => Need::Listing,
        Endpoint::Tags(n) | Endpoint::Referrers(n, _) => Need::Repository(n, Access::PULL),
        Endpoint::Manifest(n, _) | Endpoint::Blob(n, _) if read => {
            Need::Repository(n, Access::PULL)
        }
        Endpoint::Manifest(n, _) | Endpoint::Blob(n, _) if *method == Method::DELETE => {
            Need::Repository(n, Access::of(&[Action::Delete]))
        }
        Endpoint::Manifest(n, _)
        | Endpoint::Blob(n, _)
        | Endpoint::UploadStart(n)
        | Endpoint::Upload(n, _) => Need::Repository(n, push()),
    }
}

/// Adds `RateLimit-Limit: 100;w=21600` and `RateLimit-Remaining: 76;w=21600`.
pub(crate) fn rate_headers(headers: &mut HeaderMap, s: &RateState) {
    // Digits, `;` and `w=`: always a valid header value.
    let value = |n: u32| HeaderValue::from_str(&format!("{n};w={}", s.window_secs)).ok();
    if let Some(v) = value(s.limit) {
        headers.insert("ratelimit-limit", v);
    }
    if let Some(v) = value(s.remaining) {
        headers.insert("ratelimit-remaining", v);
    }
}
