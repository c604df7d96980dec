//! Replication rules end to end (docs/mirror.md, "Replication"): a push to
//! berth arrives within seconds, with identical digests, at the reference
//! registry and at a second berth with authentication on (the token flow
//! with the rule's credentials, which no answer or log shows); a pull rule
//! run on demand mirrors the selected tags and nothing else; a target
//! that is down is retried with backoff, and the history shows it. Rules
//! are managed with `berth replication`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::common::ADMIN_PASSWORD;
use crate::tools::{berth, berth_ok};

/// `berth replication ARGS --registry URL -o json`, parsed.
pub(super) fn replication(b: &Berth, args: &[&str]) -> Value {
    let mut all = vec!["replication"];
    all.extend_from_slice(args);
    let url = b.url();
    all.extend_from_slice(&["--registry", &url, "-o", "json"]);
    let dir = tempfile::tempdir().unwrap();
    parse(berth_ok(dir.path(), &all).as_bytes())
}

/// The digest a tag names at a registry without authentication, if any.
pub(super) fn digest_at(base: &str, repo: &str, tag: &str) -> Option<String> {
    let r = http(
        "GET",
        &format!("{base}/v2/{repo}/manifests/{tag}"),
        accept_all(),
    );
    (r.status == 200).then(|| sha256(&r.body))
}

/// Waits (at most `secs`) until `check` holds; returns how long it took.
pub(super) fn wait_for(secs: u64, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "{what}: not within {secs} s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

/// A push to berth arrives at the reference registry and at a second
/// berth (auth on, credentials in the rule) within a few seconds, every
/// platform, same digests; tags and repositories the rules do not select
/// stay home; the password is never answered or logged.
#[test]
fn pushes_arrive_at_the_targets_within_seconds_with_identical_digests() {
    if !require("skopeo", "mirror::replication::pushes_arrive") {
        return;
    }
    let dist = Distribution::start();
    let target = Berth::start_auth(&[], None);
    let source = Berth::start();
    let c = Clients::new();
    let dist_url = dist.url();
    replication(
        &source,
        &[
            "add",
            "to-ref",
            "--direction",
            "push",
            "--url",
            &dist_url,
            "--repositories",
            "acme",
            "--tags",
            "v*",
        ],
    );
    let target_url = target.url();
    let added = replication(
        &source,
        &[
            "add",
            "to-berth",
            "--direction",
            "push",
            "--url",
            &target_url,
            "--repositories",
            "admin/**",
            "--remote-user",
            "admin",
            "--remote-password",
            ADMIN_PASSWORD,
        ],
    );
    assert_eq!(added["has_password"], true);
    assert!(added.get("password").is_none() && added.get("secret").is_none());

    let (index, children) =
        push_multiarch(&c, &format!("docker://{}/acme/app:v1", source.addr), &[]);
    let pushed = Instant::now();
    push_multiarch(&c, &format!("docker://{}/acme/app:dev", source.addr), &[]);
    let (tool_index, _) =
        push_multiarch(&c, &format!("docker://{}/admin/tool:v2", source.addr), &[]);
    let took = wait_for(15, "acme/app:v1 at the reference registry", || {
        digest_at(&dist_url, "acme/app", "v1").is_some()
    });
    eprintln!(
        "replicated to the reference registry {:?} after the push ended ({:?} after the first)",
        took,
        pushed.elapsed()
    );
    assert_eq!(digest_at(&dist_url, "acme/app", "v1").unwrap(), index);
    for child in &children {
        assert_eq!(
            digest_at(&dist_url, "acme/app", child).as_deref(),
            Some(child.as_str())
        );
    }
    // Every platform, every blob, verified by skopeo.
    assert_eq!(
        pull_all(
            &c,
            &format!("docker://{}/acme/app:v1", dist.addr),
            "from-ref"
        ),
        index
    );
    let creds = format!("admin:{ADMIN_PASSWORD}");
    let from_target = format!("docker://{}/admin/tool:v2", target.addr);
    wait_for(15, "admin/tool:v2 at the second berth", || {
        c.skopeo_cmd(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            &creds,
            &from_target,
        ])
        .output()
        .is_ok_and(|o| o.status.success())
    });
    let dir = c.dir("from-berth");
    c.skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--src-creds",
        &creds,
        &from_target,
        &format!("oci:{}:pulled", dir.display()),
    ]);
    assert_eq!(layout::resolve(&dir, "pulled").unwrap().digest, tool_index);
    // Not selected: a tag outside v*, a repository outside the scope.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(digest_at(&dist_url, "acme/app", "dev"), None);
    assert_eq!(digest_at(&dist_url, "admin/tool", "v2"), None);

    let history = replication(&source, &["history", "to-ref"]);
    let runs = history["runs"].as_array().unwrap();
    assert!(runs.iter().all(|r| r["ok"] == true), "{history}");
    let copied: Vec<&str> = runs
        .iter()
        .flat_map(|r| r["summary"]["images"].as_array().unwrap())
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(copied, [format!("acme/app:v1@{index}")], "{history}");
    assert_eq!(runs[0]["summary"]["trigger"], "push");
    let list = replication(&source, &["list"]);
    let text = list.to_string();
    assert!(!text.contains(ADMIN_PASSWORD), "{text}");
    assert!(!source.log().contains(ADMIN_PASSWORD));
    let rules: Vec<&str> = list["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["to-berth", "to-ref"]);
}

