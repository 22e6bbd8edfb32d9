//! roost's router driven in-process (`tests/in_process/`): an app over
//! the in-memory runtime with keys and the provider's endpoints from a
//! static fetcher, requests built as values, and their replies.

use roost::store::Embedded;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::Request;
use http_body_util::{BodyExt, Full};
use roost::app::App;
use roost::auth::{FetchError, KeyFetcher};
use roost::config::Config;
use roost::server::Listener;
use roost::workspace::memory::MemoryRuntime;
use serde_json::json;

use super::roost::{config_text, session_for, sign_in_secrets, AUDIENCE, COOKIE_KEY};
use super::tokens::{auth0_claims, jwk, sign};

pub const ISSUER: &str = "https://issuer.roost.test/";
pub const AUTHORIZE: &str = "https://issuer.roost.test/authorize";
pub const ORIGIN: &str = "http://ws.roost.test";
pub const ALICE: &str = "alice.ws.roost.test";

/// The provider's discovery document and keys, from memory.
pub struct StaticFetcher;

impl KeyFetcher for StaticFetcher {
    fn fetch<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<Bytes, FetchError>> {
        Box::pin(async move {
            let doc = if url.ends_with("openid-configuration") {
                json!({
                    "issuer": ISSUER,
                    "jwks_uri": format!("{ISSUER}.well-known/jwks.json"),
                    "authorization_endpoint": AUTHORIZE,
                    "token_endpoint": format!("{ISSUER}oauth/token"),
                })
            } else {
                json!({ "keys": [jwk("k1")] })
            };
            Ok(Bytes::from(doc.to_string()))
        })
    }

    fn post_form<'a>(&'a self, _url: &'a str, _form: String) -> BoxFuture<'a, Result<Bytes, FetchError>> {
        Box::pin(async { Err(FetchError::Status(400)) })
    }
}

/// roost with containers in memory (every workspace starts at once and
/// "answers" at the discard port, where nothing does), with browser sign-in
/// when `sign_in`.
pub async fn app(sign_in: bool) -> Arc<App> {
    app_on(sign_in, Arc::new(MemoryRuntime::new(([127, 0, 0, 1], 9).into()))).await
}

/// The same, over a runtime of the test's own.
pub async fn app_on(sign_in: bool, runtime: Arc<MemoryRuntime>) -> Arc<App> {
    app_with(sign_in, runtime, "").await
}

/// The same, with `extra` TOML at the end of the config (after `[workspace]`).
pub async fn app_with(sign_in: bool, runtime: Arc<MemoryRuntime>, extra: &str) -> Arc<App> {
    let (oidc, secrets) = if sign_in {
        ("client_id = \"roost-test-client\"", sign_in_secrets(COOKIE_KEY, None))
    } else {
        ("", Default::default())
    };
    // A stop drains for drain_grace: short here.
    let text = config_text(ISSUER, oidc, "").replace("[workspace]\n", "[workspace]\ndrain_grace = \"50ms\"\n") + extra;
    let config = Config::from_toml(&text, secrets).expect("valid config");
    let app = App::new(
        config,
        Arc::new(StaticFetcher),
        runtime,
        Arc::new(Embedded::in_memory()),
    );
    app.keys.refresh().await.expect("keys from memory");
    app
}

pub use super::http::Reply;

/// Where a reply redirects to sign in.
pub trait SignInRd {
    /// The `rd` of a redirect to sign-in, decoded.
    fn sign_in_rd(&self) -> String;
}

impl SignInRd for Reply {
    fn sign_in_rd(&self) -> String {
        let location = self.header("location").expect("a Location");
        let query = location
            .strip_prefix(&format!("{ORIGIN}/_roost/login?"))
            .unwrap_or_else(|| panic!("not to sign-in: {location}"));
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "rd")
            .map(|(_, v)| v.into_owned())
            .expect("an rd")
    }
}

pub async fn send(app: &App, listener: Listener, req: Request<Full<Bytes>>) -> Reply {
    let peer: SocketAddr = "10.0.0.2:40000".parse().unwrap();
    let resp = roost::server::handle(app, req, peer, listener).await;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("a body").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub fn req(method: &str, host: &str, path: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut b = Request::builder().method(method).uri(path);
    if !host.is_empty() {
        b = b.header("host", host);
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::default()).unwrap()
}

pub fn form(host: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Request<Full<Bytes>> {
    let mut r = req("POST", host, path, headers);
    r.headers_mut()
        .insert("content-type", "application/x-www-form-urlencoded".parse().unwrap());
    *r.body_mut() = Full::new(Bytes::from(body.to_string()));
    r
}

pub fn bearer(user: &str) -> String {
    format!(
        "Bearer {}",
        sign("k1", Some("k1"), &auth0_claims(ISSUER, AUDIENCE, user))
    )
}

/// A browser session for `user`: its `Cookie` header and its form token.
pub fn session(app: &App, user: &str) -> (String, String) {
    session_for(app, user)
}

pub const HTML: (&str, &str) = ("accept", "text/html,application/xhtml+xml");
