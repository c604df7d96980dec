//! The mirror's cache limit: real pulls (skopeo) through a counting proxy
//! fill a small cache; past its limit the least recently pulled image is
//! evicted (manifests, then the blobs only it used) while the recently
//! pulled one and pushed content sharing its blobs stay; a later pull of
//! the evicted image fetches it again. Mirrored bytes never count against
//! a quota set on the mirror's namespace.

use std::time::{Duration, Instant};

use super::proxy::Proxy;
use super::*;

/// The cache limit of the test: two of the three images fit, not three.
const LIMIT: u64 = 1_000_000;

fn image(c: &Clients, name: &str) -> std::path::PathBuf {
    let dir = c.dir(name);
    layout::write_image(&dir, "v1", "linux/amd64", &[400_000]);
    dir
}

fn pull(c: &Clients, berth: &Berth, repo: &str, into: &str) -> String {
    let dir = c.dir(into);
    c.skopeo(&[
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        &format!("docker://{}/{repo}:v1", berth.addr),
        &format!("oci:{}:pulled", dir.display()),
    ]);
    layout::resolve(&dir, "pulled").expect("pulled").digest
}

/// `repository -> manifests` of a namespace's usage.
fn manifests(berth: &Berth, ns: &str) -> std::collections::HashMap<String, u64> {
    let r = http(
        "GET",
        &format!("{}/api/v1/namespaces/{ns}/usage", berth.url()),
        &[],
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["manifests"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn least_recently_pulled_is_evicted_past_the_cache_limit() {
    if !skopeo_ready("mirror::cache::least_recently_pulled_is_evicted") {
        return;
    }
    let dist = Distribution::start();
    let c = Clients::new();
    let mut digests = std::collections::HashMap::new();
    for name in ["a", "b", "c"] {
        let dir = image(&c, name);
        digests.insert(name, layout::resolve(&dir, "v1").unwrap().digest);
        c.push_layout(
            &dir,
            "v1",
            &format!("docker://{}/team/{name}:v1", dist.addr),
            false,
        );
    }
    let proxy = Proxy::start(&dist.addr);
    let cfg = format!(
        "{}mirror_cache_max = {LIMIT}\n",
        config("hub", &proxy.url(), &[], "")
    );
    let berth = Berth::start_with(&[], Some(&cfg));
    // Pushed content sharing every blob of image a.
    c.push_layout(
        &c.dir("a"),
        "v1",
        &format!("docker://{}/acme/app:v1", berth.addr),
        false,
    );
    // A quota on the mirror's namespace does not limit the mirror.
    let client = reqwest::blocking::Client::new();
    let q = client
        .put(format!("{}/api/v1/namespaces/hub/quota", berth.url()))
        .json(&serde_json::json!({ "limit_bytes": 1000 }))
        .send()
        .unwrap();
    assert_eq!(q.status(), 200);

    assert_eq!(pull(&c, &berth, "hub/team/a", "a1"), digests["a"]);
    assert_eq!(pull(&c, &berth, "hub/team/b", "b1"), digests["b"]);
    let usage = http(
        "GET",
        &format!("{}/api/v1/namespaces/hub/usage", berth.url()),
        &[],
    )
    .json();
    assert_eq!(usage["mirrored"], true, "{usage}");
    assert!(usage["quota"].is_null(), "{usage}");
    let cached = usage["total_bytes"].as_u64().unwrap();
    assert!(cached > 800_000 && cached < LIMIT, "{usage}");
    // a is pulled again (from the cache: the upstream is not asked), so b
    // is now the least recently pulled; c takes the cache past its limit.
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(pull(&c, &berth, "hub/team/a", "a2"), digests["a"]);
    assert_eq!(proxy.count("GET", "/team/a/manifests/v1"), 1);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(pull(&c, &berth, "hub/team/c", "c1"), digests["c"]);

    let deadline = Instant::now() + Duration::from_secs(30);
    let s = loop {
        let s = status(&berth);
        if s["cache"]["cached_bytes"].as_u64().unwrap() <= LIMIT {
            break s;
        }
        assert!(Instant::now() < deadline, "still over the limit: {s}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(s["cache"]["max_bytes"], LIMIT, "{s}");
    assert_eq!(
        s["upstreams"][0]["cached_bytes"], s["cache"]["cached_bytes"],
        "{s}"
    );
    let m = manifests(&berth, "hub");
    assert_eq!(m.get("hub/team/b").copied().unwrap_or(0), 0, "{m:?}");
    assert_eq!(m["hub/team/a"], 1, "{m:?}");
    assert_eq!(m["hub/team/c"], 1, "{m:?}");

    // Pushed content is whole, and the recently pulled image is served
    // from the cache.
    assert_eq!(pull(&c, &berth, "acme/app", "app"), digests["a"]);
    assert_eq!(pull(&c, &berth, "hub/team/c", "c2"), digests["c"]);
    assert_eq!(proxy.count("GET", "/team/c/manifests/v1"), 1);

    // The eviction is in the audit log and the metrics.
    let events = http(
        "GET",
        &format!("{}/api/v1/audit?action=mirror.evict", berth.url()),
        &[],
    )
    .json();
    let events = events["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["repository"], "hub/team/b");
    assert_eq!(events[0]["digest"], digests["b"].as_str());
    let metrics = http("GET", &format!("{}/metrics", berth.url()), &[]);
    let metrics = String::from_utf8_lossy(&metrics.body).to_string();
    for line in [
        "berth_mirror_evicted_total{upstream=\"hub\",kind=\"manifest\"} 1",
        // b's layer and config: a's are linked by acme/app.
        "berth_mirror_evicted_total{upstream=\"hub\",kind=\"blob\"} 2",
    ] {
        assert!(metrics.contains(line), "{line}\n{metrics}");
    }
    let evicted_bytes: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("berth_mirror_evicted_bytes_total{upstream=\"hub\"} "))
        .expect("evicted bytes")
        .parse()
        .unwrap();
    assert!(evicted_bytes > 400_000, "{evicted_bytes}");

    // The evicted image is fetched again when pulled.
    assert_eq!(pull(&c, &berth, "hub/team/b", "b2"), digests["b"]);
    assert_eq!(proxy.count("GET", "/team/b/manifests/v1"), 2);
}
