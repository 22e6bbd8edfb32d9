//! Token verification. Algorithms come from config, never from the token;
//! `jku`, `x5u` and `jwk` headers are ignored; tokens over
//! [`MAX_TOKEN_BYTES`] are refused before parsing. Verified identities are
//! cached (moka) until the token's `exp`, so the hot path does no RSA work.
//!
//! The cache key is a fast hash of the token with a per-process random seed
//! (foldhash); the verdict keeps the token and a hit counts only when it is
//! byte-for-byte the one presented. A collision can therefore cost a miss,
//! never let an unverified token pass, and the lookup costs tens of
//! nanoseconds instead of a cryptographic hash.
//!
//! In front of moka sits a small direct-mapped table of the verdicts last
//! used (one atomic load per hit, the same byte compare and expiry checks):
//! a repeat token is answered without touching moka's bookkeeping, which
//! matters when each request arrives with cold CPU caches (as forwardAuth
//! calls do, between Traefik's own work).

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::{decode, decode_header, Validation};
use std::hash::BuildHasher;

use arc_swap::ArcSwapOption;
use foldhash::fast::RandomState;
use moka::sync::Cache;
use moka::Expiry;
use serde_json::{Map, Value};

use super::jwks::{KeyStore, Lookup};
use super::{AuthError, Identity};
use crate::clock::now_secs;
use crate::config::OidcConfig;
use crate::metrics::Metrics;

/// Tokens longer than this are refused without being parsed.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Upper bound on how long a verdict is cached, whatever the token's `exp`.
const MAX_CACHE_TTL: Duration = Duration::from_secs(3600);
const CACHE_CAPACITY: u64 = 100_000;
/// Slots of the front table (a power of two).
const FRONT_SLOTS: usize = 1024;

type TokenHash = u64;

struct Verdict {
    /// The token this verdict is for, compared on every hit.
    token: Box<str>,
    identity: Arc<Identity>,
    /// [`KeyStore::removals`] when verified.
    removals: u64,
}

struct UntilExp;

impl Expiry<TokenHash, Arc<Verdict>> for UntilExp {
    fn expire_after_create(&self, _key: &TokenHash, v: &Arc<Verdict>, _created_at: Instant) -> Option<Duration> {
        let left = v.identity.exp.saturating_sub(now_secs());
        Some(Duration::from_secs(left).min(MAX_CACHE_TTL))
    }
}

/// Who signed in: what a verified ID token says (and what a session
/// opened from its cookie says again).
#[derive(Debug, Clone)]
pub struct IdClaims {
    pub sub: String,
    /// The value of `oidc.username_claim`.
    pub username: String,
    pub email: Option<String>,
    pub admin: bool,
    /// The permissions the config names that the token grants.
    pub permissions: Vec<String>,
}

/// Verifies bearer tokens (and, later, ID tokens from sign-in).
pub struct Verifier {
    keys: Arc<KeyStore>,
    validation: Validation,
    /// For sign-in ID tokens: audience `oidc.client_id`.
    id_validation: Option<Validation>,
    username_claim: String,
    admin_permission: String,
    /// The permissions worth keeping in an identity ([`Identity::permissions`]).
    wanted: Vec<String>,
    cache: Cache<TokenHash, Arc<Verdict>>,
    /// The verdicts last used, by hash: the fast path in front of `cache`.
    front: Box<[ArcSwapOption<Verdict>]>,
    hasher: RandomState,
    metrics: Arc<Metrics>,
}

