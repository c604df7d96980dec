//! Reading an SBOM back: the package list of an SPDX 2.x or CycloneDX
//! JSON document, whoever wrote it (`berth sbom --attach`, syft, trivy,
//! docker buildx), bare or as the predicate of an in-toto statement,
//! itself possibly in a DSSE envelope or a sigstore bundle (`cosign
//! attest`). Also the predicate type of any attestation, SBOM or not.
//!
//! Only the fields shown are deserialised (no `serde_json::Value` tree),
//! so a document of thousands of packages reads in a few milliseconds.

use base64::Engine as _;
use serde::Deserialize;

/// DSSE envelopes and statements nested deeper than this are refused.
const MAX_DEPTH: usize = 4;

/// One package an SBOM lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its name (CycloneDX: with its group, `group/name`).
    pub name: String,
    /// Its version, when given.
    pub version: Option<String>,
    /// SPDX's `primaryPackagePurpose` or CycloneDX's component `type`,
    /// lower case (`library`, `operating-system`, `container`).
    pub kind: Option<String>,
    /// Its package URL, when given.
    pub purl: Option<String>,
}

/// The packages of an SBOM document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// `SPDX-2.3`, `CycloneDX 1.6`.
    pub format: String,
    /// In document order (CycloneDX's nested components after their
    /// parent).
    pub packages: Vec<Listed>,
}

