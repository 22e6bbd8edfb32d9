//! The JSON API under `/_roost/api/v1/`, described by the OpenAPI 3.1
//! document it serves at `openapi.json` ([`OPENAPI`]). Authorized like
//! `/auth`: a bearer token, or the session cookie plus its `X-Roost-CSRF`
//! token on every request that changes something.
//!
//! - [`workspace`]: the caller's own workspace: `GET/POST/DELETE
//!   workspace`, `PUT workspace/profile`, `GET profiles`, and the first
//!   endpoints (`GET status`, `GET logs`, `POST start|stop|restart`).
//! - [`admin`]: every workspace, for admins (403 for anyone else, before
//!   anything is looked at): `GET admin/workspaces`, `POST
//!   admin/workspaces/{slug}/stop|remove`, `DELETE
//!   admin/workspaces/{slug}/volume`, `GET|PUT
//!   admin/workspaces/{slug}/backup` (a tar of the volume, down and up),
//!   `GET admin/audit`, `POST admin/users/{sub}/sign-out`.

mod admin;
mod workspace;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde::de::DeserializeOwned;

use super::{caller, Caller};
use crate::app::App;
use crate::error::HttpError;
use crate::request::{Parsed, RequestBody};
use crate::response::{self, same, Body};

/// The OpenAPI document, as served.
pub const OPENAPI: &str = include_str!("api/openapi.json");

/// The header a browser session's changing requests carry the form token in.
const X_ROOST_CSRF: HeaderName = HeaderName::from_static("x-roost-csrf");

/// Largest JSON body accepted.
const MAX_JSON_BYTES: usize = 4096;

