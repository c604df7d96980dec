//! The core services' error type and its OCI error code.

use berth_oci::ErrorCode;

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
    /// The storage device is full (507).
    #[error("the registry's storage is full")]
    StorageFull,
    /// The client's request body could not be read.
    #[error("reading the request body failed")]
    BodyRead,
    /// Anything the client cannot fix; details are logged, not returned.
    #[error("internal error")]
    Internal(String),
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
            Error::TooManyRequests { .. } => ErrorCode::TooManyRequests,
            Error::Busy { .. } => ErrorCode::Unavailable,
            Error::StorageFull | Error::Internal(_) => ErrorCode::Unknown,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Error::ChunkOutOfOrder { .. } | Error::RangeNotSatisfiable { .. } => 416,
            Error::ManifestTooLarge { .. } => 413,
            Error::InvalidParameter(_) => 400,
            Error::NotFound(_) => 404,
            Error::Conflict(_) => 409,
            Error::StorageFull => 507,
            Error::Internal(_) => 500,
            other => other.code().status(),
        }
    }
}

impl From<berth_store::Error> for Error {
    fn from(e: berth_store::Error) -> Self {
        use berth_store::Error as S;
        match e {
            S::UploadUnknown => Error::UploadUnknown,
            S::RangeMismatch { start, size } => Error::ChunkOutOfOrder { start, size },
            S::DigestMismatch { expected, actual } => Error::DigestInvalid(format!(
                "content digest {actual} does not match the digest parameter {expected}"
            )),
            S::SizeMismatch { expected, actual } => Error::SizeInvalid(format!(
                "received {actual} bytes but Content-Length announced {expected}"
            )),
            S::StorageFull => Error::StorageFull,
            S::Body(_) => Error::BodyRead,
            S::Io(e) => Error::Internal(format!("storage: {e}")),
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
            e => Error::Internal(format!("metadata: {e}")),
        }
    }
}
