//! The repository page's tag table against a real `berth serve`: each
//! row's signature state (the last stored verdict: verified by which key,
//! unsigned, or not checked yet) and vulnerability badge (the stored scan
//! summary, "not scanned yet" without one), read for the page in one query
//! each; and the `ui-tags` bench scenario, run small.

use std::process::Command;

use serde_json::{json, Value};

use crate::common::{berth_bin, Berth};
use crate::oci::{client, push_image};
use crate::trust::{sign, trust, Signer};

/// The `<tr>` of tag `tag` in a tag table.
fn row<'a>(page: &'a str, tag: &str) -> &'a str {
    let link = format!(">{tag}</a>");
    let at = page
        .find(&link)
        .unwrap_or_else(|| panic!("no row for {tag} in {page}"));
    let start = page[..at].rfind("<tr>").unwrap();
    let end = at + page[at..].find("</tr>").unwrap();
    &page[start..end]
}

#[tokio::test]
async fn the_tag_table_shows_signature_states_and_stored_scans() {
    let b = Berth::start();
    let dir = tempfile::tempdir().unwrap();
    let c = client();
    let (signed, _) = push_image(&c, &b.url(), "acme/app", "signed", "s").await;
    let (unsigned, _) = push_image(&c, &b.url(), "acme/app", "unsigned", "u").await;
    push_image(&c, &b.url(), "acme/app", "unchecked", "x").await;

    let signer = Signer::new("p256");
    let public = signer.public.display().to_string();
    trust(
        &b,
        dir.path(),
        &["add", "acme", "--cosign-key", &public, "--name", "release"],
    );
    // A pushed signature is verified at once, its verdict stored.
    sign(&c, &b, "acme/app", &signed, &signer).await;
    // The API computes (and stores) the verdict of the unsigned one.
    let r = c
        .get(format!(
            "{}/api/v1/repositories/acme/app/signature?reference=unsigned",
            b.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["digest"], unsigned);
    // A scan stored for the signed one.
    let r = c
        .post(format!("{}/api/v1/scans", b.url()))
        .json(&json!({"repository": "acme/app", "reference": "signed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);

    let page = c
        .get(format!("{}/ui/repo/acme/app", b.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains(r#"<th scope="col">Signature</th>"#), "{page}");
    let signed_row = row(&page, "signed");
    assert!(signed_row.contains(">verified<"), "{signed_row}");
    assert!(signed_row.contains("release"), "the key: {signed_row}");
    assert!(
        signed_row.contains("none found") || signed_row.contains("scan failed"),
        "its stored scan: {signed_row}"
    );
    assert!(!signed_row.contains("not scanned yet"), "{signed_row}");
    let unsigned_row = row(&page, "unsigned");
    assert!(unsigned_row.contains(">unsigned<"), "{unsigned_row}");
    assert!(unsigned_row.contains("not scanned yet"), "{unsigned_row}");
    let unchecked_row = row(&page, "unchecked");
    assert!(unchecked_row.contains("not checked yet"), "{unchecked_row}");
    // The cosign signature's own tag is a row too, never verified itself.
    assert!(page.contains(".sig</a>"), "{page}");
}

/// `berth bench --scenarios ui-tags`, small: every page answered, timed
/// (the rules page and its preview with a stored policy's plan).
#[test]
fn the_ui_bench_scenario_times_every_page() {
    let work = tempfile::tempdir().unwrap();
    let out = Command::new(berth_bin())
        .args(["bench", "--scenarios", "ui-tags", "--tags", "120"])
        .args(["--rounds", "2", "--output", "json", "--work-dir"])
        .arg(work.path())
        .output()
        .expect("run berth bench");
    assert!(
        out.status.success(),
        "berth bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["scenario"], "ui-tags");
    assert_eq!(report["tags"], 120);
    assert_eq!(report["metadata"], "sqlite");
    let pages = report["pages"].as_array().unwrap();
    let names: Vec<&str> = pages.iter().filter_map(|p| p["page"].as_str()).collect();
    for want in [
        "tags, first page",
        "tags, middle page",
        "tags, largest first",
        "tags, filtered to ten",
        "an image",
        "start page",
        "namespace",
        "namespace rules",
        "rules, plan preview",
        "namespace rules, after a push",
        "rules, plan preview, after a push",
        "namespace rules, after a pull",
        "organisation",
        "tokens",
        "users",
        "storage",
        "audit log",
        "sign-in form",
    ] {
        assert!(names.contains(&want), "no {want} in {names:?}");
    }
    for p in pages {
        assert_eq!(p["requests"], 2);
        assert!(p["median_ms"].as_f64().unwrap() > 0.0, "{p}");
        assert!(p["bytes"].as_u64().unwrap() > 1000, "a page of HTML: {p}");
    }
    // On a PostgreSQL cluster the bench starts.
    let out = Command::new(berth_bin())
        .args(["bench", "--scenarios", "ui-tags", "--tags", "40"])
        .args([
            "--metadata",
            "postgres",
            "--rounds",
            "1",
            "--output",
            "json",
        ])
        .args(["--work-dir"])
        .arg(work.path())
        .output()
        .expect("run berth bench");
    assert!(
        out.status.success(),
        "berth bench --metadata postgres failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["metadata"], "postgres");
    let pages = report["pages"].as_array().unwrap();
    assert_eq!(pages.len(), names.len(), "the same pages");
    for p in pages {
        assert!(p["bytes"].as_u64().unwrap() > 1000, "a page of HTML: {p}");
    }
    // Mixed with a registry scenario: refused, saying why.
    let out = Command::new(berth_bin())
        .args(["bench", "--scenarios", "ui-tags,pull"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("run on their own"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
