//! The web UI in a real browser: headless Chromium (Debian's `chromium`)
//! driven by Playwright (`playwright-core`) through `ui/e2e.mjs`, against
//! a real `berth serve --auth token` holding a multi-platform image that
//! skopeo pushed. The script signs in, browses to the image and reads its
//! layers, creates a token and pulls with it (skopeo), revokes it, sends a
//! forged form, signs out, checks that a second user cannot see the
//! private repository, edits a namespace's rules (the retention plan
//! following the policy as it is typed), opens the storage overview and
//! an organisation (a robot and its token), creates a user and an
//! organisation through the admin pages (a non-admin is refused them),
//! reads the SBOM `berth sbom --attach` attached to an image (its
//! packages) and the key that verified its signature, and runs axe-core
//! on every page in both themes.
//!
//! Missing chromium, node or skopeo fails the test in CI (`CI=true`) and
//! skips it, loudly, elsewhere; `scripts/install-test-deps-tools.sh`
//! installs them (and the pinned npm packages).
//!
//! Screenshots go to a temporary directory; with `BERTH_UI_SCREENSHOTS=DIR`
//! they are kept there (docs/ui/ holds the ones docs/ui.md shows).

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::auth::{Cred, Fixture};
use crate::common::ADMIN_PASSWORD;
use crate::interop::{require, Clients};
use crate::layout;
use crate::oci::sha256;
use crate::trust::Signer;
use crate::ui_referrers::{manifest_bytes, push_signature, trust_key};

/// Upper bound for the whole browser run (about 150 s on the 2-core
/// machine at load 2; the full suite in parallel slows it past 300 s).
const BROWSER_TIMEOUT: Duration = Duration::from_secs(600);

/// The global npm root, where the pinned packages are installed.
fn npm_root() -> Option<String> {
    let out = Command::new("npm").args(["root", "-g"]).output().ok()?;
    let root = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    let found = ["playwright-core", "axe-core"]
        .iter()
        .all(|p| Path::new(&root).join(p).join("package.json").is_file());
    found.then_some(root)
}

