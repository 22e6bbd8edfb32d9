//! The bare domain (`<scheme>://<domain>/`), where people meet roost
//! itself: the landing redirect to one's own workspace, sign-in
//! ([`crate::auth::login`]) and sign-out (a POST with the form token,
//! [`logout`]), the user's status page
//! ([`status`]) and its JSON API ([`api`]). Every page carries the same
//! security headers ([`html_response`]).

mod api;
mod logout;
mod status;

use std::net::SocketAddr;

use base64::Engine;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use sha2::{Digest, Sha256};

use crate::app::App;
use crate::auth::LoginError;
use crate::error::{full, Body, HttpError};
use crate::forward_auth::AuthRequest;
use crate::public_url::encode;

/// Serves one request for the bare domain.
pub async fn handle(app: &App, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let path = req.uri().path();
    let result = match (req.method(), path) {
        (&Method::GET | &Method::HEAD, "/") => landing(app, &req, peer).await,
        (&Method::GET | &Method::HEAD, "/_roost/login") => login(app, &req, peer),
        (&Method::GET, "/_roost/callback") => match &app.login {
            Some(login) => login
                .callback(req.uri().query(), req.headers().get(header::COOKIE))
                .await
                .map_err(HttpError::from),
            None => Err(LoginError::NotConfigured.into()),
        },
        (&Method::GET | &Method::HEAD, "/_roost/logout") => logout::page(app, &req, peer).await,
        (&Method::POST, "/_roost/logout") => logout::sign_out(app, req, peer).await,
        (&Method::GET | &Method::HEAD, "/_roost/signed-out") => Ok(signed_out(app)),
        (_, "/_roost/" | "/_roost") => status::page(app, req, peer).await,
        (_, p) if p.starts_with("/_roost/api/v1/") => api::handle(app, req, peer).await,
        (&Method::POST, "/_roost/start" | "/_roost/stop" | "/_roost/restart") => status::action(app, req, peer).await,
        _ => Err(HttpError::NotFound),
    };
    result.unwrap_or_else(HttpError::into_response)
}

/// Who is asking a page: the same credentials `/auth` takes (a bearer
/// token or the session cookie, whose form token comes along).
pub(crate) use crate::forward_auth::Authenticated as Caller;

pub(crate) async fn caller(app: &App, req: &Request<Incoming>, peer: SocketAddr) -> Result<Caller, HttpError> {
    app.forward_auth
        .authenticate(&AuthRequest::from_headers(req.headers(), peer.ip()))
        .await
}

/// A browser without a session, sent to sign in and back to `back`.
fn to_sign_in(app: &App, back: &str) -> Response<Body> {
    let origin = app.forward_auth.origin();
    let location = origin.url(&format!("/_roost/login?rd={}", encode(&origin.url(back))));
    crate::auth::login::redirect(StatusCode::FOUND, &location)
}

/// `GET /`: a signed-in user goes to their own workspace; anyone else signs
/// in first.
async fn landing(app: &App, req: &Request<Incoming>, peer: SocketAddr) -> Result<Response<Body>, HttpError> {
    match caller(app, req, peer).await {
        Ok(c) => {
            let url = app.forward_auth.origin().workspace_url(&c.identity.slug);
            Ok(crate::auth::login::redirect(StatusCode::FOUND, &url))
        }
        Err(HttpError::Unauthenticated(_)) if app.login.is_some() => Ok(to_sign_in(app, "/")),
        Err(e) => Err(e),
    }
}

/// `GET /_roost/login?rd=`.
fn login(app: &App, req: &Request<Incoming>, peer: SocketAddr) -> Result<Response<Body>, HttpError> {
    let login = app.login.as_ref().ok_or(LoginError::NotConfigured)?;
    // A sign-in start costs a state cookie and a trip to the provider:
    // limited per address (nothing else a browser does there is).
    let ip = AuthRequest::from_headers(req.headers(), peer.ip()).client_ip(app.config.server.trusted_hops);
    if let Err(wait) = app.limits.sign_in(ip) {
        app.metrics.rate_limited(crate::metrics::Limit::UnauthenticatedPerIp);
        return Err(HttpError::RateLimited("per address", wait));
    }
    let rd = url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "rd")
        .map(|(_, v)| v.into_owned());
    Ok(login.start(rd.as_deref(), req.headers().get(header::COOKIE))?)
}

/// After sign-out (the default logout return URL).
fn signed_out(app: &App) -> Response<Body> {
    let origin = app.forward_auth.origin();
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Signed out</title>\
         <style>{STYLE}</style></head><body><main><h1>You are signed out</h1>\
         <p><a href=\"{}\">Sign in again</a></p></main></body></html>",
        escape(&origin.url("/"))
    );
    html_response(StatusCode::OK, html, &page_csp(), origin.is_https())
}

/// The style every page of roost's shares (hashed into the CSP).
pub(crate) const STYLE: &str =
    "body{font-family:system-ui,sans-serif;color:#223;max-width:52rem;margin:2rem auto;padding:0 1rem}\
table{border-collapse:collapse}td,th{text-align:left;padding:.25rem 1rem .25rem 0}\
pre{background:#f4f4f8;padding:.75rem;overflow:auto;max-height:24rem;font-size:.85rem}\
button{font:inherit;padding:.35rem 1rem;margin-right:.5rem}form{display:inline}\
.state{font-weight:600}";

/// `'sha256-…'` of an inline script or style.
fn hash_source(text: &str) -> String {
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()))
    )
}

/// The CSP of pages without script: only their own inline style, forms to
/// roost itself, no framing.
pub(crate) fn page_csp() -> String {
    format!(
        "default-src 'none'; style-src {}; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        hash_source(STYLE)
    )
}

/// The CSP of a page with one inline script (by hash) that may call
/// `connect` (e.g. `'self'`); styles inline.
pub fn csp_with_script(script: &str, connect: &str) -> String {
    format!(
        "default-src 'none'; script-src {}; style-src 'unsafe-inline'; connect-src {connect}; \
         frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        hash_source(script)
    )
}

/// An HTML page with roost's security headers: CSP, no framing, no
/// sniffing, no referrer, no caching, and HSTS on https.
pub fn html_response(status: StatusCode, html: String, csp: &str, https: bool) -> Response<Body> {
    let mut resp = Response::new(full(html));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if let Ok(v) = HeaderValue::from_str(csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    if https {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    resp
}

/// Text made safe for HTML content and attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_carry_security_headers_and_hsts_only_on_https() {
        for https in [false, true] {
            let resp = html_response(StatusCode::OK, "<p>x</p>".into(), &page_csp(), https);
            let h = resp.headers();
            assert_eq!(h["x-frame-options"], "DENY");
            assert_eq!(h["x-content-type-options"], "nosniff");
            assert_eq!(h["referrer-policy"], "no-referrer");
            assert_eq!(h["cache-control"], "no-store");
            let csp = h["content-security-policy"].to_str().unwrap();
            assert!(csp.starts_with("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
            assert_eq!(h.contains_key("strict-transport-security"), https);
        }
    }

    #[test]
    fn text_is_escaped_for_html() {
        assert_eq!(
            escape(r#"<script>"a" & 'b'</script>"#),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
    }
}
