//! The registry: roost's soft state about workspaces (who owns which, what
//! phase it is in, when it was last used). Everything here can be rebuilt
//! from the engine's labels; the engine is the source of truth.
//!
//! The state is private. The rest of roost reads it through accessors and
//! changes it through one verb per transition:
//!
//! - [`spawn`]: `ensure_ready` and `start` (a user's request) and `adopt`
//!   (a container the engine already runs): Stopped or Failed → Starting →
//!   Ready or Failed. Single flight: one spawn per workspace at a time,
//!   which every concurrent request waits on; admission bounds spawns.
//! - [`retire`]: Ready or Paused → Draining → Ready (used again
//!   meanwhile) or Retiring → Stopped.
//! - [`pause`]: Ready → Paused (idle past `pause_after`) → Ready (its
//!   next request, or traffic that reached it).
//! - the engine's news ([`Registry::engine_stopped`],
//!   [`Registry::engine_destroyed`], [`Registry::learn_owner`]): Ready →
//!   Stopped, owners from labels.
//!
//! A [`Busy`] guard marks the one spawn or retirement under way on an
//! entry and clears the mark however that ends.

mod manage;
mod pause;
pub use manage::{state_of, Overview, Removed};
pub mod quota;
mod retire;
mod shared;
mod spawn;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use retire::Retire;
pub use shared::run_sharing;

use super::profiles::{Choice, Profiles};
use super::runtime::{FailReason, Runtime, Step};
use super::Gate;
use crate::audit::{Audit, Event};
use crate::auth::Identity;
use crate::clock::Clock;
use crate::config::{QuotaConfig, WorkspaceConfig};
use crate::metrics::Metrics;
use crate::store::Store;

/// Where a workspace is in its life, as far as routing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not running (or not known to run).
    Stopped,
    /// A spawn is under way, at this step.
    Starting(Step),
    /// Running and answering at this address.
    Ready(SocketAddr),
    /// Frozen at this address (the paused tier): its route stays, and
    /// `/auth` thaws it before it lets a request pass.
    Paused(SocketAddr),
    /// Still answering at this address, but its route is withdrawn: roost
    /// stops it after `workspace.drain_grace` unless it is used meanwhile.
    Draining(SocketAddr),
    /// Being stopped or removed by roost.
    Retiring,
    /// The last start failed; the next request tries again (after a while,
    /// for a failure no retry can mend).
    Failed(FailReason),
}

impl Phase {
    /// Where it answers, while it does (ready or draining).
    pub fn address(self) -> Option<SocketAddr> {
        match self {
            Phase::Ready(addr) | Phase::Draining(addr) => Some(addr),
            _ => None,
        }
    }

    /// Where Traefik routes it directly: ready, or paused (thawed by
    /// `/auth` before any request passes).
    pub fn route(self) -> Option<SocketAddr> {
        match self {
            Phase::Ready(addr) | Phase::Paused(addr) => Some(addr),
            _ => None,
        }
    }

    /// Its container runs (ready or paused): it holds memory, and stopping
    /// it means retiring it.
    pub fn is_up(self) -> bool {
        matches!(self, Phase::Ready(_) | Phase::Paused(_))
    }
}

