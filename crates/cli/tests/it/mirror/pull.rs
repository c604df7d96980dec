//! Pull-through: a cold pull fetches and stores, a stopped upstream leaves
//! every tag pulled before pullable (stale, and saying so), a 429 stops
//! all requests until its `Retry-After`, and concurrent cold pulls go
//! upstream once per blob; when a tag was last checked upstream survives
//! a restart.

use std::time::Duration;

use super::proxy::{Proxy, RETRY_AFTER_SECS};
use super::*;
use crate::common::ADMIN_PASSWORD;

/// skopeo pulls two tags of a multi-arch image through the namespace of
/// an upstream (the reference registry); the upstream is stopped; every
/// tag pulled before (their TTL past) still pulls, from the cache, and
/// the response says it is stale; a tag never pulled is a 503 naming the
/// upstream.
#[test]
fn namespace_pull_through_then_stale_when_the_upstream_stops() {
    if !skopeo_ready("mirror::pull::namespace_pull_through_then_stale") {
        return;
    }
    let dist = Distribution::start();
    let c = Clients::new();
    let (index, children) = push_multiarch(
        &c,
        &format!("docker://{}/library/postgres:16", dist.addr),
        &[],
    );
    let (index17, _) = push_multiarch(
        &c,
        &format!("docker://{}/library/postgres:17", dist.addr),
        &[],
    );
    push_multiarch(
        &c,
        &format!("docker://{}/library/postgres:18", dist.addr),
        &[],
    );
    let berth = Berth::start_with(
        &[],
        Some(&config(
            "ref",
            &dist.url(),
            &[],
            ", tag_ttl = \"0\", timeout = \"3s\"",
        )),
    );
    let src = format!("docker://{}/ref/library/postgres:16", berth.addr);
    assert_eq!(pull_all(&c, &src, "first"), index);
    let src17 = format!("docker://{}/ref/library/postgres:17", berth.addr);
    assert_eq!(pull_all(&c, &src17, "first17"), index17);
    let url = format!("{}/v2/ref/library/postgres/manifests/16", berth.url());
    let r = http("GET", &url, accept_all());
    assert_eq!(r.status, 200);
    assert_eq!(r.header("berth-mirror-stale"), None);
    // Every child and blob is stored in the mirrored repository.
    for child in &children {
        let m = http(
            "GET",
            &format!("{}/v2/ref/library/postgres/manifests/{child}", berth.url()),
            accept_all(),
        );
        assert_eq!(sha256(&m.body), *child);
    }

    drop(dist);
    let r = http("GET", &url, accept_all());
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("berth-mirror-stale").as_deref(), Some("true"));
    assert_eq!(sha256(&r.body), index);
    assert_eq!(pull_all(&c, &src, "second"), index);
    // Every tag pulled before pulls, each saying it is stale.
    assert_eq!(pull_all(&c, &src17, "second17"), index17);
    let r = http(
        "GET",
        &format!("{}/v2/ref/library/postgres/manifests/17", berth.url()),
        accept_all(),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("berth-mirror-stale").as_deref(), Some("true"));
    assert_eq!(sha256(&r.body), index17);
    // By digest: never revalidated, never stale.
    let r = http(
        "GET",
        &format!("{}/v2/ref/library/postgres/manifests/{index}", berth.url()),
        accept_all(),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("berth-mirror-stale"), None);
    // Never pulled: nothing to serve.
    let r = http(
        "GET",
        &format!("{}/v2/ref/library/postgres/manifests/18", berth.url()),
        accept_all(),
    );
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(code(&r.body), "UNAVAILABLE");
    assert!(String::from_utf8_lossy(&r.body).contains("upstream ref"));
    assert!(berth.log().contains("serving it stale"));
    let s = status(&berth);
    assert!(s["upstreams"][0]["last_error"].is_string(), "{s}");
    let metrics = http("GET", &format!("{}/metrics", berth.url()), &[]);
    let metrics = String::from_utf8_lossy(&metrics.body).to_string();
    assert!(
        metrics.contains("berth_mirror_stale_served_total{upstream=\"ref\"}"),
        "{metrics}"
    );
}

