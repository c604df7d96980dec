//! berth's own clients over HTTPS: the management commands and `berth
//! copy` / `berth inspect` trust a private CA with `--ca-cert FILE` or
//! `--cert-dir DIR` (skopeo's layout: `*.crt` CAs, `NAME.cert` + `NAME.key`
//! a client certificate), against a `berth serve` whose certificate `berth
//! tls self-signed` made. Nothing here trusts the CA any other way
//! (`SSL_CERT_FILE` is removed).

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{berth_bin, Berth, ADMIN_PASSWORD};
use crate::tls::{berth_tls, self_signed, tls_args};

/// Runs `berth ARGS` as the site admin, with no CA trusted from the
/// environment.
fn berth(args: &[&str]) -> Output {
    Command::new(berth_bin())
        .args(args)
        .env("BERTH_PASSWORD", ADMIN_PASSWORD)
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .env_remove("BERTH_TOKEN")
        .env_remove("BERTH_REGISTRY")
        .env_remove("BERTH_CERT_DIR")
        .env_remove("BERTH_CA_CERT")
        .output()
        .expect("run berth")
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn user_list(registry: &str, tls: &[&str]) -> Output {
    let mut args = vec!["user", "list", "--registry", registry, "--user", "admin"];
    args.extend_from_slice(tls);
    berth(&args)
}

/// A directory holding only `ca.crt`, as `--cert-dir` wants it.
fn cert_dir_with(files: &[(&Path, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (from, name) in files {
        std::fs::copy(from, dir.path().join(name)).unwrap();
    }
    dir
}

#[test]
fn management_commands_trust_a_private_ca_with_ca_cert_or_cert_dir() {
    let certs = tempfile::tempdir().unwrap();
    let d = certs.path();
    self_signed(d, "registry.test", 5000);
    let args = tls_args(d);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let b = Berth::start_auth(&args, None);
    let reg = b.addr.clone();
    let ca = d.join("ca.crt");
    let ca_arg = ca.to_str().unwrap();

    // Without the CA: the loopback registry is spoken to in plain HTTP,
    // which an HTTPS listener does not answer.
    let out = user_list(&reg, &[]);
    assert!(!out.status.success(), "{}", text(&out));
    // With an explicit https:// URL but no CA: the certificate is refused.
    let out = user_list(&format!("https://{reg}"), &[]);
    assert!(!out.status.success(), "{}", text(&out));

    // --ca-cert: HTTPS, the certificate verified against the CA.
    let out = user_list(&reg, &["--ca-cert", ca_arg]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("admin"),
        "{}",
        text(&out)
    );

    // --cert-dir with ca.crt in it, as skopeo reads it.
    let dir = cert_dir_with(&[(&ca, "ca.crt")]);
    let out = user_list(&reg, &["--cert-dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    // The environment variable does the same.
    let out = Command::new(berth_bin())
        .args(["gc", "--status", "--registry", &reg, "--user", "admin"])
        .env("BERTH_PASSWORD", ADMIN_PASSWORD)
        .env("BERTH_CA_CERT", &ca)
        .env_remove("SSL_CERT_FILE")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    // Another CA does not vouch for this server.
    let other = tempfile::tempdir().unwrap();
    self_signed(other.path(), "registry.test", 5000);
    let out = user_list(
        &reg,
        &["--ca-cert", other.path().join("ca.crt").to_str().unwrap()],
    );
    assert!(!out.status.success(), "{}", text(&out));

    // A file that is not a certificate is named.
    let bad = certs.path().join("bad.crt");
    std::fs::write(&bad, "not a certificate").unwrap();
    let out = user_list(&reg, &["--ca-cert", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad.crt"),
        "{}",
        text(&out)
    );
}

#[test]
fn cert_dir_presents_a_client_certificate_to_a_registry_that_requires_one() {
    let certs = tempfile::tempdir().unwrap();
    let d = certs.path();
    self_signed(d, "registry.test", 5000);
    berth_tls(&[
        "client",
        "--ca-dir",
        d.to_str().unwrap(),
        "--name",
        "ci-bot",
        "--out",
        d.join("bot").to_str().unwrap(),
    ]);
    let toml = format!(
        "tls_cert = {:?}\ntls_key = {:?}\ntls_client_ca = {:?}\ntls_client_auth = \"required\"\n",
        d.join("server.crt"),
        d.join("server.key"),
        d.join("ca.crt"),
    );
    let b = Berth::start_auth(&[], Some(&toml));
    let reg = b.addr.clone();
    let ca = d.join("ca.crt");

    // The CA alone: the server wants a client certificate.
    let only_ca = cert_dir_with(&[(&ca, "ca.crt")]);
    let out = user_list(&reg, &["--cert-dir", only_ca.path().to_str().unwrap()]);
    assert!(!out.status.success(), "{}", text(&out));

    // The CA and the client pair.
    let full = cert_dir_with(&[
        (&ca, "ca.crt"),
        (&d.join("bot/client.cert"), "client.cert"),
        (&d.join("bot/client.key"), "client.key"),
    ]);
    let out = user_list(&reg, &["--cert-dir", full.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("admin"),
        "{}",
        text(&out)
    );

    // A certificate without its key is named.
    let half = cert_dir_with(&[(&ca, "ca.crt"), (&d.join("bot/client.cert"), "client.cert")]);
    let out = user_list(&reg, &["--cert-dir", half.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("client.key"),
        "{}",
        text(&out)
    );
}

#[test]
fn copy_and_inspect_trust_a_private_ca() {
    let certs = tempfile::tempdir().unwrap();
    let d = certs.path();
    self_signed(d, "registry.test", 5000);
    let args = tls_args(d);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let b = Berth::start_with(&args, None);
    let reg = b.addr.clone();
    let ca = d.join("ca.crt");
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("img");
    let digest = berth_tools::sample::write(&layout, "v1", &["linux/amd64"], "tls").unwrap();
    let src = format!("oci:{}:v1", layout.display());
    let dst = format!("docker://{reg}/tls/app:v1");

    // No CA: plain HTTP to an HTTPS listener fails.
    let out = berth(&["copy", "-q", &src, &dst]);
    assert!(!out.status.success(), "{}", text(&out));

    let out = berth(&["copy", "-q", "--ca-cert", ca.to_str().unwrap(), &src, &dst]);
    assert!(out.status.success(), "{}", text(&out));

    let dir = cert_dir_with(&[(&ca, "ca.crt")]);
    let out = berth(&[
        "inspect",
        "-o",
        "json",
        "--cert-dir",
        dir.path().to_str().unwrap(),
        &dst,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["digest"], digest.to_string(), "{json}");
}
