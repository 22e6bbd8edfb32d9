//! `/auth` against a real listener, with the Auth0-shaped test issuer on
//! loopback: who passes, who does not, and what they are told.

mod support;

use serde_json::json;
use support::issuer::TestIssuer;
use support::roost::{config_text, workspace_host, TestRoost, AUDIENCE};
use support::tokens::{auth0_claims, sign};

#[tokio::test]
async fn owner_passes_with_identity_headers() {
    let issuer = TestIssuer::start(&["k1"]).await;
    let roost = TestRoost::start_ready(&config_text(&issuer.url, "", "")).await;
    let token = sign("k1", Some("k1"), &auth0_claims(&issuer.url, AUDIENCE, "alice"));
    let r = roost.auth(&workspace_host("alice"), Some(&token)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-roost-user"), Some("alice"));
    assert_eq!(r.header("x-roost-workspace"), Some("alice"));
    assert_eq!(r.header("x-roost-email"), Some("alice@example.com"));
    // Nothing to pass on: Traefik removes Authorization and Cookie.
    assert!(r.header("authorization").is_none());
    assert!(r.header("cookie").is_none());
    // Port and case in the forwarded host do not matter.
    let r = roost.auth("ALICE.ws.roost.test:443", Some(&token)).await;
    assert_eq!(r.status, 200);
    roost.stop().await;
}

#[tokio::test]
async fn other_users_hosts_and_foreign_hosts_are_forbidden() {
    let issuer = TestIssuer::start(&["k1"]).await;
    let roost = TestRoost::start_ready(&config_text(&issuer.url, "", "")).await;
    let bob = sign("k1", Some("k1"), &auth0_claims(&issuer.url, AUDIENCE, "bob"));
    let r = roost.auth(&workspace_host("alice"), Some(&bob)).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.body, "not your workspace");
    for host in [
        "evil.example.com",
        "ws.roost.test",
        "a.b.ws.roost.test",
        "alice.ws.roost.test.evil.com",
        "",
    ] {
        let r = roost.auth(host, Some(&bob)).await;
        assert_eq!(r.status, 403, "{host}");
    }
    roost.stop().await;
}

