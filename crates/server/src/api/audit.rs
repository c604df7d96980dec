//! `GET /api/v1/audit`: the audit log, filtered and paged, as JSON or as
//! JSON lines (`format=jsonl`, every matching event, oldest first, for
//! export).
//!
//! Pages are newest first (`order=oldest` for oldest first). `before=ID`
//! and `after=ID` bound the ids; an answer's `next` is the id to pass as
//! `before` (newest first) or `after` (oldest first) for the next page,
//! `null` on the last.
//!
//! Site admins read everything; a namespace admin reads the events of their
//! namespace by filtering on it (`repository=acme/` or `repository=acme/web`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use berth_oci::Namespace;
use berth_registry::{AuditFilter, Error, StoredEvent};
use serde::Deserialize;

use super::extract::Query;
use super::{Need, Principal};
use crate::error::ApiError;
use crate::App;

/// Events per page when the caller does not say.
const DEFAULT_LIMIT: i64 = 100;
/// Largest page.
const MAX_LIMIT: i64 = 1000;

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new().route("/audit", get(handle_list))
}

/// Query parameters (times are Unix milliseconds).
#[derive(Debug, Deserialize)]
struct Params {
    actor: Option<String>,
    action: Option<String>,
    repository: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
    after: Option<i64>,
    before: Option<i64>,
    order: Option<String>,
    limit: Option<i64>,
    format: Option<String>,
}

async fn handle_list(
    State(app): State<Arc<App>>,
    principal: Principal,
    Query(p): Query<Params>,
) -> Result<Response, ApiError> {
    let jsonl = match p.format.as_deref() {
        None | Some("json") => false,
        Some("jsonl") => true,
        Some(other) => {
            return Err(Error::InvalidParameter(format!(
                "format {other:?}: expected json or jsonl"
            ))
            .into())
        }
    };
    let newest_first = match p.order.as_deref() {
        None => !jsonl,
        Some("newest") => true,
        Some("oldest") => false,
        Some(other) => {
            return Err(Error::InvalidParameter(format!(
                "order {other:?}: expected newest or oldest"
            ))
            .into())
        }
    };
    if jsonl && newest_first {
        return Err(Error::InvalidParameter("the jsonl export is oldest first".to_owned()).into());
    }
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(Error::InvalidParameter(format!("limit must be 1..={MAX_LIMIT}")).into());
    }
    let filter = AuditFilter {
        actor: p.actor,
        action: p.action,
        repository: p.repository.filter(|r| !r.is_empty()),
        since: p.since,
        until: p.until,
        after_id: p.after,
        before_id: p.before,
        newest_first,
        limit: Some(if jsonl { MAX_LIMIT } else { limit }),
    };
    let filter = authorize(&app, &principal, filter).await?;
    if jsonl {
        return Ok(export(app, filter));
    }
    let events = app.registry.audit_events(&filter).await?;
    let next = (events.len() as i64 == limit)
        .then(|| events.last().map(|e| e.id))
        .flatten();
    Ok(Json(serde_json::json!({ "events": events, "next": next })).into_response())
}

/// Checks that `principal` may read what `filter` asks for and narrows it
/// to that: a repository filter (a name or a `NS/` prefix) needs the
/// namespace's admin role and is held to that namespace; no repository
/// filter needs a site admin. The web UI's audit page goes through here
/// too.
pub(crate) async fn authorize(
    app: &App,
    principal: &Principal,
    filter: AuditFilter,
) -> Result<AuditFilter, ApiError> {
    match filter.repository.as_deref() {
        Some(r) => {
            // The filter is a repository name or a prefix of one; its
            // first component is the namespace it reads.
            let first = r.split('/').next().unwrap_or(r);
            let ns = Namespace::parse(first)
                .map_err(|e| Error::InvalidParameter(format!("repository filter {r:?}: {e}")))?;
            principal.require(app, &ns, Need::Admin).await?;
            Ok(app
                .auth
                .scope_audit(&principal.identity, &ns, filter)
                .await?)
        }
        None => {
            principal.require_site_admin(app)?;
            Ok(filter)
        }
    }
}

/// Streams every matching event as JSON lines, a page at a time.
fn export(app: Arc<App>, filter: AuditFilter) -> Response {
    let pages = futures_util::stream::unfold(Some(filter), move |state| {
        let app = app.clone();
        async move {
            let mut filter = state?;
            match app.registry.audit_events(&filter).await {
                Ok(events) => {
                    let full = events.len() as i64 == MAX_LIMIT;
                    let mut out = Vec::new();
                    for e in &events {
                        if serde_json::to_writer(&mut out, e).is_ok() {
                            out.push(b'\n');
                        }
                    }
                    let next = match events.last() {
                        Some(StoredEvent { id, .. }) if full => {
                            filter.after_id = Some(*id);
                            Some(filter)
                        }
                        _ => None,
                    };
                    Some((Ok::<_, std::io::Error>(out), next))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "audit export failed");
                    Some((Err(std::io::Error::other("audit export failed")), None))
                }
            }
        }
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(pages),
    )
        .into_response()
}
