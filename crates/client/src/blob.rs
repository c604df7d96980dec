//! Blob operations: head, streaming get, uploads (monolithic and chunked)
//! and cross-repository mounts.

use std::pin::Pin;

use berth_oci::Digest;
use bytes::Bytes;
use futures_util::{Stream, StreamExt as _, TryStreamExt as _};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use tokio::io::{AsyncRead, AsyncReadExt as _};

use crate::{Error, Repository};

/// A blob being downloaded.
pub struct BlobStream {
    /// `Content-Length`, when the registry sent one.
    pub size: Option<u64>,
    /// The body.
    pub stream: Pin<Box<dyn Stream<Item = Result<Bytes, Error>> + Send>>,
}

impl std::fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlobStream(size={:?})", self.size)
    }
}

/// The outcome of a cross-repository mount request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountResult {
    /// The blob is now in the target repository.
    Mounted,
    /// The registry did not mount (the blob must be uploaded).
    NotMounted,
}

impl Repository<'_> {
    /// The size of a blob, or `None` if the repository does not have it.
    pub async fn head_blob(&self, digest: &Digest) -> Result<Option<u64>, Error> {
        let url = self.url(&format!("blobs/{digest}"));
        let scopes = self.pull_scope();
        let resp = self
            .client
            .send(self.registry, &scopes, &|| self.client.http.head(&url))
            .await?;
        match resp.status().as_u16() {
            404 => Ok(None),
            s if (200..300).contains(&s) => Ok(Some(
                resp.headers()
                    .get(CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            )),
            _ => Err(Error::from_response("HEAD", resp).await),
        }
    }

    /// Streams a blob (redirects to object storage are followed).
    pub async fn get_blob(&self, digest: &Digest) -> Result<BlobStream, Error> {
        let url = self.url(&format!("blobs/{digest}"));
        let scopes = self.pull_scope();
        let resp = self
            .client
            .send(self.registry, &scopes, &|| self.client.http.get(&url))
            .await?;
        if !resp.status().is_success() {
            return Err(Error::from_response("GET", resp).await);
        }
        let what = format!("blob {digest}");
        Ok(BlobStream {
            size: resp.content_length(),
            stream: Box::pin(
                resp.bytes_stream()
                    .map_err(move |e| Error::http(format!("reading {what}"), e)),
            ),
        })
    }

    /// Starts an upload session; returns its absolute location.
    async fn start_upload(&self, query: &str) -> Result<reqwest::Response, Error> {
        let url = self.url(&format!("blobs/uploads/{query}"));
        let scopes = self.push_scope();
        self.client
            .send(self.registry, &scopes, &|| {
                self.client.http.post(&url).header(CONTENT_LENGTH, "0")
            })
            .await
    }

    fn location(&self, resp: &reqwest::Response) -> Result<String, Error> {
        let loc = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::Protocol("upload response without Location".to_owned()))?;
        Ok(self.absolute(loc))
    }

    fn with_digest(location: &str, digest: &Digest) -> Result<reqwest::Url, Error> {
        let mut url = reqwest::Url::parse(location)
            .map_err(|e| Error::Protocol(format!("bad upload location: {e}")))?;
        url.query_pairs_mut().append_pair("digest", digest.as_str());
        Ok(url)
    }

    /// Uploads a blob in one `PUT` after a `POST` that opens the session.
    pub async fn upload_blob(
        &self,
        digest: &Digest,
        size: u64,
        body: reqwest::Body,
    ) -> Result<(), Error> {
        let resp = self.start_upload("").await?;
        if resp.status().as_u16() != 202 {
            return Err(Error::from_response("POST", resp).await);
        }
        let url = Repository::with_digest(&self.location(&resp)?, digest)?;
        let req = self
            .client
            .http
            .put(url)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, size)
            .body(body);
        let resp = self
            .client
            .send_once(self.registry, &self.push_scope(), req)
            .await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(Error::from_response("PUT", resp).await)
        }
    }

    /// Uploads a blob in `PATCH` chunks of `chunk_size` bytes, then closes
    /// the session with a `PUT`.
    pub async fn upload_blob_chunked<R: AsyncRead + Unpin>(
        &self,
        digest: &Digest,
        mut reader: R,
        chunk_size: usize,
    ) -> Result<(), Error> {
        let resp = self.start_upload("").await?;
        if resp.status().as_u16() != 202 {
            return Err(Error::from_response("POST", resp).await);
        }
        let mut location = self.location(&resp)?;
        let scopes = self.push_scope();
        let mut offset: u64 = 0;
        let mut buf = vec![0u8; chunk_size.max(1)];
        loop {
            let mut filled = 0;
            while filled < buf.len() {
                let n = reader.read(&mut buf[filled..]).await?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                break;
            }
            let chunk = Bytes::copy_from_slice(&buf[..filled]);
            let range = format!("{}-{}", offset, offset + filled as u64 - 1);
            let loc = location.clone();
            let resp = self
                .client
                .send(self.registry, &scopes, &|| {
                    self.client
                        .http
                        .patch(&loc)
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .header("Content-Range", range.as_str())
                        .header(CONTENT_LENGTH, chunk.len())
                        .body(chunk.clone())
                })
                .await?;
            if resp.status().as_u16() != 202 {
                return Err(Error::from_response("PATCH", resp).await);
            }
            location = self.location(&resp)?;
            offset += filled as u64;
        }
        let url = Repository::with_digest(&location, digest)?;
        let resp = self
            .client
            .send(self.registry, &scopes, &|| {
                self.client
                    .http
                    .put(url.clone())
                    .header(CONTENT_LENGTH, "0")
            })
            .await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(Error::from_response("PUT", resp).await)
        }
    }

    /// Asks the registry to mount `digest` from repository `from` (same
    /// registry). A registry that declines opens an upload session instead,
    /// which is cancelled here.
    pub async fn mount_blob(&self, digest: &Digest, from: &str) -> Result<MountResult, Error> {
        let url = self.url("blobs/uploads/");
        let mut scopes = self.push_scope();
        scopes.push(format!("repository:{from}:pull"));
        let query = [("mount", digest.as_str()), ("from", from)];
        let resp = self
            .client
            .send(self.registry, &scopes, &|| {
                self.client
                    .http
                    .post(&url)
                    .query(&query)
                    .header(CONTENT_LENGTH, "0")
            })
            .await?;
        match resp.status().as_u16() {
            201 => Ok(MountResult::Mounted),
            202 => {
                if let Ok(loc) = self.location(&resp) {
                    // Best effort: an abandoned session expires anyway.
                    let _ = self
                        .client
                        .send_once(self.registry, &scopes, self.client.http.delete(loc))
                        .await;
                }
                Ok(MountResult::NotMounted)
            }
            _ => Err(Error::from_response("POST", resp).await),
        }
    }

    /// Downloads a whole blob into memory, verifying its digest (for configs
    /// and other small blobs).
    pub async fn get_blob_bytes(&self, digest: &Digest, limit: usize) -> Result<Bytes, Error> {
        let mut s = self.get_blob(digest).await?;
        let mut buf = Vec::new();
        let mut hasher = digest.algorithm().hasher();
        while let Some(chunk) = s.stream.next().await {
            let chunk = chunk?;
            if buf.len() + chunk.len() > limit {
                return Err(Error::Protocol(format!(
                    "blob {digest} is larger than {limit} bytes"
                )));
            }
            hasher.update(&chunk);
            buf.extend_from_slice(&chunk);
        }
        let actual = hasher.finish();
        if &actual != digest {
            return Err(Error::DigestMismatch {
                what: format!("blob in {}", self.name),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(Bytes::from(buf))
    }
}