/// The upstream is a second berth with authentication on: the mirror
/// gets its tokens through the token flow with the configured
/// credentials; without them the upstream refuses and berth says so.
#[test]
fn token_flow_upstream_with_credentials() {
    if !skopeo_ready("mirror::pull::token_flow_upstream_with_credentials") {
        return;
    }
    let upstream = Berth::start_auth(&[], None);
    let c = Clients::new();
    let creds = format!("admin:{ADMIN_PASSWORD}");
    let (index, _) = push_multiarch(
        &c,
        &format!("docker://{}/admin/app:v1", upstream.addr),
        &["--dest-creds", &creds],
    );
    let url = upstream.url();
    let berth = Berth::start_with(
        &[],
        Some(&format!(
            "[[mirror_upstreams]]\nname = \"up\"\nurl = {url:?}\nusername = \"admin\"\npassword = {ADMIN_PASSWORD:?}\n\n\
             [[mirror_upstreams]]\nname = \"anon\"\nurl = {url:?}\n"
        )),
    );
    let src = format!("docker://{}/up/admin/app:v1", berth.addr);
    assert_eq!(pull_all(&c, &src, "pulled"), index);
    // Anonymous: the private repository is refused upstream.
    let r = http(
        "GET",
        &format!("{}/v2/anon/admin/app/manifests/v1", berth.url()),
        accept_all(),
    );
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    let s = status(&berth);
    assert_eq!(s["upstreams"][0]["authenticated"], true);
    assert!(!s.to_string().contains(ADMIN_PASSWORD));
}

/// A proxy in front of the upstream answers 429 with `Retry-After`: berth
/// serves the cached tag (stale) and sends nothing more upstream before
/// the time is up, counted at the proxy; the status shows the wait and
/// the upstream's `RateLimit-*` values.
#[test]
fn a_429_stops_upstream_requests_until_retry_after() {
    if !skopeo_ready("mirror::pull::a_429_stops_upstream_requests") {
        return;
    }
    let dist = Distribution::start();
    let c = Clients::new();
    let (index, _) = push_multiarch(&c, &format!("docker://{}/team/app:v1", dist.addr), &[]);
    let proxy = Proxy::start(&dist.addr);
    let berth = Berth::start_with(
        &[],
        Some(&config("hub", &proxy.url(), &[], ", tag_ttl = \"0\"")),
    );
    let url = format!("{}/v2/hub/team/app/manifests/v1", berth.url());
    let r = http("GET", &url, accept_all());
    assert_eq!(r.status, 200);
    assert_eq!(r.header("berth-mirror-stale"), None);
    let s = status(&berth);
    assert_eq!(s["upstreams"][0]["ratelimit_remaining"], "99;w=21600");
    assert_eq!(s["upstreams"][0]["ratelimit_limit"], "100;w=21600");

    proxy.limit(true);
    let before = proxy.requests().len();
    let r = http("GET", &url, accept_all());
    assert_eq!(r.status, 200);
    assert_eq!(r.header("berth-mirror-stale").as_deref(), Some("true"));
    assert_eq!(sha256(&r.body), index);
    assert_eq!(proxy.requests().len(), before + 1, "{:?}", proxy.requests());
    // Within Retry-After: served from the cache, nothing sent.
    for _ in 0..5 {
        let r = http("GET", &url, accept_all());
        assert_eq!(r.status, 200);
        assert_eq!(r.header("berth-mirror-stale").as_deref(), Some("true"));
        std::thread::sleep(Duration::from_millis(100));
    }
    // A miss is refused with the upstream's wait, without asking it.
    let miss = http(
        "GET",
        &format!("{}/v2/hub/team/other/manifests/v1", berth.url()),
        accept_all(),
    );
    assert_eq!(miss.status, 503);
    let wait: u64 = miss.header("retry-after").unwrap().parse().unwrap();
    assert!(wait > 0 && wait <= RETRY_AFTER_SECS + 1, "{wait}");
    assert_eq!(proxy.requests().len(), before + 1, "{:?}", proxy.requests());
    let s = status(&berth);
    assert!(s["upstreams"][0]["retry_after_until"].is_u64(), "{s}");
    assert_eq!(s["upstreams"][0]["ratelimit_remaining"], "0;w=21600");
}

