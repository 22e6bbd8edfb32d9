//! Shared setup for roost's fuzz targets: a roost [`App`] built in-process
//! exactly as `src/app.rs` wires it, over a static in-memory key fetcher
//! (discovery + the JWKS with the test key `k1` and a fuzz-only Ed25519
//! key), so every target runs without a network, a container engine or a
//! clock it does not control.
//!
//! The harness holds the private keys and the cookie key, so a target can
//! also mint *valid* credentials around fuzz-chosen content (claims, session
//! JSON, state JSON) to reach the code behind the signature / seal checks;
//! an outsider cannot do that, but the code there must not panic either.

use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use jsonwebtoken::{Algorithm, EncodingKey};
use roost::app::App;
use roost::auth::{FetchError, KeyFetcher};
use roost::config::{Config, Secret, Secrets};
use serde_json::json;

pub const ISSUER: &str = "https://tenant.example.auth0.com/";
pub const AUDIENCE: &str = "https://roost.test/api";
pub const CLIENT_ID: &str = "roost-fuzz-client";
pub const DOMAIN: &str = "ws.roost.test";
/// The public origin of [`config_text`] (https, default port).
pub const ORIGIN: &str = "https://ws.roost.test";
pub const AUTHORIZE: &str = "https://tenant.example.auth0.com/authorize";
pub const COOKIE_KEY: &str = "fuzz-cookie-key-0123456789abcdef0123456789";
pub const OLD_COOKIE_KEY: &str = "fuzz-old-cookie-key-0123456789abcdef01234567";
/// The permission that makes a token's holder an admin.
pub const ADMIN: &str = "roost:admin";

/// The test issuer's RSA key (tests/fixtures/keys/k1.pem), kid `k1`.
pub const K1_PEM: &[u8] = include_bytes!("../../tests/fixtures/keys/k1.pem");
pub const K1_JWK: &str = include_str!("../../tests/fixtures/keys/k1.jwk.json");
/// A fuzz-only Ed25519 key (fuzz/keys/), kid `ed`: signing with it costs
/// microseconds, so a target can sign fuzz-chosen claims every run.
pub const ED_PEM: &[u8] = include_bytes!("../keys/fuzz-ed25519.pem");
pub const ED_X: &str = "Z3NO_kVq2QploPPUig6m7si0jbs84uQuYM8TgaA-JSY";

/// Serves discovery and the JWKS from memory; the token endpoint answers
/// whatever the running target put in [`StaticFetcher::set_token_answer`]
/// (an error when nothing).
pub struct StaticFetcher {
    discovery: Bytes,
    jwks: Bytes,
    token_answer: Mutex<Option<Bytes>>,
}

impl StaticFetcher {
    pub fn new() -> Self {
        let k1: serde_json::Value = serde_json::from_str(K1_JWK).expect("k1.jwk.json");
        let ed = json!({"kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": "ed", "x": ED_X});
        StaticFetcher {
            discovery: Bytes::from(
                json!({
                    "issuer": ISSUER,
                    "jwks_uri": format!("{ISSUER}.well-known/jwks.json"),
                    "authorization_endpoint": AUTHORIZE,
                    "token_endpoint": format!("{ISSUER}oauth/token"),
                    "end_session_endpoint": format!("{ISSUER}oidc/logout"),
                })
                .to_string(),
            ),
            jwks: Bytes::from(json!({ "keys": [k1, ed] }).to_string()),
            token_answer: Mutex::new(None),
        }
    }

    /// What the token endpoint answers from now on (`None`: an error).
    pub fn set_token_answer(&self, answer: Option<Bytes>) {
        *self.token_answer.lock().unwrap() = answer;
    }
}

impl Default for StaticFetcher {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyFetcher for StaticFetcher {
    fn fetch<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<Bytes, FetchError>> {
        Box::pin(async move {
            if url.ends_with("/.well-known/openid-configuration") {
                Ok(self.discovery.clone())
            } else if url.ends_with("/.well-known/jwks.json") {
                Ok(self.jwks.clone())
            } else {
                Err(FetchError::Status(404))
            }
        })
    }

    fn post_form<'a>(&'a self, _url: &'a str, _form: String) -> BoxFuture<'a, Result<Bytes, FetchError>> {
        Box::pin(async move { self.token_answer.lock().unwrap().clone().ok_or(FetchError::Status(502)) })
    }
}

/// A config for the fuzz issuer with these `oidc.algorithms` (a TOML
/// array): browser sign-in on, rate limits out of the way (a fuzzer is one very busy
/// client; the limiter's own logic is not what is fuzzed here).
pub fn config_text(algorithms: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
[oidc]
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
client_id = "{CLIENT_ID}"
algorithms = {algorithms}
admin_permission = "{ADMIN}"
[routing]
domain = "{DOMAIN}"
roost_url = "http://127.0.0.1:8080"
scheme = "https"
[workspace]
image = "roost-echo:test"
[limits]
unauthenticated_per_ip = "1000000000/s"
authenticated_per_user = "1000000000/s"
"#
    )
}

