//! Authentication and permissions on a real `berth serve --auth token`:
//! the token flow (challenge, `GET`/`POST /token`, Basic on `/v2/`), and
//! each permission rule. Attacks are in `auth_attacks`, real clients in
//! `auth_interop`.
//!
//! Accounts are made directly in the server's database by the test (the
//! management API is tested with its own endpoints); the server runs with
//! `auth_cache_ttl = "0s"` so it sees such changes at once.

use base64::Engine as _;
use berth_meta::accounts::{Role, Visibility};
use berth_meta::audit::{action, AuditFilter};
use berth_meta::Meta;
use berth_registry::auth::{AuthSettings, Authority, TokenRequest};
use berth_registry::Caller;
use reqwest::{Client, Method, RequestBuilder, StatusCode};
use serde_json::Value;

use crate::common::{Berth, ADMIN_PASSWORD};
use crate::oci::*;

/// Credentials a test request carries.
#[derive(Clone)]
pub enum Cred {
    /// None.
    Anon,
    /// `Basic user:password` (the password may be an access token).
    Basic(String, String),
    /// `Bearer token`.
    Bearer(String),
}

pub fn basic(user: &str, password: &str) -> Cred {
    Cred::Basic(user.into(), password.into())
}

pub fn admin() -> Cred {
    basic("admin", ADMIN_PASSWORD)
}

pub fn req(c: &Client, method: Method, url: &str, cred: &Cred) -> RequestBuilder {
    let r = c.request(method, url);
    match cred {
        Cred::Anon => r,
        Cred::Basic(u, p) => r.basic_auth(u, Some(p)),
        Cred::Bearer(t) => r.bearer_auth(t),
    }
}

/// A server with auth on and a handle on its database for fixtures.
pub struct Fixture {
    pub berth: Berth,
    pub meta: Meta,
    pub auth: Authority,
    pub c: Client,
}

impl Fixture {
    /// Starts the server (with `toml` added to its config) and opens its
    /// database.
    pub async fn start(toml: &str) -> Fixture {
        let config = format!("auth_cache_ttl = \"0s\"\n{toml}");
        let berth = Berth::start_auth(&[], Some(&config));
        let meta = Meta::open_sqlite(&berth.data_dir.join("berth.db"))
            .await
            .unwrap();
        let auth = Authority::new(meta.clone(), AuthSettings::default())
            .await
            .unwrap();
        Fixture {
            berth,
            meta,
            auth,
            c: client(),
        }
    }

    pub fn url(&self) -> String {
        self.berth.url()
    }

    pub async fn user(&self, name: &str) -> Cred {
        let password = format!("{name}-password");
        assert!(self
            .auth
            .create_user(name, Some(&password), false, None, &Caller::system("test"))
            .await
            .unwrap());
        basic(name, &password)
    }

    pub async fn org(&self, name: &str, visibility: Visibility) {
        assert!(self
            .meta
            .create_org(name, visibility, None, &Caller::system("test").actor())
            .await
            .unwrap());
    }

    pub async fn member(&self, org: &str, user: &str, role: Role) {
        assert!(self
            .meta
            .set_member(org, user, role, &Caller::system("test").actor())
            .await
            .unwrap());
    }

    /// A token of `owner` with `scopes` limited to `patterns`.
    pub async fn token(&self, owner: &str, scopes: &[&str], patterns: &[&str]) -> (String, String) {
        let t = self
            .auth
            .create_token(
                owner,
                &TokenRequest {
                    name: "test".into(),
                    scopes: scopes.iter().map(|s| s.to_string()).collect(),
                    patterns: patterns.iter().map(|s| s.to_string()).collect(),
                    expires_at: None,
                },
                &Caller::system("test"),
            )
            .await
            .unwrap()
            .unwrap();
        (t.record.id, t.token)
    }

    /// Pushes a small image as `cred`; returns the manifest PUT's status
    /// (the first failing blob upload's if one fails) and the digest.
    pub async fn push(
        &self,
        cred: &Cred,
        repo: &str,
        tag: &str,
        seed: &str,
    ) -> (StatusCode, String) {
        let u = self.url();
        let config = format!("{{\"seed\":\"{seed}\"}}").into_bytes();
        let layer = format!("layer-{seed}").into_bytes();
        for blob in [&config, &layer] {
            let d = sha256(blob);
            let r = req(
                &self.c,
                Method::POST,
                &format!("{u}/v2/{repo}/blobs/uploads/?digest={d}"),
                cred,
            )
            .body(blob.clone())
            .send()
            .await
            .unwrap();
            if r.status() != StatusCode::CREATED {
                return (r.status(), String::new());
            }
        }
        let m = image_manifest(&config, &[&layer]);
        let r = req(
            &self.c,
            Method::PUT,
            &format!("{u}/v2/{repo}/manifests/{tag}"),
            cred,
        )
        .header("content-type", OCI_MANIFEST)
        .body(m.clone())
        .send()
        .await
        .unwrap();
        (r.status(), sha256(&m))
    }

