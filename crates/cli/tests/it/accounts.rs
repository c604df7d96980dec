//! The account management API driven through the `berth` CLI against a
//! server with authentication on: users, organisations, robots, tokens
//! (including the dockerconfigjson for Kubernetes), visibility, and the
//! refusals for callers without the rights.

use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::auth::{basic, Cred, Fixture};
use crate::common::{berth_bin, ADMIN_PASSWORD};

/// Runs `berth ARGS --registry URL` as `user`/`password`, feeding `stdin`.
fn cli(url: &str, who: Option<(&str, &str)>, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(berth_bin());
    cmd.args(args)
        .args(["--registry", url])
        .env("DOCKER_CONFIG", dir.path().join("none"))
        .env_remove("BERTH_TOKEN")
        .env_remove("BERTH_USER")
        .env_remove("BERTH_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some((u, p)) = who {
        cmd.args(["--user", u]).env("BERTH_PASSWORD", p);
    }
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "berth failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn refused(out: Output, code: &str) -> String {
    assert!(!out.status.success(), "expected a refusal");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains(code), "expected {code}: {err}");
    err
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test]
async fn users_orgs_robots_tokens_and_visibility_through_the_cli() {
    let f = Fixture::start("").await;
    let url = f.url();
    let admin = Some(("admin", ADMIN_PASSWORD));

    // Users: created by the site admin, with a password from stdin or a
    // generated one shown once.
    ok(cli(
        &url,
        admin,
        &["user", "create", "alice", "--password-stdin"],
        Some("alice-secret-1\n"),
    ));
    let generated = ok(cli(&url, admin, &["user", "create", "bob"], None));
    let bob_password = generated.trim().to_owned();
    assert!(bob_password.len() >= 20, "{generated}");
    let alice = Some(("alice", "alice-secret-1"));
    let bob = Some(("bob", bob_password.as_str()));
    let users = json(&ok(cli(
        &url,
        admin,
        &["user", "list", "--format", "json"],
        None,
    )));
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "alice", "bob"]);
    refused(cli(&url, admin, &["user", "create", "alice"], None), "409");
    refused(
        cli(&url, admin, &["user", "create", "Not/Valid"], None),
        "not a valid name",
    );
    // Only site admins manage users.
    refused(cli(&url, alice, &["user", "list"], None), "DENIED");
    refused(cli(&url, None, &["user", "list"], None), "UNAUTHENTICATED");

    // Organisations: any user founds one and becomes its admin.
    ok(cli(&url, alice, &["org", "create", "acme"], None));
    let members = json(&ok(cli(
        &url,
        alice,
        &["org", "members", "acme", "-o", "json"],
        None,
    )));
    assert_eq!(members[0]["member"], "alice");
    assert_eq!(members[0]["role"], "admin");
    ok(cli(
        &url,
        alice,
        &["org", "add-member", "acme", "bob", "--role", "read"],
        None,
    ));
    // A reader cannot manage members or robots.
    refused(
        cli(
            &url,
            bob,
            &["org", "add-member", "acme", "bob", "--role", "admin"],
            None,
        ),
        "DENIED",
    );
    refused(
        cli(&url, bob, &["org", "add-robot", "acme", "ci"], None),
        "DENIED",
    );
    let robot = ok(cli(
        &url,
        alice,
        &["org", "add-robot", "acme", "ci", "--role", "write"],
        None,
    ));
    assert_eq!(robot.trim(), "acme+ci");
    let robots = ok(cli(&url, alice, &["org", "robots", "acme"], None));
    assert!(
        robots.contains("acme+ci") && robots.contains("write"),
        "{robots}"
    );

    // A robot token limited to the organisation pushes there and nowhere else.
    let created = json(&ok(cli(
        &url,
        alice,
        &[
            "token",
            "create",
            "--owner",
            "acme+ci",
            "--name",
            "gha",
            "--scope",
            "pull,push",
            "--pattern",
            "acme",
            "--expires",
            "7d",
            "-o",
            "json",
        ],
        None,
    )));
    let secret = created["token"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("berth_robot_"), "{secret}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(created["expires_at"].as_i64().unwrap() > berth_meta::now_ms());
    let ci = basic("acme+ci", &secret);
    let (st, _) = f.push(&ci, "acme/web", "v1", "one").await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, _) = f.push(&ci, "alice/app", "v1", "two").await;
    assert!(
        matches!(st, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN),
        "{st}"
    );
    // Bob (read) may not create tokens for the robot.
    refused(
        cli(
            &url,
            bob,
            &["token", "create", "--owner", "acme+ci", "--name", "x"],
            None,
        ),
        "DENIED",
    );
    // A limited token cannot mint tokens.
    let out = Command::new(berth_bin())
        .args([
            "token",
            "create",
            "--name",
            "wider",
            "--scope",
            "admin",
            "--registry",
            &url,
            "--token",
            &secret,
        ])
        .env("DOCKER_CONFIG", "/nonexistent")
        .output()
        .unwrap();
    refused(out, "DENIED");

    // The dockerconfigjson works as an imagePullSecret: its credentials pull.
    let cfg = json(&ok(cli(
        &url,
        alice,
        &[
            "token",
            "create",
            "--owner",
            "acme+ci",
            "--name",
            "k8s",
            "--scope",
            "pull",
            "--format",
            "dockerconfigjson",
            "--server",
            "registry.example.com",
        ],
        None,
    )));
    let entry = &cfg["auths"]["registry.example.com"];
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(entry["auth"].as_str().unwrap())
        .unwrap();
    let (user, pass) = std::str::from_utf8(&decoded)
        .unwrap()
        .split_once(':')
        .unwrap();
    assert_eq!(user, "acme+ci");
    assert_eq!(pass, entry["password"].as_str().unwrap());
    let puller = basic(user, pass);
    assert_eq!(
        f.status(Method::GET, "/v2/acme/web/manifests/v1", &puller)
            .await,
        StatusCode::OK
    );
    let (st, _) = f.push(&puller, "acme/web", "v2", "three").await;
    assert!(
        matches!(st, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN),
        "pull-only token pushed: {st}"
    );

    // Listing shows no secrets; revoking stops the token at once.
    let list = ok(cli(
        &url,
        alice,
        &["token", "list", "--owner", "acme+ci", "-o", "json"],
        None,
    ));
    assert!(!list.contains(&secret));
    assert_eq!(json(&list).as_array().unwrap().len(), 2);
    ok(cli(&url, alice, &["token", "revoke", &id], None));
    assert_eq!(
        f.status(Method::GET, "/v2/acme/web/manifests/v1", &ci)
            .await,
        StatusCode::UNAUTHORIZED
    );
    let table = ok(cli(
        &url,
        alice,
        &["token", "list", "--owner", "acme+ci"],
        None,
    ));
    assert!(table.contains("revoked"), "{table}");
    // Bob cannot see or revoke the robot's tokens; an unknown id is 404.
    refused(
        cli(&url, bob, &["token", "list", "--owner", "acme+ci"], None),
        "DENIED",
    );
    refused(
        cli(&url, alice, &["token", "revoke", "nosuchid"], None),
        "404",
    );

    // Visibility: private by default, one repository made public.
    assert_eq!(
        f.status(Method::GET, "/v2/acme/web/manifests/v1", &Cred::Anon)
            .await,
        StatusCode::UNAUTHORIZED
    );
    let shown = ok(cli(&url, bob, &["repo", "visibility", "acme/web"], None));
    assert_eq!(shown.trim(), "acme/web: private (namespace)");
    refused(
        cli(
            &url,
            bob,
            &["repo", "visibility", "acme/web", "public"],
            None,
        ),
        "DENIED",
    );
    ok(cli(
        &url,
        alice,
        &["repo", "visibility", "acme/web", "public"],
        None,
    ));
    assert_eq!(
        f.status(Method::GET, "/v2/acme/web/manifests/v1", &Cred::Anon)
            .await,
        StatusCode::OK
    );
    let shown = json(&ok(cli(
        &url,
        None,
        &["repo", "visibility", "acme/web", "-o", "json"],
        None,
    )));
    assert_eq!(shown["source"], "repository");
    ok(cli(
        &url,
        alice,
        &["repo", "visibility", "acme/web", "inherit"],
        None,
    ));
    assert_eq!(
        f.status(Method::GET, "/v2/acme/web/manifests/v1", &Cred::Anon)
            .await,
        StatusCode::UNAUTHORIZED
    );
    ok(cli(
        &url,
        alice,
        &["repo", "visibility", "acme", "public", "--namespace"],
        None,
    ));
    assert_eq!(
        f.status(Method::GET, "/v2/acme/web/manifests/v1", &Cred::Anon)
            .await,
        StatusCode::OK
    );

    // Passwords: the user changes their own; the old one stops working.
    ok(cli(
        &url,
        alice,
        &["user", "passwd", "alice"],
        Some("alice-secret-2\n"),
    ));
    let alice2 = Some(("alice", "alice-secret-2"));
    refused(
        cli(&url, alice, &["org", "members", "acme"], None),
        "UNAUTHENTICATED",
    );
    ok(cli(&url, alice2, &["org", "members", "acme"], None));
    // Disabled accounts cannot sign in.
    ok(cli(
        &url,
        admin,
        &["user", "set", "bob", "--disabled", "true"],
        None,
    ));
    refused(
        cli(&url, bob, &["org", "members", "acme"], None),
        "UNAUTHENTICATED",
    );
    refused(
        cli(&url, admin, &["user", "delete", "admin"], None),
        "DENIED",
    );

    // Every change is in the audit log, attributed, without secrets.
    let audit = ok(cli(&url, admin, &["audit", "--jsonl"], None));
    assert!(!audit.contains(&secret) && !audit.contains("alice-secret"));
    let events: Vec<Value> = audit.lines().map(json).collect();
    let count = |a: &str| events.iter().filter(|e| e["action"] == a).count();
    assert!(count("permission.change") >= 8, "{audit}");
    assert_eq!(count("token.create"), 2);
    assert_eq!(count("token.revoke"), 1);
    assert!(events
        .iter()
        .any(|e| e["action"] == "token.create" && e["actor"] == "alice"));
}
