//! Starting the two servers and reading their CPU time and memory from
//! `/proc`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde::Serialize;

use crate::objstore::ObjectStore;
use crate::scenario::StaticFile;
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
    /// One berth replica on the engines of a multi-replica berth (`--peer
    /// one-replica`).
    BerthOneReplica,
    /// nginx serving the manifest as a static file (`--peer nginx`): what
    /// this machine's HTTP stack can do for a body of that size.
    Nginx,
    /// berth with no scrub running (`--peer unscrubbed`).
    BerthUnscrubbed,
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
            Kind::BerthOneReplica => "berth-one-replica",
            Kind::Nginx => "nginx",
            Kind::BerthUnscrubbed => "berth-unscrubbed",
        }
    }
}

/// A running server (one process, or several replicas sharing one
/// database and one object store), killed on drop.
pub struct Server {
    /// Which one.
    pub kind: Kind,
    /// Bound loopback addresses, one per process; connections are spread
    /// over them in turn (a client-side load balancer).
    addrs: Vec<SocketAddr>,
    next: AtomicUsize,
    /// `Authorization` value every request must carry (berth with auth on).
    pub authorization: Option<String>,
    /// Client TLS configuration when the server speaks HTTPS.
    pub tls: Option<tokio_rustls::TlsConnector>,
    children: Vec<Child>,
}

/// How to start berth.
#[derive(Clone, Copy)]
pub struct BerthSpec<'a> {
    /// The binary.
    pub bin: &'a Path,
    /// Which berth this is in the report.
    pub kind: Kind,
    /// `--auth token` with the site admin's Basic credentials on every
    /// request (the cached-login path of CI clients sending Basic), or
    /// open like the reference registry.
    pub auth: bool,
    /// HTTPS with this certificate.
    pub tls: Option<&'a Tls>,
    /// Blobs in this object store, under the data directory's name.
    pub s3: Option<&'a ObjectStore>,
    /// Metrics and the access log.
    pub observe: Observe,
    /// Metadata in this PostgreSQL database instead of SQLite.
    pub database_url: Option<&'a str>,
    /// Processes sharing the database and the object store.
    pub replicas: usize,
    /// Run under valgrind's callgrind, writing its profile to this file
    /// (`--instructions`).
    pub callgrind: Option<&'a Path>,
}

/// The site admin's password of a berth started with authentication.
pub(crate) const BENCH_ADMIN_PASSWORD: &str = "berth-bench-admin-password";

const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Start-up under callgrind is some fifty times slower.
const CALLGRIND_START_TIMEOUT: Duration = Duration::from_secs(300);
/// Linux reports utime/stime in USER_HZ, 100 on every mainstream platform.
const TICKS_PER_SEC: f64 = 100.0;

impl Server {
    /// A (not yet opened) connection to this server, with its credentials:
    /// to each replica in turn.
    pub fn conn(&self) -> crate::client::Conn {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.addrs.len().max(1);
        crate::client::Conn::new(self.addrs[i])
            .with_authorization(self.authorization.clone())
            .with_tls(self.tls.clone())
    }

