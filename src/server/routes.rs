//! Routing of roost's own paths to their handlers, and the request metrics
//! every answer is counted in.

use std::net::SocketAddr;
use std::time::Instant;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::app::App;
use crate::error::{text_response, Body, HttpError};
use crate::forward_auth::{self, AuthRequest};
use crate::metrics::Endpoint;

/// Answers one request to roost.
pub async fn handle(app: &App, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let started = Instant::now();
    let (endpoint, resp) = match req.uri().path() {
        "/auth" => {
            let auth = AuthRequest::from_headers(req.headers(), peer.ip());
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
    let mut resp = Response::new(Body::new(app.routes.current(app.workspaces.as_deref())));
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn metrics(app: &App) -> Response<Body> {
    let mut resp = Response::new(Body::from(app.metrics.encode()));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}
