//! Routing of roost's own paths to their handlers, and the request metrics
//! every answer is counted in.

use std::net::SocketAddr;
use std::time::Instant;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::app::App;
use crate::error::{full, text_response, Body, HttpError};
use crate::forward_auth::{self, AuthRequest};
use crate::metrics::Endpoint;
use crate::server::Listener;
use crate::{pages, proxy};

/// Answers one request to roost, by the listener it came in on.
pub async fn handle(app: &App, req: Request<Incoming>, peer: SocketAddr, listener: Listener) -> Response<Body> {
    match listener {
        Listener::Public => public(app, req, peer).await,
        Listener::Internal => internal(app, req, peer).await,
    }
}

/// The public listener: workspace hosts and the bare domain, nothing else
/// (roost's internal endpoints do not exist here, under any host).
async fn public(app: &App, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let started = Instant::now();
    let (endpoint, resp) = match host_kind(app, &req) {
        HostKind::Workspace => {
            let resp = match req.uri().path() {
                "/_roost/wait" => proxy::wait(&app.forward_auth, &req, peer).await,
                // roost's own pages live on the bare domain, where its cookies are set.
                p @ ("/_roost/" | "/_roost/login" | "/_roost/logout") => {
                    let origin = app.forward_auth.origin();
                    let query = req.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
                    let status = if req.method() == http::Method::POST {
                        StatusCode::SEE_OTHER
                    } else {
                        StatusCode::FOUND
                    };
                    crate::auth::login::redirect(status, &origin.url(&format!("{p}{query}")))
                }
                p if p.starts_with("/_roost/") => HttpError::NotFound.into_response(),
                _ => proxy::handle(&app.proxy, &app.forward_auth, req, peer).await,
            };
            (Endpoint::Proxy, resp)
        }
        HostKind::Domain => (Endpoint::Pages, pages::handle(app, req, peer).await),
        HostKind::Other => (Endpoint::Other, HttpError::NotFound.into_response()),
    };
    app.metrics.request(endpoint, resp.status(), started.elapsed());
    resp
}

/// The internal listener: what Traefik itself and operators ask.
async fn internal(app: &App, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let started = Instant::now();
    let (endpoint, resp) = match req.uri().path() {
        "/auth" => {
            let auth = AuthRequest::from_headers(req.headers(), peer.ip()).with_upstream(req.uri().query());
            let resp = forward_auth::handle(&app.forward_auth, &auth).await;
            (Endpoint::Auth, resp.unwrap_or_else(HttpError::into_response))
        }
        "/traefik" => (Endpoint::Traefik, traefik(app)),
        "/healthz" => (Endpoint::Healthz, text_response(StatusCode::OK, "ok")),
        "/readyz" => (Endpoint::Readyz, readyz(app)),
        "/metrics" => (Endpoint::Metrics, metrics(app)),
        _ => (Endpoint::Other, HttpError::NotFound.into_response()),
    };
    app.metrics.request(endpoint, resp.status(), started.elapsed());
    resp
}

enum HostKind {
    /// `<slug>.<domain>` itself (Traefik's fallback router passes the
    /// original `Host`): the fallback proxy.
    Workspace,
    /// The bare domain: roost's pages.
    Domain,
    /// Anything else: not found.
    Other,
}

fn host_kind(app: &App, req: &Request<Incoming>) -> HostKind {
    let Some(host) = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(crate::host::normalize)
    else {
        return HostKind::Other;
    };
    if app.forward_auth.workspace_of(&host).is_some() {
        HostKind::Workspace
    } else if *host == *app.forward_auth.origin().domain() {
        HostKind::Domain
    } else {
        HostKind::Other
    }
}

/// Ready once the provider's signing keys were loaded.
fn readyz(app: &App) -> Response<Body> {
    if app.keys.is_loaded() {
        text_response(StatusCode::OK, "ready")
    } else {
        HttpError::NotReady("signing keys not loaded yet").into_response()
    }
}

/// The route table for Traefik's HTTP provider.
fn traefik(app: &App) -> Response<Body> {
    let mut resp = Response::new(full(app.routes.current(&app.workspaces)));
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn metrics(app: &App) -> Response<Body> {
    let mut resp = Response::new(full(app.metrics.encode()));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}
