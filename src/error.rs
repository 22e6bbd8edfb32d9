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
            StatusCode::TOO_MANY_REQUESTS => "Too many requests",
            StatusCode::UNAUTHORIZED => "Please sign in",
            StatusCode::BAD_REQUEST => "That did not work",
            StatusCode::METHOD_NOT_ALLOWED => "Not here",
            StatusCode::TOO_MANY_REQUESTS if matches!(self, HttpError::Runtime(RuntimeError::QuotaUsed { .. })) => {
                "Your quota is used up"
            }
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
mod tests {
    use std::time::Duration;

    use http_body_util::BodyExt;

    use super::*;
    use crate::auth::FetchError;
    use crate::workspace::runtime::FailReason;

    /// A detail that must reach the log only, never the client.
    const SECRET: &str = "engine-detail-5ecret";

    fn secret_error() -> Box<dyn std::error::Error + Send + Sync> {
        SECRET.into()
    }

    fn jwt_error() -> jsonwebtoken::errors::Error {
        jsonwebtoken::errors::ErrorKind::InvalidToken.into()
    }

    /// Every variant (and every distinct inner case): status, `Retry-After`
    /// in seconds, the public text.
    fn table() -> Vec<(HttpError, u16, Option<&'static str>, &'static str)> {
        let secs = Duration::from_secs;
        vec![
            (AuthError::Missing.into(), 401, None, "authentication required"),
            (AuthError::TooLarge.into(), 401, None, "invalid token"),
            (AuthError::Malformed(jwt_error()).into(), 401, None, "invalid token"),
            (
                AuthError::AlgorithmNotAllowed(jsonwebtoken::Algorithm::HS256).into(),
                401,
                None,
                "invalid token",
            ),
            (
                AuthError::UnknownKey(Some(SECRET.into())).into(),
                401,
                None,
                "invalid token",
            ),
            (AuthError::Expired.into(), 401, None, "token expired"),
            (AuthError::NotYetValid.into(), 401, None, "invalid token"),
            (AuthError::WrongIssuer.into(), 401, None, "invalid token"),
            (AuthError::WrongAudience.into(), 401, None, "invalid token"),
            (AuthError::BadSignature.into(), 401, None, "invalid token"),
            (AuthError::Rejected(jwt_error()).into(), 401, None, "invalid token"),
            (AuthError::Claims(SECRET).into(), 401, None, "invalid token"),
            (
                AuthError::KeysUnavailable.into(),
                503,
                Some("5"),
                "authentication temporarily unavailable",
            ),
            (
                AuthError::Session(SECRET).into(),
                401,
                None,
                "session expired; sign in again",
            ),
            (
                HttpError::Forbidden("not your workspace"),
                403,
                None,
                "not your workspace",
            ),
            (
                HttpError::RateLimited(SECRET, RetryAfter(Duration::from_millis(1500))),
                429,
                Some("2"),
                "too many requests",
            ),
            (
                HttpError::RateLimited("per user", RetryAfter(Duration::ZERO)),
                429,
                Some("1"),
                "too many requests",
            ),
            (
                RuntimeError::Engine(secret_error()).into(),
                503,
                Some("5"),
                "the container engine is not answering",
            ),
            (
                RuntimeError::ImageMissing(SECRET.into()).into(),
                503,
                Some("300"),
                "the workspace image is missing on the server; please tell your operator",
            ),
            (
                RuntimeError::Exited {
                    code: 1,
                    logs: vec![SECRET.into()],
                }
                .into(),
                503,
                Some("5"),
                "your workspace's app stopped right after it started",
            ),
            (
                RuntimeError::StartTimeout(secs(60)).into(),
                503,
                Some("5"),
                "your workspace did not answer in time",
            ),
            (
                RuntimeError::NotReady { retry_after: secs(2) }.into(),
                503,
                Some("2"),
                "your workspace is starting",
            ),
            (
                RuntimeError::AtCapacity(SECRET, secs(30)).into(),
                503,
                Some("30"),
                "no capacity for your workspace right now",
            ),
            (RuntimeError::NoSuchWorkspace.into(), 404, None, "no such workspace"),
            (
                RuntimeError::NameTaken(SECRET.into()).into(),
                503,
                Some("300"),
                "your workspace cannot be created: roost's configuration needs fixing; please tell your operator",
            ),
            (
                RuntimeError::NotOwner.into(),
                403,
                None,
                "this workspace belongs to another account",
            ),
            (
                RuntimeError::StartFailed(FailReason::NotOwner).into(),
                403,
                None,
                "this workspace belongs to another account",
            ),
            (
                RuntimeError::StartFailed(FailReason::NameTaken).into(),
                503,
                Some("300"),
                "your workspace cannot be created: roost's configuration needs fixing; please tell your operator",
            ),
            (
                RuntimeError::StartFailed(FailReason::UnsafeNetwork).into(),
                503,
                Some("300"),
                "your workspace cannot be created: roost's configuration needs fixing; please tell your operator",
            ),
            (
                RuntimeError::StartFailed(FailReason::ImageMissing).into(),
                503,
                Some("300"),
                "the workspace image is missing on the server; please tell your operator",
            ),
            (
                RuntimeError::StartFailed(FailReason::Exited).into(),
                503,
                Some("5"),
                "your workspace's app stopped right after it started",
            ),
            (RuntimeError::ShuttingDown.into(), 503, Some("5"), "roost is restarting"),
            (
                RuntimeError::UnsafeNetwork(SECRET.into()).into(),
                503,
                Some("300"),
                "your workspace cannot be created: roost's configuration needs fixing; please tell your operator",
            ),
            (HttpError::NotFound, 404, None, "not found"),
            (
                HttpError::NotReady("signing keys not loaded yet"),
                503,
                Some("1"),
                "signing keys not loaded yet",
            ),
            (
                LoginError::NotConfigured.into(),
                404,
                None,
                "browser sign-in is not enabled",
            ),
            (
                LoginError::NotDiscovered.into(),
                503,
                Some("5"),
                "sign-in is temporarily unavailable; try again shortly",
            ),
            (
                LoginError::Exchange(FetchError::BadUrl(SECRET.into())).into(),
                503,
                Some("5"),
                "sign-in is temporarily unavailable; try again shortly",
            ),
            (
                LoginError::BadTokenResponse.into(),
                503,
                Some("5"),
                "sign-in is temporarily unavailable; try again shortly",
            ),
            (
                LoginError::Incomplete.into(),
                400,
                None,
                "this sign-in link is invalid or has expired; open your workspace to sign in again",
            ),
            (
                LoginError::NoPending.into(),
                400,
                None,
                "this sign-in link is invalid or has expired; open your workspace to sign in again",
            ),
            (
                LoginError::Expired.into(),
                400,
                None,
                "this sign-in link is invalid or has expired; open your workspace to sign in again",
            ),
            (
                LoginError::Replayed.into(),
                400,
                None,
                "this sign-in link is invalid or has expired; open your workspace to sign in again",
            ),
            (
                LoginError::Denied(SECRET.into()).into(),
                403,
                None,
                "sign-in was refused",
            ),
            (
                LoginError::IdToken(AuthError::Claims(SECRET)).into(),
                401,
                None,
                "sign-in failed",
            ),
            (HttpError::BadRequest("expected a form"), 400, None, "expected a form"),
            (HttpError::MethodNotAllowed("GET"), 405, None, "method not allowed"),
        ]
    }

