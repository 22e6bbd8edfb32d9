//! The verifier's checks over keys from a provider in memory: signature,
//! `kid`, algorithm, issuer, audience, times and claims; and the claims
//! cache in front of them.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;
use crate::auth::test_support::{
    claims, config, jwk, k1_public_pem, sign, sign_alg, verifier, FakeProvider, Fixture, JwksAnswer, AUDIENCE,
    CLIENT_ID, ISSUER,
};

/// A verifier for the default config ([`ISSUER`], leeway 60 s, RS256) with
/// `k1` and `k2` published.
async fn setup(oidc_extra: &str) -> (Verifier, Arc<FakeProvider>) {
    let provider = FakeProvider::new(ISSUER, vec![jwk(Fixture::K1), jwk(Fixture::K2)]);
    let verifier = verifier(&config(ISSUER, oidc_extra), &provider).await;
    (verifier, provider)
}

/// `claims("auth0|alice")` with `changes` applied (a `null` removes a claim).
fn alice_with(changes: Value) -> Value {
    let mut c = claims("auth0|alice");
    let (Value::Object(map), Value::Object(changes)) = (&mut c, changes) else {
        panic!("objects");
    };
    for (k, v) in changes {
        if v.is_null() {
            map.remove(&k);
        } else {
            map.insert(k, v);
        }
    }
    c
}

