//! The web UI's security rules against a real `berth serve --auth token`,
//! driven by plain HTTP: sign-in and its cookie, CSRF refusals, sign-out,
//! session ends, what a second user may not see (in search, by URL),
//! admin-only pages. The browser tests (Playwright, axe-core) are in
//! `ui_browser`.

use std::collections::HashMap;

use berth_meta::accounts::Visibility;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;

use crate::auth::{admin, Cred, Fixture};
use crate::common::ADMIN_PASSWORD;

/// A browser of sorts: one client, its cookies kept by hand.
pub struct Browser {
    base: String,
    c: reqwest::Client,
    cookies: HashMap<String, String>,
    /// Extra headers sent with every request.
    extra: Vec<(&'static str, String)>,
}

/// A response, read whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    /// The `Set-Cookie` header setting `name`.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .find(|v| v.starts_with(&format!("{name}=")))
    }

    /// The value of the hidden field `name` of the first form holding one.
    pub fn field(&self, name: &str) -> String {
        let needle = format!("name=\"{name}\" value=\"");
        let start = self
            .body
            .find(&needle)
            .unwrap_or_else(|| panic!("no field {name} in {}", self.body))
            + needle.len();
        let end = self.body[start..].find('"').unwrap() + start;
        self.body[start..end].to_owned()
    }

    pub fn location(&self) -> String {
        self.headers
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }
}

impl Browser {
    pub fn new(base: &str) -> Browser {
        Browser {
            base: base.to_owned(),
            c: crate::oci::client(),
            cookies: HashMap::new(),
            extra: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn read(&mut self, r: reqwest::Response) -> Answer {
        let status = r.status();
        let headers = r.headers().clone();
        for v in headers.get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let pair = v.split(';').next().unwrap();
            let (k, val) = pair.split_once('=').unwrap();
            if v.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), val.to_owned());
            }
        }
        Answer {
            status,
            headers,
            body: r.text().await.unwrap(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Answer {
        let mut r = self
            .c
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header());
        for (k, v) in &self.extra {
            r = r.header(*k, v);
        }
        let r = r.send().await.unwrap();
        self.read(r).await
    }

    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let mut r = self
            .c
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .form(fields);
        for (k, v) in &self.extra {
            r = r.header(*k, v);
        }
        let r = r.send().await.unwrap();
        self.read(r).await
    }

    /// Signs in through the form; returns the POST's answer.
    pub async fn sign_in(&mut self, user: &str, password: &str) -> Answer {
        let form = self.get("/ui/login").await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.body);
        let login = form.field("login");
        self.post(
            "/ui/login",
            &[
                ("login", &login),
                ("username", user),
                ("password", password),
                ("next", "/ui/"),
            ],
        )
        .await
    }

    /// The CSRF secret of the current session (from a page's sign-out
    /// form).
    pub async fn csrf(&mut self) -> String {
        self.get("/ui/").await.field("csrf")
    }
}

