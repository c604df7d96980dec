//! Real clients with credentials against `berth serve --auth token`:
//! `skopeo login` and `--creds`, `podman login`, and oras-py with an
//! access token (Basic through the token flow, and as a Bearer token).

use berth_meta::accounts::Visibility;

use super::*;
use crate::auth::Fixture;

fn fixture(rt: &tokio::runtime::Runtime) -> (Fixture, String, String) {
    rt.block_on(async {
        let f = Fixture::start("").await;
        f.user("alice").await;
        f.org("pub", Visibility::Public).await;
        let (_, pat) = f.token("alice", &["pull", "push"], &["alice"]).await;
        (f, "alice-password".to_owned(), pat)
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn skopeo_login_and_creds() {
    let test = "interop::auth::skopeo_login_and_creds";
    if !require("skopeo", test) {
        return;
    }
    let rt = runtime();
    let (f, password, pat) = fixture(&rt);
    let addr = f.berth.addr.clone();
    let c = Clients::new();
    let src = c.dir("src");
    let digest = layout::write_image(&src, "v1", "linux/amd64", &[2048, 100]);
    let layout_ref = format!("oci:{}:v1", src.display());
    let dest = format!("docker://{addr}/alice/app:v1");

    // Without credentials the push is refused.
    let out = run(&mut c.skopeo_cmd(&["copy", "--dest-tls-verify=false", &layout_ref, &dest]));
    assert!(!out.status.success(), "anonymous push must fail");

    // A wrong password does not log in; the right one does.
    let out = run(&mut c.skopeo_cmd(&[
        "login",
        "--tls-verify=false",
        "-u",
        "alice",
        "-p",
        "wrong-password",
        &addr,
    ]));
    assert!(
        !out.status.success(),
        "login with a wrong password must fail"
    );
    c.skopeo(&[
        "login",
        "--tls-verify=false",
        "-u",
        "alice",
        "-p",
        &password,
        &addr,
    ]);
    c.push_layout(&src, "v1", &dest, false);
    let raw = c.skopeo(&["inspect", "--raw", "--tls-verify=false", &dest]);
    assert_eq!(sha256(&raw), digest);
    c.skopeo(&["logout", &addr]);

    // Anonymous reads of the private repository fail; --creds with the
    // access token works for pull and push.
    let out = run(&mut c.skopeo_cmd(&["inspect", "--raw", "--tls-verify=false", &dest]));
    assert!(
        !out.status.success(),
        "anonymous pull of a private image must fail"
    );
    let creds = format!("alice:{pat}");
    let back = c.dir("back");
    c.skopeo(&[
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--src-creds",
        &creds,
        &dest,
        &format!("oci:{}:v1", back.display()),
    ]);
    assert_eq!(layout::resolve(&back, "v1").expect("pulled").digest, digest);
    c.skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds,
        &layout_ref,
        &format!("docker://{addr}/alice/copy:v1"),
    ]);
    // The token is limited to alice's namespace.
    let out = run(&mut c.skopeo_cmd(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds,
        &layout_ref,
        &format!("docker://{addr}/pub/app:v1"),
    ]));
    assert!(
        !out.status.success(),
        "a push outside the token's patterns must fail"
    );
    let tags = parse(&c.skopeo(&[
        "list-tags",
        "--tls-verify=false",
        "--creds",
        &creds,
        &format!("docker://{addr}/alice/copy"),
    ]));
    assert_eq!(tags["Tags"], serde_json::json!(["v1"]));
}

