//! One request to roost, parsed once ([`Parsed`]): the normalised host,
//! the caller's credential and cookies, what kind of client asks, the
//! path it asked for, and (read only when needed) the client's address.
//! The router builds it from the request head, and `/auth`, the fallback
//! proxy and the pages all read the same value.
//!
//! Two views of a request: one forwarded by Traefik's forwardAuth (`GET
//! /auth` with `X-Forwarded-Host`, `-Method`, `-Uri`, `-For` describing the
//! client's request) and one served directly on the public listener (its
//! own `Host`, method and path; `X-Forwarded-For` still gives the client's
//! address, appended by Traefik).

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, COOKIE, HOST};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version};

use crate::auth::session::{cookie_value, SESSION_COOKIE};

const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const X_REQUESTED_WITH: HeaderName = HeaderName::from_static("x-requested-with");

/// The body of a request roost reads (a form) or forwards (the fallback
/// proxy): any body of [`Bytes`], so handlers serve hyper's connections and
/// in-process tests alike.
pub trait RequestBody: hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static {}

impl<B> RequestBody for B where B: hyper::body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static {}

/// A body's error, whatever the body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request to roost, as every handler reads it.
#[derive(Debug)]
pub struct Parsed<'a> {
    /// The host the client asked for, normalised ([`crate::host`]): the
    /// request's own `Host` when served directly; for forwardAuth,
    /// `X-Forwarded-Host` (else `Host`).
    pub host: Option<Cow<'a, str>>,
    /// The TCP peer (Traefik), when `X-Forwarded-For` says nothing usable.
    pub peer: IpAddr,
    pub credential: Credential<'a>,
    /// The request's `Cookie` header, to be passed on without roost's own.
    pub cookie: Option<&'a HeaderValue>,
    /// Where Traefik will send the request (`/auth?upstream=`), if it said.
    pub upstream: Option<SocketAddr>,
    /// This request's own method and target (`/auth?…` for forwardAuth).
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub version: Version,
    pub headers: &'a HeaderMap,
    /// Whether the client's request is described by `X-Forwarded-*`
    /// headers (forwardAuth) rather than being this request.
    forwarded: bool,
}

/// How a client without credentials is sent to sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// A browser navigating (GET/HEAD accepting HTML): 302 to sign-in.
    Navigation,
    /// A browser submitting (another method, accepting HTML): 303.
    Submission,
    /// An API client or a script (XHR): 401.
    Api,
}

impl ClientKind {
    /// The kind of a client whose request had this method (`None`: not
    /// known, taken as GET) and these headers.
    pub fn of(method: Option<&[u8]>, headers: &HeaderMap) -> Self {
        let html = headers
            .get(ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"));
        if !html || headers.contains_key(X_REQUESTED_WITH) {
            return ClientKind::Api;
        }
        match method {
            None | Some(b"GET" | b"HEAD") => ClientKind::Navigation,
            Some(_) => ClientKind::Submission,
        }
    }
}

/// The caller's credential, as presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    None,
    Bearer(&'a str),
    /// A browser's session cookie (only when there is no `Authorization`).
    Session(&'a str),
    /// An `Authorization` header that is not a bearer token.
    Unsupported,
}

impl<'a> Credential<'a> {
    fn of(headers: &'a HeaderMap) -> Self {
        match headers.get(AUTHORIZATION).map(HeaderValue::as_bytes) {
            None => match cookie_value(headers.get(COOKIE), SESSION_COOKIE) {
                Some(v) if !v.is_empty() => Credential::Session(v),
                _ => Credential::None,
            },
            Some(v) if v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ") => match std::str::from_utf8(&v[7..]) {
                Ok(token) if !token.trim().is_empty() => Credential::Bearer(token.trim()),
                Ok(_) => Credential::None,
                Err(_) => Credential::Unsupported,
            },
            Some(v) if v.trim_ascii().eq_ignore_ascii_case(b"bearer") || v.trim_ascii().is_empty() => Credential::None,
            Some(_) => Credential::Unsupported,
        }
    }
}

/// `GET /auth`, what a forwardAuth request is when only its headers are given.
static AUTH_METHOD: Method = Method::GET;

fn auth_uri() -> &'static Uri {
    static URI: std::sync::OnceLock<Uri> = std::sync::OnceLock::new();
    URI.get_or_init(|| Uri::from_static("/auth"))
}

