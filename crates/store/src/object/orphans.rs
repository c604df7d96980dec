//! Multipart uploads in the bucket that nobody owns any more.
//!
//! A replica that dies between starting a multipart upload and recording
//! it (in a session's `state.json`, or by completing a single-request
//! push) leaves an incomplete upload whose parts the object store keeps,
//! and bills, until someone aborts it. `object_store` cannot list multipart
//! uploads, so this module makes S3's `ListMultipartUploads` request
//! itself: signed by `object_store`'s own SigV4 signer
//! ([`object_store::aws::AwsAuthorizer`]) with the store's credentials,
//! sent through `object_store`'s HTTP client, its XML read with quick-xml.
//!
//! An upload under the store's prefix is an orphan when it is older than
//! the grace given (the upload expiry) and it is not the multipart upload
//! of a live session (`uploads/<id>/data` whose `state.json` names it).
//! Orphans are aborted through `object_store`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use object_store::aws::{AmazonS3, AwsAuthorizer};
use object_store::client::{HttpClient, HttpRequestBody};
use object_store::path::Path;
use serde::Deserialize;

use super::{session, BucketStore};
use crate::{Error, Result};

/// What lists the multipart uploads of one bucket.
pub(crate) struct Lister {
    pub(super) s3: Arc<AmazonS3>,
    pub(super) client: HttpClient,
    /// The bucket's URL: `ENDPOINT/BUCKET` (path style) or
    /// `https://BUCKET.HOST` (virtual-hosted), no trailing slash.
    pub(super) base: String,
    pub(super) region: String,
}

/// One incomplete multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Incomplete {
    pub(crate) key: String,
    pub(crate) upload_id: String,
    pub(crate) initiated: SystemTime,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "PascalCase")]
struct ListResult {
    #[serde(default)]
    is_truncated: bool,
    #[serde(default)]
    next_key_marker: Option<String>,
    #[serde(default)]
    next_upload_id_marker: Option<String>,
    #[serde(default, rename = "Upload")]
    uploads: Vec<Upload>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "PascalCase")]
struct Upload {
    key: String,
    upload_id: String,
    initiated: String,
}

/// Percent-encodes a query value as SigV4 canonicalises it (everything
/// but the unreserved characters), so the signed and the sent query agree.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn failed(what: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    tracing::warn!(operation = what, error = %e, "object store request failed");
    Error::Unavailable {
        what,
        source: Box::new(e),
    }
}

fn refused(what: &'static str, why: String) -> Error {
    failed(what, std::io::Error::other(why))
}

/// Where the next page of a listing starts: a key and an upload id.
type Marker = (String, String);

/// Reads one page of a `ListMultipartUploads` answer.
fn parse(xml: &[u8]) -> Result<(Vec<Incomplete>, Option<Marker>)> {
    const WHAT: &str = "list multipart uploads";
    let text = std::str::from_utf8(xml).map_err(|e| failed(WHAT, e))?;
    let page: ListResult = quick_xml::de::from_str(text).map_err(|e| failed(WHAT, e))?;
    let mut out = Vec::with_capacity(page.uploads.len());
    for u in page.uploads {
        let initiated = chrono::DateTime::parse_from_rfc3339(&u.initiated)
            .map_err(|e| failed(WHAT, e))?
            .with_timezone(&chrono::Utc);
        out.push(Incomplete {
            key: u.key,
            upload_id: u.upload_id,
            initiated: super::to_system_time(initiated),
        });
    }
    let next = match (page.is_truncated, page.next_key_marker) {
        (true, Some(key)) => Some((key, page.next_upload_id_marker.unwrap_or_default())),
        _ => None,
    };
    Ok((out, next))
}

