//! Serving HTTPS: the certificate and key files, their reload, and client
//! certificates.
//!
//! [`Tls`] holds the rustls configuration built from PEM files (a chain,
//! leaf first; an RSA, ECDSA or Ed25519 key in PKCS#8, PKCS#1 or SEC1
//! form), TLS 1.2 and 1.3 only, ALPN `h2` and `http/1.1`. The files are
//! loaded once at start, where any problem is an error that names the file
//! and what is wrong with it, and again by [`Tls::reload`] (see
//! [`Tls::watch`]: when a file's size or modification time changes, and on
//! SIGHUP). A reload builds a whole new configuration and swaps it in:
//! connections already open keep the one they were accepted with, new
//! ones get the new. A reload that fails (files half written, a key that
//! does not match its certificate) keeps the old configuration and logs
//! why; the next change of the files tries again.
//!
//! With a client CA (`tls_client_ca`), clients may or must present a
//! certificate signed by it; its subject, as an RFC 4514 distinguished
//! name (`CN=ci,O=acme`, what `openssl x509 -noout -subject -nameopt
//! RFC2253` prints), reaches the handlers as a [`ClientCertificate`]
//! request extension, for authentication to map to an account.
//!
//! This module knows files and rustls; the handshake itself runs in the
//! listener's connection task, under the header-read timeout.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Whether a client certificate is asked for or required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Connections without a certificate signed by the client CA are
    /// refused in the handshake.
    Required,
    /// A certificate is asked for; clients without one connect and
    /// authenticate as usual (one that presents an invalid certificate is
    /// refused).
    Optional,
}

/// The files TLS is served from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, the server's certificate first.
    pub cert: PathBuf,
    /// PEM private key of the first certificate.
    pub key: PathBuf,
    /// PEM certificates of the CAs client certificates must chain to.
    pub client_ca: Option<PathBuf>,
    /// With a client CA: optional or required.
    pub client_auth: ClientAuth,
}

/// Why TLS files cannot be used; each names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file holds no usable PEM block of the expected kind.
    #[error("{what} {path}: {reason}")]
    Content {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key is not the certificate's.
    #[error(
        "the private key {key} does not match the certificate {cert} (its first certificate \
         must be the server's, signed for this key)"
    )]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refused the configuration.
    #[error("cannot build the TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// A client certificate's subject, on requests of connections that
/// presented one (verified against the client CA).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// The subject as an RFC 4514 distinguished name.
    pub subject: Arc<str>,
}

/// The size and modification time of each file, to notice changes.
type Stamp = Vec<Option<(u64, SystemTime)>>;

/// The TLS configuration in force, reloadable.
pub struct Tls {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    config: RwLock<Arc<ServerConfig>>,
    /// The files' stamps when last loaded (or tried).
    seen: Mutex<Stamp>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

impl Tls {
    /// Loads the files; any problem is an error naming the file.
    pub fn load(files: TlsFiles) -> Result<Tls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let seen = stamp(&files);
        let config = build(&files, &provider)?;
        Ok(Tls {
            files,
            provider,
            config: RwLock::new(Arc::new(config)),
            seen: Mutex::new(seen),
        })
    }

    /// The files served from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The configuration for a new connection.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Loads the files again and swaps the new configuration in; on an
    /// error the old one stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = stamp(&self.files);
        let config = build(&self.files, &self.provider)?;
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
        Ok(())
    }

    /// Whether a file changed since the last (attempted) load.
    pub fn changed(&self) -> bool {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) != stamp(&self.files)
    }

    /// Reloads when the files change (checked every `every`) and on
    /// SIGHUP, logging each reload and why one failed, until `stop`.
    pub async fn watch(
        self: Arc<Self>,
        every: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) {
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut stop = std::pin::pin!(stop);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            #[cfg(unix)]
            let signal = async {
                match hup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let signal = std::future::pending::<()>();
            let why = tokio::select! {
                _ = &mut stop => return,
                _ = signal => "SIGHUP",
                _ = tick.tick() => {
                    if !self.changed() {
                        continue;
                    }
                    "the files changed"
                }
            };
            match self.reload() {
                Ok(()) => tracing::info!(
                    cert = %self.files.cert.display(),
                    key = %self.files.key.display(),
                    trigger = why,
                    "TLS certificate reloaded: new connections use it"
                ),
                Err(e) => tracing::warn!(
                    trigger = why,
                    error = %e,
                    "TLS certificate NOT reloaded, the previous one stays in use: fix the files \
                     (a change or SIGHUP tries again)"
                ),
            }
        }
    }
}