/// 16 clients pull one image with a 64 MiB layer, cold, at once: one
/// upstream request per blob and per manifest (counted at a proxy), and
/// every client gets bytes matching the digest.
#[test]
fn concurrent_cold_pulls_go_upstream_once_per_blob() {
    if !skopeo_ready("mirror::pull::concurrent_cold_pulls") {
        return;
    }
    let dist = Distribution::start();
    let c = Clients::new();
    let (manifest, blobs) = push_image(
        &c,
        "big",
        &format!("docker://{}/big/app:v1", dist.addr),
        &[64 << 20, 1000],
    );
    let proxy = Proxy::start(&dist.addr);
    let berth = Berth::start_with(&[], Some(&config("hub", &proxy.url(), &[], "")));
    let base = berth.url();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let results = rt.block_on(async {
        let client = reqwest::Client::new();
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (client, base, blobs) = (client.clone(), base.clone(), blobs.clone());
            tasks.push(tokio::spawn(async move {
                pull_digests(&client, &base, "hub/big/app", &blobs).await
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let mut expected = vec![manifest.clone()];
    expected.extend(blobs.iter().cloned());
    for r in &results {
        assert_eq!(r, &expected);
    }
    for b in &blobs {
        assert_eq!(
            proxy.count("GET", &format!("/blobs/{b}")),
            1,
            "{b}: {:?}",
            proxy.requests()
        );
    }
    assert_eq!(
        proxy.count("GET", "/manifests/v1"),
        1,
        "{:?}",
        proxy.requests()
    );
}

/// When a tag was last confirmed upstream survives a restart: a pull
/// within its TTL after a restart sends nothing upstream (counted at a
/// proxy); restarted with a TTL the check is older than, the next pull
/// asks with one `HEAD`.
#[test]
fn a_restart_keeps_each_tags_last_check() {
    if !skopeo_ready("mirror::pull::a_restart_keeps") {
        return;
    }
    let dist = Distribution::start();
    let c = Clients::new();
    let (index, _) = push_multiarch(&c, &format!("docker://{}/team/app:v1", dist.addr), &[]);
    let proxy = Proxy::start(&dist.addr);
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let start = |ttl: &str| {
        let cfg = config("hub", &proxy.url(), &[], &format!(", tag_ttl = {ttl:?}"));
        Berth::start_in(&data, &[], Some(&cfg), work.path())
    };
    let pull = |b: &Berth| {
        let r = http(
            "GET",
            &format!("{}/v2/hub/team/app/manifests/v1", b.url()),
            accept_all(),
        );
        assert_eq!(r.status, 200);
        assert_eq!(sha256(&r.body), index);
        assert_eq!(r.header("berth-mirror-stale"), None);
    };
    let mut berth = start("1h");
    pull(&berth);
    let fetched = proxy.requests().len();
    assert_eq!(
        proxy.count("GET", "/manifests/v1"),
        1,
        "{:?}",
        proxy.requests()
    );
    berth.kill();
    let mut berth = start("1h");
    pull(&berth);
    assert_eq!(proxy.requests().len(), fetched, "{:?}", proxy.requests());
    berth.kill();
    std::thread::sleep(Duration::from_millis(1100));
    let berth = start("1s");
    pull(&berth);
    assert_eq!(
        proxy.count("HEAD", "/manifests/v1"),
        1,
        "{:?}",
        proxy.requests()
    );
    assert_eq!(
        proxy.requests().len(),
        fetched + 1,
        "{:?}",
        proxy.requests()
    );
}