    /// The (first) process's address.
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addrs.first().copied()
    }

    /// Starts `berth serve` as `spec` says on a fresh `data` directory (one
    /// subdirectory per replica when there are several; they start one
    /// after the other, so the first migrates the database and creates the
    /// site admin).
    pub fn berth(spec: BerthSpec<'_>, data: &Path) -> anyhow::Result<Server> {
        Server::berth_with(spec, data, &[])
    }

    /// [`Server::berth`] with `extra` arguments to `berth serve`.
    pub fn berth_with(
        spec: BerthSpec<'_>,
        data: &Path,
        extra: &[String],
    ) -> anyhow::Result<Server> {
        std::fs::create_dir_all(data)?;
        let authorization = spec.auth.then(|| {
            use base64::Engine as _;
            let raw = format!("admin:{BENCH_ADMIN_PASSWORD}");
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        });
        let mut server = Server {
            kind: spec.kind,
            addrs: Vec::new(),
            next: AtomicUsize::new(0),
            authorization,
            tls: spec.tls.map(|t| t.connector.clone()),
            children: Vec::new(),
        };
        let replicas = spec.replicas.max(1);
        for i in 0..replicas {
            let dir = if replicas == 1 {
                data.to_path_buf()
            } else {
                data.join(format!("replica-{i}"))
            };
            let (child, addr) = start_berth(&spec, &dir, data, extra)?;
            server.children.push(child);
            server.addrs.push(addr);
        }
        Ok(server)
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
        Server::distribution_with(bin, data, tls, s3, "")
    }

    /// [`Server::distribution`] with `extra` top-level configuration
    /// (YAML; `proxy:` for its pull-through mode).
    pub fn distribution_with(
        bin: &Path,
        data: &Path,
        tls: Option<&Tls>,
        s3: Option<&ObjectStore>,
        extra: &str,
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
        yaml.push_str(extra);
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
            addrs: Vec::new(),
            next: AtomicUsize::new(0),
            authorization: None,
            tls: tls.map(|t| t.connector.clone()),
            children: vec![child],
        };
        let deadline = Instant::now() + START_TIMEOUT;
        let pid = server.children[0].id();
        loop {
            if let Some(port) = listening_port(pid) {
                server.addrs.push(SocketAddr::from(([127, 0, 0, 1], port)));
                return Ok(server);
            }
            if let Some(status) = server.children[0].try_wait()? {
                bail!("{} exited during start: {status}", bin.display());
            }
            if Instant::now() > deadline {
                bail!("{} did not listen within {START_TIMEOUT:?}", bin.display());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts nginx (`bin`) with its configuration, temporary files and
    /// document root under `data`, serving `file` (if any) with its media
    /// type and `Docker-Content-Digest`, as many worker processes as the
    /// machine has cores (berth's runtime has one thread per core), keep-alive
    /// without a request limit, no access log. nginx cannot bind port 0, so
    /// the bench reserves a free port first and retries if another process
    /// takes it in between.
    pub fn nginx(bin: &Path, data: &Path, file: Option<&StaticFile>) -> anyhow::Result<Server> {
        let root = data.join("root");
        std::fs::create_dir_all(data.join("tmp"))?;
        std::fs::create_dir_all(&root)?;
        let mut location = String::new();
        if let Some(f) = file {
            let rel = f.path.trim_start_matches('/');
            let target = root.join(rel);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&target, &f.body)?;
            location = format!(
                "    location = {} {{\n      default_type {};\n      add_header Docker-Content-Digest {};\n    }}\n",
                f.path, f.media_type, f.digest
            );
        }
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut last_error = None;
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let d = data.display();
            let config = format!(
                "worker_processes {workers};\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\nevents {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n  sendfile on;\n  tcp_nodelay on;\n  keepalive_requests 100000000;\n  keepalive_timeout 300s;\n  types {{ }}\n  default_type application/octet-stream;\n  client_body_temp_path {d}/tmp;\n  proxy_temp_path {d}/tmp;\n  fastcgi_temp_path {d}/tmp;\n  uwsgi_temp_path {d}/tmp;\n  scgi_temp_path {d}/tmp;\n  server {{\n    listen 127.0.0.1:{port};\n    root {};\n{location}  }}\n}}\n",
                root.display()
            );
            let conf = data.join("nginx.conf");
            std::fs::write(&conf, config)?;
            let mut child = Command::new(bin)
                .arg("-c")
                .arg(&conf)
                .arg("-e")
                .arg(data.join("error.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| {
                    format!("starting {} (apt-get install nginx-light)", bin.display())
                })?;
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                if listening_port(child.id()) == Some(port) {
                    return Ok(Server {
                        kind: Kind::Nginx,
                        addrs: vec![SocketAddr::from(([127, 0, 0, 1], port))],
                        next: AtomicUsize::new(0),
                        authorization: None,
                        tls: None,
                        children: vec![child],
                    });
                }
                if let Some(status) = child.try_wait()? {
                    let log = std::fs::read_to_string(data.join("error.log")).unwrap_or_default();
                    last_error = Some(format!(
                        "nginx exited during start ({status}): {}",
                        log.trim()
                    ));
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("nginx did not listen within {START_TIMEOUT:?}");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        bail!(
            "{}",
            last_error.unwrap_or_else(|| "nginx did not start".to_owned())
        )
    }

    /// User + system CPU seconds used so far, by all processes and their
    /// child processes (nginx's workers).
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let mut total = 0.0;
        for c in &self.children {
            total += cpu_seconds(c.id())?;
            for w in child_processes(c.id()) {
                total += cpu_seconds(w).unwrap_or(0.0);
            }
        }
        Ok(total)
    }

    /// `VmRSS` and `VmHWM` (peak) in bytes; of the largest process when
    /// there are several (per replica).
    pub fn memory(&self) -> anyhow::Result<(u64, u64)> {
        let (mut rss, mut peak) = (0, 0);
        for c in &self.children {
            let (r, p) = memory(c.id())?;
            rss = rss.max(r);
            peak = peak.max(p);
        }
        Ok((rss, peak))
    }

    /// `RssAnon` in bytes (the heap and stacks: what `VmRSS` holds beyond
    /// pages mapped from files, mostly the binary's code); of the largest
    /// process when there are several.
    pub fn anonymous_rss(&self) -> anyhow::Result<u64> {
        let mut most = 0;
        for c in &self.children {
            most = most.max(status_kib(c.id(), "RssAnon:")? * 1024);
        }
        Ok(most)
    }

    /// Resets the peak RSS to the current RSS (`clear_refs` 5); returns
    /// whether the kernel allowed it.
    pub fn reset_peak(&self) -> bool {
        self.children
            .iter()
            .all(|c| std::fs::write(format!("/proc/{}/clear_refs", c.id()), "5").is_ok())
    }
}

