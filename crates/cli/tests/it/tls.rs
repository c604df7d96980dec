//! berth serving HTTPS: certificates made by `berth tls self-signed`, a
//! reqwest client that trusts only that CA (no "insecure" switch), HTTP/2
//! and HTTP/1.1 by ALPN, the token realm in `https`, certificate rotation
//! under load, a bad reload, the redirect listener, and mutual TLS with a
//! client certificate mapped to an account.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::{Client, StatusCode};
use sha2::Digest as _;

use crate::auth::{basic, challenge, Cred, Fixture};
use crate::common::{berth_bin, Berth, ADMIN_PASSWORD};

/// Runs `berth tls ARGS`, asserting success; returns stdout.
pub fn berth_tls(args: &[&str]) -> String {
    let out = Command::new(berth_bin())
        .arg("tls")
        .args(args)
        .output()
        .expect("run berth tls");
    assert!(
        out.status.success(),
        "berth tls {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// A CA and a server certificate for `host`, 127.0.0.1, ::1 and localhost
/// in `dir`, written by `berth tls self-signed`; returns its output.
pub fn self_signed(dir: &Path, host: &str, port: u16) -> String {
    berth_tls(&[
        "self-signed",
        "--host",
        host,
        "--local",
        "--port",
        &port.to_string(),
        "--out",
        dir.to_str().unwrap(),
    ])
}

/// The TLS arguments of `berth serve` for the files of [`self_signed`].
pub fn tls_args(dir: &Path) -> Vec<String> {
    vec![
        "--tls-cert".into(),
        dir.join("server.crt").display().to_string(),
        "--tls-key".into(),
        dir.join("server.key").display().to_string(),
    ]
}

/// The DER bytes of every `CERTIFICATE` block of a PEM file.
pub fn pem_certificates(path: &Path) -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(path).unwrap();
    text.split("-----BEGIN CERTIFICATE-----")
        .skip(1)
        .map(|b| {
            let b64: String = b
                .split("-----END CERTIFICATE-----")
                .next()
                .unwrap()
                .split_whitespace()
                .collect();
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap()
        })
        .collect()
}

fn fingerprint(der: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(der))
}

/// The fingerprint of the server certificate in `dir/server.crt`.
pub fn served_fingerprint(dir: &Path) -> String {
    fingerprint(&pem_certificates(&dir.join("server.crt"))[0])
}

