//! Browser sign-in without a browser: the code flow with PKCE, state and
//! nonce against the project's Auth0-shaped issuer (which enforces PKCE)
//! and against the real oidc-provider-mock; the session cookie (sealing,
//! rotation, tampering, expiry); open-redirect payloads; concurrent
//! sign-ins; state replay; sign-out; the landing redirect; security
//! headers. A cookie jar with hand-followed redirects stands in for the
//! browser (the real browser runs in tests/browser.rs).

mod support;

use roost::auth::{Session, Sessions};
use roost::config::{RoutingConfig, Scheme, SessionConfig};
use roost::public_url::PublicOrigin;
use support::http::urlencode;
use support::issuer::TestIssuer;
use support::jar::Jar;
use support::oidc_mock::OidcMock;
use support::roost::{config_text, sign_in_secrets, TestRoost, COOKIE_KEY, DOMAIN, OLD_COOKIE_KEY};

const CLIENT_ID: &str = "roost-test-client";

async fn roost_for(issuer: &str, previous_key: Option<&str>) -> TestRoost {
    let config = config_text(issuer, &format!("client_id = \"{CLIENT_ID}\""), "");
    let roost = TestRoost::start_full("127.0.0.1:0", &config, sign_in_secrets(COOKIE_KEY, previous_key), None).await;
    roost.wait_ready().await;
    roost
}

fn login_url(rd: &str) -> String {
    format!("http://{DOMAIN}/_roost/login?rd={}", urlencode(rd))
}

/// Login → provider (answers at once) → callback: returns the callback's reply.
async fn sign_in(jar: &mut Jar, rd: &str) -> support::http::Reply {
    let to_provider = jar.get(&login_url(rd)).await;
    assert_eq!(to_provider.status, 302, "{}", to_provider.body);
    let authorize = to_provider.header("location").unwrap().to_string();
    let back = jar.get(&authorize).await;
    assert_eq!(back.status, 302, "{}", back.body);
    jar.get(back.header("location").unwrap()).await
}

async fn auth_with_cookie(roost: &TestRoost, host: &str, cookie: &str, accept: &str) -> support::http::Reply {
    roost
        .client
        .get(
            &roost.url("/auth"),
            &[
                ("x-forwarded-host", host),
                ("x-forwarded-proto", "http"),
                ("x-forwarded-method", "GET"),
                ("x-forwarded-uri", "/lab"),
                ("x-forwarded-for", "198.51.100.7"),
                ("accept", accept),
                ("cookie", cookie),
            ],
        )
        .await
}

#[tokio::test]
async fn a_browser_signs_in_with_pkce_and_lands_where_it_was_going() {
    let issuer = TestIssuer::start(&["k1"]).await;
    let roost = roost_for(&issuer.url, None).await;
    let mut jar = Jar::new(roost.addr);

    let to_provider = jar.get(&login_url("http://alice.ws.roost.test/lab?x=1")).await;
    let authorize = url::Url::parse(to_provider.header("location").unwrap()).unwrap();
    assert!(authorize.as_str().starts_with(&format!("{}authorize?", issuer.url)));
    let q: std::collections::HashMap<_, _> = authorize.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["redirect_uri"], "http://ws.roost.test/_roost/callback");
    assert!(q["state"].len() >= 32 && q["nonce"].len() >= 32 && q["code_challenge"].len() == 43);
    assert_eq!(to_provider.header("cache-control"), Some("no-store"));

    let back = jar.get(authorize.as_str()).await;
    let done = jar.get(back.header("location").unwrap()).await;
    assert_eq!(done.status, 302, "{}", done.body);
    assert_eq!(done.header("location"), Some("http://alice.ws.roost.test/lab?x=1"));
    let session_cookie = done
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|c| c.starts_with("roost_session="))
        .expect("a session cookie")
        .to_string();
    assert!(session_cookie.len() < 1024, "{} bytes", session_cookie.len());
    for attr in ["HttpOnly", "SameSite=Lax", "Domain=ws.roost.test", "Path=/"] {
        assert!(session_cookie.contains(attr), "{attr} missing: {session_cookie}");
    }
    assert!(!session_cookie.contains("Secure"), "http origin: no Secure");
    assert!(
        !jar.cookies.keys().any(|k| k.starts_with("roost_login_")),
        "the state cookie is cleared: {:?}",
        jar.cookies.keys()
    );

    let cookie = format!("theme=dark; {}", jar.cookie_header());
    let ok = auth_with_cookie(&roost, "alice.ws.roost.test", &cookie, "text/html").await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.header("x-roost-user"), Some("alice"));
    assert_eq!(
        ok.header("cookie"),
        Some("theme=dark"),
        "roost's cookie never reaches the workspace"
    );
    let theirs = auth_with_cookie(&roost, "bob.ws.roost.test", &cookie, "text/html").await;
    assert_eq!(theirs.status, 403);
}

