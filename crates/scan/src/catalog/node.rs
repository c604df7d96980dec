//! Node packages: the `package.json` at the root of each installed package
//! (`node_modules/NAME/package.json`, `node_modules/@scope/NAME/package.json`,
//! at any depth). Other `package.json` files inside a package (test
//! fixtures, sub-path exports) are no packages and are not read.

use crate::{purl, Ecosystem, Package};

/// Whether `dir` (no leading `/`) is the root directory of an installed
/// package.
pub fn is_package_root(dir: &str) -> bool {
    let parts: Vec<&str> = dir.split('/').collect();
    match parts.as_slice() {
        [.., "node_modules", name] => !name.starts_with('@') && !name.starts_with('.'),
        [.., "node_modules", scope, _] => scope.starts_with('@'),
        _ => false,
    }
}

/// The package a root `package.json` declares.
pub fn parse(bytes: &[u8], path: &str, layer: &str) -> Option<Package> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let full = v.get("name")?.as_str()?;
    let version = v.get("version")?.as_str()?;
    if full.is_empty() || version.is_empty() {
        return None;
    }
    let (namespace, name) = match full.split_once('/') {
        Some((scope, n)) if scope.starts_with('@') => (Some(scope.to_owned()), n.to_owned()),
        _ => (None, full.to_owned()),
    };
    let license = match v.get("license") {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Object(o)) => {
            o.get("type").and_then(|t| t.as_str()).map(str::to_owned)
        }
        _ => None,
    };
    Some(Package {
        ecosystem: Ecosystem::Npm,
        purl: purl::build("npm", namespace.as_deref(), &name, Some(version), &[]),
        namespace,
        name,
        version: version.to_owned(),
        source: None,
        arch: None,
        license,
        layer: layer.to_owned(),
        path: path.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_roots() {
        assert!(is_package_root("app/node_modules/express"));
        assert!(is_package_root("app/node_modules/@types/node"));
        assert!(is_package_root("node_modules/a/node_modules/b"));
        assert!(!is_package_root("app/node_modules/express/lib"));
        assert!(!is_package_root("app/node_modules/@types"));
        assert!(!is_package_root("app/node_modules/.bin"));
        assert!(!is_package_root("app"));
    }

    #[test]
    fn scoped_packages() {
        let p = parse(
            br#"{"name":"@babel/core","version":"7.24.0","license":"MIT"}"#,
            "/p",
            "l",
        )
        .unwrap();
        assert_eq!(p.namespace.as_deref(), Some("@babel"));
        assert_eq!(p.purl, "pkg:npm/%40babel/core@7.24.0");
        assert!(parse(br#"{"name":"x"}"#, "/p", "l").is_none());
    }
}
