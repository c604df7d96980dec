//! containerd's `ctr` against `berth serve --auth token`, through the
//! containerd of the test's Docker daemon ([`super::daemon`]), in a
//! namespace of its own: an image imported from an archive made here is
//! pushed and pulled back with credentials, and refused without them.

use std::time::Duration;

use super::daemon::{daemon, need};
use super::docker::{docker_archive, layer};
use super::*;
use crate::auth::Fixture;

fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn ctr_pushes_and_pulls_with_credentials() {
    need("ctr");
    let d = daemon();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (f, pat) = rt.block_on(async {
        let f = Fixture::start("").await;
        f.user("alice").await;
        let (_, pat) = f.token("alice", &["pull"], &["alice"]).await;
        (f, pat)
    });
    let addr = f.berth.addr.clone();
    let ns: String = layout::random_bytes(4)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let ns = format!("berth-test-{ns}");
    let ctr = |args: &[&str]| {
        let out = run(&mut d.ctr(&ns, args));
        (out.status.success(), output_text(&out))
    };
    let ok = |args: &[&str]| {
        let (success, text) = ctr(args);
        assert!(success, "ctr {} failed: {text}", args.join(" "));
        text
    };

    let tmp = tempfile::tempdir().expect("tempdir");
    let archive = tmp.path().join("image.tar");
    let image = format!("{addr}/alice/ctr:v1");
    docker_archive(
        &archive,
        &image,
        &[&layer("file-0", 4000), &layer("file-1", 3000)],
    );
    ok(&["images", "import", &archive.display().to_string()]);

    // Without credentials the push is refused; with alice's password it
    // lands, under the digest containerd computed.
    let (pushed, out) = ctr(&["images", "push", "--plain-http", &image]);
    assert!(!pushed, "an anonymous push must fail: {out}");
    let user = "alice:alice-password";
    ok(&["images", "push", "--plain-http", "--user", user, &image]);
    let listed = ok(&["images", "ls"]);
    let digest = listed
        .lines()
        .find(|l| l.starts_with(&image))
        .and_then(|l| l.split_whitespace().find(|w| w.starts_with("sha256:")))
        .unwrap_or_else(|| panic!("{image} in {listed}"))
        .to_owned();
    let r = rt.block_on(async {
        f.c.get(format!("{}/v2/alice/ctr/manifests/v1", f.url()))
            .basic_auth("alice", Some("alice-password"))
            .header(
                "accept",
                "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json",
            )
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .unwrap()
    });
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["docker-content-digest"], digest.as_str());

    // Pulled back into an empty namespace with a pull-only access token;
    // anonymous pulls of the private repository are refused.
    ok(&["images", "rm", &image]);
    let (pulled, out) = ctr(&["images", "pull", "--plain-http", &image]);
    assert!(!pulled, "an anonymous pull must fail: {out}");
    ok(&[
        "images",
        "pull",
        "--plain-http",
        "--user",
        &format!("alice:{pat}"),
        &image,
    ]);
    let listed = ok(&["images", "ls"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&image) && l.contains(&digest)),
        "{listed}"
    );
    ok(&["images", "rm", &image]);
}
