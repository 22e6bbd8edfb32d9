//! Sessions taken away, as every replica knows them: decided from memory
//! on each request (a read lock and a hash lookup), fed by the store.
//!
//! [`follow`] keeps the set true: it subscribes to the store's revocations,
//! then loads all of them (subscribed first, so nothing made in between is
//! missed), and does it again after every lost connection. A revocation
//! made while the store is down applies here at once and is written to the
//! store when it answers again (the other replicas learn it then).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::Session;
use crate::clock::now_secs;
use crate::store::{Revocation, Store};

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Sets {
    /// Session id → until.
    sessions: HashMap<String, u64, foldhash::fast::RandomState>,
    /// `sub` → (signed in at or before this is revoked, until).
    users: HashMap<String, (u64, u64), foldhash::fast::RandomState>,
}

impl Sets {
    fn insert(&mut self, r: &Revocation) {
        match r {
            Revocation::Session { id, until } => {
                self.sessions.insert(id.clone(), *until);
            }
            Revocation::User { sub, before, until } => {
                let e = self.users.entry(sub.clone()).or_insert((*before, *until));
                *e = (e.0.max(*before), e.1.max(*until));
            }
        }
    }
}

/// The revocations in force.
#[derive(Default)]
pub struct Revocations {
    sets: RwLock<Sets>,
    /// Made here while the store was down, to write when it answers.
    unsent: Mutex<Vec<Revocation>>,
}

impl Revocations {
    /// Whether `session` was taken away.
    pub fn is_revoked(&self, session: &Session) -> bool {
        self.is_revoked_parts(session.id(), &session.sub, session.signed_in)
    }

    /// [`is_revoked`](Self::is_revoked) for a session known by its id, its
    /// user and its sign-in time.
    pub fn is_revoked_parts(&self, id: &str, sub: &str, signed_in: u64) -> bool {
        let sets = self.sets.read().unwrap_or_else(|p| p.into_inner());
        (!sets.sessions.is_empty() && sets.sessions.contains_key(id))
            || sets.users.get(sub).is_some_and(|(before, _)| signed_in <= *before)
    }

    /// Applies one revocation here.
    pub fn apply(&self, r: &Revocation) {
        self.sets.write().unwrap_or_else(|p| p.into_inner()).insert(r);
    }

    /// Applies `r` here and records it in `store` (later, if the store is down).
    pub async fn revoke(&self, store: &dyn Store, r: Revocation) {
        self.apply(&r);
        if let Err(e) = store.revoke(&r).await {
            tracing::warn!(error = %e, "revocation kept to write when the shared store answers");
            self.unsent.lock().unwrap_or_else(|p| p.into_inner()).push(r);
        }
    }

    /// Replaces what is known with the store's full list (plus anything not
    /// yet written), forgetting what is past its time.
    fn resync(&self, all: Vec<Revocation>) {
        let mut fresh = Sets::default();
        {
            let unsent = self.unsent.lock().unwrap_or_else(|p| p.into_inner());
            for r in all.iter().chain(unsent.iter()) {
                fresh.insert(r);
            }
        }
        let now = now_secs();
        fresh.sessions.retain(|_, until| *until > now);
        fresh.users.retain(|_, (_, until)| *until > now);
        *self.sets.write().unwrap_or_else(|p| p.into_inner()) = fresh;
    }

    /// Writes what was revoked here while the store was down.
    async fn send_unsent(&self, store: &dyn Store) {
        let pending = std::mem::take(&mut *self.unsent.lock().unwrap_or_else(|p| p.into_inner()));
        for (i, r) in pending.iter().enumerate() {
            if store.revoke(r).await.is_err() {
                self.unsent
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(pending[i..].iter().cloned());
                return;
            }
        }
    }

    /// Loads every revocation once (at start: a replica must not accept a
    /// revoked session because it has not heard of it yet).
    pub async fn load(&self, store: &dyn Store) -> Result<(), crate::store::StoreError> {
        self.resync(store.revocations().await?);
        Ok(())
    }

    /// How many are known (sessions, users), for tests and metrics.
    pub fn len(&self) -> (usize, usize) {
        let sets = self.sets.read().unwrap_or_else(|p| p.into_inner());
        (sets.sessions.len(), sets.users.len())
    }
}

/// Keeps `revocations` in line with `store` until `cancel`.
pub async fn follow(store: Arc<dyn Store>, revocations: Arc<Revocations>, cancel: CancellationToken) {
    let mut backoff = BACKOFF_START;
    loop {
        if let Ok(mut stream) = store.watch().await {
            // Subscribed first, then loaded: nothing revoked in between is missed.
            revocations.send_unsent(&*store).await;
            if revocations.load(&*store).await.is_ok() {
                backoff = BACKOFF_START;
                store.health().up();
                loop {
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        next = stream.next() => match next {
                            Some(r) => revocations.apply(&r),
                            None => break,
                        },
                    }
                }
                store.health().down(&"the shared store's subscription ended");
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Embedded;

    fn session(id: &str, sub: &str, signed_in: u64) -> Session {
        Session {
            id: id.into(),
            sub: sub.into(),
            username: sub.into(),
            email: None,
            admin: false,
            permissions: vec![],
            signed_in,
            expires: signed_in + 3600,
            csrf: "c".into(),
        }
    }

    #[tokio::test]
    async fn one_session_or_every_session_signed_in_before_a_moment() {
        let store = Embedded::in_memory();
        let r = Revocations::default();
        let now = now_secs();
        let (a1, a2, b) = (
            session("a1", "alice", now - 10),
            session("a2", "alice", now - 5),
            session("b", "bob", now),
        );
        assert!(![&a1, &a2, &b].iter().any(|s| r.is_revoked(s)));
        r.revoke(
            &store,
            Revocation::Session {
                id: "a1".into(),
                until: now + 60,
            },
        )
        .await;
        assert!(r.is_revoked(&a1) && !r.is_revoked(&a2) && !r.is_revoked(&b));
        r.revoke(
            &store,
            Revocation::User {
                sub: "alice".into(),
                before: now - 5,
                until: now + 60,
            },
        )
        .await;
        assert!(r.is_revoked(&a2) && !r.is_revoked(&b));
        // Signed in again after: accepted.
        assert!(!r.is_revoked(&session("a3", "alice", now - 4)));
        // A fresh replica learns the same from the store.
        let other = Revocations::default();
        other.load(&store).await.unwrap();
        assert!(other.is_revoked(&a1) && other.is_revoked(&a2) && !other.is_revoked(&b));
        assert_eq!(other.len(), (1, 1));
    }
}
