//! `webhook_allow_networks`: a list of CIDRs (`10.0.0.0/8,fd00::/8`; a
//! bare address is one host), given as a comma-separated string on the
//! command line and in the environment, and as a string or an array in the
//! TOML file.

use std::fmt;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Networks, in the order given.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Networks(pub Vec<IpNet>);

impl fmt::Debug for Networks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_string())
    }
}

impl fmt::Display for Networks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

impl FromStr for Networks {
    type Err = String;

    fn from_str(s: &str) -> Result<Networks, String> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let net = match part.parse::<IpNet>() {
                Ok(n) => n,
                Err(_) => part
                    .parse::<std::net::IpAddr>()
                    .map(IpNet::from)
                    .map_err(|_| {
                        format!(
                            "invalid network {part:?} (expected a CIDR such as 10.0.0.0/8 or \
                             fd00::/8, or an address)"
                        )
                    })?,
            };
            out.push(net);
        }
        Ok(Networks(out))
    }
}

impl Serialize for Networks {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Networks {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Networks, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            List(Vec<String>),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Text(t) => t,
            Raw::List(l) => l.join(","),
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_of_cidrs_and_addresses() {
        let n: Networks = "127.0.0.0/8, ::1,10.1.0.0/16".parse().unwrap();
        assert_eq!(n.to_string(), "127.0.0.0/8,::1/128,10.1.0.0/16");
        assert!("10.0.0.0/33".parse::<Networks>().is_err());
        assert!("example.com"
            .parse::<Networks>()
            .unwrap_err()
            .contains("example.com"));
        let from_toml: Networks =
            serde_json::from_value(serde_json::json!(["10.0.0.0/8", "::1"])).unwrap();
        assert_eq!(from_toml.0.len(), 2);
        assert_eq!("".parse::<Networks>().unwrap(), Networks::default());
    }
}
