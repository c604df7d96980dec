//! The HTTP layer of berth.
//!
//! Routes `/v2/` (the OCI Distribution API), `/token` (the registry token
//! flow, see [`auth`]), `/api/v1/` (management, see [`api`]) and the
//! health and metrics endpoints (see [`health`], [`observe`]) and the web
//! UI (`/ui/`, see [`ui`]) onto the core services of
//! [`berth_registry`]. Handlers are thin: parse the request into typed values,
//! call one service method, turn its result into a response. All error
//! responses go through [`error::ApiError`], which renders the spec's JSON
//! body. This crate knows no SQL and no file paths.

use std::sync::Arc;

use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use berth_registry::auth::Authority;
use berth_registry::Registry;

pub mod api;
pub mod auth;
pub mod error;
pub mod health;
pub mod listener;
pub mod observe;
pub mod redirect;
pub mod route;
pub mod tls;
mod token;
pub mod ui;
mod v2;

/// Settings of the HTTP layer.
#[derive(Debug, Clone, Default)]
pub struct ServerSettings {
    /// Minimum chunk size advertised in `OCI-Chunk-Min-Length` (0: none).
    pub chunk_min_length: u64,
    /// The URL clients reach the registry at (`https://registry.example.com`),
    /// for the token realm; `None`: derived from each request's `Host`.
    pub external_url: Option<String>,
    /// Take the client address from the last `X-Forwarded-For` entry (set
    /// when a proxy the clients cannot bypass fronts the server).
    pub trust_forwarded_for: bool,
    /// Timeouts and connection caps of the listener.
    pub limits: listener::ConnectionLimits,
    /// Whether clients reach this server over HTTPS (it serves TLS): the
    /// scheme of the token realm when there is no external URL.
    pub https: bool,
    /// Metrics and the access log.
    pub observe: observe::Settings,
    /// The web UI.
    pub ui: ui::Settings,
}

/// Shared state of all handlers.
pub struct App {
    /// The core services.
    pub registry: Arc<Registry>,
    /// Authentication and authorisation.
    pub auth: Arc<Authority>,
    /// HTTP settings.
    pub settings: ServerSettings,
    /// The pull-through mirror, when upstreams are configured.
    pub mirror: Option<Arc<berth_mirror::Mirror>>,
}

/// The `Docker-Distribution-API-Version` header every `/v2/` response carries.
pub const API_VERSION: (&str, &str) = ("docker-distribution-api-version", "registry/2.0");

/// A router, and what the listener records of each request it serves
/// ([`observe`]): the app whose settings say what, or nothing; and where
/// it counts them for the scrub to yield to ([`berth_registry::scrub::Traffic`]).
#[derive(Clone)]
pub struct Served {
    router: Router,
    watch: Option<Arc<App>>,
    traffic: Option<Arc<berth_registry::scrub::Traffic>>,
}

impl From<Router> for Served {
    /// A router whose requests are not recorded (redirects, `/metrics`).
    fn from(router: Router) -> Served {
        Served {
            router,
            watch: None,
            traffic: None,
        }
    }
}

impl Served {
    /// `router`, with its requests recorded as `app.settings.observe` says
    /// and counted as the registry's traffic.
    pub fn watched(router: Router, app: Arc<App>) -> Served {
        let traffic = Some(app.registry.traffic().clone());
        let watch = app.settings.observe.watching().then_some(app);
        Served {
            router,
            watch,
            traffic,
        }
    }
}

/// The registry's router, with its requests recorded as
/// `app.settings.observe` says. The listener records them around the
/// router (rather than a layer on each route, which would box every
/// route's future once more).
pub fn served(app: Arc<App>) -> Served {
    Served::watched(router(app.clone()), app)
}

