//! One private Docker daemon per test binary, shared by the `docker` and
//! `ctr` tests (ctr talks to the containerd this dockerd runs).
//!
//! It lives under its own temp directory and touches nothing of the host's
//! Docker: its own data root, exec root, pidfile, unix socket, daemon
//! configuration (the trust key too), the vfs storage driver, no iptables
//! and no bridge. Loopback registries are insecure (plain HTTP) for it, as
//! they are by default.
//!
//! It is started with `HTTPS_PROXY` pointing at a CONNECT proxy of this
//! test process that sends `NAME.test:PORT` to `127.0.0.1:PORT` and refuses
//! anything else: a registry name that does not resolve is secure for the
//! daemon, which then verifies its certificate against `certs.d` (the TLS
//! tests). Loopback addresses are never proxied (Go's proxy rules), so the
//! other tests are unaffected.
//!
//! ```text
//! /tmp/berth-dockerd-XXXXXX/
//!   daemon.json     {"deprecated-key-path": ".../key.json"}
//!   docker.sock     the API socket (DOCKER_HOST=unix://...)
//!   dockerd.log
//!   data/           --data-root
//!   exec/           --exec-root; exec/containerd/containerd.sock for ctr
//! ```
//!
//! Statics are never dropped, so a small shell watchdog started with the
//! daemon stops it (SIGTERM, then SIGKILL) and removes the directory once
//! this test process has exited.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common;

/// The shared daemon.
pub struct Daemon {
    dir: PathBuf,
    /// dockerd and its watchdog: kept, never waited for (they outlive
    /// the tests by design).
    _processes: [Child; 2],
}

static DAEMON: OnceLock<Daemon> = OnceLock::new();

/// The daemon of this test binary, started on first use.
pub fn daemon() -> &'static Daemon {
    DAEMON.get_or_init(Daemon::start)
}

/// Asserts that `tool` is installed: a missing client is a failure, never
/// a skip (`scripts/install-test-deps.sh` installs every one).
pub fn need(tool: &str) {
    assert!(
        common::have(tool),
        "`{tool}` is not installed; scripts/install-test-deps.sh installs it"
    );
}

/// Stops `dockerd` (pid `$2`) when the test process (pid `$1`) is gone,
/// then removes the daemon's directory (`$3`).
const WATCHDOG: &str = r#"
parent=$1 daemon=$2 dir=$3
while kill -0 "$parent" 2>/dev/null; do sleep 0.5; done
kill -TERM "$daemon" 2>/dev/null
for _ in $(seq 1 40); do kill -0 "$daemon" 2>/dev/null || break; sleep 0.5; done
if kill -0 "$daemon" 2>/dev/null; then
  kill -KILL "$daemon" 2>/dev/null
  pid=$(cat "$dir/exec/containerd/containerd.pid" 2>/dev/null) && kill -KILL "$pid" 2>/dev/null
  sleep 1
fi
umount "$dir/data" 2>/dev/null
rm -rf "$dir"
"#;

impl Daemon {
    fn start() -> Daemon {
        Daemon::start_with(serde_json::json!({}))
    }

    /// Starts a daemon of its own whose `daemon.json` has the keys of
    /// `config` too (the mirror tests' `registry-mirrors`); it is stopped
    /// when the test process ends, as the shared one is.
    pub fn start_with(config: serde_json::Value) -> Daemon {
        need("dockerd");
        need("docker");
        let dir = tempfile::Builder::new()
            .prefix("berth-dockerd-")
            .tempdir_in("/tmp")
            .expect("tempdir")
            .keep();
        let mut json = serde_json::json!({ "deprecated-key-path": dir.join("key.json") });
        if let (Some(all), Some(extra)) = (json.as_object_mut(), config.as_object()) {
            all.extend(extra.clone());
        }
        std::fs::write(dir.join("daemon.json"), json.to_string()).expect("daemon.json");
        let log = std::fs::File::create(dir.join("dockerd.log")).expect("log");
        let proxy = connect_proxy();
        let socket = dir.join("docker.sock");
        let child = Command::new("dockerd")
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("--host")
            .arg(format!("unix://{}", socket.display()))
            .args([
                "--storage-driver",
                "vfs",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
                "--bridge=none",
                "--userland-proxy=false",
                "--insecure-registry",
                "127.0.0.0/8",
            ])
            .env("HTTPS_PROXY", format!("http://{proxy}"))
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        let watchdog = Command::new("sh")
            .args(["-c", WATCHDOG, "watchdog"])
            .arg(std::process::id().to_string())
            .arg(child.id().to_string())
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the dockerd watchdog");
        let d = Daemon {
            dir,
            _processes: [child, watchdog],
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = d
                .docker(&d.dir, &["version", "--format", "{{.Server.Version}}"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "dockerd did not start: {}",
                std::fs::read_to_string(d.dir.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        d
    }

    /// The daemon's address for clients (`DOCKER_HOST`).
    pub fn host(&self) -> String {
        format!("unix://{}", self.dir.join("docker.sock").display())
    }

    /// A `docker` command against this daemon, with the client
    /// configuration (logins) in `config`.
    pub fn docker(&self, config: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", config)
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .args(args);
        cmd
    }

    /// A `ctr` command against this daemon's containerd, in `namespace`.
    pub fn ctr(&self, namespace: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(self.dir.join("exec/containerd/containerd.sock"))
            .arg("--namespace")
            .arg(namespace)
            .args(args);
        cmd
    }
}

/// Starts the CONNECT proxy (threads that end with the test process) and
/// returns its address: `CONNECT NAME.test:PORT` is tunnelled to
/// `127.0.0.1:PORT`; any other target gets a 403.
fn connect_proxy() -> String {
    use std::io::{BufRead, BufReader, Write};
    use std::net::{TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
    let addr = listener.local_addr().expect("proxy address").to_string();
    std::thread::spawn(move || {
        for client in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(client.try_clone().expect("clone"));
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    return;
                }
                loop {
                    let mut header = String::new();
                    match reader.read_line(&mut header) {
                        Ok(0) | Err(_) => return,
                        Ok(_) if header == "\r\n" => break,
                        Ok(_) => {}
                    }
                }
                let target = line.split_whitespace().nth(1).unwrap_or("");
                let port = target
                    .rsplit_once(':')
                    .filter(|(host, _)| host.ends_with(".test"))
                    .and_then(|(_, p)| p.parse::<u16>().ok());
                let mut client = client;
                let Some(port) = port else {
                    let _ =
                        client.write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n");
                    return;
                };
                let Ok(server) = TcpStream::connect(("127.0.0.1", port)) else {
                    let _ =
                        client.write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n");
                    return;
                };
                if client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .is_err()
                {
                    return;
                }
                let (mut c2, mut s2) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                let mut server = server;
                // Bytes the reader buffered past the request head go first.
                let buffered = reader.buffer().to_vec();
                if !buffered.is_empty() && server.write_all(&buffered).is_err() {
                    return;
                }
                let up = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c2, &mut server);
                    let _ = server.shutdown(std::net::Shutdown::Write);
                });
                let _ = std::io::copy(&mut s2, &mut client);
                let _ = client.shutdown(std::net::Shutdown::Write);
                let _ = up.join();
            });
        }
    });
    addr
}
