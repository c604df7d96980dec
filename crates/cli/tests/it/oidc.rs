//! Keyless push from CI: a loopback OpenID Connect issuer made by the test
//! (discovery document, JWKS, ID tokens with the claims of a GitHub Actions
//! run, signed with keys the test generates: ES256 with `ring`, RS256 with
//! an RSA key from `openssl genpkey`), a real `berth serve --auth token`
//! with trust policies, and reqwest as the CI job. The Docker daemon's
//! `docker login -u oidc` is in `oidc_docker`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use berth_meta::audit::{action, AuditFilter};
use reqwest::{Method, StatusCode};
use ring::rand::SystemRandom;
use ring::signature::{self as rs, KeyPair as _};
use serde_json::{json, Value};

use crate::auth::{admin, basic, req, Cred, Fixture};

/// The audience CI jobs ask their tokens for in these tests.
pub const AUDIENCE: &str = "berth.test";

/// The `ACTIONS_ID_TOKEN_REQUEST_TOKEN` the issuer's token request
/// endpoint wants.
pub const REQUEST_TOKEN: &str = "request-token-of-the-run";

/// A signing key of the issuer.
pub enum Key {
    Es256(rs::EcdsaKeyPair),
    Rs256(rs::RsaKeyPair),
}

impl Key {
    pub fn es256() -> Key {
        let rng = SystemRandom::new();
        let alg = &rs::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = rs::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        Key::Es256(rs::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap())
    }

    pub fn rs256() -> Key {
        let out = std::process::Command::new("sh")
            .args([
                "-c",
                "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
                 | openssl pkcs8 -topk8 -nocrypt -outform DER",
            ])
            .output()
            .expect("openssl (scripts/install-test-deps.sh installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Key::Rs256(rs::RsaKeyPair::from_pkcs8(&out.stdout).unwrap())
    }

    fn alg(&self) -> &'static str {
        match self {
            Key::Es256(_) => "ES256",
            Key::Rs256(_) => "RS256",
        }
    }

    fn jwk(&self, kid: &str) -> Value {
        let b = |x: &[u8]| URL_SAFE_NO_PAD.encode(x);
        match self {
            Key::Es256(k) => {
                let p = k.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
                       "x": b(&p[1..33]), "y": b(&p[33..65])})
            }
            Key::Rs256(k) => {
                let c = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(k.public());
                json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
                       "n": b(&c.n), "e": b(&c.e)})
            }
        }
    }

    fn sign(&self, msg: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            Key::Es256(k) => k.sign(&rng, msg).unwrap().as_ref().to_vec(),
            Key::Rs256(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(&rs::RSA_PKCS1_SHA256, &rng, msg, &mut sig).unwrap();
                sig
            }
        }
    }
}

struct State {
    /// Published keys, by kid.
    published: Vec<String>,
    /// Every key the issuer has (published or not), by kid.
    keys: HashMap<String, Arc<Key>>,
}

/// A loopback OIDC issuer: `/.well-known/openid-configuration` and
/// `/jwks`, served by a thread that lives as long as the test process.
pub struct Issuer {
    pub url: String,
    state: Arc<Mutex<State>>,
    /// How many times the JWKS was fetched.
    pub jwks_fetches: Arc<AtomicUsize>,
}

fn respond(stream: &mut std::net::TcpStream, status: &str, body: &str) {
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
}

