//! A browser stand-in for sign-in tests without a browser: a cookie jar
//! and redirects followed by hand. URLs for the workspace domain are sent
//! to roost's own address with their `Host` (no DNS, no Traefik); any other
//! URL (the provider) is fetched as is. The jar keys cookies by name only,
//! which is enough here: every roost cookie lives under one domain.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use super::http::{Reply, TestClient};
use super::roost::DOMAIN;

#[derive(Clone)]
pub struct Jar {
    roost: SocketAddr,
    pub cookies: BTreeMap<String, String>,
    client: TestClient,
}

impl Jar {
    pub fn new(roost: SocketAddr) -> Jar {
        Jar {
            roost,
            cookies: BTreeMap::new(),
            client: TestClient::default(),
        }
    }

    /// The `Cookie` header this jar sends.
    pub fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Applies every `Set-Cookie` of a reply (Max-Age=0 removes).
    pub fn absorb(&mut self, reply: &Reply) {
        for value in reply.headers.get_all("set-cookie") {
            let c = cookie::Cookie::parse(value.to_str().unwrap().to_string()).unwrap();
            if c.max_age().is_some_and(|a| a.is_zero()) || c.value().is_empty() {
                self.cookies.remove(c.name());
            } else {
                self.cookies.insert(c.name().to_string(), c.value().to_string());
            }
        }
    }

    /// One request as a browser navigation (GET, accepts HTML), with the
    /// jar's cookies; the reply's cookies go into the jar.
    pub async fn get(&mut self, url: &str) -> Reply {
        self.request("GET", url, &[], None).await
    }

    /// A form POST, as a page's form submits it.
    pub async fn post_form(&mut self, url: &str, form: &str, extra: &[(&str, &str)]) -> Reply {
        self.request("POST", url, extra, Some(form)).await
    }

    pub async fn request(&mut self, method: &str, url: &str, extra: &[(&str, &str)], form: Option<&str>) -> Reply {
        let parsed = url::Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        let host = parsed.host_str().unwrap().to_string();
        let target = if host == DOMAIN || host.ends_with(&format!(".{DOMAIN}")) {
            let query = parsed.query().map(|q| format!("?{q}")).unwrap_or_default();
            format!("http://{}{}{query}", self.roost, parsed.path())
        } else {
            url.to_string()
        };
        let mut req = Request::builder()
            .method(method)
            .uri(&target)
            .header("host", &host)
            .header("accept", "text/html,application/xhtml+xml");
        if !self.cookies.is_empty() {
            req = req.header("cookie", self.cookie_header());
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let (body, req) = match form {
            Some(b) => (
                Full::new(Bytes::from(b.to_string())),
                req.header("content-type", "application/x-www-form-urlencoded"),
            ),
            None => (Full::default(), req),
        };
        let reply = self.client.send(req.body(body).unwrap()).await.unwrap();
        self.absorb(&reply);
        reply
    }

    /// Signs out as a browser does: `GET /_roost/logout` on `base` (the
    /// page with the "Sign out" button), then the button's form POST with
    /// the page's form token. Returns the POST's reply.
    pub async fn sign_out(&mut self, base: &str) -> Reply {
        let url = format!("{base}/_roost/logout");
        let page = self.get(&url).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let token = form_token(&page.body).unwrap_or_else(|| panic!("no sign-out form: {}", page.body));
        let form = format!("csrf={}", super::http::urlencode(&token));
        self.post_form(&url, &form, &[]).await
    }

    /// Follows redirects from `url` until an answer that is not one (at
    /// most 10); returns it and the URL it came from.
    pub async fn follow(&mut self, url: &str) -> (Reply, String) {
        let mut url = url.to_string();
        for _ in 0..10 {
            let reply = self.get(&url).await;
            match reply.header("location") {
                Some(next) if reply.status.is_redirection() => {
                    url = url::Url::parse(&url).unwrap().join(next).unwrap().to_string();
                }
                _ => return (reply, url),
            }
        }
        panic!("too many redirects from {url}");
    }
}

/// The value of a page's hidden `csrf` form field (roost writes it as
/// `name="csrf" value="…"`; the token is URL-safe base64, never escaped).
pub fn form_token(html: &str) -> Option<String> {
    let rest = &html[html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len()..];
    Some(rest[..rest.find('"')?].to_string())
}
