//! Hostile input never panics: random bytes and random mutations of valid
//! manifests, names, tags and digests only ever yield `Ok` or a typed error.

#![allow(clippy::unwrap_used)]

use berth_oci::{validate_repository, validate_tag, Digest, Manifest, Reference};

/// xorshift64*: deterministic, dependency-free randomness for the test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const SEED_MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/x","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2,"data":"e30="},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2,"urls":["x"],"annotations":{"a":"b"}}],"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e","size":1}}"#;

#[test]
fn mutated_manifests_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let seed = SEED_MANIFEST.as_bytes();
    assert!(Manifest::parse(seed, None).is_ok());
    let alphabet = b"{}[]\":,0123456789-eE.abcdefsha256:nul \\u0000\xff";
    let mut accepted = 0;
    for _ in 0..20_000 {
        let mut m = seed.to_vec();
        for _ in 0..1 + rng.below(4) {
            let i = rng.below(m.len());
            match rng.below(3) {
                0 => m[i] = alphabet[rng.below(alphabet.len())],
                1 => {
                    m.remove(i);
                }
                _ => m.insert(i, alphabet[rng.below(alphabet.len())]),
            }
        }
        let ct = ["application/vnd.oci.image.index.v1+json", "", "text/plain"][rng.below(3)];
        if Manifest::parse(&m, Some(ct)).is_ok() {
            accepted += 1;
        }
    }
    // Some mutations (inside annotation strings, say) stay valid; most don't.
    assert!(accepted > 0 && accepted < 20_000, "accepted {accepted}");
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(42);
    for _ in 0..5_000 {
        let len = rng.below(200);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let _ = Manifest::parse(&bytes, None);
        let s = String::from_utf8_lossy(&bytes);
        let _ = Digest::parse(&s);
        let _ = validate_repository(&s);
        let _ = validate_tag(&s);
        let _ = Reference::parse(&s);
        // Printable ASCII exercises the grammars more than arbitrary bytes.
        let printable: String = (0..len)
            .map(|_| (b' ' + (rng.next() % 95) as u8) as char)
            .collect();
        assert!(!(validate_repository(&printable).is_ok() && printable.contains("..")));
        let _ = Reference::parse(&printable);
        let _ = Digest::parse(&format!("sha256:{printable}"));
    }
}
