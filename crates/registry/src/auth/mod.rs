//! Authentication and authorisation: who is calling, and what they may do.
//!
//! - [`permission`]: the permission model as pure functions (who may
//!   pull, push, delete or administer which repository).
//! - [`password`]: argon2id password hashes.
//! - [`secret`]: access-token strings (`berth_pat_...`), their generation
//!   and hashing.
//!
//! This layer decides; the HTTP layer only parses credentials and calls it.

pub mod password;
pub mod permission;
pub mod secret;

pub use permission::{allowed, Access, Account, Action, Facts, TokenLimits};
