//! Starting the two servers and reading their CPU time and memory from
//! `/proc`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde::Serialize;

use crate::objstore::ObjectStore;
use crate::tls::Tls;

/// Which registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// berth.
    Berth,
    /// CNCF Distribution (the reference registry).
    Distribution,
    /// berth with metrics and the access log off (`--peer unobserved`).
    BerthUnobserved,
}

/// How a berth under measurement observes itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observe {
    /// berth's defaults (metrics on, access log on but filtered out by
    /// `--log-level warn`): the comparison with the reference registry.
    Defaults,
    /// Metrics on and the access log written at `info` to the server's
    /// log file (`DATA.log`).
    Everything,
    /// Metrics and the access log off: the middleware is not installed.
    Nothing,
}

impl Kind {
    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Berth => "berth",
            Kind::Distribution => "distribution",
            Kind::BerthUnobserved => "berth-unobserved",
        }
    }
}

/// A running server, killed on drop.
pub struct Server {
    /// Which one.
    pub kind: Kind,
    /// Its bound loopback address.
    pub addr: SocketAddr,
    /// `Authorization` value every request must carry (berth with auth on).
    pub authorization: Option<String>,
    /// Client TLS configuration when the server speaks HTTPS.
    pub tls: Option<tokio_rustls::TlsConnector>,
    child: Child,
}

/// The site admin's password of a berth started with authentication.
const BENCH_ADMIN_PASSWORD: &str = "berth-bench-admin-password";

const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Linux reports utime/stime in USER_HZ, 100 on every mainstream platform.
const TICKS_PER_SEC: f64 = 100.0;

impl Server {
    /// A (not yet opened) connection to this server, with its credentials.
    pub fn conn(&self) -> crate::client::Conn {
        crate::client::Conn::new(self.addr)
            .with_authorization(self.authorization.clone())
            .with_tls(self.tls.clone())
    }

