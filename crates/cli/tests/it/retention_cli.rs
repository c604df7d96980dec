//! `berth retention`: set (with a refused policy's line and column), get,
//! plan as a table, as JSON and at another time, apply, runs, delete.

use serde_json::Value;

use crate::retention::{example, strings, Lab};
use crate::tools::berth_ok;

#[tokio::test]
async fn berth_retention_commands() {
    let lab = Lab::start().await;
    lab.image("acme/web", "pr-9", 10).await;
    lab.image("acme/web", "v1", 10).await;
    let dir = tempfile::tempdir().unwrap();
    let reg = ["--registry", lab.berth.addr.as_str()];
    let run = |args: &[&str]| berth_ok(dir.path(), &[args, &reg].concat());
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[rule]]\ntags = [\"*\"]\nkeep = { last = 10, pushed_within = \"7d\" }\n",
    )
    .unwrap();
    let out = crate::tools::berth(
        dir.path(),
        &[
            &["retention", "set", "acme", bad.to_str().unwrap()][..],
            &reg,
        ]
        .concat(),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 3, column 8: a condition has exactly one key"),
        "{err}"
    );

    let good = dir.path().join("policy.toml");
    std::fs::write(
        &good,
        format!("schedule = \"0 3 * * *\"\n{}", example("expire-builds")),
    )
    .unwrap();
    // Tried before it is set.
    let out = run(&[
        "retention",
        "plan",
        "acme",
        "--file",
        good.to_str().unwrap(),
    ]);
    assert!(out.contains("pr-9") && out.contains("pr-builds"), "{out}");
    let out = run(&["retention", "set", "acme", good.to_str().unwrap()]);
    assert!(
        out.contains("2 rules") && out.contains("\"0 3 * * *\""),
        "{out}"
    );
    let out = run(&["retention", "get", "acme"]);
    assert!(out.starts_with("schedule = \"0 3 * * *\""), "{out}");
    let out = run(&["retention", "plan", "acme"]);
    let header = out.lines().next().unwrap();
    for col in [
        "REPOSITORY",
        "KIND",
        "TAG",
        "DIGEST",
        "RULE",
        "AGE",
        "BYTES",
        "REASON",
    ] {
        assert!(header.contains(col), "{out}");
    }
    let tag_line = out.lines().find(|l| l.contains(" tag ")).unwrap();
    assert!(
        tag_line.contains("pr-9")
            && tag_line.contains("10d")
            && tag_line.contains("not kept by: pushed within 7d"),
        "{out}"
    );
    assert!(
        out.contains("1 tags and 1 manifests would be deleted"),
        "{out}"
    );
    let json: Value =
        serde_json::from_str(&run(&["retention", "plan", "acme", "--format", "json"])).unwrap();
    assert_eq!(json["tags"], 1);
    // In 90 days nothing more goes (v1 is not selected).
    let json: Value = serde_json::from_str(&run(&[
        "retention",
        "plan",
        "acme",
        "--now",
        "+90d",
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(json["tags"], 1);
    let out = run(&["retention", "apply", "acme"]);
    assert!(out.contains("1 tags and 1 manifests deleted"), "{out}");
    assert_eq!(lab.tags("acme/web").await, strings(&["v1"]));
    let out = run(&["retention", "runs", "acme"]);
    // A table of columns, no raw JSON in a cell.
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("STARTED") && lines[0].contains("FREED"),
        "{out}"
    );
    let cols: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&cols[1..4], ["ok", "1", "1"], "{out}");
    assert!(!out.contains('{') && !out.contains('"'), "{out}");
    let out = run(&["retention", "delete", "acme"]);
    assert!(out.contains("removed"));
    let out = crate::tools::berth(
        dir.path(),
        &[&["retention", "get", "acme"][..], &reg].concat(),
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
}

/// With authentication on: GC is for site admins, a policy is set and
/// applied by namespace admins, read by members; the audit log names who.
#[tokio::test]
async fn lifecycle_jobs_need_the_right_roles() {
    use berth_meta::accounts::{Role, Visibility};
    use reqwest::{Method, StatusCode};

    use crate::auth::{admin, req, Cred, Fixture};

    let f = Fixture::start("").await;
    f.org("acme", Visibility::Private).await;
    let dev = f.user("dev").await;
    let lead = f.user("lead").await;
    f.member("acme", "dev", Role::Write).await;
    f.member("acme", "lead", Role::Admin).await;
    let url = f.url();
    let status = |m: Method, path: &str, cred: &Cred, body: &str| {
        let r = req(&f.c, m, &format!("{url}/api/v1{path}"), cred).body(body.to_owned());
        async move { r.send().await.unwrap().status() }
    };
    let policy = example("untagged-30d");
    let gc = "/gc";
    assert_eq!(
        status(Method::POST, gc, &Cred::Anon, "").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(Method::POST, gc, &lead, "").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(status(Method::POST, gc, &admin(), "").await, StatusCode::OK);
    assert_eq!(
        status(Method::GET, "/gc/runs", &dev, "").await,
        StatusCode::FORBIDDEN
    );

    let ret = "/namespaces/acme/retention";
    assert_eq!(
        status(Method::PUT, ret, &Cred::Anon, &policy).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(Method::PUT, ret, &dev, &policy).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(Method::PUT, ret, &lead, &policy).await,
        StatusCode::OK
    );
    assert_eq!(status(Method::GET, ret, &dev, "").await, StatusCode::OK);
    assert_eq!(
        status(Method::GET, &format!("{ret}/plan"), &dev, "").await,
        StatusCode::OK
    );
    assert_eq!(
        status(Method::GET, &format!("{ret}/plan"), &Cred::Anon, "").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(Method::POST, &format!("{ret}/apply"), &dev, "").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(Method::POST, &format!("{ret}/apply"), &lead, "").await,
        StatusCode::OK
    );
    assert_eq!(
        status(Method::DELETE, ret, &dev, "").await,
        StatusCode::FORBIDDEN
    );
    let events = f
        .meta
        .audit_events(&berth_meta::audit::AuditFilter {
            action: Some("policy.change".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.event.actor == "lead"
                && e.event.detail.as_ref().unwrap()["retention"] == "set")
    );
    let gcs = f
        .meta
        .audit_events(&berth_meta::audit::AuditFilter {
            action: Some("gc".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(gcs.len(), 1);
    assert_eq!(gcs[0].event.actor, "admin");
}