async fn refused(v: &Verifier, token: &str) -> AuthError {
    match v.verify(token).await {
        Ok(identity) => panic!("accepted: {identity:?}"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn a_token_signed_with_a_published_key_is_accepted() {
    let (v, _) = setup("").await;
    for (key, kid) in [(Fixture::K1, "k1"), (Fixture::K2, "k2")] {
        let identity = v
            .verify(&sign(key, Some(kid), &claims("auth0|alice")))
            .await
            .expect("a valid token");
        assert_eq!(&*identity.sub, "auth0|alice");
        assert_eq!(identity.email.as_deref(), Some("auth0|alice@example.com"));
        assert!(!identity.admin);
        assert_eq!(identity.user_header, "auth0|alice");
    }
}

#[tokio::test]
async fn claims_become_the_identity() {
    let (v, _) = setup("username_claim = \"nickname\"\nadmin_permission = \"roost:admin\"").await;
    let exp = now_secs() + 600;
    let c = alice_with(json!({"nickname": "alice", "exp": exp, "permissions": ["read", "roost:admin"]}));
    let identity = v.verify(&sign(Fixture::K1, Some("k1"), &c)).await.expect("valid");
    assert_eq!(&*identity.sub, "auth0|alice");
    assert_eq!(&*identity.slug, &*crate::slug::slug_for("alice"));
    assert!(identity.admin);
    assert_eq!(identity.exp, exp);
}

#[tokio::test]
async fn a_signature_by_another_key_is_refused() {
    let (v, _) = setup("").await;
    // The attacker's key, claiming to be k1.
    let forged = sign(Fixture::Attacker, Some("k1"), &claims("auth0|alice"));
    assert!(matches!(refused(&v, &forged).await, AuthError::BadSignature));
    // k2's signature under k1's kid.
    let swapped = sign(Fixture::K2, Some("k1"), &claims("auth0|alice"));
    assert!(matches!(refused(&v, &swapped).await, AuthError::BadSignature));
}

#[tokio::test]
async fn a_tampered_payload_is_refused() {
    let (v, _) = setup("").await;
    let token = sign(Fixture::K1, Some("k1"), &claims("auth0|alice"));
    let other = sign(Fixture::K1, Some("k1"), &claims("auth0|mallory"));
    let parts: Vec<&str> = token.split('.').collect();
    let other_parts: Vec<&str> = other.split('.').collect();
    let spliced = format!("{}.{}.{}", parts[0], other_parts[1], parts[2]);
    assert!(matches!(refused(&v, &spliced).await, AuthError::BadSignature));
}

#[tokio::test]
async fn the_key_is_chosen_by_kid() {
    let (v, provider) = setup("").await;
    let unknown = sign(Fixture::K1, Some("nope"), &claims("auth0|alice"));
    match refused(&v, &unknown).await {
        AuthError::UnknownKey(kid) => assert_eq!(kid.as_deref(), Some("nope")),
        other => panic!("{other:?}"),
    }
    // Two keys published: a token without a kid names none of them.
    let no_kid = sign(Fixture::K1, None, &claims("auth0|alice"));
    match refused(&v, &no_kid).await {
        AuthError::UnknownKey(kid) => assert_eq!(kid, None),
        other => panic!("{other:?}"),
    }
    // One refetch for the first unknown kid, none for the second (within
    // jwks_min_refetch).
    assert_eq!(provider.jwks_fetches(), 2);
}

#[tokio::test]
async fn with_one_key_published_a_token_without_kid_uses_it() {
    let provider = FakeProvider::new(ISSUER, vec![jwk(Fixture::K1)]);
    let v = verifier(&config(ISSUER, ""), &provider).await;
    let no_kid = sign(Fixture::K1, None, &claims("auth0|alice"));
    assert_eq!(&*v.verify(&no_kid).await.expect("valid").sub, "auth0|alice");
    let wrong_key = sign(Fixture::K2, None, &claims("auth0|alice"));
    assert!(matches!(refused(&v, &wrong_key).await, AuthError::BadSignature));
}

#[tokio::test]
async fn keys_not_loaded_yet_are_unavailable_not_invalid() {
    let provider = FakeProvider::new(ISSUER, vec![jwk(Fixture::K1)]);
    let config = config(ISSUER, "");
    let keys = crate::auth::test_support::key_store(&config, &provider);
    let v = Verifier::new(&config.oidc, keys, Arc::new(Metrics::new()));
    let token = sign(Fixture::K1, Some("k1"), &claims("auth0|alice"));
    let e = refused(&v, &token).await;
    assert!(matches!(e, AuthError::KeysUnavailable), "{e:?}");
    assert_eq!(provider.jwks_fetches(), 0);
}

#[tokio::test]
async fn algorithms_come_from_the_config_not_the_token() {
    let (v, _) = setup("").await;
    // RS384 is a fine algorithm, but not configured.
    let rs384 = sign_alg(Algorithm::RS384, Fixture::K1, Some("k1"), &claims("auth0|alice"));
    assert!(matches!(
        refused(&v, &rs384).await,
        AuthError::AlgorithmNotAllowed(Algorithm::RS384)
    ));
    // HS256 with the public key as the secret: the classic confusion.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    let hs256 = jsonwebtoken::encode(
        &header,
        &claims("auth0|alice"),
        &EncodingKey::from_secret(k1_public_pem()),
    )
    .expect("an HS256 token");
    assert!(matches!(
        refused(&v, &hs256).await,
        AuthError::AlgorithmNotAllowed(Algorithm::HS256)
    ));
}

#[tokio::test]
async fn alg_none_is_refused() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let (v, provider) = setup("").await;
    let fetches = provider.jwks_fetches();
    for alg in ["none", "None", "NONE"] {
        let header = json!({"alg": alg, "typ": "JWT", "kid": "k1"});
        let token = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims("auth0|alice").to_string())
        );
        let e = refused(&v, &token).await;
        assert_eq!(e.kind(), "malformed", "alg {alg}: {e:?}");
    }
    // Refused before any key was looked for.
    assert_eq!(provider.jwks_fetches(), fetches);
}

#[tokio::test]
async fn a_key_published_for_one_algorithm_verifies_no_other() {
    // RS384 allowed, but k1's JWK says RS256.
    let (v, _) = setup("algorithms = [\"RS256\", \"RS384\"]").await;
    let rs256 = sign_alg(Algorithm::RS256, Fixture::K1, Some("k1"), &claims("auth0|alice"));
    assert!(v.verify(&rs256).await.is_ok());
    let rs384 = sign_alg(Algorithm::RS384, Fixture::K1, Some("k1"), &claims("auth0|alice"));
    assert!(matches!(
        refused(&v, &rs384).await,
        AuthError::AlgorithmNotAllowed(Algorithm::RS384)
    ));
}

