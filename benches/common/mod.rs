//! What the in-process benchmarks share: an app over the in-memory
//! runtime whose signing keys come from memory (no network), tokens from
//! the test key, and a browser session. (Each bench uses some of it.)
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use roost::app::App;
use roost::auth::{FetchError, KeyFetcher};
use roost::config::{Config, Secrets};
use roost::workspace::memory::MemoryRuntime;
use serde_json::json;

pub const ISSUER: &str = "https://tenant.example.auth0.com/";
pub const AUDIENCE: &str = "https://roost.test/api";

/// Serves fixed discovery and JWKS documents from memory.
struct StaticFetcher {
    jwks: Bytes,
}

impl KeyFetcher for StaticFetcher {
    fn fetch<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<Bytes, FetchError>> {
        Box::pin(async move {
            if url.ends_with("openid-configuration") {
                Ok(Bytes::from(
                    json!({"issuer": ISSUER, "jwks_uri": format!("{ISSUER}.well-known/jwks.json")}).to_string(),
                ))
            } else {
                Ok(self.jwks.clone())
            }
        })
    }

    fn post_form<'a>(&'a self, _url: &'a str, _form: String) -> BoxFuture<'a, Result<Bytes, FetchError>> {
        // The benchmarks never sign a browser in.
        Box::pin(async { Err(FetchError::Status(404)) })
    }
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

pub fn token(sub: &str) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k1".into());
    let claims = json!({
        "iss": ISSUER, "sub": sub, "aud": [AUDIENCE, format!("{ISSUER}userinfo")],
        "iat": now, "exp": now + 86_400, "scope": "openid profile email",
        "permissions": ["read:workspace"], "email": format!("{sub}@example.com"),
    });
    encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(&fixture("k1.pem")).unwrap(),
    )
    .unwrap()
}

pub fn app(rt: &tokio::runtime::Runtime) -> Arc<App> {
    app_with(rt, "")
}

/// [`app`] with more `[workspace]` lines.
pub fn app_with(rt: &tokio::runtime::Runtime, workspace: &str) -> Arc<App> {
    let text = format!(
        r#"
[oidc]
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
[routing]
domain = "ws.roost.test"
roost_url = "http://127.0.0.1:8080"
[workspace]
image = "roost-echo:test"
{workspace}
[limits]
authenticated_per_user = "100000000/s"
"#
    );
    // A cookie key and a client id: browser sessions on, as in production.
    let text = text.replace("[oidc]\n", "[oidc]\nclient_id = \"bench\"\n");
    let secrets = Secrets {
        oidc_client_secret: Some(roost::config::Secret::new("bench-client-secret")),
        cookie_key: Some(roost::config::Secret::new(
            "bench-cookie-key-0123456789abcdef0123456789",
        )),
        cookie_key_previous: None,
        redis_url: None,
    };
    let config = Config::from_toml(&text, secrets).unwrap();
    let jwk: serde_json::Value = serde_json::from_slice(&fixture("k1.jwk.json")).unwrap();
    let fetcher = Arc::new(StaticFetcher {
        jwks: Bytes::from(json!({ "keys": [jwk] }).to_string()),
    });
    // Containers in memory: the benchmark measures roost, not an engine.
    let runtime = Arc::new(MemoryRuntime::new(([127, 0, 0, 1], 9).into()));
    let app = App::new(config, fetcher, runtime, Arc::new(roost::store::Embedded::in_memory()));
    rt.block_on(app.keys.refresh()).unwrap();
    app
}

/// A current-thread runtime and an app whose keys are loaded.
pub fn setup() -> (tokio::runtime::Runtime, Arc<App>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = app(&rt);
    (rt, app)
}

/// What Traefik sends roost's `/auth` for a request to alice's workspace
/// (no credential yet).
pub fn forwarded_headers() -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    for (name, value) in [
        ("x-forwarded-host", "alice.ws.roost.test"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-method", "GET"),
        ("x-forwarded-uri", "/lab/tree"),
        ("x-forwarded-for", "203.0.113.9"),
    ] {
        headers.insert(name, http::HeaderValue::from_static(value));
    }
    headers
}

/// A browser session for `user` on `app`: its `Cookie` header value.
pub fn session_cookie(app: &App, user: &str) -> String {
    let origin = roost::public_url::PublicOrigin::new(&app.config.routing);
    let sessions = roost::auth::Sessions::new(&app.config.secrets, &app.config.session, &origin).unwrap();
    let s = sessions.start(user, user, Some(format!("{user}@example.com")), false, vec![]);
    let set_cookie = sessions.set_cookie(&s);
    set_cookie.to_str().unwrap().split(';').next().unwrap().to_string()
}
