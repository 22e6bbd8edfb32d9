//! The JSON API under `/_roost/api/v1/`, authorized like `/auth`
//! (a bearer token, or the session cookie plus its `X-Roost-CSRF` token on
//! POSTs): `GET status`, `GET logs`, `POST start`, `POST stop`,
//! `POST restart`, always for the caller's own workspace; and for admins,
//! `POST admin/users/<sub>/sign-out` (every session of that user, on every
//! replica, within a second).

use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use serde_json::json;

use super::{caller, perform, Caller};
use crate::app::App;
use crate::clock::now_secs;
use crate::error::HttpError;
use crate::request::Parsed;
use crate::response::{self, same, Body};
use crate::store::Revocation;

/// The header a browser session's POSTs carry the form token in.
const X_ROOST_CSRF: HeaderName = HeaderName::from_static("x-roost-csrf");

/// What the API answers, and to which method (also the `Allow` header).
fn allowed(what: &str) -> Option<(Method, &'static str)> {
    match what {
        "status" | "logs" => Some((Method::GET, "GET")),
        "start" | "stop" | "restart" => Some((Method::POST, "POST")),
        _ => None,
    }
}

/// `/_roost/api/v1/<what>`.
pub(super) async fn handle(app: &App, req: &Parsed<'_>) -> Result<Response<Body>, HttpError> {
    let what = req.path().trim_start_matches("/_roost/api/v1/");
    if let Some(user) = what
        .strip_prefix("admin/users/")
        .and_then(|r| r.strip_suffix("/sign-out"))
    {
        return sign_out_everywhere(app, req, user).await;
    }
    match allowed(what) {
        None => return Err(HttpError::NotFound),
        Some((method, allow)) if method != *req.method => return Err(HttpError::MethodNotAllowed(allow)),
        Some(_) => {}
    }
    let c = caller(app, req).await?;
    check_csrf(req, &c)?;
    let registry = &app.workspaces;
    let slug = c.identity.slug.to_string();
    let (status, body) = match what {
        "status" => {
            let mut value = serde_json::to_value(registry.status(&c.identity, &slug).await?).unwrap_or_default();
            value["url"] = json!(app.forward_auth.origin().workspace_url(&slug));
            (StatusCode::OK, value)
        }
        "logs" => {
            let lines = registry.recent_logs(&c.identity, &slug).await?;
            (StatusCode::OK, json!({ "workspace": slug, "lines": lines }))
        }
        action => {
            perform(app, &c, action).await?;
            let value = serde_json::to_value(registry.status(&c.identity, &slug).await?).unwrap_or_default();
            (StatusCode::ACCEPTED, value)
        }
    };
    let mut resp = response::json(status, &body);
    if let Some(cookie) = c.set_cookie {
        resp.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(resp)
}

/// A session cookie rides along on any request: a POST made with one must
/// also prove it comes from roost's own page.
fn check_csrf(req: &Parsed<'_>, c: &Caller) -> Result<(), HttpError> {
    if *req.method == Method::POST {
        if let Some(expected) = &c.csrf {
            let sent = req.headers.get(X_ROOST_CSRF).map(HeaderValue::as_bytes);
            if !sent.is_some_and(|s| same(s, expected.as_bytes())) {
                return Err(HttpError::Forbidden("missing or wrong X-Roost-CSRF token"));
            }
        }
    }
    Ok(())
}

/// `POST admin/users/<sub>/sign-out` (`sub` percent-encoded): every
/// session of that user signed in until now is refused on every replica.
async fn sign_out_everywhere(app: &App, req: &Parsed<'_>, user: &str) -> Result<Response<Body>, HttpError> {
    if *req.method != Method::POST {
        return Err(HttpError::MethodNotAllowed("POST"));
    }
    let c = caller(app, req).await?;
    check_csrf(req, &c)?;
    if !c.identity.admin {
        return Err(HttpError::Forbidden("admins only"));
    }
    let sub = percent_encoding::percent_decode_str(user)
        .decode_utf8()
        .ok()
        .filter(|s| !s.is_empty() && s.len() <= 200 && !s.contains(char::is_control))
        .ok_or(HttpError::BadRequest("not a user id"))?;
    let revocation = Revocation::everywhere(&sub, now_secs(), app.config.session.max_age);
    app.revocations.revoke(&*app.store, revocation).await;
    tracing::info!(target: "roost::audit", action = "signed_out_everywhere", user = %sub, by = %c.identity.sub, "user signed out everywhere");
    Ok(response::json(StatusCode::OK, &json!({ "signed_out": sub })))
}
