//! The authentication handshake against a scripted registry on loopback:
//! Docker Hub's bearer-token flow (anonymous and with credentials), Basic
//! auth, and tag pagination with `Link` headers.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use crate::{Client, ClientOptions, Credential, CredentialStore};

/// What the fake registry saw: (method, path+query, authorization).
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

fn basic(u: &str, p: &str) -> String {
    Credential {
        username: u.into(),
        password: p.into(),
    }
    .basic_header()
}

/// Serves one request per connection with `respond`.
async fn serve(
    respond: impl Fn(&str, &str, &str, &str) -> (u16, Vec<(String, String)>, String)
        + Send
        + Sync
        + 'static,
) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen: Seen = Arc::default();
    let (seen2, addr2) = (seen.clone(), addr.clone());
    let respond = Arc::new(respond);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let (seen, addr, respond) = (seen2.clone(), addr2.clone(), respond.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let mut lines = head.lines();
                let mut first = lines.next().unwrap_or("").split(' ');
                let (method, path) = (
                    first.next().unwrap_or("").to_owned(),
                    first.next().unwrap_or("").to_owned(),
                );
                let auth = lines
                    .find_map(|l| {
                        l.strip_prefix("authorization: ")
                            .or_else(|| l.strip_prefix("Authorization: "))
                    })
                    .unwrap_or("")
                    .to_owned();
                seen.lock()
                    .unwrap()
                    .push((method.clone(), path.clone(), auth.clone()));
                let (status, headers, body) = respond(&addr, &method, &path, &auth);
                let mut resp = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    resp.push_str(&format!("{k}: {v}\r\n"));
                }
                resp.push_str("\r\n");
                resp.push_str(&body);
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    (addr, seen)
}

