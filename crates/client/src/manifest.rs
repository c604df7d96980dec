//! Manifest operations: get, head and put, with Accept negotiation and
//! digest verification.

use berth_oci::Digest;
use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_TYPE};

use crate::{Error, Repository, MANIFEST_ACCEPT};

/// Manifests larger than this are refused (the limit registries apply).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// A manifest as the registry served it.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// The exact bytes (their digest is the manifest digest).
    pub bytes: Bytes,
    /// Media type from `Content-Type`, else from the body.
    pub media_type: String,
    /// Digest of `bytes`.
    pub digest: Digest,
}

fn body_media_type(bytes: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    v.get("mediaType")?.as_str().map(str::to_owned)
}

impl Repository<'_> {
    /// Fetches a manifest by tag or digest; a digest reference is verified.
    pub async fn get_manifest(&self, reference: &str) -> Result<FetchedManifest, Error> {
        let url = self.url(&format!("manifests/{reference}"));
        let scopes = self.pull_scope();
        let resp = self
            .client
            .send(self.registry, &scopes, &|| {
                self.client.http.get(&url).header(ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        if !resp.status().is_success() {
            return Err(Error::from_response("GET", resp).await);
        }
        let header_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_owned())
            .filter(|v| berth_oci::media::is_manifest(v));
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| Error::http(format!("reading manifest {reference}"), e))?;
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(Error::Protocol(format!(
                "manifest {reference} is larger than 4 MiB"
            )));
        }
        let media_type = header_type
            .or_else(|| body_media_type(&bytes))
            .ok_or_else(|| Error::Protocol(format!("manifest {reference} has no media type")))?;
        let digest = match Digest::parse(reference) {
            Ok(expected) => {
                let actual = Digest::compute(expected.algorithm(), &bytes);
                if actual != expected {
                    return Err(Error::DigestMismatch {
                        what: format!("manifest {}", self.name),
                        expected: expected.to_string(),
                        actual: actual.to_string(),
                    });
                }
                actual
            }
            Err(_) => Digest::sha256(&bytes),
        };
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// `HEAD` of a manifest: its digest (from `Docker-Content-Digest`) and
    /// media type, or `None` if absent.
    pub async fn head_manifest(
        &self,
        reference: &str,
    ) -> Result<Option<(Option<Digest>, String)>, Error> {
        let url = self.url(&format!("manifests/{reference}"));
        let scopes = self.pull_scope();
        let resp = self
            .client
            .send(self.registry, &scopes, &|| {
                self.client.http.head(&url).header(ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        if resp.status().as_u16() == 404 {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(Error::from_response("HEAD", resp).await);
        }
        let h = resp.headers();
        let digest = h
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Digest::parse(v).ok());
        let media_type = h
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        Ok(Some((digest, media_type)))
    }

    /// Pushes a manifest under a tag or its digest; returns its digest.
    pub async fn put_manifest(
        &self,
        reference: &str,
        bytes: Bytes,
        media_type: &str,
    ) -> Result<Digest, Error> {
        let url = self.url(&format!("manifests/{reference}"));
        let scopes = self.push_scope();
        let resp = self
            .client
            .send(self.registry, &scopes, &|| {
                self.client
                    .http
                    .put(&url)
                    .header(CONTENT_TYPE, media_type)
                    .body(bytes.clone())
            })
            .await?;
        if !resp.status().is_success() {
            return Err(Error::from_response("PUT", resp).await);
        }
        let ours = Digest::sha256(&bytes);
        if let Some(theirs) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Digest::parse(v).ok())
        {
            if theirs.algorithm() == ours.algorithm() && theirs != ours {
                return Err(Error::DigestMismatch {
                    what: format!("pushed manifest {}:{reference}", self.name),
                    expected: ours.to_string(),
                    actual: theirs.to_string(),
                });
            }
        }
        Ok(ours)
    }

    /// Deletes a manifest by digest.
    pub async fn delete_manifest(&self, digest: &Digest) -> Result<(), Error> {
        self.delete_reference(digest.as_str()).await
    }

    /// Deletes a tag (its manifest stays). Registries that delete only
    /// by digest (the reference registry before v3) refuse it with a 4xx.
    pub async fn delete_tag(&self, tag: &str) -> Result<(), Error> {
        self.delete_reference(tag).await
    }

    async fn delete_reference(&self, reference: &str) -> Result<(), Error> {
        let url = self.url(&format!("manifests/{reference}"));
        let scopes = vec![format!("repository:{}:delete", self.name)];
        let resp = self
            .client
            .send(self.registry, &scopes, &|| self.client.http.delete(&url))
            .await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(Error::from_response("DELETE", resp).await)
        }
    }
}
