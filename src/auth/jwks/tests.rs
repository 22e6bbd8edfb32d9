//! The key store over a provider in memory that counts its fetches:
//! loading, the bounded refetch on an unknown `kid`, failures that keep the
//! old keys, rotation, and the refresher's schedule on tokio's paused clock.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::auth::test_support::{config, jwk, key_store, FakeProvider, Fixture, JwksAnswer, ISSUER};

fn found(lookup: Lookup) -> bool {
    matches!(lookup, Lookup::Found(_))
}

fn unknown(lookup: Lookup) -> bool {
    matches!(lookup, Lookup::Unknown)
}

async fn loaded(keys: Vec<serde_json::Value>, oidc_extra: &str) -> (Arc<KeyStore>, Arc<FakeProvider>) {
    let provider = FakeProvider::new(ISSUER, keys);
    let store = key_store(&config(ISSUER, oidc_extra), &provider);
    store.refresh().await.expect("keys from memory");
    (store, provider)
}

#[tokio::test]
async fn nothing_is_loaded_before_the_first_refresh() {
    let provider = FakeProvider::new(ISSUER, vec![jwk(Fixture::K1)]);
    let store = key_store(&config(ISSUER, ""), &provider);
    assert!(!store.is_loaded());
    assert!(store.endpoints().is_none());
    assert!(matches!(store.lookup(Some("k1")), Lookup::NotLoaded));
    // key_for does not fetch for keys never loaded: the refresher does.
    assert!(matches!(store.key_for(Some("k1")).await, Lookup::NotLoaded));
    assert_eq!((provider.discovery_fetches(), provider.jwks_fetches()), (0, 0));
}

#[tokio::test]
async fn a_refresh_loads_discovery_and_the_keys() {
    let (store, provider) = loaded(vec![jwk(Fixture::K1), jwk(Fixture::K2)], "").await;
    assert!(store.is_loaded());
    assert_eq!(store.issuer(), ISSUER);
    assert!(found(store.lookup(Some("k1"))));
    assert!(found(store.lookup(Some("k2"))));
    assert!(unknown(store.lookup(Some("k3"))));
    // Two keys: no default for a token without a kid.
    assert!(unknown(store.lookup(None)));
    let endpoints = store.endpoints().expect("discovered");
    assert_eq!(endpoints.jwks_uri, provider.jwks_uri());
    assert_eq!(endpoints.authorization.as_deref(), Some(&*provider.authorize_uri()));
    assert_eq!(endpoints.token.as_deref(), Some(&*provider.token_uri()));
    assert_eq!(endpoints.end_session, None);
    assert_eq!((provider.discovery_fetches(), provider.jwks_fetches()), (1, 1));
    assert_eq!(store.removals(), 0);
    let Lookup::Found(key) = store.lookup(Some("k1")) else {
        panic!("k1 loaded");
    };
    assert_eq!(key.alg, Some(Algorithm::RS256));
}

#[tokio::test]
async fn discovery_is_fetched_once() {
    let (store, provider) = loaded(vec![jwk(Fixture::K1)], "").await;
    for _ in 0..3 {
        store.refresh().await.expect("refreshed");
    }
    assert_eq!((provider.discovery_fetches(), provider.jwks_fetches()), (1, 4));
}

#[tokio::test]
async fn a_single_key_serves_tokens_without_kid() {
    let (store, _) = loaded(vec![jwk(Fixture::K1)], "").await;
    assert!(found(store.lookup(None)));
    assert!(found(store.lookup(Some("k1"))));
}

#[tokio::test]
async fn only_usable_signing_keys_are_kept() {
    let mut enc = jwk(Fixture::K2);
    enc["use"] = json!("enc");
    enc["kid"] = json!("enc");
    let mut rs512 = jwk(Fixture::K2);
    rs512["alg"] = json!("RS512");
    rs512["kid"] = json!("rs512");
    let mut no_alg = jwk(Fixture::K2);
    no_alg.as_object_mut().expect("an object").remove("alg");
    no_alg["kid"] = json!("no-alg");
    let keys = vec![
        jwk(Fixture::K1),
        enc,
        rs512,
        json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0", "alg": "HS256"}),
        json!({"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"}),
        json!("not a key"),
        no_alg,
    ];
    let (store, _) = loaded(keys, "").await;
    assert!(found(store.lookup(Some("k1"))));
    for kid in ["enc", "rs512", "hmac", "broken"] {
        assert!(unknown(store.lookup(Some(kid))), "{kid} kept");
    }
    // A key that does not state its algorithm may serve any configured one.
    let Lookup::Found(key) = store.lookup(Some("no-alg")) else {
        panic!("no-alg kept");
    };
    assert_eq!(key.alg, None);
}

