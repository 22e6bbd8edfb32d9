//! Posted forms and their form token: every form of roost's pages carries
//! the session's anti-CSRF token in a `csrf` field, checked here in
//! constant time before anything is done.

use bytes::Bytes;
use http::header;
use http_body_util::{BodyExt, Limited};

use crate::error::HttpError;
use crate::request::{Parsed, RequestBody};
use crate::response::same;

/// Largest form body accepted.
pub(super) const MAX_FORM_BYTES: usize = 4096;

/// Reads a posted form and checks its `csrf` field against the session's
/// form token (constant time); the form, for its other fields.
pub(super) async fn check_form_token<B: RequestBody>(
    req: &Parsed<'_>,
    body: B,
    expected: &str,
) -> Result<Bytes, HttpError> {
    let body = read_form(req, body).await?;
    let sent = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    if same(sent.as_bytes(), expected.as_bytes()) {
        Ok(body)
    } else {
        Err(HttpError::Forbidden("stale or missing form token; reload the page"))
    }
}

/// A posted form whose token was checked.
pub(super) struct Form(Bytes);

impl Form {
    /// The value of field `name`, decoded.
    pub(super) fn field(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(&self.0)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

/// The form a browser session posted, its token checked; forms are for
/// sessions (a bearer token has no form token).
pub(super) async fn session_form<B: RequestBody>(
    req: &Parsed<'_>,
    body: B,
    c: &crate::forward_auth::Authenticated,
) -> Result<Form, HttpError> {
    let expected = c
        .csrf
        .as_deref()
        .ok_or(HttpError::Forbidden("forms need a browser session"))?;
    Ok(Form(check_form_token(req, body, expected).await?))
}

async fn read_form<B: RequestBody>(req: &Parsed<'_>, body: B) -> Result<Bytes, HttpError> {
    let form = req
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form {
        return Err(HttpError::BadRequest("expected a form"));
    }
    match Limited::new(body, MAX_FORM_BYTES).collect().await {
        Ok(body) => Ok(body.to_bytes()),
        Err(_) => Err(HttpError::BadRequest("form too large or cut short")),
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use http_body_util::Full;

    use super::*;

    async fn check(content_type: Option<&str>, body: &str, expected: &str) -> Result<(), HttpError> {
        let mut req = http::Request::post("/_roost/stop");
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let (head, ()) = req.body(()).unwrap().into_parts();
        let parsed = Parsed::direct(&head, IpAddr::from([127, 0, 0, 1]));
        check_form_token(&parsed, Full::new(Bytes::from(body.to_string())), expected)
            .await
            .map(|_| ())
    }

    const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

    #[tokio::test]
    async fn only_the_sessions_own_token_passes() {
        assert!(check(FORM, "csrf=tok3n", "tok3n").await.is_ok());
        assert!(check(FORM, "a=1&csrf=tok%33n&b=2", "tok3n").await.is_ok());
        for (body, why) in [
            ("", "missing"),
            ("csrf=", "empty"),
            ("csrf=tok3", "prefix"),
            ("csrf=tok3nn", "longer"),
            ("csrf=TOK3N", "case"),
            ("token=tok3n", "other field"),
        ] {
            let err = check(FORM, body, "tok3n").await.expect_err(why);
            assert!(matches!(err, HttpError::Forbidden(_)), "{why}: {err:?}");
        }
    }

    #[tokio::test]
    async fn only_small_urlencoded_forms_are_read() {
        for ct in [None, Some("text/plain"), Some("multipart/form-data; boundary=x")] {
            let err = check(ct, "csrf=tok3n", "tok3n").await.expect_err("not a form");
            assert!(
                matches!(err, HttpError::BadRequest("expected a form")),
                "{ct:?}: {err:?}"
            );
        }
        let big = format!("csrf=tok3n&pad={}", "x".repeat(MAX_FORM_BYTES));
        let err = check(FORM, &big, "tok3n").await.expect_err("too large");
        assert!(matches!(err, HttpError::BadRequest(_)), "{err:?}");
    }
}
