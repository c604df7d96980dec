//! Helm 4 charts in berth over `oci://`, with and without authentication.
//!
//! No Debian, PyPI or npm package ships a `helm` v4 binary; PyPI's
//! `helm-python-sdk` carries Helm 4's own Go SDK (`libhelm_c`), whose
//! registry client is the one the `helm` CLI uses. A small Python script
//! drives it as the CLI would: `helm create`, `helm package`, `helm
//! registry login`, `helm push`, `helm pull`.

use super::daemon::need;
use super::*;
use crate::auth::Fixture;

/// argv: registry address, repository path (`alice/charts`), user and
/// password ("" for none), work directory. Prints a JSON report.
const SCRIPT: &str = r#"
import json, os, sys
import helm_python as helm

addr, path, user, password, work = sys.argv[1:6]
report = {"sdk": helm.helm_sdk_version()}
helm.Chart.create("berth-demo", work).close()
archive = helm.package(os.path.join(work, "berth-demo"),
                       destination=os.path.join(work, "dist"), version="0.1.0")
remote = f"oci://{addr}/{path}"

anonymous = helm.RegistryClient(plain_http=True,
                                credentials_file=os.path.join(work, "anonymous.json"))
client = helm.RegistryClient(plain_http=True,
                             credentials_file=os.path.join(work, "registry.json"))
if user:
    try:
        anonymous.push(archive, remote, plain_http=True)
        report["anonymous_push"] = "accepted"
    except helm.HelmError as e:
        report["anonymous_push"] = str(e)
    client.login(addr, user, password, plain_http=True)

report["push"] = client.push(archive, remote, plain_http=True)
report["resolve"] = client.resolve(f"{remote}/berth-demo:0.1.0")
report["tags"] = client.tags(f"{remote}/berth-demo")
pulled = os.path.join(work, "pulled")
os.makedirs(pulled)
client.pull(f"{remote}/berth-demo", version="0.1.0", destination=pulled, plain_http=True)
with open(archive, "rb") as a, open(os.path.join(pulled, "berth-demo-0.1.0.tgz"), "rb") as b:
    report["same_archive"] = a.read() == b.read()
if user:
    try:
        anonymous.pull(f"{remote}/berth-demo", version="0.1.0",
                       destination=pulled, plain_http=True)
        report["anonymous_pull"] = "accepted"
    except helm.HelmError as e:
        report["anonymous_pull"] = str(e)
print(json.dumps(report))
"#;

/// Runs the script against `addr`; returns its report.
fn helm(addr: &str, path: &str, user: &str, password: &str) -> Value {
    need("python3");
    let work = tempfile::tempdir().expect("tempdir");
    let out = ok(Command::new("python3")
        .args(["-c", SCRIPT, addr, path, user, password])
        .arg(work.path())
        .env("HOME", work.path()));
    parse(&out)
}

/// The chart's manifest as berth serves it, and its digest.
fn chart_manifest(base: &str, repo: &str, creds: Option<(&str, &str)>) -> (Value, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut r = reqwest::Client::new()
            .get(format!("{base}/v2/{repo}/manifests/0.1.0"))
            .header("accept", layout::MANIFEST);
        if let Some((u, p)) = creds {
            r = r.basic_auth(u, Some(p));
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let digest = r.headers()["docker-content-digest"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = r.bytes().await.unwrap();
        assert_eq!(sha256(&body), digest);
        (parse(&body), digest)
    })
}

fn assert_chart(report: &Value, (manifest, digest): &(Value, String)) {
    assert!(
        report["sdk"].as_str().unwrap().starts_with("v4."),
        "{report}"
    );
    assert_eq!(report["same_archive"], true, "{report}");
    assert_eq!(report["tags"], serde_json::json!(["0.1.0"]), "{report}");
    assert_eq!(report["resolve"]["digest"], digest.as_str(), "{report}");
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.cncf.helm.config.v1+json"
    );
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
    );
}

#[test]
fn helm_charts_over_oci_without_authentication() {
    let berth = Berth::start();
    let report = helm(&berth.addr, "charts", "", "");
    let manifest = chart_manifest(&berth.url(), "charts/berth-demo", None);
    assert_chart(&report, &manifest);
}

#[test]
fn helm_charts_over_oci_with_authentication() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let f = rt.block_on(async {
        let f = Fixture::start("").await;
        f.user("alice").await;
        f
    });
    let report = helm(&f.berth.addr, "alice/charts", "alice", "alice-password");
    let manifest = chart_manifest(
        &f.url(),
        "alice/charts/berth-demo",
        Some(("alice", "alice-password")),
    );
    assert_chart(&report, &manifest);
    for refused in ["anonymous_push", "anonymous_pull"] {
        let why = report[refused].as_str().unwrap();
        assert!(
            why.contains("401") || why.contains("unauthorized") || why.contains("denied"),
            "{refused} must be refused for want of credentials: {report}"
        );
    }
}
