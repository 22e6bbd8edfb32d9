//! Sign-out. `GET /_roost/logout` only shows a page with a "Sign out"
//! button (a form carrying the session's form token); `POST
//! /_roost/logout` with that token ends the session, so another site can
//! neither link nor post anyone out.

use http::header;
use http::{Response, StatusCode};

use super::form::check_form_token;
use super::{caller, sign_out_csp, signed_out};
use crate::app::App;
use crate::auth::LoginError;
use crate::error::HttpError;
use crate::request::{Parsed, RequestBody};
use crate::response::{self, escape, Body, STYLE};

/// `GET /_roost/logout`: the sign-out button for a browser session; "you
/// are signed out" for anyone else.
pub(super) async fn page(app: &App, req: &Parsed<'_>) -> Result<Response<Body>, HttpError> {
    if app.login.is_none() {
        return Err(LoginError::NotConfigured.into());
    }
    let c = match caller(app, req).await {
        Ok(c) => c,
        Err(HttpError::Unauthenticated(_)) => return Ok(signed_out(app)),
        Err(e) => return Err(e),
    };
    let Some(token) = &c.csrf else {
        // A bearer token: there is no session here to end.
        return Ok(signed_out(app));
    };
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Sign out</title><style>{STYLE}</style></head><body><main><h1>Sign out</h1>\
         <p>Signed in as <strong>{user}</strong>.</p>\
         <form method=\"post\" action=\"/_roost/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{token}\">\
         <button type=\"submit\">Sign out</button></form>\
         <form method=\"post\" action=\"/_roost/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{token}\">\
         <input type=\"hidden\" name=\"everywhere\" value=\"1\">\
         <button type=\"submit\" class=\"secondary\">Sign out on every device</button></form>\
         <p><a href=\"/_roost/\">Back to your workspace</a></p></main></body></html>",
        user = escape(c.identity.email.as_deref().unwrap_or(&c.identity.sub)),
        token = escape(token),
    );
    let origin = app.forward_auth.origin();
    let mut resp = response::html(StatusCode::OK, html, &sign_out_csp(app), origin.is_https());
    if let Some(cookie) = c.set_cookie {
        resp.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(resp)
}

/// `POST /_roost/logout` with the form field `csrf`: the session's form
/// token, compared in constant time. Then the session cookie is cleared and
/// the browser continues at the provider's end-session endpoint or the
/// return page (303). Anything else is refused with 403 and signs nobody
/// out.
pub(super) async fn sign_out<B: RequestBody>(
    app: &App,
    req: &Parsed<'_>,
    body: B,
) -> Result<Response<Body>, HttpError> {
    let login = app.login.as_ref().ok_or(LoginError::NotConfigured)?;
    let c = match caller(app, req).await {
        Ok(c) => c,
        Err(HttpError::Unauthenticated(_)) => return Err(HttpError::Forbidden("not signed in")),
        Err(e) => return Err(e),
    };
    let expected = c.csrf.ok_or(HttpError::Forbidden("sign-out needs a browser session"))?;
    let form = check_form_token(req, body, &expected).await?;
    let everywhere = url::form_urlencoded::parse(&form).any(|(k, v)| k == "everywhere" && v == "1");
    // The cookie goes, and the session with it on every replica (a copy
    // of the cookie elsewhere is refused from now on).
    let revocation = match (everywhere, c.session) {
        (true, _) => Some(login.sessions().revoke_everywhere(&c.identity.sub)),
        (false, session) => session,
    };
    if let Some(r) = revocation {
        app.revocations.revoke(&*app.store, r).await;
    }
    tracing::info!(target: "roost::audit", user = %c.identity.sub, everywhere, "signed out");
    Ok(login.logout())
}
