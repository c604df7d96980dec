//! Signature enforcement through real clients: skopeo and podman pull a
//! signed image from a namespace under `enforce` (signed in cosign's tag
//! form, with a sigstore bundle referrer, with a notation signature), and
//! an unsigned one is refused with berth's message (the policy, what to
//! do). Images are pushed with skopeo from OCI layouts written by the
//! test; signatures are made as cosign and notation make them
//! ([`crate::trust`], [`crate::trust_bundles`], [`crate::trust_notation`]).

use crate::common::Berth;
use crate::interop::{require, run, Clients};
use crate::layout;
use crate::oci::{client, head_manifest, OCI_MANIFEST};
use crate::trust::{sign, trust, Signer};
use crate::trust_bundles::{dsse_bundle, push_bundle, statement, BUNDLE_V03};
use crate::trust_notation::{self as notation, Pki};

#[tokio::test]
async fn trust_enforced_through_skopeo_and_podman() {
    let test = "trust_clients::trust_enforced_through_skopeo_and_podman";
    if !require("skopeo", test) {
        return;
    }
    let b = Berth::start();
    let c = Clients::new();
    let http = client();
    let dir = tempfile::tempdir().unwrap();
    let signer = Signer::new("p256");
    let public = signer.public.display().to_string();
    trust(
        &b,
        dir.path(),
        &["add", "acme", "--cosign-key", &public, "--name", "ci"],
    );
    let pki = Pki::new("ec");
    let root = pki.root().display().to_string();
    trust(
        &b,
        dir.path(),
        &["add", "acme", "--notation-root", &root, "--name", "ca"],
    );
    trust(&b, dir.path(), &["policy", "acme", "enforce"]);

    // Pushing is never refused: skopeo pushes every image.
    let src = c.dir("src");
    let host = layout::host_platform();
    let signed = layout::write_image(&src, "signed", &host, &[2048, 300]);
    let unsigned = layout::write_image(&src, "unsigned", &host, &[1024]);
    let image = |tag: &str| format!("{}/acme/app:{tag}", b.addr);
    c.push_layout(
        &src,
        "signed",
        &format!("docker://{}", image("signed")),
        false,
    );
    c.push_layout(
        &src,
        "unsigned",
        &format!("docker://{}", image("unsigned")),
        false,
    );
    sign(&http, &b, "acme/app", &signed, &signer).await;
    // One signed with a sigstore bundle (DSSE), one with notation.
    let bundled = layout::write_image(&src, "bundled", &host, &[700]);
    let notated = layout::write_image(&src, "notated", &host, &[900]);
    for tag in ["bundled", "notated"] {
        c.push_layout(&src, tag, &format!("docker://{}", image(tag)), false);
    }
    let (d, size) = head_manifest(&http, &b.url(), "acme/app", "bundled", OCI_MANIFEST).await;
    assert_eq!(d, bundled);
    let s = statement(&format!("{}/acme/app", b.addr), &bundled);
    push_bundle(
        &http,
        &b.url(),
        "acme/app",
        (&bundled, size),
        BUNDLE_V03,
        &dsse_bundle(&signer, BUNDLE_V03, &s),
    )
    .await;
    let (d, size) = head_manifest(&http, &b.url(), "acme/app", "notated", OCI_MANIFEST).await;
    assert_eq!(d, notated);
    notation::sign(&http, &b, "acme/app", (&notated, size), &pki, "ES256", None).await;

    // skopeo: the signed image is copied out, the unsigned one refused.
    let back = c.dir("back");
    let pull = |tag: &str| c.skopeo_pull(&format!("docker://{}", image(tag)), &back, tag);
    pull("signed").expect("a signed image is copied");
    assert_eq!(
        layout::resolve(&back, "signed").expect("copied").digest,
        signed
    );
    let err = pull("unsigned").expect_err("skopeo copied an unsigned image");
    assert!(
        err.contains("signature policy of namespace acme (enforce)"),
        "{err}"
    );
    assert!(err.contains(&format!("acme/app@{unsigned}")), "{err}");
    for (tag, digest) in [("bundled", &bundled), ("notated", &notated)] {
        pull(tag).expect("a signed image is copied");
        assert_eq!(&layout::resolve(&back, tag).expect("copied").digest, digest);
    }
    // The tag list stays open.
    let tags = String::from_utf8(c.skopeo(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{}/acme/app", b.addr),
    ]))
    .unwrap();
    assert!(
        tags.contains(&format!("{}.sig", signed.replace(':', "-"))),
        "{tags}"
    );

    // podman, when it can run here.
    if !require("podman", test) {
        return;
    }
    if let Err(why) = c.usable("podman") {
        eprintln!("SKIPPED the podman half of {test}: {why}");
        return;
    }
    let policy = c.policy();
    let pull = |tag: &str| {
        run(&mut c.containers_cmd(
            "podman",
            "p",
            &[
                "pull",
                "--tls-verify=false",
                "--signature-policy",
                &policy,
                &image(tag),
            ],
        ))
    };
    let ok = pull("signed");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let refused = pull("unsigned");
    assert!(!refused.status.success(), "podman pulled an unsigned image");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("signature policy of namespace acme"), "{err}");
}
