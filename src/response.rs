//! The responses roost writes itself, built one way everywhere: short
//! `text/plain` answers, JSON, redirects, HTML pages with the CSP and
//! security headers, and what they need (HTML escaping, CSP hashes, a
//! constant-time compare for tokens). A leaf: it imports nothing of
//! roost's, so every handler can use it.

use base64::Engine;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;
use sha2::{Digest, Sha256};

/// The body of every response roost sends: its own (full) or a workspace's
/// (streamed through by the fallback proxy), without boxing.
/// (An I/O error for what is streamed: a concrete error type keeps hyper's
/// bounds satisfied for every lifetime.)
pub type Body = http_body_util::Either<Full<Bytes>, http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>>;

/// A body streamed from `stream` (a backup download).
pub fn streamed(stream: impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static) -> Body {
    use http_body_util::BodyExt;
    let frames = futures_util::StreamExt::map(stream, |chunk| chunk.map(hyper::body::Frame::data));
    Body::Right(http_body_util::StreamBody::new(frames).boxed_unsync())
}

/// A body roost wrote itself.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Body::Left(Full::new(bytes.into()))
}

/// A short `text/plain` answer that no cache keeps.
pub fn text(status: StatusCode, message: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(full(message.into()));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A JSON answer that no cache keeps and no browser sniffs.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(full(value.to_string()));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}

/// A JSON answer already written out (a document served as it is).
pub fn json_text(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::from_static(text.as_bytes())));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}

/// A redirect nobody caches. Locations are built from the configured origin
/// or validated, so they are header-safe; anything else falls back to `/`.
pub fn redirect(status: StatusCode, location: &str) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        header::LOCATION,
        HeaderValue::from_str(location).unwrap_or_else(|_| HeaderValue::from_static("/")),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The style every page of roost's shares (hashed into the CSP).
pub const STYLE: &str =
    "body{font-family:system-ui,sans-serif;color:#223;max-width:52rem;margin:2rem auto;padding:0 1rem}\
table{border-collapse:collapse}td,th{text-align:left;padding:.25rem 1rem .25rem 0}\
pre{background:#f4f4f8;padding:.75rem;overflow:auto;max-height:24rem;font-size:.85rem}\
button{font:inherit;padding:.35rem 1rem;margin-right:.5rem}form{display:inline}\
.state{font-weight:600}";

/// `'sha256-…'` of an inline script or style.
fn hash_source(text: &str) -> String {
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()))
    )
}

/// The CSP of pages without script: only their own inline style ([`STYLE`]),
/// forms to roost itself and to `form_targets` (source expressions, each
/// preceded by a space), no framing.
pub fn page_csp(form_targets: &str) -> String {
    format!(
        "default-src 'none'; style-src {}; img-src 'self'; form-action 'self'{form_targets}; \
         frame-ancestors 'none'; base-uri 'none'",
        hash_source(STYLE)
    )
}

/// The CSP of a page with one inline script (by hash) that may call
/// `connect` (e.g. `'self'`); styles inline.
pub fn csp_with_script(script: &str, connect: &str) -> String {
    format!(
        "default-src 'none'; script-src {}; style-src 'unsafe-inline'; connect-src {connect}; \
         frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        hash_source(script)
    )
}

/// An HTML page with roost's security headers: CSP, no framing, no
/// sniffing, no referrer, no caching, and HSTS on https.
pub fn html(status: StatusCode, html: String, csp: &str, https: bool) -> Response<Body> {
    let mut resp = Response::new(full(html));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if let Ok(v) = HeaderValue::from_str(csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    if https {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    resp
}

/// A refusal as a person meets it: a small page in roost's style saying
/// what happened, with ways on (`links`: text and URL).
pub fn refusal_page(
    status: StatusCode,
    title: &str,
    message: &str,
    links: &[(&str, &str)],
    https: bool,
) -> Response<Body> {
    let links: String = links
        .iter()
        .map(|(text, url)| format!("<li><a href=\"{}\">{}</a></li>", escape(url), escape(text)))
        .collect();
    let message = {
        let mut m = escape(message);
        if let Some(first) = m.get(..1) {
            m.replace_range(..1, &first.to_uppercase());
        }
        m
    };
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head><body><main>\
         <h1>{title}</h1><p>{message}.</p><ul>{links}</ul><p><small>{code}</small></p></main></body></html>",
        title = escape(title),
        code = status.as_u16(),
    );
    html_page(status, html, https)
}

/// [`html`] under [`page_csp`] with no form target beyond roost.
fn html_page(status: StatusCode, page: String, https: bool) -> Response<Body> {
    static CSP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    html(status, page, CSP.get_or_init(|| page_csp("")), https)
}

/// Text made safe for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Constant-time equality for tokens (the time taken depends on the
/// lengths only, never on where the bytes differ).
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_carry_security_headers_and_hsts_only_on_https() {
        for https in [false, true] {
            let resp = html(StatusCode::OK, "<p>x</p>".into(), &page_csp(""), https);
            let h = resp.headers();
            assert_eq!(h["x-frame-options"], "DENY");
            assert_eq!(h["x-content-type-options"], "nosniff");
            assert_eq!(h["referrer-policy"], "no-referrer");
            assert_eq!(h["cache-control"], "no-store");
            let csp = h["content-security-policy"].to_str().unwrap();
            assert!(csp.starts_with("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
            assert!(csp.contains("form-action 'self';"), "{csp}");
            assert_eq!(h.contains_key("strict-transport-security"), https);
        }
        let csp = page_csp(" https://idp.example");
        assert!(csp.contains("form-action 'self' https://idp.example;"), "{csp}");
    }

    #[test]
    fn text_is_escaped_for_html() {
        assert_eq!(
            escape(r#"<script>"a" & 'b'</script>"#),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn redirects_are_uncached_and_never_carry_an_unsafe_location() {
        let resp = redirect(StatusCode::SEE_OTHER, "https://ws.example.com/_roost/");
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        assert_eq!(resp.headers()["location"], "https://ws.example.com/_roost/");
        assert_eq!(resp.headers()["cache-control"], "no-store");
        let resp = redirect(StatusCode::FOUND, "https://x.example/\r\nset-cookie: a=b");
        assert_eq!(resp.headers()["location"], "/");
    }

    #[test]
    fn tokens_compare_by_value_and_length() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert!(!same(b"", b"a"));
        assert!(same(b"", b""));
    }

    #[test]
    fn text_and_json_answers_are_not_cached() {
        let resp = text(StatusCode::NOT_FOUND, "not found");
        assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
        assert_eq!(resp.headers()["cache-control"], "no-store");
        let resp = json(StatusCode::ACCEPTED, &serde_json::json!({"a": 1}));
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        assert_eq!(resp.headers()["content-type"], "application/json");
        assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    }
}
