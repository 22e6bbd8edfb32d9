//! Minting test tokens with the fixture keys.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::project_dir;

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

pub fn key_pem(name: &str) -> Vec<u8> {
    std::fs::read(project_dir().join(format!("tests/fixtures/keys/{name}.pem"))).unwrap()
}

pub fn public_pem(name: &str) -> Vec<u8> {
    std::fs::read(project_dir().join(format!("tests/fixtures/keys/{name}.pub.pem"))).unwrap()
}

pub fn jwk(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(project_dir().join(format!("tests/fixtures/keys/{name}.jwk.json"))).unwrap())
        .unwrap()
}

/// Signs `claims` with fixture key `key` (RS256), with `kid` in the header.
pub fn sign(key: &str, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_string);
    encode(&header, claims, &EncodingKey::from_rsa_pem(&key_pem(key)).unwrap()).unwrap()
}

/// Signs with a fully custom header.
pub fn sign_with_header(header: &Header, key: &str, claims: &Value) -> String {
    encode(header, claims, &EncodingKey::from_rsa_pem(&key_pem(key)).unwrap()).unwrap()
}

/// An unsigned JWT with the given header and claims and an empty signature.
pub fn unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// Claims as Auth0 puts them in an access token.
pub fn auth0_claims(issuer: &str, audience: &str, sub: &str) -> Value {
    json!({
        "iss": issuer,
        "sub": sub,
        "aud": [audience, format!("{issuer}userinfo")],
        "iat": now(),
        "exp": now() + 3600,
        "scope": "openid profile email",
        "permissions": ["read:workspace"],
        "email": format!("{}@example.com", sub.replace('|', ".")),
        "https://roost.test/username": sub.split('|').next_back().unwrap_or(sub),
    })
}
