//! Webhooks: `/api/v1/namespaces/{ns}/webhooks` (a namespace's, managed
//! by its admins) and `/api/v1/webhooks` (site-wide, site admins).
//!
//! - `GET` lists; `POST {"url", "format"?, "events"?, "secret"?,
//!   "description"?}` creates (201) and answers the signing secret, this
//!   once;
//! - `GET|PATCH|DELETE /webhooks/{id}`: one webhook; `PATCH {"enabled":
//!   bool}` enables or disables it;
//! - `POST /webhooks/{id}/test`: queues a `ping` delivery;
//! - `GET /webhooks/{id}/deliveries?limit=&before=`: the delivery log,
//!   newest first;
//! - `POST /webhooks/{id}/deliveries/{delivery}/redeliver`: queues the
//!   delivery's event again.
//!
//! A webhook addressed by id is checked against its own namespace (admin)
//! or, when site-wide, the site (site admin).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use berth_registry::webhooks::WebhookSpec;
use berth_registry::{Caller, Error};
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::JsonBody;
use super::extract::Query;
use super::{NamespacePath, Need, PathParams, Principal};
use crate::error::ApiError;
use crate::App;

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route(
            "/namespaces/{ns}/webhooks",
            get(handle_list_namespace).post(handle_add_namespace),
        )
        .route("/webhooks", get(handle_list_site).post(handle_add_site))
        .route(
            "/webhooks/{id}",
            get(handle_get).patch(handle_update).delete(handle_remove),
        )
        .route("/webhooks/{id}/test", post(handle_test))
        .route("/webhooks/{id}/deliveries", get(handle_deliveries))
        .route(
            "/webhooks/{id}/deliveries/{delivery}/redeliver",
            post(handle_redeliver),
        )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewHook {
    url: String,
    format: Option<String>,
    events: Option<Vec<String>>,
    secret: Option<String>,
    description: Option<String>,
}

impl NewHook {
    fn spec(self, namespace: Option<berth_oci::Namespace>) -> WebhookSpec {
        WebhookSpec {
            namespace,
            url: self.url,
            format: self.format,
            events: self.events,
            secret: self.secret,
            description: self.description,
        }
    }
}

fn number(params: &PathParams, name: &str) -> Result<i64, ApiError> {
    let v = params.get(name)?;
    v.parse()
        .map_err(|_| Error::InvalidParameter(format!("{name} {v:?} is not a number")).into())
}

/// Webhook `id` from the path, once the principal may administer it.
async fn administered(
    app: &App,
    params: &PathParams,
    principal: &Principal,
) -> Result<(berth_registry::webhooks::Webhook, Caller), ApiError> {
    let id = number(params, "id")?;
    let hook = app.registry.webhook(id).await?;
    let caller = match &hook.namespace {
        Some(ns) => principal.require(app, ns, Need::Admin).await?,
        None => principal.require_site_admin(app)?,
    };
    Ok((hook, caller))
}

async fn handle_list_namespace(
    State(app): State<Arc<App>>,
    NamespacePath(ns): NamespacePath,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    principal.require(&app, &ns, Need::Admin).await?;
    let hooks = app.registry.webhooks(Some(&ns)).await?;
    Ok(Json(json!({ "namespace": ns, "webhooks": hooks })))
}

async fn handle_list_site(
    State(app): State<Arc<App>>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    principal.require_site_admin(&app)?;
    let hooks = app.registry.webhooks(None).await?;
    Ok(Json(json!({ "namespace": null, "webhooks": hooks })))
}

async fn handle_add_namespace(
    State(app): State<Arc<App>>,
    NamespacePath(ns): NamespacePath,
    principal: Principal,
    JsonBody(body): JsonBody<NewHook>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let caller = principal.require(&app, &ns, Need::Admin).await?;
    let created = app
        .registry
        .add_webhook(body.spec(Some(ns.clone())), &caller)
        .await?;
    Ok((StatusCode::CREATED, Json(json!(created))))
}

async fn handle_add_site(
    State(app): State<Arc<App>>,
    principal: Principal,
    JsonBody(body): JsonBody<NewHook>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let caller = principal.require_site_admin(&app)?;
    let created = app.registry.add_webhook(body.spec(None), &caller).await?;
    Ok((StatusCode::CREATED, Json(json!(created))))
}

async fn handle_get(
    State(app): State<Arc<App>>,
    params: PathParams,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    let (hook, _) = administered(&app, &params, &principal).await?;
    Ok(Json(json!(hook)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Update {
    enabled: bool,
}

async fn handle_update(
    State(app): State<Arc<App>>,
    params: PathParams,
    principal: Principal,
    JsonBody(body): JsonBody<Update>,
) -> Result<Json<Value>, ApiError> {
    let (hook, caller) = administered(&app, &params, &principal).await?;
    let hook = app
        .registry
        .set_webhook_enabled(hook.id, body.enabled, &caller)
        .await?;
    Ok(Json(json!(hook)))
}

async fn handle_remove(
    State(app): State<Arc<App>>,
    params: PathParams,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    let (hook, caller) = administered(&app, &params, &principal).await?;
    let hook = app.registry.remove_webhook(hook.id, &caller).await?;
    Ok(Json(json!({ "removed": hook })))
}

async fn handle_test(
    State(app): State<Arc<App>>,
    params: PathParams,
    principal: Principal,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (hook, caller) = administered(&app, &params, &principal).await?;
    let delivery = app.registry.test_webhook(hook.id, &caller).await?;
    Ok((StatusCode::ACCEPTED, Json(json!(delivery))))
}

#[derive(Deserialize)]
struct Page {
    limit: Option<i64>,
    before: Option<i64>,
}

async fn handle_deliveries(
    State(app): State<Arc<App>>,
    params: PathParams,
    Query(page): Query<Page>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    let (hook, _) = administered(&app, &params, &principal).await?;
    let limit = page.limit.unwrap_or(50).clamp(1, 1000);
    let list = app
        .registry
        .webhook_deliveries(hook.id, page.before, limit)
        .await?;
    let next = (list.len() as i64 == limit)
        .then(|| list.last().map(|d| d.id))
        .flatten();
    Ok(Json(
        json!({ "webhook": hook.id, "deliveries": list, "next": next }),
    ))
}

async fn handle_redeliver(
    State(app): State<Arc<App>>,
    params: PathParams,
    principal: Principal,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (hook, _) = administered(&app, &params, &principal).await?;
    let delivery = number(&params, "delivery")?;
    let queued = app.registry.redeliver(hook.id, delivery).await?;
    Ok((StatusCode::ACCEPTED, Json(json!(queued))))
}