fn host_of(value: Option<&HeaderValue>) -> Option<Cow<'_, str>> {
    value.and_then(|v| v.to_str().ok()).and_then(crate::host::normalize)
}

impl<'a> Parsed<'a> {
    /// A forwardAuth request (`GET /auth`) from its headers alone.
    pub fn from_headers(headers: &'a HeaderMap, peer: IpAddr) -> Self {
        Parsed {
            host: host_of(headers.get(X_FORWARDED_HOST).or_else(|| headers.get(HOST))),
            peer,
            credential: Credential::of(headers),
            cookie: headers.get(COOKIE),
            upstream: None,
            method: &AUTH_METHOD,
            uri: auth_uri(),
            version: Version::HTTP_11,
            headers,
            forwarded: true,
        }
    }

    /// A forwardAuth request: the client's request is described by the
    /// `X-Forwarded-*` headers; `upstream=` is read from the query.
    pub fn forwarded(head: &'a Parts, peer: IpAddr) -> Self {
        Parsed {
            method: &head.method,
            uri: &head.uri,
            version: head.version,
            ..Parsed::from_headers(&head.headers, peer)
        }
        .with_upstream(head.uri.query())
    }

    /// A request served directly (the public listener): its own `Host`,
    /// method and path.
    pub fn direct(head: &'a Parts, peer: IpAddr) -> Self {
        let headers = &head.headers;
        Parsed {
            host: host_of(headers.get(HOST)),
            peer,
            credential: Credential::of(headers),
            cookie: headers.get(COOKIE),
            upstream: None,
            method: &head.method,
            uri: &head.uri,
            version: head.version,
            headers,
            forwarded: false,
        }
    }

