//! What the auth modules' unit tests share: a config, the fixture keys,
//! signed tokens, and a provider in memory (a [`KeyFetcher`] serving a
//! discovery document and a JWKS the test can change, counting fetches).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::jwks::{FetchError, KeyFetcher, KeyStore};
use super::Verifier;
use crate::clock::now_secs;
use crate::config::{Config, Secret, Secrets};
use crate::metrics::Metrics;

pub const ISSUER: &str = "https://id.example.com/";
pub const AUDIENCE: &str = "https://roost.example.com/api";
pub const CLIENT_ID: &str = "roost-client";
pub const DOMAIN: &str = "ws.example.com";
pub const COOKIE_KEY: &str = "test-cookie-key-0123456789abcdef0123456789";

const K1_PEM: &[u8] = include_bytes!("../../tests/fixtures/keys/k1.pem");
const K2_PEM: &[u8] = include_bytes!("../../tests/fixtures/keys/k2.pem");
const ATTACKER_PEM: &[u8] = include_bytes!("../../tests/fixtures/keys/attacker.pem");
const K1_PUB_PEM: &[u8] = include_bytes!("../../tests/fixtures/keys/k1.pub.pem");
const K1_JWK: &str = include_str!("../../tests/fixtures/keys/k1.jwk.json");
const K2_JWK: &str = include_str!("../../tests/fixtures/keys/k2.jwk.json");

/// A fixture key.
#[derive(Debug, Clone, Copy)]
pub enum Fixture {
    K1,
    K2,
    Attacker,
}

impl Fixture {
    fn pem(self) -> &'static [u8] {
        match self {
            Fixture::K1 => K1_PEM,
            Fixture::K2 => K2_PEM,
            Fixture::Attacker => ATTACKER_PEM,
        }
    }
}

/// A published key's JWK (`k1` or `k2`).
pub fn jwk(key: Fixture) -> Value {
    let text = match key {
        Fixture::K1 => K1_JWK,
        Fixture::K2 => K2_JWK,
        Fixture::Attacker => panic!("the attacker's key is never published"),
    };
    serde_json::from_str(text).expect("a fixture JWK")
}

/// `k1`'s public key as PEM bytes (what an algorithm-confusion attack signs with).
pub fn k1_public_pem() -> &'static [u8] {
    K1_PUB_PEM
}

/// Signs `claims` with `key` under `alg`, with `kid` in the header.
pub fn sign_alg(alg: Algorithm, key: Fixture, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    let key = EncodingKey::from_rsa_pem(key.pem()).expect("a fixture key");
    encode(&header, claims, &key).expect("a signed token")
}

/// Signs `claims` with `key` (RS256), with `kid` in the header.
pub fn sign(key: Fixture, kid: Option<&str>, claims: &Value) -> String {
    sign_alg(Algorithm::RS256, key, kid, claims)
}

/// Claims for `sub` as the provider issues them: valid for an hour.
pub fn claims(sub: &str) -> Value {
    let now = now_secs();
    json!({
        "iss": ISSUER,
        "sub": sub,
        "aud": [AUDIENCE, format!("{ISSUER}userinfo")],
        "iat": now,
        "exp": now + 3600,
        "email": format!("{sub}@example.com"),
        "permissions": ["read:workspace"],
    })
}

/// A config with browser sign-in (`oidc.client_id`, the cookie key) and
/// `oidc_extra` added to `[oidc]`.
pub fn config(issuer: &str, oidc_extra: &str) -> Config {
    let text = format!(
        "[oidc]\nissuer = \"{issuer}\"\naudience = \"{AUDIENCE}\"\nclient_id = \"{CLIENT_ID}\"\n{oidc_extra}\n\
         [routing]\ndomain = \"{DOMAIN}\"\nroost_url = \"http://127.0.0.1:8080\"\n\
         [workspace]\nimage = \"roost-echo:test\"\n"
    );
    let secrets = Secrets {
        oidc_client_secret: Some(Secret::new("test-client-secret")),
        cookie_key: Some(Secret::new(COOKIE_KEY)),
        cookie_key_previous: None,
        redis_url: None,
    };
    match Config::from_toml(&text, secrets) {
        Ok(config) => config,
        Err(e) => panic!("test config: {e}"),
    }
}

