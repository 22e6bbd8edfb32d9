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
use crate::proxy;

/// Answers one request to roost.
pub async fn handle(app: &App, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let started = Instant::now();
    if is_workspace_host(app, &req) {
        let resp = match req.uri().path() {
            "/_roost/wait" => proxy::wait(&app.forward_auth, &req, peer).await,
            p if p.starts_with("/_roost/") => HttpError::NotFound.into_response(),
            _ => proxy::handle(&app.proxy, &app.forward_auth, req, peer).await,
        };
        app.metrics.request(Endpoint::Proxy, resp.status(), started.elapsed());
        return resp;
    }
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

/// A request for `<slug>.<domain>` itself (Traefik's fallback router passes
/// the original `Host`), as opposed to Traefik asking roost (`/auth`,
/// `/traefik`) at roost's own address.
fn is_workspace_host(app: &App, req: &Request<Incoming>) -> bool {
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let host = forward_auth::lowercase(host.rsplit_once(':').map_or(host, |(h, _)| h));
    app.forward_auth.workspace_of(&host).is_some()
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
    let mut resp = Response::new(full(app.routes.current(app.workspaces.as_deref())));
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