/// Builds the router (unobserved: see [`served`]).
pub fn router(app: Arc<App>) -> Router {
    let observe = app.settings.observe.clone();
    let mut router = Router::new()
        .route("/v2", any(v2::handle))
        .route("/v2/", any(v2::handle))
        .route("/v2/{*rest}", any(v2::handle))
        .merge(
            Router::new()
                .route(
                    "/token",
                    get(token::handle_get)
                        .post(token::handle_post)
                        .fallback(token::handle_other),
                )
                .layer(axum::middleware::from_fn(error::catch_panics)),
        )
        .nest(
            "/api/v1",
            api::router().route_layer(axum::middleware::from_fn(observe::api_route)),
        )
        .merge(health::routes());
    if app.settings.ui.enabled {
        router = router.merge(ui::routes(&app));
    }
    if observe.metrics && observe.metrics_route {
        router = router.route("/metrics", get(health::handle_metrics));
    }
    router = router.fallback(handle_not_found);
    if app.registry.settings().shared_database {
        router = router.layer(axum::middleware::from_fn_with_state(
            app.clone(),
            fence_changes,
        ));
    }
    router.with_state(app)
}

/// On replicas sharing a database: a request that may have changed
/// something is answered only once every replica has heard the change
/// ([`Registry::fence`]), so the client's next request sees it whichever
/// replica it reaches (a tag just moved, a token just revoked).
async fn fence_changes(
    axum::extract::State(app): axum::extract::State<Arc<App>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let may_change = may_change(req.method(), req.uri().path());
    let response = next.run(req).await;
    if may_change && response.status().is_success() {
        app.registry.fence().await;
    }
    response
}

/// Whether a request of `method` on `path` may change what replicas cache:
/// any method but reads, except the token endpoint and blob uploads (an
/// upload only adds blobs and links, which no cache holds as absent).
fn may_change(method: &axum::http::Method, path: &str) -> bool {
    use axum::http::Method;
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) || path == "/token" {
        return false;
    }
    let mut back = path.trim_end_matches('/').rsplit('/');
    let (last, before, third) = (back.next(), back.next(), back.next());
    let upload = path.starts_with("/v2/")
        && ((before == Some("blobs") && last == Some("uploads"))
            || (third == Some("blobs") && before == Some("uploads")));
    !upload
}

pub(crate) async fn handle_not_found() -> Response {
    let mut r = error::ApiError::no_endpoint().into_response();
    r.headers_mut()
        .insert(API_VERSION.0, HeaderValue::from_static(API_VERSION.1));
    r
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains
/// in-flight requests; the listener's limits are `app.settings.limits`
/// (see [`listener`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, app, None, shutdown).await
}

/// [`serve`], over HTTPS when `tls` is given (see [`tls`]).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    tls: Option<Arc<tls::Tls>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = app.settings.limits.clone();
    listener::serve_on(listener, served(app), limits, tls, shutdown).await
}

#[cfg(test)]
mod tests {
    use axum::http::Method;

    use super::may_change;

    #[test]
    fn reads_tokens_and_blob_uploads_change_nothing_replicas_cache() {
        let upload_paths = [
            "/v2/acme/app/blobs/uploads/",
            "/v2/acme/app/blobs/uploads",
            "/v2/acme/app/blobs/uploads/0b6c1d9e-uuid",
            "/v2/blobs/uploads/blobs/uploads/x",
        ];
        for p in upload_paths {
            assert!(!may_change(&Method::POST, p), "{p}");
            assert!(!may_change(&Method::PATCH, p), "{p}");
            assert!(!may_change(&Method::PUT, p), "{p}");
        }
        assert!(!may_change(&Method::POST, "/token"));
        for m in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert!(!may_change(&m, "/v2/acme/app/manifests/v1"));
            assert!(!may_change(&m, "/api/v1/tokens/abc"));
        }

        let changing = [
            (Method::PUT, "/v2/acme/app/manifests/v1"),
            // A repository named like an upload path is still a manifest.
            (Method::PUT, "/v2/acme/blobs/uploads/manifests/v1"),
            (Method::DELETE, "/v2/acme/app/manifests/sha256:abc"),
            (Method::DELETE, "/v2/acme/app/blobs/sha256:abc"),
            (Method::DELETE, "/api/v1/tokens/abc"),
            (Method::POST, "/api/v1/namespaces/acme/members"),
            (Method::PATCH, "/api/v1/repositories/acme/app"),
            (Method::POST, "/ui/tokens/abc/revoke"),
        ];
        for (m, p) in changing {
            assert!(may_change(&m, p), "{m} {p}");
        }
    }
}
