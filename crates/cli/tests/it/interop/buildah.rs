//! buildah on the vfs driver: build an image from scratch, push it, and
//! unpack its layer as served by berth.

use super::*;

#[test]
fn build_from_scratch_and_push() {
    let test = "interop::buildah::build_from_scratch_and_push";
    if !require("buildah", test) {
        return;
    }
    let c = Clients::new();
    if let Err(why) = c.usable("buildah") {
        eprintln!("SKIPPED {test}: buildah cannot run in this environment: {why}");
        return;
    }
    let berth = Berth::start();
    let policy = c.policy();
    let payload = layout::random_bytes(5000);
    let file = c.dir("ctx").join("payload.bin");
    std::fs::write(&file, &payload).expect("payload");

    let b = |args: &[&str]| text(ok(&mut c.containers_cmd("buildah", "s", args)));
    let ctr = b(&["from", "--signature-policy", &policy, "scratch"]);
    let ctr = ctr.trim();
    b(&["copy", ctr, &file.display().to_string(), "/payload.bin"]);
    b(&[
        "config",
        "--cmd",
        "/payload.bin",
        "--label",
        "berth.test=buildah",
        ctr,
    ]);
    b(&[
        "commit",
        "--format",
        "oci",
        "--signature-policy",
        &policy,
        ctr,
        "localhost/built:v1",
    ]);

    let digestfile = c.tmp.path().join("pushed.digest");
    b(&[
        "push",
        "--tls-verify=false",
        "--signature-policy",
        &policy,
        "--digestfile",
        &digestfile.display().to_string(),
        "localhost/built:v1",
        &format!("docker://{}/interop/built:v1", berth.addr),
    ]);
    let pushed = std::fs::read_to_string(&digestfile).expect("digestfile");
    let m = http(
        "GET",
        &format!("{}/v2/interop/built/manifests/v1", berth.url()),
        ACCEPT_ALL,
    );
    assert_eq!(m.status, 200);
    assert_eq!(
        m.header("docker-content-digest").as_deref(),
        Some(pushed.trim())
    );
    let manifest = m.json();
    assert_eq!(manifest["mediaType"], layout::MANIFEST);
    assert_blobs_present(&berth.url(), "interop/built", &manifest);
    let config = http(
        "GET",
        &format!(
            "{}/v2/interop/built/blobs/{}",
            berth.url(),
            manifest["config"]["digest"].as_str().expect("config")
        ),
        &[],
    );
    assert_eq!(config.json()["config"]["Labels"]["berth.test"], "buildah");

    // The single layer, fetched from berth, unpacks to the file we copied.
    let layers = layer_digests(&manifest);
    assert_eq!(layers.len(), 1);
    let blob = http(
        "GET",
        &format!("{}/v2/interop/built/blobs/{}", berth.url(), layers[0]),
        &[],
    );
    assert_eq!(blob.status, 200);
    assert_eq!(sha256(&blob.body), layers[0]);
    let out = c.dir("unpacked");
    let tgz = c.tmp.path().join("layer.tar.gz");
    std::fs::write(&tgz, &blob.body).expect("layer");
    ok(Command::new("tar")
        .arg("-xzf")
        .arg(&tgz)
        .arg("-C")
        .arg(&out));
    assert_eq!(
        std::fs::read(out.join("payload.bin")).expect("payload in layer"),
        payload
    );
}
