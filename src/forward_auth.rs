//! The `/auth` decision Traefik's forwardAuth asks for on every request:
//! which workspace the forwarded host names, who the caller is, whether
//! they may pass, and whether the workspace is ready. A valid cached token
//! for a ready workspace is decided from memory.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::COOKIE;
use http::{HeaderMap, HeaderName, HeaderValue, Response};

use crate::auth::{AuthError, Identity, Sessions, Verifier};
use crate::error::{HttpError, Ways};
use crate::limits::Limits;
use crate::metrics::{Limit, Metrics};
use crate::public_url::PublicOrigin;
use crate::request::Parsed;
/// The request model under the names forwardAuth's callers (the benchmark,
/// the fuzz targets) know it by.
pub use crate::request::{ClientKind, Credential, Parsed as AuthRequest};
use crate::response::{full, redirect, Body};
use crate::slug;
use crate::store::Revocation;
use crate::workspace::registry::{Phase, Registry};
use crate::workspace::Gate;

pub const X_ROOST_USER: HeaderName = HeaderName::from_static("x-roost-user");
pub const X_ROOST_WORKSPACE: HeaderName = HeaderName::from_static("x-roost-workspace");
pub const X_ROOST_EMAIL: HeaderName = HeaderName::from_static("x-roost-email");

/// Cookies whose names start with this belong to roost and never reach a
/// workspace.
pub const ROOST_COOKIE_PREFIX: &str = "roost_";

/// An authorized request: who, for which workspace, and where it answers.
#[derive(Debug, Clone)]
pub struct Allowed<'r> {
    pub identity: Arc<Identity>,
    pub workspace: &'r str,
    pub address: SocketAddr,
    /// A renewed session cookie to hand back to the browser.
    pub set_cookie: Option<HeaderValue>,
}

/// Who a request comes from, as [`ForwardAuth::authenticate`] found it.
pub struct Authenticated {
    pub identity: Arc<Identity>,
    /// A renewed session cookie to hand back to the browser.
    pub set_cookie: Option<HeaderValue>,
    /// The session's form token, when the caller came with a session.
    pub csrf: Option<String>,
    /// What signing this session out revokes, when the caller came with one.
    pub session: Option<Revocation>,
}

/// The `/auth` decision and what it needs.
pub struct ForwardAuth {
    /// `.` + `routing.domain`.
    dot_domain: String,
    /// Where absolute URLs point.
    origin: PublicOrigin,
    verifier: Arc<Verifier>,
    /// Browser sessions, when a cookie key is configured.
    sessions: Option<Arc<Sessions>>,
    limits: Arc<Limits>,
    workspaces: Arc<Registry>,
    /// `workspace.auth_wait`, read once.
    auth_wait: std::time::Duration,
    /// `server.trusted_hops`: proxies in front of Traefik.
    trusted_hops: u32,
    /// Where refusal pages point a person.
    ways: Ways,
    metrics: Arc<Metrics>,
}

impl ForwardAuth {
    pub fn new(
        origin: PublicOrigin,
        verifier: Arc<Verifier>,
        sessions: Option<Arc<Sessions>>,
        limits: Arc<Limits>,
        workspaces: Arc<Registry>,
        metrics: Arc<Metrics>,
        trusted_hops: u32,
    ) -> Self {
        ForwardAuth {
            trusted_hops,
            ways: Ways {
                home: origin.url("/"),
                status: origin.url("/_roost/"),
                sign_out: origin.url("/_roost/logout"),
                https: origin.is_https(),
            },
            dot_domain: format!(".{}", origin.domain()),
            origin,
            verifier,
            sessions,
            limits,
            auth_wait: workspaces.config().auth_wait,
            workspaces,
            metrics,
        }
    }

    /// For a browser without credentials: the redirect to sign in, back to
    /// the page it asked for. Built from the configured origin and the
    /// validated workspace host, never from unvalidated headers.
    pub fn sign_in(&self, req: &Parsed<'_>, err: &HttpError) -> Option<Response<Body>> {
        let stale_session = matches!(err, HttpError::Unauthenticated(AuthError::Session(_)));
        if !matches!(err, HttpError::Unauthenticated(AuthError::Missing)) && !stale_session {
            return None;
        }
        let status = match req.client() {
            ClientKind::Navigation => http::StatusCode::FOUND,
            ClientKind::Submission => http::StatusCode::SEE_OTHER,
            ClientKind::Api => return None,
        };
        let host = req.host.as_deref().filter(|h| self.workspace_of(h).is_some())?;
        let path = req
            .asked_uri()
            .filter(|u| u.starts_with('/') && !u.starts_with("//"))
            .unwrap_or("/");
        let mut resp = redirect(status, &self.origin.sign_in_url(&self.origin.host_url(host, path)));
        if let (true, Some(sessions)) = (stale_session, &self.sessions) {
            resp.headers_mut()
                .append(http::header::SET_COOKIE, sessions.clear_cookie());
        }
        Some(resp)
    }

