//! Base64 as the formats write it: standard with padding (cosign
//! annotations, X.509 chains), URL-safe without (JWS), and whichever a
//! protobuf JSON writer chose (sigstore bundles accept both).

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;

/// Decodes base64 in any of its four common spellings.
pub(crate) fn any_base64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(s).ok())
}

/// Decodes unpadded URL-safe base64 (JWS).
pub(crate) fn base64url(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings() {
        for s in ["+/8=", "-_8=", "+/8", "-_8"] {
            assert_eq!(any_base64(s).unwrap(), vec![0xfb, 0xff], "{s}");
        }
        assert!(any_base64("not base64!").is_none());
        assert_eq!(base64url("-_8").unwrap(), vec![0xfb, 0xff]);
        assert!(base64url("+/8=").is_none());
    }
}