/// The secrets of a deployment with browser sign-in and a rotated cookie key.
pub fn secrets() -> Secrets {
    Secrets {
        oidc_client_secret: Some(Secret::new("fuzz-client-secret")),
        cookie_key: Some(Secret::new(COOKIE_KEY)),
        cookie_key_previous: Some(Secret::new(OLD_COOKIE_KEY)),
        redis_url: None,
    }
}

/// One roost per fuzz process, keys loaded, containers in memory (every
/// workspace starts at once), and a current-thread runtime to drive it.
///
/// `app` verifies RS256 (k1), as deployments do by default. `ed` is the same
/// deployment configured for EdDSA only, whose tokens the harness can sign
/// cheaply with fuzz-chosen content. (One config allowing both does not
/// work: jsonwebtoken refuses every token when the allowed algorithms span
/// key families; see the fuzz report.)
pub struct Harness {
    pub rt: tokio::runtime::Runtime,
    pub app: Arc<App>,
    /// Sessions sealed with the app's cookie keys (as any replica's are).
    pub sessions: Arc<roost::auth::Sessions>,
    pub fetcher: Arc<StaticFetcher>,
    pub ed: EdDeployment,
}

/// The EdDSA-only deployment's config, keys and verifier.
pub struct EdDeployment {
    pub config: Config,
    pub keys: Arc<roost::auth::KeyStore>,
    pub verifier: Arc<roost::auth::Verifier>,
}

impl Harness {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("tokio runtime");
        let config = Config::from_toml(&config_text(r#"["RS256"]"#), secrets()).expect("the fuzz config is valid");
        let fetcher = Arc::new(StaticFetcher::new());
        let app = {
            let _enter = rt.enter();
            let runtime = Arc::new(roost::workspace::memory::MemoryRuntime::new(([127, 0, 0, 1], 9).into()));
            App::new(
                config,
                fetcher.clone(),
                runtime,
                Arc::new(roost::store::Embedded::in_memory()),
            )
        };
        rt.block_on(app.keys.refresh())
            .expect("keys load from the static fetcher");
        assert!(app.login.is_some(), "sign-in is configured");
        let origin = roost::public_url::PublicOrigin::new(&app.config.routing);
        let sessions = roost::auth::Sessions::new(&app.config.secrets, &app.config.session, &origin)
            .map(Arc::new)
            .expect("sessions are configured");
        let ed_config = Config::from_toml(&config_text(r#"["EdDSA"]"#), secrets()).expect("the EdDSA config is valid");
        let keys = Arc::new(roost::auth::KeyStore::new(
            &ed_config.oidc,
            fetcher.clone(),
            app.metrics.clone(),
        ));
        rt.block_on(keys.refresh()).expect("EdDSA keys load");
        let verifier = Arc::new(roost::auth::Verifier::new(
            &ed_config.oidc,
            keys.clone(),
            app.metrics.clone(),
        ));
        let ed = EdDeployment {
            config: ed_config,
            keys,
            verifier,
        };
        Harness {
            rt,
            app,
            sessions,
            fetcher,
            ed,
        }
    }
}

/// The process's harness, built on first use.
pub fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(Harness::new)
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A JWS over exactly these header and payload bytes, signed with the
/// fuzz Ed25519 key (the payload need not be JSON).
pub fn sign_ed(header: &[u8], payload: &[u8]) -> String {
    static KEY: OnceLock<EncodingKey> = OnceLock::new();
    let key = KEY.get_or_init(|| EncodingKey::from_ed_pem(ED_PEM).expect("fuzz-ed25519.pem"));
    let input = format!("{}.{}", b64(header), b64(payload));
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), key, Algorithm::EdDSA).expect("Ed25519 signs");
    format!("{input}.{sig}")
}

/// A valid access token for `sub` (RS256, k1), as the provider issues them.
pub fn access_token(sub: &str, admin: bool) -> String {
    let now = now();
    let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
    header.kid = Some("k1".into());
    let permissions = if admin { vec![ADMIN] } else { vec!["read:workspace"] };
    let claims = json!({
        "iss": ISSUER, "sub": sub, "aud": [AUDIENCE, format!("{ISSUER}userinfo")],
        "iat": now, "exp": now + 86_400, "scope": "openid profile email",
        "permissions": permissions, "email": format!("{sub}@example.com"),
    });
    let key = EncodingKey::from_rsa_pem(K1_PEM).expect("k1.pem");
    jsonwebtoken::encode(&header, &claims, &key).expect("RS256 signs")
}

/// Splits fuzz input at the first `sep`: (before, after); all of it before
/// when there is none.
pub fn split_at_byte(data: &[u8], sep: u8) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == sep) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// Valid credentials a target can splice into fuzz input by marker, so the
/// fuzzer reaches the code behind a verified token or an opened session
/// (which it could never forge):
///
/// - `@TOKEN@`: an access token for `alice`; `@ADMIN@`: one for the admin
///   `root`;
/// - `@SESSION@`: alice's session cookie value; `@STALE@`: one in the second
///   half of its lifetime (renewed on use); `@OLDKEY@`: one sealed with the
///   previous cookie key (re-sealed on use).
pub struct Credentials {
    pub markers: Vec<(&'static [u8], String)>,
}

impl Credentials {
    fn new(h: &Harness) -> Self {
        use roost::auth::Sessions;
        use roost::public_url::PublicOrigin;
        let config = &h.app.config;
        let origin = PublicOrigin::new(&config.routing);
        let sessions = &h.sessions;
        let value = |set_cookie: http::HeaderValue| {
            let c = cookie::Cookie::parse(set_cookie.to_str().expect("ascii").to_string()).expect("a cookie");
            c.value().to_string()
        };
        let fresh = sessions.start("alice", "alice", Some("alice@example.com".into()), false, vec![]);
        let mut stale = fresh.clone();
        stale.expires = now() + 60;
        let old_secrets = Secrets {
            cookie_key: Some(Secret::new(OLD_COOKIE_KEY)),
            ..Secrets::default()
        };
        let old = Sessions::new(&old_secrets, &config.session, &origin).expect("old sessions");
        Credentials {
            markers: vec![
                (b"@TOKEN@", access_token("alice", false)),
                (b"@ADMIN@", access_token("root", true)),
                (b"@SESSION@", value(sessions.set_cookie(&fresh))),
                (b"@STALE@", value(sessions.set_cookie(&stale))),
                (b"@OLDKEY@", value(old.set_cookie(&fresh))),
            ],
        }
    }

