//! CycloneDX 1.6 JSON.
//!
//! `metadata.component` is the image (type `container`, its `pkg:oci`
//! purl); an index has one nested `container` component per platform; the
//! distribution is an `operating-system` component, packages are `library`
//! components with their purl, `group` (Maven group, npm scope), declared
//! license, and `berth:` properties for the layer, the path and the source
//! package. `dependencies` say which image holds what.

use serde_json::{json, Value};

use super::{Image, Stamp};
use crate::Package;

fn component(bom_ref: &str, p: &Package) -> Value {
    let mut properties = vec![
        json!({"name": "berth:ecosystem", "value": p.ecosystem.as_str()}),
        json!({"name": "berth:layer", "value": p.layer}),
        json!({"name": "berth:path", "value": p.path}),
    ];
    if let Some(s) = &p.source {
        properties.push(json!({"name": "berth:source-package", "value": s.name}));
        if let Some(v) = &s.version {
            properties.push(json!({"name": "berth:source-version", "value": v}));
        }
    }
    let mut c = json!({
        "type": "library",
        "bom-ref": bom_ref,
        "name": p.name,
        "version": p.version,
        "purl": p.purl,
        "properties": properties,
    });
    if let Some(ns) = &p.namespace {
        c["group"] = json!(ns);
    }
    if let Some(l) = &p.license {
        c["licenses"] = json!([{"license": {"name": l}}]);
    }
    c
}

/// The CycloneDX document of `image`.
pub fn document(image: &Image, stamp: &Stamp) -> Value {
    let top_ref = format!("image:{}", image.digest);
    let mut components = Vec::new();
    let mut dependencies = Vec::new();
    let mut platform_refs = Vec::new();
    let mut n = 0;
    for platform in &image.platforms {
        let holder = if image.is_index() {
            let r = format!("image:{}", platform.digest);
            let name = match &platform.platform {
                Some(p) => format!("{} ({p})", image.name),
                None => image.name.clone(),
            };
            components.push(json!({
                "type": "container",
                "bom-ref": r,
                "name": name,
                "version": platform.digest,
                "purl": image.purl(&platform.digest),
            }));
            platform_refs.push(r.clone());
            r
        } else {
            top_ref.clone()
        };
        let mut held = Vec::new();
        if let Some(d) = &platform.inventory.distro {
            let r = format!("os:{}:{}", d.qualifier(), platform.digest);
            let mut c = json!({"type": "operating-system", "bom-ref": r, "name": d.id});
            if let Some(v) = &d.version_id {
                c["version"] = json!(v);
            }
            if let Some(p) = &d.pretty_name {
                c["description"] = json!(p);
            }
            components.push(c);
            held.push(r);
        }
        for p in &platform.inventory.packages {
            n += 1;
            let r = format!("pkg:{n}");
            components.push(component(&r, p));
            held.push(r);
        }
        dependencies.push(json!({"ref": holder, "dependsOn": held}));
    }
    if image.is_index() {
        dependencies.push(json!({"ref": top_ref, "dependsOn": platform_refs}));
    }
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": format!("urn:uuid:{}", stamp.id),
        "version": 1,
        "metadata": {
            "timestamp": stamp.created,
            "tools": {"components": [{
                "type": "application",
                "name": "berth",
                "version": stamp.tool_version.trim_start_matches("berth-"),
            }]},
            "component": {
                "type": "container",
                "bom-ref": top_ref,
                "name": image.name,
                "version": image.digest,
                "purl": image.purl(&image.digest),
            },
        },
        "components": components,
        "dependencies": dependencies,
    })
}
