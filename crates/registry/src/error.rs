//! The core services' error type: what went wrong, with the data the
//! answer needs (the size behind a `Content-Range`, the upload a refused
//! chunk belongs to, the rate limit's state), its OCI error code
//! ([`Error::code`]) and its [`Kind`], from which the server derives the
//! HTTP status and the management API's code. Failures of storage and of
//! the metadata database keep their source, for the log.

use berth_oci::ErrorCode;

use crate::auth::RateState;

/// What kind of failure an [`Error`] is, independent of any protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The request is malformed or names something invalid.
    InvalidArgument,
    /// No or bad credentials.
    Unauthenticated,
    /// Known caller, not allowed (permission, tag rule, quota).
    PermissionDenied,
    /// The thing asked for does not exist.
    NotFound,
    /// The method is not offered on this resource.
    MethodNotAllowed,
    /// The name is taken, or something conflicting is in progress.
    Conflict,
    /// The content is over a size limit.
    TooLarge,
    /// A byte range (of a blob, or of a chunk) cannot be satisfied.
    RangeNotSatisfiable,
    /// Over a rate limit; retry later.
    TooManyRequests,
    /// The storage device is full.
    StorageFull,
    /// The server is too busy to do this now; retry later.
    Unavailable,
    /// A failure on the registry's side.
    Internal,
}

/// `Retry-After` (seconds) of a request refused while the metadata
/// database or the object store is unreachable.
const UNAVAILABLE_RETRY_SECS: u64 = 5;

/// An upload session, named where an error must point the client back to
/// it (`Location` and `Range` of a refused chunk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRef {
    /// The repository the session belongs to.
    pub repository: berth_oci::RepositoryName,
    /// The session id.
    pub id: String,
}

/// What a mirror's upstream failed to give ([`Error::UpstreamUnavailable`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamFailure {
    /// The upstream's name.
    pub upstream: String,
    /// What went wrong.
    pub detail: String,
    /// What was asked for.
    pub what: String,
    /// Seconds to wait, when the upstream said (`Retry-After`).
    pub retry_after: Option<u64>,
}

