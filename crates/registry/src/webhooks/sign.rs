//! Signing payloads and spacing retries.
//!
//! The signature is HMAC-SHA256 of the exact body bytes with the webhook's
//! secret, sent as `Berth-Signature: sha256=<hex>` (the shape GitHub and
//! many receivers already verify). Replays are recognisable by the
//! delivery id header and the event's time, both inside the signed body
//! or beside it.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The `Berth-Signature` value of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length; the error case cannot happen.
    match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        }
        Err(_) => String::new(),
    }
}

/// A new random secret: 32 bytes, hex, with a recognisable prefix.
pub fn new_secret() -> crate::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| crate::Error::Internal(format!("no randomness for a webhook secret: {e}")))?;
    Ok(format!("whsec_{}", hex::encode(bytes)))
}

/// The wait before attempt `attempt + 1`, after `attempt` failed ones
/// (1, 2, ...): `base * 2^(attempt-1)`, at most `max`, of which a random
/// part (up to a half) is taken off so that deliveries failing together
/// do not come back together. `unit` in [0, 1) is that random part.
pub fn backoff(attempt: u32, base: Duration, max: Duration, unit: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let full = base.saturating_mul(1u32 << exp).min(max);
    full.mul_f64(1.0 - unit.clamp(0.0, 1.0) / 2.0)
}

/// A random number in [0, 1).
pub fn jitter() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::getrandom(&mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_a_known_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_ne!(
            signature("other", b"what do ya want for nothing?"),
            signature("Jefe", b"what do ya want for nothing?")
        );
    }

    #[test]
    fn secrets_are_random_and_long() {
        let (a, b) = (new_secret().unwrap(), new_secret().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 6 + 64);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_below() {
        let s = Duration::from_secs;
        assert_eq!(backoff(1, s(1), s(3600), 0.0), s(1));
        assert_eq!(backoff(2, s(1), s(3600), 0.0), s(2));
        assert_eq!(backoff(5, s(1), s(3600), 0.0), s(16));
        assert_eq!(backoff(40, s(1), s(3600), 0.0), s(3600));
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j));
            let d = backoff(4, s(1), s(3600), j);
            assert!(d > s(4) && d <= s(8), "{d:?}");
        }
    }
}
