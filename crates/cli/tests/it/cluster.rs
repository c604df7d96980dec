//! Three `berth serve` replicas on loopback sharing one PostgreSQL and one
//! S3 bucket (SeaweedFS, signatures checked; each replica has a data
//! directory of its own), driven by skopeo and plain HTTP: any replica
//! serves any request, a change through one is seen by the others on the
//! next request, a replica killed mid-upload loses nothing, GC on one
//! replica while the others take pushes keeps every image whole, and
//! PostgreSQL restarting under load gives clear 503s, then recovery. And
//! two replicas on one PostgreSQL and one data directory (blobs on its
//! filesystem), the other way docs/scale-out.md offers.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use berth_testkit::Postgres;
use reqwest::StatusCode;
use serde_json::Value;

use crate::common::{Berth, ADMIN_PASSWORD};
use crate::interop::{require, sha256, Clients};
use crate::layout;
use crate::s3::weed;
use crate::weed::BUCKET;

/// A cluster: PostgreSQL, one bucket (a prefix of the shared weed
/// server), the replicas.
pub struct Cluster {
    pub pg: Postgres,
    pub url: String,
    /// `s3://BUCKET/PREFIX`.
    pub storage: String,
    pub replicas: Vec<Berth>,
    config: Option<String>,
    work: tempfile::TempDir,
}

