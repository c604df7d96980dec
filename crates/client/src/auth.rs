//! Credentials and the registry authentication handshake.
//!
//! Credentials come from flags or the Docker config file
//! (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`): `auths`
//! entries with a base64 `auth` (`user:password`) or separate `username` /
//! `password`, and `credHelpers` / `credsStore` helpers
//! (`docker-credential-<name> get`). Keys are matched by host, so
//! `https://index.docker.io/v1/` serves `docker.io`.
//!
//! A registry that answers 401 says how to authenticate in
//! `WWW-Authenticate`: `Basic`, or `Bearer realm=..,service=..,scope=..`
//! for the token flow Docker Hub uses, where the client asks `realm` for a
//! token (anonymously or with Basic credentials) and retries with it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::Error;

/// A username and password (or token used as password).
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// User name.
    pub username: String,
    /// Password or personal access token.
    pub password: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({}, ***)", self.username)
    }
}

impl Credential {
    /// The `Authorization: Basic ...` value.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// Where credentials for each registry come from.
#[derive(Debug, Clone, Default)]
pub struct CredentialStore {
    explicit: HashMap<String, Credential>,
    auths: HashMap<String, Credential>,
    helpers: HashMap<String, String>,
    default_helper: Option<String>,
}

/// The host a config key or registry name refers to (`docker.io` for all
/// Docker Hub spellings).
pub fn normalize_host(key: &str) -> String {
    let k = key
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = k.split('/').next().unwrap_or(k).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_owned()
        }
        _ => host,
    }
}

#[derive(serde::Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(serde::Deserialize, Default)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

impl CredentialStore {
    /// An empty store (anonymous access everywhere).
    pub fn new() -> CredentialStore {
        CredentialStore::default()
    }

    /// The default Docker config path: `$DOCKER_CONFIG/config.json`, else
    /// `$HOME/.docker/config.json`.
    pub fn default_path() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
            return Some(PathBuf::from(dir).join("config.json"));
        }
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
    }

    /// Loads a Docker config file; a missing file is an empty store.
    pub fn load(path: &Path) -> Result<CredentialStore, Error> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(CredentialStore::new()),
            Err(e) => return Err(Error::Credentials(format!("{}: {e}", path.display()))),
        };
        CredentialStore::parse(&bytes)
            .map_err(|e| Error::Credentials(format!("{}: {e}", path.display())))
    }

    /// Parses the JSON of a Docker config file.
    pub fn parse(json: &[u8]) -> Result<CredentialStore, String> {
        let file: ConfigFile = serde_json::from_slice(json).map_err(|e| e.to_string())?;
        let mut store = CredentialStore::new();
        for (key, entry) in file.auths {
            let cred = match (
                entry.auth.filter(|a| !a.is_empty()),
                entry.username,
                entry.password,
            ) {
                (Some(auth), _, _) => {
                    let raw = base64::engine::general_purpose::STANDARD
                        .decode(auth.trim())
                        .map_err(|_| format!("auths.{key}.auth is not base64"))?;
                    let raw = String::from_utf8(raw)
                        .map_err(|_| format!("auths.{key}.auth is not UTF-8"))?;
                    let (u, p) = raw
                        .split_once(':')
                        .ok_or_else(|| format!("auths.{key}.auth is not user:password"))?;
                    Credential {
                        username: u.to_owned(),
                        password: p.to_owned(),
                    }
                }
                (None, Some(u), Some(p)) => Credential {
                    username: u,
                    password: p,
                },
                _ => continue,
            };
            store.auths.insert(normalize_host(&key), cred);
        }
        store.helpers = file
            .cred_helpers
            .into_iter()
            .map(|(k, v)| (normalize_host(&k), v))
            .collect();
        store.default_helper = file.creds_store.filter(|s| !s.is_empty());
        Ok(store)
    }

    /// Sets credentials for `registry`, overriding the config file.
    pub fn insert(&mut self, registry: &str, cred: Credential) {
        self.explicit.insert(normalize_host(registry), cred);
    }

    /// The credential for `registry`, if any.
    pub async fn get(&self, registry: &str) -> Result<Option<Credential>, Error> {
        let host = normalize_host(registry);
        if let Some(c) = self.explicit.get(&host).or_else(|| self.auths.get(&host)) {
            return Ok(Some(c.clone()));
        }
        match self.helpers.get(&host).or(self.default_helper.as_ref()) {
            Some(helper) => run_helper(helper, &host).await,
            None => Ok(None),
        }
    }
}

