//! Credentials and the registry authentication handshake.
//!
//! Credentials come from flags or from the files that `docker login`,
//! `podman login` and `skopeo login` write, read as the containers tools
//! read them ([`CredentialStore::auth_file_paths`]): `REGISTRY_AUTH_FILE`
//! alone when it is set; otherwise `$XDG_RUNTIME_DIR/containers/auth.json`,
//! `$XDG_CONFIG_HOME/containers/auth.json` (`~/.config/...`), then the
//! Docker config (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`). The first file holding credentials for a
//! registry wins. Each file has `auths` entries with a base64 `auth`
//! (`user:password`) or separate `username` / `password`, and `credHelpers`
//! / `credsStore` helpers (`docker-credential-<name> get`). Keys are
//! matched by host, so `https://index.docker.io/v1/` serves `docker.io`,
//! and the loopback spellings `localhost`, `127.0.0.1` and `[::1]` (with
//! the same port) are one registry.
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

/// A credential and where it came from (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The credential.
    pub credential: Credential,
    /// `the command line`, a file path, or `docker-credential-<helper>`.
    pub source: String,
}

/// Where credentials for each registry come from.
#[derive(Debug, Clone, Default)]
pub struct CredentialStore {
    explicit: HashMap<String, Credential>,
    files: Vec<AuthFile>,
    searched: Vec<PathBuf>,
}

/// One parsed credentials file.
#[derive(Debug, Clone, Default)]
struct AuthFile {
    path: Option<PathBuf>,
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

/// The spellings of one registry a credentials file may use: the host
/// itself, and for loopback hosts the other loopback names with the same
/// port (`localhost:5000`, `127.0.0.1:5000`, `[::1]:5000`).
pub fn host_aliases(host: &str) -> Vec<String> {
    let host = normalize_host(host);
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            (n.to_owned(), Some(p.to_owned()))
        }
        _ => (host.clone(), None),
    };
    const LOOPBACK: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];
    let mut out = vec![host.clone()];
    if LOOPBACK.contains(&name.as_str()) {
        for alias in LOOPBACK.iter().filter(|a| **a != name) {
            out.push(match &port {
                Some(p) => format!("{alias}:{p}"),
                None => (*alias).to_owned(),
            });
        }
    }
    out
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

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

impl CredentialStore {
    /// An empty store (anonymous access everywhere).
    pub fn new() -> CredentialStore {
        CredentialStore::default()
    }

    /// The default Docker config path: `$DOCKER_CONFIG/config.json`, else
    /// `$HOME/.docker/config.json`.
    pub fn default_path() -> Option<PathBuf> {
        if let Some(dir) = env_path("DOCKER_CONFIG") {
            return Some(dir.join("config.json"));
        }
        env_path("HOME").map(|h| h.join(".docker/config.json"))
    }

    /// The files credentials are read from, in the containers tools' order:
    /// `REGISTRY_AUTH_FILE` alone when set; else
    /// `$XDG_RUNTIME_DIR/containers/auth.json`,
    /// `$XDG_CONFIG_HOME/containers/auth.json` (default
    /// `~/.config/containers/auth.json`) and the Docker config.
    pub fn auth_file_paths() -> Vec<PathBuf> {
        if let Some(p) = env_path("REGISTRY_AUTH_FILE") {
            return vec![p];
        }
        let mut paths = Vec::new();
        if let Some(run) = env_path("XDG_RUNTIME_DIR") {
            paths.push(run.join("containers/auth.json"));
        }
        let config_home =
            env_path("XDG_CONFIG_HOME").or_else(|| env_path("HOME").map(|h| h.join(".config")));
        if let Some(c) = config_home {
            paths.push(c.join("containers/auth.json"));
        }
        paths.extend(CredentialStore::default_path());
        paths
    }

    /// Loads `authfile` alone when given (`--authfile`), else every file of
    /// [`CredentialStore::auth_file_paths`] that exists.
    pub fn discover(authfile: Option<&Path>) -> Result<CredentialStore, Error> {
        let paths = match authfile {
            Some(p) => vec![p.to_path_buf()],
            None => CredentialStore::auth_file_paths(),
        };
        let mut store = CredentialStore::new();
        for p in paths {
            store.add_file(&p)?;
        }
        Ok(store)
    }