    #[tokio::test]
    async fn every_refusal_has_its_status_retry_after_and_a_short_public_text() {
        for (error, status, retry_after, text) in table() {
            let what = format!("{error:?}");
            let bearer_challenge = status == 401 && !matches!(error, HttpError::Login(_));
            let resp = error.into_response();
            assert_eq!(resp.status().as_u16(), status, "{what}");
            let h = resp.headers();
            assert_eq!(h.get(RETRY_AFTER).map(|v| v.to_str().unwrap()), retry_after, "{what}");
            assert_eq!(h["content-type"], "text/plain; charset=utf-8", "{what}");
            assert_eq!(h["cache-control"], "no-store", "{what}");
            assert_eq!(h.contains_key(WWW_AUTHENTICATE), bearer_challenge, "{what}");
            assert_eq!(h.contains_key(ALLOW), status == 405, "{what}");
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let body = std::str::from_utf8(&body).unwrap();
            assert_eq!(body, text, "{what}");
            assert!(body.len() <= 100 && !body.contains(SECRET), "{what}: {body}");
        }
    }

    #[test]
    fn a_405_names_the_methods_allowed() {
        let resp = HttpError::MethodNotAllowed("GET, HEAD").into_response();
        assert_eq!(resp.headers()[ALLOW], "GET, HEAD");
    }
}
