//! An image: what `docker history` and `dive` answer, in a page.
//!
//! For an index, a platform switcher over its images (the first one
//! shown unless `?platform=` picks another); for an image, its layers with
//! their sizes and the `created_by` line of the history entry that made
//! each, the config's labels, the manifest's annotations, the config
//! itself, the referrers (signatures, SBOMs, attestations), the signature
//! verdict and the stored vulnerability scan ("not scanned yet" without
//! one) with a severity filter.

use axum::http::HeaderMap;
use axum::response::Response;
use berth_oci::{Digest, EntryKind, Manifest, ManifestKind, Reference, RepositoryName};
use berth_registry::scanning::{ScanReport, SeverityCounts};
use berth_registry::trust::{Verdict, VerdictView};
use berth_registry::{BlobBody, Error, Listing, ReferrerDetail, ReferrerKind};
use futures_util::TryStreamExt as _;
use maud::{html, Markup};
use serde_json::Value;

use super::format::{short_digest, size, time};
use super::repository::{pull_commands, readable, registry_host, TagQuery};
use super::{Page, UiError, Viewer};
use crate::App;

/// The largest config blob read (configs are a few kB).
const MAX_CONFIG: usize = 4 * 1024 * 1024;
/// Packages of one SBOM listed at most (the count says how many more).
const MAX_PACKAGES: usize = 5_000;
/// An SBOM's package list is open at first up to this many packages.
const OPEN_PACKAGES: usize = 20;
/// Findings listed at most.
const MAX_FINDINGS: usize = 500;
/// Severities, worst first.
const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "unknown"];

/// The rank of a severity name (0 = critical).
fn rank(severity: &str) -> usize {
    SEVERITIES
        .iter()
        .position(|s| *s == severity)
        .unwrap_or(SEVERITIES.len() - 1)
}

/// `os/arch[/variant]` of a platform object.
fn platform_label(p: &Value) -> Option<String> {
    let os = p.get("os")?.as_str()?;
    let arch = p.get("architecture")?.as_str()?;
    Some(match p.get("variant").and_then(Value::as_str) {
        Some(v) => format!("{os}/{arch}/{v}"),
        None => format!("{os}/{arch}"),
    })
}

/// The stored manifest `digest` of `repo`, parsed.
async fn manifest(
    app: &App,
    repo: &RepositoryName,
    reference: &Reference,
) -> Result<(Digest, Manifest), UiError> {
    let entry = app.registry.get_manifest(repo, reference).await?;
    let m = Manifest::parse(&entry.content, Some(&entry.media_type)).map_err(|e| {
        Error::Internal(format!(
            "stored manifest {repo}@{} does not parse: {e}",
            entry.digest
        ))
    })?;
    Ok((entry.digest.clone(), m))
}

