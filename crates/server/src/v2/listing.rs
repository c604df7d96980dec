//! Tag lists, the catalog and referrers.

use axum::body::Body;
use axum::extract::Request;
use axum::http::header;
use axum::response::Response;
use berth_oci::media;
use berth_oci::RepositoryName;
use berth_registry::auth::Identity;
use berth_registry::{Error, Page};

use super::{parse_digest, query, query_value, Result};
use crate::App;

fn page_params(pairs: &[(String, String)]) -> Result<(Option<i64>, Option<String>)> {
    let n = match query_value(pairs, "n") {
        None | Some("") => None,
        Some(v) => Some(v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            Error::InvalidParameter(format!("page size n={v:?} is not a non-negative integer"))
        })?),
    };
    Ok((n, query_value(pairs, "last").map(str::to_owned)))
}

fn json_page(
    key: &str,
    name: Option<&str>,
    page: &Page,
    link_base: &str,
    n: Option<i64>,
) -> Result<Response> {
    // Written directly (not through a `serde_json::Value`): a 10,000-tag
    // list is serialized straight from the shared cached list.
    let items = page.items();
    let mut bytes = Vec::with_capacity(32 + items.iter().map(|t| t.len() + 3).sum::<usize>());
    bytes.push(b'{');
    if let Some(name) = name {
        bytes.extend_from_slice(b"\"name\":");
        let _ = serde_json::to_writer(&mut bytes, name);
        bytes.push(b',');
    }
    let _ = serde_json::to_writer(&mut bytes, key);
    bytes.push(b':');
    let _ = serde_json::to_writer(&mut bytes, items);
    bytes.push(b'}');
    let mut b = Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, bytes.len());
    if page.more {
        if let Some(last) = items.last() {
            let n = n.unwrap_or(items.len() as i64);
            let last: String = form_urlencoded::byte_serialize(last.as_bytes()).collect();
            b = b.header(
                header::LINK,
                format!("<{link_base}?n={n}&last={last}>; rel=\"next\""),
            );
        }
    }
    Ok(b.body(Body::from(bytes))?)
}

pub(super) async fn handle_tags(
    app: &App,
    name: &RepositoryName,
    req: Request,
) -> Result<Response> {
    let q = query(&req);
    let (n, last) = page_params(&q)?;
    let page = app.registry.tags(name, n, last.as_deref()).await?;
    json_page(
        "tags",
        Some(name.as_str()),
        &page,
        &format!("/v2/{name}/tags/list"),
        n,
    )
}

pub(super) async fn handle_catalog(
    app: &App,
    req: Request,
    identity: &Identity,
) -> Result<Response> {
    let q = query(&req);
    let (n, last) = page_params(&q)?;
    let page = if app.auth.enforced() {
        app.auth
            .catalog(&app.registry, identity, n, last.as_deref())
            .await?
    } else {
        app.registry.catalog(n, last.as_deref()).await?
    };
    json_page("repositories", None, &page, "/v2/_catalog", n)
}

pub(super) async fn handle_referrers(
    app: &App,
    name: &RepositoryName,
    digest: &str,
    req: Request,
) -> Result<Response> {
    let subject = parse_digest(digest)?;
    let q = query(&req);
    let artifact_type = query_value(&q, "artifactType").filter(|s| !s.is_empty());
    if let Some(at) = artifact_type {
        if !media::is_valid(at) {
            return Err(Error::InvalidParameter(format!(
                "artifactType {at:?} is not a media type"
            ))
            .into());
        }
    }
    let index = app
        .registry
        .referrers(name, &subject, artifact_type)
        .await?;
    let bytes = serde_json::to_vec(&index)
        .map_err(|e| Error::Internal(format!("encoding the referrers index: {e}")))?;
    let mut b = Response::builder()
        .header(header::CONTENT_TYPE, media::OCI_INDEX)
        .header(header::CONTENT_LENGTH, bytes.len());
    if artifact_type.is_some() {
        b = b.header("oci-filters-applied", "artifactType");
    }
    Ok(b.body(Body::from(bytes))?)
}
