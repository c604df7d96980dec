//! Tag rules of a namespace: `/api/v1/namespaces/{ns}/tag-rules`.
//!
//! - `GET` lists the namespace's rules (its members);
//! - `POST {"pattern": "v*", "kind": "immutable", "scope": "acme/web-*"}`
//!   adds one (`scope` defaults to the namespace; 201, or 200 when the same
//!   rule already exists);
//! - `DELETE .../tag-rules/{id}` removes one, and `DELETE
//!   .../tag-rules?pattern=v*[&kind=..][&scope=..]` the rules matching
//!   exactly (namespace admin).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use berth_registry::{Error, TagRuleKind};
use serde::Deserialize;

use super::body::JsonBody;
use super::extract::Query;
use super::{NamespacePath, Need, PathParams, Principal};
use crate::error::ApiError;
use crate::App;

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route(
            "/namespaces/{ns}/tag-rules",
            get(handle_list)
                .post(handle_add)
                .delete(handle_remove_matching),
        )
        .route("/namespaces/{ns}/tag-rules/{id}", delete(handle_remove))
}

fn kind(s: &str) -> Result<TagRuleKind, ApiError> {
    TagRuleKind::parse(s).ok_or_else(|| {
        Error::InvalidParameter(format!("kind {s:?} must be protected or immutable")).into()
    })
}

async fn handle_list(
    State(app): State<Arc<App>>,
    NamespacePath(ns): NamespacePath,
    principal: Principal,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require(&app, &ns, Need::Member).await?;
    let rules = app.registry.namespace_tag_rules(&ns).await?;
    Ok(Json(serde_json::json!({ "namespace": ns, "rules": rules })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRule {
    pattern: String,
    kind: String,
    scope: Option<String>,
}

async fn handle_add(
    State(app): State<Arc<App>>,
    NamespacePath(ns): NamespacePath,
    principal: Principal,
    JsonBody(body): JsonBody<NewRule>,
) -> Result<Response, ApiError> {
    let caller = principal.require(&app, &ns, Need::Admin).await?;
    let scope = body.scope.unwrap_or_else(|| ns.to_string());
    let (rule, created) = app
        .registry
        .add_tag_rule(&ns, &scope, &body.pattern, kind(&body.kind)?, &caller)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(rule)).into_response())
}

async fn handle_remove(
    State(app): State<Arc<App>>,
    NamespacePath(ns): NamespacePath,
    params: PathParams,
    principal: Principal,
) -> Result<Json<serde_json::Value>, ApiError> {
    let caller = principal.require(&app, &ns, Need::Admin).await?;
    let id = params.get("id")?;
    let id: i64 = id
        .parse()
        .map_err(|_| Error::InvalidParameter(format!("tag rule id {id:?} is not a number")))?;
    let rule = app.registry.remove_tag_rule(&ns, id, &caller).await?;
    Ok(Json(serde_json::json!({ "removed": [rule] })))
}

#[derive(Deserialize)]
struct Matching {
    pattern: Option<String>,
    kind: Option<String>,
    scope: Option<String>,
}

async fn handle_remove_matching(
    State(app): State<Arc<App>>,
    NamespacePath(ns): NamespacePath,
    Query(q): Query<Matching>,
    principal: Principal,
) -> Result<Json<serde_json::Value>, ApiError> {
    let caller = principal.require(&app, &ns, Need::Admin).await?;
    let pattern = q.pattern.ok_or_else(|| {
        Error::InvalidParameter("give the rule's id in the path, or ?pattern=".into())
    })?;
    let kind = q.kind.as_deref().map(kind).transpose()?;
    let scope = q.scope.unwrap_or_else(|| ns.to_string());
    let matching: Vec<_> = app
        .registry
        .namespace_tag_rules(&ns)
        .await?
        .into_iter()
        .filter(|r| r.pattern == pattern && r.scope == scope && kind.is_none_or(|k| r.kind == k))
        .collect();
    if matching.is_empty() {
        return Err(Error::NotFound(format!(
            "no tag rule {pattern:?} on {scope} in namespace {ns}"
        ))
        .into());
    }
    let mut removed = Vec::new();
    for r in matching {
        removed.push(app.registry.remove_tag_rule(&ns, r.id, &caller).await?);
    }
    Ok(Json(serde_json::json!({ "removed": removed })))
}