impl Lister {
    /// Every incomplete multipart upload whose key starts with `prefix`.
    pub(crate) async fn list(&self, prefix: &str) -> Result<Vec<Incomplete>> {
        const WHAT: &str = "list multipart uploads";
        let mut out = Vec::new();
        let mut marker: Option<Marker> = None;
        loop {
            let mut url = format!("{}?uploads&prefix={}", self.base, encode(prefix));
            if let Some((key, id)) = &marker {
                url.push_str(&format!(
                    "&key-marker={}&upload-id-marker={}",
                    encode(key),
                    encode(id)
                ));
            }
            let credential = self
                .s3
                .credentials()
                .get_credential()
                .await
                .map_err(|e| failed(WHAT, e))?;
            let mut request = http::Request::builder()
                .method(http::Method::GET)
                .uri(&url)
                .body(HttpRequestBody::empty())
                .map_err(|e| failed(WHAT, e))?;
            AwsAuthorizer::new(&credential, "s3", &self.region).authorize(&mut request, None);
            let response = self
                .client
                .execute(request)
                .await
                .map_err(|e| failed(WHAT, e))?;
            let status = response.status();
            let body = response
                .into_body()
                .bytes()
                .await
                .map_err(|e| failed(WHAT, e))?;
            if !status.is_success() {
                let text = String::from_utf8_lossy(&body);
                return Err(refused(
                    WHAT,
                    format!("{status}: {}", text.chars().take(300).collect::<String>()),
                ));
            }
            let (page, next) = parse(&body)?;
            out.extend(page);
            match next {
                Some(m) if Some(&m) != marker.as_ref() => marker = Some(m),
                _ => return Ok(out),
            }
        }
    }
}

/// The session id of a key `PREFIX/uploads/<id>/data`.
fn session_of<'k>(store: &BucketStore, key: &'k str) -> Option<&'k str> {
    let rest = if store.prefix.is_empty() {
        key
    } else {
        key.strip_prefix(store.prefix.as_str())?.strip_prefix('/')?
    };
    rest.strip_prefix("uploads/")?.strip_suffix("/data")
}

/// Aborts the orphaned multipart uploads older than `older_than` (see the
/// module docs); returns how many.
pub(super) async fn sweep(store: &BucketStore, older_than: Duration) -> Result<usize> {
    let Some(lister) = &store.lister else {
        return Ok(0);
    };
    let prefix = if store.prefix.is_empty() {
        String::new()
    } else {
        format!("{}/", store.prefix)
    };
    let now = SystemTime::now();
    let mut aborted = 0;
    for u in lister.list(&prefix).await? {
        if now.duration_since(u.initiated).unwrap_or_default() < older_than {
            continue;
        }
        if let Some(id) = session_of(store, &u.key) {
            if session::multipart_of(store, id).await?.as_deref() == Some(u.upload_id.as_str()) {
                continue;
            }
        }
        let Ok(path) = Path::parse(&u.key) else {
            continue;
        };
        match store.bucket.abort_multipart(&path, &u.upload_id).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(super::unavailable("abort a multipart upload")(e)),
        }
        tracing::info!(key = %u.key, "aborted an orphaned multipart upload");
        aborted += 1;
    }
    Ok(aborted)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::{encode, parse};

    #[test]
    fn query_values_are_encoded_as_sigv4_canonicalises_them() {
        assert_eq!(encode("berth/registry/"), "berth%2Fregistry%2F");
        assert_eq!(encode("a b+c~d_e.f-g"), "a%20b%2Bc~d_e.f-g");
        assert_eq!(encode(""), "");
    }

    #[test]
    fn a_listing_page_is_read() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>b</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>
  <NextKeyMarker>p/uploads/x/data</NextKeyMarker>
  <NextUploadIdMarker>id-2</NextUploadIdMarker>
  <Prefix>p/</Prefix><MaxUploads>2</MaxUploads><IsTruncated>true</IsTruncated>
  <Upload><Key>p/blobs/sha256/ab/abc</Key><UploadId>id-1</UploadId>
    <Initiator><ID>x</ID></Initiator><StorageClass>STANDARD</StorageClass>
    <Initiated>2010-11-10T20:48:33.000Z</Initiated></Upload>
  <Upload><Key>p/uploads/x/data</Key><UploadId>id-2</UploadId>
    <Initiated>2010-11-10T20:49:33Z</Initiated></Upload>
</ListMultipartUploadsResult>"#;
        let (uploads, next) = parse(xml).unwrap();
        assert_eq!(uploads.len(), 2);
        assert_eq!(uploads[0].key, "p/blobs/sha256/ab/abc");
        assert_eq!(uploads[1].upload_id, "id-2");
        let t = uploads[0]
            .initiated
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert_eq!(t, 1_289_422_113);
        assert_eq!(
            next,
            Some(("p/uploads/x/data".to_owned(), "id-2".to_owned()))
        );
        let empty = br#"<ListMultipartUploadsResult><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>"#;
        assert_eq!(parse(empty).unwrap(), (Vec::new(), None));
    }
}