    /// `input` with every marker replaced by its credential (borrowed when
    /// there is none).
    pub fn splice<'a>(&self, input: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        if !input.contains(&b'@') {
            return std::borrow::Cow::Borrowed(input);
        }
        let mut out = input.to_vec();
        for (marker, value) in &self.markers {
            out = replace(&out, marker, value.as_bytes());
        }
        std::borrow::Cow::Owned(out)
    }
}

fn replace(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

/// The process's credentials, minted on first use.
pub fn credentials() -> &'static Credentials {
    static C: OnceLock<Credentials> = OnceLock::new();
    C.get_or_init(|| Credentials::new(harness()))
}

/// A fresh sign-in flow (EdDSA ID tokens) over the harness's sessions (its memory of
/// used states starts empty, so every fuzz run is independent).
pub fn fresh_login() -> roost::auth::Login {
    let h = harness();
    let origin = roost::public_url::PublicOrigin::new(&h.ed.config.routing);
    roost::auth::Login::new(
        &h.ed.config,
        &origin,
        h.sessions.clone(),
        h.ed.keys.clone(),
        h.fetcher.clone(),
        h.ed.verifier.clone(),
        Arc::new(roost::store::Embedded::in_memory()),
    )
    .expect("sign-in is configured")
}

/// The state cookie's name for a state, as `roost::auth::login` names it
/// (its `cookie_name` is private; mirrored here).
pub fn state_cookie_name(state: &str) -> String {
    let prefix: String = state
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(12)
        .collect();
    format!("{}{prefix}", roost::auth::login::LOGIN_COOKIE_PREFIX)
}

/// `name=value` of every `Set-Cookie` of a response.
pub fn set_cookies(resp: &http::Response<roost::error::Body>) -> Vec<(String, String, bool)> {
    resp.headers()
        .get_all(http::header::SET_COOKIE)
        .iter()
        .map(|v| {
            let c = cookie::Cookie::parse(v.to_str().expect("Set-Cookie is ASCII").to_string()).expect("a cookie");
            let removal = c.max_age() == Some(cookie::time::Duration::ZERO);
            (c.name().to_string(), c.value().to_string(), removal)
        })
        .collect()
}

/// `@NOW@` → the current Unix time, `@EXP@` → 10 minutes from now: lets
/// seeds carry timestamps that stay valid (JSON claims, session fields).
pub fn times(s: &str) -> String {
    if !s.contains('@') {
        return s.to_string();
    }
    let now = now();
    s.replace("@NOW@", &now.to_string())
        .replace("@EXP@", &(now + 600).to_string())
}

/// [`times`] on bytes, untouched (even when not UTF-8) without a marker.
pub fn times_bytes(b: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !b.contains(&b'@') {
        return std::borrow::Cow::Borrowed(b);
    }
    std::borrow::Cow::Owned(times(&String::from_utf8_lossy(b)).into_bytes())
}

/// True when `ROOST_FUZZ_DEBUG` is set: targets then print what each input
/// led to (for checking that seeds reach what they are meant to).
pub fn debug() -> bool {
    static D: OnceLock<bool> = OnceLock::new();
    *D.get_or_init(|| std::env::var_os("ROOST_FUZZ_DEBUG").is_some())
}