/// What the fake provider answers for the JWKS.
pub enum JwksAnswer {
    Keys(Vec<Value>),
    Status(u16),
    Text(&'static str),
}

/// The provider in memory: discovery for `issuer`, a JWKS the test sets,
/// a token endpoint that answers what the test sets. Counts every fetch.
pub struct FakeProvider {
    /// The issuer discovery states.
    pub issuer: String,
    jwks: Mutex<JwksAnswer>,
    token_answer: Mutex<Option<Value>>,
    posts: Mutex<Vec<(String, String)>>,
    discovery_fetches: AtomicUsize,
    jwks_fetches: AtomicUsize,
}

impl FakeProvider {
    pub fn new(issuer: &str, keys: Vec<Value>) -> Arc<FakeProvider> {
        Arc::new(FakeProvider {
            issuer: issuer.to_string(),
            jwks: Mutex::new(JwksAnswer::Keys(keys)),
            token_answer: Mutex::new(None),
            posts: Mutex::new(Vec::new()),
            discovery_fetches: AtomicUsize::new(0),
            jwks_fetches: AtomicUsize::new(0),
        })
    }

    /// `https://id.example.com` (no trailing slash), however the issuer ends.
    pub fn base(&self) -> &str {
        self.issuer.trim_end_matches('/')
    }

    pub fn jwks_uri(&self) -> String {
        format!("{}/.well-known/jwks.json", self.base())
    }

    pub fn authorize_uri(&self) -> String {
        format!("{}/authorize", self.base())
    }

    pub fn token_uri(&self) -> String {
        format!("{}/oauth/token", self.base())
    }

    pub fn answer_jwks(&self, answer: JwksAnswer) {
        *self.jwks.lock().expect("not poisoned") = answer;
    }

    /// What the token endpoint answers from now on (`None`: HTTP 400).
    pub fn answer_token(&self, answer: Option<Value>) {
        *self.token_answer.lock().expect("not poisoned") = answer;
    }

    /// The forms POSTed so far, with their URLs.
    pub fn posts(&self) -> Vec<(String, String)> {
        self.posts.lock().expect("not poisoned").clone()
    }

    pub fn discovery_fetches(&self) -> usize {
        self.discovery_fetches.load(Ordering::SeqCst)
    }

    pub fn jwks_fetches(&self) -> usize {
        self.jwks_fetches.load(Ordering::SeqCst)
    }
}

impl KeyFetcher for FakeProvider {
    fn fetch<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<Bytes, FetchError>> {
        Box::pin(async move {
            if url == format!("{}/.well-known/openid-configuration", self.base()) {
                self.discovery_fetches.fetch_add(1, Ordering::SeqCst);
                let doc = json!({
                    "issuer": self.issuer,
                    "jwks_uri": self.jwks_uri(),
                    "authorization_endpoint": self.authorize_uri(),
                    "token_endpoint": self.token_uri(),
                });
                return Ok(Bytes::from(doc.to_string()));
            }
            if url == self.jwks_uri() {
                self.jwks_fetches.fetch_add(1, Ordering::SeqCst);
                return match &*self.jwks.lock().expect("not poisoned") {
                    JwksAnswer::Keys(keys) => Ok(Bytes::from(json!({ "keys": keys }).to_string())),
                    JwksAnswer::Status(status) => Err(FetchError::Status(*status)),
                    JwksAnswer::Text(text) => Ok(Bytes::from_static(text.as_bytes())),
                };
            }
            Err(FetchError::Status(404))
        })
    }

    fn post_form<'a>(&'a self, url: &'a str, form: String) -> BoxFuture<'a, Result<Bytes, FetchError>> {
        Box::pin(async move {
            self.posts.lock().expect("not poisoned").push((url.to_string(), form));
            if url != self.token_uri() {
                return Err(FetchError::Status(404));
            }
            match &*self.token_answer.lock().expect("not poisoned") {
                Some(answer) => Ok(Bytes::from(answer.to_string())),
                None => Err(FetchError::Status(400)),
            }
        })
    }
}

/// A key store over `provider` for `config`, not loaded yet.
pub fn key_store(config: &Config, provider: &Arc<FakeProvider>) -> Arc<KeyStore> {
    Arc::new(KeyStore::new(&config.oidc, provider.clone(), Arc::new(Metrics::new())))
}

/// A verifier over `provider` for `config`, its keys loaded.
pub async fn verifier(config: &Config, provider: &Arc<FakeProvider>) -> Verifier {
    let keys = key_store(config, provider);
    if let Err(e) = keys.refresh().await {
        panic!("keys from memory: {e}");
    }
    Verifier::new(&config.oidc, keys, Arc::new(Metrics::new()))
}