/// The password of a user made by the fixture.
pub fn password(cred: &Cred) -> String {
    match cred {
        Cred::Basic(_, p) => p.clone(),
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn sign_in_sets_a_strict_session_cookie_and_sign_out_ends_the_session() {
    let f = Fixture::start("").await;
    let mut b = Browser::new(&f.url());

    // `/` leads to the UI; pages carry a strict CSP.
    let root = b.get("/").await;
    assert!(root.status.is_redirection());
    assert_eq!(root.location(), "/ui/");
    let home = b.get("/ui/").await;
    assert_eq!(home.status, StatusCode::OK);
    let csp = home.headers["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(home.headers["cache-control"], "no-store");
    assert!(home.body.contains("Sign in"), "{}", home.body);

    // A wrong password re-shows the form with 401.
    let wrong = b.sign_in("admin", "not-the-password").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("Wrong user name, password or token."));
    assert!(wrong.set_cookie("berth_session").is_none());

    let ok = b.sign_in("admin", ADMIN_PASSWORD).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    assert_eq!(ok.location(), "/ui/");
    let cookie = ok.set_cookie("berth_session").expect("session cookie");
    for part in ["HttpOnly", "SameSite=Lax", "Path=/ui", "Max-Age=43200"] {
        assert!(cookie.contains(part), "{cookie} lacks {part}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let id = cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned();
    assert!(id.len() >= 40, "{id}");
    let home = b.get("/ui/").await;
    assert!(
        home.body.contains("Signed in as <strong>admin</strong>"),
        "{}",
        home.body
    );

    // The database keeps only the id's hash.
    let stored = f.meta.ui_session(&id).await.unwrap();
    assert!(stored.is_none(), "the raw id must not be a key");

    // Sign-out without the form secret is refused; with it, the session
    // is gone, and the old cookie signs nobody in.
    let forged = b.post("/ui/logout", &[]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(forged.body.contains("Form refused"), "{}", forged.body);
    let csrf = b.csrf().await;
    let out = b.post("/ui/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out
        .set_cookie("berth_session")
        .unwrap()
        .contains("Max-Age=0"));
    let mut stale = Browser::new(&f.url());
    stale.cookies.insert("berth_session".into(), id);
    let tokens = stale.get("/ui/tokens").await;
    assert_eq!(tokens.status, StatusCode::SEE_OTHER);
    assert_eq!(tokens.location(), "/ui/login");
}

#[tokio::test]
async fn forged_forms_are_refused_with_a_readable_page() {
    let f = Fixture::start("").await;
    let alice = f.user("alice").await;
    let mut b = Browser::new(&f.url());

    // Signing in needs the form's own token (its cookie twin).
    let form = b.get("/ui/login").await;
    let login = form.field("login");
    let mut other = Browser::new(&f.url());
    let r = other
        .post(
            "/ui/login",
            &[
                ("login", &login),
                ("username", "alice"),
                ("password", &password(&alice)),
            ],
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "a sign-in form posted from elsewhere"
    );
    assert!(r.set_cookie("berth_session").is_none());

    assert_eq!(
        b.sign_in("alice", &password(&alice)).await.status,
        StatusCode::SEE_OTHER
    );
    let csrf = b.csrf().await;
    // No secret, a wrong one, another session's: refused before anything
    // is done.
    let mut mallory = Browser::new(&f.url());
    mallory.sign_in("admin", ADMIN_PASSWORD).await;
    let foreign = mallory.csrf().await;
    assert_ne!(csrf, foreign);
    for sent in [None, Some("x"), Some(foreign.as_str())] {
        let mut fields = vec![("name", "forged"), ("scope", "pull"), ("expires", "30")];
        if let Some(s) = sent {
            fields.push(("csrf", s));
        }
        let r = b.post("/ui/tokens", &fields).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "csrf {sent:?}");
        assert!(r.body.contains("did not carry this session"), "{}", r.body);
    }
    assert!(
        f.meta.tokens("alice").await.unwrap().is_empty(),
        "nothing was created"
    );

    // With the secret, the token is made and its secret shown once.
    let r = b
        .post(
            "/ui/tokens",
            &[
                ("csrf", &csrf),
                ("name", "laptop"),
                ("scope", "pull"),
                ("expires", "30"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("berth_pat_"), "{}", r.body);
    let tokens = f.meta.tokens("alice").await.unwrap();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].scopes, ["pull"]);
    assert!(tokens[0].expires_at.is_some());
    // The list never shows it again.
    let list = b.get("/ui/tokens").await;
    assert!(!list.body.contains("berth_pat_"), "{}", list.body);
    assert!(list.body.contains(&tokens[0].id));
    // Revoking needs the secret too.
    let r = b.post("/ui/tokens/revoke", &[("id", &tokens[0].id)]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = b
        .post(
            "/ui/tokens/revoke",
            &[("csrf", &csrf), ("id", &tokens[0].id)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(f
        .meta
        .token(&tokens[0].id)
        .await
        .unwrap()
        .unwrap()
        .revoked_at
        .is_some());
}

#[tokio::test]
async fn a_second_user_never_sees_a_private_repository() {
    let f = Fixture::start("").await;
    let alice = f.user("alice").await;
    let bob = f.user("bob").await;
    f.org("pub", Visibility::Public).await;
    let (s, digest) = f.push(&alice, "alice/secret-app", "v1", "a").await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = f.push(&admin(), "pub/open-app", "v1", "p").await;
    assert_eq!(s, StatusCode::CREATED);

    let mut a = Browser::new(&f.url());
    assert_eq!(
        a.sign_in("alice", &password(&alice)).await.status,
        StatusCode::SEE_OTHER
    );
    let found = a.get("/ui/?q=app").await;
    assert!(
        found.body.contains("alice/secret-app") && found.body.contains("pub/open-app"),
        "{}",
        found.body
    );
    let repo = a.get("/ui/repo/alice/secret-app").await;
    assert_eq!(repo.status, StatusCode::OK, "{}", repo.body);
    assert!(
        repo.body.contains("v1") && repo.body.contains(&digest[7..19]),
        "{}",
        repo.body
    );

    let mut b = Browser::new(&f.url());
    assert_eq!(
        b.sign_in("bob", &password(&bob)).await.status,
        StatusCode::SEE_OTHER
    );
    let found = b.get("/ui/?q=app").await;
    assert!(found.body.contains("pub/open-app"), "{}", found.body);
    assert!(!found.body.contains("secret"), "{}", found.body);
    let everything = b.get("/ui/").await;
    assert!(!everything.body.contains("secret"), "{}", everything.body);
    // By URL: the repository, an image by tag and by digest, its
    // namespace: each a 404, the very page a repository that does not
    // exist gets.
    for path in [
        "/ui/repo/alice/secret-app".to_owned(),
        "/ui/repo/alice/secret-app:v1".to_owned(),
        format!("/ui/repo/alice/secret-app@{digest}"),
        "/ui/ns/alice".to_owned(),
        "/ui/repo/alice/does-not-exist".to_owned(),
    ] {
        let r = b.get(&path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert!(!r.body.contains("secret-app"), "{path}: {}", r.body);
    }
    let private = b.get("/ui/repo/alice/secret-app").await.body;
    let missing = b.get("/ui/repo/alice/nothing-here").await.body;
    assert_eq!(private, missing);
    // Anonymous: the same.
    let mut anon = Browser::new(&f.url());
    assert_eq!(
        anon.get("/ui/repo/alice/secret-app").await.status,
        StatusCode::NOT_FOUND
    );
    assert!(anon.get("/ui/").await.body.contains("pub/open-app"));
    assert!(!anon
        .get("/ui/?q=secret")
        .await
        .body
        .contains("alice/secret-app"));
}

#[tokio::test]
async fn admin_pages_are_for_site_admins_only() {
    let f = Fixture::start("").await;
    let bob = f.user("bob").await;
    let mut anon = Browser::new(&f.url());
    let r = anon.get("/ui/admin/users").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/ui/login");
    let mut b = Browser::new(&f.url());
    b.sign_in("bob", &password(&bob)).await;
    let r = b.get("/ui/admin/users").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("Not allowed"), "{}", r.body);
    assert!(!b.get("/ui/").await.body.contains("/ui/admin/users"));
    let mut a = Browser::new(&f.url());
    a.sign_in("admin", ADMIN_PASSWORD).await;
    let r = a.get("/ui/admin/users").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("<td>bob</td>"), "{}", r.body);
}

#[tokio::test]
async fn a_token_session_ends_with_its_token_and_is_held_to_its_limits() {
    let f = Fixture::start("").await;
    f.user("carol").await;
    let (s, _) = f.push(&admin(), "carol/app", "v1", "c").await;
    assert_eq!(s, StatusCode::CREATED);
    let (id, token) = f.token("carol", &["pull"], &["carol/other"]).await;
    let mut b = Browser::new(&f.url());
    let r = b.sign_in("", &token).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(b
        .get("/ui/")
        .await
        .body
        .contains("Signed in as <strong>carol</strong>"));
    // The token's patterns exclude carol/app: not shown, not readable.
    assert!(!b.get("/ui/").await.body.contains("carol/app"));
    assert_eq!(
        b.get("/ui/repo/carol/app").await.status,
        StatusCode::NOT_FOUND
    );
    // A pull-only token manages no tokens.
    let page = b.get("/ui/tokens").await;
    assert!(page.body.contains("cannot manage tokens"), "{}", page.body);
    f.auth
        .revoke_token(&id, &berth_registry::Caller::system("test"))
        .await
        .unwrap();
    let r = b.get("/ui/tokens").await;
    assert_eq!(
        r.status,
        StatusCode::SEE_OTHER,
        "a revoked token's session ends"
    );
}

#[tokio::test]
async fn secure_cookies_behind_a_tls_proxy_and_throttled_sign_ins() {
    let f = Fixture::start("trust_forwarded_for = true\n").await;
    let mut b = Browser::new(&f.url());
    b.extra.push(("x-forwarded-proto", "https".into()));
    b.extra.push(("x-forwarded-for", "198.51.100.7".into()));
    let r = b.sign_in("admin", ADMIN_PASSWORD).await;
    let cookie = r.set_cookie("berth_session").expect("cookie");
    assert!(cookie.contains("; Secure"), "{cookie}");
    // Failed sign-ins are throttled as the API's are.
    let mut b = Browser::new(&f.url());
    b.extra.push(("x-forwarded-for", "198.51.100.7".into()));
    let mut last = StatusCode::OK;
    for _ in 0..8 {
        last = b.sign_in("admin", "wrong-password").await.status;
        if last == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
    let page = b.sign_in("admin", "wrong-password").await;
    assert!(
        page.body.contains("Too many failed sign-ins"),
        "{}",
        page.body
    );
}

/// How long the UI takes to render pages of a repository with 10,000 tags
/// (each its own manifest), measured from the client over loopback: the
/// number docs/benchmarks.md reports. Seeding pushes the manifests through
/// the registry API, eight at a time: a minute and more in a debug
/// build, so not part of every run (`cargo test -p berth --test it
/// ui::ten_thousand -- --ignored --nocapture`).
#[tokio::test]
#[ignore = "a measurement: seeding 10,000 manifests takes a minute"]
async fn ten_thousand_tags_render_in_pages() {
    const TAGS: usize = 10_000;
    let f = Fixture::start("").await;
    let (s, _) = f.push(&admin(), "admin/many", "seed", "m").await;
    assert_eq!(s, StatusCode::CREATED);
    let config = b"{\"seed\":\"m\"}".to_vec();
    let layer = b"layer-m".to_vec();
    let started = std::time::Instant::now();
    let url = f.url();
    // A token: no password hashing, no sign-in throttle per request.
    let (_, token) = f.token("admin", &["pull", "push"], &[]).await;
    let mut tasks = tokio::task::JoinSet::new();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for _ in 0..8 {
        let (c, url, next, token) = (f.c.clone(), url.clone(), next.clone(), token.clone());
        let (config, layer) = (config.clone(), layer.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= TAGS {
                    return;
                }
                let mut m: serde_json::Value =
                    serde_json::from_slice(&crate::oci::image_manifest(&config, &[&layer]))
                        .unwrap();
                m["annotations"] = serde_json::json!({ "n": i.to_string() });
                let r = c
                    .put(format!("{url}/v2/admin/many/manifests/v{i:05}"))
                    .bearer_auth(&token)
                    .header("content-type", crate::oci::OCI_MANIFEST)
                    .body(serde_json::to_vec(&m).unwrap())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::CREATED);
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    eprintln!("seeded {TAGS} tags in {:?}", started.elapsed());

    let mut b = Browser::new(&f.url());
    b.sign_in("admin", ADMIN_PASSWORD).await;
    for (label, path) in [
        ("first page", "/ui/repo/admin/many"),
        ("newest first", "/ui/repo/admin/many?sort=pushed"),
        ("page 150", "/ui/repo/admin/many?page=150"),
        ("filtered", "/ui/repo/admin/many?q=v0999"),
        (
            "no match: the tag list alone",
            "/ui/repo/admin/many?q=nothing",
        ),
        ("an image", "/ui/repo/admin/many:v05000"),
        ("largest first", "/ui/repo/admin/many?sort=size"),
        ("namespace", "/ui/ns/admin"),
    ] {
        let first = b.get(path).await;
        assert_eq!(first.status, StatusCode::OK, "{label}");
        let mut times: Vec<std::time::Duration> =
            (0..5).map(|_| std::time::Duration::ZERO).collect();
        for t in &mut times {
            let at = std::time::Instant::now();
            let r = b.get(path).await;
            *t = at.elapsed();
            assert_eq!(r.status, StatusCode::OK);
        }
        times.sort();
        eprintln!(
            "ui page {label} ({path}): median {:?}, best {:?}",
            times[2], times[0]
        );
        if label == "first page" {
            assert!(first.body.contains("(10001)"), "every tag counted");
            assert!(first.body.contains("Page 1 of 201"), "50 a page");
        }
        if label == "page 150" {
            assert!(
                first.body.contains(">v07449<"),
                "page 150 starts at the 7451st tag"
            );
        }
        if label == "filtered" {
            assert!(first.body.contains("(10)"), "v09990..v09999");
        }
    }
}
