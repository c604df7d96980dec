//! `berth serve --storage s3://...` against a SeaweedFS server that checks
//! SigV4 signatures (`weed mini`, started once for this test binary; the
//! test that stops its object store gets a server of its own): chunked
//! uploads below the part size across a restart of berth, the object
//! store failing in the middle of a push, garbage collection, and reads
//! redirected to presigned URLs. skopeo's multi-arch round trip is in
//! `interop::s3`.

use std::sync::OnceLock;

use reqwest::{Client, StatusCode};
use serde_json::Value;

use crate::common::Berth;
use crate::oci::{client, expect_error, push_blob, push_image, sha256};
use crate::tools::berth_ok;
use crate::weed::{Weed, ACCESS_KEY, BUCKET, SECRET_KEY};

/// The server the S3 tests share (each uses its own prefix).
pub fn weed() -> &'static Weed {
    static WEED: OnceLock<Weed> = OnceLock::new();
    WEED.get_or_init(Weed::start)
}

/// berth on `s3://BUCKET/prefix` of `weed`, restartable on the same data
/// directory (SQLite) and bucket.
pub struct OnS3 {
    pub berth: Option<Berth>,
    args: Vec<String>,
    config: Option<String>,
    env: Vec<(&'static str, String)>,
    pub tmp: tempfile::TempDir,
}

impl OnS3 {
    pub fn start(weed: &Weed, prefix: &str, extra: &[&str], config: Option<&str>) -> OnS3 {
        let mut args = vec![
            "--storage".to_owned(),
            format!("s3://{BUCKET}/{prefix}"),
            "--s3-endpoint".to_owned(),
            weed.endpoint.clone(),
            "--s3-path-style".to_owned(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut s = OnS3 {
            berth: None,
            args,
            config: config.map(str::to_owned),
            env: weed.env(),
            tmp: tempfile::tempdir().unwrap(),
        };
        s.launch();
        s
    }

    fn launch(&mut self) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let data = self.tmp.path().join("data");
        self.berth = Some(Berth::launch(
            &data,
            &args,
            self.config.as_deref(),
            self.tmp.path(),
            &env,
        ));
    }

    /// Stops berth (SIGKILL, like a crash) and starts it again.
    pub fn restart(&mut self) {
        if let Some(mut b) = self.berth.take() {
            b.kill();
        }
        self.launch();
    }

    pub fn berth(&self) -> &Berth {
        self.berth.as_ref().unwrap()
    }

    pub fn url(&self) -> String {
        self.berth().url()
    }
}

/// Deterministic bytes.
fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[2] ^ seed)
        .collect()
}

/// Sends one chunk with `Content-Range`; returns the next location.
async fn patch(c: &Client, base: &str, location: &str, start: usize, chunk: &[u8]) -> String {
    let r = c
        .patch(format!("{base}{location}"))
        .header("content-type", "application/octet-stream")
        .header(
            "content-range",
            format!("{}-{}", start, start + chunk.len() - 1),
        )
        .body(chunk.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED, "{:?}", r.text().await);
    let range = r.headers()["range"].to_str().unwrap().to_owned();
    assert_eq!(range, format!("0-{}", start + chunk.len() - 1));
    r.headers()["location"].to_str().unwrap().to_owned()
}

async fn start_upload(c: &Client, base: &str, repo: &str) -> String {
    let r = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    r.headers()["location"].to_str().unwrap().to_owned()
}

async fn finish(c: &Client, base: &str, location: &str, digest: &str) -> reqwest::Response {
    let sep = if location.contains('?') { '&' } else { '?' };
    c.put(format!("{base}{location}{sep}digest={digest}"))
        .send()
        .await
        .unwrap()
}

async fn get_blob(c: &Client, base: &str, repo: &str, digest: &str) -> reqwest::Response {
    c.get(format!("{base}/v2/{repo}/blobs/{digest}"))
        .send()
        .await
        .unwrap()
}

