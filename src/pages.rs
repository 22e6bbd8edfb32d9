//! The bare domain (`<scheme>://<domain>/`), where people meet roost
//! itself: the landing redirect to one's own workspace, sign-in
//! ([`crate::auth::login`]) and sign-out (a POST with the form token,
//! [`logout`]), the user's status page ([`status`]) and its JSON API
//! ([`api`]). Every page is built by [`crate::response`] (security
//! headers, CSP); every form carries the session's form token ([`form`]).
//! Admins have the console ([`admin`]); a user chooses their profile on
//! the status page or through the API ([`profile`]).

mod admin;
mod api;
mod form;
mod logout;
pub(crate) mod profile;
mod status;

use http::{Method, Response, StatusCode};

use crate::app::App;
use crate::audit::{Actor, Event};
use crate::auth::LoginError;
use crate::error::HttpError;
use crate::forward_auth::Authenticated as Caller;
use crate::request::{Parsed, RequestBody};
use crate::response::{self, escape, page_csp, redirect, Body, STYLE};

/// Serves one request for the bare domain.
pub async fn handle<B: RequestBody>(app: &App, req: &Parsed<'_>, body: B) -> Response<Body> {
    let result = match (req.method, req.path()) {
        (&Method::GET | &Method::HEAD, "/") => landing(app, req).await,
        (&Method::GET | &Method::HEAD, "/_roost/login") => login(app, req),
        (&Method::GET, "/_roost/callback") => match &app.login {
            Some(login) => login.callback(req.query(), req.cookie).await.map_err(HttpError::from),
            None => Err(LoginError::NotConfigured.into()),
        },
        (&Method::GET | &Method::HEAD, "/_roost/logout") => logout::page(app, req).await,
        (&Method::POST, "/_roost/logout") => logout::sign_out(app, req, body).await,
        (&Method::GET | &Method::HEAD, "/_roost/signed-out") => Ok(signed_out(app)),
        (_, "/_roost/" | "/_roost") => status::page(app, req).await,
        (_, p) if p.starts_with("/_roost/api/v1/") => api::handle(app, req, body).await,
        (&Method::POST, "/_roost/start" | "/_roost/stop" | "/_roost/restart") => status::action(app, req, body).await,
        (&Method::POST, "/_roost/profile") => status::choose_profile(app, req, body).await,
        (_, "/_roost/admin") => admin::page(app, req).await,
        (&Method::POST, "/_roost/admin/action") => admin::action(app, req, body).await,
        _ => Err(HttpError::NotFound),
    };
    result.unwrap_or_else(|e| app.forward_auth.refuse(e, req))
}

/// Who is asking a page: the same credentials `/auth` takes (a bearer
/// token or the session cookie, whose form token comes along).
async fn caller(app: &App, req: &Parsed<'_>) -> Result<Caller, HttpError> {
    app.forward_auth.authenticate(req).await
}

/// A browser without a session, sent to sign in and back to `back`.
fn to_sign_in(app: &App, back: &str) -> Response<Body> {
    let origin = app.forward_auth.origin();
    redirect(StatusCode::FOUND, &origin.sign_in_url(&origin.url(back)))
}

/// `GET /`: a signed-in user goes to their own workspace; anyone else signs
/// in first.
async fn landing(app: &App, req: &Parsed<'_>) -> Result<Response<Body>, HttpError> {
    match caller(app, req).await {
        Ok(c) => {
            let url = app.forward_auth.origin().workspace_url(&c.identity.slug);
            Ok(redirect(StatusCode::FOUND, &url))
        }
        Err(HttpError::Unauthenticated(_)) if app.login.is_some() => Ok(to_sign_in(app, "/")),
        Err(e) => Err(e),
    }
}

/// `GET /_roost/login?rd=`.
fn login(app: &App, req: &Parsed<'_>) -> Result<Response<Body>, HttpError> {
    let login = app.login.as_ref().ok_or(LoginError::NotConfigured)?;
    // A sign-in start costs a state cookie and a trip to the provider:
    // limited per address (nothing else a browser does there is).
    if let Err(wait) = app.limits.sign_in(req.client_ip(app.config.server.trusted_hops)) {
        app.metrics.rate_limited(crate::metrics::Limit::UnauthenticatedPerIp);
        return Err(HttpError::RateLimited("per address", wait));
    }
    let rd = url::form_urlencoded::parse(req.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "rd")
        .map(|(_, v)| v.into_owned());
    Ok(login.start(rd.as_deref(), req.cookie)?)
}

/// Starts, stops or restarts the caller's own workspace (from the API or
/// the status page's forms).
pub(crate) async fn perform(app: &App, c: &Caller, action: &str) -> Result<(), HttpError> {
    let registry = &app.workspaces;
    let slug = &*c.identity.slug;
    let result = match action {
        "start" => registry.start(&c.identity, slug).await,
        "stop" => registry.stop(&c.identity, slug).await,
        "restart" => registry.restart(&c.identity, slug).await,
        _ => return Err(HttpError::NotFound),
    };
    let event = Event::new(Actor::User, action)
        .by(&c.identity.sub)
        .workspace(slug)
        .result(&result, |e| format!("failed: {}", e.reason()));
    app.workspaces.audit().record(event).await;
    Ok(result?)
}

/// The CSP of a page with the sign-out button: [`page_csp`], with the
/// provider's end-session origin allowed as a `form-action` (the button's
/// POST is answered with a redirect there, which browsers check too).
fn sign_out_csp(app: &App) -> String {
    let extra: String = app
        .login
        .as_ref()
        .map(|l| l.sign_out_origins())
        .unwrap_or_default()
        .iter()
        .map(|o| format!(" {o}"))
        .collect();
    page_csp(&extra)
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
    response::html(StatusCode::OK, html, &page_csp(""), origin.is_https())
}
