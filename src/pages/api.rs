//! The user's JSON API under `/_roost/api/v1/`, authorized like `/auth`
//! (a bearer token, or the session cookie plus its `X-Roost-CSRF` token on
//! POSTs): `GET status`, `GET logs`, `POST start`, `POST stop`,
//! `POST restart`, always for the caller's own workspace.

use std::net::SocketAddr;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::{caller, Caller};
use crate::app::App;
use crate::error::{full, Body, HttpError};

/// `/_roost/api/v1/<what>`.
pub(super) async fn handle(app: &App, req: Request<Incoming>, peer: SocketAddr) -> Result<Response<Body>, HttpError> {
    let what = req.uri().path().trim_start_matches("/_roost/api/v1/").to_string();
    let method = req.method().clone();
    if !matches!(
        (&method, what.as_str()),
        (&Method::GET, "status" | "logs") | (&Method::POST, "start" | "stop" | "restart")
    ) {
        return Err(match what.as_str() {
            "status" | "logs" | "start" | "stop" | "restart" => HttpError::MethodNotAllowed,
            _ => HttpError::NotFound,
        });
    }
    let c = caller(app, &req, peer).await?;
    let registry = &app.workspaces;
    let slug = c.identity.slug.to_string();
    let (status, body) = match what.as_str() {
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
            if let Some(expected) = &c.csrf {
                // A session cookie rides along on any request: a POST made
                // with one must also prove it comes from roost's own page.
                let sent = req.headers().get("x-roost-csrf").map(HeaderValue::as_bytes);
                if !sent.is_some_and(|s| super::status::same(s, expected.as_bytes())) {
                    return Err(HttpError::Forbidden("missing or wrong X-Roost-CSRF token"));
                }
            }
            perform(app, &c, action).await?;
            let value = serde_json::to_value(registry.status(&c.identity, &slug).await?).unwrap_or_default();
            (StatusCode::ACCEPTED, value)
        }
    };
    let mut resp = Response::new(full(body.to_string()));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Some(cookie) = c.set_cookie {
        headers.append(header::SET_COOKIE, cookie);
    }
    Ok(resp)
}

/// Starts, stops or restarts the caller's own workspace.
pub(super) async fn perform(app: &App, c: &Caller, action: &str) -> Result<(), HttpError> {
    let registry = &app.workspaces;
    let slug = &*c.identity.slug;
    let result = match action {
        "start" => registry.start(&c.identity, slug).await,
        "stop" => registry.stop(&c.identity, slug).await,
        "restart" => registry.restart(&c.identity, slug).await,
        _ => return Err(HttpError::NotFound),
    };
    tracing::info!(target: "roost::audit", user = %c.identity.sub, workspace = %slug, action, ok = result.is_ok(), "requested by user");
    Ok(result?)
}
