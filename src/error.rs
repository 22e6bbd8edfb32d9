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
}

impl HttpError {
    pub fn status(&self) -> StatusCode {
        match self {
            HttpError::Unauthenticated(AuthError::KeysUnavailable) => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            HttpError::Forbidden(_) => StatusCode::FORBIDDEN,
            HttpError::RateLimited(..) => StatusCode::TOO_MANY_REQUESTS,
            HttpError::Runtime(RuntimeError::NotOwner | RuntimeError::StartFailed("not_owner")) => {
                StatusCode::FORBIDDEN
            }
            HttpError::Runtime(RuntimeError::NoSuchWorkspace) => StatusCode::NOT_FOUND,
            HttpError::Runtime(_) | HttpError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::NotFound => StatusCode::NOT_FOUND,
            HttpError::Login(e) => match e {
                LoginError::NotConfigured => StatusCode::NOT_FOUND,
                LoginError::NotDiscovered | LoginError::Exchange(_) | LoginError::BadTokenResponse => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                LoginError::Incomplete | LoginError::NoPending | LoginError::Expired | LoginError::Replayed => {
                    StatusCode::BAD_REQUEST
                }
                LoginError::Denied(_) => StatusCode::FORBIDDEN,
                LoginError::IdToken(_) => StatusCode::UNAUTHORIZED,
            },
            HttpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HttpError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    fn public_message(&self) -> &'static str {
        match self {
            HttpError::Unauthenticated(e) => e.public_reason(),
            HttpError::Forbidden(reason) => reason,
            HttpError::RateLimited(..) => "too many requests",
            HttpError::Runtime(RuntimeError::AtCapacity(..)) => "no capacity for your workspace right now",
            HttpError::Runtime(RuntimeError::NotReady { .. }) => "your workspace is starting",
            HttpError::Runtime(RuntimeError::NotOwner | RuntimeError::StartFailed("not_owner")) => {
                "this workspace belongs to another account"
            }
            HttpError::Runtime(
                RuntimeError::NameTaken(_)
                | RuntimeError::UnsafeNetwork(_)
                | RuntimeError::StartFailed("name_taken" | "unsafe_network"),
            ) => "your workspace cannot be created: roost's configuration needs fixing; please tell your operator",
            HttpError::Runtime(RuntimeError::NoSuchWorkspace) => "no such workspace",
            HttpError::Runtime(RuntimeError::ShuttingDown) => "roost is restarting",
            HttpError::Runtime(_) => "your workspace could not start",
            HttpError::NotFound => "not found",
            HttpError::NotReady(reason) => reason,
            HttpError::Login(e) => match e {
                LoginError::NotConfigured => "browser sign-in is not enabled",
                LoginError::NotDiscovered | LoginError::Exchange(_) | LoginError::BadTokenResponse => {
                    "sign-in is temporarily unavailable; try again shortly"
                }
                LoginError::Incomplete | LoginError::NoPending | LoginError::Expired | LoginError::Replayed => {
                    "this sign-in link is invalid or has expired; open your workspace to sign in again"
                }
                LoginError::Denied(_) => "sign-in was refused",
                LoginError::IdToken(_) => "sign-in failed",
            },
            HttpError::BadRequest(reason) => reason,
            HttpError::MethodNotAllowed(_) => "method not allowed",
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            HttpError::Unauthenticated(AuthError::KeysUnavailable) => Some(Duration::from_secs(5)),
            HttpError::RateLimited(_, RetryAfter(d)) => Some(*d),
            HttpError::Runtime(RuntimeError::AtCapacity(_, retry_after) | RuntimeError::NotReady { retry_after }) => {
                Some(*retry_after)
            }
            HttpError::Runtime(
                RuntimeError::NotOwner | RuntimeError::StartFailed("not_owner") | RuntimeError::NoSuchWorkspace,
            ) => None,
            // A configuration problem: retrying soon cannot help.
            HttpError::Runtime(
                RuntimeError::NameTaken(_)
                | RuntimeError::UnsafeNetwork(_)
                | RuntimeError::StartFailed("name_taken" | "unsafe_network"),
            ) => Some(Duration::from_secs(300)),
            HttpError::Runtime(_) => Some(Duration::from_secs(5)),
            HttpError::NotReady(_) => Some(Duration::from_secs(1)),
            HttpError::Login(LoginError::NotDiscovered | LoginError::Exchange(_) | LoginError::BadTokenResponse) => {
                Some(Duration::from_secs(5))
            }
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

    /// The response for this error; the details are logged here, once.
    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        match status {
            StatusCode::SERVICE_UNAVAILABLE => tracing::warn!(status = status.as_u16(), error = %self, "refused"),
            _ => tracing::debug!(status = status.as_u16(), error = %self, "refused"),
        }
        let mut resp = crate::response::text(status, self.public_message());
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
