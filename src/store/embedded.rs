//! The embedded store, for a single replica: everything in memory (the
//! same semantics as Redis, so registries sharing one in tests behave like
//! replicas), and what must outlive a restart (revocations, profile
//! choices, quota use, the audit trail) also appended to a file
//! ([`journal`]), read back and compacted at start. Without a file
//! (in-process tests) it lasts as long as the process.

mod journal;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt};
use futures_util::stream::{self, StreamExt};

use super::{Revocation, RevocationStream, Store, StoreError, StoreHealth, Usage, AUDIT_KEEP};
use crate::clock::now_secs;
use journal::Line;

/// Sign-in states are kept at most this long, whatever they ask.
const MAX_ONCE_TTL: Duration = Duration::from_secs(3600);

/// What the file holds, in memory.
#[derive(Default)]
struct Durable {
    revoked: Vec<Revocation>,
    profiles: HashMap<String, String>,
    /// (period start, slug) → use.
    /// slug → (period start, use): only the newest period of each counts.
    usage: HashMap<String, (u64, Usage)>,
    audit: VecDeque<String>,
    /// Lines appended since the file was last rewritten.
    appended: usize,
}

impl Durable {
    fn apply(&mut self, line: Line) {
        match line {
            Line::Revoked(r) => self.revoked.push(r),
            Line::Profile { slug, profile: Some(p) } => {
                self.profiles.insert(slug, p);
            }
            Line::Profile { slug, profile: None } => {
                self.profiles.remove(&slug);
            }
            Line::Usage { window, slug, used } => {
                let newest = self.usage.get(&slug).is_none_or(|(w, _)| *w <= window);
                if newest {
                    self.usage.insert(slug, (window, used));
                }
            }
            Line::Audit(json) => {
                if self.audit.len() == AUDIT_KEEP {
                    self.audit.pop_front();
                }
                self.audit.push_back(json);
            }
        }
    }

    /// What `slug` used in period `window` (nothing, for another period).
    fn used(&self, slug: &str, window: u64) -> Usage {
        match self.usage.get(slug) {
            Some((w, used)) if *w == window => *used,
            _ => Usage::default(),
        }
    }

    /// What is still in force, as the lines of a compacted file.
    fn lines(&mut self) -> Vec<Line> {
        let now = now_secs();
        self.revoked.retain(|r| r.until() > now);
        let mut lines: Vec<Line> = self.revoked.iter().cloned().map(Line::Revoked).collect();
        lines.extend(self.profiles.iter().map(|(slug, p)| Line::Profile {
            slug: slug.clone(),
            profile: Some(p.clone()),
        }));
        lines.extend(self.usage.iter().map(|(slug, (window, used))| Line::Usage {
            window: *window,
            slug: slug.clone(),
            used: *used,
        }));
        lines.extend(self.audit.iter().cloned().map(Line::Audit));
        lines
    }
}