/// Runs `docker-credential-<helper> get`.
async fn run_helper(helper: &str, host: &str) -> Result<Option<Credential>, Error> {
    use tokio::io::AsyncWriteExt as _;
    let server = if host == "docker.io" {
        "https://index.docker.io/v1/"
    } else {
        host
    };
    let program = format!("docker-credential-{helper}");
    let mut child = match tokio::process::Command::new(&program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::Credentials(format!("{program}: {e}"))),
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(server.as_bytes()).await?;
    }
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        return Ok(None); // "credentials not found in native keychain"
    }
    #[derive(serde::Deserialize)]
    struct HelperOut {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let h: HelperOut = serde_json::from_slice(&out.stdout)
        .map_err(|e| Error::Credentials(format!("{program}: {e}")))?;
    Ok(Some(Credential {
        username: h.username,
        password: h.secret,
    }))
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `basic` or `bearer` (lower-cased).
    pub scheme: String,
    /// Parameters (`realm`, `service`, `scope`, `error`), keys lower-cased.
    pub params: HashMap<String, String>,
}

impl Challenge {
    /// Parses `Scheme k="v", k2=v2`.
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        if scheme.is_empty() {
            return None;
        }
        let mut params = HashMap::new();
        let mut chars = rest.chars().peekable();
        loop {
            while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
                chars.next();
            }
            let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
            if key.trim().is_empty() {
                break;
            }
            let mut value = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next()),
                        '"' => break,
                        c => value.push(c),
                    }
                }
            } else {
                while let Some(c) = chars.peek().copied() {
                    if c == ',' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
            }
            params.insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
        Some(Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.docker.io/token");
        assert_eq!(c.params["service"], "registry.docker.io");
        assert_eq!(c.params["scope"], "repository:library/alpine:pull,push");
        let b = Challenge::parse(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(
            (b.scheme.as_str(), b.params["realm"].as_str()),
            ("basic", "Registry Realm")
        );
        let u = Challenge::parse("Bearer realm=http://x/token, service=svc").unwrap();
        assert_eq!(u.params["realm"], "http://x/token");
        assert_eq!(u.params["service"], "svc");
    }

    #[tokio::test]
    async fn reads_docker_config() {
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cr3t:with:colons");
        let json = format!(
            r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "{auth}"}},
                "ghcr.io": {{"username": "bob", "password": "tok"}},
                "localhost:5000": {{}}
            }}, "credHelpers": {{"gcr.io": "gcloud-berth-test-missing"}}}}"#
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, json).unwrap();
        let store = CredentialStore::load(&path).unwrap();
        let hub = store.get("docker.io").await.unwrap().unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("alice", "s3cr3t:with:colons")
        );
        assert_eq!(store.get("registry-1.docker.io").await.unwrap(), Some(hub));
        assert_eq!(store.get("GHCR.io").await.unwrap().unwrap().username, "bob");
        assert_eq!(store.get("localhost:5000").await.unwrap(), None);
        // A helper that is not installed yields no credential.
        assert_eq!(store.get("gcr.io").await.unwrap(), None);
        assert!(CredentialStore::load(&dir.path().join("missing.json")).is_ok());
        assert!(CredentialStore::parse(br#"{"auths":{"x":{"auth":"!!"}}}"#).is_err());
        let c = Credential {
            username: "u".into(),
            password: "p".into(),
        };
        assert_eq!(c.basic_header(), "Basic dTpw");
        assert!(!format!("{c:?}").contains('p'));
    }
}