    /// Loads one config file; a missing file is an empty store.
    pub fn load(path: &Path) -> Result<CredentialStore, Error> {
        let mut store = CredentialStore::new();
        store.add_file(path)?;
        Ok(store)
    }

    /// Adds a file to the lookup order (after those already added); a
    /// missing file is only remembered as searched.
    fn add_file(&mut self, path: &Path) -> Result<(), Error> {
        self.searched.push(path.to_path_buf());
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::Credentials(format!("{}: {e}", path.display()))),
        };
        let mut file = parse_file(&bytes)
            .map_err(|e| Error::Credentials(format!("{}: {e}", path.display())))?;
        file.path = Some(path.to_path_buf());
        self.files.push(file);
        Ok(())
    }

    /// Parses the JSON of a Docker config (or containers `auth.json`) file.
    pub fn parse(json: &[u8]) -> Result<CredentialStore, String> {
        Ok(CredentialStore {
            files: vec![parse_file(json)?],
            ..CredentialStore::default()
        })
    }

    /// Sets credentials for `registry`, overriding the config files.
    pub fn insert(&mut self, registry: &str, cred: Credential) {
        self.explicit.insert(normalize_host(registry), cred);
    }

    /// The files that were looked at (existing or not), in order.
    pub fn searched(&self) -> &[PathBuf] {
        &self.searched
    }

    /// The credential for `registry`, if any.
    pub async fn get(&self, registry: &str) -> Result<Option<Credential>, Error> {
        Ok(self.find(registry).await?.map(|f| f.credential))
    }

    /// The credential for `registry` and where it was found.
    pub async fn find(&self, registry: &str) -> Result<Option<Found>, Error> {
        let aliases = host_aliases(registry);
        let found = |credential: &Credential, source: String| {
            Some(Found {
                credential: credential.clone(),
                source,
            })
        };
        if let Some(c) = aliases.iter().find_map(|h| self.explicit.get(h)) {
            return Ok(found(c, "the command line".to_owned()));
        }
        for file in &self.files {
            let source = || {
                file.path
                    .as_ref()
                    .map_or_else(|| "the config".to_owned(), |p| p.display().to_string())
            };
            if let Some(c) = aliases.iter().find_map(|h| file.auths.get(h)) {
                return Ok(found(c, source()));
            }
            let helper = aliases
                .iter()
                .find_map(|h| file.helpers.get(h).map(|helper| (h, helper)));
            let helper = helper.or_else(|| file.default_helper.as_ref().map(|d| (&aliases[0], d)));
            if let Some((host, helper)) = helper {
                if let Some(c) = run_helper(helper, host).await? {
                    return Ok(found(&c, format!("docker-credential-{helper}")));
                }
            }
        }
        Ok(None)
    }
}

fn parse_file(json: &[u8]) -> Result<AuthFile, String> {
    let file: ConfigFile = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    let mut out = AuthFile::default();
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
                let raw =
                    String::from_utf8(raw).map_err(|_| format!("auths.{key}.auth is not UTF-8"))?;
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
        out.auths.insert(normalize_host(&key), cred);
    }
    out.helpers = file
        .cred_helpers
        .into_iter()
        .map(|(k, v)| (normalize_host(&k), v))
        .collect();
    out.default_helper = file.creds_store.filter(|s| !s.is_empty());
    Ok(out)
}

/// `repository:acme/app:pull,push` scopes as `pull,push on acme/app`.
pub fn describe_scopes(scopes: &[String]) -> String {
    let parts: Vec<String> = scopes
        .iter()
        .map(|s| {
            let mut it = s.splitn(3, ':');
            match (it.next(), it.next(), it.next()) {
                (Some("repository"), Some(name), Some(actions)) => {
                    format!("{actions} on {name}")
                }
                _ => s.clone(),
            }
        })
        .collect();
    if parts.is_empty() {
        "access to the registry".to_owned()
    } else {
        parts.join(" and ")
    }
}

