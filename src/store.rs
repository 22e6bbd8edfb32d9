//! Shared state: what every replica must agree on, behind one small
//! [`Store`] trait with two backends.
//!
//! - [`embedded`]: the default, for a single replica. Everything lives in
//!   memory; revocations are also appended to a file (`store.path`) and
//!   read back at start, so a revoked session stays revoked across restarts.
//! - [`shared`]: Redis, when `ROOST_REDIS_URL` is set, for many replicas.
//!
//! What it holds: session revocations (one session, or every session of a
//! user signed in before a moment), sign-in states used once, workspace
//! activity (written in batches), leases (one reaper at a time) and
//! fleet-wide slots (spawns in progress). The hot path never asks it: the
//! revocations are pushed into memory ([`crate::auth::Revocations`]) and
//! decided there.

pub mod embedded;
pub mod health;
pub mod shared;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

pub use embedded::Embedded;
pub use health::StoreHealth;
pub use shared::Shared;

/// A session taken away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// One session, by its id.
    Session {
        id: String,
        /// When the session would have ended anyway (seconds since the
        /// epoch): the revocation is kept until then.
        until: u64,
    },
    /// Every session of `sub` signed in at or before `before`.
    User { sub: String, before: u64, until: u64 },
}

impl Revocation {
    /// Every session of `sub` signed in until `now` (seconds), kept as long
    /// as such a session could live (`max_age`).
    pub fn everywhere(sub: &str, now: u64, max_age: Duration) -> Revocation {
        Revocation::User {
            sub: sub.to_string(),
            before: now,
            until: now.saturating_add(max_age.as_secs()).saturating_add(60),
        }
    }

    /// Seconds since the epoch after which it can be forgotten.
    pub fn until(&self) -> u64 {
        match self {
            Revocation::Session { until, .. } | Revocation::User { until, .. } => *until,
        }
    }

    /// One line of text: `s <until> <id>` or `u <until> <before> <sub>`
    /// (the `sub` last: it may hold spaces).
    pub fn encode(&self) -> String {
        match self {
            Revocation::Session { id, until } => format!("s {until} {id}"),
            Revocation::User { sub, before, until } => format!("u {until} {before} {sub}"),
        }
    }

    /// The inverse of [`Revocation::encode`]; `None` for anything else.
    pub fn decode(line: &str) -> Option<Revocation> {
        let (kind, rest) = line.split_once(' ')?;
        let (until, rest) = rest.split_once(' ')?;
        let until = until.parse().ok()?;
        match kind {
            "s" if !rest.is_empty() && !rest.contains(char::is_whitespace) => Some(Revocation::Session {
                id: rest.to_string(),
                until,
            }),
            "u" => {
                let (before, sub) = rest.split_once(' ')?;
                let before = before.parse().ok()?;
                (!sub.is_empty()).then(|| Revocation::User {
                    sub: sub.to_string(),
                    before,
                    until,
                })
            }
            _ => None,
        }
    }
}

/// What one workspace consumed in one quota period.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// Seconds it ran.
    pub run_secs: f64,
    /// CPU seconds, as the engine counts them.
    pub cpu_secs: f64,
}

impl Usage {
    pub fn plus(self, other: Usage) -> Usage {
        Usage {
            run_secs: self.run_secs + other.run_secs,
            cpu_secs: self.cpu_secs + other.cpu_secs,
        }
    }
}

/// How many audit records a store keeps (the oldest go first).
pub const AUDIT_KEEP: usize = 10_000;