#[tokio::test]
async fn the_issuer_must_match_exactly_with_its_trailing_slash() {
    let (v, _) = setup("").await;
    let no_slash = alice_with(json!({"iss": "https://id.example.com"}));
    assert!(matches!(
        refused(&v, &sign(Fixture::K1, Some("k1"), &no_slash)).await,
        AuthError::WrongIssuer
    ));
    let other = alice_with(json!({"iss": "https://evil.example.com/"}));
    assert!(matches!(
        refused(&v, &sign(Fixture::K1, Some("k1"), &other)).await,
        AuthError::WrongIssuer
    ));
}

#[tokio::test]
async fn the_issuer_must_match_exactly_without_a_trailing_slash() {
    const BARE: &str = "https://id.example.com";
    let provider = FakeProvider::new(BARE, vec![jwk(Fixture::K1)]);
    let v = verifier(&config(BARE, ""), &provider).await;
    let bare = alice_with(json!({"iss": BARE}));
    assert!(v.verify(&sign(Fixture::K1, Some("k1"), &bare)).await.is_ok());
    let slash = alice_with(json!({"iss": ISSUER}));
    assert!(matches!(
        refused(&v, &sign(Fixture::K1, Some("k1"), &slash)).await,
        AuthError::WrongIssuer
    ));
}

#[tokio::test]
async fn the_audience_may_be_a_string_or_an_array() {
    let (v, _) = setup("").await;
    let string = alice_with(json!({"aud": AUDIENCE}));
    assert!(v.verify(&sign(Fixture::K1, Some("k1"), &string)).await.is_ok());
    let array = alice_with(json!({"aud": ["https://other.example.com", AUDIENCE]}));
    assert!(v.verify(&sign(Fixture::K1, Some("k1"), &array)).await.is_ok());
    for wrong in [
        json!("https://other.example.com"),
        json!(["https://other.example.com", "https://third.example.com"]),
        json!([]),
        json!(CLIENT_ID),
    ] {
        let c = alice_with(json!({ "aud": wrong }));
        let e = refused(&v, &sign(Fixture::K1, Some("k1"), &c)).await;
        assert!(matches!(e, AuthError::WrongAudience), "aud {wrong}: {e:?}");
    }
}

#[tokio::test]
async fn exp_and_nbf_are_checked_with_the_leeway() {
    let (v, _) = setup("leeway = \"60s\"").await;
    let now = now_secs();
    let ok = |c: Value| {
        let token = sign(Fixture::K1, Some("k1"), &c);
        let v = &v;
        async move { v.verify(&token).await }
    };
    assert!(
        ok(alice_with(json!({"exp": now - 30}))).await.is_ok(),
        "expired within leeway"
    );
    assert!(matches!(
        ok(alice_with(json!({"exp": now - 120}))).await,
        Err(AuthError::Expired)
    ));
    assert!(
        ok(alice_with(json!({"nbf": now + 30}))).await.is_ok(),
        "early within leeway"
    );
    assert!(matches!(
        ok(alice_with(json!({"nbf": now + 120}))).await,
        Err(AuthError::NotYetValid)
    ));
}

#[tokio::test]
async fn no_leeway_means_none() {
    let (v, _) = setup("leeway = \"0s\"").await;
    let expired = alice_with(json!({"exp": now_secs() - 2}));
    assert!(matches!(
        refused(&v, &sign(Fixture::K1, Some("k1"), &expired)).await,
        AuthError::Expired
    ));
    let early = alice_with(json!({"nbf": now_secs() + 5}));
    assert!(matches!(
        refused(&v, &sign(Fixture::K1, Some("k1"), &early)).await,
        AuthError::NotYetValid
    ));
}

#[tokio::test]
async fn required_claims_must_be_there() {
    let (v, _) = setup("").await;
    for claim in ["exp", "iss", "aud", "sub"] {
        let c = alice_with(json!({ claim: null }));
        let e = refused(&v, &sign(Fixture::K1, Some("k1"), &c)).await;
        assert_eq!(e.kind(), "rejected", "without {claim}: {e:?}");
        assert!(e.to_string().contains(claim), "without {claim}: {e}");
    }
    // A `sub` that is no string counts as missing; an empty one is refused too.
    let number = alice_with(json!({"sub": 7}));
    let e = refused(&v, &sign(Fixture::K1, Some("k1"), &number)).await;
    assert_eq!(e.kind(), "rejected", "{e:?}");
    let empty = alice_with(json!({"sub": ""}));
    let e = refused(&v, &sign(Fixture::K1, Some("k1"), &empty)).await;
    assert!(matches!(e, AuthError::Claims("missing sub")), "{e:?}");
}

