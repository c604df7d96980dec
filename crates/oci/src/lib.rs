//! The OCI vocabulary shared by every berth layer.
//!
//! This crate owns digests ([`Digest`], [`Hasher`]), media types ([`media`]),
//! repository names and tags ([`name`]), manifest parsing and validation
//! ([`manifest`]), durations ([`duration`]) and times ([`time`]), and the
//! error codes of the OCI Distribution specification ([`ErrorCode`]). It knows nothing about HTTP, storage or SQL: it is pure data
//! and pure functions, so every other layer can depend on it.

pub mod digest;
pub mod duration;
pub mod error;
pub mod manifest;
pub mod media;
pub mod name;
pub mod reference;
pub mod time;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use duration::{DurationError, Span};
pub use error::ErrorCode;
pub use manifest::{Descriptor, EntryKind, Manifest, ManifestError, ManifestKind};
pub use name::{
    validate_repository, validate_tag, NameError, Namespace, Reference, RepositoryName, Tag,
};
