use super::*;
use crate::{Distro, Ecosystem, Package};

/// An image of `platforms` platforms (1 or 2), each holding one npm
/// package (`@babel/core` 7.24.0) on Debian 12; also for `read`'s tests.
pub(super) fn image(platforms: usize) -> Image {
    let inv = Inventory {
        distro: Some(Distro {
            id: "debian".into(),
            version_id: Some("12".into()),
            ..Distro::default()
        }),
        packages: vec![Package {
            ecosystem: Ecosystem::Npm,
            namespace: Some("@babel".into()),
            name: "core".into(),
            version: "7.24.0".into(),
            source: None,
            arch: None,
            license: Some("MIT".into()),
            purl: "pkg:npm/%40babel/core@7.24.0".into(),
            layer: "sha256:aa".into(),
            path: "/app/node_modules/@babel/core/package.json".into(),
        }],
        notes: Vec::new(),
    };
    let digests = ["sha256:11", "sha256:22"];
    Image {
        name: "localhost:5000/acme/web".into(),
        reference: "v1".into(),
        digest: if platforms == 1 {
            "sha256:11".into()
        } else {
            "sha256:ff".into()
        },
        platforms: (0..platforms)
            .map(|i| PlatformImage {
                platform: Some(format!("linux/arch{i}")),
                digest: digests[i].into(),
                inventory: inv.clone(),
            })
            .collect(),
    }
}

pub(super) fn stamp() -> Stamp {
    Stamp {
        created: "2026-01-01T00:00:00Z".into(),
        id: "3b1f7bde-0000-4000-8000-000000000000".into(),
        tool_version: "berth-0.1.0".into(),
    }
}

#[test]
fn spdx_describes_the_image_and_contains_its_packages() {
    let doc = document(Format::Spdx, &image(1), &stamp());
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");
    let packages = doc["packages"].as_array().unwrap();
    // Image, operating system, one package.
    assert_eq!(packages.len(), 3);
    assert_eq!(packages[2]["name"], "@babel/core");
    assert_eq!(
        packages[2]["externalRefs"][0]["referenceLocator"],
        "pkg:npm/%40babel/core@7.24.0"
    );
    assert_eq!(
        packages[0]["externalRefs"][0]["referenceLocator"],
        "pkg:oci/web@sha256%3A11?repository_url=localhost%3A5000%2Facme%2Fweb"
    );
    assert_eq!(doc["relationships"].as_array().unwrap().len(), 3);
}

#[test]
fn an_index_has_one_image_per_platform() {
    let doc = document(Format::CycloneDx, &image(2), &stamp());
    assert_eq!(doc["specVersion"], "1.6");
    let components = doc["components"].as_array().unwrap();
    let containers = components
        .iter()
        .filter(|c| c["type"] == "container")
        .count();
    assert_eq!(containers, 2);
    assert_eq!(components.len(), 6);
    let deps = doc["dependencies"].as_array().unwrap();
    assert_eq!(deps.len(), 3);
    assert_eq!(deps[2]["ref"], "image:sha256:ff");
    let spdx = document(Format::Spdx, &image(2), &stamp());
    assert_eq!(spdx["packages"].as_array().unwrap().len(), 7);
}
