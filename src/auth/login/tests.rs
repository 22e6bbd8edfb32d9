//! Sign-in without a network: the provider's discovery, keys and token
//! endpoint come from memory. The authorization redirect (state cookie,
//! PKCE S256, `redirect_uri`, `rd`), the callback's refusals (missing,
//! forged, expired and replayed state) and a complete sign-in.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::header::{CACHE_CONTROL, LOCATION};
use serde_json::json;

use super::*;
use crate::auth::session::SESSION_COOKIE;
use crate::auth::test_support::{
    claims, config, jwk, key_store, sign, FakeProvider, Fixture, CLIENT_ID, DOMAIN, ISSUER,
};
use crate::metrics::Metrics;

fn memory_store() -> Arc<dyn Store> {
    Arc::new(crate::store::Embedded::in_memory())
}

struct Setup {
    login: Login,
    provider: Arc<FakeProvider>,
    sessions: Arc<Sessions>,
    origin: PublicOrigin,
}

async fn setup() -> Setup {
    let config = config(ISSUER, "");
    let provider = FakeProvider::new(ISSUER, vec![jwk(Fixture::K1)]);
    let keys = key_store(&config, &provider);
    keys.refresh().await.expect("keys from memory");
    let verifier = Arc::new(Verifier::new(&config.oidc, keys.clone(), Arc::new(Metrics::new())));
    let origin = PublicOrigin::new(&config.routing);
    let sessions = Arc::new(Sessions::new(&config.secrets, &config.session, &origin).expect("a cookie key"));
    let login = Login::new(
        &config,
        &origin,
        sessions.clone(),
        keys,
        provider.clone(),
        verifier,
        memory_store(),
    )
    .expect("a client_id");
    Setup {
        login,
        provider,
        sessions,
        origin,
    }
}

/// A sign-in redirect, taken apart.
struct Started {
    location: url::Url,
    /// The state cookie: its name and sealed value.
    cookie: (String, String),
    /// What the state cookie carries.
    pending: Pending,
    /// Every `Set-Cookie`, parsed.
    set_cookies: Vec<Cookie<'static>>,
}

impl Started {
    fn param(&self, name: &str) -> String {
        self.location
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("no {name} in {}", self.location))
    }

    /// The `Cookie` header a browser sends back to the callback.
    fn cookie_header(&self) -> HeaderValue {
        HeaderValue::from_str(&format!("{}={}", self.cookie.0, self.cookie.1)).expect("a header value")
    }

    /// The callback's query for this attempt with `code`.
    fn callback_query(&self, code: &str) -> String {
        format!("code={code}&state={}", self.pending.state)
    }
}

fn set_cookies(resp: &Response<Body>) -> Vec<Cookie<'static>> {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| Cookie::parse(v.to_str().expect("text").to_string()).expect("a cookie"))
        .collect()
}

fn start(s: &Setup, rd: Option<&str>, cookie: Option<&HeaderValue>) -> Started {
    let resp = s.login.start(rd, cookie).expect("a redirect");
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert_eq!(resp.headers()[CACHE_CONTROL], "no-store");
    let location = resp.headers()[LOCATION].to_str().expect("text");
    let location = url::Url::parse(location).expect("an absolute URL");
    let set_cookies = set_cookies(&resp);
    let state_cookie = set_cookies
        .iter()
        .rfind(|c| c.name().starts_with(LOGIN_COOKIE_PREFIX) && !c.value().is_empty())
        .expect("a state cookie");
    let cookie = (state_cookie.name().to_string(), state_cookie.value().to_string());
    let (json, old_key) = s
        .sessions
        .unseal(&cookie.0, &cookie.1)
        .expect("sealed with the cookie key");
    assert!(!old_key);
    let pending: Pending = serde_json::from_str(&json).expect("a pending sign-in");
    Started {
        location,
        cookie,
        pending,
        set_cookies,
    }
}

async fn refusal(s: &Setup, query: Option<&str>, cookie: Option<&HeaderValue>) -> LoginError {
    match s.login.callback(query, cookie).await {
        Ok(resp) => panic!("signed in: {:?}", resp.headers()),
        Err(e) => e,
    }
}