/// One workspace's soft state.
pub struct Entry {
    slug: Arc<str>,
    owner: ArcSwapOption<String>,
    phase: watch::Sender<Phase>,
    /// A spawn or a retirement is under way (see [`Busy`]).
    busy: AtomicBool,
    /// Milliseconds since the registry's epoch.
    last_active: AtomicU64,
    /// The last use written to the shared store (same clock).
    shared_active: AtomicU64,
    /// What the workspace itself had sent at the reaper's last sample
    /// (see `reaper::own_traffic`).
    own_traffic: Mutex<Option<u64>>,
    /// When it last became ready (milliseconds since the registry's epoch).
    ready_since: AtomicU64,
    /// When it was last paused (same clock).
    paused_since: AtomicU64,
    /// When its last start failed (milliseconds since the registry's epoch).
    failed_at: AtomicU64,
    /// Its container's id and creation time (Unix seconds).
    container: Mutex<Option<(String, u64)>>,
    /// The owner's volume from before slugs carried 64-bit hashes, as the
    /// owner's identity names it (mounted when the new one does not exist).
    legacy_volume: ArcSwapOption<String>,
    /// The profile its container runs (`None`: the default, or not known yet).
    profile: ArcSwapOption<Choice>,
    /// Whether its owner is exempt from the quota, as their last request
    /// showed ([`quota::UNKNOWN`], [`quota::LIMITED`], [`quota::EXEMPT`]).
    quota_class: AtomicU8,
    /// The quota's accounting: when it last counted this workspace's run
    /// time (milliseconds since the registry's epoch) and the CPU time its
    /// container had then (nanoseconds); `None`: not yet.
    accounted: Mutex<Option<(u64, u64)>>,
}

impl Entry {
    fn new(slug: &str) -> Self {
        Entry {
            slug: slug.into(),
            owner: ArcSwapOption::empty(),
            phase: watch::Sender::new(Phase::Stopped),
            busy: AtomicBool::new(false),
            last_active: AtomicU64::new(0),
            shared_active: AtomicU64::new(0),
            own_traffic: Mutex::new(None),
            ready_since: AtomicU64::new(0),
            paused_since: AtomicU64::new(0),
            failed_at: AtomicU64::new(0),
            container: Mutex::new(None),
            legacy_volume: ArcSwapOption::empty(),
            profile: ArcSwapOption::empty(),
            quota_class: AtomicU8::new(quota::UNKNOWN),
            accounted: Mutex::new(None),
        }
    }

    pub fn slug(&self) -> &Arc<str> {
        &self.slug
    }

    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    pub fn owner(&self) -> Option<Arc<String>> {
        self.owner.load_full()
    }

    /// Watches phase changes (the starting page shows them).
    pub fn subscribe(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }

    /// A spawn or a retirement is under way.
    pub fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }

    /// Its container's id, when roost knows it.
    pub fn container_id(&self) -> Option<String> {
        self.container().map(|(id, _)| id)
    }

    /// When its container was created (Unix seconds; 0 when unknown).
    pub fn created(&self) -> Option<u64> {
        self.container().map(|(_, created)| created)
    }

    /// Replaces the reaper's last traffic sample; returns the one before.
    pub fn swap_traffic_sample(&self, sample: u64) -> Option<u64> {
        self.own_traffic.lock().ok().and_then(|mut last| last.replace(sample))
    }

    /// A new container: the reaper's samples start over.
    fn reset_traffic_sample(&self) {
        if let Ok(mut last) = self.own_traffic.lock() {
            *last = None;
        }
    }

    fn container(&self) -> Option<(String, u64)> {
        self.container.lock().ok()?.clone()
    }

    fn set_container(&self, value: Option<(String, u64)>) {
        if let Ok(mut c) = self.container.lock() {
            *c = value;
        }
    }
}

/// The mark of the one spawn or retirement under way on an entry; cleared
/// when dropped, however the work ends (finished, failed, cancelled).
struct Busy(Arc<Entry>);

impl Busy {
    /// Marks `entry` busy, unless it is already.
    fn take(entry: &Arc<Entry>) -> Option<Busy> {
        (!entry.busy.swap(true, Ordering::AcqRel)).then(|| Busy(entry.clone()))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::Release);
    }
}

