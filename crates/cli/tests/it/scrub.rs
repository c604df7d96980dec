//! `berth scrub` against a real `berth serve`: a blob flipped on disk
//! behind berth's back is reported with the tags it breaks, set aside and
//! repaired from a second berth configured as its source
//! (`scrub_repair_from`); a blob that neither has is reported missing and
//! unrepaired; each finding leaves an audit event and a metric; a pass
//! stopped early resumes where it stopped; the scrub yields to requests in
//! flight (not to its own).

use serde_json::Value;

use crate::common::Berth;
use crate::oci::{client, push_image, sha256};
use crate::tools::berth_ok;

fn blob_file(berth: &Berth, digest: &str) -> std::path::PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    berth
        .data_dir
        .join("blobs/sha256")
        .join(&hex[..2])
        .join(hex)
}

fn damage(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[0] ^= 0x20;
    let mut perms = std::fs::metadata(path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(path, perms).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn scrub(dir: &std::path::Path, berth: &Berth, extra: &[&str]) -> Value {
    let args = [
        &["scrub", "--registry", berth.addr.as_str(), "-o", "json"][..],
        extra,
    ]
    .concat();
    serde_json::from_str(&berth_ok(dir, &args)).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flipped_blob_is_reported_with_its_tags_and_repaired_from_the_source() {
    let source = Berth::start();
    let node = Berth::start_with(
        &["--scrub-repair-from", &source.url()],
        Some("scrub_interval = \"0\"\n"),
    );
    let (c, base) = (client(), node.url());
    // The same image on both (same seed, same digests), tagged twice here.
    let (_, m) = push_image(&c, &base, "team/app", "v1", "scrubbed").await;
    push_image(&c, &base, "team/app", "stable", "scrubbed").await;
    push_image(&c, &source.url(), "team/app", "v1", "scrubbed").await;
    // An image only this registry has.
    let (_, only) = push_image(&c, &base, "team/solo", "v1", "lonely").await;
    let m: Value = serde_json::from_slice(&m).unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_owned();
    let only: Value = serde_json::from_slice(&only).unwrap();
    let gone = only["layers"][0]["digest"].as_str().unwrap().to_owned();

    // Clean: nothing to report.
    let dir = tempfile::tempdir().unwrap();
    let clean = scrub(dir.path(), &node, &[]);
    assert_eq!(clean["checked"], 4, "{clean}");
    assert_eq!(clean["findings"].as_array().unwrap().len(), 0, "{clean}");
    assert_eq!(clean["complete"], true);

    // Behind berth's back: one byte flipped, one file removed.
    damage(&blob_file(&node, &layer));
    std::fs::remove_file(blob_file(&node, &gone)).unwrap();
    let report = scrub(dir.path(), &node, &[]);
    assert_eq!(report["corrupt"], 1, "{report}");
    assert_eq!(report["missing"], 1, "{report}");
    assert_eq!(report["repaired"], 1, "{report}");
    let findings = report["findings"].as_array().unwrap();
    let corrupt = findings
        .iter()
        .find(|f| f["digest"] == layer.as_str())
        .unwrap();
    assert_eq!(corrupt["problem"], "corrupt");
    assert!(
        corrupt["detail"].as_str().unwrap().contains("hashes to"),
        "{corrupt}"
    );
    assert_eq!(corrupt["repaired_from"], source.url().as_str());
    let breaks = &corrupt["breaks"][0];
    assert_eq!(breaks["repository"], "team/app");
    assert_eq!(breaks["tags"], serde_json::json!(["stable", "v1"]));
    let aside = corrupt["set_aside"].as_str().unwrap();
    assert!(std::path::Path::new(aside).starts_with(node.data_dir.join("corrupt")));
    assert!(std::path::Path::new(aside).is_file());
    let missing = findings
        .iter()
        .find(|f| f["digest"] == gone.as_str())
        .unwrap();
    assert_eq!(missing["problem"], "missing");
    assert!(missing["repaired_from"].is_null());
    assert!(
        missing["repair_error"]
            .as_str()
            .unwrap()
            .contains("team/solo"),
        "{missing}"
    );
    assert_eq!(missing["breaks"][0]["tags"], serde_json::json!(["v1"]));

    // The repaired layer pulls with its digest again.
    let body = c
        .get(format!("{base}/v2/team/app/blobs/{layer}"))
        .send()
        .await
        .unwrap();
    assert_eq!(body.status(), 200);
    assert_eq!(sha256(&body.bytes().await.unwrap()), layer);

    // The table names the tags it breaks.
    let table = berth_ok(dir.path(), &["scrub", "--registry", node.addr.as_str()]);
    assert!(table.contains("team/solo:v1"), "{table}");
    assert!(
        table.contains("1 missing, 0 corrupt, 0 repaired"),
        "{table}"
    );

    // An audit event per finding, and the metric.
    let events: Value = c
        .get(format!("{base}/api/v1/audit?action=scrub.finding"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(events["events"].as_array().unwrap().len(), 3, "{events}");
    let metrics = c
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("berth_scrub_findings_total{problem=\"corrupt\",action=\"repaired\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("berth_scrub_findings_total{problem=\"missing\",action=\"unrepaired\"} 2"),
        "{metrics}"
    );

    // Resumable: a run stopped after two blobs, and the next goes on.
    let first = scrub(dir.path(), &node, &["--max-blobs", "2"]);
    assert_eq!(first["checked"], 2, "{first}");
    assert_eq!(first["complete"], false);
    let rest = scrub(dir.path(), &node, &[]);
    assert!(rest["resumed_after"].is_string(), "{rest}");
    assert_eq!(rest["checked"], 2, "{rest}");
    assert_eq!(rest["complete"], true);
}

/// The listener counts requests for the scrub to yield to: while an
/// upload's body is still arriving, everything the scrub reads is read at
/// the busy rate; with no request but its own `POST /api/v1/scrub`,
/// nothing is.
#[tokio::test(flavor = "multi_thread")]
async fn the_scrub_yields_to_requests_in_flight_but_not_to_its_own() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let node = Berth::start();
    let (c, base) = (client(), node.url());
    push_image(&c, &base, "team/app", "v1", "yielding").await;
    let dir = tempfile::tempdir().unwrap();

    let idle = scrub(dir.path(), &node, &[]);
    assert_eq!(idle["checked"], 2, "config and layer: {idle}");
    assert!(idle["bytes"].as_u64().unwrap() > 0, "{idle}");
    assert_eq!(idle["bytes_busy"], 0, "{idle}");

    // A request in flight: a PATCH whose body is 7 bytes of 1000. The
    // server's `100 Continue` says its handler is reading the body.
    let r = c
        .post(format!("{base}/v2/team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let path = location.strip_prefix(&base).unwrap_or(&location).to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&node.addr).await.unwrap();
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/octet-stream\r\n\
         content-length: 1000\r\nexpect: 100-continue\r\n\r\n",
        node.addr
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tcp.read(&mut buf).await.unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 100"), "{answer:?}");
    tcp.write_all(b"partial").await.unwrap();

    let busy = scrub(dir.path(), &node, &[]);
    assert_eq!(busy["checked"], 2, "{busy}");
    assert_eq!(busy["bytes_busy"], busy["bytes"], "{busy}");

    // The upload's request ends (once the server sees the connection
    // close): the scrub reads at its full rate again.
    drop(tcp);
    let mut again = Value::Null;
    for _ in 0..50 {
        again = scrub(dir.path(), &node, &[]);
        if again["bytes_busy"] == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(again["bytes_busy"], 0, "{again}");
}
