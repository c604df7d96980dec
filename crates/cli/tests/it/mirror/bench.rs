//! `berth bench --scenarios mirror`, small (`--quick`: a 4 MiB layer, one
//! round): every path pulls the whole image, timed; mixed with another
//! scenario it is refused, saying why.

use std::process::Command;

use crate::common::berth_bin;

#[test]
fn the_mirror_bench_scenario_times_every_path() {
    let work = tempfile::tempdir().unwrap();
    let out = Command::new(berth_bin())
        .args([
            "bench",
            "--scenarios",
            "mirror",
            "--quick",
            "--output",
            "json",
        ])
        .arg("--work-dir")
        .arg(work.path())
        .output()
        .expect("run berth bench");
    assert!(
        out.status.success(),
        "berth bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["scenario"], "mirror");
    assert_eq!(report["large_layer_bytes"], 4 * 1024 * 1024);
    assert!(report["image_bytes"].as_u64().unwrap() > 4 * 1024 * 1024);
    let paths = report["paths"].as_array().unwrap();
    let names: Vec<&str> = paths.iter().filter_map(|p| p["path"].as_str()).collect();
    assert_eq!(
        names,
        [
            "direct",
            "berth cold",
            "berth warm",
            "reference proxy cold",
            "reference proxy warm"
        ]
    );
    for p in paths {
        assert_eq!(p["pulls"], 1, "{p}");
        assert!(p["median_ms"].as_f64().unwrap() > 0.0, "{p}");
        assert!(p["mib_per_s"].as_f64().unwrap() > 0.0, "{p}");
    }
    assert_eq!(paths[0]["vs_direct"], 1.0);
    assert!(report["cold_overhead"].as_f64().unwrap() > 0.0);
    assert!(report["cold_target_met"].is_boolean());

    let out = Command::new(berth_bin())
        .args(["bench", "--scenarios", "mirror,pull"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("runs on its own"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