fn hub(addr: &str, method: &str, path: &str, auth: &str) -> (u16, Vec<(String, String)>, String) {
    let alice = basic("alice", "pw");
    if path.starts_with("/token") {
        return match auth {
            "" => (200, vec![], r#"{"token":"anon"}"#.into()),
            a if a == alice => (200, vec![], r#"{"access_token":"alice-token"}"#.into()),
            _ => (401, vec![], String::new()),
        };
    }
    let challenge = |scope: &str| {
        vec![(
            "WWW-Authenticate".to_owned(),
            format!(r#"Bearer realm="http://{addr}/token",service="fake.io",scope="{scope}""#),
        )]
    };
    match (method, path) {
        ("GET", p) if p.starts_with("/v2/library/alpine/manifests/") => match auth {
            "Bearer anon" | "Bearer alice-token" => (
                200,
                vec![("Content-Type".into(), "application/vnd.oci.image.manifest.v1+json".into())],
                r#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#.into(),
            ),
            _ => (401, challenge("repository:library/alpine:pull"), String::new()),
        },
        ("GET", p) if p.starts_with("/v2/private/app/tags/list") => match auth {
            "Bearer alice-token" if p.contains("last=b") => (200, vec![], r#"{"name":"private/app","tags":["c"]}"#.into()),
            "Bearer alice-token" => (
                200,
                vec![("Link".into(), r#"</v2/private/app/tags/list?last=b&n=2>; rel="next""#.into())],
                r#"{"name":"private/app","tags":["a","b"]}"#.into(),
            ),
            "Bearer anon" => (403, vec![], r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#.into()),
            _ => (401, challenge("repository:private/app:pull"), String::new()),
        },
        _ => (404, vec![], String::new()),
    }
}

#[tokio::test]
async fn bearer_token_flow_anonymous_and_authenticated() {
    let (addr, seen) = serve(hub).await;
    // Anonymous pull, as from Docker Hub without login.
    let anon = Client::new(ClientOptions::default()).unwrap();
    let m = anon
        .repository(&addr, "library/alpine")
        .get_manifest("3.20")
        .await
        .unwrap();
    assert_eq!(m.media_type, "application/vnd.oci.image.manifest.v1+json");
    // The token is cached: a second request goes straight through.
    anon.repository(&addr, "library/alpine")
        .get_manifest("3.21")
        .await
        .unwrap();
    let token_requests: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.1.starts_with("/token"))
        .map(|s| s.1.clone())
        .collect();
    assert_eq!(token_requests.len(), 1, "{token_requests:?}");
    assert!(token_requests[0].contains("service=fake.io"));
    assert!(token_requests[0].contains("scope=repository%3Alibrary%2Falpine%3Apull"));
    // A private repository refuses the anonymous token.
    let err = anon
        .repository(&addr, "private/app")
        .tags(2)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(403));
    let text = err.to_string();
    assert!(
        text.contains("requested access to the resource is denied"),
        "{text}"
    );
    assert!(text.contains("it needs pull on private/app"), "{text}");
    assert!(text.contains("the token sent does not grant it"), "{text}");

    // With credentials from a docker config file: the token request carries
    // Basic auth, and pagination follows the Link header.
    let auth = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "alice:pw");
    let store = CredentialStore::parse(
        format!(r#"{{"auths":{{"{addr}":{{"auth":"{auth}"}}}}}}"#).as_bytes(),
    )
    .unwrap();
    let alice = Client::new(ClientOptions {
        credentials: store,
        ..ClientOptions::default()
    })
    .unwrap();
    let tags = alice
        .repository(&addr, "private/app")
        .tags(2)
        .await
        .unwrap();
    assert_eq!(tags, ["a", "b", "c"]);
    let token_auth: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.1.starts_with("/token"))
        .map(|s| s.2.clone())
        .collect();
    assert_eq!(token_auth.last().unwrap(), &basic("alice", "pw"));

    // Wrong password: a clear error, not a loop.
    let mut wrong = CredentialStore::new();
    wrong.insert(
        &addr,
        Credential {
            username: "alice".into(),
            password: "nope".into(),
        },
    );
    let c = Client::new(ClientOptions {
        credentials: wrong,
        ..ClientOptions::default()
    })
    .unwrap();
    let err = c
        .repository(&addr, "private/app")
        .tags(2)
        .await
        .unwrap_err();
    assert!(matches!(err, crate::Error::Unauthorized { .. }), "{err}");
    // The message says whose credentials were refused and where they came
    // from, not only the status.
    let text = err.to_string();
    assert!(
        text.contains(r#"refused the credentials of "alice" (from the command line)"#),
        "{text}"
    );
}

#[tokio::test]
async fn refusals_say_whether_credentials_were_sent() {
    // A registry whose token endpoint refuses anonymous requests.
    let (addr, _) = serve(|addr, _, path, auth| {
        if path.starts_with("/token") {
            return (
                401,
                vec![],
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#
                    .into(),
            );
        }
        match auth {
            "" => (
                401,
                vec![(
                    "WWW-Authenticate".into(),
                    format!(r#"Bearer realm="http://{addr}/token",service="x""#),
                )],
                String::new(),
            ),
            _ => (500, vec![], String::new()),
        }
    })
    .await;
    let anon = Client::new(ClientOptions::default()).unwrap();
    let err = anon.ping(&addr).await.unwrap_err().to_string();
    assert!(
        err.contains("anonymous request with 401: authentication required"),
        "{err}"
    );
    assert!(err.contains("no credentials were sent"), "{err}");
    assert!(err.contains(&format!("docker login {addr}")), "{err}");
    assert!(!err.contains("refused the credentials of"), "{err}");
}

#[tokio::test]
async fn denials_name_the_needed_access_and_the_token_grant() {
    let claims = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        r#"{"sub":"ci","access":[{"type":"repository","name":"team/app","actions":["pull"]}]}"#,
    );
    let token = format!("eyJhbGciOiJIUzI1NiJ9.{claims}.sig");
    let (addr, _) = serve(move |addr, method, path, auth| {
        if path.starts_with("/token") {
            return (200, vec![], format!(r#"{{"token":"{token}"}}"#));
        }
        match (method, auth) {
            (_, "") => (
                401,
                vec![(
                    "WWW-Authenticate".into(),
                    format!(r#"Bearer realm="http://{addr}/token",service="x""#),
                )],
                String::new(),
            ),
            _ => (403, vec![], String::new()),
        }
    })
    .await;
    let c = Client::new(ClientOptions::default()).unwrap();
    let err = c
        .repository(&addr, "team/app")
        .mount_blob(&berth_oci::Digest::sha256(b"x"), "team/base")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(403));
    let text = err.to_string();
    assert!(text.starts_with("POST http://"), "{text}");
    assert!(
        text.contains("it needs pull,push on team/app and pull on team/base"),
        "{text}"
    );
    assert!(
        text.contains(r#"the registry token of "ci" grants only pull on team/app"#),
        "{text}"
    );
}

#[tokio::test]
async fn https_against_plain_http_says_so() {
    // A plain HTTP server answers a TLS hello with an HTTP error, as
    // hyper and nginx do.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = [0u8; 512];
            let _ = sock.read(&mut buf).await;
            let _ = sock
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
        }
    });
    let http = reqwest::Client::new();
    let err = http
        .get(format!("https://{addr}/v2/"))
        .send()
        .await
        .unwrap_err();
    let hint = crate::transport_hint(&err).unwrap_or("none");
    assert!(hint.contains("plain HTTP"), "{hint}: {err:?}");
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let err = http
        .get(format!("http://{closed}/v2/"))
        .send()
        .await
        .unwrap_err();
    assert!(
        crate::transport_hint(&err)
            .unwrap_or("none")
            .contains("refused"),
        "{err:?}"
    );
}

#[tokio::test]
async fn basic_auth_registry() {
    let (addr, _) = serve(|_, _, path, auth| {
        if auth != basic("bob", "secret") {
            return (
                401,
                vec![("WWW-Authenticate".into(), r#"Basic realm="berth""#.into())],
                String::new(),
            );
        }
        match path {
            "/v2/" => (200, vec![], "{}".into()),
            _ => (
                404,
                vec![],
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#.into(),
            ),
        }
    })
    .await;
    let anon = Client::new(ClientOptions::default()).unwrap();
    let err = anon.ping(&addr).await.unwrap_err();
    assert!(err.to_string().contains("user name and password"), "{err}");
    let mut store = CredentialStore::new();
    store.insert(
        &addr,
        Credential {
            username: "bob".into(),
            password: "secret".into(),
        },
    );
    let bob = Client::new(ClientOptions {
        credentials: store,
        ..ClientOptions::default()
    })
    .unwrap();
    bob.ping(&addr).await.unwrap();
    let err = bob
        .repository(&addr, "x")
        .get_manifest("v1")
        .await
        .unwrap_err();
    assert!(err.is_not_found());
    assert!(err.to_string().contains("MANIFEST_UNKNOWN"), "{err}");
}
