//! Rust crates from `Cargo.lock` (every `[[package]]`: registry, git and
//! path dependencies, and the workspace's own crates).

use crate::{purl, Ecosystem, Package};

#[derive(serde::Deserialize)]
struct Lock {
    #[serde(default)]
    package: Vec<Locked>,
}

#[derive(serde::Deserialize)]
struct Locked {
    name: String,
    version: String,
}

/// The crates of a lock file; the error is the note to show.
pub fn parse(bytes: &[u8], path: &str, layer: &str) -> Result<Vec<Package>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "Cargo.lock is not UTF-8".to_owned())?;
    let lock: Lock = toml::from_str(text).map_err(|e| format!("Cargo.lock does not parse: {e}"))?;
    Ok(lock
        .package
        .into_iter()
        .map(|p| Package {
            ecosystem: Ecosystem::Cargo,
            namespace: None,
            purl: purl::build("cargo", None, &p.name, Some(&p.version), &[]),
            name: p.name,
            version: p.version,
            source: None,
            arch: None,
            license: None,
            layer: layer.to_owned(),
            path: path.to_owned(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn lock_packages() {
        let lock = "version = 3\n\n[[package]]\nname = \"serde\"\nversion = \"1.0.200\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\ndependencies = [\"serde\"]\n";
        let pkgs = super::parse(lock.as_bytes(), "/Cargo.lock", "l").unwrap();
        assert_eq!(pkgs.len(), 2);
        assert_eq!(pkgs[0].purl, "pkg:cargo/serde@1.0.200");
        assert!(super::parse(b"[[package]]\nname = 1", "/Cargo.lock", "l").is_err());
    }
}
