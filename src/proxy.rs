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
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Identity;
use crate::config::LimitsConfig;
use crate::error::HttpError;
use crate::forward_auth::{identity_headers, workspace_cookie, ForwardAuth};
use crate::metrics::Metrics;
use crate::request::{BoxError, ClientKind, Parsed, RequestBody};
use crate::response::{self, full, Body};
use crate::workspace::RuntimeError;
use headers::{strip_hop_by_hop, strip_roost_headers, wants_upgrade};
use tunnel::{Ended, Tunnels};

/// How long the starting page's long poll waits before reporting progress.
const WAIT_POLL: Duration = Duration::from_secs(10);

/// What a user over `limits.tunnels_per_user` is told to wait.
const TUNNEL_RETRY_AFTER_SECS: u32 = 5;

/// What the proxy forwards: the client's body, whatever its type.
type Forwarded = UnsyncBoxBody<Bytes, BoxError>;

pub struct Proxy {
    client: Client<HttpConnector, Forwarded>,
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

/// Serves one request for a workspace host (`upgrade`: the connection's
/// upgrade, when hyper offered one).
pub async fn handle<B: RequestBody>(
    proxy: &Proxy,
    fa: &ForwardAuth,
    req: &Parsed<'_>,
    body: B,
    upgrade: Option<OnUpgrade>,
) -> Response<Body> {
    let browser = req.client() == ClientKind::Navigation;
    let wait = if browser { Duration::ZERO } else { fa.auth_wait() };
    let (identity, workspace, address, set_cookie) = match fa.decide_within(req, wait).await {
        Ok(allowed) => (
            allowed.identity,
            allowed.workspace.to_string(),
            allowed.address,
            allowed.set_cookie,
        ),
        Err(e) => {
            if let Some(redirect) = fa.sign_in(req, &e) {
                return redirect;
            }
            return match e {
                HttpError::Runtime(RuntimeError::NotReady { .. }) if browser => {
                    let workspace = req.host.as_deref().and_then(|h| fa.workspace_of(h));
                    starting_page(
                        workspace.unwrap_or(""),
                        &fa.origin().url("/_roost/"),
                        fa.origin().is_https(),
                    )
                }
                e => fa.refuse(e, req),
            };
        }
    };
    // Without hyper's upgrade (not over a connection), one that fails.
    let client_upgrade =
        wants_upgrade(req.headers).then(|| upgrade.unwrap_or_else(|| hyper::upgrade::on(Request::new(()))));
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
    let upstream = match build_upstream(req, body, &identity, &workspace, address) {
        Ok(r) => r,
        Err(e) => return fa.refuse(e, req),
    };
    let mut resp = match proxy.client.request(upstream).await {
        Ok(resp) => resp,
        Err(e) => {
            // The workspace went away under us: ask the client to retry, which wakes it.
            tracing::warn!(%workspace, error = %e, "workspace did not answer the proxy");
            return fa.refuse(HttpError::NotReady("your workspace is not answering yet"), req);
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
    Response::from_parts(parts, Body::Right(body.map_err(std::io::Error::other).boxed_unsync()))
}

/// 429 for an upgrade over `limits.tunnels_per_user`.
fn too_many_tunnels() -> Response<Body> {
    let mut resp = response::text(
        StatusCode::TOO_MANY_REQUESTS,
        "too many open connections to your workspace; close one and retry",
    );
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(TUNNEL_RETRY_AFTER_SECS));
    resp
}

/// `GET /_roost/wait` on a workspace host: the starting page's long poll.
/// 200 once ready; 202 with the current step while starting.
pub async fn wait(fa: &ForwardAuth, req: &Parsed<'_>) -> Response<Body> {
    match fa.decide_within(req, WAIT_POLL.min(fa.auth_wait())).await {
        Ok(_) => response::text(StatusCode::OK, "ready"),
        Err(HttpError::Runtime(RuntimeError::NotReady { .. })) => {
            let workspace = req.host.as_deref().and_then(|h| fa.workspace_of(h)).unwrap_or("");
            response::text(StatusCode::ACCEPTED, fa.progress(workspace))
        }
        Err(e) => e.into_response(),
    }
}

/// The request as the workspace receives it: the client's, to the
/// workspace's address, without roost's cookies, the bearer token or any
/// hop-by-hop header, with the identity headers.
fn build_upstream<B: RequestBody>(
    req: &Parsed<'_>,
    body: B,
    identity: &Identity,
    workspace: &str,
    address: SocketAddr,
) -> Result<Request<Forwarded>, HttpError> {
    let upgrade = wants_upgrade(req.headers);
    let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut upstream = Request::new(body.map_err(Into::into).boxed_unsync());
    *upstream.method_mut() = req.method.clone();
    *upstream.version_mut() = req.version;
    *upstream.uri_mut() = Uri::try_from(format!("http://{address}{path}")).map_err(|_| HttpError::NotFound)?;
    let headers = upstream.headers_mut();
    *headers = req.headers.clone();
    strip_hop_by_hop(headers, upgrade);
    // Any spelling of X-Roost-* a client sent: only roost's own values pass.
    strip_roost_headers(headers);
    headers.remove(header::AUTHORIZATION);
    let cookie = workspace_cookie(headers.get(header::COOKIE));
    headers.remove(header::COOKIE);
    if let Some(cookie) = cookie {
        headers.insert(header::COOKIE, cookie);
    }
    identity_headers(headers, identity, workspace);
    Ok(upstream)
}

const STARTING_SCRIPT: &str = r#"
const $ = (id) => document.getElementById(id);
const started = Date.now();
const clock = setInterval(() => { $("elapsed").textContent = Math.round((Date.now() - started) / 1000) + " s"; }, 1000);
function failed(text) {
  clearInterval(clock);
  $("title").textContent = "Your workspace could not start";
  $("spin").hidden = true;
  $("status").textContent = text.charAt(0).toUpperCase() + text.slice(1) + ".";
  $("retry").hidden = false;
}
$("retry").addEventListener("click", () => location.reload());
async function poll() {
  try {
    const r = await fetch("/_roost/wait", { cache: "no-store", credentials: "same-origin" });
    if (r.status === 200) { location.reload(); return; }
    if (r.status === 401) { $("status").textContent = "Please sign in again."; setTimeout(() => location.reload(), 3000); return; }
    const text = (await r.text()).trim();
    if (r.status !== 202) { failed(text || "roost could not start it"); return; }
    $("status").textContent = text.charAt(0).toUpperCase() + text.slice(1) + "…";
  } catch (e) {
    $("status").textContent = "Waiting for roost…";
  }
  setTimeout(poll, 250);
}
poll();
"#;

/// The "starting your workspace" page: no-store; it shows each step of the
/// start and the time elapsed as its long poll reports them, reloads itself
/// the moment the workspace is ready, and on a failure stops, says why in
/// plain words and offers to try again (after the failure's back-off, a
/// reload starts a new attempt) and the status page.
fn starting_page(workspace: &str, status_page: &str, https: bool) -> Response<Body> {
    static CSP: OnceLock<String> = OnceLock::new();
    let csp = CSP.get_or_init(|| response::csp_with_script(STARTING_SCRIPT, "'self'"));
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
         </head><body><main><h1 id=\"title\">Starting your workspace</h1><div class=\"spin\" id=\"spin\"></div>\
         <p><code>{name}</code></p><p id=\"status\">Creating or waking its container…</p>\
         <p><small id=\"elapsed\">0 s</small></p><p><button id=\"retry\" hidden>Try again</button></p>\
         <p><a href=\"{status_page}\">Your status page</a></p></main>\
         <script>{STARTING_SCRIPT}</script></body></html>",
        status_page = response::escape(status_page)
    );
    response::html(StatusCode::OK, html, csp, https)
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use http_body_util::Full;

    use super::*;

    #[tokio::test]
    async fn the_workspace_gets_the_request_with_roosts_identity_and_without_its_credentials() {
        let req = Request::post("/lab/api?x=1")
            .header("host", "alice.ws.example.com")
            .header("authorization", "Bearer secret-token")
            .header("cookie", "theme=dark; roost_session=sealed; roost_login_abc=x")
            .header("x-roost-user", "root")
            .header("x_roost_user", "root")
            .header("connection", "keep-alive, x-hop")
            .header("x-hop", "1")
            .header("accept", "application/json")
            .body(())
            .unwrap();
        let (head, ()) = req.into_parts();
        let parsed = Parsed::direct(&head, IpAddr::from([10, 0, 0, 2]));
        let identity = Identity::new(
            "alice",
            "alice",
            Some("alice@example.com".into()),
            false,
            u64::MAX,
            vec![],
        )
        .unwrap();
        let address: SocketAddr = "172.18.0.5:8888".parse().unwrap();
        let body = Full::new(Bytes::from_static(b"{\"a\":1}"));
        let upstream = build_upstream(&parsed, body, &identity, "alice", address).unwrap();
        assert_eq!(upstream.method(), http::Method::POST);
        assert_eq!(upstream.uri(), "http://172.18.0.5:8888/lab/api?x=1");
        let h = upstream.headers();
        assert_eq!(h["host"], "alice.ws.example.com");
        assert_eq!(h["cookie"], "theme=dark");
        assert_eq!(h["x-roost-user"], "alice");
        assert_eq!(h["x-roost-workspace"], "alice");
        assert_eq!(h["x-roost-email"], "alice@example.com");
        assert_eq!(h["accept"], "application/json");
        for gone in ["authorization", "x_roost_user", "connection", "x-hop"] {
            assert!(!h.contains_key(gone), "{gone} forwarded");
        }
        assert_eq!(h.get_all("x-roost-user").iter().count(), 1);
        let body = upstream.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"{\"a\":1}");
    }

    #[tokio::test]
    async fn the_starting_page_names_only_a_label_and_allows_only_its_own_script() {
        let resp = starting_page("alice<script>", "https://ws.example.com/_roost/", true);
        let h = resp.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'sha256-") && csp.contains("connect-src 'self'"),
            "{csp}"
        );
        assert!(h.contains_key("strict-transport-security"));
        assert_eq!(h["cache-control"], "no-store");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("<code>alicescript</code>"));
        assert!(body.contains("<a href=\"https://ws.example.com/_roost/\">Your status page</a>"));
        assert!(body.contains("<button id=\"retry\" hidden>"));
    }
}
