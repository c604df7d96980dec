//! Fixtures shared by berth's test suites: a throwaway PostgreSQL server
//! ([`Postgres`]) for the metadata suite and the `berth` integration
//! tests, and a throwaway S3 server ([`weed::Weed`]) for the store suite,
//! the integration tests and `berth bench --storage s3`; a Trivy
//! database made from OSV records ([`trivy`]) for the scan oracle test and
//! `berth bench --scenarios scan-vs-trivy`; an SPDX document of many
//! packages ([`spdx_document`]) for the web UI's test and bench.
//!
//! The server runs the Debian PostgreSQL binaries (`apt-get install
//! postgresql`; `scripts/install-test-deps.sh` installs them) on a Unix
//! socket in a temporary directory: no TCP port, so no port race, and
//! nothing outside the directory is touched. As root (CI), the server runs
//! as the `postgres` user through `setpriv`, which execs rather than forks,
//! so the process the fixture holds is the server itself and can be
//! stopped and restarted by the tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod trivy;
pub mod weed;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The port number in the socket's name (`.s.PGSQL.5432`); no TCP port
/// is opened.
const PORT: &str = "5432";

/// A running throwaway PostgreSQL cluster; stopped (fast) when dropped.
pub struct Postgres {
    child: Option<Child>,
    dir: tempfile::TempDir,
}

/// The newest installed PostgreSQL server binary `name`.
fn pg_bin(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .collect();
    dirs.sort();
    dirs.into_iter()
        .rev()
        .map(|d| d.join(name))
        .find(|p| p.exists())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false)
}

/// `cmd` run as the `postgres` user when we are root (PostgreSQL refuses
/// to run as root), exec'd in place so the child is the program itself.
fn as_postgres_user(cmd: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--clear-groups",
            "--",
        ])
        .arg(cmd);
        c
    } else {
        Command::new(cmd)
    }
}

fn bin(name: &str) -> PathBuf {
    pg_bin(name).unwrap_or_else(|| {
        panic!("PostgreSQL server binary {name} not found (apt-get install postgresql)")
    })
}

