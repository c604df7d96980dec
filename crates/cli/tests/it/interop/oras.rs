//! oras (the oras-py SDK): artifacts with a subject, the referrers API with
//! and without an `artifactType` filter, pulling an artifact back.

use super::*;

/// Drives oras-py against the registry: an artifact typed by its config
/// (pushed with `push(..., subject=...)`), a second with an explicit
/// `artifactType` and the empty config, the referrers API unfiltered and
/// filtered, and a pull of the first artifact. Writes `result.json`.
const ORAS_SCRIPT: &str = r#"
import hashlib, json, os, sys
import oras.oci, oras.provider

host, repo, subject_digest, subject_size, work = sys.argv[1:6]
os.chdir(work)
reg = oras.provider.Registry(hostname=host, insecure=True)
out = {}

def resp(r):
    return {"status": r.status_code,
            "headers": {k.lower(): v for k, v in r.headers.items()},
            "body": r.text}

subject = oras.oci.Subject(mediaType="application/vnd.oci.image.manifest.v1+json",
                           digest=subject_digest, size=int(subject_size))

with open("sbom.spdx.json", "w") as f:
    json.dump({"spdxVersion": "SPDX-2.3", "name": "berth-interop"}, f)
with open("config.json", "w") as f:
    json.dump({"tool": "berth-interop"}, f)
r = reg.push(target=f"{host}/{repo}:sbom",
             files=["sbom.spdx.json:application/spdx+json"],
             manifest_config="config.json:application/vnd.berth.test.sbom.config.v1+json",
             subject=subject, quiet=True)
out["sbom_push"] = resp(r)

container = reg.get_container(f"{host}/{repo}:sig")
payload = b"not-really-a-signature"
with open("sig.bin", "wb") as f:
    f.write(payload)
with open("empty.json", "wb") as f:
    f.write(b"{}")
sig = {"mediaType": "application/vnd.berth.test.signature.v1",
       "digest": "sha256:" + hashlib.sha256(payload).hexdigest(), "size": len(payload)}
