//! Session cookies opened recently, by value. A browser sends the same
//! cookie on every request until it is renewed, so its decryption, its JSON
//! and its identity are paid once per cookie, not once per request (they
//! made a cookie's `/auth` three times the cost of a cached token's).
//!
//! Keyed by a 128-bit digest of the value under two keys drawn at start
//! (SipHash), never by the value itself: no cookie stays in memory after
//! its request. A user's sessions (a browser's renewed cookies, other
//! devices) share one identity, found by a digest of what it is made of,
//! so 100,000 sessions of 10,000 users hold 10,000 identities.
//! Nothing that can change while cached is trusted from here:
//! expiry, `max_age` and revocation are checked on every use
//! ([`super::Sessions::open_cached`]).

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use super::Session;
use crate::auth::{IdClaims, Identity};

/// How many opened sessions stay cached (the least recently used go first).
pub const CAPACITY: u64 = 100_000;
/// A cached session unused this long is dropped (its cookie opens again).
const IDLE: Duration = Duration::from_secs(15 * 60);

/// A session cookie, opened: what is its own, and what it shares with the
/// user's other sessions.
#[derive(Debug)]
pub struct OpenedSession {
    /// What revocations name ([`Session::id`]).
    pub id: String,
    pub csrf: String,
    pub signed_in: u64,
    pub expires: u64,
    /// Sealed with the previous key: re-issue it with the current one.
    pub old_key: bool,
    pub user: Arc<SessionUser>,
    /// The second half of the value's digest.
    check: u64,
}

/// Who a session is for, shared by the user's sessions.
#[derive(Debug)]
pub struct SessionUser {
    pub claims: IdClaims,
    pub identity: Arc<Identity>,
}

impl OpenedSession {
    /// The session again, whole (to re-seal it).
    pub fn session(&self) -> Session {
        let u = &self.user.claims;
        Session {
            id: self.id.clone(),
            sub: u.sub.clone(),
            username: u.username.clone(),
            email: u.email.clone(),
            admin: u.admin,
            permissions: u.permissions.clone(),
            signed_in: self.signed_in,
            expires: self.expires,
            csrf: self.csrf.clone(),
        }
    }
}

pub(super) struct OpenedCache {
    cache: moka::sync::Cache<u64, Arc<OpenedSession>>,
    /// Users by a digest of the session fields they are made of.
    users: moka::sync::Cache<u64, (u64, Arc<SessionUser>)>,
    key: RandomState,
    check: RandomState,
}

impl Default for OpenedCache {
    fn default() -> Self {
        OpenedCache {
            cache: moka::sync::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_idle(IDLE)
                .build(),
            users: moka::sync::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_idle(IDLE)
                .build(),
            key: RandomState::new(),
            check: RandomState::new(),
        }
    }
}

impl OpenedCache {
    /// The session `value` opened to before, if cached.
    pub fn get(&self, value: &str) -> Option<Arc<OpenedSession>> {
        let hit = self.cache.get(&self.key.hash_one(value))?;
        (hit.check == self.check.hash_one(value)).then_some(hit)
    }

    /// Who `session` is for: the one already made from the same fields,
    /// or one with `make`'s identity.
    pub fn user<E>(
        &self,
        session: &Session,
        make: impl FnOnce() -> Result<Identity, E>,
    ) -> Result<Arc<SessionUser>, E> {
        let fields = (
            &session.sub,
            &session.username,
            &session.email,
            session.admin,
            &session.permissions,
        );
        let (key, check) = (self.key.hash_one(fields), self.check.hash_one(fields));
        if let Some((c, user)) = self.users.get(&key) {
            if c == check {
                return Ok(user);
            }
        }
        let user = Arc::new(SessionUser {
            claims: IdClaims {
                sub: session.sub.clone(),
                username: session.username.clone(),
                email: session.email.clone(),
                admin: session.admin,
                permissions: session.permissions.clone(),
            },
            identity: Arc::new(make()?),
        });
        self.users.insert(key, (check, user.clone()));
        Ok(user)
    }

    /// Remembers what `value` opened to.
    pub fn insert(&self, value: &str, session: Session, user: Arc<SessionUser>, old_key: bool) -> Arc<OpenedSession> {
        let id = session.id().to_string();
        let Session {
            csrf,
            signed_in,
            expires,
            ..
        } = session;
        let opened = Arc::new(OpenedSession {
            id,
            csrf,
            signed_in,
            expires,
            old_key,
            user,
            check: self.check.hash_one(value),
        });
        self.cache.insert(self.key.hash_one(value), opened.clone());
        opened
    }

    /// How many are cached (after pending evictions).
    pub fn len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }
}