/// A reqwest client trusting only the CA in `dir/ca.crt` (and presenting
/// `identity`, a PEM certificate plus key, if given).
pub fn client(dir: &Path, http1: bool, identity: Option<&Path>) -> Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(dir.join("ca.crt")).unwrap()).unwrap();
    let mut b = Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .tls_info(true)
        .timeout(Duration::from_secs(20));
    if http1 {
        b = b.http1_only();
    }
    if let Some(dir) = identity {
        let mut pem = std::fs::read(dir.join("client.cert")).unwrap();
        pem.extend(std::fs::read(dir.join("client.key")).unwrap());
        b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

/// The fingerprint of the certificate the server presented.
fn peer_fingerprint(r: &reqwest::Response) -> String {
    let info = r
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .expect("TLS info");
    fingerprint(info.peer_certificate().expect("a server certificate"))
}

fn certs_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[tokio::test]
async fn https_speaks_h2_and_http1_and_the_realm_is_https() {
    let certs = certs_dir();
    self_signed(certs.path(), "registry.test", 5000);
    let args = tls_args(certs.path());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let b = Berth::start_auth(&args, None);
    let url = b.url();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    for (http1, version) in [
        (false, reqwest::Version::HTTP_2),
        (true, reqwest::Version::HTTP_11),
    ] {
        let c = client(certs.path(), http1, None);
        let r = c.get(format!("{url}/v2/")).send().await.unwrap();
        assert_eq!(r.version(), version, "ALPN");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let realm = challenge(&r);
        assert_eq!(
            realm,
            format!("Bearer realm=\"{url}/token\",service=\"berth\""),
            "the realm is https"
        );
        assert_eq!(peer_fingerprint(&r), served_fingerprint(certs.path()));
        // The token flow over TLS.
        let r = c
            .get(format!("{url}/token?service=berth"))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    // A client that does not trust the CA is refused in the handshake.
    let stranger = Client::builder().build().unwrap();
    let e = stranger.get(format!("{url}/v2/")).send().await.unwrap_err();
    assert!(e.is_connect(), "{e:?}");
    assert!(b.log().contains("scheme=\"https\""), "{}", b.log());
}

/// Runs `berth serve` with `args` on a fresh data dir, expecting it to
/// fail at start; returns its stderr.
fn refused_start(args: &[&str]) -> String {
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(berth_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--auth", "none"])
        .arg("--data-dir")
        .arg(data.path())
        .args(args)
        .env_remove("BERTH_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("berth serve started with {args:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    err
}

#[test]
fn unusable_tls_files_stop_the_start_naming_the_file() {
    let certs = certs_dir();
    self_signed(certs.path(), "registry.test", 5000);
    let p = |f: &str| certs.path().join(f).display().to_string();
    // The CA's key is not the server certificate's.
    let err = refused_start(&["--tls-cert", &p("server.crt"), "--tls-key", &p("ca.key")]);
    assert!(err.contains("does not match the certificate"), "{err}");
    assert!(err.contains(&p("ca.key")), "{err}");
    let err = refused_start(&[
        "--tls-cert",
        &p("missing.crt"),
        "--tls-key",
        &p("server.key"),
    ]);
    assert!(
        err.contains("cannot read TLS certificate") && err.contains("missing.crt"),
        "{err}"
    );
    let err = refused_start(&[
        "--tls-cert",
        &p("server.key"),
        "--tls-key",
        &p("server.key"),
    ]);
    assert!(err.contains("no certificate in it"), "{err}");
    let err = refused_start(&["--tls-cert", &p("server.crt")]);
    assert!(err.contains("tls_key"), "{err}");
}

#[test]
fn rsa_keys_and_chains_from_openssl_are_served() {
    // A certificate chain made by another tool: an RSA key (PKCS#1
    // `RSA PRIVATE KEY`), an intermediate CA between the root and the leaf.
    let d = certs_dir();
    let sh = |script: &str| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(d.path())
            .output()
            .expect("sh");
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    assert!(
        crate::common::have("openssl"),
        "openssl is needed to make an RSA chain"
    );
    sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout root.key -out ca.crt -days 2 -subj /CN=root -addext basicConstraints=critical,CA:TRUE -addext keyUsage=keyCertSign 2>/dev/null");
    sh("openssl req -newkey rsa:2048 -nodes -keyout mid.key -out mid.csr -subj /CN=mid 2>/dev/null && printf 'basicConstraints=critical,CA:TRUE\\nkeyUsage=keyCertSign\\n' > mid.ext && openssl x509 -req -in mid.csr -CA ca.crt -CAkey root.key -CAcreateserial -out mid.crt -days 2 -extfile mid.ext 2>/dev/null");
    sh("openssl genrsa -traditional -out server.key 2048 2>/dev/null || openssl genrsa -out server.key 2048 2>/dev/null; openssl req -new -key server.key -out s.csr -subj /CN=localhost 2>/dev/null && printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nextendedKeyUsage=serverAuth\\n' > s.ext && openssl x509 -req -in s.csr -CA mid.crt -CAkey mid.key -CAcreateserial -out leaf.crt -days 2 -extfile s.ext 2>/dev/null && cat leaf.crt mid.crt > server.crt");
    let args = tls_args(d.path());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let b = Berth::start_with(&args, None);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for http1 in [false, true] {
            let r = client(d.path(), http1, None)
                .get(format!("{}/v2/", b.url()))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
        }
    });
}

/// Waits until a new connection gets the certificate of `dir`.
async fn await_certificate(url: &str, dir: &Path) -> Duration {
    let start = Instant::now();
    let want = served_fingerprint(dir);
    loop {
        let r = client(dir, true, None)
            .get(format!("{url}/v2/"))
            .send()
            .await
            .unwrap();
        if peer_fingerprint(&r) == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "new connections never got the new certificate"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_certificate_under_load_fails_no_request() {
    let certs = certs_dir();
    self_signed(certs.path(), "registry.test", 5000);
    let first = served_fingerprint(certs.path());
    let mut args = tls_args(certs.path());
    args.extend(["--tls-reload-interval".into(), "1s".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let b = Berth::start_with(&args, None);
    let url = b.url();
    // Something to pull: a 1 MiB blob and a manifest.
    let c = client(certs.path(), false, None);
    let blob = crate::layout::random_bytes(1 << 20);
    let digest = crate::oci::push_blob(&c, &url, "rot/app", &blob).await;
    let config = b"{}".to_vec();
    crate::oci::push_blob(&c, &url, "rot/app", &config).await;
    let manifest = crate::oci::image_manifest(&config, &[&blob]);
    let r = c
        .put(format!("{url}/v2/rot/app/manifests/v1"))
        .header("content-type", crate::oci::OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    // Pullers: HTTP/2 and HTTP/1.1, kept-alive connections and new ones.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let mut pullers = Vec::new();
    for i in 0..4 {
        let (stop, done, url, dir) = (
            stop.clone(),
            done.clone(),
            url.clone(),
            certs.path().to_path_buf(),
        );
        let (digest, blob_len, manifest_len) = (digest.clone(), blob.len(), manifest.len());
        pullers.push(tokio::spawn(async move {
            let mut c = client(&dir, i % 2 == 1, None);
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                if i >= 2 && n.is_multiple_of(5) {
                    // A new connection every few requests.
                    c = client(&dir, i % 2 == 1, None);
                }
                n += 1;
                let m = c
                    .get(format!("{url}/v2/rot/app/manifests/v1"))
                    .header("accept", crate::oci::OCI_MANIFEST)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("puller {i}: manifest GET failed: {e:?}"));
                assert_eq!(m.status(), StatusCode::OK);
                assert_eq!(m.bytes().await.unwrap().len(), manifest_len);
                let r = c
                    .get(format!("{url}/v2/rot/app/blobs/{digest}"))
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("puller {i}: blob GET failed: {e:?}"));
                assert_eq!(r.status(), StatusCode::OK);
                let body = r
                    .bytes()
                    .await
                    .unwrap_or_else(|e| panic!("puller {i}: {e:?}"));
                assert_eq!(body.len(), blob_len);
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Rotate: a new server certificate from the same CA, as a renewal does.
    self_signed(certs.path(), "registry.test", 5000);
    let second = served_fingerprint(certs.path());
    assert_ne!(first, second);
    let took = await_certificate(&url, certs.path()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for p in pullers {
        p.await.expect("a puller failed");
    }
    let pulls = done.load(Ordering::Relaxed);
    assert!(pulls >= 8, "only {pulls} pulls ran");
    eprintln!("{pulls} pulls, no failure; new connections had the new certificate after {took:?}");
    assert!(b.log().contains("TLS certificate reloaded"), "{}", b.log());
}

#[tokio::test]
async fn sighup_reloads_and_a_bad_reload_keeps_the_old_certificate() {
    let certs = certs_dir();
    self_signed(certs.path(), "registry.test", 5000);
    let first = served_fingerprint(certs.path());
    let mut args = tls_args(certs.path());
    // Changes are not looked for in this test: SIGHUP only.
    args.extend(["--tls-reload-interval".into(), "1h".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let b = Berth::start_with(&args, None);
    let hup = || {
        assert!(Command::new("kill")
            .args(["-HUP", &b.pid().to_string()])
            .status()
            .unwrap()
            .success());
    };
    // A key that does not match: refused, the old certificate stays.
    let key = certs.path().join("server.key");
    let good_key = std::fs::read(&key).unwrap();
    std::fs::copy(certs.path().join("ca.key"), &key).unwrap();
    hup();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b.log().contains("NOT reloaded") {
        assert!(Instant::now() < deadline, "no refused reload: {}", b.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        b.log().contains("does not match the certificate"),
        "{}",
        b.log()
    );
    let r = client(certs.path(), false, None)
        .get(format!("{}/v2/", b.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(peer_fingerprint(&r), first, "the old certificate stays");
    std::fs::write(&key, good_key).unwrap();
    // A renewal picked up on SIGHUP.
    self_signed(certs.path(), "registry.test", 5000);
    hup();
    await_certificate(&b.url(), certs.path()).await;
}

/// The redirect listener's address, from the server's log.
fn redirect_addr(b: &Berth) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = b.log();
        if let Some(line) = log.lines().find(|l| l.contains("plain HTTP redirects")) {
            let at = line.split("addr=").nth(1).unwrap();
            return at.split_whitespace().next().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "no redirect listener: {log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn the_redirect_listener_answers_308_and_serves_no_api() {
    let certs = certs_dir();
    self_signed(certs.path(), "registry.test", 5000);
    let mut args = tls_args(certs.path());
    args.extend(["--tls-redirect-listen".into(), "127.0.0.1:0".into()]);
    let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
    let b = Berth::start_with(&args_ref, None);
    let plain = redirect_addr(&b);
    let port = b.addr.rsplit(':').next().unwrap().to_owned();
    let no_follow = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_follow
        .get(format!("http://{plain}/v2/_catalog?n=1"))
        .header("host", "registry.test:8080")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        r.headers()["location"],
        format!("https://registry.test:{port}/v2/_catalog?n=1").as_str()
    );
    assert!(r.text().await.unwrap().contains("served over HTTPS only"));
    // A PUT is redirected too, never served.
    let r = no_follow
        .put(format!("http://{plain}/v2/a/manifests/x"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
    // Followed by a client that trusts the CA, it reaches the registry.
    let r = client(certs.path(), false, None)
        .get(format!("http://{plain}/v2/"))
        .header("host", format!("127.0.0.1:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.url().scheme(), "https");
    drop(b);

    // Explicitly allowed: loopback clients get the API in plain HTTP.
    args.extend(["--tls-redirect-loopback-api".into()]);
    let args_ref: Vec<&str> = args.iter().map(String::as_str).collect();
    let b = Berth::start_auth(&args_ref, None);
    let plain = redirect_addr(&b);
    let r = no_follow
        .get(format!("http://{plain}/v2/"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "the API, not a redirect"
    );
    assert_eq!(
        challenge(&r),
        format!("Bearer realm=\"http://{plain}/token\",service=\"berth\""),
        "its realm is the plain one"
    );
}

/// A server with auth, TLS and a client CA (`required` or `optional`),
/// its certificates, and a client certificate for `CN=ci-bot` in
/// `certs/bot/`.
async fn mtls_fixture(mode: &str) -> (Fixture, tempfile::TempDir) {
    let certs = certs_dir();
    let d = certs.path();
    self_signed(d, "registry.test", 5000);
    let out = berth_tls(&[
        "client",
        "--ca-dir",
        d.to_str().unwrap(),
        "--name",
        "ci-bot",
        "--out",
        d.join("bot").to_str().unwrap(),
    ]);
    assert!(out.contains("subject: CN=ci-bot"), "{out}");
    berth_tls(&[
        "client",
        "--ca-dir",
        d.to_str().unwrap(),
        "--name",
        "stranger",
        "--out",
        d.join("stranger").to_str().unwrap(),
    ]);
    let toml = format!(
        "tls_cert = {:?}\ntls_key = {:?}\ntls_client_ca = {:?}\ntls_client_auth = \"{mode}\"\n",
        d.join("server.crt"),
        d.join("server.key"),
        d.join("ca.crt"),
    );
    let mut f = Fixture::start(&toml).await;
    f.c = client(d, false, None);
    (f, certs)
}

/// Maps `subject` to `account` with `berth user cert-map add` as admin,
/// trusting the CA through `SSL_CERT_FILE`.
fn cert_map(f: &Fixture, certs: &Path, args: &[&str]) -> std::process::Output {
    Command::new(berth_bin())
        .args(["user", "cert-map"])
        .args(args)
        .args(["--registry", &f.url(), "--user", "admin"])
        .env("BERTH_PASSWORD", ADMIN_PASSWORD)
        .env("SSL_CERT_FILE", certs.join("ca.crt"))
        .env_remove("BERTH_TOKEN")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_maps_a_client_certificate_to_an_account() {
    let (mut f, certs) = mtls_fixture("required").await;
    let d = certs.path().to_path_buf();
    f.user("ci").await;
    let url = f.url();

    // Required: no client certificate, no connection.
    let e = client(&d, false, None)
        .get(format!("{url}/v2/"))
        .send()
        .await
        .unwrap_err();
    assert!(e.is_connect() || e.is_request(), "{e:?}");

    // Unmapped: the usual challenge.
    let stranger = client(&d, false, Some(&d.join("stranger")));
    let r = stranger.get(format!("{url}/v2/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(challenge(&r).starts_with("Bearer realm=\"https://"));
    f.c = client(&d, false, Some(&d.join("bot")));
    let (status, _) = f.push(&Cred::Anon, "ci/app", "v1", "a").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "unmapped: anonymous");

    // Mapped by the admin, through the API (the admin's client needs a
    // certificate too: any, its password is what counts).
    let r = stranger
        .put(format!("{url}/api/v1/certificates"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(&serde_json::json!({"subject": "CN=ci-bot", "account": "ci"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let mapped: serde_json::Value = r.json().await.unwrap();
    assert_eq!(mapped["account"], "ci");
    assert_eq!(mapped["created_by"], "admin");

    // The mapped certificate pushes without a password, and pulls.
    let (status, digest) = f.push(&Cred::Anon, "ci/app", "v1", "b").await;
    assert_eq!(status, StatusCode::CREATED);
    let r =
        f.c.get(format!("{url}/v2/ci/app/manifests/{digest}"))
            .header("accept", crate::oci::OCI_MANIFEST)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // ... but only where the account may: not in admin's namespace.
    let (status, _) = f.push(&Cred::Anon, "admin/app", "v1", "c").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The token endpoint logs it in as its account.
    let r =
        f.c.get(format!(
            "{url}/token?service=berth&scope=repository:ci/app:pull,push"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let token: serde_json::Value = r.json().await.unwrap();
    let claims = crate::auth::claims(token["token"].as_str().unwrap());
    assert_eq!(claims["sub"], "ci");
    assert!(token.get("refresh_token").is_none());
    // A certificate never manages the account: no tokens minted with it.
    let r =
        f.c.post(format!("{url}/api/v1/tokens"))
            .json(&serde_json::json!({"name": "x", "scopes": ["pull"]}))
            .send()
            .await
            .unwrap();
    assert!(
        r.status() == StatusCode::FORBIDDEN || r.status() == StatusCode::UNAUTHORIZED,
        "{}",
        r.status()
    );
    // Explicit credentials win over the certificate.
    let (status, _) = f
        .push(&basic("admin", ADMIN_PASSWORD), "admin/app", "v1", "d")
        .await;
    assert_eq!(status, StatusCode::CREATED);

    // Unmapped again: anonymous again.
    let r = stranger
        .delete(format!("{url}/api/v1/certificates?subject=CN%3Dci-bot"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let (status, _) = f.push(&Cred::Anon, "ci/app", "v2", "e").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_client_certificates_and_the_cert_map_command() {
    let (mut f, certs) = mtls_fixture("optional").await;
    let d = certs.path().to_path_buf();
    f.user("ci").await;
    // Without a certificate: logins as usual.
    let c = client(&d, false, None);
    let r = c.get(format!("{}/v2/", f.url())).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c
        .get(format!("{}/v2/", f.url()))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // `berth user cert-map` over HTTPS (the CA trusted through
    // SSL_CERT_FILE), the subject read from the certificate file.
    let bot_cert = d.join("bot/client.cert");
    let out = cert_map(
        &f,
        &d,
        &[
            "add",
            "--cert",
            bot_cert.to_str().unwrap(),
            "--account",
            "ci",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cert_map(&f, &d, &["list"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("CN=ci-bot") && listed.contains("ci"),
        "{listed}"
    );
    f.c = client(&d, false, Some(&d.join("bot")));
    let (status, _) = f.push(&Cred::Anon, "ci/app", "v1", "a").await;
    assert_eq!(status, StatusCode::CREATED);
    let out = cert_map(&f, &d, &["remove", "--subject", "CN=ci-bot"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cert_map(&f, &d, &["remove", "--subject", "CN=ci-bot"]);
    assert!(!out.status.success(), "removing twice");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no certificate subject"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, _) = f.push(&Cred::Anon, "ci/app", "v2", "b").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Mapping to an account that does not exist names it.
    let out = cert_map(&f, &d, &["add", "--subject", "CN=x", "--account", "nobody"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nobody"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
