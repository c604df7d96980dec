//! HTTPS for both servers (`berth bench --tls`): one certificate, made by
//! the measured binary's own `berth tls self-signed`, served by berth
//! (`--tls-cert`/`--tls-key`) and by the reference registry (`http.tls`);
//! the load client trusts its CA and speaks HTTP/1.1 over TLS to both.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use anyhow::{bail, Context};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio_rustls::TlsConnector;

/// The certificate files and a connector that trusts them.
#[derive(Clone)]
pub struct Tls {
    /// PEM chain (server certificate, then the CA).
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// The client side: trusts the CA, offers HTTP/1.1 by ALPN.
    pub connector: TlsConnector,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Writes a CA and a server certificate for 127.0.0.1 under `dir`
    /// with `berth_bin tls self-signed`.
    pub fn prepare(berth_bin: &Path, dir: &Path) -> anyhow::Result<Tls> {
        let out = Command::new(berth_bin)
            .args(["tls", "self-signed", "--host", "127.0.0.1", "--out"])
            .arg(dir)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {} tls self-signed", berth_bin.display()))?;
        if !out.status.success() {
            bail!(
                "{} tls self-signed failed: {}",
                berth_bin.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let ca = CertificateDer::from_pem_file(dir.join("ca.crt"))
            .with_context(|| format!("reading {}", dir.join("ca.crt").display()))?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).context("trusting the bench CA")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            cert: dir.join("server.crt"),
            key: dir.join("server.key"),
            connector: TlsConnector::from(Arc::new(config)),
        })
    }
}