fn stamp(files: &TlsFiles) -> Stamp {
    [
        Some(&files.cert),
        Some(&files.key),
        files.client_ca.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|p| {
        std::fs::metadata(p)
            .ok()
            .and_then(|m| Some((m.len(), m.modified().ok()?)))
    })
    .collect()
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(what, path)?;
    let content = |reason: String| TlsError::Content {
        what,
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| content(format!("not valid PEM ({e})")))?;
    if certs.is_empty() {
        return Err(content(
            "no certificate in it (expected PEM blocks `-----BEGIN CERTIFICATE-----`)".into(),
        ));
    }
    Ok(certs)
}

fn build(files: &TlsFiles, provider: &Arc<CryptoProvider>) -> Result<ServerConfig, TlsError> {
    let chain = certificates("TLS certificate", &files.cert)?;
    let key_bytes = read("TLS key", &files.key)?;
    let key_error = |reason: String| TlsError::Content {
        what: "TLS key",
        path: files.key.clone(),
        reason,
    };
    let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| {
        key_error(format!(
            "no private key in it ({e}; expected `-----BEGIN PRIVATE KEY-----`, \
             `RSA PRIVATE KEY` or `EC PRIVATE KEY`)"
        ))
    })?;
    let signer = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| key_error(format!("unusable key ({e})")))?;
    let certified = CertifiedKey::new(chain, signer);
    certified.keys_match().map_err(|_| TlsError::Mismatch {
        cert: files.cert.clone(),
        key: files.key.clone(),
    })?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for ca in certificates("TLS client CA", path)? {
                roots.add(ca).map_err(|e| TlsError::Content {
                    what: "TLS client CA",
                    path: path.clone(),
                    reason: format!("not a usable CA certificate ({e})"),
                })?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let verifier = match files.client_auth {
                ClientAuth::Required => verifier,
                ClientAuth::Optional => verifier.allow_unauthenticated(),
            };
            let verifier = verifier.build().map_err(|e| TlsError::Content {
                what: "TLS client CA",
                path: path.clone(),
                reason: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config =
        builder.with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The subject of a DER certificate as an RFC 4514 distinguished name
/// (most specific attribute first: `CN=ci,OU=build,O=acme`).
pub fn subject_of(der: &[u8]) -> Option<String> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    Some(rfc4514(cert.subject()))
}

fn rfc4514(name: &x509_parser::x509::X509Name<'_>) -> String {
    let registry = x509_parser::objects::oid_registry();
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|attr| {
                    let key = match x509_parser::objects::oid2abbrev(attr.attr_type(), registry) {
                        Ok("emailAddress") | Err(_) => attr.attr_type().to_id_string(),
                        Ok(k) => k.to_owned(),
                    };
                    let value = match attr.as_str() {
                        Ok(s) => escape(s),
                        // Not a string type: the value's DER, as RFC 4514 says.
                        Err(_) => format!("#{}", hex(attr.attr_value().as_bytes())),
                    };
                    format!("{key}={value}")
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 4514 escaping of an attribute value.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let last = s.chars().count().saturating_sub(1);
    for (i, c) in s.chars().enumerate() {
        let special = matches!(c, '"' | '+' | ',' | ';' | '<' | '>' | '\\')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        if c == '\0' {
            out.push_str("\\00");
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_as_rfc4514_says() {
        assert_eq!(escape("acme, inc"), "acme\\, inc");
        assert_eq!(escape(" lead"), "\\ lead");
        assert_eq!(escape("#x"), "\\#x");
        assert_eq!(escape("trail "), "trail\\ ");
        assert_eq!(escape("a+b=c"), "a\\+b=c");
        assert_eq!(escape("plain"), "plain");
    }
}