#[tokio::test]
async fn the_username_claim_must_be_there() {
    let (v, _) = setup("username_claim = \"nickname\"").await;
    let e = refused(&v, &sign(Fixture::K1, Some("k1"), &claims("auth0|alice"))).await;
    assert!(matches!(e, AuthError::Claims("missing username claim")), "{e:?}");
    let empty = alice_with(json!({"nickname": ""}));
    let e = refused(&v, &sign(Fixture::K1, Some("k1"), &empty)).await;
    assert!(matches!(e, AuthError::Claims("missing username claim")), "{e:?}");
}

#[tokio::test]
async fn empty_oversized_and_garbage_tokens_are_refused_before_any_key() {
    let (v, provider) = setup("").await;
    let fetches = provider.jwks_fetches();
    assert!(matches!(refused(&v, "").await, AuthError::Missing));
    assert!(matches!(
        refused(&v, &"a".repeat(MAX_TOKEN_BYTES + 1)).await,
        AuthError::TooLarge
    ));
    assert!(v.cached(&"a".repeat(MAX_TOKEN_BYTES + 1)).is_none());
    for garbage in ["x", "a.b.c", "....", "eyJhbGciOiJSUzI1NiJ9"] {
        let e = refused(&v, garbage).await;
        assert_eq!(e.kind(), "malformed", "{garbage}: {e:?}");
    }
    assert_eq!(provider.jwks_fetches(), fetches);
}

#[tokio::test]
async fn a_verified_token_is_then_answered_from_memory() {
    let (v, _) = setup("").await;
    let token = sign(Fixture::K1, Some("k1"), &claims("auth0|alice"));
    assert!(v.cached(&token).is_none(), "nothing cached before the first verify");
    let first = v.verify(&token).await.expect("valid");
    let cached = v.cached(&token).expect("cached after verify");
    assert!(Arc::ptr_eq(&first, &cached));
    // The same verdict again through verify, not a new verification.
    let again = v.verify(&token).await.expect("valid");
    assert!(Arc::ptr_eq(&first, &again));
    // Only from the front table: moka still has it.
    for slot in v.front.iter() {
        slot.store(None);
    }
    let from_moka = v.cached(&token).expect("cached in moka");
    assert!(Arc::ptr_eq(&first, &from_moka));
    // Another token is not answered by this one's verdict.
    let bob = sign(Fixture::K1, Some("k1"), &claims("auth0|bob"));
    assert!(v.cached(&bob).is_none());
}

#[tokio::test]
async fn a_refused_token_is_not_cached() {
    let (v, _) = setup("").await;
    let forged = sign(Fixture::Attacker, Some("k1"), &claims("auth0|alice"));
    assert!(v.verify(&forged).await.is_err());
    assert!(v.cached(&forged).is_none());
    assert!(v.verify(&forged).await.is_err());
}

#[tokio::test]
async fn an_expired_cached_token_is_not_accepted() {
    let (v, _) = setup("leeway = \"60s\"").await;
    // Expired, but within the leeway: verification accepts it once...
    let token = sign(Fixture::K1, Some("k1"), &alice_with(json!({"exp": now_secs() - 5})));
    assert!(v.verify(&token).await.is_ok());
    // ...and the cache never answers for it: its exp has passed.
    assert!(v.cached(&token).is_none());
}

#[tokio::test]
async fn a_cached_verdict_past_its_exp_is_dropped() {
    let (v, _) = setup("").await;
    let token = sign(Fixture::K1, Some("k1"), &claims("auth0|alice"));
    let identity = v.verify(&token).await.expect("valid");
    // The same verdict, as it will be once its exp has passed.
    let expired = Identity::new(&identity.sub, "alice", None, false, now_secs() - 1, vec![]).expect("an identity");
    let hash = v.hasher.hash_one(token.as_str());
    let verdict = Arc::new(Verdict {
        token: token.as_str().into(),
        identity: Arc::new(expired),
        removals: v.keys.removals(),
    });
    v.front_slot(hash).store(Some(verdict.clone()));
    v.cache.insert(hash, verdict);
    assert!(v.cached(&token).is_none());
    // Dropped from both tables.
    assert!(v.front_slot(hash).load().is_none());
    assert!(v.cache.get(&hash).is_none());
}

