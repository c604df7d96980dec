//! Webhooks end to end: a real `berth serve` and a real HTTP receiver in
//! the test. The receiver verifies signatures, answers 500 on demand (and
//! sees the retries), sees a repository's events in push order, gets the
//! event of a push acknowledged right before berth was SIGKILLed, and, when
//! it never answers, does not slow pushes down. Private addresses are
//! refused unless allowed.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::Berth;
use crate::oci::{client, push_image};
use crate::tools::berth_ok;

const SECRET: &str = "a-test-secret-of-some-length";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Got {
    headers: HashMap<String, String>,
    body: Vec<u8>,
    /// The status it was answered with (`None`: never answered).
    answered: Option<u16>,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
}

#[derive(Default)]
struct State {
    got: Vec<Got>,
    /// Statuses for the next requests, then `otherwise`.
    script: VecDeque<u16>,
    otherwise: u16,
    /// Hold every request without answering.
    hang: bool,
    open: usize,
    max_open: usize,
}

/// A minimal HTTP/1.1 receiver on a random loopback port.
struct Receiver {
    url: String,
    state: Arc<Mutex<State>>,
}

impl Receiver {
    async fn start(script: &[u16], otherwise: u16, hang: bool) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            script: script.iter().copied().collect(),
            otherwise,
            hang,
            ..Default::default()
        }));
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, shared.clone()));
            }
        });
        Receiver { url, state }
    }

    fn got(&self) -> Vec<Got> {
        self.state.lock().unwrap().got.clone()
    }

    /// Waits (at most `secs`) until `done` holds for what was received.
    async fn wait_for(&self, secs: u64, done: impl Fn(&[Got]) -> bool) -> Vec<Got> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.got();
            if done(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "the receiver did not get what was expected in {secs} s: {:#?}",
                got.iter()
                    .map(|g| (g.header("berth-event").to_owned(), g.answered))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn serve(mut conn: tokio::net::TcpStream, state: Arc<Mutex<State>>) {
    {
        let mut s = state.lock().unwrap();
        s.open += 1;
        s.max_open = s.max_open.max(s.open);
    }
    let mut buf = Vec::new();
    loop {
        // Headers.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => {
                    state.lock().unwrap().open -= 1;
                    return;
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let headers: HashMap<String, String> = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let mut chunk = [0u8; 4096];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buf[head_end..(head_end + len).min(buf.len())].to_vec();
        buf.drain(..(head_end + len).min(buf.len()));
        let status = {
            let mut s = state.lock().unwrap();
            let status = if s.hang {
                None
            } else {
                Some(s.script.pop_front().unwrap_or(s.otherwise))
            };
            s.got.push(Got {
                headers,
                body,
                answered: status,
            });
            status
        };
        let Some(status) = status else {
            // Never answer; hold the connection until berth gives up.
            let mut sink = [0u8; 1024];
            while let Ok(n) = conn.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
            state.lock().unwrap().open -= 1;
            return;
        };
        let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\n\r\nok");
        if conn.write_all(answer.as_bytes()).await.is_err() {
            state.lock().unwrap().open -= 1;
            return;
        }
    }
}

/// What a receiver does: recompute the HMAC of the body with the secret.
fn verify(secret: &str, got: &Got) -> bool {
    let Some(hex_sig) = got.header("berth-signature").strip_prefix("sha256=") else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&got.body);
    mac.verify_slice(&hex::decode(hex_sig).unwrap_or_default())
        .is_ok()
}

