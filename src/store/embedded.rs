//! The embedded store, for a single replica: everything in memory (the
//! same semantics as Redis, so registries sharing one in tests behave like
//! replicas), and revocations also appended to a file (one line each, flushed to disk
//! before the sign-out is answered), read back and compacted at start.
//! Without a file (in-process tests) revocations last as long as the process.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt};
use futures_util::stream::{self, StreamExt};

use super::{Revocation, RevocationStream, Store, StoreError, StoreHealth};
use crate::clock::now_secs;

/// Sign-in states are kept at most this long, whatever they ask.
const MAX_ONCE_TTL: Duration = Duration::from_secs(3600);

pub struct Embedded {
    file: Option<Arc<PathBuf>>,
    revoked: Mutex<Vec<Revocation>>,
    used: moka::sync::Cache<String, ()>,
    /// Slots of each name: token → until.
    slots: Mutex<HashMap<String, HashMap<String, Instant>>>,
    /// Last use of each workspace (wall-clock milliseconds).
    activity: Mutex<HashMap<Arc<str>, u64>>,
    /// Leases: name → (holder, until).
    leases: Mutex<HashMap<String, (String, Instant)>>,
    /// Always up: it is this process.
    health: StoreHealth,
}

fn file_error(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::File {
        path: path.display().to_string(),
        source,
    }
}

impl Embedded {
    /// Memory only: revocations do not outlive the process.
    pub fn in_memory() -> Embedded {
        Embedded {
            file: None,
            revoked: Mutex::new(Vec::new()),
            used: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(MAX_ONCE_TTL)
                .build(),
            slots: Mutex::new(HashMap::new()),
            activity: Mutex::new(HashMap::new()),
            leases: Mutex::new(HashMap::new()),
            health: StoreHealth::default(),
        }
    }

    /// Reads the revocations in `path` (missing: none yet), forgets those
    /// past their time and writes the rest back, so the file stays small
    /// and is known to be writable before roost serves anything.
    pub fn open(path: &Path) -> Result<Embedded, StoreError> {
        let now = now_secs();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(file_error(path)(e)),
        };
        let kept: Vec<Revocation> = text
            .lines()
            .filter_map(Revocation::decode)
            .filter(|r| r.until() > now)
            .collect();
        let mut compacted = String::new();
        for r in &kept {
            compacted.push_str(&r.encode());
            compacted.push('\n');
        }
        let tmp = path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(compacted.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(file_error(path))?;
        let store = Embedded::in_memory();
        *store.revoked.lock().unwrap_or_else(|p| p.into_inner()) = kept;
        Ok(Embedded {
            file: Some(Arc::new(path.to_path_buf())),
            ..store
        })
    }
}

impl Store for Embedded {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    fn health(&self) -> &StoreHealth {
        &self.health
    }

