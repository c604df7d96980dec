//! Content digests (`algorithm:encoded`) as the OCI image spec defines them.
//!
//! Only the registered algorithms `sha256` and `sha512` are accepted; both
//! must be lower-case hex of the exact length. A parsed [`Digest`] is always
//! canonical, so its string form can be used as a storage key.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

/// A digest algorithm berth can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, the canonical algorithm.
    Sha256,
    /// SHA-512.
    Sha512,
}

impl Algorithm {
    /// The algorithm's name as it appears in a digest string.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the hex-encoded value.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    /// A fresh incremental hasher for this algorithm.
    pub fn hasher(self) -> Hasher {
        match self {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }
}

/// Why a digest string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// No `algorithm:` prefix.
    #[error("digest {0:?} has no algorithm prefix")]
    Format(String),
    /// An algorithm berth does not implement.
    #[error("digest algorithm {0:?} is not supported (use sha256 or sha512)")]
    Unsupported(String),
    /// The encoded part is not lower-case hex of the right length.
    #[error("digest {0:?} has a malformed encoded value")]
    Encoding(String),
}

/// A validated, canonical content digest.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    // The full "algo:hex" string, kept to avoid re-formatting on hot paths.
    full: String,
}

impl Digest {
    /// Parses and validates `algorithm:hex`.
    pub fn parse(s: &str) -> Result<Digest, DigestError> {
        let (algo, hex) = s
            .split_once(':')
            .ok_or_else(|| DigestError::Format(truncate(s)))?;
        let algorithm = match algo {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => {
                // The grammar allows other algorithms; we refuse them explicitly
                // rather than calling them malformed.
                if algo.is_empty()
                    || !algo.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b)
                    })
                {
                    return Err(DigestError::Format(truncate(s)));
                }
                return Err(DigestError::Unsupported(truncate(algo)));
            }
        };
        if hex.len() != algorithm.hex_len()
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestError::Encoding(truncate(s)));
        }
        Ok(Digest {
            algorithm,
            full: s.to_owned(),
        })
    }

    /// Digest of `data` with `algorithm`.
    pub fn compute(algorithm: Algorithm, data: &[u8]) -> Digest {
        let mut h = algorithm.hasher();
        h.update(data);
        h.finish()
    }

    /// SHA-256 digest of `data`.
    pub fn sha256(data: &[u8]) -> Digest {
        Digest::compute(Algorithm::Sha256, data)
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The hex-encoded value without the algorithm prefix.
    pub fn hex(&self) -> &str {
        &self.full[self.algorithm.as_str().len() + 1..]
    }

    /// The full `algorithm:hex` string.
    pub fn as_str(&self) -> &str {
        &self.full
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(160).collect()
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.full)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.full)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An incremental hasher for one of the supported algorithms.
#[derive(Clone)]
pub enum Hasher {
    /// SHA-256 state.
    Sha256(sha2::Sha256),
    /// SHA-512 state.
    Sha512(sha2::Sha512),
}

impl Hasher {
    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    /// The algorithm of this hasher.
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// Consumes the hasher and returns the digest.
    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            Hasher::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        Digest {
            algorithm,
            full: format!("{}:{}", algorithm.as_str(), hex),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_computes() {
        let d = Digest::sha256(b"");
        assert_eq!(
            d.as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Digest::parse(d.as_str()).unwrap(), d);
        assert_eq!(d.hex().len(), 64);
        let d512 = Digest::compute(Algorithm::Sha512, b"abc");
        assert!(d512.as_str().starts_with("sha512:ddaf35a193617aba"));
        assert_eq!(
            Digest::parse(d512.as_str()).unwrap().algorithm(),
            Algorithm::Sha512
        );
    }

    #[test]
    fn refuses_bad_digests() {
        assert!(matches!(
            Digest::parse("nocolon"),
            Err(DigestError::Format(_))
        ));
        assert!(matches!(
            Digest::parse("md5:abcd"),
            Err(DigestError::Unsupported(_))
        ));
        assert!(matches!(
            Digest::parse("sha256:abc"),
            Err(DigestError::Encoding(_))
        ));
        let upper = format!("sha256:{}", "A".repeat(64));
        assert!(matches!(
            Digest::parse(&upper),
            Err(DigestError::Encoding(_))
        ));
        assert!(matches!(
            Digest::parse("sha256:../../etc/passwd"),
            Err(DigestError::Encoding(_))
        ));
        assert!(matches!(Digest::parse(":abc"), Err(DigestError::Format(_))));
    }
}
