//! The provider's signing keys: OIDC discovery, the JWKS, and keeping them
//! fresh. Keys are swapped atomically ([`ArcSwapOption`]) so verification
//! never waits on a lock; an unknown `kid` triggers at most one refetch per
//! `oidc.jwks_min_refetch` (a flood of random kids is not a flood of
//! fetches); when the provider is unreachable the cached keys keep serving
//! and the refresher retries with backoff.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::config::OidcConfig;
use crate::metrics::{Metrics, RefreshOutcome};

/// Largest discovery or JWKS document accepted.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Backoff bounds while the provider cannot be reached.
const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Why a document could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("not a URL: {0}")]
    BadUrl(String),
    #[error("request failed: {0}")]
    Transport(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("timed out")]
    Timeout,
}

/// Fetches a document over HTTP(S). A trait so key logic is testable; the
/// real one is [`HttpFetcher`].
pub trait KeyFetcher: Send + Sync + 'static {
    fn fetch<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<Bytes, FetchError>>;
    /// POSTs a form (`application/x-www-form-urlencoded`): the sign-in code
    /// exchange at the provider's token endpoint.
    fn post_form<'a>(&'a self, url: &'a str, form: String) -> BoxFuture<'a, Result<Bytes, FetchError>>;
}

/// The real fetcher: a pooled hyper client with rustls (Auth0 is https).
pub struct HttpFetcher {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl HttpFetcher {
    pub fn new(timeout: Duration) -> Self {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .build();
        HttpFetcher {
            client: Client::builder(TokioExecutor::new()).build(https),
            timeout,
        }
    }
}

impl HttpFetcher {
    async fn send(&self, req: http::Request<Full<Bytes>>) -> Result<Bytes, FetchError> {
        let work = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| FetchError::Transport(e.into()))?;
            if !resp.status().is_success() {
                return Err(FetchError::Status(resp.status().as_u16()));
            }
            let body = Limited::new(resp.into_body(), MAX_DOCUMENT_BYTES)
                .collect()
                .await
                .map_err(FetchError::Transport)?;
            Ok(body.to_bytes())
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| FetchError::Timeout)?
    }
}

impl KeyFetcher for HttpFetcher {
    fn fetch<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<Bytes, FetchError>> {
        Box::pin(async move {
            let uri: http::Uri = url.parse().map_err(|_| FetchError::BadUrl(url.to_string()))?;
            let req = http::Request::get(uri)
                .header(http::header::ACCEPT, "application/json")
                .body(Full::default())
                .map_err(|e| FetchError::Transport(e.into()))?;
            self.send(req).await
        })
    }

    fn post_form<'a>(&'a self, url: &'a str, form: String) -> BoxFuture<'a, Result<Bytes, FetchError>> {
        Box::pin(async move {
            let uri: http::Uri = url.parse().map_err(|_| FetchError::BadUrl(url.to_string()))?;
            let req = http::Request::post(uri)
                .header(http::header::ACCEPT, "application/json")
                .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Full::new(Bytes::from(form)))
                .map_err(|e| FetchError::Transport(e.into()))?;
            self.send(req).await
        })
    }
}

/// Why keys could not be (re)loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("fetching {what} from {url}: {source}")]
    Fetch {
        what: &'static str,
        url: String,
        #[source]
        source: FetchError,
    },
    #[error("parsing {what}: {source}")]
    Parse {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("discovery says issuer {discovered:?}, configured {configured:?}; they must match exactly")]
    IssuerMismatch { configured: String, discovered: String },
    #[error("the JWKS has no key usable with the configured algorithms")]
    NoUsableKeys,
}

/// A usable verification key.
pub struct Key {
    pub decoding: DecodingKey,
    /// The key's own `alg`, when the JWKS states it.
    pub alg: Option<Algorithm>,
}

/// One loaded JWKS.
pub struct KeySet {
    by_kid: HashMap<String, Arc<Key>>,
    /// The only key, for tokens without a `kid` when the set has exactly one.
    only: Option<Arc<Key>>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    end_session_endpoint: Option<String>,
}

