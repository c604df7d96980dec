//! The `berth serve` process: configuration sources, refusals, shutdown.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{berth_bin, Berth};
use crate::oci::*;

#[tokio::test]
async fn sigterm_drains_and_exits_cleanly() {
    let mut b = Berth::start();
    let (c, u) = (client(), b.url());
    let d = push_blob(&c, &u, "before/stop", b"durable").await;
    let status = b.terminate();
    assert!(status.success(), "exit status {status:?}");
    assert!(b.log().contains("shutting down"), "{}", b.log());
    // Restarted on the same data, the blob is there.
    let tmp = tempfile::tempdir().unwrap();
    let b2 = Berth::start_in(&b.data_dir, &[], None, tmp.path());
    let r = c
        .get(format!("{}/v2/before/stop/blobs/{d}", b2.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "durable");
}

#[test]
fn environment_configures_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let addr_file = tmp.path().join("addr");
    let child = Command::new(berth_bin())
        .arg("serve")
        .env("BERTH_LISTEN", "127.0.0.1:0")
        .env("BERTH_DATA_DIR", tmp.path().join("from-env"))
        .env("BERTH_ADDR_FILE", &addr_file)
        .env("BERTH_LOG_FORMAT", "json")
        .env_remove("BERTH_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !addr_file.exists() || std::fs::read_to_string(&addr_file).unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "berth did not start from environment settings"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(tmp.path().join("from-env").join("berth.db").exists());
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    // JSON logs: every line is an object.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(v["level"].is_string());
    }
}

fn refused(args: &[&str], config: Option<&str>) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(berth_bin());
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(tmp.path().join("d"))
        .args(args)
        .env_remove("BERTH_CONFIG");
    if let Some(text) = config {
        let f = tmp.path().join("berth.toml");
        std::fs::write(&f, text).unwrap();
        cmd.arg("--config").arg(f);
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "must refuse {args:?} {config:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_settings_are_refused_with_a_clear_message() {
    assert!(refused(&["--listen", "nonsense"], None).contains("invalid listen address"));
    assert!(
        refused(&["--listen", "127.0.0.1:0", "--log-format", "xml"], None)
            .contains("invalid value 'xml' for '--log-format")
    );
    let e = refused(&["--listen", "127.0.0.1:0"], Some("listn = \"typo\"\n"));
    assert!(e.contains("unknown field") && e.contains("listn"), "{e}");
    let e = refused(
        &["--listen", "127.0.0.1:0"],
        Some("upload_ttl = \"3 weeks\"\n"),
    );
    assert!(e.contains("upload_ttl"), "{e}");
    let e = refused(
        &["--listen", "127.0.0.1:0"],
        Some("max_manifest_size = \"12\"\n"),
    );
    assert!(e.contains("max_manifest_size"), "{e}");
    let e = refused(
        &[
            "--listen",
            "127.0.0.1:0",
            "--config",
            "/nonexistent/berth.toml",
        ],
        None,
    );
    assert!(e.contains("/nonexistent/berth.toml"), "{e}");
}