impl Server {
    /// Sends a registry token from the server's `/token` (pull and push on
    /// the bench repositories) as `Authorization: Bearer` from now on, as
    /// clients do after the token flow (`--berth-auth bearer`).
    pub async fn use_bearer_token(&mut self) -> anyhow::Result<()> {
        let scopes = crate::ops::BENCH_REPOSITORIES.map(|r| format!("repository:{r}:pull,push"));
        let token = crate::ops::fetch_token(&mut self.conn(), &scopes)
            .await
            .with_context(|| format!("fetching {}'s registry token", self.kind.name()))?;
        self.authorization = Some(format!("Bearer {token}"));
        Ok(())
    }

    /// Stops every process with SIGTERM (berth drains and exits; under
    /// callgrind the profile is written then) and waits for it, failing
    /// when one does not exit cleanly within `patience`.
    pub fn terminate(mut self, patience: Duration) -> anyhow::Result<()> {
        for c in &mut self.children {
            let sent = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status()
                .context("running kill")?;
            anyhow::ensure!(sent.success(), "kill -TERM {} failed", c.id());
        }
        let deadline = Instant::now() + patience;
        for c in &mut self.children {
            loop {
                if let Some(status) = c.try_wait()? {
                    anyhow::ensure!(status.success(), "berth exited with {status} on SIGTERM");
                    break;
                }
                if Instant::now() > deadline {
                    bail!("berth did not exit within {patience:?} of SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.children.clear();
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Processes whose parent is `pid`.
fn child_processes(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|stat| {
                    let rest = stat.rsplit_once(')')?.1.to_owned();
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// User + system CPU seconds of process `pid`.
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
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

/// `VmRSS` and `VmHWM` (peak) of process `pid`, in bytes.
pub(crate) fn memory(pid: u32) -> anyhow::Result<(u64, u64)> {
    Ok((
        status_kib(pid, "VmRSS:")? * 1024,
        status_kib(pid, "VmHWM:")? * 1024,
    ))
}

/// A `kB` field of `/proc/PID/status`.
fn status_kib(pid: u32, name: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(name))
        .ok_or_else(|| anyhow!("no {name} in /proc status"))?;
    Ok(line[name.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?)
}

/// Starts one berth process on `dir`; `group` names the object-store
/// prefix (shared by replicas). Returns once it reported its address.
fn start_berth(
    spec: &BerthSpec<'_>,
    dir: &Path,
    group: &Path,
    extra: &[String],
) -> anyhow::Result<(Child, SocketAddr)> {
    std::fs::create_dir_all(dir)?;
    let addr_file = dir.with_extension("addr");
    let _ = std::fs::remove_file(&addr_file);
    let mut cmd = match spec.callgrind {
        Some(out) => {
            let mut c = Command::new("valgrind");
            c.args(["--tool=callgrind", "--quiet"])
                .arg(format!("--callgrind-out-file={}", out.display()))
                .arg(spec.bin);
            c
        }
        None => Command::new(spec.bin),
    };
    cmd.arg("serve");
    if let Some(t) = spec.tls {
        cmd.arg("--tls-cert")
            .arg(&t.cert)
            .arg("--tls-key")
            .arg(&t.key);
    }
    if let Some(s3) = spec.s3 {
        cmd.arg("--storage")
            .arg(format!("s3://{}/{}", s3.bucket(), prefix(group)?))
            .args(["--s3-endpoint", s3.endpoint(), "--s3-path-style"])
            .envs(s3.env());
    }
    if spec.auth {
        // A registry token (`--berth-auth bearer`) outlives the scenario.
        cmd.args(["--token-ttl", "1h"]);
    }
    if let Some(url) = spec.database_url {
        cmd.arg("--database-url").arg(url);
    }
    let stderr = match spec.observe {
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
                std::fs::File::create(dir.with_extension("log"))
                    .context("creating berth's log file")?,
            )
        }
        Observe::Nothing => {
            cmd.args(["--log-level", "warn"])
                .args(["--metrics", "false", "--access-log", "false"]);
            Stdio::inherit()
        }
    };
    let mut child = cmd
        .args(["--listen", "127.0.0.1:0"])
        .args(["--auth", if spec.auth { "token" } else { "none" }])
        .env("BERTH_ADMIN_PASSWORD", BENCH_ADMIN_PASSWORD)
        .arg("--data-dir")
        .arg(dir)
        .arg("--addr-file")
        .arg(&addr_file)
        .args(extra)
        .env_remove("BERTH_CONFIG")
        .env_remove("BERTH_DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("starting {}", spec.bin.display()))?;
    let timeout = if spec.callgrind.is_some() {
        CALLGRIND_START_TIMEOUT
    } else {
        START_TIMEOUT
    };
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(a) = std::fs::read_to_string(&addr_file) {
            if let Ok(addr) = a.trim().parse() {
                return Ok((child, addr));
            }
        }
        if let Some(status) = child.try_wait()? {
            bail!("berth exited during start: {status}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("berth did not report its address within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
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
