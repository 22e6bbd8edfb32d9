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
    let login = Login::new(&config, &origin, sessions.clone(), keys, provider.clone(), verifier).expect("a client_id");
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
    let login = Login::new(&config, &origin, sessions, keys, provider, verifier).expect("a client_id");
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
    assert!(Login::new(&config, &origin, sessions, keys, provider, verifier).is_none());
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

#[tokio::test]
async fn a_callback_without_state_or_code_is_incomplete() {
    let s = setup().await;
    let started = start(&s, None, None);
    let cookie = started.cookie_header();
    let state = started.pending.state.clone();
    let long_state = "s".repeat(65);
    for query in [
        None,
        Some(String::new()),
        Some("code=abc".to_string()),
        Some(format!("state={state}")),
        Some(format!("state={state}&code=")),
        Some("code=abc&state=".to_string()),
        Some(format!("code=abc&state={long_state}")),
    ] {
        let e = refusal(&s, query.as_deref(), Some(&cookie)).await;
        assert!(matches!(e, LoginError::Incomplete), "{query:?}: {e:?}");
    }
    // None of those used the state up.
    assert!(!s.login.used.contains_key(&state));
}

#[tokio::test]
async fn a_provider_error_is_reported_briefly() {
    let s = setup().await;
    let started = start(&s, None, None);
    let long = "x".repeat(200);
    let query = format!("error={long}&state={}", started.pending.state);
    match refusal(&s, Some(&query), Some(&started.cookie_header())).await {
        LoginError::Denied(text) => assert_eq!(text, "x".repeat(64)),
        e => panic!("{e:?}"),
    }
    let query = format!("error=access_denied&state={}&code=abc", started.pending.state);
    match refusal(&s, Some(&query), Some(&started.cookie_header())).await {
        LoginError::Denied(text) => assert_eq!(text, "access_denied"),
        e => panic!("{e:?}"),
    }
    assert!(s.provider.posts().is_empty());
}

#[tokio::test]
async fn a_callback_without_its_state_cookie_has_nothing_pending() {
    let s = setup().await;
    let started = start(&s, None, None);
    let query = started.callback_query("abc");
    // No cookie at all, or only others.
    assert!(matches!(refusal(&s, Some(&query), None).await, LoginError::NoPending));
    let other = start(&s, None, None).cookie_header();
    assert!(matches!(
        refusal(&s, Some(&query), Some(&other)).await,
        LoginError::NoPending
    ));
    // The right name, but a value not sealed by roost.
    let forged = HeaderValue::from_str(&format!("{}=bm90IHNlYWxlZA", started.cookie.0)).expect("a header");
    assert!(matches!(
        refusal(&s, Some(&query), Some(&forged)).await,
        LoginError::NoPending
    ));
    // Another attempt's sealed value under this attempt's name.
    let other = start(&s, None, None);
    let moved = HeaderValue::from_str(&format!("{}={}", started.cookie.0, other.cookie.1)).expect("a header");
    assert!(matches!(
        refusal(&s, Some(&query), Some(&moved)).await,
        LoginError::NoPending
    ));
    assert!(s.provider.posts().is_empty());
}

#[tokio::test]
async fn a_state_that_only_shares_the_cookies_prefix_is_refused() {
    let s = setup().await;
    let started = start(&s, None, None);
    let mut other_state = started.pending.state.clone();
    other_state.replace_range(20..21, if &other_state[20..21] == "A" { "B" } else { "A" });
    assert_eq!(cookie_name(&other_state), started.cookie.0);
    let query = format!("code=abc&state={other_state}");
    assert!(matches!(
        refusal(&s, Some(&query), Some(&started.cookie_header())).await,
        LoginError::NoPending
    ));
    assert!(s.provider.posts().is_empty());
}

#[tokio::test]
async fn an_expired_attempt_is_refused() {
    let s = setup().await;
    let state = "expiredstatexxxxxxxxxxxxxxxxxxxx";
    let (_, header) = sealed(&s, &pending(state, now_secs() - 1));
    let query = format!("code=abc&state={state}");
    assert!(matches!(
        refusal(&s, Some(&query), Some(&header)).await,
        LoginError::Expired
    ));
    assert!(s.provider.posts().is_empty());
}

#[tokio::test]
async fn a_state_is_used_once_even_when_the_exchange_failed() {
    let s = setup().await;
    let started = start(&s, None, None);
    let query = started.callback_query("abc");
    let cookie = started.cookie_header();
    // The token endpoint refuses the code (HTTP 400).
    match refusal(&s, Some(&query), Some(&cookie)).await {
        LoginError::Exchange(FetchError::Status(400)) => {}
        e => panic!("{e:?}"),
    }
    assert_eq!(s.provider.posts().len(), 1);
    // The same state again: refused before any exchange.
    assert!(matches!(
        refusal(&s, Some(&query), Some(&cookie)).await,
        LoginError::Replayed
    ));
    assert!(matches!(
        refusal(&s, Some(&started.callback_query("another-code")), Some(&cookie)).await,
        LoginError::Replayed
    ));
    assert_eq!(s.provider.posts().len(), 1);
}

#[tokio::test]
async fn unreadable_token_endpoint_answers_are_refused() {
    let s = setup().await;
    for answer in [
        json!({}),
        json!({"access_token": "x"}),
        json!("text"),
        json!({"id_token": 7}),
    ] {
        let started = start(&s, None, None);
        s.provider.answer_token(Some(answer.clone()));
        let e = refusal(&s, Some(&started.callback_query("abc")), Some(&started.cookie_header())).await;
        assert!(matches!(e, LoginError::BadTokenResponse), "{answer}: {e:?}");
    }
}