/// Revocations made by any replica, as they happen; the stream ends when
/// the connection is lost (the follower reconnects and resyncs).
pub type RevocationStream = BoxStream<'static, Revocation>;

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("shared store unavailable: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("cannot use the shared store ROOST_REDIS_URL={url}")]
    Connect {
        /// Without its password.
        url: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("store file {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The store the config asks for: Redis with `ROOST_REDIS_URL` (connected
/// and authenticated now), else the embedded one (its file read now).
pub async fn open(config: &crate::Config) -> Result<Arc<dyn Store>, StoreError> {
    if let Some(url) = &config.secrets.redis_url {
        let shared = Shared::connect(url.expose(), &config.deployment.id)
            .await
            .map_err(|e| match e {
                StoreError::Redis(source) => StoreError::Connect {
                    url: shared::redacted(url.expose()),
                    source,
                },
                other => other,
            })?;
        return Ok(Arc::new(shared));
    }
    Ok(match &config.store.path {
        Some(path) => Arc::new(Embedded::open(path)?),
        None => Arc::new(Embedded::in_memory()),
    })
}

/// The shared state of a fleet (or of one replica).
pub trait Store: Send + Sync + 'static {
    /// `embedded` or `redis`, for logs and metrics.
    fn kind(&self) -> &'static str;
    /// Whether it answers (`/readyz`, `/metrics`).
    fn health(&self) -> &StoreHealth;
    /// Records a revocation durably and tells every replica.
    fn revoke<'a>(&'a self, revocation: &'a Revocation) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Every revocation still in force (at start and after a reconnection).
    fn revocations(&self) -> BoxFuture<'_, Result<Vec<Revocation>, StoreError>>;
    /// Revocations as they are made, from now on.
    fn watch(&self) -> BoxFuture<'_, Result<RevocationStream, StoreError>>;
    /// `true` the first time `key` is used within `ttl`, `false` after.
    fn use_once<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Workspaces used, with when (milliseconds since the epoch).
    fn record_activity<'a>(&'a self, seen: &'a [(Arc<str>, u64)]) -> BoxFuture<'a, Result<(), StoreError>>;
    /// The last use any replica recorded for each of `slugs`.
    fn last_activity<'a>(&'a self, slugs: &'a [Arc<str>]) -> BoxFuture<'a, Result<Vec<Option<u64>>, StoreError>>;
    /// Takes or renews lease `name` for `holder`; `true` while it is held by `holder`.
    fn hold_lease<'a>(
        &'a self,
        name: &'a str,
        holder: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Takes one of `max` slots of `name` as `token` for at most `ttl`.
    fn take_slot<'a>(
        &'a self,
        name: &'a str,
        token: &'a str,
        max: u32,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Gives a slot back.
    fn release_slot<'a>(&'a self, name: &'a str, token: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;
    /// How many slots of `name` are taken.
    fn slots_taken<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<u32, StoreError>>;
    /// The profile chosen for workspace `slug` (`None`: `[workspace]`'s).
    fn profile<'a>(&'a self, slug: &'a str) -> BoxFuture<'a, Result<Option<String>, StoreError>>;
    /// Records the profile chosen for `slug`, durably (`None`: the default).
    fn set_profile<'a>(&'a self, slug: &'a str, profile: Option<&'a str>) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Appends one audit record (a line of JSON), keeping the newest [`AUDIT_KEEP`].
    fn append_audit<'a>(&'a self, record: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;
    /// The newest `n` audit records, newest first.
    fn recent_audit(&self, n: usize) -> BoxFuture<'_, Result<Vec<String>, StoreError>>;
    /// Adds `used` to workspace `slug`'s account for quota period `window`
    /// (its start, seconds since the epoch); returns the new total.
    fn add_usage<'a>(&'a self, slug: &'a str, window: u64, used: Usage) -> BoxFuture<'a, Result<Usage, StoreError>>;
    /// What each of `slugs` used in period `window`.
    fn usage<'a>(&'a self, slugs: &'a [Arc<str>], window: u64) -> BoxFuture<'a, Result<Vec<Usage>, StoreError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocations_read_back_what_they_wrote() {
        for r in [
            Revocation::Session {
                id: "abc_-12".into(),
                until: 99,
            },
            Revocation::User {
                sub: "auth0|with space".into(),
                before: 7,
                until: 100,
            },
        ] {
            assert_eq!(Revocation::decode(&r.encode()), Some(r));
        }
        for bad in ["", "s", "s 1", "s x id", "u 1 2", "u 1 x sub", "x 1 id", "s 1 a b"] {
            assert_eq!(Revocation::decode(bad), None, "{bad:?}");
        }
    }
}