/// A sealed state cookie for `pending`, as `start` would set it.
fn sealed(s: &Setup, pending: &Pending) -> (String, HeaderValue) {
    let name = cookie_name(&pending.state);
    let value = s
        .sessions
        .seal(&name, &serde_json::to_string(pending).expect("serializable"));
    let header = HeaderValue::from_str(&format!("{name}={value}")).expect("a header value");
    (name, header)
}

fn pending(state: &str, expires: u64) -> Pending {
    Pending {
        state: state.to_string(),
        nonce: "nonce".into(),
        verifier: "verifier".into(),
        rd: None,
        expires,
    }
}

#[tokio::test]
async fn start_sends_the_browser_to_the_provider_with_pkce() {
    let s = setup().await;
    let started = start(&s, None, None);
    let base = started.location.as_str().split('?').next().expect("a URL");
    assert_eq!(base, s.provider.authorize_uri());
    assert_eq!(started.param("response_type"), "code");
    assert_eq!(started.param("client_id"), CLIENT_ID);
    assert_eq!(
        started.param("redirect_uri"),
        format!("https://{DOMAIN}/_roost/callback")
    );
    assert_eq!(started.param("redirect_uri"), s.origin.url(CALLBACK_PATH));
    assert_eq!(started.param("scope"), "openid profile email");
    assert_eq!(started.param("state"), started.pending.state);
    assert_eq!(started.param("nonce"), started.pending.nonce);
    assert_eq!(started.param("code_challenge_method"), "S256");
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(started.pending.verifier.as_bytes()));
    assert_eq!(started.param("code_challenge"), challenge);
    // 24 and 32 random bytes, base64url.
    assert_eq!(started.pending.state.len(), 32);
    assert_eq!(started.pending.nonce.len(), 32);
    assert_eq!(started.pending.verifier.len(), 43);
    assert_eq!(started.pending.rd, None);
    let now = now_secs();
    assert!((now + 599..=now + 600).contains(&started.pending.expires));
}

#[tokio::test]
async fn the_state_cookie_is_scoped_short_lived_and_named_by_the_state() {
    let s = setup().await;
    let started = start(&s, None, None);
    assert_eq!(started.set_cookies.len(), 1, "no older attempts to expire");
    let c = &started.set_cookies[0];
    let prefix: String = started.pending.state.chars().take(12).collect();
    assert_eq!(c.name(), format!("{LOGIN_COOKIE_PREFIX}{prefix}"));
    assert_eq!(c.path(), Some("/_roost/"));
    assert_eq!(c.max_age(), Some(cookie::time::Duration::seconds(600)));
    assert_eq!(c.http_only(), Some(true));
    assert_eq!(c.secure(), Some(true));
    assert_eq!(c.same_site(), Some(cookie::SameSite::Lax));
    assert!(!c.value().contains(&started.pending.nonce), "the cookie is sealed");
}

#[tokio::test]
async fn every_attempt_has_its_own_state_nonce_and_verifier() {
    let s = setup().await;
    let a = start(&s, None, None);
    let b = start(&s, None, None);
    assert_ne!(a.pending.state, b.pending.state);
    assert_ne!(a.pending.nonce, b.pending.nonce);
    assert_ne!(a.pending.verifier, b.pending.verifier);
    assert_ne!(a.cookie.0, b.cookie.0);
}

#[tokio::test]
async fn rd_is_kept_only_when_safe() {
    let s = setup().await;
    let kept = [
        (
            "https://alice.ws.example.com/lab?x=1",
            "https://alice.ws.example.com/lab?x=1",
        ),
        (
            "https://ws.example.com/_roost/status",
            "https://ws.example.com/_roost/status",
        ),
        ("/_roost/status", "https://ws.example.com/_roost/status"),
    ];
    for (rd, normalized) in kept {
        assert_eq!(
            start(&s, Some(rd), None).pending.rd.as_deref(),
            Some(normalized),
            "{rd}"
        );
    }
    for rd in [
        "https://evil.example.net/",
        "//evil.example.net/",
        "http://alice.ws.example.com/",
        "https://alice.ws.example.com:8443/",
        "https://user@alice.ws.example.com/",
        "https://a.b.ws.example.com/",
        "javascript:alert(1)",
        "",
    ] {
        assert_eq!(start(&s, Some(rd), None).pending.rd, None, "{rd:?} kept");
    }
}

