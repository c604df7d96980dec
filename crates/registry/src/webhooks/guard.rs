//! Which addresses webhook deliveries may reach.
//!
//! A webhook URL is chosen by a namespace administrator, not by the site
//! operator, so berth must not become a way to reach what only the server
//! can: its loopback, the private network it sits in, the cloud metadata
//! service (169.254.169.254, fd00:ec2::254). Every address a delivery
//! connects to is checked here: IP literals in the URL before the request,
//! names by the resolver the HTTP client uses ([`Resolver`]), so a name
//! that resolves to a private address (or is re-pointed there after the
//! webhook was created) is refused at connection time. Redirects are not
//! followed, and environment proxies are ignored.
//!
//! Only globally routable unicast addresses pass, unless an address is in
//! the operator's allow-list (`webhook_allow_networks`, CIDRs).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// Why `ip` may not be called, or `None` when it may.
pub fn refusal(ip: IpAddr, allow: &[IpNet]) -> Option<&'static str> {
    let ip = canonical(ip);
    if allow.iter().any(|n| n.contains(&ip)) {
        return None;
    }
    match ip {
        IpAddr::V4(v4) => v4_refusal(v4),
        IpAddr::V6(v6) => v6_refusal(v6),
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

fn v4_refusal(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    let why = if ip.is_loopback() {
        "a loopback address"
    } else if ip.is_unspecified() || a == 0 {
        "an unspecified address"
    } else if ip.is_private() {
        "a private address"
    } else if ip.is_link_local() {
        "a link-local address (cloud metadata services live there)"
    } else if a == 100 && (64..128).contains(&b) {
        "a carrier-grade NAT address"
    } else if a == 192 && b == 0 && c == 0 {
        "an IETF protocol assignment"
    } else if ip.is_documentation() || (a == 198 && (18..20).contains(&b)) {
        "a documentation or benchmarking address"
    } else if ip.is_multicast() || ip.is_broadcast() || a >= 240 {
        "a multicast, broadcast or reserved address"
    } else {
        return None;
    };
    Some(why)
}

fn v6_refusal(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    let why = if ip.is_loopback() {
        "a loopback address"
    } else if ip.is_unspecified() {
        "an unspecified address"
    } else if (s[0] & 0xfe00) == 0xfc00 {
        "a unique local (private) address"
    } else if (s[0] & 0xffc0) == 0xfe80 {
        "a link-local address"
    } else if ip.is_multicast() {
        "a multicast address"
    } else if s[0] == 0x2001 && s[1] == 0x0db8 {
        "a documentation address"
    } else if s[0] == 0x0064 && s[1] == 0xff9b {
        // NAT64: judge the IPv4 address it carries.
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return v4_refusal(v4);
    } else if ip.to_ipv4().is_some() && s[5] == 0 {
        "an IPv4-compatible address"
    } else {
        return None;
    };
    Some(why)
}

/// The refusal of `ip` as a message for the administrator.
pub fn message(host: &str, ip: IpAddr, why: &str) -> String {
    format!(
        "webhook host {host} resolves to {ip}, {why}, which webhooks may not call; \
         add the network to webhook_allow_networks (BERTH_WEBHOOK_ALLOW_NETWORKS) to allow it"
    )
}

/// An address refused by the guard (the resolver's error, recognisable in
/// the HTTP client's error chain).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Resolves names for the delivery client and drops the addresses
/// [`refusal`] refuses; fails when none is left.
pub(crate) struct Resolver {
    pub(crate) allow: Arc<Vec<IpNet>>,
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match refusal(a.ip(), &allow) {
                    None => true,
                    Some(why) => {
                        refused.get_or_insert_with(|| message(&host, a.ip(), why));
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                return Err(match refused {
                    Some(why) => Box::new(Refused(why)) as Box<dyn std::error::Error + Send + Sync>,
                    None => format!("{host} has no address").into(),
                });
            }
            let addrs: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// Checks every address `host` (a name or an IP literal, IPv6 in brackets)
/// resolves to now; the first refusal, if any.
pub async fn check_host(host: &str, allow: &[IpNet]) -> Result<(), String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<IpAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((bare, 0))
            .await
            .map_err(|e| format!("webhook host {bare} cannot be resolved: {e}"))?
            .map(|a| a.ip())
            .collect(),
    };
    for ip in addrs {
        if let Some(why) = refusal(ip, allow) {
            return Err(message(bare, ip, why));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_loopback_link_local_and_metadata_are_refused() {
        for a in [
            "127.0.0.1",
            "127.9.9.9",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "2001:db8::1",
        ] {
            assert!(refusal(ip(a), &[]).is_some(), "{a} must be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for a in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700::1111",
            "64:ff9b::5db8:d822",
        ] {
            assert_eq!(refusal(ip(a), &[]), None, "{a}");
        }
    }

    #[test]
    fn the_allow_list_opens_exactly_its_networks() {
        let allow: Vec<IpNet> = vec![
            "127.0.0.0/8".parse().unwrap(),
            "10.1.0.0/16".parse().unwrap(),
        ];
        assert_eq!(refusal(ip("127.0.0.1"), &allow), None);
        assert_eq!(refusal(ip("::ffff:127.0.0.1"), &allow), None);
        assert_eq!(refusal(ip("10.1.2.3"), &allow), None);
        assert!(refusal(ip("10.2.0.1"), &allow).is_some());
        assert!(refusal(ip("169.254.169.254"), &allow).is_some());
    }

    #[tokio::test]
    async fn hosts_are_checked_by_every_address() {
        assert!(check_host("[::1]", &[])
            .await
            .unwrap_err()
            .contains("loopback"));
        let e = check_host("localhost", &[]).await.unwrap_err();
        assert!(e.contains("webhook_allow_networks"), "{e}");
        let allow: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        assert_eq!(check_host("127.0.0.1", &allow).await, Ok(()));
    }
}
