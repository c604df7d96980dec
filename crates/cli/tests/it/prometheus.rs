//! The operations kit in `deploy/` and a real Prometheus (Debian's
//! `prometheus` and `promtool`, installed by scripts/install-test-deps.sh)
//! scraping a real `berth serve`. A missing binary fails these tests.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Berth, ADMIN_PASSWORD};
use crate::observability::scrape;
use crate::oci::*;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn promtool(args: &[&str], dir: &Path) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool (Debian package prometheus; scripts/install-test-deps.sh)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}: {text}");
    text
}

#[test]
fn the_deploy_kit_passes_promtool() {
    let dir = deploy().join("prometheus");
    let out = promtool(&["check", "config", "prometheus.yml"], &dir);
    assert!(out.contains("SUCCESS: 1 rule files found"), "{out}");
    let out = promtool(&["check", "rules", "alerts.yml"], &dir);
    assert!(out.contains("SUCCESS"), "{out}");
    // The alert rules' own unit tests (quota, GC failure, auth bursts).
    let out = promtool(&["test", "rules", "alerts.test.yml"], &dir);
    assert!(out.contains("SUCCESS"), "{out}");
}

/// Every `berth_*` name in `text`.
fn berth_names(text: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("berth_") {
        let start = i + at;
        let before_ok =
            start == 0 || !(b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
        let mut end = start;
        while end < b.len()
            && (b[end].is_ascii_lowercase() || b[end].is_ascii_digit() || b[end] == b'_')
        {
            end += 1;
        }
        if before_ok {
            out.insert(text[start..end].to_owned());
        }
        i = end;
    }
    out
}

/// The sample names an exposition defines (from its `# TYPE` lines).
fn exposed_names(exposition: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    for l in exposition.lines() {
        let Some(rest) = l.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            "info" => &["_info"],
            _ => &[""],
        };
        for s in suffixes {
            out.insert(format!("{name}{s}"));
        }
    }
    out
}

/// The exposition of a fresh set of berth's families with one series in
/// each (an empty family writes nothing, not even its `# TYPE`).
fn every_family() -> String {
    use berth_metrics::*;
    let m = Metrics::new();
    m.http_request("/v2/", "GET", 200, Duration::from_millis(1), 0, 0);
    m.http_request("/v2/", "PUT", 201, Duration::from_millis(1), 1, 1);
    m.http.in_flight.inc();
    m.pushed("a/b", ArtifactKind::Blob, 1);
    m.pulled("a/b", ArtifactKind::Blob, 1);
    m.storage_usage([NamespaceUsage {
        namespace: "a",
        stored_bytes: 1,
        stored_blobs: 1,
        quota_bytes: Some(2),
    }]);
    m.uploads_in_progress(1);
    m.job_run(JobRun {
        job: Job::Gc,
        success: true,
        elapsed: Duration::from_secs(1),
        deleted: &[("blob", 1)],
        reclaimed_bytes: 1,
        now_unix: 1,
    });
    m.auth_failure(AuthFailure::BadCredentials);
    m.rate_limited();
    m.login_throttled();
    m.webhook_delivery(DeliveryOutcome::Delivered);
    m.webhook_backlog(1, Duration::from_secs(1));
    m.db_operation(DbOperation::Write, Duration::from_millis(1), false);
    m.db_pool(1, 1, 2);
    m.storage_operation("filesystem", "put", Duration::from_millis(1), false);
    m.signature_check("enforce", "refused");
    let mut out = String::new();
    m.encode(&mut out).unwrap();
    out
}

#[tokio::test]
async fn the_deploy_kit_uses_only_metrics_berth_exposes() {
    let exposed = exposed_names(&every_family());
    assert!(exposed.contains("berth_webhook_queue_depth"), "{exposed:?}");
    // A real server's exposition names nothing the families above do not.
    let b = Berth::start();
    let real = exposed_names(&scrape(&client(), &b.url()).await);
    assert!(real.is_subset(&exposed), "{:?}", real.difference(&exposed));
    let dashboard = std::fs::read_to_string(deploy().join("grafana/berth-dashboard.json")).unwrap();
    let parsed: Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    assert!(parsed["panels"].as_array().unwrap().len() > 20);
    let alerts = std::fs::read_to_string(deploy().join("prometheus/alerts.yml")).unwrap();
    for (file, text) in [("dashboard", &dashboard), ("alerts.yml", &alerts)] {
        let used = berth_names(text);
        assert!(used.len() > 5, "{file}: {used:?}");
        let unknown: Vec<_> = used.iter().filter(|n| !exposed.contains(*n)).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metrics berth does not expose: {unknown:?}"
        );
    }
}

/// A Prometheus server on a random loopback port, killed on drop.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

