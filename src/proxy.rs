//! The fallback proxy: serves a workspace through roost for requests that
//! reach roost before Traefik has the workspace's direct route (Traefik's
//! lowest-priority router sends every `<slug>.<domain>` here).
//!
//! It authenticates exactly like `/auth`, makes the workspace ready, and
//! proxies with streaming bodies both ways and upgraded connections
//! (WebSocket), without roost's cookies or the bearer token, with the
//! identity headers added. While the workspace starts, a browser navigation
//! gets a small "starting" page that reloads itself the moment the workspace
//! is ready; API clients are held until ready (bounded), then proxied.
//!
//! Hop-by-hop headers, those a `Connection` header names and any client
//! spelling of roost's identity headers are dropped ([`headers`]); upgraded
//! connections are capped per user and closed when idle ([`tunnel`]).

mod headers;
mod tunnel;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Identity;
use crate::config::LimitsConfig;
use crate::error::{full, text_response, Body, HttpError};
use crate::forward_auth::{
    workspace_cookie, AuthRequest, ClientKind, ForwardAuth, X_ROOST_EMAIL, X_ROOST_USER, X_ROOST_WORKSPACE,
};
use crate::metrics::Metrics;
use crate::workspace::RuntimeError;
use headers::{strip_hop_by_hop, strip_roost_headers, wants_upgrade};
use tunnel::{Ended, Tunnels};

/// How long the starting page's long poll waits before reporting progress.
const WAIT_POLL: Duration = Duration::from_secs(10);

/// What a user over `limits.tunnels_per_user` is told to wait.
const TUNNEL_RETRY_AFTER_SECS: u32 = 5;

pub struct Proxy {
    client: Client<HttpConnector, Incoming>,
    /// Upgraded connections (WebSockets) being relayed.
    tunnels: TaskTracker,
    /// Open tunnels per user, and their idle timeout.
    open_tunnels: Arc<Tunnels>,
    stop: CancellationToken,
    metrics: Arc<Metrics>,
}

impl Proxy {
    pub fn new(metrics: Arc<Metrics>, limits: &LimitsConfig) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        Proxy {
            client: Client::builder(TokioExecutor::new()).build(connector),
            tunnels: TaskTracker::new(),
            open_tunnels: Tunnels::new(limits.tunnels_per_user, limits.tunnel_idle_timeout),
            stop: CancellationToken::new(),
            metrics,
        }
    }

    /// Closes relayed connections; called after the server drained.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        self.tunnels.close();
        self.tunnels.wait().await;
    }
}

/// A browser navigating (GET/HEAD that accepts HTML), as opposed to an API
/// client or a script.
pub fn is_browser_navigation(req: &Request<Incoming>) -> bool {
    let accepts_html = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    let xhr = req.headers().get("x-requested-with").is_some();
    matches!(*req.method(), http::Method::GET | http::Method::HEAD) && accepts_html && !xhr
}

/// Serves one request for a workspace host.
pub async fn handle(proxy: &Proxy, fa: &ForwardAuth, mut req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let browser = is_browser_navigation(&req);
    let wait = if browser { Duration::ZERO } else { fa.auth_wait() };
    let decided = {
        let mut auth = AuthRequest::from_headers(req.headers(), peer.ip());
        auth.client = Some(ClientKind::of(Some(req.method().as_str().as_bytes()), req.headers()));
        auth.uri = req.uri().path_and_query().map(|p| p.as_str());
        match fa.decide_within(&auth, wait).await {
            Ok(allowed) => Ok((
                allowed.identity,
                allowed.workspace.to_string(),
                allowed.address,
                allowed.set_cookie,
            )),
            Err(e) => match fa.sign_in(&auth, &e) {
                Some(redirect) => return redirect,
                None => Err(e),
            },
        }
    };
    let (identity, workspace, address, set_cookie) = match decided {
        Ok(ok) => ok,
        Err(HttpError::Runtime(RuntimeError::NotReady { .. })) if browser => {
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            return starting_page(host.split('.').next().unwrap_or(""), fa.origin().is_https());
        }
        Err(e) => return e.into_response(),
    };
    let Some(address) = address else {
        return HttpError::NotReady("no container runtime configured").into_response();
    };
    let client_upgrade = wants_upgrade(req.headers()).then(|| hyper::upgrade::on(&mut req));
    // Counted before the workspace is asked, so one over the cap is never proxied.
    let slot = match client_upgrade {
        Some(_) => match proxy.open_tunnels.open(&identity.sub) {
            Some(slot) => Some(slot),
            None => {
                proxy.metrics.tunnel_refused();
                tracing::debug!(user = %identity.sub, %workspace, "upgrade refused: limits.tunnels_per_user reached");
                return too_many_tunnels();
            }
        },
        None => None,
    };
    let upstream = match build_upstream(req, &identity, &workspace, address) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let mut resp = match proxy.client.request(upstream).await {
        Ok(resp) => resp,
        Err(e) => {
            // The workspace went away under us: ask the client to retry, which wakes it.
            tracing::warn!(%workspace, error = %e, "workspace did not answer the proxy");
            return HttpError::NotReady("your workspace is not answering yet").into_response();
        }
    };
    proxy.metrics.proxied(client_upgrade.is_some());
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            let backend_upgrade = hyper::upgrade::on(&mut resp);
            let stop = proxy.stop.clone();
            let idle = proxy.open_tunnels.idle_timeout();
            proxy.tunnels.spawn(async move {
                // Counted until the tunnel ends.
                let _slot = slot;
                let (Ok(client), Ok(backend)) = (client_upgrade.await, backend_upgrade.await) else {
                    return;
                };
                match tunnel::relay(TokioIo::new(client), TokioIo::new(backend), idle, &stop).await {
                    Ok(Ended::Idle) => tracing::debug!(%workspace, "idle tunnel closed"),
                    Ok(Ended::Closed | Ended::Stopped) => {}
                    Err(e) => tracing::debug!(%workspace, error = %e, "tunnel ended"),
                }
            });
        }
        let (mut parts, _) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers, true);
        if let Some(c) = set_cookie {
            parts.headers.append(header::SET_COOKIE, c);
        }
        return Response::from_parts(parts, full(Bytes::new()));
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    if let Some(c) = set_cookie {
        parts.headers.append(header::SET_COOKIE, c);
    }
    Response::from_parts(parts, Body::Right(body))
}