/// Why a registry operation failed. Each variant maps to one OCI error code
/// ([`Error::code`]) and HTTP status ([`Error::status`]); the `Display` text
/// is the message shown to the client and never contains internals.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The blob is not in the repository.
    #[error("blob {0} is not known to this repository")]
    BlobUnknown(String),
    /// The upload session does not exist in this repository.
    #[error("upload session unknown (it may have completed, been cancelled or expired)")]
    UploadUnknown,
    /// The upload request is invalid.
    #[error("{0}")]
    UploadInvalid(String),
    /// A chunk out of order or overlapping (416).
    #[error("chunk starts at byte {start} but the upload holds {size} bytes")]
    ChunkOutOfOrder {
        /// Claimed start.
        start: u64,
        /// Bytes held.
        size: u64,
        /// The session, for the answer's `Location` (set by the service).
        upload: Option<UploadRef>,
    },
    /// A digest that is malformed or does not match the content.
    #[error("{0}")]
    DigestInvalid(String),
    /// Body length differs from what was announced.
    #[error("{0}")]
    SizeInvalid(String),
    /// The manifest references a blob or manifest missing from the repository.
    #[error("{0}")]
    ManifestBlobUnknown(String),
    /// The manifest is malformed.
    #[error("{0}")]
    ManifestInvalid(String),
    /// The manifest is over the size limit (413).
    #[error("manifest of {size} bytes exceeds the limit of {limit} bytes")]
    ManifestTooLarge {
        /// Size received (or announced).
        size: u64,
        /// Configured limit.
        limit: usize,
    },
    /// The manifest is not in the repository.
    #[error("manifest {0} is not known to this repository")]
    ManifestUnknown(String),
    /// The stored manifest's media type is not in the client's Accept list.
    #[error(
        "manifest {reference} is {media_type}, which the request's Accept header does not allow"
    )]
    ManifestNotAcceptable {
        /// Requested reference.
        reference: String,
        /// Stored media type.
        media_type: String,
    },
    /// Invalid repository name.
    #[error("{0}")]
    NameInvalid(String),
    /// Repository unknown.
    #[error("repository {0} is not known to this registry")]
    NameUnknown(String),
    /// Invalid tag.
    #[error("{0}")]
    TagInvalid(String),
    /// Requested byte range cannot be served (416).
    #[error("range not satisfiable for a blob of {size} bytes")]
    RangeNotSatisfiable {
        /// Blob size.
        size: u64,
    },
    /// The operation is not supported.
    #[error("{0}")]
    Unsupported(String),
    /// A malformed query parameter or management request (400).
    #[error("{0}")]
    InvalidParameter(String),
    /// A management object (tag rule, quota, ...) that does not exist (404,
    /// code UNSUPPORTED as for an unknown endpoint: the spec has no code
    /// for it).
    #[error("{0}")]
    NotFound(String),
    /// The name is taken, or the operation conflicts with one in progress
    /// (409): creating an account that exists, a garbage collection
    /// already running.
    #[error("{0}")]
    Conflict(String),
    /// Authentication is required, or the credentials are not valid (401).
    /// The server adds the `WWW-Authenticate` challenge.
    #[error("{0}")]
    Unauthorized(String),
    /// The caller is known but not allowed to do this (403); the message
    /// says which rule refused it (permission, protected or immutable tag,
    /// quota).
    #[error("{0}")]
    Denied(String),
    /// The caller is over its rate limit (429).
    #[error("too many requests: retry in {retry_after} seconds")]
    TooManyRequests {
        /// Seconds until the window has room again (`Retry-After`).
        retry_after: u64,
    },
    /// The caller is over the pull rate limit (429, with the limit's
    /// `RateLimit-*` state).
    #[error(
        "pull rate limit of {} manifest requests per {} seconds reached: retry in {} seconds",
        .0.limit, .0.window_secs, .0.reset_secs
    )]
    PullRateLimited(RateState),
    /// The server is too busy to check this now (503): password
    /// verification is at capacity.
    #[error(
        "the server is busy verifying other logins: retry in {retry_after} seconds (credentials \
         that were verified recently are not affected)"
    )]
    Busy {
        /// Seconds to wait before retrying (`Retry-After`).
        retry_after: u64,
    },
    /// A mirror's upstream could not answer and nothing cached can (503):
    /// it is down, slow, or asked berth to wait (`Retry-After`).
    #[error(
        "upstream {} of the mirror is unavailable ({}) and {} is not cached: retry later",
        .0.upstream, .0.detail, .0.what
    )]
    UpstreamUnavailable(Box<UpstreamFailure>),
    /// The storage device is full (507).
    #[error(
        "the registry's storage is full: nothing was published; push again once space is freed \
         (garbage collection, retention, a larger disk)"
    )]
    StorageFull,
    /// The object store behind the registry is unreachable or failing
    /// (503); nothing was stored or published. The source is logged.
    #[error(
        "the registry's object storage is unavailable ({0}); nothing was stored: retry in a \
         few seconds"
    )]
    StorageUnavailable(#[source] berth_store::Error),
    /// The client's request body could not be read.
    #[error("reading the request body failed")]
    BodyRead,
    /// Anything the client cannot fix; details are logged, not returned
    /// (the answer says only "internal error", see [`Error::public_message`]).
    #[error("internal error: {0}")]
    Internal(String),
    /// The blob store failed; the source is logged, not returned.
    #[error("storage failed: {0}")]
    Storage(#[source] std::io::Error),
    /// The metadata database failed; the source is logged, not returned.
    #[error("{0}")]
    Metadata(#[source] berth_meta::Error),
    /// The metadata database cannot be reached right now (restarting,
    /// unreachable, every connection busy past the pool's timeout): 503,
    /// retry later. The source is logged, not returned.
    #[error(
        "the registry's metadata database is unavailable: retry in a few seconds (nothing was \
         changed by this request)"
    )]
    DatabaseUnavailable(#[source] berth_meta::Error),
}

impl Error {
    /// The OCI error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::BlobUnknown(_) => ErrorCode::BlobUnknown,
            Error::UploadUnknown => ErrorCode::BlobUploadUnknown,
            Error::UploadInvalid(_) | Error::BodyRead => ErrorCode::BlobUploadInvalid,
            Error::ChunkOutOfOrder { .. } => ErrorCode::BlobUploadInvalid,
            Error::DigestInvalid(_) => ErrorCode::DigestInvalid,
            Error::SizeInvalid(_) => ErrorCode::SizeInvalid,
            Error::ManifestBlobUnknown(_) => ErrorCode::ManifestBlobUnknown,
            Error::ManifestInvalid(_) => ErrorCode::ManifestInvalid,
            Error::ManifestTooLarge { .. } => ErrorCode::ManifestInvalid,
            Error::ManifestUnknown(_) | Error::ManifestNotAcceptable { .. } => {
                ErrorCode::ManifestUnknown
            }
            Error::NameInvalid(_) => ErrorCode::NameInvalid,
            Error::NameUnknown(_) => ErrorCode::NameUnknown,
            Error::TagInvalid(_) => ErrorCode::TagInvalid,
            Error::RangeNotSatisfiable { .. } => ErrorCode::RangeInvalid,
            Error::Unsupported(_)
            | Error::InvalidParameter(_)
            | Error::NotFound(_)
            | Error::Conflict(_) => ErrorCode::Unsupported,
            Error::Unauthorized(_) => ErrorCode::Unauthorized,
            Error::Denied(_) => ErrorCode::Denied,
            Error::TooManyRequests { .. } | Error::PullRateLimited(_) => ErrorCode::TooManyRequests,
            Error::Busy { .. }
            | Error::DatabaseUnavailable(_)
            | Error::StorageUnavailable(_)
            | Error::UpstreamUnavailable(_) => ErrorCode::Unavailable,
            Error::StorageFull | Error::Internal(_) | Error::Storage(_) | Error::Metadata(_) => {
                ErrorCode::Unknown
            }
        }
    }

    /// The message for the client: the `Display` text, except for
    /// failures on the registry's side, whose details stay in the log.
    pub fn public_message(&self) -> String {
        match self.kind() {
            Kind::Internal => "internal error".to_owned(),
            _ => self.to_string(),
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> Kind {
        match self {
            Error::UploadInvalid(_)
            | Error::BodyRead
            | Error::DigestInvalid(_)
            | Error::SizeInvalid(_)
            | Error::ManifestBlobUnknown(_)
            | Error::ManifestInvalid(_)
            | Error::NameInvalid(_)
            | Error::TagInvalid(_)
            | Error::InvalidParameter(_) => Kind::InvalidArgument,
            Error::BlobUnknown(_)
            | Error::UploadUnknown
            | Error::ManifestUnknown(_)
            | Error::ManifestNotAcceptable { .. }
            | Error::NameUnknown(_)
            | Error::NotFound(_) => Kind::NotFound,
            Error::ChunkOutOfOrder { .. } | Error::RangeNotSatisfiable { .. } => {
                Kind::RangeNotSatisfiable
            }
            Error::ManifestTooLarge { .. } => Kind::TooLarge,
            Error::Unsupported(_) => Kind::MethodNotAllowed,
            Error::Conflict(_) => Kind::Conflict,
            Error::Unauthorized(_) => Kind::Unauthenticated,
            Error::Denied(_) => Kind::PermissionDenied,
            Error::TooManyRequests { .. } | Error::PullRateLimited(_) => Kind::TooManyRequests,
            Error::StorageFull => Kind::StorageFull,
            Error::Busy { .. }
            | Error::DatabaseUnavailable(_)
            | Error::StorageUnavailable(_)
            | Error::UpstreamUnavailable(_) => Kind::Unavailable,
            Error::Internal(_) | Error::Storage(_) | Error::Metadata(_) => Kind::Internal,
        }
    }

    /// What the client may read besides the message (the `detail` of the
    /// error body): the blob or upload size behind a 416, the manifest
    /// size limit behind a 413.
    pub fn detail(&self) -> Option<serde_json::Value> {
        match self {
            Error::ChunkOutOfOrder { size, .. } | Error::RangeNotSatisfiable { size } => {
                Some(serde_json::json!({ "size": size }))
            }
            Error::ManifestTooLarge { limit, .. } => Some(serde_json::json!({ "limit": limit })),
            _ => None,
        }
    }

    /// Seconds after which a refused request may be retried
    /// (`Retry-After`).
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Error::TooManyRequests { retry_after } | Error::Busy { retry_after } => {
                Some(*retry_after)
            }
            Error::PullRateLimited(state) => Some(state.reset_secs),
            Error::UpstreamUnavailable(f) => f.retry_after.or(Some(UNAVAILABLE_RETRY_SECS)),
            Error::DatabaseUnavailable(_) | Error::StorageUnavailable(_) => {
                Some(UNAVAILABLE_RETRY_SECS)
            }
            _ => None,
        }
    }

    /// Points a refused chunk at its upload session.
    pub(crate) fn at_upload(self, repository: &berth_oci::RepositoryName, id: &str) -> Error {
        match self {
            Error::ChunkOutOfOrder { start, size, .. } => Error::ChunkOutOfOrder {
                start,
                size,
                upload: Some(UploadRef {
                    repository: repository.clone(),
                    id: id.to_owned(),
                }),
            },
            other => other,
        }
    }
}

