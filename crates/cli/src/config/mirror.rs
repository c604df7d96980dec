//! The mirror's settings: the upstreams (`mirror_upstreams`, a TOML array
//! of tables; the flag and variable take the same array inline), the
//! Docker Hub default for hostless requests and who may pull through.

use std::fmt;
use std::str::FromStr;

use berth_oci::Span;
use serde::{Deserialize, Serialize};

/// One upstream, as configured.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSetting {
    /// The namespace it is mirrored under (`hub`).
    pub name: String,
    /// Its root URL (`https://registry-1.docker.io`).
    pub url: String,
    /// User name, for upstreams that need one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password or token (never logged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Registry hosts it answers for in containerd's `?ns=` (`docker.io`).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Requests in flight at once, at most.
    #[serde(default = "default_concurrency")]
    pub max_concurrent: usize,
    /// Requests per second, at most (0: no limit).
    #[serde(default)]
    pub rate_limit: f64,
    /// How long a cached tag is served before it is revalidated.
    #[serde(default = "default_ttl")]
    pub tag_ttl: Span,
    /// How long a request may take before the cache answers instead.
    #[serde(default = "default_timeout")]
    pub timeout: Span,
    /// The most its cache may hold (the least recently pulled images are
    /// evicted past it); `mirror_cache_max` limits all caches together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_max: Option<super::ByteSize>,
}

fn default_concurrency() -> usize {
    8
}

fn default_ttl() -> Span {
    Span::from_str("5m").unwrap_or_default()
}

fn default_timeout() -> Span {
    Span::from_str("20s").unwrap_or_default()
}

impl fmt::Debug for UpstreamSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamSetting")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

impl UpstreamSetting {
    /// The mirror crate's configuration.
    pub fn config(&self) -> berth_mirror::UpstreamConfig {
        berth_mirror::UpstreamConfig {
            name: self.name.clone(),
            url: self.url.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
            hosts: self.hosts.clone(),
            max_concurrent: self.max_concurrent,
            rate_limit: self.rate_limit,
            tag_ttl: self.tag_ttl.get(),
            timeout: self.timeout.get(),
        }
    }
}

/// `mirror_upstreams`: the list of upstreams.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct Upstreams(pub Vec<UpstreamSetting>);

impl FromStr for Upstreams {
    type Err = String;

    /// An inline TOML array of tables:
    /// `[{ name = "hub", url = "https://registry-1.docker.io", hosts = ["docker.io"] }]`.
    fn from_str(s: &str) -> Result<Upstreams, String> {
        #[derive(Deserialize)]
        struct Wrapper {
            v: Upstreams,
        }
        toml::from_str::<Wrapper>(&format!("v = {s}"))
            .map(|w| w.v)
            .map_err(|e| format!("mirror upstreams must be a TOML array of tables: {e}"))
    }
}

/// `mirror_pull_access`: who may pull through the mirror.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PullAccessChoice {
    /// Anyone, without credentials.
    Anonymous,
    /// Any authenticated account.
    Authenticated,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_parse_from_an_inline_array() {
        let u: Upstreams = r#"[{ name = "hub", url = "https://registry-1.docker.io", hosts = ["docker.io"], password = "p", username = "u" }]"#
            .parse()
            .unwrap();
        assert_eq!(u.0.len(), 1);
        assert_eq!(u.0[0].max_concurrent, 8);
        assert_eq!(u.0[0].tag_ttl.get().as_secs(), 300);
        assert!(!format!("{u:?}").contains("\"p\""));
        assert!("[{ name = 1 }]".parse::<Upstreams>().is_err());
        assert_eq!("[]".parse::<Upstreams>().unwrap(), Upstreams::default());
    }
}