impl Issuer {
    /// Starts an issuer publishing `keys` (kid, key).
    pub fn start(keys: Vec<(&str, Key)>) -> Issuer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            published: keys.iter().map(|(k, _)| k.to_string()).collect(),
            keys: keys
                .into_iter()
                .map(|(k, v)| (k.to_owned(), Arc::new(v)))
                .collect(),
        }));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (s, f, u) = (state.clone(), fetches.clone(), url.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut line = String::new();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                // The headers: only the request token matters.
                let mut authorized = false;
                let mut h = String::new();
                while reader.read_line(&mut h).is_ok_and(|n| n > 2) {
                    authorized |= h.to_ascii_lowercase().trim()
                        == format!("authorization: bearer {REQUEST_TOKEN}");
                    h.clear();
                }
                let target = line.split(' ').nth(1).unwrap_or("").to_owned();
                let (path, query) = target.split_once('?').unwrap_or((&target, ""));
                match path {
                    // GitHub Actions' token request endpoint
                    // (ACTIONS_ID_TOKEN_REQUEST_URL), for the workflow of
                    // docs/ci-oidc.md: a token for `audience`, for a run of
                    // acme/app on main.
                    "/token-request" if authorized => {
                        let audience = query
                            .split('&')
                            .find_map(|kv| kv.strip_prefix("audience="))
                            .unwrap_or("");
                        let kid = s.lock().unwrap().published[0].clone();
                        let token = mint(&s, &u, &kid, "acme/app", json!({ "aud": audience }));
                        respond(
                            &mut stream,
                            "200 OK",
                            &json!({ "value": token }).to_string(),
                        );
                    }
                    "/.well-known/openid-configuration" => {
                        let body = json!({
                            "issuer": u,
                            "jwks_uri": format!("{u}/jwks"),
                            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                        });
                        respond(&mut stream, "200 OK", &body.to_string());
                    }
                    "/jwks" => {
                        f.fetch_add(1, Ordering::SeqCst);
                        let st = s.lock().unwrap();
                        let keys: Vec<Value> = st
                            .published
                            .iter()
                            .map(|kid| st.keys[kid].jwk(kid))
                            .collect();
                        respond(&mut stream, "200 OK", &json!({"keys": keys}).to_string());
                    }
                    _ => respond(&mut stream, "404 Not Found", "{}"),
                }
            }
        });
        Issuer {
            url,
            state,
            jwks_fetches: fetches,
        }
    }

    /// Publishes exactly the keys `kids` from now on, adding `new` ones.
    pub fn rotate(&self, new: Vec<(&str, Key)>, kids: &[&str]) {
        let mut st = self.state.lock().unwrap();
        for (k, v) in new {
            st.keys.insert(k.to_owned(), Arc::new(v));
        }
        st.published = kids.iter().map(|k| k.to_string()).collect();
    }

    /// A token signed with key `kid`, with GitHub Actions claims for
    /// `repository` (`overrides` replace or add claims; `null` removes).
    pub fn token(&self, kid: &str, repository: &str, overrides: Value) -> String {
        mint(&self.state, &self.url, kid, repository, overrides)
    }
}