/// The provider's endpoints, from discovery.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub jwks_uri: String,
    pub authorization: Option<String>,
    pub token: Option<String>,
    /// RP-initiated logout (Auth0: `/oidc/logout`), when offered.
    pub end_session: Option<String>,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

/// What a lookup found.
pub enum Lookup {
    Found(Arc<Key>),
    Unknown,
    NotLoaded,
}

/// The provider's keys, shared by every request.
pub struct KeyStore {
    issuer: String,
    algorithms: Vec<Algorithm>,
    fetcher: Arc<dyn KeyFetcher>,
    metrics: Arc<Metrics>,
    refresh_every: Duration,
    endpoints: ArcSwapOption<Endpoints>,
    keys: ArcSwapOption<KeySet>,
    /// Bumped whenever a refresh drops a key, so cached verdicts made with it
    /// stop counting.
    removals: AtomicU64,
    refetch_gate: DefaultDirectRateLimiter,
    refresh_lock: tokio::sync::Mutex<()>,
}

impl KeyStore {
    pub fn new(oidc: &OidcConfig, fetcher: Arc<dyn KeyFetcher>, metrics: Arc<Metrics>) -> Self {
        // Quota::with_period only fails for a zero period, which config rejects.
        let quota = Quota::with_period(oidc.jwks_min_refetch).unwrap_or_else(|| Quota::per_minute(NonZeroU32::MIN));
        KeyStore {
            issuer: oidc.issuer.clone(),
            algorithms: oidc.algorithms.clone(),
            fetcher,
            metrics,
            refresh_every: oidc.jwks_refresh,
            endpoints: ArcSwapOption::empty(),
            keys: ArcSwapOption::empty(),
            removals: AtomicU64::new(0),
            refetch_gate: RateLimiter::direct(quota),
            refresh_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// True once keys were loaded (what `/readyz` reports).
    pub fn is_loaded(&self) -> bool {
        self.keys.load().is_some()
    }

    /// The issuer as discovery stated it (and as tokens must carry it).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Counts key removals; a cached verdict older than the current count
    /// was made with keys that may be gone.
    pub fn removals(&self) -> u64 {
        self.removals.load(Ordering::Acquire)
    }

    /// The key for `kid`, from memory.
    pub fn lookup(&self, kid: Option<&str>) -> Lookup {
        let guard = self.keys.load();
        let Some(set) = guard.as_ref() else {
            return Lookup::NotLoaded;
        };
        let key = match kid {
            Some(kid) => set.by_kid.get(kid).cloned(),
            None => set.only.clone(),
        };
        key.map_or(Lookup::Unknown, Lookup::Found)
    }

    /// The key for `kid`; on an unknown kid, refetches the JWKS once unless
    /// a refetch happened within `oidc.jwks_min_refetch`, and joins a refetch
    /// already under way instead of starting another.
    pub async fn key_for(&self, kid: Option<&str>) -> Lookup {
        match self.lookup(kid) {
            Lookup::Unknown => {}
            other => return other,
        }
        match self.refresh_lock.try_lock() {
            Ok(guard) => {
                if self.refetch_gate.check().is_err() {
                    return Lookup::Unknown;
                }
                if let Err(e) = self.refresh_locked().await {
                    tracing::warn!(error = %e, "JWKS refetch for an unknown kid failed");
                }
                drop(guard);
            }
            Err(_) => {
                // Someone is refreshing right now: wait for their result.
                drop(self.refresh_lock.lock().await);
            }
        }
        self.lookup(kid)
    }

    /// Loads discovery (first time) and the JWKS; keeps the old keys on error.
    pub async fn refresh(&self) -> Result<(), KeysError> {
        let _guard = self.refresh_lock.lock().await;
        self.refresh_locked().await
    }

    async fn refresh_locked(&self) -> Result<(), KeysError> {
        let result = self.load().await;
        let outcome = if result.is_ok() {
            RefreshOutcome::Ok
        } else {
            RefreshOutcome::Error
        };
        self.metrics.jwks_refresh(outcome);
        result
    }

    async fn load(&self) -> Result<(), KeysError> {
        let endpoints = match self.endpoints.load_full() {
            Some(e) => e,
            None => {
                let e = Arc::new(self.discover().await?);
                self.endpoints.store(Some(e.clone()));
                e
            }
        };
        let jwks_uri = &endpoints.jwks_uri;
        let body = self.fetcher.fetch(jwks_uri).await.map_err(|source| KeysError::Fetch {
            what: "JWKS",
            url: jwks_uri.to_string(),
            source,
        })?;
        let raw: RawJwks = serde_json::from_slice(&body).map_err(|source| KeysError::Parse { what: "JWKS", source })?;
        let set = self.key_set(raw);
        if set.by_kid.is_empty() && set.only.is_none() {
            return Err(KeysError::NoUsableKeys);
        }
        let old = self.keys.swap(Some(Arc::new(set)));
        if let Some(old) = old {
            let now = self.keys.load();
            let dropped = now
                .as_ref()
                .is_some_and(|now| old.by_kid.keys().any(|kid| !now.by_kid.contains_key(kid)));
            if dropped {
                self.removals.fetch_add(1, Ordering::AcqRel);
            }
        }
        Ok(())
    }

    /// The provider's endpoints, once discovery was loaded.
    pub fn endpoints(&self) -> Option<Arc<Endpoints>> {
        self.endpoints.load_full()
    }

    async fn discover(&self) -> Result<Endpoints, KeysError> {
        let url = format!("{}/.well-known/openid-configuration", self.issuer.trim_end_matches('/'));
        let body = self.fetcher.fetch(&url).await.map_err(|source| KeysError::Fetch {
            what: "discovery",
            url: url.clone(),
            source,
        })?;
        let doc: Discovery = serde_json::from_slice(&body).map_err(|source| KeysError::Parse {
            what: "discovery",
            source,
        })?;
        if doc.issuer != self.issuer {
            return Err(KeysError::IssuerMismatch {
                configured: self.issuer.clone(),
                discovered: doc.issuer,
            });
        }
        Ok(Endpoints {
            jwks_uri: doc.jwks_uri,
            authorization: doc.authorization_endpoint,
            token: doc.token_endpoint,
            end_session: doc.end_session_endpoint,
        })
    }

    /// The usable signature keys of a JWKS: asymmetric, for signing, and of
    /// an allowed algorithm. Anything else is skipped.
    fn key_set(&self, raw: RawJwks) -> KeySet {
        let mut usable = Vec::new();
        for value in raw.keys {
            let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
                continue;
            };
            if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
                continue;
            }
            if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
                continue; // symmetric keys never verify anything here
            }
            let alg = match &jwk.common.key_algorithm {
                Some(ka) => match Algorithm::from_str(&ka.to_string()) {
                    Ok(alg) if self.algorithms.contains(&alg) => Some(alg),
                    _ => continue,
                },
                None => None,
            };
            let Ok(decoding) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            usable.push((jwk.common.key_id.clone(), Arc::new(Key { decoding, alg })));
        }
        let only = if usable.len() == 1 {
            Some(usable[0].1.clone())
        } else {
            None
        };
        let by_kid = usable
            .into_iter()
            .filter_map(|(kid, key)| kid.map(|kid| (kid, key)))
            .collect();
        KeySet { by_kid, only }
    }

    /// Keeps the keys fresh until `cancel`: loads them at once, refreshes
    /// every `oidc.jwks_refresh`, retries with backoff while the provider is
    /// unreachable (the cached keys keep serving meanwhile).
    pub async fn run_refresher(self: Arc<Self>, cancel: CancellationToken) {
        let mut backoff = BACKOFF_START;
        loop {
            let wait = match self.refresh().await {
                Ok(()) => {
                    if backoff != BACKOFF_START {
                        tracing::info!("signing keys loaded");
                    }
                    backoff = BACKOFF_START;
                    self.refresh_every
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "cannot load signing keys");
                    let wait = backoff;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    wait
                }
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests;