impl From<berth_store::Error> for Error {
    fn from(e: berth_store::Error) -> Self {
        use berth_store::Error as S;
        match e {
            S::UploadUnknown => Error::UploadUnknown,
            S::RangeMismatch { start, size } => Error::ChunkOutOfOrder {
                start,
                size,
                upload: None,
            },
            S::DigestMismatch { expected, actual } => Error::DigestInvalid(format!(
                "content digest {actual} does not match the digest parameter {expected}"
            )),
            S::SizeMismatch { expected, actual } => Error::SizeInvalid(format!(
                "received {actual} bytes but Content-Length announced {expected}"
            )),
            S::StorageFull => Error::StorageFull,
            S::Body(_) => Error::BodyRead,
            S::Io(e) => Error::Storage(e),
            e @ S::Unavailable { .. } => Error::StorageUnavailable(e),
        }
    }
}

impl From<berth_meta::Error> for Error {
    fn from(e: berth_meta::Error) -> Self {
        match e {
            berth_meta::Error::Refused(why) => Error::Denied(why),
            // Garbage collection or retention removed it between the
            // registry's check and the commit: the client pushes it again.
            berth_meta::Error::MissingReference { .. } => {
                Error::ManifestBlobUnknown(format!("{e}; push it again"))
            }
            e if e.is_unavailable() => Error::DatabaseUnavailable(e),
            e => Error::Metadata(e),
        }
    }
}
