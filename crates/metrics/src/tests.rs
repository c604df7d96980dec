use super::*;

fn text(m: &Metrics) -> String {
    let mut out = String::new();
    m.encode(&mut out).unwrap();
    out
}

#[test]
fn http_requests_are_counted_by_route_template_and_status() {
    let m = Metrics::new();
    let route = "/v2/{name}/manifests/{reference}";
    m.http_request(route, "GET", 200, Duration::from_millis(3), 0, 1000);
    m.http_request(route, "GET", 200, Duration::from_millis(5), 0, 234);
    m.http_request(route, "GET", 404, Duration::from_millis(1), 0, 0);
    let t = text(&m);
    assert!(t.contains(
        "berth_http_requests_total{route=\"/v2/{name}/manifests/{reference}\",method=\"GET\",status=\"200\"} 2\n"
    ), "{t}");
    assert!(t.contains("status=\"404\"} 1\n"), "{t}");
    assert!(t.contains(
        "berth_http_request_duration_seconds_count{route=\"/v2/{name}/manifests/{reference}\",method=\"GET\"} 3\n"
    ), "{t}");
    assert!(t.contains("berth_http_response_bytes_total{route=\"/v2/{name}/manifests/{reference}\",method=\"GET\"} 1234\n"), "{t}");
    assert!(
        !t.contains("berth_http_request_bytes_total{"),
        "no body, no series: {t}"
    );
    // Another set of families on the same thread records into its own
    // series, not into the handles this thread kept for the first.
    let other = Metrics::new();
    other.http_request(route, "GET", 200, Duration::from_millis(3), 7, 0);
    let t = text(&m);
    assert!(t.contains("status=\"200\"} 2\n"), "{t}");
    assert!(!t.contains("berth_http_request_bytes_total{"), "{t}");
    let o = text(&other);
    assert!(o.contains("status=\"200\"} 1\n"), "{o}");
    assert!(o.contains("berth_http_request_bytes_total{route=\"/v2/{name}/manifests/{reference}\",method=\"GET\"} 7\n"), "{o}");
}

#[test]
fn request_durations_fill_the_latency_buckets() {
    let m = Metrics::new();
    let route = "/v2/{name}/blobs/{digest}";
    m.http_request(route, "GET", 200, Duration::from_micros(300), 0, 0);
    m.http_request(route, "GET", 200, Duration::from_millis(20), 0, 0);
    m.http_request(route, "GET", 200, Duration::from_secs(90), 0, 0);
    let t = text(&m);
    let series = "route=\"/v2/{name}/blobs/{digest}\",method=\"GET\"";
    for (le, n) in [("0.0005", 1), ("0.025", 2), ("60.0", 2), ("+Inf", 3)] {
        let line =
            format!("berth_http_request_duration_seconds_bucket{{le=\"{le}\",{series}}} {n}\n");
        assert!(t.contains(&line), "{line} missing:\n{t}");
    }
    let sum = format!("berth_http_request_duration_seconds_sum{{{series}}} 90.0203\n");
    assert!(t.contains(&sum), "{sum} missing:\n{t}");
}

#[test]
fn transfers_are_labelled_by_namespace_unless_per_repository_is_on() {
    let m = Metrics::new();
    m.pushed("acme/app", ArtifactKind::Blob, 100);
    m.pushed("acme/tools/x", ArtifactKind::Blob, 50);
    m.pulled("acme/app", ArtifactKind::Manifest, 7);
    let t = text(&m);
    assert!(
        t.contains("berth_pushes_total{namespace=\"acme\",repository=\"\",kind=\"blob\"} 2\n"),
        "{t}"
    );
    assert!(
        t.contains(
            "berth_pushed_bytes_total{namespace=\"acme\",repository=\"\",kind=\"blob\"} 150\n"
        ),
        "{t}"
    );
    assert!(
        t.contains("berth_pulls_total{namespace=\"acme\",repository=\"\",kind=\"manifest\"} 1\n"),
        "{t}"
    );

    m.set_per_repository(true);
    m.pulled("acme/app", ArtifactKind::Manifest, 7);
    let t = text(&m);
    assert!(
        t.contains(
            "berth_pulls_total{namespace=\"acme\",repository=\"acme/app\",kind=\"manifest\"} 1\n"
        ),
        "{t}"
    );
}

#[test]
fn switched_off_records_nothing() {
    let m = Metrics::new();
    m.set_enabled(false);
    m.http_request("/v2/", "GET", 200, Duration::from_millis(1), 0, 0);
    m.pushed("acme/app", ArtifactKind::Blob, 1);
    m.auth_failure(AuthFailure::BadCredentials);
    let t = text(&m);
    assert!(!t.contains("berth_http_requests_total{"), "{t}");
    assert!(!t.contains("berth_pushes_total{"), "{t}");
    assert!(!t.contains("berth_auth_failures_total{"), "{t}");
    // Build info is always there.
    assert!(t.contains("berth_build_info{version=\""), "{t}");
}

