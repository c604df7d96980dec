//! Which requests the mirror answers: containerd's `?ns=`, the namespace
//! per upstream, and the refusals (a host berth does not mirror, writes
//! to a mirrored repository).

use super::*;

/// A `?ns=` naming a registry berth does not mirror is a 404, never the
/// local repository of the same name; without `?ns=` (or with berth's own
/// host) the local one answers. This holds with no mirror configured at
/// all (before, `?ns=` was ignored).
#[test]
fn ns_for_an_unmirrored_host_is_never_answered_with_local_content() {
    if !skopeo_ready("mirror::routing::ns_for_an_unmirrored_host") {
        return;
    }
    let berth = Berth::start();
    let c = Clients::new();
    let src = c.dir("src");
    let local = layout::write_image(&src, "v1", "linux/amd64", &[512]);
    c.push_layout(
        &src,
        "v1",
        &format!("docker://{}/eco/app:v1", berth.addr),
        false,
    );
    let url = format!("{}/v2/eco/app/manifests/v1", berth.url());
    let r = http("GET", &url, accept_all());
    assert_eq!(r.status, 200);
    assert_eq!(r.header("docker-content-digest"), Some(local.clone()));

    let r = http("GET", &format!("{url}?ns=docker.io"), accept_all());
    assert_eq!(r.status, 404, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(code(&r.body), "NAME_UNKNOWN");
    let message = String::from_utf8_lossy(&r.body).to_string();
    assert!(message.contains("does not mirror docker.io"), "{message}");
    // Blobs too.
    let m = parse(&layout::read_blob(&src, &local));
    let layer = m["layers"][0]["digest"].as_str().unwrap();
    let r = http(
        "GET",
        &format!("{}/v2/eco/app/blobs/{layer}?ns=ghcr.io", berth.url()),
        &[],
    );
    assert_eq!(r.status, 404);
    // berth's own host is local.
    let r = http("GET", &format!("{url}?ns={}", berth.addr), accept_all());
    assert_eq!(r.status, 200);
    assert_eq!(r.header("docker-content-digest"), Some(local));
}

/// `?ns=<host>` routes to the upstream answering for that host; the
/// namespace way (`/v2/<upstream>/...`) reaches the same content; pushes
/// to a mirrored repository are refused with DENIED, naming the mirror.
#[test]
fn ns_and_namespace_route_to_the_upstream_and_writes_are_refused() {
    if !skopeo_ready("mirror::routing::ns_and_namespace_route") {
        return;
    }
    let dist = Distribution::start();
    let c = Clients::new();
    let (index, children) = push_multiarch(&c, &format!("docker://{}/eco/app:v1", dist.addr), &[]);
    let berth = Berth::start_with(
        &[],
        Some(&config("quay", &dist.url(), &["quay.example"], "")),
    );
    // A local repository of the same name, with other content.
    let src = c.dir("local");
    let local = layout::write_image(&src, "v1", "linux/amd64", &[100]);
    c.push_layout(
        &src,
        "v1",
        &format!("docker://{}/eco/app:v1", berth.addr),
        false,
    );

    let base = berth.url();
    let r = http(
        "GET",
        &format!("{base}/v2/eco/app/manifests/v1?ns=quay.example"),
        accept_all(),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("docker-content-digest"), Some(index.clone()));
    assert_eq!(sha256(&r.body), index);
    // A child by digest, and a blob of it, through ?ns=.
    let child = http(
        "GET",
        &format!(
            "{base}/v2/eco/app/manifests/{}?ns=quay.example",
            children[0]
        ),
        accept_all(),
    );
    assert_eq!(child.status, 200);
    assert_eq!(sha256(&child.body), children[0]);
    let layer = child.json()["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let blob = http(
        "GET",
        &format!("{base}/v2/eco/app/blobs/{layer}?ns=quay.example"),
        &[],
    );
    assert_eq!(blob.status, 200);
    assert_eq!(sha256(&blob.body), layer);
    // Without ?ns= the local repository answers, unchanged.
    let r = http(
        "GET",
        &format!("{base}/v2/eco/app/manifests/v1"),
        accept_all(),
    );
    assert_eq!(r.header("docker-content-digest"), Some(local));
    // The namespace way: the cached copy, same digest.
    let r = http(
        "GET",
        &format!("{base}/v2/quay/eco/app/manifests/v1"),
        accept_all(),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("docker-content-digest"), Some(index.clone()));
    // The index is stored sparse: the second child was never asked for
    // and is not there until it is.
    let r = http(
        "GET",
        &format!("{base}/api/v1/repositories/quay/eco/app/manifests"),
        &[],
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let listed = String::from_utf8_lossy(&r.body).to_string();
    assert!(listed.contains(&children[0]), "{listed}");
    assert!(!listed.contains(&children[1]), "{listed}");

    // Writes are refused, through both ways in.
    for url in [
        format!("{base}/v2/quay/eco/app/blobs/uploads/"),
        format!("{base}/v2/eco/app/blobs/uploads/?ns=quay.example"),
    ] {
        let r = http("POST", &url, &[]);
        assert_eq!(r.status, 403, "{url}");
        assert_eq!(code(&r.body), "DENIED");
        let message = String::from_utf8_lossy(&r.body).to_string();
        assert!(message.contains("read-only mirror"), "{message}");
    }
    let r = http(
        "DELETE",
        &format!("{base}/v2/quay/eco/app/manifests/{index}"),
        &[],
    );
    assert_eq!(r.status, 403);

    // The status lists the upstream.
    let s = status(&berth);
    assert_eq!(s["upstreams"][0]["name"], "quay");
    assert_eq!(s["upstreams"][0]["hosts"][0], "quay.example");
    assert!(s["upstreams"][0]["requests"].as_u64().unwrap() >= 3, "{s}");
}

/// With authentication on, who may pull through is a setting: anonymous
/// clients get a 401 challenge when it is `authenticated`, an account's
/// credentials are enough (no namespace permission applies to a mirror);
/// with `anonymous` (the default) no credentials are needed.
#[test]
fn pull_access_is_a_setting() {
    if !skopeo_ready("mirror::routing::pull_access_is_a_setting") {
        return;
    }
    let dist = Distribution::start();
    let c = Clients::new();
    let (index, _) = push_multiarch(&c, &format!("docker://{}/team/app:v1", dist.addr), &[]);
    let get = |berth: &Berth, user: Option<&str>| {
        let mut req = reqwest::blocking::Client::new()
            .get(format!("{}/v2/up/team/app/manifests/v1", berth.url()))
            .header("accept", accept_all().join(", "));
        if let Some(u) = user {
            req = req.basic_auth(u, Some(crate::common::ADMIN_PASSWORD));
        }
        req.send().unwrap()
    };
    let closed = Berth::start_auth(
        &[],
        Some(&format!(
            "mirror_pull_access = \"authenticated\"\n{}",
            config("up", &dist.url(), &[], "")
        )),
    );
    let r = get(&closed, None);
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let r = get(&closed, Some("admin"));
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers()["docker-content-digest"].to_str().unwrap(),
        index
    );
    let open = Berth::start_auth(&[], Some(&config("up", &dist.url(), &[], "")));
    let r = get(&open, None);
    assert_eq!(r.status().as_u16(), 200);
}

/// Docker Hub's short form through the namespace way: `hub/postgres` is
/// `docker.io/library/postgres`, cached as `hub/library/postgres`.
#[test]
fn the_docker_hub_short_form_is_library() {
    if !skopeo_ready("mirror::routing::the_docker_hub_short_form_is_library") {
        return;
    }
    let dist = Distribution::start();
    let c = Clients::new();
    let (index, _) = push_multiarch(
        &c,
        &format!("docker://{}/library/postgres:16", dist.addr),
        &[],
    );
    let berth = Berth::start_with(&[], Some(&config("hub", &dist.url(), &["docker.io"], "")));
    let r = http(
        "GET",
        &format!("{}/v2/hub/postgres/manifests/16", berth.url()),
        accept_all(),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(sha256(&r.body), index);
    assert_eq!(
        pull_all(
            &c,
            &format!("docker://{}/hub/postgres:16", berth.addr),
            "short"
        ),
        index
    );
    let long = http(
        "GET",
        &format!("{}/v2/hub/library/postgres/manifests/16", berth.url()),
        accept_all(),
    );
    assert_eq!(sha256(&long.body), index);
}