/// What a document (an SBOM, an attestation) says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Read {
    /// The in-toto predicate type, for an attestation.
    pub predicate_type: Option<String>,
    /// The packages, when it is (or its predicate is) an SBOM.
    pub listing: Option<Listing>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Doc {
    spdx_version: Option<String>,
    packages: Option<Vec<SpdxPackage>>,
    bom_format: Option<String>,
    spec_version: Option<String>,
    components: Option<Vec<Component>>,
    predicate_type: Option<String>,
    predicate: Option<Box<Doc>>,
    payload: Option<String>,
    dsse_envelope: Option<Box<Doc>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpdxPackage {
    name: Option<String>,
    version_info: Option<String>,
    primary_package_purpose: Option<String>,
    #[serde(default)]
    external_refs: Vec<ExternalRef>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExternalRef {
    reference_type: Option<String>,
    reference_locator: Option<String>,
}

#[derive(Deserialize)]
struct Component {
    #[serde(rename = "type")]
    kind: Option<String>,
    name: Option<String>,
    group: Option<String>,
    version: Option<String>,
    purl: Option<String>,
    #[serde(default)]
    components: Vec<Component>,
}

/// Reads `doc`: an SPDX or CycloneDX JSON document, an in-toto statement,
/// a DSSE envelope or a sigstore bundle holding one. `Err` says why it
/// is none of these.
pub fn read(doc: &[u8]) -> Result<Read, String> {
    let parsed: Doc =
        serde_json::from_slice(doc).map_err(|e| format!("not a JSON document we read: {e}"))?;
    resolve(parsed, 0)
}

fn resolve(doc: Doc, depth: usize) -> Result<Read, String> {
    if depth > MAX_DEPTH {
        return Err("envelopes nested too deep".into());
    }
    if let Some(envelope) = doc.dsse_envelope {
        return resolve(*envelope, depth + 1);
    }
    if let Some(payload) = &doc.payload {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(payload.trim())
            .map_err(|e| format!("the envelope's payload is not base64: {e}"))?;
        let inner: Doc = serde_json::from_slice(&bytes)
            .map_err(|e| format!("the envelope's payload is not a statement: {e}"))?;
        return resolve(inner, depth + 1);
    }
    if let Some(predicate_type) = doc.predicate_type {
        let listing = doc.predicate.and_then(|p| listing(*p));
        return Ok(Read {
            predicate_type: Some(predicate_type),
            listing,
        });
    }
    let listing = listing(doc);
    if listing.is_none() {
        return Err("neither an SPDX nor a CycloneDX document, nor an attestation".into());
    }
    Ok(Read {
        predicate_type: None,
        listing,
    })
}

fn listing(doc: Doc) -> Option<Listing> {
    if let Some(version) = doc.spdx_version {
        let packages = doc
            .packages
            .unwrap_or_default()
            .into_iter()
            .map(|p| Listed {
                name: p.name.unwrap_or_default(),
                version: p.version_info.filter(|v| v != "NOASSERTION"),
                kind: p.primary_package_purpose.map(|k| k.to_ascii_lowercase()),
                purl: p
                    .external_refs
                    .into_iter()
                    .find(|r| r.reference_type.as_deref() == Some("purl"))
                    .and_then(|r| r.reference_locator),
            })
            .collect();
        return Some(Listing {
            format: version,
            packages,
        });
    }
    if doc
        .bom_format
        .as_deref()
        .is_some_and(|f| f.eq_ignore_ascii_case("cyclonedx"))
    {
        let mut packages = Vec::new();
        flatten(doc.components.unwrap_or_default(), &mut packages);
        return Some(Listing {
            format: format!("CycloneDX {}", doc.spec_version.unwrap_or_default())
                .trim_end()
                .to_owned(),
            packages,
        });
    }
    None
}

fn flatten(components: Vec<Component>, out: &mut Vec<Listed>) {
    for c in components {
        let name = c.name.unwrap_or_default();
        out.push(Listed {
            name: match c.group.filter(|g| !g.is_empty()) {
                Some(g) => format!("{g}/{name}"),
                None => name,
            },
            version: c.version,
            kind: c.kind.map(|k| k.to_ascii_lowercase()),
            purl: c.purl,
        });
        flatten(c.components, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sbom::tests::{image, stamp};
    use crate::sbom::{document, Format};
    use serde_json::json;

    #[test]
    fn berths_own_documents_read_back() {
        for format in [Format::Spdx, Format::CycloneDx] {
            let doc = serde_json::to_vec(&document(format, &image(1), &stamp())).unwrap();
            let r = read(&doc).unwrap();
            assert_eq!(r.predicate_type, None);
            let l = r.listing.unwrap();
            let core = l
                .packages
                .iter()
                .find(|p| p.name == "@babel/core")
                .unwrap_or_else(|| panic!("{format:?}: {l:?}"));
            assert_eq!(core.version.as_deref(), Some("7.24.0"));
            assert_eq!(core.purl.as_deref(), Some("pkg:npm/%40babel/core@7.24.0"));
            assert_eq!(core.kind.as_deref(), Some("library"));
            assert!(l.packages.iter().any(|p| p.name == "debian"));
        }
    }

    #[test]
    fn attestations_give_their_predicate_type_and_sbom() {
        let spdx = document(Format::Spdx, &image(1), &stamp());
        let statement = json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [],
            "predicateType": "https://spdx.dev/Document",
            "predicate": spdx,
        });
        let payload = base64::engine::general_purpose::STANDARD
            .encode(serde_json::to_vec(&statement).unwrap());
        let bundle = json!({
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "dsseEnvelope": {"payload": payload, "payloadType": "application/vnd.in-toto+json", "signatures": []},
        });
        let r = read(&serde_json::to_vec(&bundle).unwrap()).unwrap();
        assert_eq!(
            r.predicate_type.as_deref(),
            Some("https://spdx.dev/Document")
        );
        assert!(r
            .listing
            .unwrap()
            .packages
            .iter()
            .any(|p| p.name == "@babel/core"));

        let provenance = json!({
            "_type": "https://in-toto.io/Statement/v1",
            "predicateType": "https://slsa.dev/provenance/v1",
            "predicate": {"buildDefinition": {"buildType": "x"}},
        });
        let r = read(&serde_json::to_vec(&provenance).unwrap()).unwrap();
        assert_eq!(
            r.predicate_type.as_deref(),
            Some("https://slsa.dev/provenance/v1")
        );
        assert_eq!(r.listing, None);
    }

    #[test]
    fn cyclonedx_groups_and_nested_components_are_listed() {
        let doc = json!({
            "bomFormat": "CycloneDX", "specVersion": "1.5",
            "components": [{"type": "library", "group": "org.example", "name": "lib", "version": "1",
                            "purl": "pkg:maven/org.example/lib@1",
                            "components": [{"type": "file", "name": "inner"}]}],
        });
        let l = read(&serde_json::to_vec(&doc).unwrap())
            .unwrap()
            .listing
            .unwrap();
        assert_eq!(l.format, "CycloneDX 1.5");
        assert_eq!(l.packages.len(), 2);
        assert_eq!(l.packages[0].name, "org.example/lib");
        assert_eq!(l.packages[1].kind.as_deref(), Some("file"));
    }

    #[test]
    fn other_documents_are_refused_with_a_reason() {
        assert!(read(b"not json")
            .unwrap_err()
            .contains("not a JSON document"));
        assert!(read(br#"{"hello":"world"}"#)
            .unwrap_err()
            .contains("neither"));
        assert!(read(br#"{"payload":"%%%"}"#)
            .unwrap_err()
            .contains("base64"));
    }
}
