//! The management commands (`berth user`, `berth token`, `berth audit`,
//! `berth retention`, `berth gc`, `berth webhook`, ...): thin clients of a running registry's
//! `/api/v1/` JSON API.
//!
//! [`ManageArgs`] are the flags every such command shares (which registry,
//! which credentials, which output format); [`Api`] sends the requests and
//! turns the registry's `{"errors":[...]}` answers into readable errors.
//! Credentials come from `--token`, `--user`/`--password`, or the files
//! `docker login`, `podman login` and `skopeo login` write (searched as the
//! containers tools do, or `--authfile`); `localhost`, `127.0.0.1` and
//! `[::1]` with the same port are one registry there.

use std::fmt;
use std::path::PathBuf;

use anyhow::anyhow;
use berth_client::{Credential, CredentialStore, TlsTrust};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub mod accounts;
pub mod audit;
pub mod gc;
pub mod mirror;
pub mod oidc;
pub mod replication;
pub mod repos;
pub mod retention;
pub mod tag_rule;
pub mod tokens;
pub mod trust;
pub mod usage;
pub mod webhook;

/// Output format of management commands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// JSON for programs.
    Json,
    /// A Docker config JSON holding a new token (only `berth token
    /// create`, whose help names it; hidden from the other commands).
    #[value(hide = true)]
    Dockerconfigjson,
}

/// Flags shared by every management command.
#[derive(Debug, Clone, clap::Args)]
pub struct ManageArgs {
    /// The registry to manage: a URL, or HOST[:PORT] (plain HTTP for loopback, HTTPS otherwise).
    #[arg(
        long,
        env = "BERTH_REGISTRY",
        default_value = "http://127.0.0.1:5000",
        global = true
    )]
    pub registry: String,
    /// Access token (personal or robot), sent as a bearer credential.
    #[arg(long, env = "BERTH_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// User name (with --password), instead of a token.
    #[arg(long, env = "BERTH_USER", global = true)]
    pub user: Option<String>,
    /// Password for --user.
    #[arg(long, env = "BERTH_PASSWORD", hide_env_values = true, global = true)]
    pub password: Option<String>,
    /// Credentials file to read instead of the default search (REGISTRY_AUTH_FILE, else
    /// $XDG_RUNTIME_DIR/containers/auth.json, ~/.config/containers/auth.json, then the Docker
    /// config: what `podman login`, `skopeo login` and `docker login` write).
    #[arg(long, env = "BERTH_AUTHFILE", global = true, value_name = "PATH")]
    pub authfile: Option<PathBuf>,
    /// Directory of certificates, as skopeo's --cert-dir reads it: `*.crt` CA certificates to
    /// trust, `NAME.cert` + `NAME.key` a client certificate (mutual TLS). A --registry without a
    /// scheme is then reached over HTTPS, loopback included.
    #[arg(long, env = "BERTH_CERT_DIR", global = true, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// A PEM file of CA certificates to trust besides the system's. A --registry without a scheme
    /// is then reached over HTTPS, loopback included.
    #[arg(long, env = "BERTH_CA_CERT", global = true, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Output format.
    #[arg(long = "output", short = 'o', alias = "format", value_enum, default_value_t = Format::Table, global = true)]
    pub format: Format,
}

impl ManageArgs {
    /// Connects to the registry's management API.
    pub async fn api(&self) -> anyhow::Result<Api> {
        Api::new(self).await
    }

    /// Prints `json` as is (`--format json`), or the table `render` makes
    /// of it.
    pub fn print(&self, json: &serde_json::Value, render: impl FnOnce() -> String) {
        match self.format {
            Format::Table => print!("{}", render()),
            Format::Json | Format::Dockerconfigjson => println!(
                "{}",
                serde_json::to_string_pretty(json).unwrap_or_else(|_| json.to_string())
            ),
        }
    }
}

/// An error answer of the management API.
#[derive(Debug)]
pub struct ApiFailure {
    /// HTTP status.
    pub status: StatusCode,
    /// First error code, e.g. `DENIED`.
    pub code: String,
    /// Its message.
    pub message: String,
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.code,
            self.status.as_u16(),
            self.message
        )
    }
}

impl std::error::Error for ApiFailure {}

/// A connection to one registry's management API.
pub struct Api {
    http: reqwest::Client,
    base: String,
    auth: Option<String>,
    /// Where the credentials came from (`--token`, a file), for messages;
    /// `None` when none were found.
    auth_source: Option<String>,
    /// The credential files searched.
    searched: Vec<PathBuf>,
    /// The output format asked for.
    pub format: Format,
}