pub struct Registry {
    runtime: Arc<dyn Runtime>,
    /// `[workspace]`: the default profile, and the settings every profile shares.
    config: Arc<WorkspaceConfig>,
    profiles: Arc<Profiles>,
    /// `[quota]`: what one user may consume per period.
    quota: QuotaConfig,
    /// `deployment.id` and `oidc.issuer`, for names and ownership labels.
    deployment: Arc<str>,
    issuer: Arc<str>,
    entries: RwLock<HashMap<Arc<str>, Arc<Entry>, foldhash::fast::RandomState>>,
    spawn_permits: Arc<Semaphore>,
    /// Spawns past the running-limit check and not yet finished.
    spawns_in_progress: AtomicUsize,
    /// Bumped whenever a workspace becomes ready or stops being ready:
    /// the route table's version.
    routes_version: AtomicU64,
    metrics: Arc<Metrics>,
    /// Tokio's clock, so tests can pause it.
    epoch: Instant,
    /// Wall time, for `max_lifetime` against containers' creation labels.
    clock: Arc<dyn Clock>,
    tasks: TaskTracker,
    stop: CancellationToken,
    /// What the replicas share: activity, the reaper's lease, spawn slots.
    store: Arc<dyn Store>,
    /// This replica, as it holds leases and slots.
    replica: Arc<str>,
    /// Where lifecycle events are recorded.
    audit: Audit,
}