impl Verifier {
    pub fn new(oidc: &OidcConfig, keys: Arc<KeyStore>, metrics: Arc<Metrics>) -> Self {
        let mut validation = Validation::new(oidc.algorithms[0]);
        validation.algorithms = oidc.algorithms.clone();
        validation.leeway = oidc.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_audience(&[&oidc.audience]);
        validation.set_issuer(&[&oidc.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let id_validation = oidc.client_id.as_ref().map(|client_id| {
            let mut v = validation.clone();
            v.set_audience(&[client_id]);
            v
        });
        Verifier {
            keys,
            validation,
            id_validation,
            username_claim: oidc.username_claim.clone(),
            admin_permission: oidc.admin_permission.clone(),
            wanted: Vec::new(),
            cache: Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .expire_after(UntilExp)
                .build(),
            front: (0..FRONT_SLOTS).map(|_| ArcSwapOption::empty()).collect(),
            hasher: RandomState::default(),
            metrics,
        }
    }

    /// Keeps these of a token's permissions in its identity (the ones the
    /// config names: profiles, quota exemption).
    pub fn with_permissions(mut self, wanted: Vec<String>) -> Self {
        self.wanted = wanted;
        self
    }

    pub fn keys(&self) -> &Arc<KeyStore> {
        &self.keys
    }

    /// The identity for a token if a verdict for it is cached: no crypto,
    /// no await.
    pub fn cached(&self, token: &str) -> Option<Arc<Identity>> {
        if token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        let hash = self.hasher.hash_one(token);
        let slot = self.front_slot(hash);
        if let Some(verdict) = slot.load().as_deref() {
            if self.still_good(verdict, token) {
                self.metrics.token_cache(true);
                return Some(verdict.identity.clone());
            }
        }
        let verdict = self.cache.get(&hash)?;
        if *verdict.token != *token {
            return None; // another token with the same hash: a miss, never a pass
        }
        if !self.still_good(&verdict, token) {
            self.cache.invalidate(&hash);
            slot.store(None);
            return None;
        }
        self.metrics.token_cache(true);
        let identity = verdict.identity.clone();
        slot.store(Some(verdict));
        Some(identity)
    }

    fn front_slot(&self, hash: TokenHash) -> &ArcSwapOption<Verdict> {
        // FRONT_SLOTS is a power of two: the mask picks a slot.
        &self.front[(hash as usize) & (FRONT_SLOTS - 1)]
    }

    /// The verdict is for exactly this token, its key is still published,
    /// and the token has not expired.
    fn still_good(&self, verdict: &Verdict, token: &str) -> bool {
        *verdict.token == *token && verdict.removals == self.keys.removals() && verdict.identity.exp > now_secs()
    }

    /// The identity for a token, from the cache or by full verification
    /// (whose verdict is then cached until the token's `exp`).
    pub async fn verify(&self, token: &str) -> Result<Arc<Identity>, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLarge);
        }
        if let Some(identity) = self.cached(token) {
            return Ok(identity);
        }
        self.metrics.token_cache(false);
        let removals = self.keys.removals();
        let identity = Arc::new(self.verify_uncached(token).await?);
        let verdict = Verdict {
            token: token.into(),
            identity: identity.clone(),
            removals,
        };
        let hash = self.hasher.hash_one(token);
        let verdict = Arc::new(verdict);
        self.front_slot(hash).store(Some(verdict.clone()));
        self.cache.insert(hash, verdict);
        Ok(identity)
    }

    /// Full verification: the signature with a key from the JWKS, then the
    /// claims. The token's header only selects a key by `kid`.
    pub async fn verify_uncached(&self, token: &str) -> Result<Identity, AuthError> {
        let claims = self.decode(token, &self.validation).await?;
        Identity::from_claims(&claims, &self.username_claim, &self.admin_permission, &self.wanted)
    }

    /// Verifies an ID token from the sign-in code exchange exactly like a
    /// bearer token (keys, algorithms, issuer, expiry), but for audience
    /// `oidc.client_id` and with the `nonce` this sign-in sent.
    pub async fn verify_id_token(&self, token: &str, nonce: &str) -> Result<IdClaims, AuthError> {
        let validation = self
            .id_validation
            .as_ref()
            .ok_or(AuthError::Claims("sign-in not configured"))?;
        let claims = self.decode(token, validation).await?;
        if claims.get("nonce").and_then(Value::as_str) != Some(nonce) {
            return Err(AuthError::Claims("nonce mismatch"));
        }
        let text = |name: &str| claims.get(name).and_then(Value::as_str).filter(|s| !s.is_empty());
        let identity = Identity::from_claims(&claims, &self.username_claim, &self.admin_permission, &self.wanted)?;
        Ok(IdClaims {
            sub: identity.sub.to_string(),
            username: text(&self.username_claim).unwrap_or_default().to_string(),
            email: identity.email.clone(),
            admin: identity.admin,
            permissions: identity.permissions.clone(),
        })
    }

    async fn decode(&self, token: &str, validation: &Validation) -> Result<Map<String, Value>, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::TooLarge);
        }
        let header = decode_header(token).map_err(AuthError::Malformed)?;
        if !validation.algorithms.contains(&header.alg) {
            return Err(AuthError::AlgorithmNotAllowed(header.alg));
        }
        let key = match self.keys.key_for(header.kid.as_deref()).await {
            Lookup::Found(key) => key,
            Lookup::Unknown => return Err(AuthError::UnknownKey(header.kid)),
            Lookup::NotLoaded => return Err(AuthError::KeysUnavailable),
        };
        if key.alg.is_some_and(|alg| alg != header.alg) {
            return Err(AuthError::AlgorithmNotAllowed(header.alg));
        }
        let data = decode::<Map<String, Value>>(token, &key.decoding, validation).map_err(AuthError::from_jwt)?;
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests;