/// Chunks below S3's 5 MiB part minimum are buffered in the bucket; berth
/// is killed in the middle of the upload and the restarted server finishes
/// it: the session (multipart id, parts, hash state) lived in the bucket.
#[tokio::test]
async fn s3_chunked_upload_survives_a_restart_of_berth() {
    let mut s = OnS3::start(weed(), "chunked", &[], None);
    let c = client();
    let blob = data(13 << 20, 5);
    let digest = sha256(&blob);
    let chunk = 3 << 20;
    let mut location = start_upload(&c, &s.url(), "team/chunked").await;
    let mut at = 0;
    while at < blob.len() {
        if at == 2 * chunk {
            s.restart();
            // The new process knows the session from the bucket alone.
            let r = c
                .get(format!("{}{location}", s.url()))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::NO_CONTENT);
            assert_eq!(r.headers()["range"], format!("0-{}", at - 1).as_str());
        }
        let end = (at + chunk).min(blob.len());
        location = patch(&c, &s.url(), &location, at, &blob[at..end]).await;
        at = end;
    }
    let r = finish(&c, &s.url(), &location, &digest).await;
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    let r = get_blob(&c, &s.url(), "team/chunked", &digest).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(sha256(&r.bytes().await.unwrap()), digest);
    // A range is served from the object store.
    let r = c
        .get(format!("{}/v2/team/chunked/blobs/{digest}", s.url()))
        .header("range", "bytes=7340032-7340041")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(&r.bytes().await.unwrap()[..], &blob[7_340_032..7_340_042]);
}