/// A bucket prefix no other test uses.
pub fn fresh_prefix(name: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl Cluster {
    /// Starts `n` replicas with authentication (admin / [`ADMIN_PASSWORD`])
    /// and `config` (TOML) on a fresh database and bucket prefix.
    pub fn start(n: usize, config: Option<&str>) -> Cluster {
        let pg = Postgres::start();
        pg.create_database("cluster");
        let url = crate::database::url_with_password(&pg, "cluster");
        let storage = format!("s3://{BUCKET}/{}", fresh_prefix("cluster"));
        Cluster::on(pg, url, storage, n, config)
    }

    /// Starts `n` replicas on an existing database and bucket.
    pub fn on(
        pg: Postgres,
        url: String,
        storage: String,
        n: usize,
        config: Option<&str>,
    ) -> Cluster {
        let mut c = Cluster {
            pg,
            url,
            storage,
            replicas: Vec::new(),
            config: config.map(str::to_owned),
            work: tempfile::tempdir().unwrap(),
        };
        for i in 0..n {
            let r = c.launch(i);
            c.replicas.push(r);
        }
        c
    }

    /// Starts replica `i` (its own data directory, which holds nothing the
    /// others need).
    pub fn launch(&self, i: usize) -> Berth {
        let dir = self.work.path().join(format!("replica-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let w = weed();
        let args = [
            "--auth",
            "token",
            "--database-url",
            self.url.as_str(),
            "--storage",
            self.storage.as_str(),
            "--s3-endpoint",
            w.endpoint.as_str(),
            "--s3-path-style",
        ];
        let mut env: Vec<(&str, String)> = w.env();
        env.push(("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Berth::launch(&dir.join("data"), &args, self.config.as_deref(), &dir, &env)
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

/// A request body that yields `left` bytes, says so, then stalls until
/// `release` (and fails).
struct StallingBody {
    left: usize,
    sent: Option<std::sync::mpsc::Sender<()>>,
    release: std::sync::mpsc::Receiver<()>,
}

impl std::io::Read for StallingBody {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            if let Some(tx) = self.sent.take() {
                let _ = tx.send(());
            }
            let _ = self.release.recv_timeout(Duration::from_secs(120));
            return Err(std::io::Error::other("stalled"));
        }
        let n = buf.len().min(self.left);
        buf[..n].fill(0x5a);
        self.left -= n;
        Ok(n)
    }
}

/// Fetches `repo:tag` and everything it references through `base`,
/// checking each digest (an index's children recursively).
pub(crate) fn verify_image(base: &str, repo: &str, reference: &str) {
    let r = admin(client().get(format!("{base}/v2/{repo}/manifests/{reference}")))
        .header("accept", layout::MANIFEST)
        .header("accept", layout::INDEX)
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{repo}:{reference} on {base}");
    let digest = r.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_owned();
    let bytes = r.bytes().unwrap();
    assert_eq!(sha256(&bytes), digest, "{repo}:{reference} on {base}");
    let m: Value = serde_json::from_slice(&bytes).unwrap();
    if let Some(children) = m["manifests"].as_array() {
        for child in children {
            verify_image(base, repo, child["digest"].as_str().unwrap());
        }
        return;
    }
    let mut blobs = vec![m["config"]["digest"].as_str().unwrap().to_owned()];
    for l in m["layers"].as_array().unwrap() {
        blobs.push(l["digest"].as_str().unwrap().to_owned());
    }
    for d in blobs {
        assert_eq!(sha256(&get_blob(base, repo, &d)), d, "{repo}@{d} on {base}");
    }
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
    let mut cluster = Cluster::start(3, Some("gc_grace_period = \"5s\"\ngc_interval = \"0\"\n"));
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

    // One chunked upload, each request on another replica; the chunks
    // cross the 8 MiB part size, so parts are uploaded by different
    // replicas and the multipart upload is completed by a third.
    let a = layout::random_bytes(6 << 20);
    let b = layout::random_bytes(5 << 20);
    let cc = layout::random_bytes(3 << 20);
    let dd = layout::random_bytes(1000);
    let digest = chunked_upload(&bases, "cluster/chunks", &[&a, &b, &cc, &dd]);
    let whole = [a.as_slice(), &b, &cc, &dd].concat();
    assert_eq!(
        sha256(&get_blob(&bases[1], "cluster/chunks", &digest)),
        digest
    );
    assert_eq!(get_blob(&bases[2], "cluster/chunks", &digest), whole);
    let chunked_digest = digest;

    // A replica killed (SIGKILL) while a PATCH streams through it (with a
    // part uploaded, so it holds the session's claim): the session is
    // finished through the others from what it had recorded.
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
    let (sent_tx, sent_rx) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel();
    let in_flight = {
        let url = format!("{}{location}", bases[1]);
        let body = StallingBody {
            left: 10 << 20,
            sent: Some(sent_tx),
            release: released,
        };
        std::thread::spawn(move || {
            admin(client().patch(url))
                .header("content-type", "application/octet-stream")
                .body(reqwest::blocking::Body::new(body))
                .send()
        })
    };
    sent_rx.recv_timeout(Duration::from_secs(60)).unwrap();
    // Time for the replica to upload the first part.
    std::thread::sleep(Duration::from_secs(3));
    cluster.replicas[1].kill();
    let _ = release.send(());
    assert!(in_flight.join().unwrap().is_err(), "the PATCH was cut");
    // Another replica reports what was recorded (the cut PATCH was not)
    // and takes the rest once the dead replica's claim expires.
    let r = admin(http.get(format!("{}{location}", bases[2])))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        r.headers()["range"],
        format!("0-{}", first.len() - 1).as_str()
    );
    let rest = layout::random_bytes(9 << 20);
    let killed_at = Instant::now();
    let location = loop {
        let r = admin(http.patch(format!("{}{location}", bases[2])))
            .header("content-type", "application/octet-stream")
            .header(
                "content-range",
                format!("{}-{}", first.len(), first.len() + rest.len() - 1),
            )
            .body(rest.clone())
            .send();
        match r {
            Ok(r) if r.status() == StatusCode::ACCEPTED => {
                break r.headers()["location"].to_str().unwrap().to_owned();
            }
            Ok(r) => assert_eq!(
                r.status(),
                StatusCode::RANGE_NOT_SATISFIABLE,
                "{:?}",
                r.text()
            ),
            // Refused (416) before the body was read: the connection
            // closed under the rest of it.
            Err(e) => assert!(e.is_request(), "{e}"),
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(60),
            "the dead replica's claim on the session never expired"
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    eprintln!(
        "cluster: the session continued {:?} after its replica died",
        killed_at.elapsed()
    );
    let whole = [first.as_slice(), &rest].concat();
    let d = sha256(&whole);
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = admin(http.put(format!("{}{location}{sep}digest={d}", bases[0])))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text());
    assert_eq!(get_blob(&bases[2], "cluster/crash", &d), whole);
    let crash_digest = d;
    let restarted = cluster.launch(1);
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

    // The replicas' change listeners killed, a tag moved meanwhile is seen
    // by the others on the next request (they answer from the database
    // until they listen again, then drop what they held); once they
    // listen again, they still do.
    let listeners = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{}'",
        berth_meta::changes::LISTENER_NAME
    );
    assert_eq!(cluster.pg.psql("cluster", &listeners), "3", "one each");
    cluster.pg.psql(
        "cluster",
        &listeners.replace("count(*)", "count(pg_terminate_backend(pid))"),
    );
    let three = push_small(&bases[0], "cluster/app", &img, "stable", &[3000]);
    for b in &bases[1..] {
        assert_eq!(
            manifest_digest(b, "cluster/app", "stable").1,
            Some(three.clone()),
            "{b}: no stale answer after losing its listener"
        );
    }
    let started = Instant::now();
    while cluster.pg.psql("cluster", &listeners) != "3" {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "listening again"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let four = push_small(&bases[0], "cluster/app", &img, "stable", &[4000]);
    for b in &bases[1..] {
        assert_eq!(
            manifest_digest(b, "cluster/app", "stable").1,
            Some(four.clone()),
            "{b} listening again"
        );
    }

    // GC on replica 1 while replicas 2 and 3 take pushes; afterwards every
    // tagged image pulls whole and every digest verifies. The grace period
    // is 5 s: the blobs of the uploads above, never referenced by a
    // manifest, are collected from the bucket by this run.
    std::thread::sleep(Duration::from_secs(6));
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
    let report: Value = r.json().unwrap();
    let deleted: Vec<&str> = report["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["digest"].as_str().unwrap())
        .collect();
    assert!(
        deleted.contains(&chunked_digest.as_str()) && deleted.contains(&crash_digest.as_str()),
        "{report}"
    );
    let mut pushed = Vec::new();
    for p in pushers {
        pushed.extend(p.join().unwrap());
    }
    for (repo, digest) in [
        ("cluster/chunks", &chunked_digest),
        ("cluster/crash", &crash_digest),
    ] {
        let r = admin(http.head(format!("{}/v2/{repo}/blobs/{digest}", bases[2])))
            .send()
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::NOT_FOUND,
            "{repo}@{digest} collected"
        );
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
    // Every tagged image, through every replica: the manifest and each
    // blob it names hash to their digests.
    for (repo, tag) in [("cluster/app", "stable"), ("cluster/multi", "v1")]
        .into_iter()
        .chain(pushed.iter().map(|(t, _)| ("cluster/busy", t.as_str())))
    {
        for base in &bases {
            verify_image(base, repo, tag);
        }
    }
    let log = cluster.replicas[0].log();
    assert!(!log.contains(crate::database::DB_PASSWORD));
}

#[test]
fn postgres_restarting_under_load_gives_503s_then_recovers() {
    let mut cluster = Cluster::start(1, None);
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

/// Starts a replica on PostgreSQL `url` and the shared data directory
/// `data` (blobs on its filesystem), its log and address file in
/// `work/replica-i`.
fn shared_dir_replica(url: &str, data: &Path, work: &Path, i: usize) -> Berth {
    let dir = work.join(format!("replica-{i}"));
    std::fs::create_dir_all(&dir).unwrap();
    let args = ["--auth", "token", "--database-url", url];
    let env = [("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)];
    Berth::launch(data, &args, None, &dir, &env)
}

/// Two replicas on one PostgreSQL and one data directory (`--storage fs`,
/// as on one host or a shared file system, docs/scale-out.md): a replica
/// starting while another streams a push into the shared `tmp/` leaves
/// that push alone; one chunked upload, each request through the other
/// replica, is whole; an image pushed through one is pulled through the
/// other.
#[test]
fn two_replicas_share_one_data_directory() {
    let pg = Postgres::start();
    pg.create_database("shared_dir");
    let url = crate::database::url_with_password(&pg, "shared_dir");
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let first = shared_dir_replica(&url, &data, work.path(), 0);

    // A single-request push streaming through the first replica, half
    // sent, while the second starts on the same directory.
    let body = layout::random_bytes(4 << 20);
    let digest = sha256(&body);
    let mut stream = std::net::TcpStream::connect(&first.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let auth = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN_PASSWORD}"))
    };
    let head = format!(
        "POST /v2/shared/slow/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: {}\r\n\
         Authorization: Basic {auth}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        first.addr,
        body.len()
    );
    use std::io::{Read as _, Write as _};
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body[..body.len() / 2]).unwrap();
    stream.flush().unwrap();
    // The half is in a file of the shared tmp/ before the second starts.
    let tmp = data.join("tmp");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_dir(&tmp).unwrap().next().is_none() {
        assert!(Instant::now() < deadline, "the push never reached tmp/");
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = shared_dir_replica(&url, &data, work.path(), 1);
    stream.write_all(&body[body.len() / 2..]).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 201"),
        "the push outlived the other replica's start: {answer}"
    );
    assert_eq!(get_blob(&second.url(), "shared/slow", &digest), body);

    // One chunked upload, the requests alternating between the replicas.
    let bases = [first.url(), second.url()];
    let chunks: Vec<Vec<u8>> = [3 << 20, 1 << 20, 5000, 2 << 20]
        .into_iter()
        .map(layout::random_bytes)
        .collect();
    let parts: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    let digest = chunked_upload(&bases, "shared/chunks", &parts);
    assert_eq!(
        get_blob(&bases[0], "shared/chunks", &digest),
        chunks.concat()
    );

    // An image pushed through one replica, pulled whole through the other.
    let dir = work.path().join("image");
    let image = push_small(&bases[1], "shared/app", &dir, "v1", &[2000, 70_000]);
    let (status, d) = manifest_digest(&bases[0], "shared/app", "v1");
    assert_eq!((status, d), (StatusCode::OK, Some(image)));
    verify_image(&bases[0], "shared/app", "v1");
}