    /// Starts `berth serve` on a fresh `data` directory: open like the
    /// reference registry it is compared with, or with authentication on
    /// (`auth`), every request then carrying the site admin's Basic
    /// credentials (the cached-login path of CI clients sending Basic).
    /// With `tls`, it serves HTTPS with that certificate; with `s3`, it
    /// keeps blobs in that object store under the data directory's name;
    /// `observe` sets metrics and the access log.
    pub fn berth(
        bin: &Path,
        data: &Path,
        auth: bool,
        tls: Option<&Tls>,
        s3: Option<&ObjectStore>,
        observe: Observe,
    ) -> anyhow::Result<Server> {
        std::fs::create_dir_all(data)?;
        let addr_file = data.with_extension("addr");
        let _ = std::fs::remove_file(&addr_file);
        let mut cmd = Command::new(bin);
        cmd.arg("serve");
        if let Some(t) = tls {
            cmd.arg("--tls-cert")
                .arg(&t.cert)
                .arg("--tls-key")
                .arg(&t.key);
        }
        if let Some(s3) = s3 {
            cmd.arg("--storage")
                .arg(format!("s3://{}/{}", s3.bucket(), prefix(data)?))
                .args(["--s3-endpoint", s3.endpoint(), "--s3-path-style"])
                .envs(s3.env());
        }
        let stderr = match observe {
            Observe::Defaults => {
                cmd.args(["--log-level", "warn"]);
                Stdio::inherit()
            }
            Observe::Everything => {
                cmd.args(["--log-level", "warn,berth::access=info"]).args([
                    "--metrics",
                    "true",
                    "--access-log",
                    "true",
                ]);
                Stdio::from(
                    std::fs::File::create(data.with_extension("log"))
                        .context("creating berth's log file")?,
                )
            }
            Observe::Nothing => {
                cmd.args(["--log-level", "warn"]).args([
                    "--metrics",
                    "false",
                    "--access-log",
                    "false",
                ]);
                Stdio::inherit()
            }
        };
        let child = cmd
            .args(["--listen", "127.0.0.1:0"])
            .args(["--auth", if auth { "token" } else { "none" }])
            .env("BERTH_ADMIN_PASSWORD", BENCH_ADMIN_PASSWORD)
            .arg("--data-dir")
            .arg(data)
            .arg("--addr-file")
            .arg(&addr_file)
            .env_remove("BERTH_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let authorization = auth.then(|| {
            use base64::Engine as _;
            let raw = format!("admin:{BENCH_ADMIN_PASSWORD}");
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        });
        let mut server = Server {
            kind: if observe == Observe::Nothing {
                Kind::BerthUnobserved
            } else {
                Kind::Berth
            },
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            authorization,
            tls: tls.map(|t| t.connector.clone()),
            child,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(a) = std::fs::read_to_string(&addr_file) {
                if let Ok(addr) = a.trim().parse() {
                    server.addr = addr;
                    return Ok(server);
                }
            }
            if let Some(status) = server.child.try_wait()? {
                bail!("berth exited during start: {status}");
            }
            if Instant::now() > deadline {
                bail!("berth did not report its address within {START_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts the reference registry with filesystem storage in `data` and
    /// deletes enabled, logging at `warn` (at `info` it logs every request,
    /// which berth does not do either). Its port is learned race-free from
    /// the listening socket the process owns. With `tls`, it serves HTTPS
    /// with that certificate (`http.tls`).
    /// With `s3`, it keeps blobs in that object store (its `s3` driver)
    /// under the data directory's name, and streams blob GETs itself as
    /// berth does by default (no redirect to the store).
    pub fn distribution(
        bin: &Path,
        data: &Path,
        tls: Option<&Tls>,
        s3: Option<&ObjectStore>,
    ) -> anyhow::Result<Server> {
        std::fs::create_dir_all(data)?;
        let config = data.with_extension("yml");
        let driver = match s3 {
            Some(s3) => {
                let (access, secret) = s3.keys();
                format!(
                    "  s3:\n    accesskey: {access}\n    secretkey: {secret}\n    region: {}\n    regionendpoint: {}\n    bucket: {}\n    rootdirectory: /{}\n    secure: false\n    v4auth: true\n  redirect:\n    disable: true\n",
                    crate::objstore::REGION,
                    s3.endpoint(),
                    s3.bucket(),
                    prefix(data)?
                )
            }
            None => format!("  filesystem:\n    rootdirectory: {}\n", data.display()),
        };
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n{driver}  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: 127.0.0.1:0\n  secret: berth-bench-not-secret\n"
        );
        if let Some(t) = tls {
            yaml.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                t.cert.display(),
                t.key.display()
            ));
        }
        std::fs::write(&config, yaml)?;
        let child = Command::new(bin)
            .arg("serve")
            .arg(&config)
            .env("OTEL_TRACES_EXPORTER", "none")
            // aws-sdk-go refuses to start with a custom CA bundle and the
            // plain-HTTP transport the loopback S3 server needs.
            .env_remove("AWS_CA_BUNDLE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (apt-get install docker-registry)",
                    bin.display()
                )
            })?;
        let mut server = Server {
            kind: Kind::Distribution,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            authorization: None,
            tls: tls.map(|t| t.connector.clone()),
            child,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(port) = listening_port(server.pid()) {
                server.addr.set_port(port);
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait()? {
                bail!("{} exited during start: {status}", bin.display());
            }
            if Instant::now() > deadline {
                bail!("{} did not listen within {START_TIMEOUT:?}", bin.display());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User + system CPU seconds used so far.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        // Fields after the parenthesised command name start at field 3.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let tick = |i: usize| -> anyhow::Result<f64> {
            Ok(f.get(i)
                .ok_or_else(|| anyhow!("short /proc stat"))?
                .parse::<f64>()?)
        };
        Ok((tick(11)? + tick(12)?) / TICKS_PER_SEC)
    }

    /// `VmRSS` and `VmHWM` (peak) in bytes.
    pub fn memory(&self) -> anyhow::Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let field = |name: &str| -> anyhow::Result<u64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .ok_or_else(|| anyhow!("no {name} in /proc status"))?;
            let kib: u64 = line[name.len()..]
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()?;
            Ok(kib * 1024)
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// Resets the peak RSS to the current RSS (`clear_refs` 5); returns
    /// whether the kernel allowed it.
    pub fn reset_peak(&self) -> bool {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5").is_ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The object-store prefix of a server: its data directory's name
/// (`berth-SCENARIO`, `distribution-SCENARIO`, ...).
fn prefix(data: &Path) -> anyhow::Result<String> {
    data.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("{} has no usable name", data.display()))
}

/// Paths of the data directories of berth and of `peer` for one scenario,
/// under `work`.
pub fn data_dirs(work: &Path, peer: Kind, scenario: &str) -> (PathBuf, PathBuf) {
    (
        work.join(format!("berth-{scenario}")),
        work.join(format!("{}-{scenario}", peer.name())),
    )
}

/// The port of a TCP socket in LISTEN state on 127.0.0.1 owned by `pid`.
fn listening_port(pid: u32) -> Option<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (local, state, inode) = (f.get(1)?, f.get(3)?, f.get(9)?);
        if *state != "0A" || !inodes.iter().any(|i| i == inode) {
            return None;
        }
        let (ip, port) = local.split_once(':')?;
        (ip == "0100007F").then(|| u16::from_str_radix(port, 16).ok())?
    })
}