/// The object store goes away during a push: the client gets a 503 with
/// the OCI error JSON, and nothing appears under the digest; once the
/// store is back, the same push succeeds.
#[tokio::test]
async fn s3_down_during_a_push_answers_503_and_publishes_nothing() {
    let mut own = Weed::start();
    let s = OnS3::start(&own, "down", &[], None);
    let c = client();
    let blob = data(2 << 20, 9);
    let digest = sha256(&blob);
    let location = start_upload(&c, &s.url(), "team/down").await;
    let location = patch(&c, &s.url(), &location, 0, &blob[..1 << 20]).await;

    own.stop();
    let r = c
        .patch(format!("{}{location}", s.url()))
        .header("content-range", format!("{}-{}", 1 << 20, blob.len() - 1))
        .body(blob[1 << 20..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["retry-after"], "5");
    let msg = expect_error(r, 503, "UNAVAILABLE").await;
    assert!(msg.contains("object storage is unavailable"), "{msg}");
    // A monolithic push of the whole blob fails the same way (a fresh
    // connection: the refused PATCH's body was not read, so berth closed
    // that one).
    let c = client();
    let r = c
        .post(format!(
            "{}/v2/team/down/blobs/uploads/?digest={digest}",
            s.url()
        ))
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    expect_error(r, 503, "UNAVAILABLE").await;

    own.restart();
    let r = c
        .head(format!("{}/v2/team/down/blobs/{digest}", s.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "nothing half-published");
    // The session still holds its first chunk; the client resumes.
    let r = c
        .get(format!("{}{location}", s.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        r.headers()["range"],
        format!("0-{}", (1 << 20) - 1).as_str()
    );
    let location = patch(&c, &s.url(), &location, 1 << 20, &blob[1 << 20..]).await;
    let r = finish(&c, &s.url(), &location, &digest).await;
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    let r = get_blob(&c, &s.url(), "team/down", &digest).await;
    assert_eq!(sha256(&r.bytes().await.unwrap()), digest);
}

/// GC with no grace period deletes the unreferenced blob from the bucket
/// and keeps the image's.
#[tokio::test]
async fn s3_gc_deletes_unreferenced_blobs_and_keeps_referenced_ones() {
    let s = OnS3::start(
        weed(),
        "gc",
        &[],
        Some("gc_grace_period = \"0s\"\ngc_interval = \"0\"\n"),
    );
    let c = client();
    let base = s.url();
    let (manifest, m) = push_image(&c, &base, "team/gc", "v1", "kept").await;
    let stray = push_blob(&c, &base, "team/gc", b"stray bytes on s3").await;
    let dir = tempfile::tempdir().unwrap();
    let out = berth_ok(dir.path(), &["gc", "--registry", s.berth().addr.as_str()]);
    assert!(out.contains("17 B reclaimed"), "{out}");
    let r = c
        .head(format!("{base}/v2/team/gc/blobs/{stray}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Linked again by a new push: the bytes are really gone from the
    // bucket, so the registry asks for them.
    let r = c
        .post(format!(
            "{base}/v2/team/other/blobs/uploads/?mount={stray}&from=team/gc"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED, "not mountable");
    let manifest_json: Value = serde_json::from_slice(&m).unwrap();
    let mut blobs = vec![manifest_json["config"]["digest"]
        .as_str()
        .unwrap()
        .to_owned()];
    for l in manifest_json["layers"].as_array().unwrap() {
        blobs.push(l["digest"].as_str().unwrap().to_owned());
    }
    for d in blobs {
        let r = get_blob(&c, &base, "team/gc", &d).await;
        assert_eq!(r.status(), StatusCode::OK, "{d} kept");
        assert_eq!(sha256(&r.bytes().await.unwrap()), d);
    }
    let r = c
        .get(format!("{base}/v2/team/gc/manifests/v1"))
        .header("accept", crate::oci::OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["docker-content-digest"], manifest.as_str());
}

/// With `s3_redirect`, an authorised blob GET answers 307 to a presigned
/// URL of the public endpoint that serves the exact bytes; HEAD is
/// answered by berth; an unknown blob is refused before any URL is made.
#[tokio::test]
async fn s3_redirect_answers_307_to_a_presigned_url() {
    let w = weed();
    let s = OnS3::start(
        w,
        "redirect",
        &["--s3-redirect", "--s3-public-endpoint", &w.endpoint],
        None,
    );
    let c = client();
    let base = s.url();
    let blob = data(300_000, 3);
    let digest = push_blob(&c, &base, "team/redirect", &blob).await;
    let r = get_blob(&c, &base, "team/redirect", &digest).await;
    assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&w.endpoint), "{location}");
    assert!(location.contains("X-Amz-Signature="), "{location}");
    let direct = reqwest::get(&location).await.unwrap();
    assert_eq!(direct.status(), StatusCode::OK);
    assert_eq!(&direct.bytes().await.unwrap()[..], &blob[..]);
    // The URL is signed: tampering with it is refused by the object store.
    let tampered = location.replace("X-Amz-Signature=", "X-Amz-Signature=0");
    assert_eq!(
        reqwest::get(&tampered).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let r = c
        .head(format!("{base}/v2/team/redirect/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let unknown = sha256(b"never pushed");
    let r = get_blob(&c, &base, "team/redirect", &unknown).await;
    expect_error(r, 404, "BLOB_UNKNOWN").await;
    // A client following redirects gets the blob.
    let follow = Client::new();
    let r = follow
        .get(format!("{base}/v2/team/redirect/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(sha256(&r.bytes().await.unwrap()), digest);
}

/// Credentials from the shared AWS files (`AWS_PROFILE` picks the
/// section, the config file gives the region); keys in the environment win
/// over them, as in the AWS SDKs.
#[tokio::test]
async fn s3_credentials_come_from_the_aws_files_and_the_environment_wins() {
    let w = weed();
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    std::fs::create_dir_all(home.join(".aws")).unwrap();
    std::fs::write(
        home.join(".aws/credentials"),
        format!(
            "[default]\naws_access_key_id = WRONGKEY\naws_secret_access_key = wrong\n\n\
             [berth]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        home.join(".aws/config"),
        "[profile berth]\nregion = us-east-1\n",
    )
    .unwrap();
    let storage = format!("s3://{BUCKET}/profile");
    let args = [
        "--storage",
        storage.as_str(),
        "--s3-endpoint",
        w.endpoint.as_str(),
        "--s3-path-style",
    ];
    let home_var = home.display().to_string();
    let berth = Berth::launch(
        &work.path().join("data"),
        &args,
        None,
        work.path(),
        &[("HOME", home_var.as_str()), ("AWS_PROFILE", "berth")],
    );
    let c = client();
    let digest = push_blob(&c, &berth.url(), "team/profile", b"signed with the profile").await;
    let r = get_blob(&c, &berth.url(), "team/profile", &digest).await;
    assert_eq!(&r.bytes().await.unwrap()[..], b"signed with the profile");

    // The environment's keys (wrong here) win over the profile's; the
    // default profile (wrong too) is used without AWS_PROFILE.
    for env in [
        vec![
            ("AWS_PROFILE", "berth"),
            ("AWS_ACCESS_KEY_ID", "ENVKEY"),
            ("AWS_SECRET_ACCESS_KEY", "env-secret"),
        ],
        vec![],
    ] {
        let out = std::process::Command::new(crate::common::berth_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--auth", "none"])
            .arg("--data-dir")
            .arg(work.path().join("data2"))
            .args(args)
            .env("HOME", &home)
            .env_remove("AWS_PROFILE")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains("reaching object storage"), "{env:?}: {err}");
        assert!(
            !err.contains("env-secret") && !err.contains("wrong\n"),
            "{err}"
        );
    }
}
