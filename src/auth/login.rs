//! Browser sign-in: the OIDC authorization code flow with PKCE (S256),
//! `state` and `nonce`, and sign-out.
//!
//! `/_roost/login?rd=` sends the browser to the provider with a fresh
//! state, nonce and PKCE challenge, kept in a short-lived sealed cookie of
//! its own (`roost_login_<state prefix>`), so several tabs can sign in at
//! once; at most [`MAX_PENDING`] such cookies exist, the oldest give way.
//! `/_roost/callback` finds the attempt by its state, refuses a state seen
//! before, exchanges the code (with the verifier and
//! `ROOST_OIDC_CLIENT_SECRET`), validates the ID token like a bearer token
//! (audience `oidc.client_id`, the nonce sent), sets the session cookie and
//! returns to `rd` if it is under the domain, else to the user's workspace.

use std::sync::Arc;
use std::time::Duration;

use cookie::Cookie;
use http::header::SET_COOKIE;
use http::{HeaderValue, Response, StatusCode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::jwks::{FetchError, KeyFetcher, KeyStore};
use super::session::{cookies, random_token, Sessions};
use super::{AuthError, Verifier};
use crate::clock::now_secs;
use crate::config::{Config, Secret};
use crate::public_url::{encode, PublicOrigin};
use crate::response::{redirect, Body};
use crate::store::Store;

/// Names of the per-attempt state cookies start with this.
pub const LOGIN_COOKIE_PREFIX: &str = "roost_login_";
/// Sign-in attempts one browser may have under way at once.
pub const MAX_PENDING: usize = 8;
/// Path of the callback (and of the state cookies).
pub const CALLBACK_PATH: &str = "/_roost/callback";

/// Why a sign-in step failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("browser sign-in is not configured")]
    NotConfigured,
    #[error("the provider's endpoints are not known yet")]
    NotDiscovered,
    #[error("callback without code or state")]
    Incomplete,
    #[error("no sign-in under way for this state")]
    NoPending,
    #[error("the sign-in attempt expired")]
    Expired,
    #[error("state already used")]
    Replayed,
    #[error("cannot check the state's single use: {0}")]
    StoreDown(#[source] crate::store::StoreError),
    #[error("the provider refused sign-in: {0}")]
    Denied(String),
    #[error("code exchange failed: {0}")]
    Exchange(#[source] FetchError),
    #[error("unreadable token endpoint answer")]
    BadTokenResponse,
    #[error("ID token refused: {0}")]
    IdToken(#[source] AuthError),
}

/// One sign-in attempt, sealed in its state cookie.
#[derive(Serialize, Deserialize)]
struct Pending {
    #[serde(rename = "s")]
    state: String,
    #[serde(rename = "n")]
    nonce: String,
    #[serde(rename = "v")]
    verifier: String,
    /// Where to go afterwards (already validated).
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    rd: Option<String>,
    #[serde(rename = "x")]
    expires: u64,
}

#[derive(Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
}

/// The sign-in flow and what it needs.
pub struct Login {
    client_id: String,
    client_secret: Option<Secret>,
    scopes: String,
    origin: PublicOrigin,
    redirect_uri: String,
    sessions: Arc<Sessions>,
    keys: Arc<KeyStore>,
    fetcher: Arc<dyn KeyFetcher>,
    verifier: Arc<Verifier>,
    timeout: Duration,
    /// Where used states are remembered (single use across replicas).
    store: Arc<dyn Store>,
    logout_return: String,
}

/// The store's key for a used sign-in state: a digest, not the state.
fn state_key(state: &str) -> String {
    use base64::Engine as _;
    let digest = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(state.as_bytes()));
    format!("state:{digest}")
}

impl Login {
    /// `None` unless `oidc.client_id` is set (config then requires the
    /// cookie key, so `sessions` exists).
    pub fn new(
        config: &Config,
        origin: &PublicOrigin,
        sessions: Arc<Sessions>,
        keys: Arc<KeyStore>,
        fetcher: Arc<dyn KeyFetcher>,
        verifier: Arc<Verifier>,
        store: Arc<dyn Store>,
    ) -> Option<Login> {
        let client_id = config.oidc.client_id.clone()?;
        let timeout = config.session.login_timeout;
        Some(Login {
            client_id,
            client_secret: config.secrets.oidc_client_secret.clone(),
            scopes: config.oidc.scopes.clone(),
            redirect_uri: origin.url(CALLBACK_PATH),
            logout_return: config
                .session
                .logout_return_url
                .clone()
                .unwrap_or_else(|| origin.url("/_roost/signed-out")),
            origin: origin.clone(),
            sessions,
            keys,
            fetcher,
            verifier,
            timeout,
            store,
        })
    }

    /// `/_roost/login?rd=`: off to the provider, with this attempt's state
    /// cookie (and the oldest pending ones expired past [`MAX_PENDING`]).
    pub fn start(&self, rd: Option<&str>, cookie: Option<&HeaderValue>) -> Result<Response<Body>, LoginError> {
        let endpoints = self.keys.endpoints().ok_or(LoginError::NotDiscovered)?;
        let authorize = endpoints.authorization.as_deref().ok_or(LoginError::NotDiscovered)?;
        let pending = Pending {
            state: random_token(24),
            nonce: random_token(24),
            verifier: random_token(32),
            rd: rd.and_then(|rd| self.origin.safe_redirect(rd)),
            expires: now_secs() + self.timeout.as_secs(),
        };
        let challenge = {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(pending.verifier.as_bytes()))
        };
        let location = format!(
            "{authorize}{}response_type=code&client_id={}&redirect_uri={}&scope={}&state={}&nonce={}&code_challenge={challenge}&code_challenge_method=S256",
            if authorize.contains('?') { '&' } else { '?' },
            encode(&self.client_id),
            encode(&self.redirect_uri),
            encode(&self.scopes),
            pending.state,
            pending.nonce,
        );
        let mut resp = redirect(StatusCode::FOUND, &location);
        for name in self.oldest_pending(cookie) {
            let gone = Cookie::build((name, ""))
                .path("/_roost/")
                .max_age(cookie::time::Duration::ZERO);
            resp.headers_mut().append(SET_COOKIE, self.sessions.header(gone.into()));
        }
        let name = cookie_name(&pending.state);
        // Pending always serializes (strings and a number).
        let sealed = self
            .sessions
            .seal(&name, &serde_json::to_string(&pending).unwrap_or_default());
        let state_cookie = Cookie::build((name, sealed))
            .path("/_roost/")
            .max_age(cookie::time::Duration::seconds(self.timeout.as_secs() as i64));
        resp.headers_mut()
            .append(SET_COOKIE, self.sessions.header(state_cookie.into()));
        Ok(resp)
    }

    /// The state cookies to expire so that, with the new one, at most
    /// [`MAX_PENDING`] remain: unreadable ones first, then the oldest.
    fn oldest_pending(&self, cookie: Option<&HeaderValue>) -> Vec<String> {
        let mut pending: Vec<(u64, String)> = cookies(cookie)
            .filter(|(name, _)| name.starts_with(LOGIN_COOKIE_PREFIX))
            .map(|(name, value)| {
                let expires = self
                    .sessions
                    .unseal(name, value)
                    .and_then(|(json, _)| serde_json::from_str::<Pending>(&json).ok())
                    .map_or(0, |p| p.expires);
                (expires, name.to_string())
            })
            .collect();
        let excess = (pending.len() + 1).saturating_sub(MAX_PENDING);
        pending.sort();
        pending.into_iter().take(excess).map(|(_, name)| name).collect()
    }

    /// `/_roost/callback?code=&state=`: completes the attempt the state
    /// names, sets the session, and returns the browser where it was going.
    pub async fn callback(
        &self,
        query: Option<&str>,
        cookie: Option<&HeaderValue>,
    ) -> Result<Response<Body>, LoginError> {
        let (mut code, mut state, mut error) = (None, None, None);
        for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*k {
                "code" => code = Some(v.into_owned()),
                "state" => state = Some(v.into_owned()),
                "error" => error = Some(v.into_owned()),
                _ => {}
            }
        }
        let state = state
            .filter(|s| !s.is_empty() && s.len() <= 64)
            .ok_or(LoginError::Incomplete)?;
        if let Some(error) = error {
            return Err(LoginError::Denied(error.chars().take(64).collect()));
        }
        let code = code.filter(|c| !c.is_empty()).ok_or(LoginError::Incomplete)?;
        let name = cookie_name(&state);
        let value = cookies(cookie)
            .find_map(|(n, v)| (n == name).then_some(v))
            .ok_or(LoginError::NoPending)?;
        let pending: Pending = self
            .sessions
            .unseal(&name, value)
            .and_then(|(json, _)| serde_json::from_str(&json).ok())
            .ok_or(LoginError::NoPending)?;
        if pending.state != state {
            return Err(LoginError::NoPending);
        }
        if pending.expires <= now_secs() {
            return Err(LoginError::Expired);
        }
        // Single use across replicas; the store keeps a digest, not the state.
        match self.store.use_once(&state_key(&state), self.timeout).await {
            Ok(true) => {}
            Ok(false) => return Err(LoginError::Replayed),
            Err(e) => return Err(LoginError::StoreDown(e)),
        }

        let id_token = self.exchange(&code, &pending.verifier).await?;
        let claims = self
            .verifier
            .verify_id_token(&id_token, &pending.nonce)
            .await
            .map_err(LoginError::IdToken)?;
        let session = self.sessions.start(
            &claims.sub,
            &claims.username,
            claims.email,
            claims.admin,
            claims.permissions,
        );
        let identity = self.sessions.identity(&session).map_err(LoginError::IdToken)?;
        let target = pending.rd.unwrap_or_else(|| self.origin.workspace_url(&identity.slug));
        tracing::info!(target: "roost::audit", user = %claims.sub, "signed in");
        let mut resp = redirect(StatusCode::FOUND, &target);
        let headers = resp.headers_mut();
        headers.append(SET_COOKIE, self.sessions.set_cookie(&session));
        let gone = Cookie::build((name, ""))
            .path("/_roost/")
            .max_age(cookie::time::Duration::ZERO);
        headers.append(SET_COOKIE, self.sessions.header(gone.into()));
        Ok(resp)
    }

    /// The code exchange at the token endpoint (`client_secret_post`).
    async fn exchange(&self, code: &str, verifier: &str) -> Result<String, LoginError> {
        let endpoints = self.keys.endpoints().ok_or(LoginError::NotDiscovered)?;
        let token_url = endpoints.token.as_deref().ok_or(LoginError::NotDiscovered)?;
        let form = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "authorization_code")
                .append_pair("code", code)
                .append_pair("redirect_uri", &self.redirect_uri)
                .append_pair("client_id", &self.client_id)
                .append_pair("code_verifier", verifier);
            if let Some(secret) = &self.client_secret {
                form.append_pair("client_secret", secret.expose());
            }
            form.finish()
        };
        let body = self
            .fetcher
            .post_form(token_url, form)
            .await
            .map_err(LoginError::Exchange)?;
        let answer: TokenResponse = serde_json::from_slice(&body).map_err(|_| LoginError::BadTokenResponse)?;
        answer.id_token.ok_or(LoginError::BadTokenResponse)
    }

    /// Where a sign-out form's submission continues besides roost itself
    /// (the provider's end-session endpoint, else the return URL), as CSP
    /// source expressions: browsers check `form-action` on every redirect
    /// after a form is sent, so pages with the sign-out button allow them.
    pub fn sign_out_origins(&self) -> Vec<String> {
        let target = match self.keys.endpoints().and_then(|e| e.end_session.clone()) {
            Some(end) => end,
            None => self.logout_return.clone(),
        };
        url::Url::parse(&target)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .map(|u| u.origin().ascii_serialization())
            .filter(|o| o != self.origin.origin())
            .into_iter()
            .collect()
    }

    /// The sessions it signs people into.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// `POST /_roost/logout` (its form token already checked): the session
    /// cookie cleared, then (303) on to the provider's end-session endpoint
    /// when it has one (Auth0's `/v2/logout` takes `returnTo`, OIDC's
    /// `post_logout_redirect_uri`), else straight to the configured return
    /// URL.
    pub fn logout(&self) -> Response<Body> {
        let location = match self.keys.endpoints().and_then(|e| e.end_session.clone()) {
            Some(end) => {
                let param = if end.contains("/v2/logout") {
                    "returnTo"
                } else {
                    "post_logout_redirect_uri"
                };
                format!(
                    "{end}{}{param}={}&client_id={}",
                    if end.contains('?') { '&' } else { '?' },
                    encode(&self.logout_return),
                    encode(&self.client_id)
                )
            }
            None => self.logout_return.clone(),
        };
        let mut resp = redirect(StatusCode::SEE_OTHER, &location);
        resp.headers_mut().append(SET_COOKIE, self.sessions.clear_cookie());
        resp
    }
}

/// The state cookie's name for a state: a prefix of it is enough to tell
/// attempts apart; the full state is compared once the cookie is opened.
fn cookie_name(state: &str) -> String {
    let prefix: String = state
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(12)
        .collect();
    format!("{LOGIN_COOKIE_PREFIX}{prefix}")
}

#[cfg(test)]
mod tests;