/// A pull rule run on demand copies the tags it selects of the repository
/// it names, with their digests, and nothing else; run again, it copies
/// nothing (up to date). A glob rule lists the source's catalog.
#[test]
fn a_pull_rule_mirrors_the_selected_tags_and_nothing_else() {
    if !require("skopeo", "mirror::replication::a_pull_rule") {
        return;
    }
    let dist = Distribution::start();
    let c = Clients::new();
    let (index, _) = push_multiarch(&c, &format!("docker://{}/lib/app:v1", dist.addr), &[]);
    let (index2, _) = push_multiarch(&c, &format!("docker://{}/lib/app:v2", dist.addr), &[]);
    for dest in ["lib/app:dev", "lib/other:v1"] {
        push_multiarch(&c, &format!("docker://{}/{dest}", dist.addr), &[]);
    }
    assert_eq!(digest_at(&dist.url(), "lib/app", "v1").unwrap(), index);
    let local = Berth::start();
    let dist_url = dist.url();
    replication(
        &local,
        &[
            "add",
            "pull-app",
            "--direction",
            "pull",
            "--url",
            &dist_url,
            "--repositories",
            "lib/app",
            "--tags",
            "v*",
        ],
    );
    let run = replication(&local, &["run", "pull-app"]);
    assert_eq!(run["ok"], true, "{run}");
    assert_eq!(run["summary"]["copied"], 2, "{run}");
    let tags = http("GET", &format!("{}/v2/lib/app/tags/list", local.url()), &[]);
    assert_eq!(tags.json()["tags"], serde_json::json!(["v1", "v2"]));
    assert_eq!(digest_at(&local.url(), "lib/app", "v1").unwrap(), index);
    assert_eq!(
        pull_all(&c, &format!("docker://{}/lib/app:v2", local.addr), "pulled"),
        index2
    );
    let other = http(
        "GET",
        &format!("{}/v2/lib/other/tags/list", local.url()),
        &[],
    );
    assert_eq!(other.status, 404);
    let again = replication(&local, &["run", "pull-app"]);
    assert_eq!(again["summary"]["copied"], 0, "{again}");
    assert_eq!(again["summary"]["up_to_date"], 2, "{again}");

    // A glob: the source's catalog, filtered.
    replication(
        &local,
        &[
            "add",
            "pull-other",
            "--direction",
            "pull",
            "--url",
            &dist_url,
            "--repositories",
            "lib/o*",
        ],
    );
    let run = replication(&local, &["run", "pull-other"]);
    assert_eq!(
        run["summary"]["images"].as_array().unwrap().len(),
        1,
        "{run}"
    );
    assert!(digest_at(&local.url(), "lib/other", "v1").is_some());
    assert_eq!(digest_at(&local.url(), "lib/app", "dev"), None);
    // A pull rule cannot follow pushes here.
    let dir = tempfile::tempdir().unwrap();
    let url = local.url();
    let out = berth(
        dir.path(),
        &[
            "replication",
            "add",
            "bad",
            "--direction",
            "pull",
            "--url",
            "ftp://x",
            "--registry",
            &url,
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("http:// or https://"));
}

/// A TCP gate in front of a registry: closed, it drops every connection
/// (the target is down); open, it forwards.
struct Gate {
    addr: String,
    open: Arc<AtomicBool>,
    _rt: tokio::runtime::Runtime,
}

impl Gate {
    fn start(upstream: &str) -> Gate {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let open = Arc::new(AtomicBool::new(false));
        let (flag, up) = (open.clone(), upstream.to_owned());
        rt.spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                if !flag.load(Ordering::SeqCst) {
                    drop(conn);
                    continue;
                }
                let up = up.clone();
                tokio::spawn(async move {
                    if let Ok(mut u) = TcpStream::connect(&up).await {
                        let _ = tokio::io::copy_bidirectional(&mut conn, &mut u).await;
                    }
                });
            }
        });
        Gate {
            addr,
            open,
            _rt: rt,
        }
    }
}

