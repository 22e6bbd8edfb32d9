//! Signing keys over their life: loaded once before ready, rotated with
//! exactly one refetch, unknown kids rate-limited, and a provider outage
//! that valid tokens do not notice.

mod support;

use std::time::Duration;

use support::eventually;
use support::issuer::TestIssuer;
use support::roost::{config_text, workspace_host, TestRoost, AUDIENCE};
use support::tokens::{auth0_claims, sign};

#[tokio::test]
async fn not_ready_until_keys_load_then_ready() {
    let issuer = TestIssuer::start(&["k1"]).await;
    issuer.set_jwks_delay(Duration::from_secs(2));
    let roost = TestRoost::start(&config_text(&issuer.url, "", "")).await;
    let r = roost.client.get(&roost.url("/readyz"), &[]).await;
    assert_eq!(r.status, 503, "not ready before the JWKS arrived");
    assert!(r.header("retry-after").is_some());
    // A token presented meanwhile: 503 + Retry-After, not a false 401.
    let token = sign("k1", Some("k1"), &auth0_claims(&issuer.url, AUDIENCE, "alice"));
    let r = roost.auth(&workspace_host("alice"), Some(&token)).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.header("retry-after").is_some());
    roost.wait_ready().await;
    assert_eq!(roost.auth(&workspace_host("alice"), Some(&token)).await.status, 200);
    roost.stop().await;
}

#[tokio::test]
async fn a_rotated_key_passes_after_exactly_one_refetch() {
    let issuer = TestIssuer::start(&["k1"]).await;
    let roost = TestRoost::start_ready(&config_text(&issuer.url, "", "")).await;
    let before = issuer.jwks_fetches();
    assert_eq!(before, 1);
    issuer.publish(&["k1", "k2"]);
    let token = sign("k2", Some("k2"), &auth0_claims(&issuer.url, AUDIENCE, "alice"));
    assert_eq!(roost.auth(&workspace_host("alice"), Some(&token)).await.status, 200);
    assert_eq!(issuer.jwks_fetches(), before + 1);
    // Known from now on: no further fetches.
    let again = sign("k2", Some("k2"), &auth0_claims(&issuer.url, AUDIENCE, "bob"));
    assert_eq!(roost.auth(&workspace_host("bob"), Some(&again)).await.status, 200);
    assert_eq!(issuer.jwks_fetches(), before + 1);
    roost.stop().await;
}

#[tokio::test]
async fn a_flood_of_random_kids_is_not_a_flood_of_fetches() {
    let issuer = TestIssuer::start(&["k1"]).await;
    let roost = TestRoost::start_ready(&config_text(&issuer.url, "", "")).await;
    let before = issuer.jwks_fetches();
    let claims = auth0_claims(&issuer.url, AUDIENCE, "alice");
    let mut tasks = Vec::new();
    for i in 0..60 {
        let token = sign("k1", Some(&format!("random-{i}")), &claims);
        let client = roost.client.clone();
        let url = roost.url("/auth");
        tasks.push(tokio::spawn(async move {
            let bearer = format!("Bearer {token}");
            let ip = format!("192.0.2.{}", i % 250);
            client
                .get(
                    &url,
                    &[
                        ("x-forwarded-host", "alice.ws.roost.test"),
                        ("authorization", &bearer),
                        ("x-forwarded-for", &ip),
                    ],
                )
                .await
                .status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 401);
    }
    assert!(
        issuer.jwks_fetches() - before <= 1,
        "{} fetches",
        issuer.jwks_fetches() - before
    );
    roost.stop().await;
}

#[tokio::test]
async fn valid_tokens_still_pass_while_the_issuer_is_down() {
    let issuer = TestIssuer::start(&["k1", "k2"]).await;
    let roost = TestRoost::start_ready(&config_text(&issuer.url, r#"jwks_refresh = "200ms""#, "")).await;
    issuer.stop();
    // Wait until a refresh has failed against the dead issuer.
    let client = roost.client.clone();
    let metrics = roost.url("/metrics");
    eventually(Duration::from_secs(10), "a failed JWKS refresh", || {
        let client = client.clone();
        let metrics = metrics.clone();
        async move {
            let body = client.get(&metrics, &[]).await.body;
            body.contains(r#"roost_jwks_refreshes_total{outcome="error"}"#)
                .then_some(())
        }
    })
    .await;
    // New tokens (not cached) signed by either published key still verify.
    for (key, user) in [("k1", "alice"), ("k2", "bob")] {
        let token = sign(key, Some(key), &auth0_claims(&issuer.url, AUDIENCE, user));
        assert_eq!(roost.auth(&workspace_host(user), Some(&token)).await.status, 200);
    }
    assert_eq!(roost.client.get(&roost.url("/readyz"), &[]).await.status, 200);
    roost.stop().await;
}

#[tokio::test]
async fn a_removed_key_stops_counting_even_for_cached_tokens() {
    let issuer = TestIssuer::start(&["k1", "k2"]).await;
    let roost = TestRoost::start_ready(&config_text(&issuer.url, "", "")).await;
    let token = sign("k2", Some("k2"), &auth0_claims(&issuer.url, AUDIENCE, "alice"));
    assert_eq!(roost.auth(&workspace_host("alice"), Some(&token)).await.status, 200);
    issuer.publish(&["k1"]);
    roost.app.keys.refresh().await.unwrap();
    assert_eq!(roost.auth(&workspace_host("alice"), Some(&token)).await.status, 401);
    roost.stop().await;
}