#[tokio::test]
async fn sign_in_works_with_the_real_oidc_provider_mock() {
    let Some(provider) = OidcMock::start().await else {
        return;
    };
    let roost = roost_for(&provider.issuer, None).await;
    let mut jar = Jar::new(roost.addr);
    let to_provider = jar.get(&login_url("http://alice.ws.roost.test/")).await;
    let authorize = to_provider.header("location").unwrap().to_string();
    assert!(authorize.starts_with(&provider.issuer), "{authorize}");
    let form = jar.get(&authorize).await;
    assert_eq!(form.status, 200, "the provider shows its sign-in form");
    let back = jar.post_form(&authorize, "sub=alice", &[]).await;
    assert_eq!(back.status, 302, "{}", back.body);
    let done = jar.get(back.header("location").unwrap()).await;
    assert_eq!(done.status, 302, "{}", done.body);
    assert_eq!(done.header("location"), Some("http://alice.ws.roost.test/"));
    let ok = auth_with_cookie(&roost, "alice.ws.roost.test", &jar.cookie_header(), "text/html").await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.header("x-roost-user"), Some("alice"));

    // Sign-out (the page's button: a POST with the form token) continues
    // at the provider's end_session_endpoint.
    let out = jar.sign_out(&format!("http://{DOMAIN}")).await;
    assert_eq!(out.status, 303, "{}", out.body);
    let location = out.header("location").unwrap();
    assert!(
        location.starts_with(&format!(
            "{}/oauth2/end_session?post_logout_redirect_uri=",
            provider.issuer
        )),
        "{location}"
    );
    assert!(!jar.cookies.contains_key("roost_session"));
}

#[tokio::test]
async fn open_redirect_payloads_all_fall_back_to_the_users_own_workspace() {
    let issuer = TestIssuer::start(&["k1"]).await;
    let roost = roost_for(&issuer.url, None).await;
    let own = "http://alice.ws.roost.test/";
    let payloads = [
        "https://evil.example/",
        "//evil.example/",
        "\\\\evil.example/",
        "/\\evil.example/",
        "http://evil.example\\@alice.ws.roost.test/",
        "http://alice.ws.roost.test@evil.example/",
        "http://user:pass@alice.ws.roost.test/",
        "http://ws.roost.test.evil.example/",
        "http://evilws.roost.test/",
        "http://a.b.ws.roost.test/",
        "https://alice.ws.roost.test/",
        "http://alice.ws.roost.test:8443/",
        "javascript:alert(document.cookie)",
        "JAVASCRIPT:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "http:%2F%2Fevil.example",
        "%68ttp://evil.example/",
        "http://127.0.0.1/",
        "ftp://alice.ws.roost.test/",
        "http://evil.example%2F.ws.roost.test/",
    ];
    assert!(payloads.len() >= 15);
    for payload in payloads {
        let mut jar = Jar::new(roost.addr);
        let done = sign_in(&mut jar, payload).await;
        assert_eq!(done.status, 302, "{payload}: {}", done.body);
        let location = done.header("location").unwrap();
        assert!(
            location == own || location.starts_with("http://ws.roost.test/"),
            "{payload:?} redirected to {location:?}"
        );
    }
    // What is allowed stays exactly as asked.
    for ok in [
        "http://alice.ws.roost.test/lab/tree?a=1#x",
        "http://ws.roost.test/_roost/",
    ] {
        let mut jar = Jar::new(roost.addr);
        let done = sign_in(&mut jar, ok).await;
        assert_eq!(done.header("location"), Some(ok));
    }
}

#[tokio::test]
async fn five_sign_ins_at_once_from_one_browser_all_succeed_and_state_cookies_stay_bounded() {
    let issuer = TestIssuer::start(&["k1"]).await;
    let roost = roost_for(&issuer.url, None).await;
    let mut jar = Jar::new(roost.addr);
    // Five tabs start signing in before any finishes.
    let mut callbacks = Vec::new();
    for tab in 1..=5 {
        let to_provider = jar
            .get(&login_url(&format!("http://alice.ws.roost.test/tab{tab}")))
            .await;
        let mut provider_jar = jar.clone();
        let back = provider_jar.get(to_provider.header("location").unwrap()).await;
        callbacks.push((tab, back.header("location").unwrap().to_string()));
    }
    assert_eq!(jar.cookies.keys().filter(|k| k.starts_with("roost_login_")).count(), 5);
    // They finish in another order; each lands in its own tab's page.
    let mut tasks = Vec::new();
    for (tab, callback) in callbacks.into_iter().rev() {
        let mut tab_jar = jar.clone();
        tasks.push(tokio::spawn(async move { (tab, tab_jar.get(&callback).await) }));
    }
    for task in tasks {
        let (tab, done) = task.await.unwrap();
        assert_eq!(done.status, 302, "tab {tab}: {}", done.body);
        assert_eq!(
            done.header("location"),
            Some(format!("http://alice.ws.roost.test/tab{tab}").as_str())
        );
        assert!(done.header("set-cookie").is_some());
    }
    // Many abandoned attempts never pile up.
    for _ in 0..12 {
        jar.get(&login_url("http://alice.ws.roost.test/")).await;
    }
    let pending = jar.cookies.keys().filter(|k| k.starts_with("roost_login_")).count();
    assert!(pending <= 8, "{pending} state cookies");
}

