//! Routing of roost's own paths to their handlers, by the listener a
//! request came in on and its host, and the request metrics every answer is
//! counted in. The request is parsed here, once ([`Parsed`]), and every
//! handler reads that.

use std::net::SocketAddr;
use std::time::Instant;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use hyper::upgrade::OnUpgrade;

use crate::app::App;
use crate::error::HttpError;
use crate::forward_auth;
use crate::metrics::Endpoint;
use crate::request::{Parsed, RequestBody};
use crate::response::{self, full, redirect, Body};
use crate::server::Listener;
use crate::{pages, proxy};

/// Answers one request to roost, by the listener it came in on (`peer`:
/// the TCP peer, Traefik). Any body will do: hyper's, or a test's.
pub async fn handle<B: RequestBody>(
    app: &App,
    req: Request<B>,
    peer: SocketAddr,
    listener: Listener,
) -> Response<Body> {
    let started = Instant::now();
    let (mut head, body) = req.into_parts();
    let (endpoint, resp) = match listener {
        Listener::Public => {
            let upgrade = head.extensions.remove::<OnUpgrade>();
            public(app, &Parsed::direct(&head, peer.ip()), body, upgrade).await
        }
        Listener::Internal => internal(app, &Parsed::forwarded(&head, peer.ip())).await,
    };
    app.metrics.request(endpoint, resp.status(), started.elapsed());
    resp
}

/// The public listener: workspace hosts and the bare domain, nothing else
/// (roost's internal endpoints do not exist here, under any host).
async fn public<B: RequestBody>(
    app: &App,
    req: &Parsed<'_>,
    body: B,
    upgrade: Option<OnUpgrade>,
) -> (Endpoint, Response<Body>) {
    let fa = &app.forward_auth;
    match req.host.as_deref() {
        Some(host) if fa.workspace_of(host).is_some() => {
            let resp = match req.path() {
                "/_roost/wait" => proxy::wait(fa, req).await,
                // roost's own pages live on the bare domain, where its cookies are set.
                p @ ("/_roost/" | "/_roost/login" | "/_roost/logout") => {
                    let query = req.query().map(|q| format!("?{q}")).unwrap_or_default();
                    let status = if *req.method == Method::POST {
                        StatusCode::SEE_OTHER
                    } else {
                        StatusCode::FOUND
                    };
                    redirect(status, &fa.origin().url(&format!("{p}{query}")))
                }
                p if p.starts_with("/_roost/") => fa.refuse(HttpError::NotFound, req),
                _ => proxy::handle(&app.proxy, fa, req, body, upgrade).await,
            };
            (Endpoint::Proxy, resp)
        }
        Some(host) if host == fa.origin().domain() => (Endpoint::Pages, pages::handle(app, req, body).await),
        _ => (Endpoint::Other, HttpError::NotFound.into_response()),
    }
}

/// The internal listener: what Traefik itself and operators ask.
async fn internal(app: &App, req: &Parsed<'_>) -> (Endpoint, Response<Body>) {
    match req.path() {
        "/auth" => {
            let resp = forward_auth::handle(&app.forward_auth, req).await;
            // Traefik hands a refusal to the client as it is: a page for a person.
            (Endpoint::Auth, resp.unwrap_or_else(|e| app.forward_auth.refuse(e, req)))
        }
        "/traefik" => (Endpoint::Traefik, traefik(app)),
        "/healthz" => (Endpoint::Healthz, response::text(StatusCode::OK, "ok")),
        "/readyz" => (Endpoint::Readyz, readyz(app)),
        "/metrics" => (Endpoint::Metrics, metrics(app)),
        _ => (Endpoint::Other, HttpError::NotFound.into_response()),
    }
}

/// Ready once the provider's signing keys were loaded. A shared store
/// that does not answer is reported, not a reason to be taken out of
/// rotation: every replica would be, and roost still decides from memory.
fn readyz(app: &App) -> Response<Body> {
    if app.keys.is_loaded() {
        match app.store.health().is_up() {
            true => response::text(StatusCode::OK, "ready"),
            false => response::text(
                StatusCode::OK,
                "ready (degraded: the shared store does not answer; sign-ins wait for it, sessions and workspaces in use go on)",
            ),
        }
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
    app.metrics.set_store_up(app.store.health().is_up());
    let mut resp = Response::new(full(app.metrics.encode()));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}