impl Registry {
    pub fn new(
        runtime: Arc<dyn Runtime>,
        profiles: Profiles,
        quota: QuotaConfig,
        (deployment, issuer): (&str, &str),
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
        store: Arc<dyn Store>,
    ) -> Arc<Self> {
        let config = profiles.default_choice().config.clone();
        let permits = config.max_concurrent_spawns as usize;
        Arc::new(Registry {
            runtime,
            deployment: deployment.into(),
            issuer: issuer.into(),
            config,
            profiles: Arc::new(profiles),
            quota,
            entries: RwLock::new(HashMap::default()),
            spawn_permits: Arc::new(Semaphore::new(permits)),
            spawns_in_progress: AtomicUsize::new(0),
            routes_version: AtomicU64::new(0),
            metrics,
            epoch: Instant::now(),
            clock,
            tasks: TaskTracker::new(),
            stop: CancellationToken::new(),
            audit: Audit::new(store.clone()),
            store,
            replica: crate::auth::session::random_token(12).into(),
        })
    }

    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.runtime
    }

    pub fn config(&self) -> &WorkspaceConfig {
        &self.config
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn profiles(&self) -> &Arc<Profiles> {
        &self.profiles
    }

    /// The profile `entry`'s container runs (or last ran).
    pub fn profile_of(&self, entry: &Entry) -> Arc<Choice> {
        entry
            .profile
            .load_full()
            .unwrap_or_else(|| self.profiles.default_choice().clone())
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Wall-clock seconds (see [`Clock`]).
    pub fn now_secs(&self) -> u64 {
        self.clock.now_secs()
    }

    /// The entry for `slug`, if roost knows of it.
    pub fn get(&self, slug: &str) -> Option<Arc<Entry>> {
        self.entries.read().ok()?.get(slug).cloned()
    }

    /// The entry for `slug`, made when roost does not know of it yet.
    pub fn entry(&self, slug: &str) -> Arc<Entry> {
        if let Some(e) = self.get(slug) {
            return e;
        }
        let mut entries = self.entries.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries
            .entry(slug.into())
            .or_insert_with(|| Arc::new(Entry::new(slug)))
            .clone()
    }

    /// Every workspace roost knows of.
    pub fn all(&self) -> Vec<Arc<Entry>> {
        self.entries
            .read()
            .map(|e| e.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Workspaces Traefik routes to directly (ready or paused), with their
    /// addresses.
    pub fn ready(&self) -> Vec<(Arc<str>, SocketAddr)> {
        self.all()
            .into_iter()
            .filter_map(|e| Some((e.slug.clone(), e.phase().route()?)))
            .collect()
    }

    /// The route table's version: changes whenever [`Registry::ready`] would.
    pub fn routes_version(&self) -> u64 {
        self.routes_version.load(Ordering::Acquire)
    }

    /// Records use of a workspace (authorized requests, proxied traffic,
    /// traffic the container sent).
    pub fn touch(&self, entry: &Entry) {
        entry.last_active.store(self.now_ms(), Ordering::Relaxed);
    }

    /// How long since the workspace was last used.
    pub fn idle_for(&self, entry: &Entry) -> Duration {
        Duration::from_millis(self.now_ms().saturating_sub(entry.last_active.load(Ordering::Relaxed)))
    }

    /// How long it has been ready (meaningful while it is).
    pub fn ready_for(&self, entry: &Entry) -> Duration {
        Duration::from_millis(self.now_ms().saturating_sub(entry.ready_since.load(Ordering::Relaxed)))
    }

    /// The hot path, answered from memory: whether `caller` may pass to
    /// `workspace` now (recorded as use when it may).
    pub fn gate(&self, caller: &Identity, workspace: &str) -> Gate {
        let Some(entry) = self.get(workspace) else {
            return Gate::Pending;
        };
        let owner = entry.owner.load();
        match owner.as_deref() {
            Some(owner) if caller.may_use(owner) => {
                // Use is recorded before the phase is read: a pause reads
                // the use again once it has frozen the container, so it
                // sees this one and thaws at once.
                self.touch(&entry);
                let Some(addr) = entry.phase().address() else {
                    return Gate::Pending;
                };
                if *caller.sub == **owner {
                    self.learn_quota_class(&entry, caller);
                }
                Gate::Ready(addr)
            }
            Some(_) if entry.phase().address().is_some() => Gate::Forbidden,
            _ => Gate::Pending,
        }
    }

    /// The owner the engine's labels name (reconciliation, events).
    pub fn learn_owner(&self, entry: &Entry, owner: Arc<String>) {
        entry.owner.store(Some(owner));
    }

    /// The engine says the container stopped: a ready workspace is not any
    /// more (a spawn or retirement under way settles it itself).
    pub fn engine_stopped(&self, entry: &Entry) {
        if !entry.is_busy() && entry.phase().is_up() {
            self.set_phase(entry, Phase::Stopped);
            self.update_running_gauge();
        }
    }

    /// The engine says the container is gone.
    pub fn engine_destroyed(&self, entry: &Entry) {
        self.engine_stopped(entry);
        if !entry.is_busy() {
            entry.set_container(None);
        }
    }

    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    /// Records `event` in a task of the registry's (from code that cannot wait).
    fn record_later(&self, event: Event) {
        let audit = self.audit.clone();
        self.tasks.spawn(async move { audit.record(event).await });
    }

    /// Runs `work` as one of the registry's tasks (stopped and waited for
    /// on shutdown).
    pub fn spawn_task(&self, work: impl Future<Output = ()> + Send + 'static) {
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                () = work => {}
                () = stop.cancelled() => {}
            }
        });
    }

    /// Changes a workspace's phase; a change in readiness (or address) is a
    /// new version of the route table.
    fn set_phase(&self, entry: &Entry, phase: Phase) {
        let before = entry.phase.send_replace(phase);
        if matches!(phase, Phase::Ready(_))
            && !matches!(before, Phase::Ready(_) | Phase::Paused(_) | Phase::Draining(_))
        {
            entry.ready_since.store(self.now_ms(), Ordering::Relaxed);
        }
        if phase.route() != before.route() {
            self.routes_version.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn update_running_gauge(&self) {
        let (mut running, mut paused) = (0, 0);
        for e in self.all() {
            match e.phase() {
                Phase::Ready(_) => running += 1,
                Phase::Paused(_) => paused += 1,
                _ => {}
            }
        }
        self.metrics.set_running(running);
        self.metrics.set_paused(paused);
    }

    /// Stops roost's own tasks (spawns in flight are abandoned, never the
    /// workspaces: they keep running and are adopted on the next start).
    pub async fn shutdown(&self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

#[cfg(test)]
mod tests;
