//! The callback: its refusals (incomplete, no pending attempt, forged,
//! expired, replayed, unreadable answers) and a complete sign-in.

use super::*;

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
    let unused = s
        .login
        .store
        .use_once(&state_key(&state), Duration::from_secs(60))
        .await;
    assert!(unused.unwrap(), "the state is still unused");
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
