//! Browser sessions: what the `roost_session` cookie carries and how it is
//! sealed. The payload is a few short JSON fields, encrypted and
//! authenticated (AES-256-GCM, with the cookie's name as associated data)
//! by the `cookie` crate's private jar under a key derived from
//! `ROOST_COOKIE_KEY`; a cookie sealed with `ROOST_COOKIE_KEY_PREVIOUS` is
//! still accepted and re-sealed with the current key. Expiry slides: a
//! session used in the second half of `session.lifetime` is re-issued, up to
//! `session.max_age` after sign-in. The same sealing protects the
//! short-lived sign-in state cookies of [`crate::auth::Login`]. Opened
//! cookies are cached by value ([`opened`]), so a browser's requests pay
//! for the decryption once per cookie.

mod opened;

use std::time::Duration;

use cookie::{Cookie, CookieJar, Key, SameSite};
use http::HeaderValue;
use serde::{Deserialize, Serialize};

use std::sync::Arc;

pub use self::opened::{OpenedSession, SessionUser};
use super::{AuthError, Identity, Revocations};
use crate::clock::now_secs;
use crate::config::{Secrets, SessionConfig};
use crate::public_url::PublicOrigin;
use crate::store::Revocation;

/// The session cookie's name (roost's cookies never reach a workspace).
pub const SESSION_COOKIE: &str = "roost_session";

/// What a session cookie says, once opened.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Session {
    /// This session's id (random), what signing out revokes. Sessions
    /// sealed before ids existed have none: their form token stands in.
    #[serde(rename = "d", default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// The full `sub`.
    #[serde(rename = "s")]
    pub sub: String,
    /// The value of `oidc.username_claim` (the workspace name comes from it).
    #[serde(rename = "u")]
    pub username: String,
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(rename = "a", default)]
    pub admin: bool,
    /// [`Identity::permissions`].
    #[serde(rename = "p", default, skip_serializing_if = "Vec::is_empty")]
    pub permissions: Vec<String>,
    /// Sign-in time, seconds since the epoch (bounds the sliding expiry).
    #[serde(rename = "i")]
    pub signed_in: u64,
    /// Expiry, seconds since the epoch.
    #[serde(rename = "x")]
    pub expires: u64,
    /// The anti-CSRF token of this session's forms.
    #[serde(rename = "c")]
    pub csrf: String,
}

impl Session {
    /// The id revocations name.
    pub fn id(&self) -> &str {
        if self.id.is_empty() {
            &self.csrf
        } else {
            &self.id
        }
    }
}

/// An opened session and whether its cookie should be re-issued.
#[derive(Debug)]
pub struct Opened {
    pub session: Session,
    /// Past half its lifetime, or sealed with the previous key.
    pub refresh: bool,
}

/// Seals and opens roost's cookies.
pub struct Sessions {
    current: Key,
    previous: Option<Key>,
    domain: String,
    secure: bool,
    lifetime: Duration,
    max_age: Duration,
    revoked: Arc<Revocations>,
    opened: opened::OpenedCache,
}

