//! Shared test harness: real servers on random loopback ports.
//!
//! [`Berth`] runs the real `berth serve` binary (built by cargo for this
//! test binary) with `--listen 127.0.0.1:0` and a temporary data directory,
//! and learns the bound port from `--addr-file`, so there is no port race.
//! [`Distribution`] does the same for the reference registry (Debian's
//! `docker-registry`, CNCF Distribution 2.8), which logs its bound address.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `berth serve`.
pub struct Berth {
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// The data directory.
    pub data_dir: PathBuf,
    child: Child,
    _tmp: Option<tempfile::TempDir>,
    log: PathBuf,
    /// Whether it serves HTTPS (`--tls-cert` or `tls_cert` given).
    pub tls: bool,
}

/// The password of `admin` on servers started by [`Berth::start_auth`].
pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";

/// Path of the `berth` binary under test: cargo's build, or
/// `BERTH_TEST_BIN` (to measure a release build with the same tests).
pub fn berth_bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("BERTH_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_berth").to_owned())
    })
}

impl Berth {
    /// Starts berth on a fresh temporary data directory.
    pub fn start() -> Berth {
        Berth::start_with(&[], None)
    }

    /// Starts berth with extra arguments and an optional TOML config text.
    pub fn start_with(extra: &[&str], config: Option<&str>) -> Berth {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().join("data");
        let mut b = Berth::start_in(&data, extra, config, tmp.path());
        b._tmp = Some(tmp);
        b
    }

    /// Starts berth on `data_dir` (kept after the server stops, for restart
    /// tests); `work` holds the log, address file and config. Without an
    /// `--auth` argument (or an `auth` key in `config`) the server runs
    /// open (`--auth none`), as the distribution API tests expect; see
    /// [`Berth::start_auth`] for a server with authentication.
    pub fn start_in(data_dir: &Path, extra: &[&str], config: Option<&str>, work: &Path) -> Berth {
        Berth::launch(data_dir, extra, config, work, &[])
    }

    /// Starts berth on `data_dir` with extra environment variables.
    pub fn launch(
        data_dir: &Path,
        extra: &[&str],
        config: Option<&str>,
        work: &Path,
        env: &[(&str, &str)],
    ) -> Berth {
        let addr_file = work.join(format!("addr-{}", std::process::id()));
        let _ = std::fs::remove_file(&addr_file);
        let log = work.join("berth.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(berth_bin());
        cmd.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--addr-file")
            .arg(&addr_file)
            .arg("--log-level")
            .arg("info")
            .args(extra)
            .env_remove("BERTH_CONFIG")
            .env_remove("BERTH_AUTH")
            .env_remove("BERTH_ADMIN_PASSWORD")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log_file);
        let auth_given = extra.iter().any(|a| a.starts_with("--auth"))
            || config.is_some_and(|c| c.lines().any(|l| l.trim_start().starts_with("auth ")));
        if !auth_given {
            cmd.args(["--auth", "none"]);
        }
        if let Some(text) = config {
            let cfg = work.join("berth.toml");
            std::fs::write(&cfg, text).expect("write config");
            cmd.arg("--config").arg(cfg);
        }
        let child = cmd.spawn().expect("spawn berth");
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = loop {
            if let Ok(a) = std::fs::read_to_string(&addr_file) {
                if !a.is_empty() {
                    break a;
                }
            }
            assert!(
                Instant::now() < deadline,
                "berth did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let tls = extra.iter().any(|a| a.starts_with("--tls-cert"))
            || config.is_some_and(|c| c.lines().any(|l| l.trim_start().starts_with("tls_cert")));
        Berth {
            addr,
            data_dir: data_dir.to_path_buf(),
            child,
            _tmp: None,
            log,
            tls,
        }
    }

    /// Starts berth with authentication on (`--auth token`), the site
    /// administrator `admin` bootstrapped with [`ADMIN_PASSWORD`], and
    /// `extra` arguments.
    pub fn start_auth(extra: &[&str], config: Option<&str>) -> Berth {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().join("data");
        let mut args = vec!["--auth", "token"];
        args.extend_from_slice(extra);
        let env = [("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)];
        let mut b = Berth::launch(&data, &args, config, tmp.path(), &env);
        b._tmp = Some(tmp);
        b
    }

    /// `http://127.0.0.1:PORT` (`https://` when it serves TLS)
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the server (SIGKILL: like a crash).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits (at most 20 s) for the server to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "berth did not exit on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running reference registry (CNCF Distribution).
pub struct Distribution {
    /// `127.0.0.1:PORT`
    pub addr: String,
    child: Child,
    _tmp: tempfile::TempDir,
}

/// Path of the reference registry binary.
pub const DISTRIBUTION_BIN: &str = "/usr/bin/docker-registry";

impl Distribution {
    /// Starts the reference registry with filesystem storage and deletes
    /// enabled.
    pub fn start() -> Distribution {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cfg = tmp.path().join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:0\n",
                tmp.path().join("data").display()
            ),
        )
        .expect("config");
        let mut child = Command::new(DISTRIBUTION_BIN)
            .arg("serve")
            .arg(&cfg)
            .env("OTEL_TRACES_EXPORTER", "none")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn docker-registry (apt-get install docker-registry)");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(i) = line.find("listening on ") {
                        let rest = &line[i + "listening on ".len()..];
                        let addr: String = rest
                            .chars()
                            .take_while(|c| !c.is_whitespace() && *c != '"')
                            .collect();
                        let _ = tx.send(addr);
                        sent = true;
                    }
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("docker-registry did not report its address");
        let addr = addr.replace("[::]", "127.0.0.1");
        Distribution {
            addr,
            child,
            _tmp: tmp,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether an external tool is on PATH (tests of optional clients skip,
/// loudly, when it is not; the test command installs all of them).
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