pub struct Embedded {
    file: Option<Arc<PathBuf>>,
    durable: Mutex<Durable>,
    /// One writer of the file at a time (appends and rewrites).
    writing: tokio::sync::Mutex<()>,
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

impl Embedded {
    /// Memory only: nothing outlives the process.
    pub fn in_memory() -> Embedded {
        Embedded {
            file: None,
            durable: Mutex::new(Durable::default()),
            writing: tokio::sync::Mutex::new(()),
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

    /// Reads the file at `path` (missing: nothing yet), forgets what is no
    /// longer in force and writes the rest back, so the file stays small
    /// and is known to be writable before roost serves anything.
    pub fn open(path: &Path) -> Result<Embedded, StoreError> {
        let mut durable = Durable::default();
        for line in journal::read(path)? {
            durable.apply(line);
        }
        journal::rewrite(path, &durable.lines())?;
        Ok(Embedded {
            file: Some(Arc::new(path.to_path_buf())),
            durable: Mutex::new(durable),
            ..Embedded::in_memory()
        })
    }

    fn durable(&self) -> std::sync::MutexGuard<'_, Durable> {
        self.durable.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `line` in memory and appends it to the file (flushed before
    /// this returns); rewrites the file once it is mostly history.
    async fn persist(&self, line: Line) -> Result<(), StoreError> {
        self.durable().apply(line.clone());
        let Some(path) = self.file.clone() else {
            return Ok(());
        };
        let _writing = self.writing.lock().await;
        journal::append(path.to_path_buf(), vec![line]).await?;
        let compacted = {
            let mut durable = self.durable();
            durable.appended += 1;
            let live = durable.revoked.len() + durable.profiles.len() + durable.usage.len() + durable.audit.len();
            if durable.appended > 1000 + 4 * live {
                durable.appended = 0;
                Some(durable.lines())
            } else {
                None
            }
        };
        if let Some(lines) = compacted {
            let rewrite = move || journal::rewrite(&path, &lines);
            match tokio::task::spawn_blocking(rewrite).await {
                Ok(result) => result?,
                Err(e) => {
                    return Err(StoreError::File {
                        path: String::new(),
                        source: std::io::Error::other(e),
                    })
                }
            }
        }
        Ok(())
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
        self.persist(Line::Revoked(revocation.clone())).boxed()
    }

    fn revocations(&self) -> BoxFuture<'_, Result<Vec<Revocation>, StoreError>> {
        let now = now_secs();
        let mut durable = self.durable();
        durable.revoked.retain(|r| r.until() > now);
        let all = durable.revoked.clone();
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

    fn profile<'a>(&'a self, slug: &'a str) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        let chosen = self.durable().profiles.get(slug).cloned();
        async move { Ok(chosen) }.boxed()
    }

    fn set_profile<'a>(&'a self, slug: &'a str, profile: Option<&'a str>) -> BoxFuture<'a, Result<(), StoreError>> {
        self.persist(Line::Profile {
            slug: slug.to_string(),
            profile: profile.map(str::to_string),
        })
        .boxed()
    }

    fn append_audit<'a>(&'a self, record: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        // One line each: JSON escapes newlines inside strings.
        self.persist(Line::Audit(record.replace('\n', " "))).boxed()
    }

    fn recent_audit(&self, n: usize) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        let recent = self.durable().audit.iter().rev().take(n).cloned().collect();
        async move { Ok(recent) }.boxed()
    }

    fn add_usage<'a>(&'a self, slug: &'a str, window: u64, used: Usage) -> BoxFuture<'a, Result<Usage, StoreError>> {
        async move {
            let total = {
                let durable = self.durable();
                durable.used(slug, window).plus(used)
            };
            self.persist(Line::Usage {
                window,
                slug: slug.to_string(),
                used: total,
            })
            .await?;
            Ok(total)
        }
        .boxed()
    }

    fn usage<'a>(&'a self, slugs: &'a [Arc<str>], window: u64) -> BoxFuture<'a, Result<Vec<Usage>, StoreError>> {
        let durable = self.durable();
        let used = slugs.iter().map(|s| durable.used(s, window)).collect();
        async move { Ok(used) }.boxed()
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
        // Profiles, use and the audit trail outlive a restart too.
        store.set_profile("alice-1", Some("python")).await.unwrap();
        store.set_profile("bob-2", Some("python")).await.unwrap();
        store.set_profile("bob-2", None).await.unwrap();
        let used = Usage {
            run_secs: 30.0,
            cpu_secs: 1.5,
        };
        store.add_usage("alice-1", 100, used).await.unwrap();
        assert_eq!(store.add_usage("alice-1", 100, used).await.unwrap().run_secs, 60.0);
        store.append_audit(r#"{"n":1}"#).await.unwrap();
        store.append_audit(r#"{"n":2}"#).await.unwrap();
        drop(store);
        let store = Embedded::open(&path).unwrap();
        assert_eq!(store.profile("alice-1").await.unwrap().as_deref(), Some("python"));
        assert_eq!(store.profile("bob-2").await.unwrap(), None);
        let slugs: Vec<Arc<str>> = vec!["alice-1".into(), "bob-2".into()];
        let totals = store.usage(&slugs, 100).await.unwrap();
        assert_eq!(totals, vec![used.plus(used), Usage::default()]);
        assert_eq!(store.recent_audit(5).await.unwrap(), vec![r#"{"n":2}"#, r#"{"n":1}"#]);
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
