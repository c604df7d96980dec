//! Trusting a private certificate authority and presenting a client
//! certificate, as the containers tools do with `--cert-dir`.
//!
//! A certificate directory holds, as skopeo and podman read it
//! (`/etc/containers/certs.d/HOST:PORT/`):
//!
//! - `*.crt`: CA certificates (PEM) trusted in addition to the system's;
//! - `NAME.cert` with `NAME.key`: a client certificate (PEM chain) and its
//!   key, presented to registries that ask for one (mutual TLS).
//!
//! A `.cert` without its `.key` (or the reverse) is an error naming the
//! file, as is a directory with more than one client certificate.
//! [`TlsTrust::apply`] adds what was read to a `reqwest` client builder.

use std::path::{Path, PathBuf};

use crate::Error;

/// CA certificates to trust and an optional client certificate.
#[derive(Clone, Default)]
pub struct TlsTrust {
    roots: Vec<reqwest::Certificate>,
    identity: Option<reqwest::Identity>,
    /// The files read, for messages.
    sources: Vec<PathBuf>,
}

impl std::fmt::Debug for TlsTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTrust")
            .field("roots", &self.roots.len())
            .field("client_certificate", &self.identity.is_some())
            .field("sources", &self.sources)
            .finish()
    }
}

fn tls_error(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::Tls(format!("{}: {what}", path.display()))
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| tls_error(path, e))
}

impl TlsTrust {
    /// Reads `cert_dir` (`*.crt`, `*.cert` + `*.key`) and `ca_cert` (a PEM
    /// file of one or more CA certificates). Both are optional; with neither
    /// the result trusts the system roots only.
    pub fn load(cert_dir: Option<&Path>, ca_cert: Option<&Path>) -> Result<TlsTrust, Error> {
        let mut trust = TlsTrust::default();
        if let Some(dir) = cert_dir {
            trust.read_dir(dir)?;
        }
        if let Some(file) = ca_cert {
            trust.add_roots(file)?;
        }
        Ok(trust)
    }

    /// Whether anything was configured beyond the system roots.
    pub fn is_configured(&self) -> bool {
        !self.roots.is_empty() || self.identity.is_some()
    }

    /// Whether a client certificate is presented.
    pub fn has_client_certificate(&self) -> bool {
        self.identity.is_some()
    }

    /// Adds the CA certificates and the client certificate to `builder`.
    pub fn apply(&self, mut builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        for root in &self.roots {
            builder = builder.add_root_certificate(root.clone());
        }
        if let Some(identity) = &self.identity {
            builder = builder.identity(identity.clone());
        }
        builder
    }

    fn add_roots(&mut self, file: &Path) -> Result<(), Error> {
        let pem = read(file)?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| tls_error(file, format!("not a PEM certificate file ({e})")))?;
        if certs.is_empty() {
            return Err(tls_error(file, "holds no PEM certificate"));
        }
        self.roots.extend(certs);
        self.sources.push(file.to_owned());
        Ok(())
    }

    fn read_dir(&mut self, dir: &Path) -> Result<(), Error> {
        let entries = std::fs::read_dir(dir).map_err(|e| tls_error(dir, e))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        let ext = |p: &Path| p.extension().and_then(|e| e.to_str()).map(str::to_owned);
        let mut pairs = Vec::new();
        for file in &files {
            match ext(file).as_deref() {
                Some("crt") => self.add_roots(file)?,
                Some("cert") => {
                    let key = file.with_extension("key");
                    if !key.is_file() {
                        return Err(tls_error(
                            file,
                            format!("client certificate without its key {}", key.display()),
                        ));
                    }
                    pairs.push((file.clone(), key));
                }
                Some("key") => {
                    let cert = file.with_extension("cert");
                    if !cert.is_file() {
                        return Err(tls_error(
                            file,
                            format!("key without its client certificate {}", cert.display()),
                        ));
                    }
                }
                _ => {}
            }
        }
        match pairs.as_slice() {
            [] => {}
            [(cert, key)] => {
                let mut pem = read(cert)?;
                pem.push(b'\n');
                pem.extend(read(key)?);
                let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                    tls_error(
                        cert,
                        format!("not a PEM certificate with its key {} ({e})", key.display()),
                    )
                })?;
                self.identity = Some(identity);
                self.sources.push(cert.clone());
            }
            more => {
                let names: Vec<String> =
                    more.iter().map(|(c, _)| c.display().to_string()).collect();
                return Err(tls_error(
                    dir,
                    format!(
                        "holds {} client certificates ({}); keep one",
                        more.len(),
                        names.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_or_missing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let t = TlsTrust::load(Some(dir.path()), None).unwrap();
        assert!(!t.is_configured());
        let missing = dir.path().join("nope");
        let e = TlsTrust::load(Some(&missing), None).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
    }

    #[test]
    fn unpaired_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("client.cert"), "x").unwrap();
        let e = TlsTrust::load(Some(dir.path()), None).unwrap_err();
        assert!(e.to_string().contains("client.key"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("client.key"), "x").unwrap();
        let e = TlsTrust::load(Some(dir.path()), None).unwrap_err();
        assert!(e.to_string().contains("client.cert"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, "not pem").unwrap();
        let e = TlsTrust::load(None, Some(&ca)).unwrap_err();
        assert!(e.to_string().contains("ca.crt"), "{e}");
    }
}
