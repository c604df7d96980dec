//! Who is acting.
//!
//! The server authenticates a request and authorises it against the
//! repository it touches; what the core services still need to know about
//! the caller travels in a [`Caller`]: the account name and client address
//! for the audit log, and whether the caller administers the namespace (only
//! namespace admins may move or delete protected tags).

use std::net::IpAddr;

use berth_meta::audit::Actor;

/// The authenticated party behind a state-changing request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    /// User or robot account name; `None` when anonymous.
    pub account: Option<String>,
    /// The client's address, when the request came over the network.
    pub ip: Option<IpAddr>,
    /// Whether the caller has the admin role on the namespace of the
    /// repository acted on.
    pub namespace_admin: bool,
}

impl Caller {
    /// An operator acting locally (CLI jobs, scheduled tasks): named,
    /// without an address, with every right.
    pub fn system(name: &str) -> Caller {
        Caller {
            account: Some(name.to_owned()),
            ip: None,
            namespace_admin: true,
        }
    }

    /// The name recorded in the audit log (`anonymous` when there is none).
    pub fn name(&self) -> &str {
        self.account.as_deref().unwrap_or("anonymous")
    }

    /// The audit log's view of this caller, acting now.
    pub fn actor(&self) -> Actor {
        Actor {
            name: self.name().to_owned(),
            ip: self.ip.map(|ip| ip.to_string()),
            at: berth_meta::now_ms(),
        }
    }
}