    /// Reads `upstream=` from `/auth`'s own query string.
    pub fn with_upstream(mut self, query: Option<&str>) -> Self {
        self.upstream = query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|kv| kv.strip_prefix("upstream="))
            .and_then(|v| v.parse().ok());
        self
    }

    /// What kind of client asks (read from the headers when asked: only
    /// refusals need it).
    pub fn client(&self) -> ClientKind {
        if self.forwarded {
            ClientKind::of(
                self.headers.get(X_FORWARDED_METHOD).map(HeaderValue::as_bytes),
                self.headers,
            )
        } else {
            ClientKind::of(Some(self.method.as_str().as_bytes()), self.headers)
        }
    }

    /// The path and query the client asked for (`X-Forwarded-Uri` for
    /// forwardAuth), unvalidated.
    pub fn asked_uri(&self) -> Option<&'a str> {
        if self.forwarded {
            self.headers.get(X_FORWARDED_URI).and_then(|v| v.to_str().ok())
        } else {
            self.uri.path_and_query().map(|p| p.as_str())
        }
    }

    /// This request's own path.
    pub fn path(&self) -> &'a str {
        self.uri.path()
    }

    /// This request's own query string.
    pub fn query(&self) -> Option<&'a str> {
        self.uri.query()
    }

    /// The client's address: the entry `hops` before the last one in
    /// `X-Forwarded-For` (Traefik appends the address it saw; each trusted
    /// proxy in front of it appended one more), else the TCP peer. Read only
    /// when a limit needs it, never on the cached hot path.
    pub fn client_ip(&self, hops: u32) -> IpAddr {
        let mut entries = self
            .headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .rev()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.rsplit(','));
        let mut found = None;
        for _ in 0..=hops {
            match entries.next() {
                Some(entry) => found = Some(entry),
                None => break,
            }
        }
        found.and_then(|ip| ip.trim().parse().ok()).unwrap_or(self.peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut req = http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn credentials_and_client_address_are_read_from_forwarded_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-host",
            HeaderValue::from_static("Alice.WS.example.com:8443"),
        );
        h.append("x-forwarded-for", HeaderValue::from_static("10.0.0.1, 203.0.113.9"));
        h.insert("authorization", HeaderValue::from_static("Bearer abc.def.ghi"));
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let r = Parsed::from_headers(&h, peer);
        assert_eq!(r.host.as_deref(), Some("alice.ws.example.com"));
        assert_eq!(r.client_ip(0), "203.0.113.9".parse::<IpAddr>().unwrap());
        // Behind one more proxy (a load balancer), the entry before.
        assert_eq!(r.client_ip(1), "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(r.client_ip(5), "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(r.credential, Credential::Bearer("abc.def.ghi"));

        h.insert("authorization", HeaderValue::from_static("Basic dXNlcjpwYXNz"));
        h.remove("x-forwarded-for");
        let r = Parsed::from_headers(&h, peer);
        assert_eq!(r.credential, Credential::Unsupported);
        assert_eq!(r.client_ip(0), peer);
        h.insert("authorization", HeaderValue::from_static("Bearer "));
        assert_eq!(Parsed::from_headers(&h, peer).credential, Credential::None);
        h.remove("authorization");
        h.insert("cookie", HeaderValue::from_static("a=1; roost_session=sealed"));
        assert_eq!(Parsed::from_headers(&h, peer).credential, Credential::Session("sealed"));
    }

    #[test]
    fn forwarded_requests_describe_the_clients_request_in_headers() {
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let parts = head(
            "GET",
            "/auth?upstream=172.18.0.5:8888",
            &[
                ("host", "roost:8081"),
                ("x-forwarded-host", "alice.ws.example.com"),
                ("x-forwarded-method", "POST"),
                ("x-forwarded-uri", "/lab?x=1"),
                ("accept", "text/html"),
            ],
        );
        let r = Parsed::forwarded(&parts, peer);
        assert_eq!(r.host.as_deref(), Some("alice.ws.example.com"));
        assert_eq!(r.upstream, Some("172.18.0.5:8888".parse().unwrap()));
        assert_eq!(r.client(), ClientKind::Submission);
        assert_eq!(r.asked_uri(), Some("/lab?x=1"));
        assert_eq!(r.path(), "/auth");
    }

    #[test]
    fn direct_requests_are_read_from_their_own_host_method_and_path() {
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let parts = head(
            "GET",
            "/lab/tree?x=1",
            &[
                ("host", "Alice.WS.example.com."),
                // Routing and authorization read one host: the request's own.
                ("x-forwarded-host", "bob.ws.example.com"),
                ("x-forwarded-method", "POST"),
                ("accept", "text/html,application/xhtml+xml"),
            ],
        );
        let r = Parsed::direct(&parts, peer);
        assert_eq!(r.host.as_deref(), Some("alice.ws.example.com"));
        assert_eq!(r.client(), ClientKind::Navigation);
        assert_eq!(r.asked_uri(), Some("/lab/tree?x=1"));
        assert_eq!(r.upstream, None);
        let parts = head(
            "POST",
            "/form",
            &[("host", "a.ws.example.com"), ("accept", "text/html")],
        );
        assert_eq!(Parsed::direct(&parts, peer).client(), ClientKind::Submission);
        let parts = head(
            "GET",
            "/",
            &[
                ("host", "a.ws.example.com"),
                ("accept", "text/html"),
                ("x-requested-with", "fetch"),
            ],
        );
        assert_eq!(Parsed::direct(&parts, peer).client(), ClientKind::Api);
        let parts = head("GET", "/", &[("host", "not a host")]);
        assert_eq!(Parsed::direct(&parts, peer).host, None);
    }
}