/// What [`Issuer::token`] makes.
fn mint(state: &Mutex<State>, url: &str, kid: &str, repository: &str, overrides: Value) -> String {
    let key = state.lock().unwrap().keys[kid].clone();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let owner = repository.split('/').next().unwrap();
    let mut claims = json!({
        "jti": format!("{:x}", u128::from_le_bytes(ring_random())),
        "sub": format!("repo:{repository}:ref:refs/heads/main"),
        "aud": AUDIENCE,
        "ref": "refs/heads/main",
        "sha": "d6ca2ee9c3a9b6b9f5b7ad7e8f1f4e2b0c9a8f7e",
        "repository": repository,
        "repository_owner": owner,
        "repository_owner_id": "1342004",
        "repository_id": "614321",
        "repository_visibility": "private",
        "run_id": "7425101845",
        "run_number": "12",
        "run_attempt": "1",
        "actor": "octocat",
        "actor_id": "583231",
        "workflow": "release",
        "workflow_ref": format!("{repository}/.github/workflows/release.yml@refs/heads/main"),
        "job_workflow_ref": format!("{repository}/.github/workflows/release.yml@refs/heads/main"),
        "event_name": "push",
        "ref_type": "branch",
        "runner_environment": "github-hosted",
        "iss": url,
        "nbf": now - 5,
        "iat": now - 5,
        "exp": now + 300,
    });
    for (k, v) in overrides.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    let header = json!({"alg": key.alg(), "typ": "JWT", "kid": kid});
    let signing = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = key.sign(signing.as_bytes());
    format!("{signing}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn ring_random() -> [u8; 16] {
    use ring::rand::SecureRandom as _;
    let mut b = [0u8; 16];
    SystemRandom::new().fill(&mut b).unwrap();
    b
}

/// Adds a trust policy through the management API as admin.
pub async fn add_policy(f: &Fixture, body: Value) -> reqwest::Response {
    req(
        &f.c,
        Method::POST,
        &format!("{}/api/v1/oidc/policies", f.url()),
        &admin(),
    )
    .json(&body)
    .send()
    .await
    .unwrap()
}

/// The usual policy: repository `repository` of `issuer` on branch main
/// may push to `target`.
pub fn policy(name: &str, issuer: &str, repository: &str, target: &str) -> Value {
    json!({
        "name": name, "issuer": issuer, "audience": AUDIENCE,
        "claims": {"repository": repository, "ref": "refs/heads/main"},
        "repositories": target, "scopes": ["push"],
    })
}

/// `GET /token` as `oidc` with `id_token` for `scope`: status and body.
async fn exchange(f: &Fixture, id_token: &str, scope: &str) -> (StatusCode, Value) {
    let r = req(
        &f.c,
        Method::GET,
        &format!("{}/token", f.url()),
        &basic("oidc", id_token),
    )
    .query(&[("service", "berth"), ("scope", scope)])
    .send()
    .await
    .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn message(body: &Value) -> String {
    body["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn fixture(extra_toml: &str) -> Fixture {
    Fixture::start(&format!("oidc_key_refetch = \"1s\"\n{extra_toml}")).await
}

#[tokio::test]
async fn oidc_allowed_repository_pushes_with_es256_and_rs256_tokens() {
    let issuer = Issuer::start(vec![("ec-1", Key::es256()), ("rsa-1", Key::rs256())]);
    let f = fixture("").await;
    let r = add_policy(&f, policy("acme-app", &issuer.url, "acme/app", "acme")).await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );

    for (kid, tag) in [("ec-1", "v1"), ("rsa-1", "v2")] {
        let id_token = issuer.token(kid, "acme/app", json!({}));
        let (status, body) = exchange(&f, &id_token, "repository:acme/app:pull,push").await;
        assert_eq!(status, StatusCode::OK, "{kid}: {body}");
        assert_eq!(body["scope"], "repository:acme/app:pull,push");
        let token = body["token"].as_str().unwrap().to_owned();
        let (status, digest) = f
            .push(&Cred::Bearer(token.clone()), "acme/app", tag, kid)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{kid}");
        let got = f
            .status(
                Method::GET,
                &format!("/v2/acme/app/manifests/{digest}"),
                &admin(),
            )
            .await;
        assert_eq!(got, StatusCode::OK);
    }

    // Every exchange is in the audit log with the job's claims, and no
    // token is in the server's log.
    let events = f
        .meta
        .audit_events(&AuditFilter {
            action: Some(action::LOGIN.into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    let oidc: Vec<_> = events
        .iter()
        .filter(|e| {
            e.event
                .detail
                .as_ref()
                .is_some_and(|d| d["method"] == "oidc")
        })
        .collect();
    assert_eq!(oidc.len(), 2, "{events:?}");
    let d = oidc[0].event.detail.as_ref().unwrap();
    assert_eq!(d["claims"]["repository"], "acme/app");
    assert_eq!(d["claims"]["run_id"], "7425101845");
    assert_eq!(d["policies"], json!(["acme-app"]));
    assert_eq!(
        oidc[0].event.actor,
        "oidc:repo:acme/app:ref:refs/heads/main"
    );
    // The pushes are attributed to the workload.
    let pushes = f
        .meta
        .audit_events(&AuditFilter {
            action: Some(action::PUSH.into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert!(
        pushes
            .iter()
            .any(|e| e.event.actor == "oidc:repo:acme/app:ref:refs/heads/main"),
        "{pushes:?}"
    );
    let log = f.berth.log();
    assert!(log.contains("keyless login"), "{log}");
    assert!(!log.contains(&issuer.token("ec-1", "acme/app", json!({}))[..40]));
}

#[tokio::test]
async fn oidc_refuses_another_repository_audience_issuer_expired_replayed_and_forged_tokens() {
    let issuer = Issuer::start(vec![("k1", Key::es256())]);
    let other = Issuer::start(vec![("k1", Key::es256())]);
    let f = fixture("").await;
    let r = add_policy(&f, policy("acme-app", &issuer.url, "acme/app", "acme/app")).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let scope = "repository:acme/app:pull,push";

    // The allowed job may not push to another repository: the token
    // endpoint grants nothing there, and a push is refused.
    let t = issuer.token("k1", "acme/app", json!({}));
    let (status, body) = exchange(&f, &t, "repository:acme/other:pull,push").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["scope"], "");
    let (status, _) = f
        .push(
            &Cred::Bearer(body["token"].as_str().unwrap().into()),
            "acme/other",
            "v1",
            "x",
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "another repository",
            issuer.token("k1", "acme/evil", json!({})),
            "no trust policy matches",
        ),
        (
            "another branch",
            issuer.token("k1", "acme/app", json!({"ref": "refs/heads/feature"})),
            "no trust policy matches",
        ),
        (
            "wrong audience",
            issuer.token("k1", "acme/app", json!({"aud": "another.registry"})),
            "audience",
        ),
        (
            "wrong issuer",
            other.token("k1", "acme/app", json!({})),
            "no trust policy of this registry names the issuer",
        ),
        (
            "the trusted issuer's name, another issuer's key",
            other.token("k1", "acme/app", json!({"iss": issuer.url})),
            "signature",
        ),
        (
            "expired",
            issuer.token(
                "k1",
                "acme/app",
                json!({"exp": 1_000_000_000, "iat": 999_999_000, "nbf": 999_999_000}),
            ),
            "expired",
        ),
        (
            "not valid yet",
            issuer.token("k1", "acme/app", json!({"nbf": 4_000_000_000i64})),
            "not valid yet",
        ),
        (
            "no jti",
            issuer.token("k1", "acme/app", json!({"jti": null})),
            "jti",
        ),
        (
            "not a JWT",
            "not-a-token".to_owned(),
            "not an OIDC ID token",
        ),
    ];
    for (what, token, why) in &cases {
        let (status, body) = exchange(&f, token, scope).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert!(message(&body).contains(why), "{what}: {body}");
    }

    // A replayed token: the first exchange works, the second is refused,
    // on /token and on /v2/ with Basic alike.
    let t = issuer.token("k1", "acme/app", json!({}));
    assert_eq!(exchange(&f, &t, scope).await.0, StatusCode::OK);
    let (status, body) = exchange(&f, &t, scope).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(message(&body).contains("replay"), "{body}");
    let again = f
        .status(Method::GET, "/v2/acme/app/tags/list", &basic("oidc", &t))
        .await;
    assert_eq!(again, StatusCode::UNAUTHORIZED);

    // Each refusal is audited with its reason.
    let failed = f
        .meta
        .audit_events(&AuditFilter {
            action: Some(action::LOGIN_FAILED.into()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert!(
        failed.iter().any(|e| e
            .event
            .detail
            .as_ref()
            .is_some_and(|d| d["method"] == "oidc"
                && d["reason"].as_str().unwrap_or("").contains("replay")
                && d["claims"]["repository"] == "acme/app")),
        "{failed:?}"
    );
}

#[tokio::test]
async fn oidc_key_rotation_is_picked_up_and_rotated_out_keys_are_refused() {
    let issuer = Issuer::start(vec![("old", Key::es256())]);
    let f = fixture("").await;
    assert_eq!(
        add_policy(&f, policy("p", &issuer.url, "acme/app", "acme"))
            .await
            .status(),
        StatusCode::CREATED
    );
    let scope = "repository:acme/app:pull,push";
    let before = issuer.token("old", "acme/app", json!({}));
    assert_eq!(exchange(&f, &before, scope).await.0, StatusCode::OK);
    let fetched = issuer.jwks_fetches.load(Ordering::SeqCst);
    assert_eq!(fetched, 1);

    // Tokens naming unknown keys do not make berth hammer the issuer:
    // at most one refetch per interval (1s here).
    issuer.rotate(vec![("new", Key::rs256())], &["new"]);
    let old_again = issuer.token("old", "acme/app", json!({}));
    assert_eq!(
        exchange(&f, &old_again, scope).await.0,
        StatusCode::OK,
        "cached key"
    );
    for _ in 0..5 {
        let t = issuer.token("new", "acme/app", json!({}));
        let _ = exchange(&f, &t, scope).await;
    }
    assert!(issuer.jwks_fetches.load(Ordering::SeqCst) <= 2);

    // After the interval the new key is fetched, and the key the issuer
    // dropped no longer verifies.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let t = issuer.token("new", "acme/app", json!({}));
    let (status, body) = exchange(&f, &t, scope).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    assert_eq!(
        f.push(&Cred::Bearer(token), "acme/app", "v1", "n").await.0,
        StatusCode::CREATED
    );
    let stale = issuer.token("old", "acme/app", json!({}));
    let (status, body) = exchange(&f, &stale, scope).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(message(&body).contains("rotated out"), "{body}");
}

#[tokio::test]
async fn oidc_sessions_refresh_and_stay_within_their_grants() {
    let issuer = Issuer::start(vec![("k", Key::es256())]);
    let f = fixture("").await;
    assert_eq!(
        add_policy(&f, policy("p", &issuer.url, "acme/app", "acme/app"))
            .await
            .status(),
        StatusCode::CREATED
    );
    // docker login: GET /token with offline_token=true returns a session
    // token as the refresh token.
    let id_token = issuer.token("k", "acme/app", json!({}));
    let r = req(
        &f.c,
        Method::GET,
        &format!("{}/token", f.url()),
        &basic("oidc", &id_token),
    )
    .query(&[
        ("service", "berth"),
        ("offline_token", "true"),
        ("client_id", "docker"),
    ])
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    let session = body["refresh_token"]
        .as_str()
        .expect("a session token")
        .to_owned();
    let claims = crate::auth::claims(&session);
    assert_eq!(claims["sub"], "");
    assert_eq!(claims["wkl"]["ses"], true);
    assert!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap() <= 15 * 60);

    // The OAuth2 refresh grant with it, as the daemon does before a push.
    let r =
        f.c.post(format!("{}/token", f.url()))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", session.as_str()),
                ("service", "berth"),
                (
                    "scope",
                    "repository:acme/app:pull,push repository:acme/other:pull,push",
                ),
                ("client_id", "docker"),
            ])
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["scope"], "repository:acme/app:pull,push");
    let token = body["token"].as_str().unwrap().to_owned();
    assert_eq!(
        f.push(&Cred::Bearer(token), "acme/app", "v1", "s").await.0,
        StatusCode::CREATED
    );
    // The session token works as the password of `oidc` again and again
    // (clients that send Basic credentials on every token request).
    for tag in ["v2", "v3"] {
        let (status, body) = exchange(&f, &session, "repository:acme/app:pull,push").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let t = body["token"].as_str().unwrap().to_owned();
        assert_eq!(
            f.push(&Cred::Bearer(t), "acme/app", tag, tag).await.0,
            StatusCode::CREATED
        );
    }
    // ... and, as a bearer on /v2/, it is still held to its grants.
    let (status, _) = f
        .push(&Cred::Bearer(session.clone()), "acme/other", "v1", "o")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A registry token for one repository is not a session.
    let (_, body) = exchange(&f, &session, "repository:acme/app:pull").await;
    let scoped = body["token"].as_str().unwrap();
    let (status, body) = exchange(&f, scoped, "repository:acme/app:pull,push").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // A workload never manages the registry.
    let r = req(
        &f.c,
        Method::GET,
        &format!("{}/api/v1/oidc/policies", f.url()),
        &Cred::Bearer(session),
    )
    .send()
    .await
    .unwrap();
    assert!(r.status() == StatusCode::UNAUTHORIZED || r.status() == StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn oidc_policies_are_managed_by_site_admins_and_checked() {
    let issuer = Issuer::start(vec![("k", Key::es256())]);
    let f = fixture("").await;
    let alice = f.user("alice").await;
    let p = policy("acme-app", &issuer.url, "acme/app", "acme");
    let r = req(
        &f.c,
        Method::POST,
        &format!("{}/api/v1/oidc/policies", f.url()),
        &alice,
    )
    .json(&p)
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        add_policy(&f, p.clone()).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(add_policy(&f, p).await.status(), StatusCode::CONFLICT);
    // A policy that any repository satisfies, or over plain HTTP to a
    // remote issuer, or granting admin, is refused with the reason.
    for (body, why) in [
        (
            json!({"name": "open", "issuer": issuer.url, "audience": AUDIENCE,
                   "claims": {"ref": "refs/heads/main"}, "repositories": "acme", "scopes": ["push"]}),
            "does not pin",
        ),
        (
            json!({"name": "plain", "issuer": "http://ci.example.com", "audience": AUDIENCE,
                   "claims": {"repository": "acme/app"}, "repositories": "acme", "scopes": ["push"]}),
            "https",
        ),
        (
            json!({"name": "admin", "issuer": issuer.url, "audience": AUDIENCE,
                   "claims": {"repository": "acme/app"}, "repositories": "acme", "scopes": ["admin"]}),
            "pull, push or delete",
        ),
    ] {
        let r = add_policy(&f, body).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let body: Value = r.json().await.unwrap();
        assert!(message(&body).contains(why), "{body}");
    }
    // The name `oidc` is reserved.
    let r = req(
        &f.c,
        Method::POST,
        &format!("{}/api/v1/users", f.url()),
        &admin(),
    )
    .json(&json!({"name": "oidc", "password": "a-long-enough-password"}))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // The CLI: add, list, remove.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(crate::common::berth_bin())
            .args(["oidc", "policy"])
            .args(args)
            .args([
                "--registry",
                &f.url(),
                "--user",
                "admin",
                "--password",
                crate::common::ADMIN_PASSWORD,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    cli(&[
        "add",
        "tools-release",
        "--issuer",
        &issuer.url,
        "--audience",
        AUDIENCE,
        "--claim",
        "repository_owner_id=1342004",
        "--claim",
        "workflow_ref=acme/tools/.github/workflows/release.yml@refs/tags/*",
        "--repositories",
        "acme/tools-*",
        "--scopes",
        "push",
    ]);
    let listed = cli(&["list", "-o", "json"]);
    let all: Value = serde_json::from_str(&listed).unwrap();
    let names: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acme-app", "tools-release"]);
    assert_eq!(all[1]["scopes"], json!(["pull", "push"]));
    assert!(cli(&["list"]).contains("acme/tools-*"));

    // The tag-release policy lets a token of a release tag push there.
    let t = issuer.token(
        "k",
        "acme/tools",
        json!({"ref": "refs/tags/v1.2.0",
               "workflow_ref": "acme/tools/.github/workflows/release.yml@refs/tags/v1.2.0"}),
    );
    let (status, body) = exchange(&f, &t, "repository:acme/tools-cli:pull,push").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "repository:acme/tools-cli:pull,push");

    cli(&["remove", "tools-release"]);
    let t = issuer.token(
        "k",
        "acme/tools",
        json!({"ref": "refs/tags/v1.2.0",
               "workflow_ref": "acme/tools/.github/workflows/release.yml@refs/tags/v1.2.0"}),
    );
    let (status, _) = exchange(&f, &t, "repository:acme/tools-cli:pull,push").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