#[tokio::test]
async fn admin_permission_passes_any_workspace() {
    let issuer = TestIssuer::start(&["k1"]).await;
    let roost = TestRoost::start_ready(&config_text(&issuer.url, "", "")).await;
    let mut claims = auth0_claims(&issuer.url, AUDIENCE, "carol");
    claims["permissions"] = json!(["read:workspace", "roost:admin"]);
    let admin = sign("k1", Some("k1"), &claims);
    // Nobody's workspace yet: an admin cannot conjure one up.
    let r = roost.auth(&workspace_host("alice"), Some(&admin)).await;
    assert_eq!(r.status, 404);
    let alice = sign("k1", Some("k1"), &auth0_claims(&issuer.url, AUDIENCE, "alice"));
    assert_eq!(roost.auth(&workspace_host("alice"), Some(&alice)).await.status, 200);
    let r = roost.auth(&workspace_host("alice"), Some(&admin)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-roost-user"), Some("carol"));
    assert_eq!(r.header("x-roost-workspace"), Some("alice"));
    roost.stop().await;
}

#[tokio::test]
async fn slug_comes_from_the_configured_namespaced_claim() {
    let issuer = TestIssuer::start(&["k1"]).await;
    let cfg = config_text(&issuer.url, r#"username_claim = "https://roost.test/username""#, "");
    let roost = TestRoost::start_ready(&cfg).await;
    // sub "auth0|abc123", username claim "abc123".
    let token = sign("k1", Some("k1"), &auth0_claims(&issuer.url, AUDIENCE, "auth0|abc123"));
    let r = roost.auth(&workspace_host("abc123"), Some(&token)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("x-roost-user"),
        Some("auth0|abc123"),
        "the full sub, never the slug"
    );
    roost.stop().await;
}

#[tokio::test]
async fn non_identity_slugs_get_a_hash_and_do_not_collide() {
    let issuer = TestIssuer::start(&["k1"]).await;
    let roost = TestRoost::start_ready(&config_text(&issuer.url, "", "")).await;
    let pipe = sign("k1", Some("k1"), &auth0_claims(&issuer.url, AUDIENCE, "auth0|abc"));
    let dash = sign("k1", Some("k1"), &auth0_claims(&issuer.url, AUDIENCE, "auth0-abc"));
    let pipe_slug = roost::slug::slug_for("auth0|abc");
    assert_ne!(pipe_slug, "auth0-abc");
    assert_eq!(roost.auth(&workspace_host(&pipe_slug), Some(&pipe)).await.status, 200);
    assert_eq!(roost.auth(&workspace_host("auth0-abc"), Some(&dash)).await.status, 200);
    assert_eq!(roost.auth(&workspace_host("auth0-abc"), Some(&pipe)).await.status, 403);
    assert_eq!(roost.auth(&workspace_host(&pipe_slug), Some(&dash)).await.status, 403);
    roost.stop().await;
}

#[tokio::test]
async fn missing_credentials_get_401_with_www_authenticate() {
    let issuer = TestIssuer::start(&["k1"]).await;
    let roost = TestRoost::start_ready(&config_text(&issuer.url, "", "")).await;
    let r = roost.auth(&workspace_host("alice"), None).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer realm="roost", error="invalid_token""#)
    );
    assert_eq!(r.body, "authentication required");
    let r = roost
        .client
        .get(
            &roost.url("/auth"),
            &[
                ("x-forwarded-host", "alice.ws.roost.test"),
                ("authorization", "Basic YWxpY2U6cHc="),
            ],
        )
        .await;
    assert_eq!(r.status, 401);
    roost.stop().await;
}

#[tokio::test]
async fn roost_cookies_are_withheld_from_the_workspace() {
    let issuer = TestIssuer::start(&["k1"]).await;
    let roost = TestRoost::start_ready(&config_text(&issuer.url, "", "")).await;
    let token = sign("k1", Some("k1"), &auth0_claims(&issuer.url, AUDIENCE, "alice"));
    let bearer = format!("Bearer {token}");
    let r = roost
        .client
        .get(
            &roost.url("/auth"),
            &[
                ("x-forwarded-host", "alice.ws.roost.test"),
                ("authorization", &bearer),
                ("cookie", "_xsrf=2; roost_session=abc; theme=dark"),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cookie"), Some("_xsrf=2; theme=dark"));
    roost.stop().await;
}

#[tokio::test]
async fn a_flood_of_bad_tokens_from_one_address_is_cut_off() {
    let issuer = TestIssuer::start(&["k1"]).await;
    let roost = TestRoost::start_ready(&config_text(&issuer.url, "", "")).await;
    let mut statuses = Vec::new();
    for i in 0..100 {
        let r = roost
            .auth_from(
                &workspace_host("alice"),
                Some(&format!("bad.{i}.token")),
                "203.0.113.66",
            )
            .await;
        if r.status == 429 {
            let wait: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
            assert!(wait >= 1);
        }
        statuses.push(r.status.as_u16());
    }
    // 30 failures, then the small budget all blocked addresses share
    // (10 a second), then refused before any signature check.
    let first_429 = statuses.iter().position(|s| *s == 429).expect("cut off");
    assert!(first_429 <= 42, "cut off after {first_429}");
    let verified_after = statuses[first_429..].iter().filter(|s| **s != 429).count();
    assert!(verified_after <= 3, "{verified_after} verified after the cut-off");
    // Another address, and a valid user, are unaffected.
    assert_eq!(
        roost
            .auth_from(&workspace_host("alice"), None, "203.0.113.67")
            .await
            .status,
        401
    );
    let token = sign("k1", Some("k1"), &auth0_claims(&issuer.url, AUDIENCE, "alice"));
    assert_eq!(
        roost
            .auth_from(&workspace_host("alice"), Some(&token), "203.0.113.68")
            .await
            .status,
        200
    );
    let metrics = roost.client.get(&roost.url("/metrics"), &[]).await.body;
    assert!(
        metrics.contains(r#"roost_rate_limited_total{limit="unauthenticated_per_ip"}"#),
        "{metrics}"
    );
    roost.stop().await;
}

#[tokio::test]
async fn per_user_limit_applies_to_authorized_requests() {
    let issuer = TestIssuer::start(&["k1"]).await;
    let cfg = config_text(&issuer.url, "", "").replace(
        "[workspace]",
        "[limits]\nauthenticated_per_user = \"5/min\"\n[workspace]",
    );
    let roost = TestRoost::start_ready(&cfg).await;
    let token = sign("k1", Some("k1"), &auth0_claims(&issuer.url, AUDIENCE, "alice"));
    let mut ok = 0;
    for _ in 0..8 {
        match roost.auth(&workspace_host("alice"), Some(&token)).await.status.as_u16() {
            200 => ok += 1,
            429 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ok, 5);
    roost.stop().await;
}

#[tokio::test]
async fn health_ready_and_metrics() {
    let issuer = TestIssuer::start(&["k1"]).await;
    let roost = TestRoost::start_ready(&config_text(&issuer.url, "", "")).await;
    assert_eq!(roost.client.get(&roost.url("/healthz"), &[]).await.status, 200);
    assert_eq!(roost.client.get(&roost.url("/nope"), &[]).await.status, 404);
    let token = sign("k1", Some("k1"), &auth0_claims(&issuer.url, AUDIENCE, "alice"));
    for _ in 0..3 {
        assert_eq!(roost.auth(&workspace_host("alice"), Some(&token)).await.status, 200);
    }
    let m = roost.client.get(&roost.url("/metrics"), &[]).await;
    assert_eq!(m.status, 200);
    for needle in [
        r#"roost_http_requests_total{endpoint="auth",outcome="ok"} 3"#,
        r#"roost_http_request_duration_seconds_bucket{le="0.00001",endpoint="auth",outcome="ok"}"#,
        r#"roost_jwks_refreshes_total{outcome="ok"} 1"#,
        r#"roost_token_cache_lookups_total{result="hit"} 2"#,
        r#"roost_token_cache_lookups_total{result="miss"} 1"#,
    ] {
        assert!(m.body.contains(needle), "{needle} not in\n{}", m.body);
    }
    roost.stop().await;
}

#[tokio::test]
async fn many_valid_users_behind_one_address_are_never_limited() {
    let issuer = TestIssuer::start(&["k1"]).await;
    let roost = TestRoost::start_ready(&config_text(&issuer.url, "", "")).await;
    for i in 0..100 {
        let user = format!("user{i}");
        let token = sign("k1", Some("k1"), &auth0_claims(&issuer.url, AUDIENCE, &user));
        let r = roost
            .auth_from(&workspace_host(&user), Some(&token), "203.0.113.200")
            .await;
        assert_eq!(r.status, 200, "user {i}: {}", r.body);
    }
    roost.stop().await;
}

#[tokio::test]
async fn browsers_without_credentials_are_sent_to_sign_in() {
    let issuer = TestIssuer::start(&["k1"]).await;
    let roost = TestRoost::start_ready(&config_text(&issuer.url, "", "")).await;
    let ask = |method: &'static str, accept: &'static str, xhr: bool| {
        let client = roost.client.clone();
        let url = roost.url("/auth");
        async move {
            let mut h = vec![
                ("x-forwarded-host", "alice.ws.roost.test"),
                ("x-forwarded-method", method),
                ("x-forwarded-uri", "/lab/tree?x=1"),
                ("x-forwarded-proto", "https"),
                ("accept", accept),
            ];
            if xhr {
                h.push(("x-requested-with", "XMLHttpRequest"));
            }
            client.get(&url, &h).await
        }
    };
    let r = ask("GET", "text/html,application/xhtml+xml", false).await;
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("http://ws.roost.test/_roost/login?rd=http%3A%2F%2Falice.ws.roost.test%2Flab%2Ftree%3Fx%3D1")
    );
    assert_eq!(ask("POST", "text/html", false).await.status, 303);
    assert_eq!(ask("GET", "text/html", true).await.status, 401, "XHR");
    assert_eq!(ask("GET", "application/json", false).await.status, 401, "API client");
    roost.stop().await;
}