#[tokio::test]
async fn no_discovery_no_sign_in() {
    let config = config(ISSUER, "");
    let provider = FakeProvider::new(ISSUER, vec![jwk(Fixture::K1)]);
    let keys = key_store(&config, &provider);
    let verifier = Arc::new(Verifier::new(&config.oidc, keys.clone(), Arc::new(Metrics::new())));
    let origin = PublicOrigin::new(&config.routing);
    let sessions = Arc::new(Sessions::new(&config.secrets, &config.session, &origin).expect("a cookie key"));
    let login = Login::new(&config, &origin, sessions, keys, provider, verifier, memory_store()).expect("a client_id");
    assert!(matches!(login.start(None, None), Err(LoginError::NotDiscovered)));
}

#[tokio::test]
async fn without_a_client_id_there_is_no_sign_in() {
    let mut config = config(ISSUER, "");
    config.oidc.client_id = None;
    let provider = FakeProvider::new(ISSUER, vec![jwk(Fixture::K1)]);
    let keys = key_store(&config, &provider);
    let verifier = Arc::new(Verifier::new(&config.oidc, keys.clone(), Arc::new(Metrics::new())));
    let origin = PublicOrigin::new(&config.routing);
    let sessions = Arc::new(Sessions::new(&config.secrets, &config.session, &origin).expect("a cookie key"));
    assert!(Login::new(&config, &origin, sessions, keys, provider, verifier, memory_store()).is_none());
}

#[tokio::test]
async fn at_most_max_pending_attempts_the_oldest_give_way() {
    let s = setup().await;
    let now = now_secs();
    // MAX_PENDING attempts under way, the oldest expiring first.
    let mut header = Vec::new();
    let mut names = Vec::new();
    for i in 0..MAX_PENDING as u64 {
        let p = pending(&format!("state{i:02}xxxxxxxxxxxxxxxxxxxxxxx"), now + 100 + i);
        let (name, value) = sealed(&s, &p);
        header.push(value.to_str().expect("text").to_string());
        names.push(name);
    }
    let header = HeaderValue::from_str(&header.join("; ")).expect("a header");
    let started = start(&s, None, Some(&header));
    let gone: Vec<_> = started.set_cookies.iter().filter(|c| c.value().is_empty()).collect();
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].name(), names[0]);
    assert_eq!(gone[0].max_age(), Some(cookie::time::Duration::ZERO));
    assert_eq!(gone[0].path(), Some("/_roost/"));
    assert_eq!(started.set_cookies.len(), 2);
}

#[tokio::test]
async fn unreadable_attempts_give_way_first() {
    let s = setup().await;
    let now = now_secs();
    let mut header = vec![format!("{LOGIN_COOKIE_PREFIX}garbage=not-sealed")];
    for i in 0..MAX_PENDING as u64 - 1 {
        let p = pending(&format!("state{i:02}xxxxxxxxxxxxxxxxxxxxxxx"), now + 100 + i);
        header.push(sealed(&s, &p).1.to_str().expect("text").to_string());
    }
    // Other cookies do not count.
    header.push(format!("{SESSION_COOKIE}=whatever"));
    let header = HeaderValue::from_str(&header.join("; ")).expect("a header");
    let started = start(&s, None, Some(&header));
    let gone: Vec<_> = started
        .set_cookies
        .iter()
        .filter(|c| c.value().is_empty())
        .map(|c| c.name().to_string())
        .collect();
    assert_eq!(gone, [format!("{LOGIN_COOKIE_PREFIX}garbage")]);
    // Fewer than MAX_PENDING: none.
    let one = sealed(&s, &pending("onlyonexxxxxxxxxxxxxxxxxxxxxxxxx", now + 100)).1;
    assert_eq!(start(&s, None, Some(&one)).set_cookies.len(), 1);
}

mod callback;