/// Where a request goes, by its path below `/_roost/api/v1/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route<'a> {
    OpenApi,
    /// `status`, `logs`, `start`, `stop`, `restart`.
    Legacy(&'a str),
    Workspace,
    WorkspaceProfile,
    Profiles,
    AdminWorkspaces,
    /// `admin/workspaces/{slug}/stop|remove`.
    AdminAction(&'a str, &'a str),
    AdminVolume(&'a str),
    /// `admin/workspaces/{slug}/backup`: GET downloads, PUT restores.
    AdminBackup(&'a str),
    AdminAudit,
    AdminSignOut(&'a str),
}

impl<'a> Route<'a> {
    fn of(path: &'a str) -> Option<Route<'a>> {
        let parts: Vec<&str> = path.split('/').collect();
        Some(match parts.as_slice() {
            ["openapi.json"] => Route::OpenApi,
            [what @ ("status" | "logs" | "start" | "stop" | "restart")] => Route::Legacy(what),
            ["workspace"] => Route::Workspace,
            ["workspace", "profile"] => Route::WorkspaceProfile,
            ["profiles"] => Route::Profiles,
            ["admin", "workspaces"] => Route::AdminWorkspaces,
            ["admin", "workspaces", slug, action @ ("stop" | "remove")] => Route::AdminAction(slug, action),
            ["admin", "workspaces", slug, "volume"] => Route::AdminVolume(slug),
            ["admin", "workspaces", slug, "backup"] => Route::AdminBackup(slug),
            ["admin", "audit"] => Route::AdminAudit,
            ["admin", "users", sub, "sign-out"] => Route::AdminSignOut(sub),
            _ => return None,
        })
    }

    /// The methods it answers (the `Allow` header of a 405).
    fn methods(self) -> (&'static [Method], &'static str) {
        match self {
            Route::OpenApi | Route::Profiles | Route::AdminWorkspaces | Route::AdminAudit => (&[Method::GET], "GET"),
            Route::Legacy("status" | "logs") => (&[Method::GET], "GET"),
            Route::Legacy(_) | Route::AdminAction(..) | Route::AdminSignOut(_) => (&[Method::POST], "POST"),
            Route::Workspace => (&[Method::GET, Method::POST, Method::DELETE], "GET, POST, DELETE"),
            Route::WorkspaceProfile => (&[Method::PUT], "PUT"),
            Route::AdminVolume(_) => (&[Method::DELETE], "DELETE"),
            Route::AdminBackup(_) => (&[Method::GET, Method::PUT], "GET, PUT"),
        }
    }

    fn is_admin(self) -> bool {
        matches!(
            self,
            Route::AdminWorkspaces
                | Route::AdminAction(..)
                | Route::AdminVolume(_)
                | Route::AdminBackup(_)
                | Route::AdminAudit
                | Route::AdminSignOut(_)
        )
    }
}

/// `/_roost/api/v1/<path>`.
pub(super) async fn handle<B: RequestBody>(app: &App, req: &Parsed<'_>, body: B) -> Result<Response<Body>, HttpError> {
    let path = req.path().trim_start_matches("/_roost/api/v1/");
    let route = Route::of(path).ok_or(HttpError::NotFound)?;
    let (methods, allow) = route.methods();
    // Exactly the methods the document names (HEAD too is refused).
    if !methods.contains(req.method) {
        return Err(HttpError::MethodNotAllowed(allow));
    }
    if route == Route::OpenApi {
        let mut resp = response::json_text(StatusCode::OK, OPENAPI);
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
        return Ok(resp);
    }
    let c = caller(app, req).await?;
    if route.is_admin() && !c.identity.admin {
        return Err(HttpError::Forbidden("admins only"));
    }
    check_csrf(req, &c)?;
    if let Route::AdminBackup(slug) = route {
        let mut resp = match *req.method {
            Method::PUT => admin::restore(app, &c, slug, body).await?,
            _ => admin::backup(app, &c, slug).await?,
        };
        if let Some(cookie) = c.set_cookie {
            resp.headers_mut().append(header::SET_COOKIE, cookie);
        }
        return Ok(resp);
    }
    let (status, value) = match route {
        Route::OpenApi | Route::AdminBackup(_) => return Err(HttpError::NotFound),
        Route::Legacy(what) => workspace::legacy(app, &c, what).await?,
        Route::Workspace => workspace::workspace(app, req, &c, body).await?,
        Route::WorkspaceProfile => workspace::choose_profile(app, &c, body).await?,
        Route::Profiles => workspace::profiles(app, &c),
        Route::AdminWorkspaces => admin::workspaces(app).await?,
        Route::AdminAction(slug, action) => admin::act(app, &c, slug, action).await?,
        Route::AdminVolume(slug) => admin::purge(app, req, &c, slug).await?,
        Route::AdminAudit => admin::audit(app, req).await?,
        Route::AdminSignOut(sub) => admin::sign_out_everywhere(app, &c, sub).await?,
    };
    let mut resp = response::json(status, &value);
    if let Some(cookie) = c.set_cookie {
        resp.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(resp)
}

/// A session cookie rides along on any request: one that changes
/// something must also prove it comes from roost's own page.
fn check_csrf(req: &Parsed<'_>, c: &Caller) -> Result<(), HttpError> {
    if !matches!(*req.method, Method::GET | Method::HEAD) {
        if let Some(expected) = &c.csrf {
            let sent = req.headers.get(X_ROOST_CSRF).map(HeaderValue::as_bytes);
            if !sent.is_some_and(|s| same(s, expected.as_bytes())) {
                return Err(HttpError::Forbidden("missing or wrong X-Roost-CSRF token"));
            }
        }
    }
    Ok(())
}

/// A JSON request body (`None` when there is none: empty is allowed).
async fn read_json<T: DeserializeOwned, B: RequestBody>(body: B) -> Result<Option<T>, HttpError> {
    let bytes: Bytes = match Limited::new(body, MAX_JSON_BYTES).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return Err(HttpError::BadRequest("body too large or cut short")),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|_| HttpError::BadRequest("the body is not the JSON this endpoint takes"))
}

/// The value of query parameter `name`.
fn query_param(req: &Parsed<'_>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(req.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_has_its_route_and_nothing_else_does() {
        assert_eq!(Route::of("workspace"), Some(Route::Workspace));
        assert_eq!(
            Route::of("admin/workspaces/alice-1/stop"),
            Some(Route::AdminAction("alice-1", "stop"))
        );
        assert_eq!(
            Route::of("admin/users/auth0%7Cx/sign-out"),
            Some(Route::AdminSignOut("auth0%7Cx"))
        );
        for bad in [
            "",
            "workspace/",
            "admin",
            "admin/workspaces/a/start",
            "admin/workspaces/a/b/stop",
            "status/x",
        ] {
            assert_eq!(Route::of(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_document_is_json_and_names_every_route() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().expect("paths");
        for path in paths.keys() {
            let concrete = path
                .trim_start_matches('/')
                .replace("{slug}", "alice-1")
                .replace("{sub}", "auth0%7Calice");
            let route = Route::of(&concrete).unwrap_or_else(|| panic!("{path} has no route"));
            let (methods, _) = route.methods();
            for method in paths[path].as_object().expect("operations").keys() {
                let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("a method");
                assert!(methods.contains(&m), "{method} {path} is documented but not answered");
                let admin = path.starts_with("/admin/");
                assert_eq!(route.is_admin(), admin, "{path}");
            }
        }
    }
}
