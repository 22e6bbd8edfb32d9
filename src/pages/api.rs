//! The JSON API under `/_roost/api/v1/`, authorized like `/auth`
//! (a bearer token, or the session cookie plus its `X-Roost-CSRF` token on
//! POSTs): `GET status`, `GET logs`, `POST start`, `POST stop`,
//! `POST restart`, always for the caller's own workspace.

use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use serde_json::json;

use super::{caller, perform};
use crate::app::App;
use crate::error::HttpError;
use crate::request::Parsed;
use crate::response::{self, same, Body};

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
    match allowed(what) {
        None => return Err(HttpError::NotFound),
        Some((method, allow)) if method != *req.method => return Err(HttpError::MethodNotAllowed(allow)),
        Some(_) => {}
    }
    let c = caller(app, req).await?;
    if *req.method == Method::POST {
        if let Some(expected) = &c.csrf {
            // A session cookie rides along on any request: a POST made
            // with one must also prove it comes from roost's own page.
            let sent = req.headers.get(X_ROOST_CSRF).map(HeaderValue::as_bytes);
            if !sent.is_some_and(|s| same(s, expected.as_bytes())) {
                return Err(HttpError::Forbidden("missing or wrong X-Roost-CSRF token"));
            }
        }
    }
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
