//! `/metrics`, `/livez`, `/readyz` and the access log against a real
//! `berth serve`.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Berth, ADMIN_PASSWORD};
use crate::oci::*;

/// The value of the sample `series` (name and labels exactly as exposed).
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

pub async fn scrape(c: &reqwest::Client, url: &str) -> String {
    let r = c.get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "content-type").as_deref(),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    r.text().await.unwrap()
}

/// The address a log line `<what> ... addr=HOST:PORT` names (text logs).
fn logged_addr(b: &Berth, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = b.log();
        if let Some(line) = log.lines().find(|l| l.contains(what)) {
            let addr = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
                .unwrap_or_else(|| panic!("no addr= in {line}"));
            return addr.to_owned();
        }
        assert!(Instant::now() < deadline, "no {what:?} in the log: {log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn metrics_count_requests_by_template_pushes_pulls_and_storage() {
    let b = Berth::start();
    let (c, u) = (client(), b.url());
    let (digest, m) = push_image(&c, &u, "acme/app", "v1", "m1").await;
    let layer = b"layer-m1";
    for _ in 0..2 {
        let r = c
            .get(format!("{u}/v2/acme/app/manifests/v1"))
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = c
        .get(format!("{u}/v2/acme/app/blobs/{}", sha256(layer)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), layer);
    let r = c
        .get(format!("{u}/v2/acme/app/manifests/nosuch"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = c.post(format!("{u}/api/v1/gc")).send().await.unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);

    let t = scrape(&c, &u).await;
    let get = |s: &str| sample(&t, s).unwrap_or_else(|| panic!("no {s} in\n{t}"));
    assert_eq!(
        get("berth_job_runs_total{task=\"gc\",outcome=\"success\"}"),
        1.0
    );
    assert_eq!(get("berth_job_duration_seconds_count{task=\"gc\"}"), 1.0);
    assert!(get("berth_job_last_success_timestamp_seconds{task=\"gc\"}") > 1.7e9);
    assert_eq!(
        get("berth_http_requests_in_flight"),
        1.0,
        "the scrape itself"
    );
    let manifests = "route=\"/v2/{name}/manifests/{reference}\"";
    assert_eq!(
        get(&format!(
            "berth_http_requests_total{{{manifests},method=\"GET\",status=\"200\"}}"
        )),
        2.0
    );
    assert_eq!(
        get(&format!(
            "berth_http_requests_total{{{manifests},method=\"GET\",status=\"404\"}}"
        )),
        1.0
    );
    assert_eq!(
        get(&format!(
            "berth_http_request_duration_seconds_count{{{manifests},method=\"GET\"}}"
        )),
        3.0
    );
    assert_eq!(
        get(&format!(
            "berth_http_request_bytes_total{{{manifests},method=\"PUT\"}}"
        )),
        m.len() as f64,
        "the manifest's bytes came in"
    );
    assert!(
        get("berth_http_response_bytes_total{route=\"/v2/{name}/blobs/{digest}\",method=\"GET\"}")
            >= layer.len() as f64
    );
    // Never a raw path, a digest or a tag in a label.
    assert!(!t.contains(&digest) && !t.contains("nosuch"), "{t}");
    assert!(
        !t.contains("acme/app"),
        "no repository label by default: {t}"
    );

    let ns = "namespace=\"acme\",repository=\"\"";
    assert_eq!(
        get(&format!("berth_pushes_total{{{ns},kind=\"blob\"}}")),
        2.0
    );
    assert_eq!(
        get(&format!("berth_pushes_total{{{ns},kind=\"manifest\"}}")),
        1.0
    );
    assert_eq!(
        get(&format!("berth_pulls_total{{{ns},kind=\"manifest\"}}")),
        2.0
    );
    assert_eq!(
        get(&format!("berth_pulls_total{{{ns},kind=\"blob\"}}")),
        1.0
    );
    assert_eq!(
        get(&format!(
            "berth_pulled_bytes_total{{{ns},kind=\"manifest\"}}"
        )),
        2.0 * m.len() as f64
    );
    let config_len = r#"{"architecture":"amd64","os":"linux","seed":"m1"}"#.len();
    assert_eq!(
        get("berth_stored_bytes{namespace=\"acme\"}"),
        (config_len + layer.len() + m.len()) as f64
    );
    assert_eq!(get("berth_stored_blobs{namespace=\"acme\"}"), 2.0);
    assert_eq!(get("berth_uploads_in_progress"), 0.0);
    assert!(get("berth_db_query_duration_seconds_count{operation=\"write\"}") >= 3.0);
    // The unknown tag was looked up in the database.
    assert!(get("berth_db_query_duration_seconds_count{operation=\"read\"}") >= 1.0);
    assert!(
        get("berth_storage_operation_duration_seconds_count{backend=\"filesystem\",operation=\"put\"}")
            >= 2.0
    );
    assert_eq!(get("berth_db_pool_connections{state=\"in_use\"}"), 0.0);
    assert!(t.contains("berth_build_info{version=\""), "{t}");
    assert!(t.ends_with("# EOF\n"));
}

#[tokio::test]
async fn per_repository_labels_quota_and_upload_gauges() {
    let b = Berth::start_with(&["--metrics-per-repository"], None);
    let (c, u) = (client(), b.url());
    push_image(&c, &u, "acme/app", "v1", "r1").await;
    let r = c
        .put(format!("{u}/api/v1/namespaces/acme/quota"))
        .json(&serde_json::json!({"limit_bytes": 1000}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let r = c
        .post(format!("{u}/v2/acme/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let t = scrape(&c, &u).await;
    assert_eq!(
        sample(
            &t,
            "berth_pushes_total{namespace=\"acme\",repository=\"acme/app\",kind=\"manifest\"}"
        ),
        Some(1.0),
        "{t}"
    );
    assert_eq!(
        sample(&t, "berth_quota_limit_bytes{namespace=\"acme\"}"),
        Some(1000.0)
    );
    let ratio = sample(&t, "berth_quota_used_ratio{namespace=\"acme\"}").unwrap();
    assert!(ratio > 0.0 && ratio < 1.0, "{ratio}");
    assert_eq!(sample(&t, "berth_uploads_in_progress"), Some(1.0), "{t}");
    // The management API by its matched route.
    assert!(
        t.contains("berth_http_requests_total{route=\"/api/v1/namespaces/{ns}/quota\",method=\"PUT\",status=\"200\"} 1"),
        "{t}"
    );
}

#[tokio::test]
async fn metrics_on_their_own_listener_behind_a_token_or_off() {
    let b = Berth::start_with(
        &[
            "--metrics-listen",
            "127.0.0.1:0",
            "--metrics-token",
            "s3cret-scrape-token",
        ],
        None,
    );
    let c = client();
    let at = format!(
        "http://{}",
        logged_addr(&b, "/metrics, /livez and /readyz are served here")
    );
    // Not on the main listener.
    let r = c.get(format!("{}/metrics", b.url())).send().await.unwrap();
    expect_error(r, 404, "UNSUPPORTED").await;
    // On its own, with the token only.
    let r = c.get(format!("{at}/metrics")).send().await.unwrap();
    assert_eq!(
        header(&r, "www-authenticate").as_deref(),
        Some("Bearer realm=\"metrics\"")
    );
    let msg = expect_error(r, 401, "UNAUTHORIZED").await;
    assert!(msg.contains("metrics_token"), "{msg}");
    let r = c
        .get(format!("{at}/metrics"))
        .bearer_auth("wrong-token-of-same-len")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .get(format!("{at}/metrics"))
        .bearer_auth("s3cret-scrape-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("berth_build_info"));
    for path in ["/livez", "/readyz"] {
        let r = c.get(format!("{at}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    assert!(!b.log().contains("s3cret-scrape-token"), "never logged");

    // Off: no /metrics, health endpoints stay.
    let off = Berth::start_with(&["--metrics", "false"], None);
    let r = c
        .get(format!("{}/metrics", off.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = c.get(format!("{}/livez", off.url())).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

async fn status_of(c: &reqwest::Client, url: &str) -> (u16, String) {
    let r = c.get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn readyz_follows_the_database_file() {
    let b = Berth::start();
    let c = client();
    let (ready, live) = (format!("{}/readyz", b.url()), format!("{}/livez", b.url()));
    assert_eq!(
        status_of(&c, &ready).await,
        (200, r#"{"status":"ready"}"#.into())
    );
    assert_eq!(status_of(&c, &live).await.0, 200);

    let db = b.data_dir.join("berth.db");
    let away = b.data_dir.join("berth.db.away");
    std::fs::rename(&db, &away).unwrap();
    let (status, body) = status_of(&c, &ready).await;
    assert_eq!(status, 503, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAVAILABLE");
    let msg = body["errors"][0]["message"].as_str().unwrap();
    assert!(msg.contains("metadata database unreachable"), "{msg}");
    assert_eq!(status_of(&c, &live).await.0, 200, "alive all the same");

    std::fs::rename(&away, &db).unwrap();
    assert_eq!(status_of(&c, &ready).await.0, 200);

    // The blob store too.
    let blobs = b.data_dir.join("blobs");
    std::fs::rename(&blobs, b.data_dir.join("blobs.away")).unwrap();
    let (status, body) = status_of(&c, &ready).await;
    assert_eq!(status, 503);
    assert!(body.contains("blob storage unreachable"), "{body}");
    std::fs::rename(b.data_dir.join("blobs.away"), &blobs).unwrap();
    assert_eq!(status_of(&c, &ready).await.0, 200);
}

#[tokio::test]
async fn readyz_turns_unready_while_draining_at_shutdown() {
    // The main listener stops accepting at once; the metrics listener
    // answers until the drain is over.
    let mut b = Berth::start_with(&["--metrics-listen", "127.0.0.1:0"], None);
    let c = client();
    let u = b.url();
    let health = format!(
        "http://{}",
        logged_addr(&b, "/metrics, /livez and /readyz are served here")
    );
    // A request in flight keeps the server draining: an upload whose
    // body has not finished.
    let r = c
        .post(format!("{u}/v2/acme/slow/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let location = header(&r, "location").unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
    let patch = tokio::spawn({
        let c = c.clone();
        let url = format!("{u}{location}");
        async move { c.patch(url).body(body).send().await }
    });
    tx.send(Ok(vec![1u8; 1000])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let probe = client();
    assert_eq!(status_of(&probe, &format!("{health}/readyz")).await.0, 200);
    let pid = b.pid();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (status, body) = loop {
        let got = status_of(&probe, &format!("{health}/readyz")).await;
        if got.0 != 200 || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("shutting down"), "{body}");
    assert_eq!(status_of(&probe, &format!("{health}/livez")).await.0, 200);
    drop(tx);
    let _ = patch.await;
    assert!(b.terminate().success());
}

/// A body stream fed through a channel.
fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// The access log's lines (JSON logs).
fn access_lines(b: &Berth) -> Vec<Value> {
    b.log()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "berth::access")
        .collect()
}

/// GET `url` as the admin with `password`, expecting `status`.
async fn get_as_admin(c: &reqwest::Client, url: &str, password: &str, status: u16) {
    let r = c
        .get(url)
        .basic_auth("admin", Some(password))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), status, "{url}");
}

/// What `read` returns once it has `n` lines, or after 5 s (the log is
/// written in batches by a thread of its own).
async fn lines_within<T>(n: usize, read: impl Fn() -> Vec<T>) -> Vec<T> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let lines = read();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn access_log_is_one_json_line_per_request_without_secrets() {
    let b = Berth::start_auth(&["--log-format", "json"], None);
    let (c, u) = (client(), b.url());
    get_as_admin(&c, &format!("{u}/v2/"), ADMIN_PASSWORD, 200).await;
    let secret_query = format!("{u}/v2/acme/app/manifests/latest?secret-query=1");
    get_as_admin(&c, &secret_query, ADMIN_PASSWORD, 404).await;
    get_as_admin(&c, &format!("{u}/v2/"), "a-wrong-password", 401).await;

    let lines = lines_within(3, || access_lines(&b)).await;
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let f = &lines[1]["fields"];
    assert_eq!(f["method"], "GET");
    assert_eq!(f["route"], "/v2/{name}/manifests/{reference}");
    assert_eq!(f["repository"], "acme/app");
    assert_eq!(f["status"], 404);
    assert_eq!(f["account"], "admin");
    assert_eq!(f["client"], "127.0.0.1");
    assert_eq!(f["bytes_in"], 0);
    assert!(f["bytes_out"].as_u64().unwrap() > 0);
    assert!(f["duration_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(lines[0]["fields"]["account"], "admin");
    assert_eq!(lines[2]["fields"]["status"], 401);
    assert!(lines[2]["fields"].get("account").is_none(), "{lines:#?}");
    let log = b.log();
    for secret in [ADMIN_PASSWORD, "a-wrong-password", "secret-query"] {
        assert!(!log.contains(secret), "{secret} in the log");
    }

    // Off: no such line.
    let quiet = Berth::start_with(&["--log-format", "json", "--access-log", "false"], None);
    let r = c.get(format!("{}/v2/", quiet.url())).send().await.unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(access_lines(&quiet).is_empty(), "{}", quiet.log());
}

/// The text log writes access lines itself (not through `tracing`): the
/// same fields, in `tracing`'s text layout, one line per request.
#[tokio::test]
async fn access_log_text_lines_carry_every_field() {
    let b = Berth::start_auth(&["--log-format", "text"], None);
    let (c, u) = (client(), b.url());
    let secret_query = format!("{u}/v2/acme/app/manifests/latest?secret-query=1");
    get_as_admin(&c, &secret_query, ADMIN_PASSWORD, 404).await;
    get_as_admin(&c, &format!("{u}/v2/"), "a-wrong-password", 401).await;
    let lines = lines_within(2, || {
        b.log()
            .lines()
            .filter(|l| l.contains(" berth::access: "))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    })
    .await;
    assert_eq!(lines.len(), 2, "{lines:#?}");
    let re = regex::Regex::new(concat!(
        r#"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z  INFO berth::access: request "#,
        r#"method="GET" route="/v2/\{name\}/manifests/\{reference\}" repository="acme/app" "#,
        r#"status=404 bytes_in=0 bytes_out=[1-9]\d* duration_ms=\d+(\.\d+)?(e-?\d+)? "#,
        r#"client=127\.0\.0\.1 account="admin"$"#
    ))
    .unwrap();
    assert!(re.is_match(&lines[0]), "{}", lines[0]);
    assert!(
        lines[1].contains(r#"route="/v2/" status=401 "#) && !lines[1].contains("account="),
        "{}",
        lines[1]
    );
    assert!(!b.log().contains("secret-query") && !b.log().contains("a-wrong-password"));
}

#[tokio::test]
async fn failed_logins_denials_and_throttling_are_counted() {
    let b = Berth::start_auth(&[], None);
    let (c, u) = (client(), b.url());
    for _ in 0..2 {
        let r = c
            .get(format!("{u}/v2/"))
            .basic_auth("admin", Some("wrong"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = c
        .get(format!("{u}/v2/"))
        .bearer_auth("not.a.jwt")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let t = scrape(&c, &u).await;
    assert_eq!(
        sample(&t, "berth_auth_failures_total{kind=\"bad_credentials\"}"),
        Some(2.0),
        "{t}"
    );
    assert_eq!(
        sample(&t, "berth_auth_failures_total{kind=\"invalid_token\"}"),
        Some(1.0)
    );
}