#[tokio::test]
async fn browse_pull_with_a_token_and_stay_private_in_chromium() {
    const TEST: &str = "ui_browser::browse_pull_with_a_token_and_stay_private_in_chromium";
    if !(require("chromium", TEST) && require("node", TEST) && require("skopeo", TEST)) {
        return;
    }
    let Some(node_path) = npm_root() else {
        assert!(
            std::env::var("CI").is_err(),
            "{TEST}: playwright-core and axe-core are not installed globally \
             (scripts/install-test-deps-tools.sh installs them)"
        );
        eprintln!("SKIPPED {TEST}: playwright-core or axe-core is missing");
        return;
    };
    let f = Fixture::start("").await;
    let owner = f.user("alice").await;
    let other = f.user("bob").await;
    let (Cred::Basic(_, owner_password), Cred::Basic(_, other_password)) = (&owner, &other) else {
        unreachable!()
    };

    // A two-platform image, pushed by skopeo as its owner.
    let c = Clients::new();
    let src = c.dir("src");
    layout::write_multiarch(&src, "v1");
    let dest = format!("docker://{}/alice/webapp:v1", f.berth.addr);
    c.skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        &format!("alice:{owner_password}"),
        &format!("oci:{}:v1", src.display()),
        &dest,
    ]);

    // A Debian image (the host's dpkg database), its SBOM attached by
    // `berth sbom --attach`, signed (a sigstore bundle, as cosign pushes
    // it) by a key alice's namespace trusts.
    let deb = c.dir("deb");
    write_debian_image(&deb, "deb");
    c.skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        &format!("alice:{owner_password}"),
        &format!("oci:{}:deb", deb.display()),
        &format!("docker://{}/alice/debian:12", f.berth.addr),
    ]);
    crate::tools::berth_ok(
        &c.dir("sbom"),
        &[
            "sbom",
            &format!("{}/alice/debian:12", f.berth.addr),
            "--attach",
            "--format",
            "spdx",
            "--creds",
            &format!("alice:{owner_password}"),
        ],
    );
    let m = manifest_bytes(&f, &owner, "alice/debian", "12").await;
    let signer = Signer::new("p256");
    trust_key(&f, &owner, "alice", &signer, "release").await;
    push_signature(&f, &owner, "alice/debian", (&sha256(&m), &m), &signer).await;

    // An organisation for the organisation page.
    let r = crate::auth::req(
        &f.c,
        reqwest::Method::POST,
        &format!("{}/api/v1/orgs", f.url()),
        &crate::auth::admin(),
    )
    .json(&serde_json::json!({ "name": "acme" }))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);

    let shots = match std::env::var("BERTH_UI_SCREENSHOTS") {
        Ok(dir) => std::path::PathBuf::from(dir),
        Err(_) => c.dir("screenshots"),
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/ui/e2e.mjs");
    // Debian's /usr/bin/chromium is a wrapper script; Playwright drives
    // the browser binary itself.
    let chromium = match Path::new("/usr/lib/chromium/chromium") {
        p if p.is_file() => p.display().to_string(),
        _ => which("chromium"),
    };
    let mut child = Command::new("node")
        .arg(&script)
        .arg(f.url())
        .env("NODE_PATH", &node_path)
        .env("CHROMIUM", &chromium)
        .env("E2E_OWNER", "alice")
        .env("E2E_OWNER_PASSWORD", owner_password)
        .env("E2E_OTHER", "bob")
        .env("E2E_OTHER_PASSWORD", other_password)
        .env("E2E_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("E2E_ORG", "acme")
        .env("E2E_REPO", "alice/webapp")
        .env("E2E_TAG", "v1")
        .env("E2E_SBOM_IMAGE", "alice/debian:12")
        .env("E2E_SBOM_PACKAGE", "dpkg")
        .env("E2E_SIGNING_KEY", "release")
        .env("E2E_POLICY", c.policy())
        .env("E2E_PULL_DIR", c.dir("pulls"))
        .env("E2E_SCREENSHOTS", &shots)
        .env("HOME", c.dir("home"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + BROWSER_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the browser test did not finish within {BROWSER_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    assert!(
        status.success(),
        "the browser test failed ({status}):\n{stdout}\n{stderr}\nserver log:\n{}",
        f.berth.log()
    );
    assert!(stdout.contains("passed axe-core"), "{stdout}");
    for shot in [
        "repository-light.png",
        "image-dark.png",
        "tokens-light.png",
        "rules-dark.png",
        "usage-light.png",
        "org-light.png",
        "referrers-dark.png",
        "users-light.png",
        "orgs-dark.png",
    ] {
        assert!(shots.join(shot).is_file(), "no screenshot {shot}");
    }
}

/// The full path of `tool` on PATH.
fn which(tool: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .expect("sh");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Writes a single-platform image whose layers hold the host's dpkg
/// database and os-release (what `berth sbom` inventories: hundreds of
/// Debian packages), tagged `tag` in the OCI layout `dir`.
fn write_debian_image(dir: &Path, tag: &str) {
    let files = [
        ("var/lib/dpkg/status", "/var/lib/dpkg/status"),
        ("etc/os-release", "/etc/os-release"),
    ];
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for (inside, host) in files {
        let tar = layout::tar_one_file(inside, &std::fs::read(host).expect(host));
        diff_ids.push(sha256(&tar));
        layers.push(
            layout::write_blob(dir, layout::LAYER_GZIP, &layout::gzip_stored(&tar)).to_json(),
        );
    }
    let platform = layout::host_platform();
    let (os, arch) = platform.split_once('/').unwrap();
    let config = serde_json::json!({
        "architecture": arch.split('/').next().unwrap(),
        "os": os,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": files.iter().map(|(f, _)| serde_json::json!({"created_by": format!("COPY {f}")})).collect::<Vec<_>>(),
    });
    let config = layout::write_blob(dir, layout::CONFIG, &serde_json::to_vec(&config).unwrap());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": layout::MANIFEST,
        "config": config.to_json(),
        "layers": layers,
    });
    let manifest = layout::write_blob(
        dir,
        layout::MANIFEST,
        &serde_json::to_vec(&manifest).unwrap(),
    );
    layout::add_ref(dir, &manifest, tag, Some(&platform));
}
