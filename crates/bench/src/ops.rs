//! The registry operations the scenarios are made of, spoken over [`Conn`].
//! Each returns the payload bytes it moved (up or down).

use bytes::Bytes;
use http::{header, Method, StatusCode};

use crate::client::{collect, drain, expect, location, with_query, Conn, Payload};
use crate::payload::Blob;

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCTETS: &str = "application/octet-stream";

/// The repositories the scenarios use.
pub const BENCH_REPOSITORIES: [&str; 2] = ["bench/app", "bench/tags"];

/// A registry token for `scopes` from berth's `GET /token`, authenticated
/// by the connection's credentials.
pub async fn fetch_token(conn: &mut Conn, scopes: &[String]) -> anyhow::Result<String> {
    let mut path = "/token?service=berth".to_owned();
    for s in scopes {
        path.push_str("&scope=");
        path.push_str(s);
    }
    let resp = conn
        .send(Method::GET, &path, &[], Payload::default())
        .await?;
    let body = collect(expect(resp, StatusCode::OK, "GET /token").await?).await?;
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    v["token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("/token answered without a token"))
}

async fn start_upload(conn: &mut Conn, repo: &str) -> anyhow::Result<String> {
    let path = format!("/v2/{repo}/blobs/uploads/");
    let resp = conn
        .send(Method::POST, &path, &[], Payload::default())
        .await?;
    let resp = expect(resp, StatusCode::ACCEPTED, "POST upload").await?;
    let loc = location(&resp)?;
    drain(resp).await?;
    Ok(loc)
}

/// Monolithic push: `POST` then `PUT ?digest=` with the whole blob.
pub async fn push_monolithic(conn: &mut Conn, repo: &str, blob: &Blob) -> anyhow::Result<u64> {
    let loc = start_upload(conn, repo).await?;
    let path = with_query(&loc, "digest", &blob.digest);
    let ct = [(header::CONTENT_TYPE, OCTETS)];
    let resp = conn
        .send(Method::PUT, &path, &ct, Payload::new(blob.all()))
        .await?;
    drain(expect(resp, StatusCode::CREATED, "PUT blob").await?).await?;
    Ok(blob.len)
}

/// Chunked push: `POST`, one `PATCH` with `Content-Range` per chunk of
/// `chunk` bytes, then an empty `PUT ?digest=`.
pub async fn push_chunked(
    conn: &mut Conn,
    repo: &str,
    blob: &Blob,
    chunk: u64,
) -> anyhow::Result<u64> {
    let mut loc = start_upload(conn, repo).await?;
    let mut start = 0u64;
    while start < blob.len {
        let len = chunk.min(blob.len - start);
        let range = format!("{}-{}", start, start + len - 1);
        let headers = [
            (header::CONTENT_TYPE, OCTETS),
            (header::CONTENT_RANGE, range.as_str()),
        ];
        let resp = conn
            .send(
                Method::PATCH,
                &loc,
                &headers,
                Payload::new(blob.slice(start, len)),
            )
            .await?;
        let resp = expect(resp, StatusCode::ACCEPTED, "PATCH chunk").await?;
        loc = location(&resp)?;
        drain(resp).await?;
        start += len;
    }
    let path = with_query(&loc, "digest", &blob.digest);
    let resp = conn
        .send(Method::PUT, &path, &[], Payload::default())
        .await?;
    drain(expect(resp, StatusCode::CREATED, "PUT upload").await?).await?;
    Ok(blob.len)
}

/// `GET /v2/<repo>/blobs/<digest>`, body drained.
pub async fn get_blob(conn: &mut Conn, repo: &str, digest: &str) -> anyhow::Result<u64> {
    let path = format!("/v2/{repo}/blobs/{digest}");
    let resp = conn
        .send(Method::GET, &path, &[], Payload::default())
        .await?;
    drain(expect(resp, StatusCode::OK, "GET blob").await?).await
}

/// `PUT /v2/<repo>/manifests/<reference>` of an OCI image manifest.
pub async fn put_manifest(
    conn: &mut Conn,
    repo: &str,
    reference: &str,
    bytes: &Bytes,
) -> anyhow::Result<u64> {
    let path = format!("/v2/{repo}/manifests/{reference}");
    let ct = [(header::CONTENT_TYPE, OCI_MANIFEST)];
    let resp = conn
        .send(Method::PUT, &path, &ct, Payload::new(vec![bytes.clone()]))
        .await?;
    drain(expect(resp, StatusCode::CREATED, "PUT manifest").await?).await?;
    Ok(bytes.len() as u64)
}

/// `GET` (or `HEAD`) `/v2/<repo>/manifests/<reference>`.
pub async fn get_manifest(
    conn: &mut Conn,
    repo: &str,
    reference: &str,
    head: bool,
) -> anyhow::Result<u64> {
    let path = format!("/v2/{repo}/manifests/{reference}");
    let method = if head { Method::HEAD } else { Method::GET };
    let accept = [(header::ACCEPT, OCI_MANIFEST)];
    let resp = conn
        .send(method, &path, &accept, Payload::default())
        .await?;
    drain(expect(resp, StatusCode::OK, "GET manifest").await?).await
}

/// `GET /v2/<repo>/tags/list` (all tags), returning the body.
pub async fn tags_list(conn: &mut Conn, repo: &str) -> anyhow::Result<Bytes> {
    let path = format!("/v2/{repo}/tags/list");
    let resp = conn
        .send(Method::GET, &path, &[], Payload::default())
        .await?;
    collect(expect(resp, StatusCode::OK, "GET tags").await?).await
}

/// An OCI image manifest over `config` and `layer` (digest, size), made
/// unique by an annotation.
pub fn manifest(config: (&str, u64), layer: (&str, u64), id: u64) -> Bytes {
    Bytes::from(format!(
        concat!(
            r#"{{"schemaVersion":2,"mediaType":"{mt}","#,
            r#""config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{cs}}},"#,
            r#""layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{ld}","size":{ls}}}],"#,
            r#""annotations":{{"org.berth.bench.id":"{id}"}}}}"#
        ),
        mt = OCI_MANIFEST,
        cd = config.0,
        cs = config.1,
        ld = layer.0,
        ls = layer.1,
        id = id
    ))
}
