//! `berth serve` starting and stopping: the order of start-up (listen
//! first), the administrator's password (a file, never the log), host
//! names to listen on, and a SIGTERM during garbage collection.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{berth_bin, Berth};
use crate::oci::client;
use crate::tools::berth_ok;

/// Whether `user:password` gets a registry token.
async fn logs_in(base: &str, user: &str, password: &str) -> bool {
    client()
        .get(format!("{base}/token?service=berth"))
        .basic_auth(user, Some(password))
        .send()
        .await
        .unwrap()
        .status()
        .is_success()
}

#[test]
fn a_taken_port_fails_before_anything_is_created() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = Command::new(berth_bin())
        .args(["serve", "--auth", "token", "--listen", &addr, "--data-dir"])
        .arg(&data)
        .env_remove("BERTH_ADMIN_PASSWORD")
        .env_remove("BERTH_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert!(!err.contains("password"), "{err}");
    assert!(!data.exists(), "nothing created: no admin, no password");
}

#[tokio::test]
async fn a_generated_admin_password_goes_to_an_owner_only_file() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut berth = Berth::start_in(&data, &["--auth", "token"], None, tmp.path());
    let file = data.join("admin-password");
    let password = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert_eq!(password.len(), 24);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    // The log is written by a thread of its own, in batches: wait for the
    // line naming the file rather than read it once.
    let named = file.display().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut log = berth.log();
    while !log.contains(&named) && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        log = berth.log();
    }
    assert!(
        !log.contains(&password),
        "the password is never logged: {log}"
    );
    assert!(log.contains(&named), "the log names the file: {log}");
    assert!(logs_in(&berth.url(), "admin", &password).await);
    berth.terminate();

    // Set on a later start, the variable changes nothing, and says so.
    let env = [("BERTH_ADMIN_PASSWORD", "a-new-password-nobody-uses")];
    let berth = Berth::launch(&data, &["--auth", "token"], None, tmp.path(), &env);
    let log = berth.log();
    assert!(
        log.contains("is set but the site administrator already exists"),
        "{log}"
    );
    assert!(!log.contains("a-new-password-nobody-uses"), "{log}");
    assert!(logs_in(&berth.url(), "admin", &password).await);
    assert!(!logs_in(&berth.url(), "admin", "a-new-password-nobody-uses").await);
}

#[test]
fn listen_takes_a_host_name() {
    let tmp = tempfile::tempdir().unwrap();
    let addr_file = tmp.path().join("addr");
    let mut child = Command::new(berth_bin())
        .args([
            "serve",
            "--auth",
            "none",
            "--listen",
            "localhost:0",
            "--data-dir",
        ])
        .arg(tmp.path().join("data"))
        .arg("--addr-file")
        .arg(&addr_file)
        .env_remove("BERTH_CONFIG")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = loop {
        match std::fs::read_to_string(&addr_file) {
            Ok(a) if !a.is_empty() => break a,
            _ => {
                assert!(
                    Instant::now() < deadline,
                    "berth did not start on localhost:0"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        addr.starts_with("127.0.0.1:") || addr.starts_with("[::1]:"),
        "{addr}"
    );
    assert!(!addr.ends_with(":0"), "{addr}");
}

#[test]
fn serve_help_lists_every_setting_with_its_variable() {
    let out = Command::new(berth_bin())
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for (flag, env) in [
        ("--listen", "BERTH_LISTEN"),
        ("--gc-interval", "BERTH_GC_INTERVAL"),
        ("--token-ttl", "BERTH_TOKEN_TTL"),
        ("--max-manifest-size", "BERTH_MAX_MANIFEST_SIZE"),
        ("--admin-password", "BERTH_ADMIN_PASSWORD"),
    ] {
        assert!(help.contains(flag) && help.contains(env), "{flag}: {help}");
    }
    assert!(help.contains("[default: 24h]"), "{help}");
}

/// Writes `n` stored blobs that no repository knows (garbage), old enough
/// for any grace period.
fn stray_blobs(data: &Path, n: usize) {
    for i in 0..n {
        let hex = format!("{:064x}", i as u128 * 0x9e37_79b9_7f4a_7c15 + 1);
        let dir = data.join("blobs/sha256").join(&hex[..2]);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(&hex), b"x").unwrap();
    }
}

#[tokio::test]
async fn sigterm_during_gc_ends_the_run_and_frees_the_lease() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    const N: usize = 10_000;
    stray_blobs(&data, N);
    let config = "gc_grace_period = \"0s\"\ngc_interval = \"0\"\n";
    let mut berth = Berth::start_in(&data, &[], Some(config), tmp.path());
    let base = berth.url();
    let run = {
        let base = base.clone();
        tokio::spawn(async move {
            client()
                .post(format!("{base}/api/v1/gc"))
                .send()
                .await
                .ok()?
                .json::<Value>()
                .await
                .ok()
        })
    };
    // SIGTERM once the run holds its lease and has begun deleting.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s: Value = client()
            .get(format!("{base}/api/v1/gc"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let files = crate::oci::files_under(&data.join("blobs")).len();
        if s["running_on"].is_string() && files < N {
            break;
        }
        assert!(Instant::now() < deadline, "GC did not start: {s}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = berth.terminate();
    assert!(status.success(), "{status:?}: {}", berth.log());
    let left = crate::oci::files_under(&data.join("blobs")).len();
    assert!(left > 0, "the run was stopped before it finished");
    if let Ok(Some(report)) = run.await {
        assert_eq!(report["interrupted"], true, "{report}");
    }

    // The run is recorded as ended, and no lease is left behind.
    let meta = berth_meta::Meta::open_sqlite(&data.join("berth.db"))
        .await
        .unwrap();
    let last = meta.last_run("gc").await.unwrap().unwrap();
    assert!(last.finished_at.is_some(), "{last:?}");
    assert_eq!(last.ok, Some(false), "{last:?}");
    assert_eq!(last.summary.as_ref().unwrap()["interrupted"], true);
    assert_eq!(
        last.summary.as_ref().unwrap()["blobs"].as_u64().unwrap() as usize,
        N - left
    );
    assert!(meta.lease("gc").await.unwrap().is_none());
    meta.close().await;

    // After a restart, GC runs at once (no stale lease) and finishes.
    let berth = Berth::start_in(&data, &[], Some(config), tmp.path());
    let dir = tempfile::tempdir().unwrap();
    let out = berth_ok(dir.path(), &["gc", "--registry", &berth.addr]);
    assert!(out.contains(&format!("{left} blobs")), "{out}");
    assert!(crate::oci::files_under(&data.join("blobs")).is_empty());
    let status = berth_ok(dir.path(), &["gc", "--status", "--registry", &berth.addr]);
    assert!(
        status.contains("last run:") && status.contains("(ok)"),
        "{status}"
    );
    assert!(status.contains("on demand only"), "{status}");
}
