//! Three `berth serve` replicas on loopback sharing one PostgreSQL and one
//! data directory (the blob store), driven by skopeo and plain HTTP: any
//! replica serves any request, a change through one is seen by the others
//! on the next request, a replica killed mid-upload loses nothing, GC on
//! one replica while the others take pushes keeps every image whole, and
//! PostgreSQL restarting under load gives clear 503s, then recovery.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_testkit::Postgres;
use reqwest::StatusCode;
use serde_json::Value;

use crate::common::{Berth, ADMIN_PASSWORD};
use crate::interop::{require, sha256, Clients};
use crate::layout;

/// A cluster: PostgreSQL, a shared data directory, the replicas.
pub struct Cluster {
    pub pg: Postgres,
    pub url: String,
    pub data: PathBuf,
    pub replicas: Vec<Berth>,
    work: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` replicas with authentication (admin / [`ADMIN_PASSWORD`]).
    pub fn start(n: usize, extra: &[&str]) -> Cluster {
        let pg = Postgres::start();
        pg.create_database("cluster");
        let url = crate::database::url_with_password(&pg, "cluster");
        let work = tempfile::tempdir().unwrap();
        let data = work.path().join("data");
        let mut c = Cluster {
            pg,
            url,
            data,
            replicas: Vec::new(),
            work,
        };
        for i in 0..n {
            let r = c.launch(i, extra);
            c.replicas.push(r);
        }
        c
    }

    fn launch(&self, i: usize, extra: &[&str]) -> Berth {
        let dir = self.work.path().join(format!("replica-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut args = vec!["--auth", "token", "--database-url", self.url.as_str()];
        args.extend_from_slice(extra);
        Berth::launch(
            &self.data,
            &args,
            None,
            &dir,
            &[("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)],
        )
    }

    pub fn base(&self, i: usize) -> String {
        self.replicas[i].url()
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub(crate) fn admin(req: reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder {
    req.basic_auth("admin", Some(ADMIN_PASSWORD))
}

/// Uploads `data` to `repo` in chunks, each request through the next
/// replica of `via` (POST, PATCHes, PUT); returns the digest.
fn chunked_upload(bases: &[String], repo: &str, chunks: &[&[u8]]) -> String {
    let http = client();
    let whole: Vec<u8> = chunks.concat();
    let digest = sha256(&whole);
    let mut via = bases.iter().cycle();
    let r = admin(http.post(format!("{}/v2/{repo}/blobs/uploads/", via.next().unwrap())))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let mut location = r.headers()["location"].to_str().unwrap().to_owned();
    let mut at = 0usize;
    for chunk in chunks {
        let r = admin(http.patch(format!("{}{location}", via.next().unwrap())))
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{at}-{}", at + chunk.len() - 1))
            .body(chunk.to_vec())
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED, "{:?}", r.text());
        location = r.headers()["location"].to_str().unwrap().to_owned();
        at += chunk.len();
    }
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = admin(http.put(format!(
        "{}{location}{sep}digest={digest}",
        via.next().unwrap()
    )))
    .send()
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text());
    digest
}

fn get_blob(base: &str, repo: &str, digest: &str) -> Vec<u8> {
    let r = admin(client().get(format!("{base}/v2/{repo}/blobs/{digest}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{digest} from {base}");
    r.bytes().unwrap().to_vec()
}

pub(crate) fn manifest_digest(
    base: &str,
    repo: &str,
    reference: &str,
) -> (StatusCode, Option<String>) {
    let r = admin(client().get(format!("{base}/v2/{repo}/manifests/{reference}")))
        .header("accept", layout::MANIFEST)
        .header("accept", layout::INDEX)
        .send()
        .unwrap();
    let d = r
        .headers()
        .get("docker-content-digest")
        .map(|v| v.to_str().unwrap().to_owned());
    (r.status(), d)
}

/// Pushes a small image of `dir` (written by `layout`) with plain HTTP
/// through `base` under `tag`; returns its manifest digest.
pub(crate) fn push_small(base: &str, repo: &str, dir: &Path, tag: &str, sizes: &[usize]) -> String {
    let desc = layout::build_image(dir, "linux/amd64", sizes);
    let m = layout::read_json(dir, &desc.digest);
    let http = client();
    let mut blobs = vec![m["config"]["digest"].as_str().unwrap().to_owned()];
    for l in m["layers"].as_array().unwrap() {
        blobs.push(l["digest"].as_str().unwrap().to_owned());
    }
    for d in blobs {
        let r = admin(http.post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}")))
            .header("content-type", "application/octet-stream")
            .body(layout::read_blob(dir, &d))
            .send()
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "blob {d}");
    }
    let r = admin(http.put(format!("{base}/v2/{repo}/manifests/{tag}")))
        .header("content-type", layout::MANIFEST)
        .body(layout::read_blob(dir, &desc.digest))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text());
    desc.digest
}

#[test]
fn three_replicas_serve_one_registry() {
    if !require("skopeo", "cluster::three_replicas_serve_one_registry") {
        return;
    }
    let mut cluster = Cluster::start(3, &[]);
    let bases: Vec<String> = (0..3).map(|i| cluster.base(i)).collect();
    let creds = format!("admin:{ADMIN_PASSWORD}");

    // A multi-arch image pushed with skopeo through replica 1 is served by
    // replicas 2 and 3 at once.
    let c = Clients::new();
    let src = c.dir("src");
    let (index, children) = layout::write_multiarch(&src, "multi");
    let dest = format!("docker://{}/cluster/multi:v1", cluster.replicas[0].addr);
    c.skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds,
        &format!("oci:{}:multi", src.display()),
        &dest,
    ]);
    let readers: Vec<_> = [1usize, 2]
        .into_iter()
        .map(|i| {
            let addr = cluster.replicas[i].addr.clone();
            let c = Clients::new();
            let creds = creds.clone();
            std::thread::spawn(move || {
                c.skopeo(&[
                    "inspect",
                    "--raw",
                    "--tls-verify=false",
                    "--creds",
                    &creds,
                    &format!("docker://{addr}/cluster/multi:v1"),
                ])
            })
        })
        .collect();
    for r in readers {
        assert_eq!(sha256(&r.join().unwrap()), index);
    }
    for child in &children {
        let (status, d) = manifest_digest(&bases[2], "cluster/multi", child);
        assert_eq!(
            (status, d.as_deref()),
            (StatusCode::OK, Some(child.as_str()))
        );
    }

    // One chunked upload, each request on another replica.
    let a = layout::random_bytes(300_000);
    let b = layout::random_bytes(200_000);
    let cc = layout::random_bytes(1000);
    let digest = chunked_upload(&bases, "cluster/chunks", &[&a, &b, &cc]);
    assert_eq!(
        get_blob(&bases[1], "cluster/chunks", &digest),
        [a.as_slice(), &b, &cc].concat()
    );

    // A replica killed (SIGKILL) in the middle of an upload: the session
    // is finished through the others.
    let http = client();
    let r = admin(http.post(format!("{}/v2/cluster/crash/blobs/uploads/", bases[1])))
        .send()
        .unwrap();
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let first = layout::random_bytes(100_000);
    let r = admin(http.patch(format!("{}{location}", bases[1])))
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("0-{}", first.len() - 1))
        .body(first.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    cluster.replicas[1].kill();
    let rest = layout::random_bytes(50_000);
    let r = admin(http.patch(format!("{}{location}", bases[2])))
        .header("content-type", "application/octet-stream")
        .header(
            "content-range",
            format!("{}-{}", first.len(), first.len() + rest.len() - 1),
        )
        .body(rest.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED, "{:?}", r.text());
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let whole = [first.as_slice(), &rest].concat();
    let d = sha256(&whole);
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = admin(http.put(format!("{}{location}{sep}digest={d}", bases[0])))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text());
    assert_eq!(get_blob(&bases[2], "cluster/crash", &d), whole);
    let restarted = cluster.launch(1, &[]);
    cluster.replicas[1] = restarted;
    let bases: Vec<String> = (0..3).map(|i| cluster.base(i)).collect();

    // A tag moved on one replica is seen on the others on the next request.
    let work = tempfile::tempdir().unwrap();
    let img = work.path().join("img");
    let one = push_small(&bases[0], "cluster/app", &img, "stable", &[1000]);
    for b in &bases[1..] {
        assert_eq!(
            manifest_digest(b, "cluster/app", "stable").1,
            Some(one.clone())
        );
    }
    let two = push_small(&bases[0], "cluster/app", &img, "stable", &[2000]);
    for b in &bases[1..] {
        assert_eq!(
            manifest_digest(b, "cluster/app", "stable").1,
            Some(two.clone()),
            "{b} sees the moved tag at once"
        );
    }

    // A token revoked on one replica is refused everywhere on the next
    // request.
    let r = admin(http.post(format!("{}/api/v1/tokens", bases[0])))
        .json(&serde_json::json!({"name": "ci", "scopes": ["pull"], "patterns": []}))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().unwrap();
    let token = created["token"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    let with_token = |base: &str| {
        http.get(format!("{base}/v2/cluster/app/manifests/stable"))
            .header("accept", layout::MANIFEST)
            .basic_auth("admin", Some(&token))
            .send()
            .unwrap()
            .status()
    };
    for b in &bases {
        assert_eq!(with_token(b), StatusCode::OK);
    }
    let r = admin(http.delete(format!("{}/api/v1/tokens/{id}", bases[1])))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for b in &bases {
        assert_eq!(with_token(b), StatusCode::UNAUTHORIZED, "{b}");
    }

    // GC on replica 1 while replicas 2 and 3 take pushes; afterwards every
    // tagged image pulls whole.
    let pushers: Vec<_> = (1..3)
        .map(|i| {
            let base = bases[i].clone();
            let dir = work.path().join(format!("push-{i}"));
            std::thread::spawn(move || {
                (0..4)
                    .map(|n| {
                        let tag = format!("r{i}-{n}");
                        let d = push_small(&base, "cluster/busy", &dir, &tag, &[5000, 300]);
                        (tag, d)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let r = admin(http.post(format!("{}/api/v1/gc", bases[0])))
        .json(&serde_json::json!({}))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text());
    let mut pushed = Vec::new();
    for p in pushers {
        pushed.extend(p.join().unwrap());
    }
    for (tag, digest) in &pushed {
        let back = c.dir(&format!("back-{tag}"));
        c.skopeo(&[
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            &creds,
            &format!("docker://{}/cluster/busy:{tag}", cluster.replicas[2].addr),
            &format!("oci:{}:x", back.display()),
        ]);
        let got = layout::resolve(&back, "x").expect("pulled");
        assert_eq!(&got.digest, digest);
    }
    let log = cluster.replicas[0].log();
    assert!(!log.contains(crate::database::DB_PASSWORD));
}

#[test]
fn postgres_restarting_under_load_gives_503s_then_recovers() {
    let mut cluster = Cluster::start(1, &[]);
    let base = cluster.base(0);
    let work = tempfile::tempdir().unwrap();
    let digest = push_small(&base, "load/app", &work.path().join("img"), "v1", &[100]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        let base = base.clone();
        std::thread::spawn(move || {
            let http = client();
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                let started = Instant::now();
                let r = admin(http.get(format!("{base}/v2/load/app/manifests/v1")))
                    .header("accept", layout::MANIFEST)
                    .send()
                    .unwrap();
                let status = r.status();
                let body = r.text().unwrap();
                seen.push((status, body, started.elapsed()));
                std::thread::sleep(Duration::from_millis(20));
            }
            seen
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    cluster.pg.stop();
    std::thread::sleep(Duration::from_secs(8));
    cluster.pg.resume();
    // berth recovers by itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if manifest_digest(&base, "load/app", "v1") == (StatusCode::OK, Some(digest.clone())) {
            break;
        }
        assert!(Instant::now() < deadline, "berth did not recover");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Release);
    let seen = load.join().unwrap();
    let outage: Vec<_> = seen
        .iter()
        .filter(|(s, _, _)| *s != StatusCode::OK)
        .collect();
    assert!(!outage.is_empty(), "the outage was seen");
    for (status, body, took) in &outage {
        assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["errors"][0]["code"], "UNAVAILABLE", "{body}");
        assert!(
            v["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("metadata database is unavailable"),
            "{body}"
        );
        assert!(
            *took < Duration::from_secs(7),
            "a request hung for {took:?}"
        );
    }
    assert_eq!(seen.last().unwrap().0, StatusCode::OK);
}
