//! The per-upstream limits, counted at a proxy in front of the upstream:
//! many concurrent cold pulls never have more than `max_concurrent`
//! requests in flight upstream, nor send more than `rate_limit` requests
//! in any second; every client still gets verified content.

use std::time::Duration;

use super::proxy::Proxy;
use super::*;

const IMAGES: usize = 6;

/// Pushes `IMAGES` one-layer images to the upstream; returns their
/// manifest digests with their blob digests.
fn images(c: &Clients, dist: &Distribution) -> Vec<(String, Vec<String>)> {
    (0..IMAGES)
        .map(|i| {
            push_image(
                c,
                &format!("img{i}"),
                &format!("docker://{}/team/img{i}:v1", dist.addr),
                &[50_000],
            )
        })
        .collect()
}

/// Two clients per image pull every image at once, cold; each checks the
/// digests of what it got.
fn pull_everything(berth: &Berth, images: &[(String, Vec<String>)]) {
    let base = berth.url();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let mut tasks = Vec::new();
        for (i, (manifest, blobs)) in images.iter().enumerate() {
            for _ in 0..2 {
                let (client, base) = (client.clone(), base.clone());
                let (manifest, blobs) = (manifest.clone(), blobs.clone());
                tasks.push(tokio::spawn(async move {
                    let got =
                        pull_digests(&client, &base, &format!("hub/team/img{i}"), &blobs).await;
                    assert_eq!(got[0], manifest, "img{i}");
                    assert_eq!(got[1..], blobs[..], "img{i}");
                }));
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn concurrency_and_request_rate_limits_hold_at_the_upstream() {
    if !skopeo_ready("mirror::limits::concurrency_and_request_rate_limits") {
        return;
    }
    let dist = Distribution::start();
    let c = Clients::new();
    let images = images(&c, &dist);
    // One manifest and two blobs per image, each fetched once.
    let expected = IMAGES * 3;

    // At most 2 in flight: every request is held 300 ms at the proxy, so
    // without the limit the 18 fetches would overlap far more.
    let proxy = Proxy::start(&dist.addr);
    proxy.delay(Duration::from_millis(300));
    let berth = Berth::start_with(
        &[],
        Some(&config("hub", &proxy.url(), &[], ", max_concurrent = 2")),
    );
    pull_everything(&berth, &images);
    assert_eq!(proxy.requests().len(), expected, "{:?}", proxy.requests());
    assert_eq!(proxy.max_in_flight(), 2, "{:?}", proxy.requests());

    // At most 5 requests a second: however many are asked at once, any
    // 6 consecutive ones span a second or more (a little less for the
    // timer's jitter), and all of them at least (n - 1) / 5 s.
    let proxy = Proxy::start(&dist.addr);
    let berth = Berth::start_with(
        &[],
        Some(&config(
            "hub",
            &proxy.url(),
            &[],
            ", max_concurrent = 16, rate_limit = 5",
        )),
    );
    pull_everything(&berth, &images);
    let arrivals = proxy.arrivals();
    assert_eq!(arrivals.len(), expected, "{:?}", proxy.requests());
    for w in arrivals.windows(6) {
        let span = w[5] - w[0];
        assert!(
            span >= Duration::from_millis(900),
            "6 requests within {span:?}"
        );
    }
    let total = arrivals[expected - 1] - arrivals[0];
    assert!(
        total >= Duration::from_millis((expected as u64 - 1) * 200 - 100),
        "{expected} requests in {total:?}"
    );
}