/// The TCP port process `pid` listens on (from `/proc`: its socket inodes
/// and the kernel's table of listening sockets), once it listens.
fn listening_port(pid: u32) -> Option<u16> {
    let mut inodes = HashSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let t = target.to_string_lossy();
            if let Some(inode) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                inodes.insert(inode.to_owned());
            }
        }
    }
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).ok()?;
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // local_address, state 0A (LISTEN), inode.
        (f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]))
            .then(|| u16::from_str_radix(f[1].split(':').nth(1)?, 16).ok())
            .flatten()
    })
}

impl Prometheus {
    /// Starts Prometheus scraping `target` every second with the bearer
    /// token `token`, with the deploy kit's alert rules loaded.
    fn start(target: &str, token: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(
            deploy().join("prometheus/alerts.yml"),
            dir.path().join("alerts.yml"),
        )
        .unwrap();
        std::fs::write(dir.path().join("token"), token).unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - alerts.yml\n\
             scrape_configs:\n  - job_name: berth\n    metrics_path: /metrics\n\
             \x20   authorization:\n      credentials_file: {}\n\
             \x20   static_configs:\n      - targets: ['{target}']\n",
            dir.path().join("token").display()
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg("--web.listen-address=127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus (Debian package prometheus; scripts/install-test-deps.sh)");
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            if let Some(p) = listening_port(child.id()) {
                break p;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus did not listen: {}",
                std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// The result vector of an instant query.
    async fn query(&self, c: &reqwest::Client, q: &str) -> Vec<Value> {
        let r = c
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", q)])
            .send()
            .await;
        let Ok(r) = r else { return Vec::new() };
        let body: Value = r.json().await.unwrap_or_default();
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until `q` returns exactly one sample equal to `want`.
    async fn expect(&self, c: &reqwest::Client, q: &str, want: f64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let result = self.query(c, q).await;
            let value = result
                .first()
                .and_then(|s| s["value"][1].as_str())
                .and_then(|v| v.parse::<f64>().ok());
            if result.len() == 1 && value == Some(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus: {q} = {result:?}, want {want}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn prometheus_reads_pushes_pulls_and_failed_logins_from_berth() {
    let token = "scrape-token-for-tests";
    let b = Berth::start_auth(&["--metrics-token", token], None);
    let u = b.url();
    let mut headers = reqwest::header::HeaderMap::new();
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("admin:{ADMIN_PASSWORD}"),
    );
    headers.insert("authorization", format!("Basic {basic}").parse().unwrap());
    let admin = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap();
    push_image(&admin, &u, "acme/app", "v1", "prom").await;
    for _ in 0..2 {
        let r = admin
            .get(format!("{u}/v2/acme/app/manifests/v1"))
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = admin
        .get(format!("{u}/v2/acme/app/blobs/{}", sha256(b"layer-prom")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let c = client();
    let r = c
        .get(format!("{u}/v2/"))
        .basic_auth("admin", Some("not-the-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let p = Prometheus::start(&b.addr, token);
    p.expect(&c, "up{job=\"berth\"}", 1.0).await;
    let ns = "namespace=\"acme\"";
    p.expect(
        &c,
        &format!("berth_pushes_total{{{ns},kind=\"manifest\"}}"),
        1.0,
    )
    .await;
    p.expect(
        &c,
        &format!("berth_pushes_total{{{ns},kind=\"blob\"}}"),
        2.0,
    )
    .await;
    p.expect(
        &c,
        &format!("berth_pulls_total{{{ns},kind=\"manifest\"}}"),
        2.0,
    )
    .await;
    p.expect(&c, &format!("berth_pulls_total{{{ns},kind=\"blob\"}}"), 1.0)
        .await;
    p.expect(
        &c,
        "berth_auth_failures_total{kind=\"bad_credentials\"}",
        1.0,
    )
    .await;
    p.expect(
        &c,
        "berth_http_requests_total{route=\"/v2/{name}/manifests/{reference}\",method=\"GET\",status=\"200\"}",
        2.0,
    )
    .await;
    p.expect(&c, "berth_stored_blobs{namespace=\"acme\"}", 2.0)
        .await;
    p.expect(&c, "count(berth_build_info)", 1.0).await;
    // The deploy kit's rules loaded and evaluate over these series.
    let r: Value = c
        .get(format!("{}/api/v1/rules", p.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let groups = r["data"]["groups"].as_array().unwrap();
    assert_eq!(groups[0]["name"], "berth", "{r}");
    let rules = groups[0]["rules"].as_array().unwrap();
    assert!(rules.len() >= 10, "{r}");
    assert!(
        rules.iter().all(|rule| rule["health"] != "err"),
        "a rule fails to evaluate: {r}"
    );
}