async fn add_hook(base: &str, path: &str, body: Value) -> Value {
    let r = client()
        .post(format!("{base}/api/v1{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 201, "{v}");
    v
}

fn allow_loopback() -> [&'static str; 2] {
    ["--webhook-allow-networks", "127.0.0.0/8"]
}

#[tokio::test]
async fn signed_events_arrive_in_order_after_retries() {
    let berth = Berth::start_with(&allow_loopback(), None);
    let base = berth.url();
    // The first two requests fail: the first event is retried, and the
    // later events of the repository wait for it.
    let rx = Receiver::start(&[500, 500], 204, false).await;
    let hook = add_hook(
        &base,
        "/namespaces/acme/webhooks",
        json!({ "url": rx.url, "secret": SECRET, "events": ["manifest.pushed", "tag.deleted"] }),
    )
    .await;
    assert_eq!(hook["secret"], SECRET);
    let id = hook["id"].as_i64().unwrap();
    // The secret is never shown again.
    let listed: Value = client()
        .get(format!("{base}/api/v1/namespaces/acme/webhooks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["webhooks"][0]["id"], id);
    assert!(!listed.to_string().contains(SECRET), "{listed}");
    // A site-wide webhook in the reference registry's format.
    let dist = Receiver::start(&[], 200, false).await;
    add_hook(
        &base,
        "/webhooks",
        json!({ "url": dist.url, "format": "distribution", "secret": SECRET }),
    )
    .await;

    let c = client();
    let mut pushed = Vec::new();
    for (tag, seed) in [("v1", "one"), ("v2", "two"), ("v3", "three")] {
        pushed.push(push_image(&c, &base, "acme/web", tag, seed).await.0);
    }
    push_image(&c, &base, "other/app", "latest", "four").await;

    let got = rx
        .wait_for(30, |g| {
            g.iter().filter(|r| r.answered == Some(204)).count() >= 3
        })
        .await;
    assert!(
        got.iter().all(|g| verify(SECRET, g)),
        "every signature verifies"
    );
    assert!(!verify("another-secret-entirely", &got[0]));
    // Retries of the first event: same delivery id, then the others in
    // push order, each once.
    let digests: Vec<String> = got
        .iter()
        .map(|g| g.json()["data"]["digest"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        digests,
        [
            pushed[0].clone(),
            pushed[0].clone(),
            pushed[0].clone(),
            pushed[1].clone(),
            pushed[2].clone()
        ],
        "retries first, then the repository's events in order"
    );
    let answered: Vec<Option<u16>> = got.iter().map(|g| g.answered).collect();
    assert_eq!(
        answered,
        [Some(500), Some(500), Some(204), Some(204), Some(204)]
    );
    assert_eq!(
        got[0].header("berth-delivery"),
        got[2].header("berth-delivery")
    );
    assert_ne!(
        got[2].header("berth-delivery"),
        got[3].header("berth-delivery")
    );
    assert_eq!(got[0].header("berth-event"), "manifest.pushed");
    assert!(got[0]
        .header("content-type")
        .starts_with("application/cloudevents+json"));
    let ce = got[3].json();
    assert_eq!(ce["specversion"], "1.0");
    assert_eq!(ce["type"], "io.berth.manifest.pushed");
    assert_eq!(ce["subject"], format!("acme/web@{}", pushed[1]));
    assert_eq!(ce["data"]["tags"], json!(["v2"]));
    assert_eq!(ce["data"]["repository"], "acme/web");
    assert!(
        got.iter().all(|g| g.json()["data"]["namespace"] == "acme"),
        "the namespace's webhook hears only its namespace"
    );

    // The delivery log through the API and the CLI.
    let log: Value = client()
        .get(format!("{base}/api/v1/webhooks/{id}/deliveries"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let log = log["deliveries"].as_array().unwrap();
    assert_eq!(log.len(), 3);
    let first = &log[2];
    assert_eq!(first["state"], "delivered");
    assert_eq!(first["attempts"], 3);
    assert_eq!(first["status_code"], 204);
    assert!(first["latency_ms"].as_i64().is_some());
    let dir = tempfile::tempdir().unwrap();
    let out = berth_ok(
        dir.path(),
        &[
            "webhook",
            "deliveries",
            &id.to_string(),
            "--registry",
            &base,
        ],
    );
    assert!(
        out.contains("delivered") && out.contains("manifest.pushed"),
        "{out}"
    );

    // The distribution envelope: one push per tag, with the target.
    let env = dist.wait_for(30, |g| g.len() >= 4).await;
    assert!(env.iter().all(|g| verify(SECRET, g)));
    assert_eq!(
        env[0].header("content-type"),
        "application/vnd.docker.distribution.events.v1+json"
    );
    let first = env
        .iter()
        .map(Got::json)
        .find(|v| v["events"][0]["target"]["digest"] == pushed[0].as_str())
        .unwrap();
    let e = &first["events"][0];
    assert_eq!(e["action"], "push");
    assert_eq!(e["target"]["repository"], "acme/web");
    assert_eq!(e["target"]["digest"], pushed[0].as_str());
    assert_eq!(e["target"]["tag"], "v1");
    assert_eq!(
        e["target"]["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(e["request"]["addr"], "127.0.0.1");
}

#[tokio::test]
async fn a_push_acknowledged_before_sigkill_is_delivered_after_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let rx = Receiver::start(&[], 204, false).await;
    let mut berth = Berth::start_in(&data, &allow_loopback(), None, tmp.path());
    let base = berth.url();
    add_hook(
        &base,
        "/namespaces/acme/webhooks",
        json!({ "url": rx.url, "secret": SECRET }),
    )
    .await;
    let (digest, _) = push_image(&client(), &base, "acme/crash", "v1", "crash").await;
    // Killed right after the push was acknowledged: the worker (polling
    // every second) had almost certainly not delivered it yet.
    berth.kill();
    let before = rx.got().len();
    let berth = Berth::start_in(&data, &allow_loopback(), None, tmp.path());
    let got = rx
        .wait_for(30, |g| {
            g.iter()
                .any(|r| r.json()["data"]["digest"] == digest.as_str())
        })
        .await;
    let hit = got
        .iter()
        .find(|r| r.json()["data"]["digest"] == digest.as_str())
        .unwrap();
    assert!(verify(SECRET, hit));
    assert_eq!(hit.json()["data"]["tags"], json!(["v1"]));
    eprintln!(
        "deliveries before the kill: {before}, after the restart: {}",
        got.len()
    );
    drop(berth);
}

#[tokio::test]
async fn a_receiver_that_never_answers_does_not_slow_pushes() {
    let berth = Berth::start_with(
        &[
            "--webhook-allow-networks",
            "127.0.0.0/8",
            "--webhook-concurrency",
            "4",
            "--webhook-timeout",
            "30s",
        ],
        None,
    );
    let base = berth.url();
    let rx = Receiver::start(&[], 204, true).await;
    let c = client();
    const N: usize = 15;
    // Warm up, then pushes with no webhook at all.
    push_image(&c, &base, "calm/warm", "v0", "warm").await;
    let started = Instant::now();
    for i in 0..N {
        push_image(
            &c,
            &base,
            "calm/app",
            &format!("v{i}"),
            &format!("calm-{i}"),
        )
        .await;
    }
    let without = started.elapsed();
    add_hook(
        &base,
        "/namespaces/busy/webhooks",
        json!({ "url": rx.url, "secret": SECRET }),
    )
    .await;
    let started = Instant::now();
    for i in 0..N {
        push_image(
            &c,
            &base,
            &format!("busy/app{i}"),
            "v1",
            &format!("busy-{i}"),
        )
        .await;
    }
    let with = started.elapsed();
    // The receiver holds the deliveries it got, never answering; berth
    // keeps at most webhook_concurrency of them open.
    rx.wait_for(10, |g| g.len() >= 4).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let max_open = rx.state.lock().unwrap().max_open;
    eprintln!(
        "{N} pushes: {:?} without a webhook, {:?} with a receiver that never answers; \
         {max_open} deliveries open at most",
        without, with
    );
    assert!(
        with < without * 2 + Duration::from_millis(500),
        "pushes slowed down by a hanging receiver: {with:?} against {without:?}"
    );
    assert!(max_open <= 4, "{max_open} deliveries open at once");
}

#[tokio::test]
async fn private_addresses_are_refused_unless_allowed() {
    let berth = Berth::start();
    let base = berth.url();
    let rx = Receiver::start(&[], 204, false).await;
    for url in [
        rx.url.clone(),
        rx.url.replace("127.0.0.1", "localhost"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.0.0.1/hook".to_owned(),
        "http://[::1]:9/hook".to_owned(),
    ] {
        let r = client()
            .post(format!("{base}/api/v1/namespaces/acme/webhooks"))
            .json(&json!({ "url": url }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{url}");
        let v: Value = r.json().await.unwrap();
        let message = v["errors"][0]["message"].as_str().unwrap();
        assert!(
            message.contains("webhook_allow_networks"),
            "{url}: {message}"
        );
    }
    // Nothing refused was created, and nothing was called.
    let listed: Value = client()
        .get(format!("{base}/api/v1/namespaces/acme/webhooks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["webhooks"], json!([]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.got().is_empty());
}

#[tokio::test]
async fn a_failing_webhook_is_disabled_then_enabled_and_redelivered_by_the_cli() {
    let berth = Berth::start_with(
        &[
            "--webhook-allow-networks",
            "127.0.0.0/8",
            "--webhook-disable-after",
            "3",
        ],
        None,
    );
    let base = berth.url();
    let rx = Receiver::start(&[], 503, false).await;
    let dir = tempfile::tempdir().unwrap();
    let out = berth_ok(
        dir.path(),
        &[
            "webhook",
            "add",
            &rx.url,
            "--namespace",
            "acme",
            "--registry",
            &base,
            "-o",
            "json",
        ],
    );
    let hook: Value = serde_json::from_str(&out).unwrap();
    let id = hook["id"].as_i64().unwrap().to_string();
    let secret = hook["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "a generated secret: {secret}");
    push_image(&client(), &base, "acme/flaky", "v1", "flaky").await;

    // Three failures in a row disable it, with an audit event.
    let deadline = Instant::now() + Duration::from_secs(30);
    let disabled = loop {
        let w: Value = client()
            .get(format!("{base}/api/v1/webhooks/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !w["disabled_at"].is_null() {
            break w;
        }
        assert!(Instant::now() < deadline, "never disabled: {w}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(disabled["disabled_reason"]
        .as_str()
        .unwrap()
        .contains("3 deliveries failed in a row"));
    assert_eq!(rx.got().len(), 3);
    assert!(rx.got().iter().all(|g| verify(&secret, g)));
    let audit: Value = client()
        .get(format!("{base}/api/v1/audit?action=webhook.disable"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(audit["events"].as_array().unwrap().len(), 1, "{audit}");
    let list = berth_ok(
        dir.path(),
        &[
            "webhook",
            "list",
            "--namespace",
            "acme",
            "--registry",
            &base,
        ],
    );
    assert!(list.contains("disabled"), "{list}");

    // Enabled again with a healthy receiver: the pending delivery goes
    // through; redelivery sends its event once more, a test sends a ping.
    rx.state.lock().unwrap().otherwise = 200;
    berth_ok(dir.path(), &["webhook", "enable", &id, "--registry", &base]);
    rx.wait_for(30, |g| g.iter().any(|r| r.answered == Some(200)))
        .await;
    let log: Value = serde_json::from_str(&berth_ok(
        dir.path(),
        &[
            "webhook",
            "deliveries",
            &id,
            "--registry",
            &base,
            "-o",
            "json",
        ],
    ))
    .unwrap();
    let delivery = log["deliveries"][0]["id"].as_i64().unwrap().to_string();
    berth_ok(
        dir.path(),
        &["webhook", "redeliver", &id, &delivery, "--registry", &base],
    );
    berth_ok(dir.path(), &["webhook", "test", &id, "--registry", &base]);
    let got = rx
        .wait_for(30, |g| {
            g.iter().filter(|r| r.answered == Some(200)).count() >= 3
        })
        .await;
    let ok: Vec<&Got> = got.iter().filter(|r| r.answered == Some(200)).collect();
    let pushes: Vec<&&Got> = ok
        .iter()
        .filter(|r| r.header("berth-event") == "manifest.pushed")
        .collect();
    assert_eq!(pushes.len(), 2, "the pending delivery and its redelivery");
    assert_eq!(
        pushes[0].json()["id"],
        pushes[1].json()["id"],
        "the same event again"
    );
    assert_ne!(
        pushes[0].header("berth-delivery"),
        pushes[1].header("berth-delivery"),
        "as a new delivery"
    );
    assert!(ok.iter().any(|r| r.header("berth-event") == "ping"));
    berth_ok(dir.path(), &["webhook", "remove", &id, "--registry", &base]);
    let r = client()
        .get(format!("{base}/api/v1/webhooks/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn pulls_quota_alerts_and_gc_runs_reach_a_site_webhook() {
    let berth = Berth::start_with(
        &[
            "--webhook-allow-networks",
            "127.0.0.0/8",
            "--pull-stats-flush-interval",
            "1s",
        ],
        None,
    );
    let base = berth.url();
    let c = client();
    let rx = Receiver::start(&[], 204, false).await;
    add_hook(
        &base,
        "/webhooks",
        json!({ "url": rx.url, "secret": SECRET, "events": ["all", "pulled"] }),
    )
    .await;
    let (digest, _) = push_image(&c, &base, "q/app", "v1", "quota").await;
    // A quota just above what is stored: past 80%, and too small for more.
    let usage: Value = c
        .get(format!("{base}/api/v1/namespaces/q/usage"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let used = usage["total_bytes"].as_u64().unwrap();
    let r = c
        .put(format!("{base}/api/v1/namespaces/q/quota"))
        .json(&json!({ "limit_bytes": used + 10 }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text().await);
    let big = vec![7u8; 4096];
    let r = c
        .post(format!(
            "{base}/v2/q/app/blobs/uploads/?digest={}",
            crate::oci::sha256(&big)
        ))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "refused by the quota");
    // A pull, counted and flushed within a second or so.
    let r = c
        .get(format!("{base}/v2/q/app/manifests/v1"))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c.post(format!("{base}/api/v1/gc")).send().await.unwrap();
    assert!(r.status().is_success(), "{:?}", r.text().await);

    let kinds = [
        "manifest.pushed",
        "quota.warning",
        "quota.exceeded",
        "pulled",
        "gc.finished",
    ];
    let got = rx
        .wait_for(30, |g| {
            kinds
                .iter()
                .all(|k| g.iter().any(|r| r.header("berth-event") == *k))
        })
        .await;
    let find = |k: &str| {
        got.iter()
            .find(|r| r.header("berth-event") == k)
            .unwrap()
            .json()
    };
    let warning = find("quota.warning");
    assert_eq!(warning["data"]["namespace"], "q");
    assert_eq!(warning["data"]["limit_bytes"], used + 10);
    assert_eq!(find("quota.exceeded")["type"], "io.berth.quota.exceeded");
    let pulled = find("pulled");
    assert_eq!(pulled["data"]["repository"], "q/app");
    assert_eq!(pulled["data"]["manifests"][0]["digest"], digest.as_str());
    assert_eq!(pulled["data"]["manifests"][0]["pulls"], 1);
    assert_eq!(pulled["data"]["tags"][0]["tag"], "v1");
    let gc = find("gc.finished");
    assert_eq!(gc["data"]["ok"], true);
    assert!(gc["data"]["summary"].is_object(), "{gc}");
    assert!(got.iter().all(|g| verify(SECRET, g)));
    // Each alert once per crossing.
    assert_eq!(
        got.iter()
            .filter(|r| r.header("berth-event") == "quota.warning")
            .count(),
        1
    );
}

#[tokio::test]
async fn only_admins_manage_webhooks() {
    use crate::auth::{admin, req, Cred, Fixture};
    use berth_meta::accounts::{Role, Visibility};
    use reqwest::Method;

    let f = Fixture::start("webhook_allow_networks = [\"127.0.0.0/8\"]\n").await;
    let alice = f.user("alice").await;
    let bob = f.user("bob").await;
    f.org("acme", Visibility::Private).await;
    f.member("acme", "alice", Role::Admin).await;
    f.member("acme", "bob", Role::Write).await;
    let rx = Receiver::start(&[], 204, false).await;
    let base = f.url();
    let body = json!({ "url": rx.url });
    let post = |path: &str, cred: &Cred| {
        req(&f.c, Method::POST, &format!("{base}/api/v1{path}"), cred).json(&body)
    };

    let r = post("/namespaces/acme/webhooks", &Cred::Anon)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = post("/namespaces/acme/webhooks", &bob)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a writer is no admin");
    let r = post("/namespaces/acme/webhooks", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let hook: Value = r.json().await.unwrap();
    let id = hook["id"].as_i64().unwrap();
    let r = post("/webhooks", &alice).send().await.unwrap();
    assert_eq!(r.status(), 403, "site-wide webhooks are for site admins");
    let r = post("/webhooks", &admin()).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let site: Value = r.json().await.unwrap();

    let get = |id: i64, cred: &Cred| {
        req(
            &f.c,
            Method::GET,
            &format!("{base}/api/v1/webhooks/{id}"),
            cred,
        )
    };
    assert_eq!(get(id, &alice).send().await.unwrap().status(), 200);
    assert_eq!(get(id, &bob).send().await.unwrap().status(), 403);
    assert_eq!(get(id, &admin()).send().await.unwrap().status(), 200);
    let site_id = site["id"].as_i64().unwrap();
    assert_eq!(get(site_id, &alice).send().await.unwrap().status(), 403);
    let r = req(
        &f.c,
        Method::DELETE,
        &format!("{base}/api/v1/webhooks/{id}"),
        &bob,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 403);
    let r = req(
        &f.c,
        Method::GET,
        &format!("{base}/api/v1/webhooks/{id}/deliveries"),
        &alice,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    // The change is audited, without the secret.
    let audit: Value = req(
        &f.c,
        Method::GET,
        &format!("{base}/api/v1/audit?action=webhook.change"),
        &admin(),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(audit["events"].as_array().unwrap().len(), 2, "{audit}");
    assert!(!audit.to_string().contains(hook["secret"].as_str().unwrap()));
}