#[tokio::test]
async fn state_replay_a_missing_verifier_and_a_swapped_code_all_fail() {
    let issuer = TestIssuer::start(&["k1"]).await;
    let roost = roost_for(&issuer.url, None).await;

    // Replay: the same callback, with the same state cookie, a second time.
    let mut jar = Jar::new(roost.addr);
    let to_provider = jar.get(&login_url("http://alice.ws.roost.test/")).await;
    let back = jar.get(to_provider.header("location").unwrap()).await;
    let callback = back.header("location").unwrap().to_string();
    let mut replayer = jar.clone();
    assert_eq!(jar.get(&callback).await.status, 302);
    let replay = replayer.get(&callback).await;
    assert_eq!(replay.status, 400, "{}", replay.body);
    assert!(!replayer.cookies.contains_key("roost_session"));

    // No state cookie (so no PKCE verifier): refused before any exchange.
    let mut jar = Jar::new(roost.addr);
    let to_provider = jar.get(&login_url("http://alice.ws.roost.test/")).await;
    let back = jar.get(to_provider.header("location").unwrap()).await;
    jar.cookies.retain(|k, _| !k.starts_with("roost_login_"));
    let exchanges = issuer.token_requests();
    let refused = jar.get(back.header("location").unwrap()).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_eq!(
        issuer.token_requests(),
        exchanges,
        "no code exchange without a verifier"
    );
    assert!(!jar.cookies.contains_key("roost_session"));

    // A code issued for one attempt, brought back with another attempt's
    // state: roost sends that attempt's verifier, and the provider refuses.
    let mut jar = Jar::new(roost.addr);
    let a = jar.get(&login_url("http://alice.ws.roost.test/a")).await;
    let b = jar.get(&login_url("http://alice.ws.roost.test/b")).await;
    let code_a = {
        let back = jar.clone().get(a.header("location").unwrap()).await;
        let url = url::Url::parse(back.header("location").unwrap()).unwrap();
        url.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned()
    };
    let state_b = {
        let url = url::Url::parse(b.header("location").unwrap()).unwrap();
        url.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned()
    };
    let swapped = jar
        .get(&format!(
            "http://{DOMAIN}/_roost/callback?code={code_a}&state={}",
            urlencode(&state_b)
        ))
        .await;
    assert_ne!(swapped.status, 302, "{}", swapped.body);
    assert!(!jar.cookies.contains_key("roost_session"));

    // A callback with nothing in it.
    let bare = jar.get(&format!("http://{DOMAIN}/_roost/callback")).await;
    assert_eq!(bare.status, 400);
    let denied = jar
        .get(&format!(
            "http://{DOMAIN}/_roost/callback?error=access_denied&state={}",
            urlencode(&state_b)
        ))
        .await;
    assert_eq!(denied.status, 403);
}

fn sessions(key: &str) -> Sessions {
    let secrets = sign_in_secrets(key, None);
    let config = SessionConfig {
        lifetime: std::time::Duration::from_secs(8 * 3600),
        max_age: std::time::Duration::from_secs(7 * 86400),
        login_timeout: std::time::Duration::from_secs(600),
        logout_return_url: None,
    };
    let origin = PublicOrigin::new(&RoutingConfig {
        domain: DOMAIN.into(),
        entrypoints: vec!["web".into()],
        roost_url: "http://roost".into(),
        auth_url: "http://roost:8081".into(),
        scheme: Scheme::Http,
        tls_resolver: None,
        public_port: 80,
    });
    Sessions::new(&secrets, &config, &origin).unwrap()
}

fn cookie_of(set_cookie: &http::HeaderValue) -> String {
    let c = cookie::Cookie::parse(set_cookie.to_str().unwrap().to_string()).unwrap();
    format!("{}={}", c.name(), c.value())
}