empty = {"mediaType": "application/vnd.oci.empty.v1+json",
         "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest(), "size": 2}
reg._check_200_response(reg.upload_blob("sig.bin", container, sig))
reg._check_200_response(reg.upload_blob("empty.json", container, empty))
manifest = {"schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": "application/vnd.berth.test.signature.v1",
            "config": empty, "layers": [sig],
            "subject": {"mediaType": subject.mediaType, "digest": subject.digest,
                        "size": subject.size}}
out["sig_push"] = resp(reg.upload_manifest(manifest, container))

base = f"http://{host}/v2/{repo}/referrers/{subject_digest}"
accept = {"Accept": "application/vnd.oci.image.index.v1+json"}
out["referrers"] = resp(reg.do_request(base, "GET", headers=accept))
out["filtered"] = resp(reg.do_request(
    base + "?artifactType=application/vnd.berth.test.signature.v1", "GET", headers=accept))

files = reg.pull(target=f"{host}/{repo}:sbom", outdir=os.path.join(work, "pulled"))
out["pulled"] = [os.path.relpath(p, work) for p in files]

# Chunked upload: POST, PATCH with Content-Range per 64 KiB chunk, PUT.
with open("big.bin", "wb") as f:
    f.write(os.urandom(300 * 1024 + 17))
r = reg.push(target=f"{host}/{repo}:chunked", files=["big.bin"],
             do_chunked=True, chunk_size=64 * 1024, quiet=True)
out["chunked_push"] = resp(r)
files = reg.pull(target=f"{host}/{repo}:chunked", outdir=os.path.join(work, "pulled-chunked"))
out["pulled_chunked"] = [os.path.relpath(p, work) for p in files]
with open(os.path.join(work, "result.json"), "w") as f:
    json.dump(out, f)
"#;

const SBOM_CONFIG_TYPE: &str = "application/vnd.berth.test.sbom.config.v1+json";
const SIG_TYPE: &str = "application/vnd.berth.test.signature.v1";

#[test]
fn artifacts_with_subject_and_referrers() {
    let test = "interop::oras::artifacts_with_subject_and_referrers";
    if !require("python3", test) || !require_oras(test) {
        return;
    }
    let berth = Berth::start();
    let base = berth.url();
    let c = Clients::new();

    // The subject: an image pushed with plain HTTP (no other client needed).
    let src = c.dir("src");
    let subject = layout::build_image(&src, "linux/amd64", &[64]);
    push_image_http(&base, "interop/app", &src, &subject.digest, &["v1"]);

    let work = c.dir("oras");
    std::fs::write(work.join("push.py"), ORAS_SCRIPT).expect("script");
    ok(Command::new("python3")
        .arg(work.join("push.py"))
        .arg(&berth.addr)
        .arg("interop/app")
        .arg(&subject.digest)
        .arg(subject.size.to_string())
        .arg(&work));
    let result = parse(&std::fs::read(work.join("result.json")).expect("result.json"));

    // Both pushes were accepted and the registry acknowledged the subject.
    let mut pushed = Vec::new();
    for key in ["sbom_push", "sig_push"] {
        let r = &result[key];
        assert_eq!(r["status"], 201, "{key}: {}", r["body"]);
        assert_eq!(
            r["headers"]["oci-subject"],
            subject.digest.as_str(),
            "{key}: OCI-Subject header"
        );
        let digest = r["headers"]["docker-content-digest"]
            .as_str()
            .unwrap_or_else(|| panic!("{key}: no Docker-Content-Digest"))
            .to_owned();
        let m = http(
            "GET",
            &format!("{base}/v2/interop/app/manifests/{digest}"),
            ACCEPT_ALL,
        );
        assert_eq!(m.status, 200);
        assert_eq!(sha256(&m.body), digest);
        pushed.push((digest, m.body.len() as u64));
    }
    let (sbom, sbom_size) = pushed[0].clone();
    let (sig, sig_size) = pushed[1].clone();

    // The referrers index lists both, typed.
    let r = &result["referrers"];
    assert_eq!(r["status"], 200, "referrers: {}", r["body"]);
    assert!(
        r["headers"]["content-type"]
            .as_str()
            .unwrap_or_default()
            .starts_with(layout::INDEX),
        "referrers content type: {}",
        r["headers"]["content-type"]
    );
    let idx: Value = serde_json::from_str(r["body"].as_str().expect("body")).expect("index");
    assert_eq!(idx["schemaVersion"], 2);
    assert_eq!(idx["mediaType"], layout::INDEX);
    let list = idx["manifests"].as_array().expect("manifests");
    assert_eq!(list.len(), 2, "referrers: {idx}");
    let find = |d: &str| {
        list.iter()
            .find(|m| m["digest"] == d)
            .unwrap_or_else(|| panic!("{d} not among referrers: {idx}"))
    };
    let s = find(&sbom);
    assert_eq!(
        s["artifactType"], SBOM_CONFIG_TYPE,
        "artifactType from config"
    );
    assert_eq!(s["mediaType"], layout::MANIFEST);
    assert_eq!(s["size"], sbom_size);
    let g = find(&sig);
    assert_eq!(g["artifactType"], SIG_TYPE);
    assert_eq!(g["size"], sig_size);

    // Filtered by artifactType.
    let f = &result["filtered"];
    assert_eq!(f["status"], 200, "filtered: {}", f["body"]);
    assert_eq!(f["headers"]["oci-filters-applied"], "artifactType");
    let fidx: Value = serde_json::from_str(f["body"].as_str().expect("body")).expect("index");
    let flist = fidx["manifests"].as_array().expect("manifests");
    assert_eq!(flist.len(), 1, "filtered referrers: {fidx}");
    assert_eq!(flist[0]["digest"], sig.as_str());
    assert_eq!(flist[0]["artifactType"], SIG_TYPE);

    // oras pulled the artifact's file back intact.
    assert_eq!(
        result["pulled"],
        serde_json::json!(["pulled/sbom.spdx.json"])
    );
    assert_eq!(
        std::fs::read(work.join("pulled/sbom.spdx.json")).expect("pulled"),
        std::fs::read(work.join("sbom.spdx.json")).expect("original")
    );

    // The blob oras uploaded in 64 KiB PATCH chunks came back intact.
    assert_eq!(result["chunked_push"]["status"], 201);
    assert_eq!(
        result["pulled_chunked"],
        serde_json::json!(["pulled-chunked/big.bin"])
    );
    let big = std::fs::read(work.join("big.bin")).expect("original");
    assert_eq!(
        std::fs::read(work.join("pulled-chunked/big.bin")).expect("pulled"),
        big
    );
    let r = http(
        "HEAD",
        &format!("{base}/v2/interop/app/blobs/{}", sha256(&big)),
        &[],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some(big.len().to_string()));

    // Deleting a referrer removes it from the index.
    let d = http(
        "DELETE",
        &format!("{base}/v2/interop/app/manifests/{sig}"),
        &[],
    );
    assert_eq!(d.status, 202);
    let r = http(
        "GET",
        &format!("{base}/v2/interop/app/referrers/{}", subject.digest),
        &[],
    );
    assert_eq!(r.status, 200);
    let after: Vec<Value> = r.json()["manifests"].as_array().expect("manifests").clone();
    assert_eq!(after.len(), 1, "after delete: {after:?}");
    assert_eq!(after[0]["digest"], sbom.as_str());
}