/// A config blob of `repo`, parsed; `None` if it is not JSON or too big.
async fn config(app: &App, repo: &RepositoryName, m: &Manifest) -> Result<Option<Value>, UiError> {
    let Some(c) = &m.config else { return Ok(None) };
    if c.size < 0 || c.size as usize > MAX_CONFIG {
        return Ok(None);
    }
    let (_, _, read) = match app.registry.read_blob(repo, &c.digest, None).await {
        Ok(r) => r,
        Err(Error::BlobUnknown(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let bytes = match read.body {
        BlobBody::Bytes(b) => b.to_vec(),
        BlobBody::Stream(mut s) => {
            let mut out = Vec::new();
            while let Some(chunk) = s
                .try_next()
                .await
                .map_err(|e| Error::Internal(format!("reading config {}: {e}", c.digest)))?
            {
                out.extend_from_slice(&chunk);
                if out.len() > MAX_CONFIG {
                    return Ok(None);
                }
            }
            out
        }
    };
    Ok(serde_json::from_slice(&bytes).ok())
}

/// The platforms of the manifest `digest` of `repo` (an index's
/// entries, or an image's own from its config; empty for other
/// artifacts) and the image manifests a vulnerability scan of it covers
/// (an index's platform images, or the image itself).
pub(crate) async fn contents(
    app: &App,
    repo: &RepositoryName,
    digest: &Digest,
) -> Result<(Vec<String>, Vec<Digest>), UiError> {
    let (_, m) = manifest(app, repo, &Reference::Digest(digest.clone())).await?;
    Ok(match m.kind {
        ManifestKind::Index => {
            let children: Vec<_> = m
                .child_manifests()
                .filter(|d| d.entry_kind() == EntryKind::Manifest)
                .collect();
            (
                children
                    .iter()
                    .filter_map(|d| d.platform.as_ref().and_then(platform_label))
                    .collect(),
                children.iter().map(|d| d.digest.clone()).collect(),
            )
        }
        _ => (
            config(app, repo, &m)
                .await?
                .as_ref()
                .and_then(platform_label)
                .into_iter()
                .collect(),
            vec![digest.clone()],
        ),
    })
}

/// A badge for a scan's counts: the worst severities, or "not scanned
/// yet".
pub(crate) fn vuln_badge(counts: Option<&SeverityCounts>) -> Markup {
    match counts {
        None => html! { span.muted { "not scanned yet" } },
        Some(c) if c.critical + c.high + c.medium + c.low + c.unknown == 0 => {
            html! { span.badge.ok { "none found" } }
        }
        Some(c) => html! {
            @if c.critical > 0 { span.badge.critical { (c.critical) " critical" } " " }
            @if c.high > 0 { span.badge.high { (c.high) " high" } " " }
            @if c.medium > 0 { span.badge.medium { (c.medium) " medium" } " " }
            @if c.low + c.unknown > 0 { span.badge { (c.low + c.unknown) " low or unrated" } }
        },
    }
}

/// `GET /ui/repo/NAME:TAG` and `/ui/repo/NAME@DIGEST`.
pub(crate) async fn render(
    app: &App,
    headers: &HeaderMap,
    viewer: &Viewer,
    name: &RepositoryName,
    reference: &Reference,
    q: &TagQuery,
) -> Result<Response, UiError> {
    readable(app, viewer, name).await?;
    let (top, top_manifest) = manifest(app, name, reference).await.map_err(|e| match e {
        UiError::Service(Error::ManifestUnknown(_)) => {
            UiError::NotFound(format!("no image {reference} in {name}"))
        }
        e => e,
    })?;
    // An index: pick the platform image to show.
    let children: Vec<(String, Digest)> = if top_manifest.kind == ManifestKind::Index {
        top_manifest
            .child_manifests()
            .filter(|d| d.entry_kind() == EntryKind::Manifest)
            .map(|d| {
                let label = d
                    .platform
                    .as_ref()
                    .and_then(platform_label)
                    .unwrap_or_else(|| short_digest(d.digest.as_str()).to_owned());
                (label, d.digest.clone())
            })
            .collect()
    } else {
        Vec::new()
    };
    let chosen = match q.platform.as_deref() {
        Some(p) => children.iter().find(|(l, _)| l == p),
        None => children.first(),
    };
    let (shown_digest, shown) = match chosen {
        Some((_, d)) => manifest(app, name, &Reference::Digest(d.clone())).await?,
        None => (top.clone(), top_manifest.clone()),
    };
    let cfg = config(app, name, &shown).await?;
    let referrers = app.registry.referrer_details(name, &top).await?;
    let verdict = app
        .registry
        .signature_verdict(name, &Reference::Digest(top.clone()))
        .await
        .ok();
    let scan = app.registry.stored_scan(name, &top).await?;
    let host = registry_host(app, headers);
    let now = berth_registry::now_ms();
    let tag = match reference {
        Reference::Tag(t) => Some(t.as_str().to_owned()),
        Reference::Digest(_) => None,
    };
    let title = match &tag {
        Some(t) => format!("{name}:{t}"),
        None => format!("{name}@{}", short_digest(top.as_str())),
    };
    let self_link = match &tag {
        Some(t) => format!("/ui/repo/{name}:{t}"),
        None => format!("/ui/repo/{name}@{top}"),
    };
    let body = html! {
        h1 { (title) }
        p.mono.muted { (top.as_str()) }
        (pull_commands(&host, name, tag.as_deref().unwrap_or("TAG"), top.as_str()))
        @if !children.is_empty() {
            nav.platforms aria-label="Platforms" {
                h2 { "Platforms" }
                ul {
                    @for (label, d) in &children {
                        @let current = *d == shown_digest;
                        li {
                            a href={ (self_link) "?platform=" (label) } aria-current=[current.then_some("page")] { (label) }
                        }
                    }
                }
            }
        }
        (layers(&shown, cfg.as_ref()))
        (labels(&shown, cfg.as_ref()))
        section aria-labelledby="sig-h" {
            h2 #sig-h { "Signature" }
            @match &verdict {
                Some(v) => {
                    @match &v.verdict {
                        berth_registry::trust::Verdict::Verified { key, algorithm, .. } => {
                            p { span.badge.ok { "verified" } " by key " strong { (key) } " (" (algorithm) "), checked " (time(v.checked_at, now)) }
                        }
                        berth_registry::trust::Verdict::Unverified { detail, .. } => {
                            p { span.badge { "not verified" } " " (detail) }
                        }
                    }
                }
                None => { p.muted { "No signature verdict." } }
            }
        }
        (vulnerabilities(scan.as_ref(), q.severity.as_deref(), &self_link, q.platform.as_deref()))
        (referrers_section(name, &top, &referrers, verdict.as_ref()))
        @if let Some(c) = &cfg {
            details.config {
                summary { "Config " span.mono.muted { (shown.config.as_ref().map_or("", |d| d.digest.as_str())) } }
                pre { code { (serde_json::to_string_pretty(c).unwrap_or_default()) } }
            }
        }
    };
    Ok(Page::new(title.clone())
        .crumb("Repositories", "/ui/")
        .crumb(
            name.namespace_str(),
            format!("/ui/ns/{}", name.namespace_str()),
        )
        .crumb(name.as_str(), format!("/ui/repo/{name}"))
        .render(Some(viewer), body))
}

/// The layers, each with the history line that made it (history entries
/// marked `empty_layer` made none).
fn layers(m: &Manifest, cfg: Option<&Value>) -> Markup {
    let history: Vec<&Value> = cfg
        .and_then(|c| c.get("history"))
        .and_then(Value::as_array)
        .map(|h| {
            h.iter()
                .filter(|e| {
                    !e.get("empty_layer")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                })
                .collect()
        })
        .unwrap_or_default();
    let total: i64 = m.layers.iter().map(|l| l.size.max(0)).sum();
    html! {
        section aria-labelledby="layers-h" {
            h2 #layers-h { "Layers " span.muted { "(" (m.layers.len()) ", " (size(total as u64)) ")" } }
            @if m.layers.is_empty() {
                p.muted { "No layers: this is not a container image." }
            } @else {
                div.scroll { table.layers {
                    thead { tr {
                        th.num scope="col" { "#" }
                        th.num scope="col" { "Size" }
                        th scope="col" { "Created by" }
                        th scope="col" { "Digest" }
                    } }
                    tbody {
                        @for (i, l) in m.layers.iter().enumerate() {
                            tr {
                                td.num { (i + 1) }
                                td.num { (size(l.size.max(0) as u64)) }
                                td.created-by { code {
                                    (history.get(i).and_then(|h| h.get("created_by")).and_then(Value::as_str).unwrap_or("(no history)"))
                                } }
                                td.mono title=(l.digest.as_str()) { (short_digest(l.digest.as_str())) }
                            }
                        }
                    }
                } }
            }
        }
    }
}

/// The config's labels and the manifest's annotations.
fn labels(m: &Manifest, cfg: Option<&Value>) -> Markup {
    let labels: Vec<(&String, &Value)> = cfg
        .and_then(|c| c.get("config"))
        .and_then(|c| c.get("Labels"))
        .and_then(Value::as_object)
        .map(|o| o.iter().collect())
        .unwrap_or_default();
    html! {
        section aria-labelledby="labels-h" {
            h2 #labels-h { "Labels and annotations" }
            @if labels.is_empty() && m.annotations.as_ref().is_none_or(|a| a.is_empty()) {
                p.muted { "None." }
            } @else {
                dl.pairs {
                    @for (k, v) in &labels {
                        dt { (k) " " span.muted { "(label)" } }
                        dd { (v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())) }
                    }
                    @for (k, v) in m.annotations.iter().flatten() {
                        dt { (k) " " span.muted { "(annotation)" } }
                        dd { (v) }
                    }
                }
            }
        }
    }
}

/// The stored scan, its findings at or above `severity`.
fn vulnerabilities(
    scan: Option<&ScanReport>,
    severity: Option<&str>,
    link: &str,
    platform: Option<&str>,
) -> Markup {
    let floor = severity.map_or(SEVERITIES.len() - 1, rank);
    let filter_link = |s: &str| match platform {
        Some(p) => format!("{link}?platform={p}&severity={s}"),
        None => format!("{link}?severity={s}"),
    };
    html! {
        section aria-labelledby="vuln-h" {
            h2 #vuln-h { "Vulnerabilities" }
            @match scan {
                None => { p.muted { "Not scanned yet." } }
                Some(s) => {
                    p { (vuln_badge(Some(&s.counts))) }
                    nav.severity aria-label="Lowest severity shown" {
                        @for sev in SEVERITIES {
                            a href=(filter_link(sev)) aria-current=[(rank(sev) == floor).then_some("true")] { (sev) " and worse" }
                            " "
                        }
                    }
                    @let findings: Vec<_> = s.images.iter().flat_map(|i| i.findings.iter().map(move |f| (i, f)))
                        .filter(|(_, f)| rank(f.severity.as_str()) <= floor).take(MAX_FINDINGS).collect();
                    @if findings.is_empty() {
                        p.muted { "No findings at this severity." }
                    } @else {
                        div.scroll { table {
                            thead { tr {
                                th scope="col" { "Severity" } th scope="col" { "Vulnerability" }
                                th scope="col" { "Package" } th scope="col" { "Installed" } th scope="col" { "Fixed in" }
                                th scope="col" { "Platform" }
                            } }
                            tbody {
                                @for (img, f) in &findings {
                                    tr {
                                        td { span class={ "badge " (f.severity.as_str()) } { (f.severity.as_str()) } }
                                        td { (f.id) @if let Some(s) = &f.summary { br; span.muted { (s) } } }
                                        td { (f.package) }
                                        td.mono { (f.version) }
                                        td.mono { (f.fixed.join(", ")) }
                                        td { (img.platform.as_deref().unwrap_or("")) }
                                    }
                                }
                            }
                        } }
                    }
                }
            }
        }
    }
}

/// The referrers: each SBOM with its packages, each signature with the
/// key that verified it (or why not), each attestation with its
/// predicate type; the cosign signature tag first, when there is one.
fn referrers_section(
    name: &RepositoryName,
    top: &Digest,
    referrers: &[ReferrerDetail],
    verdict: Option<&VerdictView>,
) -> Markup {
    let tagged = verdict.and_then(|v| v.signatures.as_ref());
    html! {
        section aria-labelledby="ref-h" {
            h2 #ref-h { "Referrers" }
            @if referrers.is_empty() && tagged.is_none() {
                p.muted { "No signatures, SBOMs or attestations refer to this image." }
            } @else {
                ul.referrers {
                    @if let Some(sig) = tagged {
                        li.referrer {
                            h3 { "Signature " span.muted { "(cosign, tag " code { (berth_registry::trust::signature_tag(top)) } ")" } }
                            p.mono { a href={ "/ui/repo/" (name) "@" (sig) } { (short_digest(sig.as_str())) } }
                            p { (signature_state(verdict, sig)) }
                        }
                    }
                    @for r in referrers {
                        li.referrer {
                            h3 {
                                (match &r.kind {
                                    ReferrerKind::Sbom(_) => "SBOM",
                                    ReferrerKind::Signature(_) => "Signature",
                                    ReferrerKind::Attestation { .. } => "Attestation",
                                    ReferrerKind::Other => "Artifact",
                                })
                                " " span.muted { "(" (r.artifact_type.as_deref().unwrap_or("no artifact type")) ")" }
                            }
                            p {
                                a.mono href={ "/ui/repo/" (name) "@" (r.digest) } title=(r.digest.as_str()) { (short_digest(r.digest.as_str())) }
                                " · " (size(r.size))
                                @if let Some(c) = &r.created { " · created " (c) }
                            }
                            @match &r.kind {
                                ReferrerKind::Sbom(Ok(listing)) => { (packages(listing, &r.digest)) }
                                ReferrerKind::Sbom(Err(why)) => { p.muted { "Its packages cannot be shown: " (why) "." } }
                                ReferrerKind::Signature(form) => {
                                    p { (form) ": " (signature_state(verdict, &r.digest)) }
                                }
                                ReferrerKind::Attestation { predicate_type, listing } => {
                                    p { "Predicate type: " @match predicate_type {
                                        Some(t) => { code.predicate { (t) } },
                                        None => { span.muted { "not given" } },
                                    } }
                                    @if let Some(l) = listing { (packages(l, &r.digest)) }
                                }
                                ReferrerKind::Other => {}
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Whether the signature held by manifest `sig` verified the image: by
/// which key, or why not, from the image's verdict.
fn signature_state(verdict: Option<&VerdictView>, sig: &Digest) -> Markup {
    let Some(v) = verdict else {
        return html! { span.muted { "no verdict (the signature could not be checked)" } };
    };
    html! {
        @match &v.verdict {
            Verdict::Verified { key, algorithm, signature, .. } if signature == sig => {
                span.badge.ok { "verified" } " by key " strong.key { (key) } " (" (algorithm) ")"
            }
            Verdict::Verified { signature, .. } => {
                span.badge { "not needed" } " another signature (" span.mono { (short_digest(signature.as_str())) } ") verified the image"
            }
            Verdict::Unverified { detail, .. } if v.referrers.contains(sig) || v.signatures.as_ref() == Some(sig) => {
                span.badge { "not verified" } " " (detail)
            }
            Verdict::Unverified { .. } => {
                span.badge { "not checked" } " berth verifies cosign's signature tag, sigstore bundles and notation signatures"
            }
        }
    }
}

/// An SBOM's packages in a table, collapsed when long.
fn packages(listing: &Listing, digest: &Digest) -> Markup {
    let n = listing.packages.len();
    html! {
        @if n == 0 {
            p.muted { "It lists no packages (" (listing.format) ")." }
        } @else {
            details.packages open[n <= OPEN_PACKAGES] {
                summary { (n) " packages " span.muted { "(" (listing.format) ")" } }
                div.scroll tabindex="0" role="region" aria-label={ "Packages of the SBOM " (short_digest(digest.as_str())) } { table.packages {
                    caption.visually-hidden { "Packages of the SBOM " (short_digest(digest.as_str())) }
                    thead { tr {
                        th scope="col" { "Name" } th scope="col" { "Version" }
                        th scope="col" { "Type" } th scope="col" { "Package URL" }
                    } }
                    tbody {
                        @for p in listing.packages.iter().take(MAX_PACKAGES) {
                            tr {
                                td { (p.name) }
                                td.mono.version { (p.version.as_deref().unwrap_or("")) }
                                td { (p.kind.as_deref().unwrap_or("")) }
                                td.mono.purl { (p.purl.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                } }
                @if n > MAX_PACKAGES {
                    p.muted { "The first " (MAX_PACKAGES) " of " (n) " are shown." }
                }
            }
        }
    }
}
