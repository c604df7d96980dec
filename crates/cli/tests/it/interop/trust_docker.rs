//! Signature enforcement through the Docker daemon: in a namespace under
//! `enforce`, `docker pull` of a signed image (cosign's tag form, and a
//! sigstore bundle referrer) succeeds, and of an unsigned one fails with
//! berth's refusal, naming the policy, in the daemon's own output. Pushes
//! are never refused.

use super::docker::{layer, local_name, pushed_digest, Docker};
use crate::common::Berth;
use crate::oci::client;
use crate::trust::{sign, trust, Signer};
use crate::trust_bundles::{dsse_bundle, push_bundle, statement, BUNDLE_V03};

#[test]
fn trust_docker_pulls_signed_images_and_is_refused_unsigned_ones() {
    let docker = Docker::new();
    let b = Berth::start();
    let dir = tempfile::tempdir().unwrap();
    let signer = Signer::new("p256");
    let public = signer.public.display().to_string();
    trust(
        &b,
        dir.path(),
        &["add", "acme", "--cosign-key", &public, "--name", "ci"],
    );
    trust(&b, dir.path(), &["policy", "acme", "enforce"]);

    let mut pushed = Vec::new();
    for (i, tag) in ["signed", "bundled", "unsigned"].into_iter().enumerate() {
        let local = local_name(tag);
        docker.load(&local, &[&layer(&format!("file-{i}"), 2000 + i)]);
        let remote = format!("{}/acme/app:{tag}", b.addr);
        docker.ok(&["tag", &local, &remote]);
        let digest = pushed_digest(&docker.ok(&["push", &remote]));
        docker.ok(&["rmi", &local, &remote]);
        pushed.push((remote, digest));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = client();
        sign(&c, &b, "acme/app", &pushed[0].1, &signer).await;
        let digest = &pushed[1].1;
        let r = c
            .head(format!("{}/v2/acme/app/manifests/{digest}", b.url()))
            .header(
                "accept",
                "application/vnd.docker.distribution.manifest.v2+json",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let size: usize = r.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let s = statement(&format!("{}/acme/app", b.addr), digest);
        push_bundle(
            &c,
            &b.url(),
            "acme/app",
            (digest, size),
            BUNDLE_V03,
            &dsse_bundle(&signer, BUNDLE_V03, &s),
        )
        .await;
    });

    for (remote, digest) in &pushed[..2] {
        let out = docker.ok(&["pull", remote]);
        assert!(out.contains(digest.as_str()), "{out}");
        docker.ok(&["rmi", remote]);
    }
    let (remote, digest) = &pushed[2];
    let (out, _) = docker.fails(&["pull", remote]);
    assert!(
        out.contains("refused by the signature policy of namespace acme (enforce)"),
        "{out}"
    );
    assert!(out.contains(&format!("acme/app@{digest}")), "{out}");
}
