//! Errors turned into responses, in one place. Handlers return
//! [`HttpError`]; [`HttpError::into_response`] picks the status, the short
//! public message and the headers (`WWW-Authenticate`, `Retry-After`), and
//! logs the details once.

use std::time::Duration;

use http::header::{HeaderValue, ALLOW, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};

use crate::auth::{AuthError, LoginError};
use crate::limits::RetryAfter;
/// The body of roost's responses (the name the fuzz harness uses).
pub use crate::response::Body;
use crate::store::StoreError;
use crate::workspace::RuntimeError;

/// Every way a request to roost can be refused.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("unauthenticated: {0}")]
    Unauthenticated(#[from] AuthError),
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    #[error("rate limited ({0})")]
    RateLimited(&'static str, RetryAfter),
    #[error("workspace unavailable: {0}")]
    Runtime(#[from] RuntimeError),
    #[error("not found")]
    NotFound,
    #[error("not ready: {0}")]
    NotReady(&'static str),
    #[error("sign-in: {0}")]
    Login(#[from] LoginError),
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// With the methods that are (the `Allow` header).
    #[error("method not allowed")]
    MethodNotAllowed(&'static str),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The request contradicts the state (confirmation missing, a
    /// profile switch on a workspace that is starting).
    #[error("conflict: {0}")]
    Conflict(&'static str),
}

/// Where a refusal page points a person: their own workspace (roost's
/// landing sends a signed-in user there), their status page, and sign-out
/// (which also lets them sign in as someone else). Absolute URLs from the
/// configured origin, made once.
#[derive(Debug, Clone)]
pub struct Ways {
    pub home: String,
    pub status: String,
    pub sign_out: String,
    pub https: bool,
}

impl HttpError {
    pub fn status(&self) -> StatusCode {
        match self {
            HttpError::Unauthenticated(AuthError::KeysUnavailable) => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            HttpError::Forbidden(_) => StatusCode::FORBIDDEN,
            HttpError::RateLimited(..) => StatusCode::TOO_MANY_REQUESTS,
            HttpError::Runtime(e) if e.is_not_owner() => StatusCode::FORBIDDEN,
            HttpError::Runtime(RuntimeError::QuotaUsed { .. }) => StatusCode::TOO_MANY_REQUESTS,
            HttpError::Runtime(RuntimeError::Busy { .. }) => StatusCode::CONFLICT,
            HttpError::Runtime(RuntimeError::NoSuchWorkspace) => StatusCode::NOT_FOUND,
            HttpError::Runtime(_) | HttpError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::NotFound => StatusCode::NOT_FOUND,
            HttpError::Login(e) => match e {
                LoginError::NotConfigured => StatusCode::NOT_FOUND,
                LoginError::NotDiscovered
                | LoginError::Exchange(_)
                | LoginError::BadTokenResponse
                | LoginError::StoreDown(_) => StatusCode::SERVICE_UNAVAILABLE,
                LoginError::Incomplete | LoginError::NoPending | LoginError::Expired | LoginError::Replayed => {
                    StatusCode::BAD_REQUEST
                }
                LoginError::Denied(_) => StatusCode::FORBIDDEN,
                LoginError::IdToken(_) => StatusCode::UNAUTHORIZED,
            },
            HttpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HttpError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            HttpError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::Conflict(_) => StatusCode::CONFLICT,
        }
    }

    fn public_message(&self) -> std::borrow::Cow<'static, str> {
        if let HttpError::Runtime(RuntimeError::Busy { .. }) = self {
            return "your workspace is starting or stopping: try again in a moment".into();
        }
        if let HttpError::Runtime(RuntimeError::QuotaUsed { resets_at, .. }) = self {
            let at = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(*resets_at));
            return format!("your quota for this period is used up; it resets at {at}").into();
        }
        let message: &'static str = match self {
            HttpError::Unauthenticated(e) => e.public_reason(),
            HttpError::Forbidden(reason) => reason,
            HttpError::RateLimited(..) => "too many requests",
            // In plain words, the same for a failure now and one that stands.
            HttpError::Runtime(e) => e.fail_reason().explain(),
            HttpError::NotFound => "not found",
            HttpError::NotReady(reason) => reason,
            HttpError::Login(e) => match e {
                LoginError::NotConfigured => "browser sign-in is not enabled",
                LoginError::NotDiscovered
                | LoginError::Exchange(_)
                | LoginError::BadTokenResponse
                | LoginError::StoreDown(_) => "sign-in is temporarily unavailable; try again shortly",
                LoginError::Incomplete | LoginError::NoPending | LoginError::Expired | LoginError::Replayed => {
                    "this sign-in link is invalid or has expired; open your workspace to sign in again"
                }
                LoginError::Denied(_) => "sign-in was refused",
                LoginError::IdToken(_) => "sign-in failed",
            },
            HttpError::BadRequest(reason) => reason,
            HttpError::MethodNotAllowed(_) => "method not allowed",
            HttpError::Store(_) => "temporarily unavailable; try again shortly",
            HttpError::Conflict(reason) => reason,
        };
        message.into()
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            HttpError::Unauthenticated(AuthError::KeysUnavailable) => Some(Duration::from_secs(5)),
            HttpError::RateLimited(_, RetryAfter(d)) => Some(*d),
            HttpError::Runtime(RuntimeError::AtCapacity(_, retry_after) | RuntimeError::NotReady { retry_after }) => {
                Some(*retry_after)
            }
            HttpError::Runtime(RuntimeError::QuotaUsed { retry_after, .. } | RuntimeError::Busy { retry_after }) => {
                Some(*retry_after)
            }
            HttpError::Runtime(RuntimeError::NoSuchWorkspace) => None,
            HttpError::Runtime(e) if e.is_not_owner() => None,
            // A configuration problem: retrying soon cannot help.
            HttpError::Runtime(e) if e.is_permanent() => Some(Duration::from_secs(300)),
            HttpError::Runtime(_) => Some(Duration::from_secs(5)),
            HttpError::NotReady(_) => Some(Duration::from_secs(1)),
            HttpError::Store(_) => Some(Duration::from_secs(5)),
            HttpError::Login(
                LoginError::NotDiscovered
                | LoginError::Exchange(_)
                | LoginError::BadTokenResponse
                | LoginError::StoreDown(_),
            ) => Some(Duration::from_secs(5)),
            _ => None,
        }
    }

    /// `Allow` of a 405.
    fn allow(&self) -> Option<HeaderValue> {
        match self {
            HttpError::MethodNotAllowed(allow) => HeaderValue::from_str(allow).ok(),
            _ => None,
        }
    }

    /// Someone else's workspace (by its host or its owner).
    fn is_not_yours(&self) -> bool {
        match self {
            HttpError::Forbidden(reason) => *reason == "not your workspace",
            HttpError::Runtime(e) => e.is_not_owner(),
            _ => false,
        }
    }

    /// A title for the page a person sees.
    fn title(&self) -> &'static str {
        match self.status() {
            StatusCode::FORBIDDEN if self.is_not_yours() => "Not your workspace",
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::TOO_MANY_REQUESTS if matches!(self, HttpError::Runtime(RuntimeError::QuotaUsed { .. })) => {
                "Your quota is used up"
            }
            StatusCode::TOO_MANY_REQUESTS => "Too many requests",
            StatusCode::UNAUTHORIZED => "Please sign in",
            StatusCode::BAD_REQUEST => "That did not work",
            StatusCode::METHOD_NOT_ALLOWED => "Not here",
            StatusCode::CONFLICT => "That did not work",
            _ => "Not available right now",
        }
    }

    /// The response for this error: a page with ways on for a browser
    /// (`ways`), short text for anyone else. The details are logged here, once.
    pub fn respond(self, ways: Option<&Ways>) -> Response<Body> {
        let mut resp = self.log_and_build(|e| match ways {
            Some(w) => {
                let links = [
                    ("Your workspace", w.home.as_str()),
                    ("Your status page", w.status.as_str()),
                    ("Sign out or switch user", w.sign_out.as_str()),
                ];
                let message = if e.is_not_yours() {
                    "this workspace belongs to another account: open your own, or sign out to switch user".into()
                } else {
                    e.public_message()
                };
                let message: &str = &message;
                crate::response::refusal_page(e.status(), e.title(), message, &links, w.https)
            }
            None => crate::response::text(e.status(), e.public_message().into_owned()),
        });
        if ways.is_some() {
            resp.headers_mut().remove(WWW_AUTHENTICATE);
        }
        resp
    }

    /// The response for this error, as short text (API clients, Traefik).
    pub fn into_response(self) -> Response<Body> {
        self.respond(None)
    }

    fn log_and_build(self, body: impl FnOnce(&HttpError) -> Response<Body>) -> Response<Body> {
        let status = self.status();
        match status {
            StatusCode::SERVICE_UNAVAILABLE => tracing::warn!(status = status.as_u16(), error = %self, "refused"),
            _ => tracing::debug!(status = status.as_u16(), error = %self, "refused"),
        }
        let mut resp = body(&self);
        let headers = resp.headers_mut();
        if status == StatusCode::UNAUTHORIZED && !matches!(self, HttpError::Login(_)) {
            headers.insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="roost", error="invalid_token""#),
            );
        }
        if let Some(allow) = self.allow() {
            headers.insert(ALLOW, allow);
        }
        if let Some(wait) = self.retry_after() {
            // Whole seconds, rounded up, at least one.
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            headers.insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        resp
    }
}

#[cfg(test)]
mod tests;