#[test]
fn podman_login_push_and_pull() {
    let test = "interop::auth::podman_login_push_and_pull";
    if !require("podman", test) {
        return;
    }
    let c = Clients::new();
    if let Err(why) = c.usable("podman") {
        eprintln!("SKIPPED {test}: podman cannot run in this environment: {why}");
        return;
    }
    let rt = runtime();
    let (f, password, _) = fixture(&rt);
    let addr = f.berth.addr.clone();
    let policy = c.policy();
    let src = c.dir("src");
    let host = layout::host_platform();
    let single = layout::write_image(&src, "single", &host, &[3000]);
    let config = layout::read_json(&src, &single)["config"]["digest"]
        .as_str()
        .expect("config")
        .trim_start_matches("sha256:")
        .to_owned();
    let podman = |store: &str, args: &[&str]| run(&mut c.containers_cmd("podman", store, args));
    let must = |out: Output, what: &str| {
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    };
    must(
        podman(
            "a",
            &[
                "pull",
                "--signature-policy",
                &policy,
                &format!("oci:{}:single", src.display()),
            ],
        ),
        "load the layout",
    );
    let image = format!("{addr}/alice/podman:v1");
    let push = |store: &str| {
        podman(
            store,
            &[
                "push",
                "--tls-verify=false",
                "--signature-policy",
                &policy,
                &config,
                &format!("docker://{image}"),
            ],
        )
    };
    assert!(!push("a").status.success(), "push without login must fail");
    must(
        podman(
            "a",
            &[
                "login",
                "--tls-verify=false",
                "-u",
                "alice",
                "-p",
                &password,
                &addr,
            ],
        ),
        "podman login",
    );
    must(push("a"), "podman push after login");
    // A fresh storage pulls it back with the same login (shared auth file).
    must(
        podman(
            "b",
            &[
                "pull",
                "--tls-verify=false",
                "--signature-policy",
                &policy,
                &image,
            ],
        ),
        "podman pull",
    );
    let info = parse(&ok(&mut c.containers_cmd(
        "podman",
        "b",
        &["image", "inspect", &image],
    )));
    assert_eq!(info[0]["Id"], config.as_str());
    must(podman("b", &["logout", &addr]), "podman logout");
    let out = podman(
        "c",
        &[
            "pull",
            "--tls-verify=false",
            "--signature-policy",
            &policy,
            &image,
        ],
    );
    assert!(
        !out.status.success(),
        "pull of a private image after logout must fail"
    );
}

/// oras-py with an access token: as the Basic password (the client goes
/// through the token flow) to push, then as a Bearer token to pull.
const ORAS_AUTH_SCRIPT: &str = r#"
import json, os, sys
import oras.provider

host, repo, user, token, work = sys.argv[1:6]
os.chdir(work)
out = {}
with open("artifact.txt", "w") as f:
    f.write("pushed with a token")

reg = oras.provider.Registry(hostname=host, insecure=True)
reg.auth.set_basic_auth(user, token)
r = reg.push(target=f"{host}/{repo}:v1", files=["artifact.txt"], quiet=True)
out["push"] = r.status_code

puller = oras.provider.Registry(hostname=host, insecure=True)
puller.auth.set_token_auth(token)
files = puller.pull(target=f"{host}/{repo}:v1", outdir=os.path.join(work, "pulled"))
out["pulled"] = [open(p).read() for p in files]

anon = oras.provider.Registry(hostname=host, insecure=True)
try:
    anon.pull(target=f"{host}/{repo}:v1", outdir=os.path.join(work, "anon"))
    out["anonymous"] = "pulled"
except Exception as e:
    out["anonymous"] = "refused"
with open(os.path.join(work, "result.json"), "w") as f:
    json.dump(out, f)
"#;

#[test]
fn oras_with_an_access_token() {
    let test = "interop::auth::oras_with_an_access_token";
    if !require("python3", test) || !require_oras(test) {
        return;
    }
    let rt = runtime();
    let (f, _, pat) = fixture(&rt);
    let c = Clients::new();
    let work = c.dir("oras");
    std::fs::write(work.join("auth.py"), ORAS_AUTH_SCRIPT).expect("script");
    ok(Command::new("python3")
        .arg(work.join("auth.py"))
        .arg(&f.berth.addr)
        .arg("alice/artifacts")
        .arg("alice")
        .arg(&pat)
        .arg(&work));
    let result = parse(&std::fs::read(work.join("result.json")).expect("result.json"));
    assert_eq!(result["push"], 201, "{result}");
    assert_eq!(result["pulled"], serde_json::json!(["pushed with a token"]));
    assert_eq!(result["anonymous"], "refused", "{result}");
}
