//! Login throttling and pull rate limits across replicas.
//!
//! One process keeps both in memory (`throttle`, `ratelimit`). When
//! replicas share a PostgreSQL ([`super::AuthSettings::shared_database`]),
//! the counts live in the database as well, so a client cannot multiply
//! its allowance by spreading requests over replicas:
//!
//! - **Pull rate limits** are exact across the cluster: each counted
//!   manifest request is one upsert of its key's window (`rate_windows`)
//!   that returns the window's count. This costs a write per manifest GET,
//!   only when `pull_rate_limit` is set.
//! - **Failed logins** are counted in `login_failures` by whichever
//!   replica saw them, and every replica refuses an attempt while the
//!   cluster-wide count imposes a wait (the same [`Policy`] delays). The
//!   in-flight reservation that stops concurrent attempts from slipping
//!   past the allowance stays per replica: with N replicas, at most N
//!   attempts of one key can be checked at the same moment once its free
//!   failures are used up (instead of one). This bound costs nothing;
//!   exactness would need a lock held across the argon2 verification.
//!
//! Expired rows of both tables are deleted by the `counter-prune` worker
//! ([`crate::worker::CounterPrune`]), under a lease.

use std::net::IpAddr;

use super::ratelimit::RateState;
use super::throttle::{Outcome, Policy};
use super::Authority;
use crate::{Error, Result};

/// The cluster-wide keys of a password attempt: (policy, key, whether a
/// success clears it). Mirrors the in-memory throttles' keys.
fn attempt_keys(username: Option<&str>, ip: Option<IpAddr>) -> Vec<(Policy, String, bool)> {
    let mut keys = Vec::with_capacity(2);
    if let Some(ip) = ip {
        keys.push((Policy::PER_IP, format!("ip|{ip}"), false));
    }
    if let Some(u) = username {
        let ip = ip.map(|i| i.to_string()).unwrap_or_default();
        keys.push((Policy::PER_ACCOUNT_IP, format!("account|{u}|{ip}"), true));
    }
    keys
}

fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Authority {
    /// On a shared database: refuses (429) an attempt while failures
    /// recorded by any replica impose a wait. `username` only when it is a
    /// name that can log in with a password.
    pub(crate) async fn shared_wait(
        &self,
        username: Option<&str>,
        ip: Option<IpAddr>,
    ) -> Result<()> {
        if !self.settings.shared_database {
            return Ok(());
        }
        let now = berth_meta::now_ms();
        let mut wait = 0i64;
        for (policy, key, _) in attempt_keys(username, ip) {
            let Some((count, last)) = self.meta.login_failures(&key).await? else {
                continue;
            };
            let since = now.saturating_sub(last);
            if since >= ms(policy.forget_after) {
                continue;
            }
            wait = wait.max(ms(policy.delay(count)) - since);
        }
        if wait > 0 {
            return Err(Error::TooManyRequests {
                retry_after: (wait as u64).div_ceil(1000).max(1),
            });
        }
        Ok(())
    }

    /// On a shared database: records how an attempt ended (a failure
    /// counts for every key, a success clears the account's).
    pub(crate) async fn shared_outcome(
        &self,
        username: Option<&str>,
        ip: Option<IpAddr>,
        outcome: Outcome,
    ) {
        if !self.settings.shared_database {
            return;
        }
        let now = berth_meta::now_ms();
        for (policy, key, cleared) in attempt_keys(username, ip) {
            let written = match outcome {
                Outcome::Failed => {
                    self.meta
                        .add_login_failure(&key, now, ms(policy.forget_after))
                        .await
                }
                Outcome::Succeeded if cleared => self.meta.clear_login_failures(&key).await,
                _ => Ok(()),
            };
            if let Err(e) = written {
                tracing::warn!(error = %e, "recording a login attempt for the cluster failed");
            }
        }
    }

    /// On a shared database: deletes the expired rate windows (all of
    /// them when no pull rate limit is set: nothing reads them) and the
    /// failed-login counts past the longest forget time, as of `now` (Unix
    /// ms). Returns how many rows went.
    pub async fn prune_shared_counters(&self, now: i64) -> Result<u64> {
        if !self.settings.shared_database {
            return Ok(0);
        }
        let windows_before = match self.settings.pull_limit {
            Some(limit) => now.saturating_sub(ms(limit.window)),
            None => now,
        };
        let forget = Policy::PER_IP
            .forget_after
            .max(Policy::PER_ACCOUNT_IP.forget_after);
        let failures_before = now.saturating_sub(ms(forget));
        Ok(self
            .meta
            .prune_counters(windows_before, failures_before)
            .await?)
    }

    /// The pull rate limit's state for `key` from the shared window.
    pub(crate) async fn shared_pull_rate(
        &self,
        key: &str,
        consume: bool,
    ) -> Result<Option<RateState>> {
        let Some(limit) = self.settings.pull_limit else {
            return Ok(None);
        };
        let now = berth_meta::now_ms();
        let window = ms(limit.window);
        let (start, count) = self.meta.hit_rate_window(key, now, window, consume).await?;
        let reset_ms = (start.saturating_add(window) - now).max(0) as u64;
        Ok(Some(RateState {
            allowed: !consume || count <= u64::from(limit.limit),
            limit: limit.limit,
            remaining: u32::try_from(u64::from(limit.limit).saturating_sub(count)).unwrap_or(0),
            window_secs: limit.window.as_secs(),
            reset_secs: reset_ms.div_ceil(1000).max(1),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::attempt_keys;

    #[test]
    fn keys_match_the_in_memory_throttles() {
        let ip: std::net::IpAddr = "10.0.0.7".parse().unwrap();
        let keys: Vec<(String, bool)> = attempt_keys(Some("alice"), Some(ip))
            .into_iter()
            .map(|(_, k, c)| (k, c))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("ip|10.0.0.7".to_owned(), false),
                ("account|alice|10.0.0.7".to_owned(), true)
            ]
        );
        assert_eq!(attempt_keys(None, None).len(), 0);
    }
}