    /// A refusal as `req`'s client should get it: a page with ways on for
    /// a browser, short text for an API client.
    pub fn refuse(&self, e: HttpError, req: &Parsed<'_>) -> Response<Body> {
        let browser = req.client() != ClientKind::Api;
        e.respond(browser.then_some(&self.ways))
    }

    pub fn origin(&self) -> &PublicOrigin {
        &self.origin
    }

    /// How long `/auth` waits for a starting workspace.
    pub fn auth_wait(&self) -> std::time::Duration {
        self.auth_wait
    }

    /// What a start of `workspace` is doing, in plain words (the starting
    /// page's long poll shows it).
    pub fn progress(&self, workspace: &str) -> &'static str {
        match self.workspaces.get(workspace).map(|e| e.phase()) {
            Some(Phase::Starting(step)) => step.explain(),
            Some(Phase::Retiring | Phase::Draining(_)) => "waiting for your workspace to stop first",
            _ => "starting your workspace",
        }
    }

    /// The workspace slug a host names, if it is `<slug>.<domain>`.
    pub fn workspace_of<'h>(&self, host: &'h str) -> Option<&'h str> {
        let slug = host.strip_suffix(self.dot_domain.as_str())?;
        slug::is_label(slug).then_some(slug)
    }

    /// Decides one forwarded request, waiting for a starting workspace at
    /// most `workspace.auth_wait`.
    pub async fn decide<'r>(&self, req: &'r Parsed<'_>) -> Result<Allowed<'r>, HttpError> {
        self.decide_within(req, self.auth_wait).await
    }

    /// Decides one request, waiting for a starting workspace at most `wait`.
    pub async fn decide_within<'r>(
        &self,
        req: &'r Parsed<'_>,
        wait: std::time::Duration,
    ) -> Result<Allowed<'r>, HttpError> {
        let workspace = req
            .host
            .as_deref()
            .and_then(|h| self.workspace_of(h))
            .ok_or(HttpError::Forbidden("not a workspace host"))?;
        let Authenticated {
            identity, set_cookie, ..
        } = self.authenticate(req).await?;
        if !(identity.admin || *identity.slug == *workspace) {
            return Err(HttpError::Forbidden("not your workspace"));
        }
        if let Err(wait) = self.limits.authenticated(&identity.sub) {
            self.metrics.rate_limited(Limit::AuthenticatedPerUser);
            return Err(HttpError::RateLimited("per user", wait));
        }
        let address = match self.workspaces.gate(&identity, workspace) {
            Gate::Ready(address) => address,
            Gate::Forbidden => return Err(HttpError::Forbidden("not your workspace")),
            Gate::Pending => self.workspaces.ensure_ready(&identity, workspace, wait).await?,
        };
        if let Some(upstream) = req.upstream {
            if upstream != address {
                // Traefik's route is stale: the next poll fixes it.
                return Err(HttpError::NotReady("your workspace moved; retry"));
            }
        }
        Ok(Allowed {
            identity,
            workspace,
            address,
            set_cookie,
        })
    }

    /// Who is asking. Only what costs is limited per address: the
    /// signature check of a token not verified before (counted when it
    /// fails). Missing credentials, session cookies and cached tokens never
    /// count, and are never refused for their address ([`crate::limits`]).
    pub async fn authenticate(&self, req: &Parsed<'_>) -> Result<Authenticated, HttpError> {
        let bearer = |identity| Authenticated {
            session: None,
            identity,
            set_cookie: None,
            csrf: None,
        };
        match req.credential {
            Credential::Bearer(token) => {
                if let Some(identity) = self.verifier.cached(token) {
                    return Ok(bearer(identity));
                }
                let ip = req.client_ip(self.trusted_hops);
                let claimed_sub = || {
                    #[derive(serde::Deserialize)]
                    struct Sub {
                        sub: String,
                    }
                    jsonwebtoken::dangerous::insecure_decode_claims::<Sub>(token)
                        .ok()
                        .map(|c| c.sub)
                };
                if let Err(wait) = self.limits.may_verify(ip, claimed_sub) {
                    self.metrics.rate_limited(Limit::UnauthenticatedPerIp);
                    return Err(HttpError::RateLimited("per address", wait));
                }
                match self.verifier.verify(token).await {
                    Ok(identity) => {
                        self.limits.verified(&identity.sub);
                        Ok(bearer(identity))
                    }
                    Err(AuthError::KeysUnavailable) => Err(AuthError::KeysUnavailable.into()),
                    Err(e) => {
                        self.limits.failed(ip);
                        Err(e.into())
                    }
                }
            }
            Credential::Session(value) => Ok(self.open_session(value)?),
            Credential::None | Credential::Unsupported => Err(AuthError::Missing.into()),
        }
    }
}