/// What the credentials sent with a request were granted: the `access`
/// claim of a registry token (read, not verified: it is only shown), the
/// account of Basic credentials, or nothing for an anonymous request.
pub fn describe_grant(authorization: Option<&str>) -> String {
    let Some(value) = authorization else {
        return "no credentials were sent (anonymous)".to_owned();
    };
    if let Some(b64) = value.strip_prefix("Basic ") {
        let user = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|raw| raw.split_once(':').map(|(u, _)| u.to_owned()))
            .unwrap_or_default();
        return format!("the account {user:?} lacks that permission");
    }
    let claims = value
        .strip_prefix("Bearer ")
        .and_then(|t| t.split('.').nth(1))
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p.trim_end_matches('='))
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    let Some(claims) = claims else {
        return "the token sent does not grant it".to_owned();
    };
    let granted: Vec<String> = claims
        .get("access")
        .and_then(|a| a.as_array())
        .into_iter()
        .flatten()
        .filter_map(|a| {
            let name = a.get("name")?.as_str()?;
            let actions: Vec<&str> = a
                .get("actions")?
                .as_array()?
                .iter()
                .filter_map(|x| x.as_str())
                .collect();
            Some(if actions.is_empty() {
                format!("nothing on {name}")
            } else {
                format!("{} on {name}", actions.join(","))
            })
        })
        .collect();
    let who = claims
        .get("sub")
        .and_then(|s| s.as_str())
        .filter(|s| !s.is_empty())
        .map_or_else(|| "an anonymous token".to_owned(), |s| format!("{s:?}"));
    if granted.is_empty() {
        format!("the registry token of {who} grants nothing (the credentials' scope or the account's permissions allow no more)")
    } else {
        format!(
            "the registry token of {who} grants only {} (the credentials' scope or the account's permissions allow no more)",
            granted.join(" and ")
        )
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod lookup_tests {
    use super::*;

    fn file(dir: &Path, name: &str, registry: &str, user: &str) -> PathBuf {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:pw"));
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            format!(r#"{{"auths": {{"{registry}": {{"auth": "{auth}"}}}}}}"#),
        )
        .unwrap();
        path
    }

    #[test]
    fn loopback_spellings_are_one_registry() {
        assert_eq!(
            host_aliases("127.0.0.1:5000"),
            ["127.0.0.1:5000", "localhost:5000", "[::1]:5000"]
        );
        assert_eq!(
            host_aliases("LOCALHOST"),
            ["localhost", "127.0.0.1", "[::1]"]
        );
        assert_eq!(host_aliases("ghcr.io"), ["ghcr.io"]);
        assert_eq!(
            host_aliases("localhost.example:5000"),
            ["localhost.example:5000"]
        );
    }

    #[tokio::test]
    async fn docker_login_localhost_serves_127_0_0_1_but_not_another_port() {
        let dir = tempfile::tempdir().unwrap();
        let p = file(dir.path(), "config.json", "localhost:5000", "alice");
        let store = CredentialStore::load(&p).unwrap();
        let found = store.find("127.0.0.1:5000").await.unwrap().unwrap();
        assert_eq!(found.credential.username, "alice");
        assert_eq!(found.source, p.display().to_string());
        assert_eq!(
            store.get("[::1]:5000").await.unwrap().unwrap().username,
            "alice"
        );
        assert_eq!(store.get("127.0.0.1:5001").await.unwrap(), None);
    }

    #[tokio::test]
    async fn files_are_read_in_the_containers_order_and_the_first_holder_wins() {
        let dir = tempfile::tempdir().unwrap();
        let run = file(
            dir.path(),
            "run/containers/auth.json",
            "reg.example:443",
            "podman-user",
        );
        let docker = file(
            dir.path(),
            "docker/config.json",
            "reg.example:443",
            "docker-user",
        );
        let other = file(
            dir.path(),
            "docker2/config.json",
            "other.example",
            "docker-user",
        );
        let mut store = CredentialStore::new();
        for p in [&run, &docker, &other] {
            store.add_file(p).unwrap();
        }
        store.add_file(&dir.path().join("missing.json")).unwrap();
        assert_eq!(
            store
                .get("reg.example:443")
                .await
                .unwrap()
                .unwrap()
                .username,
            "podman-user"
        );
        assert_eq!(
            store.get("other.example").await.unwrap().unwrap().username,
            "docker-user"
        );
        assert_eq!(store.searched().len(), 4);
        // Explicit credentials win over every file.
        store.insert(
            "reg.example:443",
            Credential {
                username: "flag".into(),
                password: "x".into(),
            },
        );
        let f = store.find("reg.example:443").await.unwrap().unwrap();
        assert_eq!(
            (f.credential.username.as_str(), f.source.as_str()),
            ("flag", "the command line")
        );
    }
}