#[tokio::test]
async fn tampered_expired_and_foreign_cookies_are_refused_and_the_previous_key_still_works() {
    let issuer = TestIssuer::start(&["k1"]).await;
    let roost = roost_for(&issuer.url, Some(OLD_COOKIE_KEY)).await;
    let host = "alice.ws.roost.test";

    // Sealed with the previous key: accepted, and re-sealed with the current one.
    let old = sessions(OLD_COOKIE_KEY);
    let from_old = cookie_of(&old.set_cookie(&old.start("alice", "alice", None, false, vec![])));
    let ok = auth_with_cookie(&roost, host, &from_old, "text/html").await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let renewed = ok.headers.get("set-cookie").expect("re-sealed with the current key");
    let current = sessions(COOKIE_KEY);
    let value = cookie_of(renewed);
    assert!(current.open(value.trim_start_matches("roost_session=")).is_ok());

    let foreign_key = sessions("some-other-key-0123456789abcdef0123456789");
    let foreign = cookie_of(&foreign_key.set_cookie(&foreign_key.start("alice", "alice", None, false, vec![])));
    let mut tampered = value.clone().into_bytes();
    let i = tampered.len() - 5;
    tampered[i] = if tampered[i] == b'x' { b'y' } else { b'x' };
    let tampered = String::from_utf8(tampered).unwrap();
    let expired = {
        let mut s: Session = current.start("alice", "alice", None, false, vec![]);
        s.expires = s.signed_in - 1;
        cookie_of(&current.set_cookie(&s))
    };
    for (what, cookie) in [
        ("foreign key", &foreign),
        ("tampered", &tampered),
        ("expired", &expired),
    ] {
        let browser = auth_with_cookie(&roost, host, cookie, "text/html").await;
        assert_eq!(browser.status, 302, "{what}: a browser signs in again");
        assert!(browser
            .header("location")
            .unwrap()
            .starts_with("http://ws.roost.test/_roost/login?rd="));
        let api = auth_with_cookie(&roost, host, cookie, "application/json").await;
        assert_eq!(api.status, 401, "{what}: an API client is refused");
    }
}

#[tokio::test]
async fn the_bare_domain_sends_people_to_their_workspace_and_sign_out_ends_the_session() {
    let issuer = TestIssuer::start(&["k1"]).await;
    let roost = roost_for(&issuer.url, None).await;
    let mut jar = Jar::new(roost.addr);
    let landing = jar.get(&format!("http://{DOMAIN}/")).await;
    assert_eq!(landing.status, 302);
    assert!(landing
        .header("location")
        .unwrap()
        .starts_with("http://ws.roost.test/_roost/login?rd="));

    let done = sign_in(&mut jar, "http://ws.roost.test/").await;
    assert_eq!(done.header("location"), Some("http://ws.roost.test/"));
    let landing = jar.get(&format!("http://{DOMAIN}/")).await;
    assert_eq!(landing.header("location"), Some("http://alice.ws.roost.test/"));

    // Workspace hosts send roost's own pages to the bare domain.
    let moved = jar.get("http://alice.ws.roost.test/_roost/logout").await;
    assert_eq!(moved.header("location"), Some("http://ws.roost.test/_roost/logout"));
    let posted = jar
        .post_form("http://alice.ws.roost.test/_roost/logout", "csrf=x", &[])
        .await;
    assert_eq!(posted.status, 303, "a POST there is sent to the domain's sign-out page");
    assert_eq!(posted.header("location"), Some("http://ws.roost.test/_roost/logout"));
    assert!(jar.cookies.contains_key("roost_session"), "and signs nobody out");

    let out = jar.sign_out(&format!("http://{DOMAIN}")).await;
    assert_eq!(out.status, 303, "{}", out.body);
    let expected = format!(
        "{}oidc/logout?post_logout_redirect_uri={}&client_id={CLIENT_ID}",
        issuer.url,
        urlencode("http://ws.roost.test/_roost/signed-out")
    );
    assert_eq!(out.header("location"), Some(expected.as_str()));
    let cleared = out.header("set-cookie").unwrap();
    assert!(
        cleared.starts_with("roost_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    assert!(!jar.cookies.contains_key("roost_session"));
    let landing = jar.get(&format!("http://{DOMAIN}/")).await;
    assert!(landing.header("location").unwrap().contains("/_roost/login"));

    let page = jar.get(&format!("http://{DOMAIN}/_roost/signed-out")).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("signed out"));
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert!(page.header("referrer-policy").is_some());
    assert!(page.header("strict-transport-security").is_none(), "no HSTS over http");

    // Sign-in is off without a client id: the endpoints say so.
    let plain = TestRoost::start_ready(&config_text(&issuer.url, "", "")).await;
    let mut jar = Jar::new(plain.addr);
    assert_eq!(jar.get(&login_url("http://alice.ws.roost.test/")).await.status, 404);
}