/// 429 for an upgrade over `limits.tunnels_per_user`.
fn too_many_tunnels() -> Response<Body> {
    let mut resp = text_response(
        StatusCode::TOO_MANY_REQUESTS,
        "too many open connections to your workspace; close one and retry",
    );
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(TUNNEL_RETRY_AFTER_SECS));
    resp
}

/// `GET /_roost/wait` on a workspace host: the starting page's long poll.
/// 200 once ready; 202 with the current step while starting.
pub async fn wait(fa: &ForwardAuth, req: &Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let auth = AuthRequest::from_headers(req.headers(), peer.ip());
    match fa.decide_within(&auth, WAIT_POLL.min(fa.auth_wait())).await {
        Ok(_) => text_response(StatusCode::OK, "ready"),
        Err(HttpError::Runtime(RuntimeError::NotReady { .. })) => text_response(StatusCode::ACCEPTED, "starting"),
        Err(e) => e.into_response(),
    }
}

/// The request as the workspace receives it.
fn build_upstream(
    req: Request<Incoming>,
    identity: &Identity,
    workspace: &str,
    address: SocketAddr,
) -> Result<Request<Incoming>, HttpError> {
    let upgrade = wants_upgrade(req.headers());
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = Uri::try_from(format!("http://{address}{path}")).map_err(|_| HttpError::NotFound)?;
    let headers = &mut parts.headers;
    strip_hop_by_hop(headers, upgrade);
    // Any spelling of X-Roost-* a client sent: only roost's own values pass.
    strip_roost_headers(headers);
    headers.remove(header::AUTHORIZATION);
    let cookie = workspace_cookie(headers.get(header::COOKIE));
    headers.remove(header::COOKIE);
    if let Some(cookie) = cookie {
        headers.insert(header::COOKIE, cookie);
    }
    headers.insert(X_ROOST_USER, identity.user_header.clone());
    if let Ok(ws) = HeaderValue::from_str(workspace) {
        headers.insert(X_ROOST_WORKSPACE, ws);
    }
    headers.insert(X_ROOST_EMAIL, identity.email_header.clone());
    Ok(Request::from_parts(parts, body))
}

const STARTING_SCRIPT: &str = r#"
const status = document.getElementById("status");
async function poll() {
  try {
    const r = await fetch("/_roost/wait", { cache: "no-store", credentials: "same-origin" });
    if (r.status === 200) { location.reload(); return; }
    if (r.status === 401 || r.status === 403) { status.textContent = "Please sign in again."; setTimeout(() => location.reload(), 3000); return; }
    status.textContent = "Still starting…";
  } catch (e) {
    status.textContent = "Waiting for roost…";
  }
  setTimeout(poll, 250);
}
poll();
"#;

/// The "starting your workspace" page: no-store, and it reloads itself the
/// moment the workspace is ready (a long poll, not a fixed refresh).
fn starting_page(workspace: &str, https: bool) -> Response<Body> {
    static CSP: OnceLock<String> = OnceLock::new();
    let csp = CSP.get_or_init(|| crate::pages::csp_with_script(STARTING_SCRIPT, "'self'"));
    let name: String = workspace
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Starting your workspace</title>\
         <style>body{{font-family:system-ui,sans-serif;display:grid;place-items:center;min-height:90vh;color:#223}}\
         main{{text-align:center}}.spin{{width:2.5rem;height:2.5rem;border:.3rem solid #ccd;border-top-color:#36c;\
         border-radius:50%;margin:1.5rem auto;animation:s 1s linear infinite}}@keyframes s{{to{{transform:rotate(1turn)}}}}</style>\
         </head><body><main><h1>Starting your workspace</h1><div class=\"spin\"></div>\
         <p><code>{name}</code></p><p id=\"status\">Creating or waking its container…</p></main>\
         <script>{STARTING_SCRIPT}</script></body></html>"
    );
    crate::pages::html_response(StatusCode::OK, html, csp, https)
}