/// `HOST[:PORT]` or URL → base URL without a trailing slash; `tls`: a CA
/// or client certificate was given, so even a loopback host speaks HTTPS.
fn base_url(registry: &str, tls: bool) -> String {
    let r = registry.trim_end_matches('/');
    if r.starts_with("http://") || r.starts_with("https://") {
        return r.to_owned();
    }
    if tls {
        return format!("https://{r}");
    }
    let host = r.rsplit_once(':').map_or(r, |(h, _)| h);
    let loopback = host == "localhost"
        || host == "[::1]"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback());
    format!("{}://{r}", if loopback { "http" } else { "https" })
}

impl Api {
    /// Connects as the flags say (`-o dockerconfigjson` is refused: only
    /// `berth token create` makes one).
    pub async fn new(args: &ManageArgs) -> anyhow::Result<Api> {
        if args.format == Format::Dockerconfigjson {
            return Err(anyhow!(
                "-o dockerconfigjson applies only to `berth token create`; use -o table or -o json"
            ));
        }
        Api::connect(args).await
    }

    /// Connects as the flags say, whatever the output format.
    pub async fn connect(args: &ManageArgs) -> anyhow::Result<Api> {
        let tls = TlsTrust::load(args.cert_dir.as_deref(), args.ca_cert.as_deref())?;
        let base = base_url(&args.registry, tls.is_configured());
        let mut searched = Vec::new();
        let (auth, auth_source) = match (&args.token, &args.user, &args.password) {
            (Some(t), _, _) => (
                Some(format!("Bearer {t}")),
                Some("--token / BERTH_TOKEN".to_owned()),
            ),
            (None, Some(u), Some(p)) => (
                Some(
                    Credential {
                        username: u.clone(),
                        password: p.clone(),
                    }
                    .basic_header(),
                ),
                Some(format!("--user {u}")),
            ),
            (None, Some(_), None) => {
                return Err(anyhow!("--user needs --password (or BERTH_PASSWORD)"))
            }
            _ => {
                // Whatever `docker login` / `podman login` stored for this
                // registry.
                let host = base.split_once("://").map_or(base.as_str(), |(_, h)| h);
                let store = CredentialStore::discover(args.authfile.as_deref())?;
                searched = store.searched().to_vec();
                match store.find(host).await? {
                    Some(f) => (
                        Some(f.credential.basic_header()),
                        Some(format!(
                            "the login of {:?} in {}",
                            f.credential.username, f.source
                        )),
                    ),
                    None => (None, None),
                }
            }
        };
        let http = tls
            .apply(reqwest::Client::builder())
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Api {
            http,
            base,
            auth,
            auth_source,
            searched,
            format: args.format,
        })
    }

    /// The registry's `host[:port]`.
    pub fn host(&self) -> &str {
        self.base
            .split_once("://")
            .map_or(self.base.as_str(), |(_, h)| h)
    }

    /// What to add to a 401: which credentials were refused, or how to
    /// give some when none were sent.
    fn unauthorized_hint(&self) -> String {
        match &self.auth_source {
            Some(source) => format!("the credentials from {source} were refused"),
            None => {
                let mut s = format!(
                    "no credentials were sent: pass --user NAME (with --password or BERTH_PASSWORD), \
                     --token or BERTH_TOKEN, or run `docker login {}` (podman and skopeo logins are read too)",
                    self.host()
                );
                if !self.searched.is_empty() {
                    let files: Vec<String> = self
                        .searched
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect();
                    s.push_str(&format!("; looked in {}", files.join(", ")));
                }
                s
            }
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Body>,
    ) -> anyhow::Result<reqwest::Response> {
        let url = format!("{}/api/v1{path}", self.base);
        let mut req = self.http.request(method.clone(), &url).query(query);
        if let Some(a) = &self.auth {
            req = req.header(reqwest::header::AUTHORIZATION, a);
        }
        req = match body {
            Some(Body::Json(v)) => req.json(&v),
            Some(Body::Text(t, content_type)) => req
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(t),
            None => req,
        };
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                let context = match berth_client::transport_hint(&e) {
                    Some(hint) => format!("{method} {url}: {hint}"),
                    None => format!("{method} {url}"),
                };
                return Err(anyhow::Error::from(e).context(context));
            }
        };
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let first = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["errors"].get(0).cloned());
        let mut failure = match first {
            Some(e) => ApiFailure {
                status,
                code: e["code"].as_str().unwrap_or("UNKNOWN").to_owned(),
                message: e["message"].as_str().unwrap_or_default().to_owned(),
            },
            None => ApiFailure {
                status,
                code: "UNKNOWN".into(),
                message: text.chars().take(300).collect(),
            },
        };
        if status == StatusCode::UNAUTHORIZED {
            failure.message = format!("{}; {}", failure.message, self.unauthorized_hint());
        }
        Err(failure.into())
    }

    /// `GET` with a query, answer parsed as JSON.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> anyhow::Result<T> {
        Ok(self
            .send(Method::GET, path, query, None)
            .await?
            .json()
            .await?)
    }

    /// `GET` answered as raw text (exports).
    pub async fn get_text(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<String> {
        Ok(self
            .send(Method::GET, path, query, None)
            .await?
            .text()
            .await?)
    }

    /// A request with a JSON body, answer parsed as JSON (`null` when empty).
    pub async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let body = Body::Json(serde_json::to_value(body)?);
        let resp = self.send(method, path, &[], Some(body)).await?;
        let bytes = resp.bytes().await?;
        let bytes: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        Ok(serde_json::from_slice(bytes)?)
    }

    /// A request with a text body (e.g. a TOML policy), answer parsed as JSON.
    #[allow(dead_code)] // for `berth retention set`, landing with retention
    pub async fn call_text<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        text: String,
        content_type: &'static str,
    ) -> anyhow::Result<T> {
        let resp = self
            .send(method, path, &[], Some(Body::Text(text, content_type)))
            .await?;
        let bytes = resp.bytes().await?;
        let bytes: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        Ok(serde_json::from_slice(bytes)?)
    }

    /// `DELETE`; the answer as JSON (`null` when empty).
    pub async fn delete(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let bytes = self
            .send(Method::DELETE, path, &[], None)
            .await?
            .bytes()
            .await?;
        if bytes.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        Ok(serde_json::from_slice(&bytes)?)
    }
}