#[tokio::test]
async fn a_hash_collision_is_a_miss_never_a_pass() {
    let (v, _) = setup("").await;
    let alice = sign(Fixture::K1, Some("k1"), &claims("auth0|alice"));
    let mallory = sign(Fixture::Attacker, Some("k1"), &claims("auth0|mallory"));
    let identity = v.verify(&alice).await.expect("valid");
    // Alice's verdict filed under the hash of mallory's token.
    let hash = v.hasher.hash_one(mallory.as_str());
    let verdict = Arc::new(Verdict {
        token: alice.as_str().into(),
        identity,
        removals: v.keys.removals(),
    });
    v.front_slot(hash).store(Some(verdict.clone()));
    v.cache.insert(hash, verdict);
    assert!(v.cached(&mallory).is_none());
    assert!(matches!(refused(&v, &mallory).await, AuthError::BadSignature));
}

#[tokio::test]
async fn verdicts_made_with_a_key_since_dropped_stop_counting() {
    let (v, provider) = setup("").await;
    let token = sign(Fixture::K1, Some("k1"), &claims("auth0|alice"));
    v.verify(&token).await.expect("valid");
    assert!(v.cached(&token).is_some());
    // k1 is withdrawn.
    provider.answer_jwks(JwksAnswer::Keys(vec![jwk(Fixture::K2)]));
    v.keys().refresh().await.expect("refreshed");
    assert!(v.cached(&token).is_none());
    match refused(&v, &token).await {
        AuthError::UnknownKey(kid) => assert_eq!(kid.as_deref(), Some("k1")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn id_tokens_are_for_the_client_with_the_nonce_sent() {
    let (v, _) = setup("").await;
    let id_claims = |nonce: &str| alice_with(json!({"aud": CLIENT_ID, "nonce": nonce, "name": "Alice"}));
    let token = sign(Fixture::K1, Some("k1"), &id_claims("n-123"));
    let claims = v.verify_id_token(&token, "n-123").await.expect("a valid ID token");
    assert_eq!(claims.sub, "auth0|alice");
    assert_eq!(claims.username, "auth0|alice");
    assert_eq!(claims.email.as_deref(), Some("auth0|alice@example.com"));
    assert!(!claims.admin);
    let e = match v.verify_id_token(&token, "n-456").await {
        Ok(_) => panic!("another nonce accepted"),
        Err(e) => e,
    };
    assert!(matches!(e, AuthError::Claims("nonce mismatch")), "{e:?}");
    let no_nonce = sign(Fixture::K1, Some("k1"), &alice_with(json!({"aud": CLIENT_ID})));
    assert!(matches!(
        v.verify_id_token(&no_nonce, "n-123").await,
        Err(AuthError::Claims("nonce mismatch"))
    ));
    // An access token (audience: the API) is no ID token, and an ID token
    // is no bearer token.
    let access = sign(Fixture::K1, Some("k1"), &alice_with(json!({"nonce": "n-123"})));
    assert!(matches!(
        v.verify_id_token(&access, "n-123").await,
        Err(AuthError::WrongAudience)
    ));
    assert!(matches!(refused(&v, &token).await, AuthError::WrongAudience));
}

#[tokio::test]
async fn without_a_client_id_there_are_no_id_tokens() {
    let provider = FakeProvider::new(ISSUER, vec![jwk(Fixture::K1)]);
    let mut config = config(ISSUER, "");
    config.oidc.client_id = None;
    let v = verifier(&config, &provider).await;
    let token = sign(
        Fixture::K1,
        Some("k1"),
        &alice_with(json!({"aud": CLIENT_ID, "nonce": "n"})),
    );
    assert!(matches!(
        v.verify_id_token(&token, "n").await,
        Err(AuthError::Claims("sign-in not configured"))
    ));
}