    fn revoke<'a>(&'a self, revocation: &'a Revocation) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            self.revoked
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(revocation.clone());
            let Some(path) = self.file.clone() else {
                return Ok(());
            };
            let line = format!("{}\n", revocation.encode());
            let append = move || -> std::io::Result<()> {
                let mut f = std::fs::OpenOptions::new().append(true).create(true).open(&*path)?;
                f.write_all(line.as_bytes())?;
                f.sync_data()
            };
            let result = match tokio::task::spawn_blocking(append).await {
                Ok(result) => result,
                Err(e) => Err(std::io::Error::other(e)),
            };
            result.map_err(|source| StoreError::File {
                path: self
                    .file
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                source,
            })
        }
        .boxed()
    }

    fn revocations(&self) -> BoxFuture<'_, Result<Vec<Revocation>, StoreError>> {
        let now = now_secs();
        let mut revoked = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
        revoked.retain(|r| r.until() > now);
        let all = revoked.clone();
        async move { Ok(all) }.boxed()
    }

    fn watch(&self) -> BoxFuture<'_, Result<RevocationStream, StoreError>> {
        // One replica: it applies its own revocations as it makes them.
        async { Ok(stream::pending().boxed()) }.boxed()
    }

    fn use_once<'a>(&'a self, key: &'a str, _ttl: Duration) -> BoxFuture<'a, Result<bool, StoreError>> {
        let fresh = self.used.entry(key.to_string()).or_insert(()).is_fresh();
        async move { Ok(fresh) }.boxed()
    }

    fn record_activity<'a>(&'a self, seen: &'a [(Arc<str>, u64)]) -> BoxFuture<'a, Result<(), StoreError>> {
        let mut activity = self.activity.lock().unwrap_or_else(|p| p.into_inner());
        for (slug, ms) in seen {
            let last = activity.entry(slug.clone()).or_insert(0);
            *last = (*last).max(*ms);
        }
        async { Ok(()) }.boxed()
    }

    fn last_activity<'a>(&'a self, slugs: &'a [Arc<str>]) -> BoxFuture<'a, Result<Vec<Option<u64>>, StoreError>> {
        let activity = self.activity.lock().unwrap_or_else(|p| p.into_inner());
        let seen = slugs.iter().map(|s| activity.get(s).copied()).collect();
        async move { Ok(seen) }.boxed()
    }

    fn hold_lease<'a>(
        &'a self,
        name: &'a str,
        holder: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let now = Instant::now();
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        let held = match leases.get(name) {
            Some((h, until)) if h != holder && *until > now => false,
            _ => {
                leases.insert(name.to_string(), (holder.to_string(), now + ttl));
                true
            }
        };
        async move { Ok(held) }.boxed()
    }

    fn take_slot<'a>(
        &'a self,
        name: &'a str,
        token: &'a str,
        max: u32,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let now = Instant::now();
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let taken = slots.entry(name.to_string()).or_default();
        taken.retain(|_, until| *until > now);
        let ok = taken.contains_key(token) || taken.len() < max as usize;
        if ok {
            taken.insert(token.to_string(), now + ttl);
        }
        async move { Ok(ok) }.boxed()
    }

    fn release_slot<'a>(&'a self, name: &'a str, token: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        if let Some(taken) = self.slots.lock().unwrap_or_else(|p| p.into_inner()).get_mut(name) {
            taken.remove(token);
        }
        async { Ok(()) }.boxed()
    }

    fn slots_taken<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<u32, StoreError>> {
        let now = Instant::now();
        let n = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .map_or(0, |t| t.values().filter(|u| **u > now).count() as u32);
        async move { Ok(n) }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn revocations_survive_a_restart_and_expired_ones_are_dropped() {
        let dir = std::env::temp_dir().join(format!("roost-store-{}", crate::auth::session::random_token(6)));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("revocations");
        let now = now_secs();
        let kept = Revocation::Session {
            id: "kept".into(),
            until: now + 600,
        };
        let old = Revocation::User {
            sub: "bob".into(),
            before: 1,
            until: now - 1,
        };
        {
            let store = Embedded::open(&path).unwrap();
            store.revoke(&kept).await.unwrap();
            store.revoke(&old).await.unwrap();
        }
        let store = Embedded::open(&path).unwrap();
        assert_eq!(store.revocations().await.unwrap(), vec![kept.clone()]);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{}\n", kept.encode()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn an_unwritable_file_is_refused_at_open() {
        let err = Embedded::open(Path::new("/proc/roost-cannot-write-here"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("/proc/roost-cannot-write-here"), "{err}");
    }

    #[tokio::test]
    async fn a_key_is_used_once_and_slots_are_bounded() {
        let store = Embedded::in_memory();
        assert!(store.use_once("state", Duration::from_secs(60)).await.unwrap());
        assert!(!store.use_once("state", Duration::from_secs(60)).await.unwrap());
        let ttl = Duration::from_secs(60);
        assert!(store.take_slot("spawn", "a", 2, ttl).await.unwrap());
        assert!(store.take_slot("spawn", "b", 2, ttl).await.unwrap());
        assert!(!store.take_slot("spawn", "c", 2, ttl).await.unwrap());
        assert_eq!(store.slots_taken("spawn").await.unwrap(), 2);
        store.release_slot("spawn", "a").await.unwrap();
        assert!(store.take_slot("spawn", "c", 2, ttl).await.unwrap());
    }
}
