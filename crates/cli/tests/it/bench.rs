//! `berth bench --quick`: the harness starts its own berth and reference
//! registry, runs every scenario on both and reports a ratio for each.

use std::collections::BTreeSet;
use std::process::Command;

use crate::common::{berth_bin, DISTRIBUTION_BIN};
use crate::interop::require;

#[test]
fn quick_bench_reports_a_ratio_for_every_scenario() {
    if !require(DISTRIBUTION_BIN, "bench") {
        return;
    }
    let out = Command::new(berth_bin())
        .args([
            "bench",
            "--quick",
            "--output",
            "json",
            "--concurrency",
            "1,8",
        ])
        .args(["--duration", "0.1", "--tags", "200"])
        .output()
        .expect("run berth bench");
    assert!(
        out.status.success(),
        "berth bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let cells = report["cells"].as_array().expect("cells");
    let scenarios: BTreeSet<&str> = cells
        .iter()
        .filter_map(|c| c["scenario"].as_str())
        .collect();
    for want in [
        "push-mono-1k",
        "push-mono-1m",
        "push-mono-64m",
        "push-chunked-1k",
        "push-chunked-1m",
        "push-chunked-64m",
        "pull-1k",
        "pull-1m",
        "pull-64m",
        "manifest-put",
        "manifest-get",
        "manifest-head",
        "tags-list",
        "mix",
    ] {
        assert!(scenarios.contains(want), "no {want} in {scenarios:?}");
    }
    assert_eq!(cells.len(), 14 * 2, "one cell per scenario and concurrency");
    for c in cells {
        let what = format!("{} c={}", c["scenario"], c["concurrency"]);
        let ratio = c["ratio"].as_f64().unwrap_or(0.0);
        assert!(ratio.is_finite() && ratio > 0.0, "{what}: ratio {ratio}");
        for side in ["berth", "peer"] {
            assert!(
                c[side]["ops"].as_u64().unwrap_or(0) > 0,
                "{what}: {side} did nothing"
            );
            assert_eq!(
                c[side]["errors"], 0,
                "{what}: {side} failed: {}",
                c[side]["first_error"]
            );
        }
    }
    assert!(report["disk_write_mb_s"].as_f64().unwrap_or(0.0) > 0.0);
    let idle = report["berth_idle_rss_mib"].as_f64().unwrap_or(0.0);
    let anonymous = report["berth_idle_anonymous_mib"].as_f64().unwrap_or(0.0);
    assert!(
        idle > 0.0 && anonymous > 0.0 && anonymous < idle,
        "{idle} {anonymous}"
    );
}

#[test]
fn bench_with_authentication_on_reports_without_errors() {
    if !require(DISTRIBUTION_BIN, "bench") {
        return;
    }
    let out = Command::new(berth_bin())
        .args(["bench", "--quick", "--berth-auth", "--output", "json"])
        .args(["--concurrency", "1", "--duration", "0.1", "--tags", "50"])
        .args(["--scenarios", "push-mono-1k,manifest-get,tags-list,mix"])
        .output()
        .expect("run berth bench");
    assert!(
        out.status.success(),
        "berth bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["berth_auth"], "basic");
    let cells = report["cells"].as_array().expect("cells");
    assert_eq!(cells.len(), 4);
    for c in cells {
        assert!(c["berth"]["ops"].as_u64().unwrap_or(0) > 0, "{c}");
        assert_eq!(c["berth"]["errors"], 0, "{}", c["berth"]["first_error"]);
    }
}

/// `--tls`: both servers serve HTTPS with one certificate from `berth tls
/// self-signed`, and every operation completes over TLS on both.
#[test]
fn bench_over_tls_reports_without_errors() {
    if !require(DISTRIBUTION_BIN, "bench_over_tls") {
        return;
    }
    let out = Command::new(berth_bin())
        .args(["bench", "--quick", "--tls", "--output", "json"])
        .args(["--concurrency", "1,4", "--duration", "0.1"])
        .args(["--scenarios", "push-chunked-1m,pull-1m,manifest-get"])
        .output()
        .expect("run berth bench");
    assert!(
        out.status.success(),
        "berth bench --tls failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["tls"], true);
    let cells = report["cells"].as_array().expect("cells");
    assert_eq!(cells.len(), 3 * 2);
    for c in cells {
        for side in ["berth", "peer"] {
            assert!(c[side]["ops"].as_u64().unwrap_or(0) > 0, "{side}: {c}");
            assert_eq!(c[side]["errors"], 0, "{side}: {}", c[side]["first_error"]);
        }
    }
}

/// `--storage s3`: both registries keep blobs in one SeaweedFS server the
/// bench starts, and the report counts object-store requests per operation.
#[test]
fn bench_on_object_storage_counts_store_requests() {
    if !require(DISTRIBUTION_BIN, "bench_on_object_storage") {
        return;
    }
    let out = Command::new(berth_bin())
        .args(["bench", "--quick", "--storage", "s3", "--output", "json"])
        .args(["--concurrency", "1", "--duration", "0.1"])
        .args(["--scenarios", "push-mono-1m,pull-1m,manifest-get"])
        .output()
        .expect("run berth bench");
    assert!(
        out.status.success(),
        "berth bench --storage s3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["storage"], "s3");
    let cells = report["cells"].as_array().expect("cells");
    assert_eq!(cells.len(), 3);
    for c in cells {
        for side in ["berth", "peer"] {
            assert!(c[side]["ops"].as_u64().unwrap_or(0) > 0, "{side}: {c}");
            assert_eq!(c[side]["errors"], 0, "{side}: {}", c[side]["first_error"]);
        }
        // Every blob operation reaches the store on both servers.
        if c["scenario"] != "manifest-get" {
            for side in ["berth", "peer"] {
                let per_op = c[side]["store_requests_per_op"].as_f64().unwrap_or(0.0);
                assert!(
                    per_op >= 1.0,
                    "{side} {}: {per_op} requests/op",
                    c["scenario"]
                );
            }
        }
    }
}

/// `--peer unobserved`: berth with metrics and the access log on against
/// the same binary with both off; the report shows that berth logged every
/// request and the targets are "within 3%".
#[test]
fn bench_against_itself_unobserved_measures_observability() {
    let out = Command::new(berth_bin())
        .args([
            "bench",
            "--quick",
            "--peer",
            "unobserved",
            "--output",
            "json",
        ])
        .args(["--concurrency", "1", "--duration", "0.2"])
        .args(["--scenarios", "push-mono-1k,manifest-get"])
        .output()
        .expect("run berth bench");
    assert!(
        out.status.success(),
        "berth bench --peer unobserved failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["peer"], "unobserved");
    let cells = report["cells"].as_array().expect("cells");
    assert_eq!(cells.len(), 2);
    for c in cells {
        assert_eq!(c["target"], 0.97, "{c}");
        for side in ["berth", "peer"] {
            assert!(c[side]["ops"].as_u64().unwrap_or(0) > 0, "{side}: {c}");
            assert_eq!(c[side]["errors"], 0, "{side}: {}", c[side]["first_error"]);
        }
        // One access-log line per request: a manifest GET is one request,
        // a monolithic push two (POST, PUT).
        let ops = c["berth"]["ops"].as_u64().unwrap_or(0);
        let per_op = if c["scenario"] == "manifest-get" {
            1
        } else {
            2
        };
        let lines = c["berth_access_log_lines"].as_u64().unwrap_or(0);
        assert!(
            lines >= ops * per_op,
            "{}: {lines} lines for {ops} operations",
            c["scenario"]
        );
    }
}

/// `--peer unscrubbed`: berth's integrity scrub reads while berth serves
/// pulls, and the same binary on the same data serves them without; the
/// report says how much the scrub read and the target is "within 10%".
#[test]
fn bench_against_itself_unscrubbed_measures_the_scrub() {
    let out = Command::new(berth_bin())
        .args(["bench", "--quick", "--peer", "unscrubbed"])
        .args([
            "--output",
            "json",
            "--concurrency",
            "1",
            "--duration",
            "0.5",
        ])
        .args(["--scenarios", "pull-1m"])
        .output()
        .expect("run berth bench");
    assert!(
        out.status.success(),
        "berth bench --peer unscrubbed failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["peer"], "unscrubbed");
    let cells = report["cells"].as_array().expect("cells");
    assert_eq!(cells.len(), 1);
    let c = &cells[0];
    assert_eq!(c["target"], 0.9, "{c}");
    for side in ["berth", "peer"] {
        assert!(c[side]["ops"].as_u64().unwrap_or(0) > 0, "{side}: {c}");
        assert_eq!(c[side]["errors"], 0, "{side}: {}", c[side]["first_error"]);
    }
    // The scrub really ran beside the pulls (about 25 MB in half a second
    // at the default 50 MiB/s), and read whole blobs.
    let scrub = &c["berth_scrub"];
    assert!(scrub["mb_per_s"].as_f64().unwrap_or(0.0) > 1.0, "{c}");
    assert!(scrub["blobs"].as_u64().unwrap_or(0) >= 1, "{c}");
}

/// `--replicas 2 --peer one-replica`: two berth replicas on one PostgreSQL
/// database and one object store, connections spread over them, against
/// one replica on the same engines; the multi-replica flags are refused
/// with a way out when their engines are missing.
#[test]
fn bench_replicas_against_one_replica() {
    let refused = Command::new(berth_bin())
        .args(["bench", "--quick", "--replicas", "3"])
        .output()
        .expect("run berth bench");
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("--storage s3"), "{err}");
    let refused = Command::new(berth_bin())
        .args(["bench", "--quick", "--peer", "one-replica"])
        .output()
        .expect("run berth bench");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("--replicas 3"), "{err}");

    let out = Command::new(berth_bin())
        .args(["bench", "--quick", "--storage", "s3", "--replicas", "2"])
        .args(["--peer", "one-replica", "--output", "json"])
        .args(["--concurrency", "2", "--duration", "0.2"])
        .args(["--scenarios", "push-mono-1k,manifest-get"])
        .output()
        .expect("run berth bench");
    assert!(
        out.status.success(),
        "berth bench --replicas 2 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["peer"], "one-replica");
    assert_eq!(report["replicas"], 2);
    let cells = report["cells"].as_array().expect("cells");
    assert_eq!(cells.len(), 2);
    for c in cells {
        assert_eq!(c["target"], 0.9, "{c}");
        for side in ["berth", "peer"] {
            assert!(c[side]["ops"].as_u64().unwrap_or(0) > 0, "{side}: {c}");
            assert_eq!(c[side]["errors"], 0, "{side}: {}", c[side]["first_error"]);
        }
    }
}

/// `--peer nginx`: the manifest reads against nginx serving the same bytes
/// from a file, with berth checking a registry token (`--berth-auth
/// bearer`) on every request; the targets are the calibration's, and
/// scenarios nginx cannot serve are refused.
#[test]
fn bench_calibrates_manifest_reads_against_nginx() {
    if !require(
        "/usr/sbin/nginx",
        "bench_calibrates_manifest_reads_against_nginx",
    ) {
        return;
    }
    let refused = Command::new(berth_bin())
        .args([
            "bench",
            "--quick",
            "--peer",
            "nginx",
            "--scenarios",
            "push-mono-1k",
        ])
        .output()
        .expect("run berth bench");
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("manifest-get,manifest-head"), "{err}");

    for (auth, target) in [(None, 0.9), (Some("bearer"), 0.75)] {
        let mut cmd = Command::new(berth_bin());
        cmd.args(["bench", "--quick", "--peer", "nginx", "--output", "json"])
            .args(["--concurrency", "1,4", "--duration", "0.2"]);
        if let Some(mode) = auth {
            cmd.args(["--berth-auth", mode]);
        }
        let out = cmd.output().expect("run berth bench");
        assert!(
            out.status.success(),
            "berth bench --peer nginx failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
        assert_eq!(report["peer"], "nginx");
        let cells = report["cells"].as_array().expect("cells");
        let scenarios: BTreeSet<&str> = cells
            .iter()
            .filter_map(|c| c["scenario"].as_str())
            .collect();
        assert_eq!(
            scenarios,
            BTreeSet::from(["manifest-get", "manifest-head"]),
            "nginx runs the manifest reads only"
        );
        for c in cells {
            assert_eq!(c["target"], target, "{c}");
            for side in ["berth", "peer"] {
                assert!(c[side]["ops"].as_u64().unwrap_or(0) > 0, "{side}: {c}");
                assert_eq!(c[side]["errors"], 0, "{side}: {}", c[side]["first_error"]);
                // nginx's workers are counted, not only its master.
                assert!(
                    c[side]["cpu_s"].as_f64().unwrap_or(0.0) > 0.0,
                    "{side}: {c}"
                );
            }
        }
    }
}

/// `--instructions`: berth under callgrind, instructions per operation from
/// two runs of different lengths.
#[test]
fn instruction_counts_price_one_operation() {
    if !require("valgrind", "bench --instructions") {
        return;
    }
    let out = Command::new(berth_bin())
        .args(["bench", "--instructions", "--quick", "--output", "json"])
        .args(["--scenarios", "manifest-get"])
        .output()
        .expect("run berth bench --instructions");
    assert!(
        out.status.success(),
        "berth bench --instructions failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let counts = report["counts"].as_array().expect("counts");
    let servers: Vec<&str> = counts.iter().filter_map(|c| c["server"].as_str()).collect();
    assert_eq!(servers, ["berth"], "{report}");
    for c in counts {
        let per_op = c["instructions_per_op"].as_f64().unwrap_or(0.0);
        // A manifest GET is thousands of instructions, not millions: the
        // start-up and the fixture were cancelled out.
        assert!(
            (1_000.0..5_000_000.0).contains(&per_op),
            "{}: {per_op} instructions per operation",
            c["server"]
        );
        let totals = c["totals"].as_array().expect("totals");
        assert!(totals[1].as_u64() > totals[0].as_u64(), "{c}");
    }
}