impl ForwardAuth {
    /// How many opened session cookies are cached.
    pub fn cached_sessions(&self) -> u64 {
        self.sessions.as_ref().map_or(0, |s| s.cached())
    }

    /// A session cookie's identity, its form token, and the renewed cookie
    /// when it is due.
    fn open_session(&self, value: &str) -> Result<Authenticated, AuthError> {
        let sessions = self.sessions.as_ref().ok_or(AuthError::Missing)?;
        let (opened, refresh) = sessions.open_cached(value)?;
        let set_cookie = refresh.then(|| sessions.renew(&opened.session()));
        let (revocation, csrf) = sessions.revocation(&opened);
        Ok(Authenticated {
            identity: opened.user.identity.clone(),
            set_cookie,
            session: Some(revocation),
            csrf: Some(csrf),
        })
    }
}

/// `GET /auth`: 200 with the identity headers, a browser sent to sign in,
/// or the refusal.
pub async fn handle(fa: &ForwardAuth, req: &Parsed<'_>) -> Result<Response<Body>, HttpError> {
    let allowed = match fa.decide(req).await {
        Ok(allowed) => allowed,
        Err(e) => return fa.sign_in(req, &e).ok_or(e),
    };
    let mut resp = Response::new(full(Bytes::new()));
    let headers = resp.headers_mut();
    identity_headers(headers, &allowed.identity, allowed.workspace);
    if let Some(cookie) = workspace_cookie(req.cookie) {
        headers.insert(COOKIE, cookie);
    }
    if let Some(set_cookie) = allowed.set_cookie {
        // Traefik hands it to the browser (`addAuthCookiesToResponse`).
        headers.insert(http::header::SET_COOKIE, set_cookie);
    }
    Ok(resp)
}

/// Sets `X-Roost-User`, `X-Roost-Workspace` and `X-Roost-Email`: what
/// Traefik copies from `/auth`'s answer, and the fallback proxy sends.
pub fn identity_headers(headers: &mut HeaderMap, identity: &Identity, workspace: &str) {
    headers.insert(X_ROOST_USER, identity.user_header.clone());
    // A slug is a DNS label, always a valid header value.
    if let Ok(ws) = HeaderValue::from_str(workspace) {
        headers.insert(X_ROOST_WORKSPACE, ws);
    }
    headers.insert(X_ROOST_EMAIL, identity.email_header.clone());
}

/// The `Cookie` header a workspace may see: the request's, minus roost's
/// own cookies. `None` when nothing is left (Traefik then removes it).
pub fn workspace_cookie(cookie: Option<&HeaderValue>) -> Option<HeaderValue> {
    let cookie = cookie?;
    let text = cookie.to_str().ok()?;
    if !text.contains(ROOST_COOKIE_PREFIX) {
        return Some(cookie.clone());
    }
    let kept: Vec<&str> = text
        .split(';')
        .map(str::trim)
        .filter(|c| !c.is_empty() && !c.starts_with(ROOST_COOKIE_PREFIX))
        .collect();
    if kept.is_empty() {
        return None;
    }
    HeaderValue::from_str(&kept.join("; ")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roost_cookies_never_reach_the_workspace() {
        let c = HeaderValue::from_static("theme=dark; roost_session=secret; _xsrf=1");
        assert_eq!(workspace_cookie(Some(&c)).unwrap(), "theme=dark; _xsrf=1");
        let only = HeaderValue::from_static("roost_session=secret");
        assert!(workspace_cookie(Some(&only)).is_none());
        let other = HeaderValue::from_static("a=1");
        assert_eq!(workspace_cookie(Some(&other)).unwrap(), "a=1");
        assert!(workspace_cookie(None).is_none());
    }
}
