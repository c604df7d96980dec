//! SPDX 2.3 JSON.
//!
//! The document `DESCRIBES` the image package (purpose `CONTAINER`, its
//! `pkg:oci` purl); an index `CONTAINS` one image package per platform; each
//! image `CONTAINS` its distribution (purpose `OPERATING-SYSTEM`) and its
//! packages (purpose `LIBRARY`, a `PACKAGE-MANAGER`/`purl` external
//! reference, the layer and path in `sourceInfo`). Declared licenses are
//! free text in package metadata, not always SPDX expressions, so they go
//! in the package comment and `licenseDeclared` says `NOASSERTION`.

use serde_json::{json, Value};

use super::{Image, Stamp};
use crate::{Distro, Package};

fn spdx_id(kind: &str, n: usize) -> String {
    format!("SPDXRef-{kind}-{n}")
}

fn container(id: &str, name: &str, version: &str, purl: &str) -> Value {
    json!({
        "SPDXID": id,
        "name": name,
        "versionInfo": version,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": purl,
        }],
    })
}

fn distro_package(id: &str, d: &Distro) -> Value {
    let mut v = json!({
        "SPDXID": id,
        "name": d.id,
        "versionInfo": d.version_id.clone().unwrap_or_else(|| "NOASSERTION".to_owned()),
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "OPERATING-SYSTEM",
    });
    if let Some(p) = &d.pretty_name {
        v["description"] = json!(p);
    }
    v
}

fn package(id: &str, p: &Package) -> Value {
    let name = match &p.namespace {
        Some(ns) if p.ecosystem == crate::Ecosystem::Npm => format!("{ns}/{}", p.name),
        Some(ns) => format!("{ns}:{}", p.name),
        None => p.name.clone(),
    };
    let mut source_info = format!(
        "{} found in layer {} at {}",
        p.ecosystem.as_str(),
        p.layer,
        p.path
    );
    if let Some(s) = &p.source {
        source_info.push_str(&format!("; source package {}", s.name));
        if let Some(v) = &s.version {
            source_info.push_str(&format!(" {v}"));
        }
    }
    let mut v = json!({
        "SPDXID": id,
        "name": name,
        "versionInfo": p.version,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "LIBRARY",
        "sourceInfo": source_info,
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": p.purl,
        }],
    });
    if let Some(l) = &p.license {
        v["comment"] = json!(format!("declared license: {l}"));
    }
    v
}

fn contains(from: &str, to: &str) -> Value {
    json!({"spdxElementId": from, "relationshipType": "CONTAINS", "relatedSpdxElement": to})
}

/// The SPDX document of `image`.
pub fn document(image: &Image, stamp: &Stamp) -> Value {
    let mut packages = Vec::new();
    let mut relationships = Vec::new();
    let top = "SPDXRef-Image".to_owned();
    packages.push(container(
        &top,
        &image.name,
        &image.digest,
        &image.purl(&image.digest),
    ));
    relationships.push(json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": top,
    }));
    let mut n = 0;
    for (i, platform) in image.platforms.iter().enumerate() {
        let holder = if image.is_index() {
            let id = spdx_id("Platform", i + 1);
            let name = match &platform.platform {
                Some(p) => format!("{} ({p})", image.name),
                None => image.name.clone(),
            };
            packages.push(container(
                &id,
                &name,
                &platform.digest,
                &image.purl(&platform.digest),
            ));
            relationships.push(contains(&top, &id));
            id
        } else {
            top.clone()
        };
        if let Some(d) = &platform.inventory.distro {
            let id = spdx_id("OperatingSystem", i + 1);
            packages.push(distro_package(&id, d));
            relationships.push(contains(&holder, &id));
        }
        for p in &platform.inventory.packages {
            n += 1;
            let id = spdx_id("Package", n);
            packages.push(package(&id, p));
            relationships.push(contains(&holder, &id));
        }
    }
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{}:{}", image.name, image.reference),
        "documentNamespace": format!("https://spdx.org/spdxdocs/berth-{}", stamp.id),
        "creationInfo": {
            "created": stamp.created,
            "creators": [format!("Tool: {}", stamp.tool_version)],
        },
        "packages": packages,
        "relationships": relationships,
    })
}
