//! `berth serve` on PostgreSQL (`--database-url`): images pushed with
//! skopeo survive a restart, the metadata lives in PostgreSQL (no SQLite
//! file appears), the URL's password never reaches the log, and an
//! unreachable database is a clear start-up error.

use std::process::Command;

use berth_testkit::Postgres;

use crate::common::{berth_bin, Berth};
use crate::interop::{parse, require, sha256, Clients};
use crate::layout;

/// A password PostgreSQL's trust authentication ignores, so the tests
/// can look for it in logs and messages.
pub const DB_PASSWORD: &str = "pg-secret-never-logged";

/// The URL of `db` on `pg` with [`DB_PASSWORD`] in it.
pub fn url_with_password(pg: &Postgres, db: &str) -> String {
    pg.url_of(db).replacen(
        "postgres://berth@",
        &format!("postgres://berth:{DB_PASSWORD}@"),
        1,
    )
}

#[test]
fn serve_on_postgres_keeps_pushed_images_across_restarts() {
    if !require(
        "skopeo",
        "database::serve_on_postgres_keeps_pushed_images_across_restarts",
    ) {
        return;
    }
    let pg = Postgres::start();
    pg.create_database("registry");
    let url = url_with_password(&pg, "registry");
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let args = ["--database-url", url.as_str()];
    let mut berth = Berth::start_in(&data, &args, None, work.path());

    let c = Clients::new();
    let src = c.dir("src");
    let digest = layout::write_image(&src, "v1", "linux/amd64", &[4096, 70_000]);
    let dest = format!("docker://{}/pg/app:v1", berth.addr);
    c.push_layout(&src, "v1", &dest, false);
    assert!(
        !data.join("berth.db").exists(),
        "the metadata went to PostgreSQL, not to SQLite"
    );
    assert_eq!(
        pg.psql("registry", "SELECT digest FROM tags WHERE name = 'v1'"),
        digest
    );
    berth.terminate();

    let berth = Berth::start_in(&data, &args, None, work.path());
    let raw = c.skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/pg/app:v1", berth.addr),
    ]);
    assert_eq!(sha256(&raw), digest, "the tag survived the restart");
    let back = c.dir("back");
    c.skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/pg/app:v1", berth.addr),
        &format!("oci:{}:back", back.display()),
    ]);
    let manifest = parse(&layout::read_blob(&src, &digest));
    for l in manifest["layers"].as_array().unwrap() {
        let d = l["digest"].as_str().unwrap();
        assert_eq!(layout::read_blob(&back, d), layout::read_blob(&src, d));
    }
    let log = berth.log();
    assert!(log.contains("postgres://berth:***@"), "{log}");
    assert!(!log.contains(DB_PASSWORD), "the password reached the log");
}

#[test]
fn an_unreachable_database_is_a_clear_start_up_error() {
    let tmp = tempfile::tempdir().unwrap();
    // Nothing listens on port 1 of the loopback address.
    let url = format!("postgres://berth:{DB_PASSWORD}@127.0.0.1:1/registry");
    let out = Command::new(berth_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--auth", "none"])
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .env("BERTH_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "cannot reach the metadata database postgres://berth:***@127.0.0.1:1/registry"
        ) && err.contains("check that PostgreSQL is running"),
        "{err}"
    );
    assert!(
        !err.contains(DB_PASSWORD),
        "the password reached stderr: {err}"
    );

    // A URL that names no supported engine is refused before anything
    // starts, without echoing the password either.
    let out = Command::new(berth_bin())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--database-url")
        .arg(format!("mysql://root:{DB_PASSWORD}@localhost/db"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid database_url"), "{err}");
    assert!(!err.contains(DB_PASSWORD), "{err}");
}