/// An ID token for alice, for this client, with `nonce`.
fn id_token(nonce: &str) -> String {
    let mut c = claims("auth0|alice");
    c["aud"] = json!(CLIENT_ID);
    c["nonce"] = json!(nonce);
    sign(Fixture::K1, Some("k1"), &c)
}

#[tokio::test]
async fn a_complete_sign_in_sets_the_session_and_returns_to_rd() {
    let s = setup().await;
    let started = start(&s, Some("https://alice.ws.example.com/lab"), None);
    s.provider
        .answer_token(Some(json!({ "id_token": id_token(&started.pending.nonce) })));
    let resp = s
        .login
        .callback(
            Some(&started.callback_query("the-code")),
            Some(&started.cookie_header()),
        )
        .await
        .expect("signed in");
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert_eq!(resp.headers()[LOCATION], "https://alice.ws.example.com/lab");
    // The code exchange: PKCE verifier, redirect_uri, client credentials.
    let posts = s.provider.posts();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].0, s.provider.token_uri());
    let form: Vec<(String, String)> = url::form_urlencoded::parse(posts[0].1.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let expected: Vec<(String, String)> = [
        ("grant_type", "authorization_code"),
        ("code", "the-code"),
        ("redirect_uri", &*s.origin.url(CALLBACK_PATH)),
        ("client_id", CLIENT_ID),
        ("code_verifier", &*started.pending.verifier),
        ("client_secret", "test-client-secret"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(form, expected);
    // The session cookie, and the state cookie cleared.
    let cookies = set_cookies(&resp);
    assert_eq!(cookies.len(), 2);
    assert_eq!(cookies[0].name(), SESSION_COOKIE);
    let session = s.sessions.open(cookies[0].value()).expect("a valid session").session;
    assert_eq!(session.sub, "auth0|alice");
    assert_eq!(session.username, "auth0|alice");
    assert_eq!(session.email.as_deref(), Some("auth0|alice@example.com"));
    assert!(!session.admin);
    assert_eq!(cookies[1].name(), started.cookie.0);
    assert_eq!(cookies[1].value(), "");
    assert_eq!(cookies[1].max_age(), Some(cookie::time::Duration::ZERO));
    assert_eq!(cookies[1].path(), Some("/_roost/"));
    // And never again with this state.
    assert!(matches!(
        refusal(
            &s,
            Some(&started.callback_query("the-code")),
            Some(&started.cookie_header())
        )
        .await,
        LoginError::Replayed
    ));
}

#[tokio::test]
async fn without_rd_the_user_goes_to_their_workspace() {
    let s = setup().await;
    let started = start(&s, Some("https://evil.example.net/"), None);
    s.provider
        .answer_token(Some(json!({ "id_token": id_token(&started.pending.nonce) })));
    let resp = s
        .login
        .callback(Some(&started.callback_query("abc")), Some(&started.cookie_header()))
        .await
        .expect("signed in");
    let slug = crate::slug::slug_for("auth0|alice");
    assert_eq!(resp.headers()[LOCATION], s.origin.workspace_url(&slug).as_str());
    assert!(resp.headers()[LOCATION]
        .to_str()
        .expect("text")
        .ends_with(&format!(".{DOMAIN}/")));
}

#[tokio::test]
async fn an_id_token_for_another_sign_in_is_refused() {
    let s = setup().await;
    let started = start(&s, None, None);
    // The nonce of another attempt.
    s.provider
        .answer_token(Some(json!({ "id_token": id_token("another-nonce") })));
    let e = refusal(&s, Some(&started.callback_query("abc")), Some(&started.cookie_header())).await;
    assert!(
        matches!(e, LoginError::IdToken(AuthError::Claims("nonce mismatch"))),
        "{e:?}"
    );
    // An access token (audience: the API) is no ID token.
    let started = start(&s, None, None);
    let mut access = claims("auth0|alice");
    access["nonce"] = json!(started.pending.nonce);
    s.provider
        .answer_token(Some(json!({ "id_token": sign(Fixture::K1, Some("k1"), &access) })));
    let e = refusal(&s, Some(&started.callback_query("abc")), Some(&started.cookie_header())).await;
    assert!(matches!(e, LoginError::IdToken(AuthError::WrongAudience)), "{e:?}");
    // Signed by a key the provider never published.
    let started = start(&s, None, None);
    let mut forged = claims("auth0|alice");
    forged["aud"] = json!(CLIENT_ID);
    forged["nonce"] = json!(started.pending.nonce);
    s.provider.answer_token(Some(
        json!({ "id_token": sign(Fixture::Attacker, Some("k1"), &forged) }),
    ));
    let e = refusal(&s, Some(&started.callback_query("abc")), Some(&started.cookie_header())).await;
    assert!(matches!(e, LoginError::IdToken(AuthError::BadSignature)), "{e:?}");
}

#[tokio::test]
async fn logout_clears_the_session_and_returns_to_the_signed_out_page() {
    let s = setup().await;
    let resp = s.login.logout();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[LOCATION], "https://ws.example.com/_roost/signed-out");
    let cookies = set_cookies(&resp);
    assert_eq!(cookies.len(), 1);
    assert_eq!(cookies[0].name(), SESSION_COOKIE);
    assert_eq!(cookies[0].max_age(), Some(cookie::time::Duration::ZERO));
    // The return page is roost's own: no other origin for the form's CSP.
    assert!(s.login.sign_out_origins().is_empty());
}

#[test]
fn cookie_names_keep_a_safe_prefix_of_the_state() {
    assert_eq!(cookie_name("abcdefghijklmnop"), "roost_login_abcdefghijkl");
    assert_eq!(cookie_name("a-b_c;d=e f"), "roost_login_a-b_cdef");
    assert_eq!(cookie_name(""), "roost_login_");
}
