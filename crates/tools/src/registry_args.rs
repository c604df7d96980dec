//! Registry access flags shared by `berth copy` and `berth inspect`.

use std::path::PathBuf;
use std::sync::Arc;

use berth_client::{Client, ClientOptions, Credential, CredentialStore, TlsTrust};

use crate::ToolError;

/// How to reach registries.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RegistryArgs {
    /// Credentials file to read instead of the default search (REGISTRY_AUTH_FILE, else
    /// $XDG_RUNTIME_DIR/containers/auth.json, ~/.config/containers/auth.json, then the Docker
    /// config: what `podman login`, `skopeo login` and `docker login` write).
    #[arg(long, env = "BERTH_AUTHFILE")]
    pub authfile: Option<PathBuf>,
    /// Credentials as `[REGISTRY=]USER:PASSWORD` (repeatable; without REGISTRY they apply to every registry named on the command line).
    #[arg(long = "creds", value_name = "[REGISTRY=]USER:PASSWORD")]
    pub creds: Vec<String>,
    /// Registries (host[:port]) to reach over plain HTTP (loopback always is).
    #[arg(long = "plain-http", value_name = "HOST")]
    pub plain_http: Vec<String>,
    /// Accept invalid TLS certificates.
    #[arg(long)]
    pub insecure: bool,
    /// Directory of certificates, as skopeo's --cert-dir reads it: `*.crt` CA certificates to
    /// trust, `NAME.cert` + `NAME.key` a client certificate (mutual TLS). Loopback registries are
    /// then reached over HTTPS.
    #[arg(long, env = "BERTH_CERT_DIR", value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// A PEM file of CA certificates to trust besides the system's. Loopback registries are then
    /// reached over HTTPS.
    #[arg(long, env = "BERTH_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
}

impl RegistryArgs {
    /// Builds a client; `registries` are the registries named on the command
    /// line (for credentials given without a registry).
    pub fn client(&self, registries: &[&str]) -> Result<Arc<Client>, ToolError> {
        let mut credentials = CredentialStore::discover(self.authfile.as_deref())?;
        for c in &self.creds {
            // `REGISTRY=` is a host with an optional numeric port; anything
            // else before a `=` belongs to the user or password.
            let is_host = |r: &str| match r.rsplit_once(':') {
                Some((_, port)) => !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()),
                None => !r.is_empty(),
            };
            let (registry, userpass) = match c.split_once('=') {
                Some((r, up)) if is_host(r) && up.contains(':') => (Some(r), up),
                _ => (None, c.as_str()),
            };
            let (username, password) = userpass
                .split_once(':')
                .ok_or_else(|| ToolError::Usage("--creds: expected USER:PASSWORD".to_owned()))?;
            let cred = Credential {
                username: username.to_owned(),
                password: password.to_owned(),
            };
            match registry {
                Some(r) => credentials.insert(r, cred),
                None => registries
                    .iter()
                    .for_each(|r| credentials.insert(r, cred.clone())),
            }
        }
        let tls = TlsTrust::load(self.cert_dir.as_deref(), self.ca_cert.as_deref())?;
        Ok(Arc::new(Client::new(ClientOptions {
            credentials,
            plain_http: self.plain_http.clone(),
            insecure_tls: self.insecure,
            user_agent: None,
            tls,
            observer: None,
        })?))
    }
}