/// `n` random bytes, URL-safe base64.
pub(crate) fn random_token(n: usize) -> String {
    use base64::Engine;
    let mut bytes = vec![0u8; n];
    // The OS RNG failing means the machine cannot do crypto at all.
    getrandom::fill(&mut bytes).expect("the operating system's random number generator failed");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Sessions {
    /// `None` without `ROOST_COOKIE_KEY` (browser sign-in is then off).
    pub fn new(secrets: &Secrets, config: &SessionConfig, origin: &PublicOrigin) -> Option<Sessions> {
        let current = Key::derive_from(secrets.cookie_key.as_ref()?.expose().as_bytes());
        let previous = secrets
            .cookie_key_previous
            .as_ref()
            .map(|k| Key::derive_from(k.expose().as_bytes()));
        Some(Sessions {
            current,
            previous,
            domain: origin.domain().to_string(),
            secure: origin.is_https(),
            lifetime: config.lifetime,
            max_age: config.max_age,
            revoked: Arc::new(Revocations::default()),
            opened: opened::OpenedCache::default(),
        })
    }

    /// Refuses the sessions in `revoked` from now on.
    pub fn with_revocations(self, revoked: Arc<Revocations>) -> Sessions {
        Sessions { revoked, ..self }
    }

    /// What signing `session` out revokes (its id, until it would have
    /// ended anyway), and its form token: two short copies out of the
    /// cached session, made on every request with a session cookie.
    pub fn revocation(&self, session: &OpenedSession) -> (Revocation, String) {
        let until = session.signed_in.saturating_add(self.max_age.as_secs());
        let id = session.id.clone();
        (Revocation::Session { id, until }, session.csrf.clone())
    }

    /// What signing `sub` out everywhere revokes: every session signed in
    /// until now.
    pub fn revoke_everywhere(&self, sub: &str) -> Revocation {
        Revocation::everywhere(sub, now_secs(), self.max_age)
    }

    /// A new session for a user who just signed in.
    pub fn start(
        &self,
        sub: &str,
        username: &str,
        email: Option<String>,
        admin: bool,
        permissions: Vec<String>,
    ) -> Session {
        let now = now_secs();
        Session {
            id: random_token(16),
            sub: sub.to_string(),
            username: username.to_string(),
            email,
            admin,
            permissions,
            signed_in: now,
            expires: now + self.lifetime.as_secs(),
            csrf: random_token(16),
        }
    }

    /// Encrypts `value` as cookie `name`'s value.
    pub fn seal(&self, name: &str, value: &str) -> String {
        let mut jar = CookieJar::new();
        jar.private_mut(&self.current)
            .add(Cookie::new(name.to_string(), value.to_string()));
        jar.get(name).map(|c| c.value().to_string()).unwrap_or_default()
    }

    /// Decrypts cookie `name`'s value: with the current key, else the
    /// previous one (`true` when it took the previous key).
    pub fn unseal(&self, name: &str, value: &str) -> Option<(String, bool)> {
        if value.len() > 2048 {
            return None;
        }
        let jar = CookieJar::new();
        let cookie = || Cookie::new(name.to_string(), value.to_string());
        if let Some(c) = jar.private(&self.current).decrypt(cookie()) {
            return Some((c.value().to_string(), false));
        }
        let c = jar.private(self.previous.as_ref()?).decrypt(cookie())?;
        Some((c.value().to_string(), true))
    }

    /// The `Set-Cookie` value carrying `session`.
    pub fn set_cookie(&self, session: &Session) -> HeaderValue {
        // A Session always serializes (strings, numbers, a bool).
        let json = serde_json::to_string(session).unwrap_or_default();
        let sealed = self.seal(SESSION_COOKIE, &json);
        let max_age = session.expires.saturating_sub(now_secs());
        self.header(
            Cookie::build((SESSION_COOKIE, sealed))
                .domain(self.domain.clone())
                .path("/")
                .max_age(cookie::time::Duration::seconds(max_age as i64))
                .into(),
        )
    }

    /// The `Set-Cookie` value that removes the session.
    pub fn clear_cookie(&self) -> HeaderValue {
        self.header(
            Cookie::build((SESSION_COOKIE, ""))
                .domain(self.domain.clone())
                .path("/")
                .max_age(cookie::time::Duration::ZERO)
                .into(),
        )
    }

    /// A cookie with roost's attributes: HttpOnly, SameSite=Lax, Secure on https.
    pub fn header(&self, mut cookie: Cookie<'static>) -> HeaderValue {
        cookie.set_http_only(true);
        cookie.set_same_site(SameSite::Lax);
        cookie.set_secure(self.secure);
        // Cookie names and sealed (base64) values are always header-safe.
        HeaderValue::from_str(&cookie.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// Opens a session cookie's value: authentic, unexpired, within max_age.
    pub fn open(&self, value: &str) -> Result<Opened, AuthError> {
        let (session, old_key) = self.unseal_session(value)?;
        let now = now_secs();
        self.check(&session, now)?;
        let refresh = self.refresh(&session, old_key, now);
        Ok(Opened { session, refresh })
    }

    /// [`open`](Self::open) through the cache of opened cookies: the same
    /// checks on every call, the decryption, JSON and identity once per
    /// cookie. Also whether the cookie is due for re-issue.
    pub fn open_cached(&self, value: &str) -> Result<(Arc<OpenedSession>, bool), AuthError> {
        if let Some(hit) = self.opened.get(value) {
            let now = now_secs();
            self.check_times(hit.signed_in, hit.expires, now)?;
            if self
                .revoked
                .is_revoked_parts(&hit.id, &hit.user.claims.sub, hit.signed_in)
            {
                return Err(AuthError::Session("revoked"));
            }
            let refresh = hit.old_key || self.due(hit.expires, now);
            return Ok((hit, refresh));
        }
        let (session, old_key) = self.unseal_session(value)?;
        let now = now_secs();
        self.check(&session, now)?;
        let user = self.opened.user(&session, || self.identity(&session))?;
        let refresh = self.refresh(&session, old_key, now);
        Ok((self.opened.insert(value, session, user, old_key), refresh))
    }

    /// A session cookie's value decrypted and read (and whether it took
    /// the previous key); not yet checked.
    fn unseal_session(&self, value: &str) -> Result<(Session, bool), AuthError> {
        let (json, old_key) = self
            .unseal(SESSION_COOKIE, value)
            .ok_or(AuthError::Session("not authentic"))?;
        let session = serde_json::from_str(&json).map_err(|_| AuthError::Session("unreadable"))?;
        Ok((session, old_key))
    }

    /// How many opened cookies are cached.
    pub fn cached(&self) -> u64 {
        self.opened.len()
    }

    /// Whether `session` is still good at `now`: unexpired, within
    /// `max_age`, of possible times, not revoked.
    fn check(&self, session: &Session, now: u64) -> Result<(), AuthError> {
        self.check_times(session.signed_in, session.expires, now)?;
        if self.revoked.is_revoked(session) {
            return Err(AuthError::Session("revoked"));
        }
        Ok(())
    }

    /// Unexpired, within `max_age`, of possible times.
    fn check_times(&self, signed_in: u64, expires: u64, now: u64) -> Result<(), AuthError> {
        if expires <= now {
            return Err(AuthError::Session("expired"));
        }
        if now.saturating_sub(signed_in) >= self.max_age.as_secs() {
            return Err(AuthError::Session("past max_age"));
        }
        // roost seals only sessions signed in by now; one from the future
        // (or expiring past max_age) is not one of its own.
        if signed_in > now.saturating_add(60) || expires > signed_in.saturating_add(self.max_age.as_secs()) {
            return Err(AuthError::Session("impossible times"));
        }
        Ok(())
    }

    /// Past half its lifetime, or sealed with the previous key.
    fn refresh(&self, session: &Session, old_key: bool, now: u64) -> bool {
        old_key || self.due(session.expires, now)
    }

    /// Past half its lifetime.
    fn due(&self, expires: u64, now: u64) -> bool {
        expires.saturating_sub(now) < self.lifetime.as_secs() / 2
    }

    /// The re-issued cookie for a session in use: expiry moved on, capped at
    /// `max_age` after sign-in.
    pub fn renew(&self, session: &Session) -> HeaderValue {
        let mut s = session.clone();
        s.expires = now_secs()
            .saturating_add(self.lifetime.as_secs())
            .min(s.signed_in.saturating_add(self.max_age.as_secs()));
        self.set_cookie(&s)
    }

    /// The identity a session stands for, valid until the session expires.
    pub fn identity(&self, session: &Session) -> Result<Identity, AuthError> {
        Identity::new(
            &session.sub,
            &session.username,
            session.email.clone(),
            session.admin,
            session.expires,
            session.permissions.clone(),
        )
    }
}

/// The value of cookie `name` in a `Cookie` request header.
pub fn cookie_value<'a>(header: Option<&'a HeaderValue>, name: &str) -> Option<&'a str> {
    cookies(header).find_map(|(n, v)| (n == name).then_some(v))
}

/// Every `name=value` pair of a `Cookie` request header.
pub fn cookies(header: Option<&HeaderValue>) -> impl Iterator<Item = (&str, &str)> {
    header
        .and_then(|h| h.to_str().ok())
        .into_iter()
        .flat_map(|s| s.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
}

#[cfg(test)]
mod tests;