#[tokio::test]
async fn a_jwks_without_usable_keys_is_an_error() {
    let provider = FakeProvider::new(ISSUER, vec![json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"})]);
    let store = key_store(&config(ISSUER, ""), &provider);
    assert!(matches!(store.refresh().await, Err(KeysError::NoUsableKeys)));
    assert!(!store.is_loaded());
}

#[tokio::test]
async fn discovery_must_state_the_configured_issuer() {
    let provider = FakeProvider::new("https://id.example.com", vec![jwk(Fixture::K1)]);
    // Configured with a trailing slash; discovery (at the same URL) says without.
    let store = key_store(&config(ISSUER, ""), &provider);
    match store.refresh().await {
        Err(KeysError::IssuerMismatch { configured, discovered }) => {
            assert_eq!(configured, ISSUER);
            assert_eq!(discovered, "https://id.example.com");
        }
        other => panic!("{other:?}"),
    }
    assert!(!store.is_loaded());
    assert!(store.endpoints().is_none());
    assert_eq!(provider.jwks_fetches(), 0);
}

#[tokio::test]
async fn an_unknown_kid_refetches_once_not_once_per_request() {
    let (store, provider) = loaded(vec![jwk(Fixture::K1)], "jwks_min_refetch = \"30s\"").await;
    assert_eq!(provider.jwks_fetches(), 1);
    for i in 0..100 {
        assert!(unknown(store.key_for(Some(&format!("random-{i}"))).await));
    }
    assert_eq!(provider.jwks_fetches(), 2, "one refetch for a hundred unknown kids");
    // Known kids never fetch.
    for _ in 0..10 {
        assert!(found(store.key_for(Some("k1")).await));
    }
    assert_eq!(provider.jwks_fetches(), 2);
}

#[tokio::test]
async fn concurrent_unknown_kids_share_one_refetch() {
    let (store, provider) = loaded(vec![jwk(Fixture::K1)], "").await;
    provider.answer_jwks(JwksAnswer::Keys(vec![jwk(Fixture::K1), jwk(Fixture::K2)]));
    let lookups = (0..50).map(|_| store.key_for(Some("k2")));
    let results = futures_util::future::join_all(lookups).await;
    assert!(results.into_iter().all(found));
    assert_eq!(provider.jwks_fetches(), 2);
}

#[tokio::test]
async fn a_new_kid_is_picked_up_by_the_refetch() {
    let (store, provider) = loaded(vec![jwk(Fixture::K1)], "").await;
    assert!(unknown(store.lookup(Some("k2"))));
    // The provider rotates in k2 (keeping k1).
    provider.answer_jwks(JwksAnswer::Keys(vec![jwk(Fixture::K1), jwk(Fixture::K2)]));
    assert!(found(store.key_for(Some("k2")).await));
    assert!(found(store.lookup(Some("k1"))));
    assert_eq!(provider.jwks_fetches(), 2);
    assert_eq!(store.removals(), 0, "nothing was dropped");
}

#[tokio::test]
async fn rotation_drops_withdrawn_keys_and_counts_it() {
    let (store, provider) = loaded(vec![jwk(Fixture::K1)], "").await;
    provider.answer_jwks(JwksAnswer::Keys(vec![jwk(Fixture::K1), jwk(Fixture::K2)]));
    store.refresh().await.expect("refreshed");
    assert_eq!(store.removals(), 0);
    provider.answer_jwks(JwksAnswer::Keys(vec![jwk(Fixture::K2)]));
    store.refresh().await.expect("refreshed");
    assert!(unknown(store.lookup(Some("k1"))));
    assert!(found(store.lookup(Some("k2"))));
    assert_eq!(store.removals(), 1);
    // The same set again drops nothing.
    store.refresh().await.expect("refreshed");
    assert_eq!(store.removals(), 1);
}

#[tokio::test]
async fn a_failed_fetch_keeps_the_old_keys() {
    let (store, provider) = loaded(vec![jwk(Fixture::K1)], "").await;
    provider.answer_jwks(JwksAnswer::Status(503));
    match store.refresh().await {
        Err(KeysError::Fetch { what, url, source }) => {
            assert_eq!(what, "JWKS");
            assert_eq!(url, provider.jwks_uri());
            assert!(matches!(source, FetchError::Status(503)));
        }
        other => panic!("{other:?}"),
    }
    assert!(store.is_loaded());
    assert!(found(store.lookup(Some("k1"))));
    // A refetch for an unknown kid that fails keeps them too.
    assert!(unknown(store.key_for(Some("k2")).await));
    assert!(found(store.lookup(Some("k1"))));
    assert_eq!(store.removals(), 0);
}

#[tokio::test]
async fn an_unreadable_or_empty_jwks_keeps_the_old_keys() {
    let (store, provider) = loaded(vec![jwk(Fixture::K1)], "").await;
    provider.answer_jwks(JwksAnswer::Text("<html>maintenance</html>"));
    assert!(matches!(
        store.refresh().await,
        Err(KeysError::Parse { what: "JWKS", .. })
    ));
    assert!(found(store.lookup(Some("k1"))));
    provider.answer_jwks(JwksAnswer::Keys(vec![]));
    assert!(matches!(store.refresh().await, Err(KeysError::NoUsableKeys)));
    assert!(found(store.lookup(Some("k1"))));
    assert_eq!(store.removals(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_refresher_backs_off_while_the_provider_fails_then_keeps_its_period() {
    let provider = FakeProvider::new(ISSUER, vec![jwk(Fixture::K1)]);
    provider.answer_jwks(JwksAnswer::Status(502));
    let store = key_store(&config(ISSUER, "jwks_refresh = \"10m\""), &provider);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(store.clone().run_refresher(cancel.clone()));
    let start = tokio::time::Instant::now();
    let at = |ms: u64| tokio::time::sleep_until(start + Duration::from_millis(ms));
    // Tries at 0, 250 ms, 750 ms, 1750 ms, 3750 ms (250 ms doubling).
    for (ms, expected) in [(100, 1), (300, 2), (700, 2), (800, 3), (1700, 3), (1800, 4), (3800, 5)] {
        at(ms).await;
        assert_eq!(provider.jwks_fetches(), expected, "at {ms} ms");
    }
    assert!(!store.is_loaded());
    // The provider is back: the next try (at 7750 ms) loads the keys.
    provider.answer_jwks(JwksAnswer::Keys(vec![jwk(Fixture::K1)]));
    at(7800).await;
    assert_eq!(provider.jwks_fetches(), 6);
    assert!(store.is_loaded());
    // Then once per jwks_refresh.
    at(7800 + 599_000).await;
    assert_eq!(provider.jwks_fetches(), 6);
    at(7800 + 601_000).await;
    assert_eq!(provider.jwks_fetches(), 7);
    assert_eq!(provider.discovery_fetches(), 1);
    cancel.cancel();
    task.await.expect("the refresher ends when cancelled");
}

#[tokio::test(start_paused = true)]
async fn the_refresher_backoff_is_capped_at_a_minute() {
    let provider = FakeProvider::new(ISSUER, vec![jwk(Fixture::K1)]);
    provider.answer_jwks(JwksAnswer::Status(502));
    let store = key_store(&config(ISSUER, ""), &provider);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(store.clone().run_refresher(cancel.clone()));
    // 0.25 + 0.5 + ... + 32 s = 63.75 s: 9 tries; then one a minute.
    let start = tokio::time::Instant::now();
    tokio::time::sleep_until(start + Duration::from_millis(63_800)).await;
    assert_eq!(provider.jwks_fetches(), 9);
    tokio::time::sleep_until(start + Duration::from_millis(63_750 + 59_900)).await;
    assert_eq!(provider.jwks_fetches(), 9, "64 s would be past the cap");
    tokio::time::sleep_until(start + Duration::from_millis(63_750 + 60_100)).await;
    assert_eq!(provider.jwks_fetches(), 10);
    tokio::time::sleep_until(start + Duration::from_millis(63_750 + 120_100)).await;
    assert_eq!(provider.jwks_fetches(), 11);
    cancel.cancel();
    task.await.expect("the refresher ends when cancelled");
}
