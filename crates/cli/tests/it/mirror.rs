//! The pull-through mirror (docs/mirror.md): upstreams are the reference
//! registry and a second berth with authentication on (the token flow),
//! populated with multi-arch images by skopeo; clients are skopeo (the
//! namespace way), plain HTTP requests (containerd's `?ns=`), and a
//! counting proxy in front of the upstream for the limits (429 with
//! `Retry-After`, one upstream request per blob for 16 concurrent pulls,
//! the concurrency and request rate limits) and the cache limit.

use serde_json::Value;

use crate::common::{Berth, Distribution};
use crate::interop::{http, parse, require, sha256, Clients};
use crate::layout;

mod bench;
mod cache;
mod clients;
mod limits;
mod proxy;
mod pull;
mod replication;
mod replication_passes;
mod routing;
mod warm;

/// A mirror configuration with one upstream.
fn config(name: &str, url: &str, hosts: &[&str], extra: &str) -> String {
    let hosts: Vec<String> = hosts.iter().map(|h| format!("{h:?}")).collect();
    format!(
        "mirror_upstreams = [{{ name = {name:?}, url = {url:?}, hosts = [{}]{extra} }}]\n",
        hosts.join(", ")
    )
}

/// Pushes a multi-arch image from a fresh layout to `dest` (a `docker://`
/// reference); returns the index digest and its children's.
fn push_multiarch(c: &Clients, dest: &str, extra: &[&str]) -> (String, Vec<String>) {
    let src = c.dir(&format!(
        "src-{}",
        sha256(dest.as_bytes())[7..19].to_owned()
    ));
    let (index, children) = layout::write_multiarch(&src, "multi");
    let from = format!("oci:{}:multi", src.display());
    let mut args = vec![
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
    ];
    args.extend_from_slice(extra);
    args.push(&from);
    args.push(dest);
    c.skopeo(&args);
    (index, children)
}

/// Pushes a one-platform image with layers of `sizes` from a fresh
/// layout (`dir`) to `dest` (a `docker://` reference); returns its
/// manifest digest and its blobs' (the config first).
fn push_image(c: &Clients, dir: &str, dest: &str, sizes: &[usize]) -> (String, Vec<String>) {
    let src = c.dir(dir);
    let manifest = layout::write_image(&src, "v1", "linux/amd64", sizes);
    c.push_layout(&src, "v1", dest, false);
    let m = parse(&layout::read_blob(&src, &manifest));
    let mut blobs = vec![m["config"]["digest"].as_str().unwrap().to_owned()];
    for l in m["layers"].as_array().unwrap() {
        blobs.push(l["digest"].as_str().unwrap().to_owned());
    }
    (manifest, blobs)
}

/// Pulls `repo:v1` and then `blobs` from `base`; the digests of what came
/// (the manifest's first).
async fn pull_digests(
    client: &reqwest::Client,
    base: &str,
    repo: &str,
    blobs: &[String],
) -> Vec<String> {
    let r = client
        .get(format!("{base}/v2/{repo}/manifests/v1"))
        .header("accept", layout::MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{repo}");
    let mut digests = vec![sha256(&r.bytes().await.unwrap())];
    for b in blobs {
        let r = client
            .get(format!("{base}/v2/{repo}/blobs/{b}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{repo} {b}");
        digests.push(sha256(&r.bytes().await.unwrap()));
    }
    digests
}

/// `skopeo copy --all` of `src` into a fresh layout; returns the index
/// digest it holds.
fn pull_all(c: &Clients, src: &str, into: &str) -> String {
    let dir = c.dir(into);
    c.skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        src,
        &format!("oci:{}:pulled", dir.display()),
    ]);
    layout::resolve(&dir, "pulled").expect("pulled").digest
}

/// The accept header of a client taking every manifest kind.
fn accept_all() -> &'static [&'static str] {
    &[
        layout::MANIFEST,
        layout::INDEX,
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
}

/// The first OCI error code of a response body.
fn code(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    v["errors"][0]["code"].as_str().unwrap_or("").to_owned()
}

/// The mirror status of `berth` (open mode: no credentials needed).
fn status(berth: &Berth) -> Value {
    let r = http(
        "GET",
        &format!("{}/api/v1/mirror/upstreams", berth.url()),
        &[],
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    parse(&r.body)
}

fn skopeo_ready(test: &str) -> bool {
    require("skopeo", test)
}