enum Body {
    Json(serde_json::Value),
    #[allow(dead_code)] // see `call_text`
    Text(String, &'static str),
}

/// Percent-encodes one path segment or query value (everything but
/// unreserved characters, so `/`, `*` and `+` survive as data).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Rows as aligned columns under `header`, one line each.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  "));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// Prints rows as aligned columns under `header`.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    print!("{}", table(header, rows));
}

/// A JSON field as display text (`-` when absent or null).
pub fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "-".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A JSON object as `key=value` pairs for a table cell (`method=token
/// repeats=3`); other values as [`cell`] shows them.
pub fn pairs(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", cell(v)))
            .collect::<Vec<_>>()
            .join(" "),
        serde_json::Value::Null => String::new(),
        other => cell(other),
    }
}

/// Prints a value as pretty JSON.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Formats Unix milliseconds as RFC 3339 UTC (`-` for none).
pub fn time(ms: Option<i64>) -> String {
    match ms {
        Some(ms) => berth_tools::time::Timestamp(ms.div_euclid(1000)).to_string(),
        None => "-".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::base_url;

    #[test]
    fn formatting() {
        use super::{segment, table, time};
        assert_eq!(time(Some(0)), "1970-01-01T00:00:00Z");
        assert_eq!(time(Some(1_700_000_000_000)), "2023-11-14T22:13:20Z");
        assert_eq!(time(None), "-");
        assert_eq!(
            table(&["a", "bb"], &[vec!["xyz".into(), "1".into()]]),
            "a    bb\nxyz  1\n"
        );
        assert_eq!(segment("v*"), "v%2A");
        assert_eq!(segment("acme/web-*"), "acme%2Fweb-%2A");
        assert_eq!(segment("acme+ci"), "acme%2Bci");
        assert_eq!(
            super::pairs(&serde_json::json!({"method": "token", "repeats": 3, "to": null})),
            "method=token repeats=3 to=-"
        );
        assert_eq!(super::pairs(&serde_json::Value::Null), "");
    }

    #[test]
    fn registry_urls() {
        assert_eq!(base_url("127.0.0.1:5000", false), "http://127.0.0.1:5000");
        assert_eq!(base_url("localhost:5000/", false), "http://localhost:5000");
        assert_eq!(base_url("[::1]:5000", false), "http://[::1]:5000");
        assert_eq!(
            base_url("registry.example.com", false),
            "https://registry.example.com"
        );
        assert_eq!(
            base_url("https://r.example.com/", false),
            "https://r.example.com"
        );
        // A CA or client certificate given: loopback speaks HTTPS too, an
        // explicit scheme still wins.
        assert_eq!(base_url("127.0.0.1:5000", true), "https://127.0.0.1:5000");
        assert_eq!(
            base_url("http://127.0.0.1:5000", true),
            "http://127.0.0.1:5000"
        );
    }
}