    /// The status of `method` on `path` (under the server) as `cred`.
    pub async fn status(&self, method: Method, path: &str, cred: &Cred) -> StatusCode {
        req(&self.c, method, &format!("{}{path}", self.url()), cred)
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap()
            .status()
    }

    /// A registry token from `GET /token` for `scopes`.
    pub async fn token_for(&self, cred: &Cred, scopes: &[&str]) -> Value {
        let mut q = vec![("service", "berth")];
        q.extend(scopes.iter().map(|s| ("scope", *s)));
        let r = req(&self.c, Method::GET, &format!("{}/token", self.url()), cred)
            .query(&q)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }
}

/// The parameters of a `WWW-Authenticate: Bearer ...` header.
pub fn challenge(r: &reqwest::Response) -> String {
    r.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// The JSON claims of a JWT (unverified).
pub fn claims(jwt: &str) -> Value {
    let p = jwt.split('.').nth(1).unwrap();
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(p)
        .unwrap();
    serde_json::from_slice(&b).unwrap()
}

#[tokio::test]
async fn token_flow_challenge_login_and_refresh() {
    let f = Fixture::start("").await;
    let u = f.url();

    // /v2/ asks for credentials, saying where to get a token.
    let r = f.c.get(format!("{u}/v2/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let expected = format!("Bearer realm=\"{u}/token\",service=\"berth\"");
    assert_eq!(challenge(&r), expected);
    assert_eq!(
        r.json::<Value>().await.unwrap()["errors"][0]["code"],
        "UNAUTHORIZED"
    );

    // GET /token with Basic: a short-lived token granting what was asked
    // and allowed.
    let t = f
        .token_for(&admin(), &["repository:admin/app:pull,push"])
        .await;
    let jwt = t["token"].as_str().unwrap();
    assert_eq!(t["access_token"], t["token"]);
    assert_eq!(t["expires_in"], 300);
    assert!(t["issued_at"].as_str().unwrap().ends_with('Z'));
    let c = claims(jwt);
    assert_eq!(
        (c["sub"].as_str(), c["aud"].as_str()),
        (Some("admin"), Some("berth"))
    );
    assert_eq!(c["access"][0]["name"], "admin/app");
    assert_eq!(
        c["access"][0]["actions"],
        serde_json::json!(["pull", "push"])
    );
    let bearer = Cred::Bearer(jwt.into());
    assert_eq!(f.status(Method::GET, "/v2/", &bearer).await, StatusCode::OK);
    assert_eq!(
        f.push(&bearer, "admin/app", "v1", "a").await.0,
        StatusCode::CREATED
    );
    // The token is held to its scope: another repository needs another.
    let r = req(
        &f.c,
        Method::GET,
        &format!("{u}/v2/admin/other/tags/list"),
        &bearer,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge(&r),
        format!("{expected},scope=\"repository:admin/other:pull\",error=\"insufficient_scope\"")
    );

    // Basic directly on /v2/ works too; wrong passwords do not.
    assert_eq!(
        f.status(Method::GET, "/v2/", &admin()).await,
        StatusCode::OK
    );
    assert_eq!(
        f.status(Method::GET, "/v2/admin/app/tags/list", &admin())
            .await,
        StatusCode::OK
    );
    let wrong = basic("admin", "not-the-password");
    assert_eq!(
        f.status(Method::GET, "/v2/", &wrong).await,
        StatusCode::UNAUTHORIZED
    );
    let r = req(&f.c, Method::GET, &format!("{u}/token"), &wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Anonymous tokens carry only what anonymous may do (nothing here).
    let t = f
        .token_for(&Cred::Anon, &["repository:admin/app:pull"])
        .await;
    assert_eq!(
        claims(t["token"].as_str().unwrap())["access"],
        serde_json::json!([])
    );
    assert_eq!(claims(t["token"].as_str().unwrap())["sub"], "");

    // POST /token: OAuth2 password grant with a refresh token, then the
    // refresh grant.
    let form = [
        ("grant_type", "password"),
        ("username", "admin"),
        ("password", ADMIN_PASSWORD),
        ("service", "berth"),
        ("client_id", "test"),
        ("access_type", "offline"),
        ("scope", "repository:admin/app:pull"),
    ];
    let r =
        f.c.post(format!("{u}/token"))
            .form(&form)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let t: Value = r.json().await.unwrap();
    let refresh = t["refresh_token"].as_str().unwrap().to_owned();
    assert!(refresh.starts_with("berth_refresh_"));
    assert_eq!(t["scope"], "repository:admin/app:pull");
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
        ("service", "berth"),
        ("scope", "repository:admin/app:pull,push"),
    ];
    let r =
        f.c.post(format!("{u}/token"))
            .form(&form)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["refresh_token"], refresh.as_str());
    let jwt = t["access_token"].as_str().unwrap();
    assert_eq!(
        f.push(&Cred::Bearer(jwt.into()), "admin/app", "v2", "b")
            .await
            .0,
        StatusCode::CREATED
    );
    let bad = [
        ("grant_type", "password"),
        ("username", "admin"),
        ("password", "nope-nope"),
    ];
    let r =
        f.c.post(format!("{u}/token"))
            .form(&bad)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r =
        f.c.post(format!("{u}/token"))
            .form(&[("grant_type", "magic")])
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // Logins and failures are in the audit log with the client address.
    let logins = f
        .meta
        .audit_events(&AuditFilter {
            action: Some("login".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(logins
        .iter()
        .any(|e| e.event.actor == "admin" && e.event.client_ip.as_deref() == Some("127.0.0.1")));
    let failed = f
        .meta
        .audit_events(&AuditFilter {
            action: Some(action::LOGIN_FAILED.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(failed.len() >= 3, "{failed:?}");
    assert!(failed
        .iter()
        .all(|e| e.event.client_ip.as_deref() == Some("127.0.0.1")));
}

#[tokio::test]
async fn each_permission_rule() {
    let f = Fixture::start("").await;
    let alice = f.user("alice").await;
    let bob = f.user("bob").await;
    let carol = f.user("carol").await;
    f.org("acme", Visibility::Private).await;
    f.member("acme", "bob", Role::Write).await;
    f.member("acme", "carol", Role::Read).await;
    f.member("acme", "alice", Role::Admin).await;
    use Method as M;
    let s = StatusCode::UNAUTHORIZED;
    let d = StatusCode::FORBIDDEN;

    // Own namespace: everything; others': nothing; anonymous: log in.
    let (st, alice_app) = f.push(&alice, "alice/app", "v1", "alice").await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(f.push(&bob, "alice/app", "evil", "bob").await.0, d);
    assert_eq!(f.push(&Cred::Anon, "alice/app", "evil", "anon").await.0, s);
    assert_eq!(
        f.status(M::GET, "/v2/alice/app/manifests/v1", &alice).await,
        StatusCode::OK
    );
    assert_eq!(
        f.status(M::GET, "/v2/alice/app/manifests/v1", &bob).await,
        d
    );
    assert_eq!(
        f.status(M::GET, "/v2/alice/app/manifests/v1", &Cred::Anon)
            .await,
        s
    );
    assert_eq!(
        f.status(M::GET, "/v2/alice/app/tags/list", &Cred::Anon)
            .await,
        s
    );

    // Public namespace: anonymous pull, still no push; a repository
    // override keeps one repository private.
    let root = Caller::system("test").actor();
    f.meta
        .set_namespace_visibility(
            &berth_oci::Namespace::parse("alice").unwrap(),
            Visibility::Public,
            &root,
        )
        .await
        .unwrap();
    assert_eq!(
        f.status(M::GET, "/v2/alice/app/manifests/v1", &Cred::Anon)
            .await,
        StatusCode::OK
    );
    assert_eq!(
        f.status(M::GET, "/v2/alice/app/tags/list", &bob).await,
        StatusCode::OK
    );
    assert_eq!(f.push(&bob, "alice/app", "evil", "bob").await.0, d);
    assert_eq!(
        f.push(&alice, "alice/secret", "v1", "s").await.0,
        StatusCode::CREATED
    );
    f.meta
        .set_repository_visibility(
            &berth_oci::RepositoryName::parse("alice/secret").unwrap(),
            Some(Visibility::Private),
            &root,
        )
        .await
        .unwrap();
    assert_eq!(
        f.status(M::GET, "/v2/alice/secret/manifests/v1", &Cred::Anon)
            .await,
        s
    );
    assert_eq!(
        f.status(M::GET, "/v2/alice/secret/manifests/v1", &alice)
            .await,
        StatusCode::OK
    );

    // Organisation roles: write pushes, read pulls, admin deletes.
    let (st, web) = f.push(&bob, "acme/web", "v1", "web").await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(
        f.status(M::GET, "/v2/acme/web/manifests/v1", &carol).await,
        StatusCode::OK
    );
    assert_eq!(f.push(&carol, "acme/web", "v2", "c").await.0, d);
    assert_eq!(
        f.status(M::GET, "/v2/acme/web/manifests/v1", &Cred::Anon)
            .await,
        s
    );
    let del = format!("/v2/acme/web/manifests/{web}");
    assert_eq!(f.status(M::DELETE, &del, &bob).await, d);
    assert_eq!(
        f.status(M::DELETE, &del, &alice).await,
        StatusCode::ACCEPTED
    );

    // Site admin: everything everywhere.
    assert_eq!(
        f.push(&admin(), "acme/tools", "v1", "adm").await.0,
        StatusCode::CREATED
    );
    let del = format!("/v2/alice/app/manifests/{alice_app}");
    assert_eq!(
        f.status(M::DELETE, &del, &admin()).await,
        StatusCode::ACCEPTED
    );

    // A robot pushes with its token, within its token's patterns.
    let robot = f
        .auth
        .create_robot("acme", "ci", Role::Write, &Caller::system("test"))
        .await
        .unwrap()
        .unwrap();
    let (_, secret) = f.token(&robot, &["push"], &["acme/web"]).await;
    assert!(secret.starts_with("berth_robot_"));
    let ci = basic(&robot, &secret);
    assert_eq!(
        f.push(&ci, "acme/web", "ci", "ci").await.0,
        StatusCode::CREATED
    );
    assert_eq!(f.push(&ci, "acme/tools", "ci", "ci").await.0, d);
    // A personal token is held to its scopes.
    let (_, pull_only) = f.token("bob", &["pull"], &[]).await;
    let pat = basic("bob", &pull_only);
    assert_eq!(
        f.status(M::GET, "/v2/acme/web/manifests/ci", &pat).await,
        StatusCode::OK
    );
    assert_eq!(f.push(&pat, "acme/web", "pat", "pat").await.0, d);

    // The catalog lists what the caller may pull.
    let catalog = |cred: Cred| {
        let f = &f;
        async move {
            let r = req(&f.c, M::GET, &format!("{}/v2/_catalog", f.url()), &cred)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.json::<Value>().await.unwrap()["repositories"].clone()
        }
    };
    assert_eq!(catalog(Cred::Anon).await, serde_json::json!(["alice/app"]));
    assert_eq!(
        catalog(carol.clone()).await,
        serde_json::json!(["acme/tools", "acme/web", "alice/app"])
    );
    assert_eq!(
        catalog(admin()).await,
        serde_json::json!(["acme/tools", "acme/web", "alice/app", "alice/secret"])
    );
}

#[tokio::test]
async fn open_mode_and_default_visibility() {
    // --auth none: everything open, and the log says so.
    let b = Berth::start();
    let c = client();
    assert_eq!(
        c.get(format!("{}/v2/", b.url()))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    push_image(&c, &b.url(), "anyone/app", "v1", "x").await;
    assert!(b.log().contains("authentication is off"), "{}", b.log());

    // default_visibility = "public": new namespaces are public, but a
    // namespace nobody owns stays private.
    let f = Fixture::start("default_visibility = \"public\"\n").await;
    assert_eq!(
        f.push(&admin(), "shared/app", "v1", "s").await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        f.status(Method::GET, "/v2/shared/app/manifests/v1", &Cred::Anon)
            .await,
        StatusCode::UNAUTHORIZED
    );
    let r = req(
        &f.c,
        Method::POST,
        &format!("{}/api/v1/orgs", f.url()),
        &admin(),
    )
    .json(&serde_json::json!({"name": "opened"}))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        f.push(&admin(), "opened/app", "v1", "s").await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        f.status(Method::GET, "/v2/opened/app/manifests/v1", &Cred::Anon)
            .await,
        StatusCode::OK
    );
    assert_eq!(
        f.push(&Cred::Anon, "shared/app", "v2", "s").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert!(
        !f.berth.log().contains(ADMIN_PASSWORD),
        "a given password is never logged"
    );
}
