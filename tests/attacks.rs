//! The token attack suite: every forged, tampered, stale or malformed
//! credential gets 401 (never a panic, never a pass), against the
//! Auth0-shaped issuer on loopback.

mod support;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use support::issuer::TestIssuer;
use support::roost::{config_text, workspace_host, TestRoost, AUDIENCE};
use support::tokens::{auth0_claims, now, public_pem, sign, sign_with_header, unsigned};

#[tokio::test]
async fn forged_and_broken_tokens_get_401() {
    let issuer = TestIssuer::start(&["k1"]).await;
    let attacker = TestIssuer::start(&["attacker"]).await;
    let roost = TestRoost::start_ready(&config_text(&issuer.url, "", "")).await;
    let host = workspace_host("alice");
    let good_claims = auth0_claims(&issuer.url, AUDIENCE, "alice");
    let good = sign("k1", Some("k1"), &good_claims);
    let [head, payload, sig] = good.split('.').collect::<Vec<_>>()[..] else {
        unreachable!()
    };

    let mut cases: Vec<(&str, String)> = Vec::new();
    cases.push((
        "alg none",
        unsigned(&json!({"alg": "none", "typ": "JWT", "kid": "k1"}), &good_claims),
    ));
    cases.push(("alg None", unsigned(&json!({"alg": "None", "kid": "k1"}), &good_claims)));
    // HS256 keyed with the issuer's RSA public key: the classic confusion.
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("k1".into());
    cases.push((
        "HS256 with the public key",
        encode(&hs, &good_claims, &EncodingKey::from_secret(&public_pem("k1"))).unwrap(),
    ));
    cases.push(("unknown kid", sign("attacker", Some("nobody"), &good_claims)));
    cases.push(("known kid, attacker's key", sign("attacker", Some("k1"), &good_claims)));
    let mut admin_claims = good_claims.clone();
    admin_claims["permissions"] = json!(["roost:admin"]);
    cases.push((
        "tampered payload",
        format!("{head}.{}.{sig}", URL_SAFE_NO_PAD.encode(admin_claims.to_string())),
    ));
    let mut bad_sig = sig.to_string();
    let flipped = if bad_sig.ends_with('A') { 'B' } else { 'A' };
    bad_sig.replace_range(bad_sig.len() - 1.., &flipped.to_string());
    cases.push(("tampered signature", format!("{head}.{payload}.{bad_sig}")));
    let mut sig_bytes = URL_SAFE_NO_PAD.decode(sig).unwrap();
    sig_bytes[10] ^= 0xff;
    cases.push((
        "tampered signature bytes",
        format!("{head}.{payload}.{}", URL_SAFE_NO_PAD.encode(sig_bytes)),
    ));
    let mut c = good_claims.clone();
    c["exp"] = json!(now() - 3600);
    cases.push(("expired", sign("k1", Some("k1"), &c)));
    let mut c = good_claims.clone();
    c["nbf"] = json!(now() + 3600);
    cases.push(("nbf in the future", sign("k1", Some("k1"), &c)));
    let mut c = good_claims.clone();
    c["iss"] = json!(issuer.url.trim_end_matches('/'));
    cases.push(("issuer without its trailing slash", sign("k1", Some("k1"), &c)));
    let mut c = good_claims.clone();
    c["iss"] = json!("https://evil.example.com/");
    cases.push(("wrong iss", sign("k1", Some("k1"), &c)));
    let mut c = good_claims.clone();
    c["aud"] = json!(["https://other.example.com/api"]);
    cases.push(("wrong aud", sign("k1", Some("k1"), &c)));
    let mut c = good_claims.clone();
    c["aud"] = json!("https://other.example.com/api");
    cases.push(("wrong aud string", sign("k1", Some("k1"), &c)));
    let mut c = good_claims.clone();
    c.as_object_mut().unwrap().remove("exp");
    cases.push(("no exp", sign("k1", Some("k1"), &c)));
    // jku / x5u / jwk headers pointing at the attacker's keys are ignored.
    let mut jku = Header::new(Algorithm::RS256);
    jku.kid = Some("attacker".into());
    jku.jku = Some(format!("{}.well-known/jwks.json", attacker.url));
    cases.push((
        "jku to an attacker JWKS",
        sign_with_header(&jku, "attacker", &good_claims),
    ));
    let mut x5u = Header::new(Algorithm::RS256);
    x5u.kid = Some("attacker".into());
    x5u.x5u = Some(format!("{}cert.pem", attacker.url));
    cases.push(("x5u to the attacker", sign_with_header(&x5u, "attacker", &good_claims)));
    let mut embedded = Header::new(Algorithm::RS256);
    embedded.kid = Some("attacker".into());
    embedded.jwk = Some(serde_json::from_value(support::tokens::jwk("attacker")).unwrap());
    cases.push(("embedded jwk", sign_with_header(&embedded, "attacker", &good_claims)));
    let mut big = good_claims.clone();
    big["padding"] = json!("x".repeat(9 * 1024));
    cases.push(("9 KiB token", sign("k1", Some("k1"), &big)));
    cases.push(("garbage base64", "!!!.@@@.###".to_string()));
    cases.push(("not a JWT", "hello".to_string()));
    cases.push(("two parts", format!("{head}.{payload}")));
    cases.push(("empty bearer", String::new()));
    cases.push((
        "header is not JSON",
        format!("{}.{payload}.{sig}", URL_SAFE_NO_PAD.encode("nope")),
    ));

    for (i, (name, token)) in cases.iter().enumerate() {
        // A fresh address each time, so the per-address limit is not what answers.
        let ip = format!("198.51.100.{}", 10 + i);
        let r = roost.auth_from(&host, Some(token), &ip).await;
        assert_eq!(r.status, 401, "{name}: {} {}", r.status, r.body);
        assert!(
            r.header("www-authenticate")
                .is_some_and(|v| v.contains("invalid_token")),
            "{name}"
        );
        assert!(
            !r.body.contains(token.as_str()) || token.is_empty(),
            "{name}: token echoed"
        );
        assert!(r.body.len() < 64, "{name}: short reason, got {:?}", r.body);
        assert!(r.header("x-roost-user").is_none(), "{name}");
    }
    assert_eq!(
        attacker.requests(),
        0,
        "roost must never fetch keys from a token's header"
    );
    // Still alive and still right for the real token.
    assert_eq!(roost.auth(&host, Some(&good)).await.status, 200);
    roost.stop().await;
}

#[tokio::test]
async fn symmetric_keys_in_the_jwks_are_never_used() {
    let issuer = TestIssuer::start(&["k1"]).await;
    let mut raw = vec![support::tokens::jwk("k1")];
    raw.push(json!({"kty": "oct", "kid": "hmac", "k": URL_SAFE_NO_PAD.encode("secret"), "alg": "HS256"}));
    issuer.publish_raw(raw);
    let cfg = config_text(&issuer.url, r#"algorithms = ["RS256"]"#, "");
    let roost = TestRoost::start_ready(&cfg).await;
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("hmac".into());
    let token = encode(
        &h,
        &auth0_claims(&issuer.url, AUDIENCE, "alice"),
        &EncodingKey::from_secret(b"secret"),
    )
    .unwrap();
    assert_eq!(roost.auth(&workspace_host("alice"), Some(&token)).await.status, 401);
    roost.stop().await;
}