/// The target is down when a push happens: the rule fails, says why in
/// its status and history, is retried with backoff, and once the target
/// is back the image arrives.
#[test]
fn a_target_that_is_down_is_retried_and_the_history_shows_it() {
    if !require("skopeo", "mirror::replication::a_target_that_is_down") {
        return;
    }
    let dist = Distribution::start();
    let gate = Gate::start(&dist.addr);
    let source = Berth::start();
    let c = Clients::new();
    let gate_url = format!("http://{}", gate.addr);
    replication(
        &source,
        &["add", "backup", "--direction", "push", "--url", &gate_url],
    );
    let (index, _) = push_multiarch(&c, &format!("docker://{}/acme/app:v1", source.addr), &[]);
    wait_for(15, "a failed attempt", || {
        let rules = replication(&source, &["list"]);
        rules["rules"][0]["failures"].as_i64().unwrap_or(0) >= 2
    });
    let rule = replication(&source, &["list"])["rules"][0].clone();
    assert!(
        rule["last_error"].as_str().unwrap().contains("acme/app:v1"),
        "{rule}"
    );
    gate.open.store(true, Ordering::SeqCst);
    wait_for(20, "acme/app:v1 once the target is back", || {
        digest_at(&dist.url(), "acme/app", "v1").is_some()
    });
    assert_eq!(digest_at(&dist.url(), "acme/app", "v1").unwrap(), index);
    let history = replication(&source, &["history", "backup"]);
    let runs = history["runs"].as_array().unwrap();
    let outcomes: Vec<bool> = runs.iter().map(|r| r["ok"] == true).collect();
    assert!(outcomes[0], "{history}");
    assert!(
        outcomes.len() >= 3 && outcomes[1..].iter().all(|ok| !ok),
        "{history}"
    );
    let failed = &runs[1]["summary"];
    assert!(failed["attempt"].as_i64().unwrap() >= 2, "{history}");
    assert!(
        failed["error"].as_str().unwrap().contains("acme/app:v1"),
        "{history}"
    );
    assert!(failed["next_attempt_at"].is_i64(), "{history}");
    let rule = replication(&source, &["list"])["rules"][0].clone();
    assert_eq!(rule["failures"], 0, "{rule}");
}

/// A referrer (a signature, an SBOM) pushed by digest after its image is
/// replicated by a push rule when a tag the rule selects reaches its
/// subject, by digest, identical; one of an image the rule does not
/// select stays home.
#[test]
fn referrers_pushed_after_their_image_are_replicated() {
    if !require("skopeo", "mirror::replication::referrers_pushed_after") {
        return;
    }
    let dist = Distribution::start();
    let source = Berth::start();
    let c = Clients::new();
    let dist_url = dist.url();
    replication(
        &source,
        &[
            "add",
            "sigs",
            "--direction",
            "push",
            "--url",
            &dist_url,
            "--tags",
            "v*",
        ],
    );
    let (index, _) = push_multiarch(&c, &format!("docker://{}/acme/app:v1", source.addr), &[]);
    let (dev, _) = push_multiarch(&c, &format!("docker://{}/acme/app:dev", source.addr), &[]);
    wait_for(15, "acme/app:v1 at the reference registry", || {
        digest_at(&dist_url, "acme/app", "v1").is_some()
    });
    // The one of dev first: once v1's arrived, dev's was looked at.
    let unselected = crate::tools_copy::push_referrer(
        &source.addr,
        "acme/app",
        &dev,
        layout::INDEX,
        "signature of dev",
    );
    let referrer = crate::tools_copy::push_referrer(
        &source.addr,
        "acme/app",
        &index,
        layout::INDEX,
        "signature of v1",
    );
    wait_for(15, "the referrer at the reference registry", || {
        digest_at(&dist_url, "acme/app", &referrer).is_some()
    });
    assert_eq!(
        digest_at(&dist_url, "acme/app", &referrer).as_deref(),
        Some(referrer.as_str())
    );
    assert_eq!(digest_at(&dist_url, "acme/app", &unselected), None);
    assert_eq!(digest_at(&dist_url, "acme/app", "dev"), None);
    let history = replication(&source, &["history", "sigs"]);
    assert!(
        history
            .to_string()
            .contains(&format!("acme/app@{referrer}")),
        "{history}"
    );
}
