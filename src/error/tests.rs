//! The error-to-response table: every variant's status, `Retry-After` and public text.

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
        (
            RuntimeError::Busy { retry_after: secs(2) }.into(),
            409,
            Some("2"),
            "your workspace is starting or stopping: try again in a moment",
        ),
        (
            RuntimeError::QuotaUsed {
                resets_at: 86_400,
                retry_after: secs(600),
            }
            .into(),
            429,
            Some("600"),
            "your quota for this period is used up; it resets at 1970-01-02T00:00:00Z",
        ),
        (
            crate::store::StoreError::File {
                path: SECRET.into(),
                source: std::io::Error::other(SECRET),
            }
            .into(),
            503,
            Some("5"),
            "temporarily unavailable; try again shortly",
        ),
        (HttpError::Conflict("confirm it"), 409, None, "confirm it"),
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

/// Traefik reads at most `maxResponseBodySize` of a forwardAuth answer
/// (and fails the request past it): every refusal page `/auth` can send,
/// with the longest domain a host can have, fits.
#[tokio::test]
async fn every_refusal_page_fits_traefiks_cap_on_auth_answers() {
    let domain = format!(
        "{}.{}.{}.{}",
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61)
    );
    let ways = Ways {
        home: format!("https://{domain}:65535/"),
        status: format!("https://{domain}:65535/_roost/"),
        sign_out: format!("https://{domain}:65535/_roost/logout?rd=https%3A%2F%2F{domain}%3A65535%2F"),
        https: true,
    };
    for (error, ..) in table() {
        let what = format!("{error:?}");
        let body = error
            .respond(Some(&ways))
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert!(
            (body.len() as u64) < crate::traefik::AUTH_RESPONSE_CAP,
            "{what}: {} bytes",
            body.len()
        );
    }
}