#[test]
fn job_runs_record_outcome_deletions_and_last_success() {
    let m = Metrics::new();
    m.job_run(JobRun {
        job: Job::Gc,
        success: true,
        elapsed: Duration::from_secs(2),
        deleted: &[("blob", 3), ("manifest", 1)],
        reclaimed_bytes: 4096,
        now_unix: 1_700_000_000,
    });
    m.job_run(JobRun {
        job: Job::Retention,
        success: false,
        elapsed: Duration::from_millis(5),
        deleted: &[],
        reclaimed_bytes: 0,
        now_unix: 1_700_000_100,
    });
    let t = text(&m);
    assert!(
        t.contains("berth_job_runs_total{task=\"gc\",outcome=\"success\"} 1\n"),
        "{t}"
    );
    assert!(
        t.contains("berth_job_runs_total{task=\"retention\",outcome=\"failure\"} 1\n"),
        "{t}"
    );
    assert!(
        t.contains("berth_job_deleted_total{task=\"gc\",kind=\"blob\"} 3\n"),
        "{t}"
    );
    assert!(
        t.contains("berth_job_reclaimed_bytes_total{task=\"gc\"} 4096\n"),
        "{t}"
    );
    assert!(
        t.contains("berth_job_last_success_timestamp_seconds{task=\"gc\"} 1700000000\n"),
        "{t}"
    );
    assert!(
        !t.contains("berth_job_last_success_timestamp_seconds{task=\"retention\"}"),
        "{t}"
    );
}

#[test]
fn scrape_time_gauges_replace_the_previous_snapshot() {
    let m = Metrics::new();
    m.storage_usage([
        NamespaceUsage {
            namespace: "acme",
            stored_bytes: 800,
            stored_blobs: 4,
            quota_bytes: Some(1000),
        },
        NamespaceUsage {
            namespace: "gone",
            stored_bytes: 1,
            stored_blobs: 1,
            quota_bytes: None,
        },
    ]);
    m.storage_usage([NamespaceUsage {
        namespace: "acme",
        stored_bytes: 900,
        stored_blobs: 5,
        quota_bytes: Some(1000),
    }]);
    m.uploads_in_progress(2);
    m.webhook_backlog(3, Duration::from_secs(90));
    m.db_pool(1, 4, 8);
    let t = text(&m);
    assert!(
        t.contains("berth_stored_bytes{namespace=\"acme\"} 900\n"),
        "{t}"
    );
    assert!(!t.contains("namespace=\"gone\""), "{t}");
    assert!(
        t.contains("berth_quota_limit_bytes{namespace=\"acme\"} 1000\n"),
        "{t}"
    );
    assert!(
        t.contains("berth_quota_used_ratio{namespace=\"acme\"} 0.9\n"),
        "{t}"
    );
    assert!(t.contains("berth_uploads_in_progress 2\n"), "{t}");
    assert!(t.contains("berth_webhook_queue_depth 3\n"), "{t}");
    assert!(
        t.contains("berth_webhook_oldest_undelivered_age_seconds 90.0\n"),
        "{t}"
    );
    assert!(
        t.contains("berth_db_pool_connections{state=\"in_use\"} 1\n"),
        "{t}"
    );
}

#[test]
fn auth_webhook_and_backend_families_encode_their_labels() {
    let m = Metrics::new();
    m.auth_failure(AuthFailure::BadCredentials);
    m.rate_limited();
    m.login_throttled();
    m.webhook_delivery(DeliveryOutcome::Failed);
    m.db_operation(DbOperation::Write, Duration::from_millis(2), false);
    m.storage_operation("filesystem", "write", Duration::from_millis(2), false);
    let t = text(&m);
    for line in [
        "berth_auth_failures_total{kind=\"bad_credentials\"} 1\n",
        "berth_rate_limited_total 1\n",
        "berth_login_throttled_total 1\n",
        "berth_webhook_deliveries_total{outcome=\"failed\"} 1\n",
        "berth_db_errors_total{operation=\"write\"} 1\n",
        "berth_db_query_duration_seconds_count{operation=\"write\"} 1\n",
        "berth_storage_errors_total{backend=\"filesystem\",operation=\"write\"} 1\n",
    ] {
        assert!(t.contains(line), "missing {line:?} in {t}");
    }
    assert!(t.ends_with("# EOF\n"), "{t}");
}