impl Postgres {
    /// Initialises a cluster (user `berth`, trust authentication) and
    /// starts it; returns once it accepts connections.
    pub fn start() -> Postgres {
        let dir = tempfile::tempdir().expect("tempdir");
        if is_root() {
            let _ = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path())
                .status();
        }
        let out = as_postgres_user(&bin("initdb"))
            .arg("-D")
            .arg(dir.path().join("pgdata"))
            .args(["-A", "trust", "-U", "berth", "--no-sync"])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = Postgres { child: None, dir };
        pg.resume();
        pg
    }

    /// Like [`Postgres::start`], but an error (naming what is missing)
    /// instead of a panic, for tools that run outside a test.
    pub fn try_start() -> Result<Postgres, String> {
        for name in ["initdb", "postgres", "pg_isready", "createdb"] {
            if pg_bin(name).is_none() {
                return Err(format!(
                    "PostgreSQL server binary {name} not found under /usr/lib/postgresql (apt-get install postgresql)"
                ));
            }
        }
        std::panic::catch_unwind(Postgres::start)
            .map_err(|_| "PostgreSQL did not start (see the message above)".to_owned())
    }

    /// A program of the newest installed PostgreSQL (`pg_dump`,
    /// `pg_restore`), as an operator would run it against this server.
    pub fn tool(name: &str) -> PathBuf {
        bin(name)
    }

    /// The socket directory.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The URL of database `db` (as user `berth`, over the socket).
    pub fn url_of(&self, db: &str) -> String {
        format!(
            "postgres://berth@localhost/{db}?host={}&port={PORT}",
            self.dir.path().display()
        )
    }

    /// The URL of the default database `postgres`.
    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    /// Creates database `name` and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        let out = Command::new(bin("createdb"))
            .arg("-h")
            .arg(self.dir.path())
            .args(["-p", PORT, "-U", "berth", name])
            .output()
            .expect("run createdb");
        assert!(
            out.status.success(),
            "createdb {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.url_of(name)
    }

    /// Runs `sql` in database `db` with psql; returns its unaligned,
    /// tuples-only output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(bin("psql"))
            .arg("-h")
            .arg(self.dir.path())
            .args(["-p", PORT, "-U", "berth", "-d", db, "-XAtq", "-v"])
            .arg("ON_ERROR_STOP=1")
            .arg("-c")
            .arg(sql)
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Whether the server accepts connections now.
    pub fn ready(&self) -> bool {
        Command::new(bin("pg_isready"))
            .arg("-h")
            .arg(self.dir.path())
            .args(["-p", PORT, "-U", "berth", "-d", "postgres"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Stops the server (fast shutdown: open sessions are cut, nothing
    /// committed is lost) and waits until it has exited.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.wait();
    }

    /// Starts the server again on the same data (after [`Postgres::stop`]);
    /// returns once it accepts connections.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "PostgreSQL is running already");
        let child = as_postgres_user(&bin("postgres"))
            .arg("-D")
            .arg(self.dir.path().join("pgdata"))
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=", "-c", "fsync=off", "-p", PORT])
            .args(["-c", "max_connections=200"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn postgres");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.ready() {
            assert!(Instant::now() < deadline, "PostgreSQL did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An SPDX 2.3 document listing `n` packages named `{prefix}-NNNN`
/// (version `1.N.0`, a generic purl), as `oras attach` would attach it.
pub fn spdx_document(n: usize, prefix: &str) -> Vec<u8> {
    let packages: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "SPDXID": format!("SPDXRef-Package-{i}"),
                "name": format!("{prefix}-{i:04}"),
                "versionInfo": format!("1.{i}.0"),
                "downloadLocation": "NOASSERTION",
                "primaryPackagePurpose": "LIBRARY",
                "externalRefs": [{
                    "referenceCategory": "PACKAGE-MANAGER",
                    "referenceType": "purl",
                    "referenceLocator": format!("pkg:generic/{prefix}-{i:04}@1.{i}.0"),
                }],
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{n} {prefix}s"),
        "packages": packages,
    }))
    .unwrap()
}

/// Valid digests made from short readable seeds, for tests that name
/// content `"a"`, `"layer-a"` or `"idx"` rather than by a hash.
///
/// [`digest`] turns a seed into a SHA-256 digest whose hex spells it
/// (`feed` + the seed's bytes in hex, padded with zeros), and [`seed`]
/// reads it back, so assertions can still speak of `"a"`. A seed that is
/// already a digest is taken as is.
pub mod digests {
    use berth_oci::Digest;

    const MARK: &str = "feed";

    /// The digest of `seed` (at most 30 bytes), or `seed` itself if it is
    /// a valid digest.
    pub fn digest(seed: &str) -> Digest {
        if let Ok(d) = Digest::parse(seed) {
            return d;
        }
        assert!(seed.len() <= 30, "seed {seed:?} is longer than 30 bytes");
        let mut hex = String::from(MARK);
        for b in seed.bytes() {
            hex.push_str(&format!("{b:02x}"));
        }
        while hex.len() < 64 {
            hex.push('0');
        }
        Digest::parse(&format!("sha256:{hex}")).expect("a valid digest")
    }

    /// The seed [`digest`] made `d` from; the digest itself for any other.
    pub fn seed(d: &Digest) -> String {
        let Some(rest) = d.hex().strip_prefix(MARK) else {
            return d.to_string();
        };
        let mut out = Vec::new();
        for pair in rest.as_bytes().chunks(2) {
            let Ok(b) = u8::from_str_radix(std::str::from_utf8(pair).unwrap_or("00"), 16) else {
                return d.to_string();
            };
            if b == 0 {
                break;
            }
            out.push(b);
        }
        String::from_utf8(out).unwrap_or_else(|_| d.to_string())
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn seeds_round_trip() {
            for s in [
                "a",
                "layer-a",
                "sha256-x.sig",
                "123456789012345678901234567890",
            ] {
                let d = super::digest(s);
                assert_eq!(super::seed(&d), s);
            }
            let real = format!("sha256:{}", "1".repeat(64));
            assert_eq!(super::digest(&real).as_str(), real);
            assert_eq!(super::seed(&super::digest(&real)), real);
            assert_ne!(super::digest("a"), super::digest("b"));
        }
    }
}
