//! The registry: roost's soft state about workspaces (who owns which, what
//! phase it is in, when it was last used) and the single-flight `ensure`.
//! Everything here can be rebuilt from the engine's labels; the engine is
//! the source of truth.
//!
//! Single flight: one spawn task per workspace at a time, which every
//! concurrent request waits on through a `watch` channel; across processes
//! the engine's name conflict makes the loser adopt the winner's container
//! (see `docker.rs`). Admission: at most `max_concurrent_spawns` spawns run
//! at once (the rest queue, bounded by `start_timeout`), and no spawn starts
//! past `max_running`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use futures_util::future::BoxFuture;
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::runtime::{ContainerState, Runtime, RuntimeError, RuntimeEvent};
use super::spec::{config_hash, now_secs, WorkspaceSpec};
use super::{Gate, ReadinessGate};
use crate::auth::Identity;
use crate::config::WorkspaceConfig;
use crate::metrics::Metrics;

/// How long a refused caller should wait before asking again.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// Where a workspace is in its life, as far as routing cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Not running (or not known to run).
    Stopped,
    /// A spawn is under way; the text says what it is doing.
    Starting(&'static str),
    /// Running and answering at this address.
    Ready(SocketAddr),
    /// Still answering at this address, but its route is withdrawn: roost
    /// stops it after `workspace.drain_grace` unless it is used meanwhile.
    Draining(SocketAddr),
    /// Being stopped or removed by roost.
    Retiring,
    /// The last start failed; the next request tries again.
    Failed(&'static str),
}

/// One workspace's soft state.
pub struct Entry {
    pub slug: Arc<str>,
    owner: ArcSwapOption<String>,
    phase: watch::Sender<Phase>,
    /// A spawn or a retirement is under way (only one at a time).
    busy: AtomicBool,
    /// Milliseconds since the registry's epoch.
    last_active: AtomicU64,
    /// The container's network byte count at the last sample.
    net_bytes: Mutex<Option<u64>>,
    container: Mutex<Option<(String, u64)>>,
}

impl Entry {
    fn new(slug: &str) -> Self {
        Entry {
            slug: slug.into(),
            owner: ArcSwapOption::empty(),
            phase: watch::Sender::new(Phase::Stopped),
            busy: AtomicBool::new(false),
            last_active: AtomicU64::new(0),
            net_bytes: Mutex::new(None),
            container: Mutex::new(None),
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase.borrow().clone()
    }

    pub fn owner(&self) -> Option<Arc<String>> {
        self.owner.load_full()
    }

    /// Watches phase changes (the starting page shows them).
    pub fn subscribe(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
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

/// Why the reaper retires a workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retire {
    /// Idle past `idle_timeout`: stop, keep container and volume.
    Idle,
    /// Older than `max_lifetime`: remove the container, keep the volume.
    Lifetime,
}

pub struct Registry {
    runtime: Arc<dyn Runtime>,
    config: Arc<WorkspaceConfig>,
    config_hash: Arc<str>,
    entries: RwLock<HashMap<Arc<str>, Arc<Entry>, foldhash::fast::RandomState>>,
    spawn_permits: Arc<Semaphore>,
    /// Spawns past the running-limit check and not yet finished.
    spawns_in_progress: AtomicUsize,
    /// Bumped whenever a workspace becomes ready or stops being ready:
    /// the route table's version.
    routes_version: AtomicU64,
    metrics: Arc<Metrics>,
    epoch: Instant,
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl Registry {
    pub fn new(runtime: Arc<dyn Runtime>, config: WorkspaceConfig, metrics: Arc<Metrics>) -> Arc<Self> {
        let permits = config.max_concurrent_spawns as usize;
        Arc::new(Registry {
            runtime,
            config_hash: config_hash(&config).into(),
            config: Arc::new(config),
            entries: RwLock::new(HashMap::default()),
            spawn_permits: Arc::new(Semaphore::new(permits)),
            spawns_in_progress: AtomicUsize::new(0),
            routes_version: AtomicU64::new(0),
            metrics,
            epoch: Instant::now(),
            tasks: TaskTracker::new(),
            stop: CancellationToken::new(),
        })
    }

    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.runtime
    }

    pub fn config(&self) -> &WorkspaceConfig {
        &self.config
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The entry for `slug`, if roost knows of it.
    pub fn get(&self, slug: &str) -> Option<Arc<Entry>> {
        self.entries.read().ok()?.get(slug).cloned()
    }

    fn entry(&self, slug: &str) -> Arc<Entry> {
        if let Some(e) = self.get(slug) {
            return e;
        }
        let mut entries = self.entries.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries
            .entry(slug.into())
            .or_insert_with(|| Arc::new(Entry::new(slug)))
            .clone()
    }

    fn all(&self) -> Vec<Arc<Entry>> {
        self.entries
            .read()
            .map(|e| e.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Workspaces that are ready, with their addresses.
    pub fn ready(&self) -> Vec<(Arc<str>, SocketAddr)> {
        self.all()
            .into_iter()
            .filter_map(|e| match e.phase() {
                Phase::Ready(addr) => Some((e.slug.clone(), addr)),
                _ => None,
            })
            .collect()
    }

    /// Changes a workspace's phase; a change in readiness (or address) is a
    /// new version of the route table.
    fn set_phase(&self, entry: &Entry, phase: Phase) {
        let before = entry.phase.send_replace(phase.clone());
        let was = match before {
            Phase::Ready(addr) => Some(addr),
            _ => None,
        };
        let now = match phase {
            Phase::Ready(addr) => Some(addr),
            _ => None,
        };
        if was != now {
            self.routes_version.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// The route table's version: changes whenever [`Registry::ready`] would.
    pub fn routes_version(&self) -> u64 {
        self.routes_version.load(Ordering::Acquire)
    }

    /// Records use of a workspace (authorized requests, proxied traffic).
    pub fn touch(&self, entry: &Entry) {
        entry.last_active.store(self.now_ms(), Ordering::Relaxed);
    }

    fn update_running_gauge(&self) {
        let n = self
            .all()
            .iter()
            .filter(|e| matches!(e.phase(), Phase::Ready(_)))
            .count();
        self.metrics.set_running(n);
    }

    /// Starts a spawn for `entry` unless one (or a retirement) is under way
    /// or it is ready.
    fn wake(self: &Arc<Self>, entry: &Arc<Entry>, owner: Arc<String>) {
        if matches!(entry.phase(), Phase::Ready(_)) {
            return;
        }
        if entry.busy.swap(true, Ordering::AcqRel) {
            return;
        }
        self.set_phase(entry, Phase::Starting("queued"));
        let registry = self.clone();
        let entry = entry.clone();
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                () = registry.spawn(&entry, owner) => {}
                () = stop.cancelled() => {
                    registry.set_phase(&entry, Phase::Failed("shutting_down"));
                }
            }
            entry.busy.store(false, Ordering::Release);
        });
    }

    /// One spawn: admission, then the runtime's ensure, then the phase.
    async fn spawn(&self, entry: &Arc<Entry>, owner: Arc<String>) {
        let started = Instant::now();
        let permit = tokio::time::timeout(self.config.start_timeout, self.spawn_permits.clone().acquire_owned()).await;
        let Ok(Ok(_permit)) = permit else {
            self.metrics.admission_refused("max_concurrent_spawns");
            self.fail(
                entry,
                &owner,
                started,
                RuntimeError::AtCapacity("starting", RETRY_AFTER),
            );
            return;
        };
        let running = self
            .all()
            .iter()
            .filter(|e| matches!(e.phase(), Phase::Ready(_)))
            .count();
        if running + self.spawns_in_progress.load(Ordering::Acquire) >= self.config.max_running as usize {
            self.metrics.admission_refused("max_running");
            self.fail(entry, &owner, started, RuntimeError::AtCapacity("running", RETRY_AFTER));
            return;
        }
        self.spawns_in_progress.fetch_add(1, Ordering::AcqRel);
        let spec = WorkspaceSpec {
            slug: entry.slug.clone(),
            owner: owner.as_str().into(),
            config: self.config.clone(),
            config_hash: self.config_hash.clone(),
        };
        let progress = |what: &'static str| {
            self.set_phase(entry, Phase::Starting(what));
        };
        let result = self.runtime.ensure(&spec, &progress).await;
        self.spawns_in_progress.fetch_sub(1, Ordering::AcqRel);
        match result {
            Ok(running) => {
                entry.set_container(Some((running.id.clone(), running.created)));
                if let Ok(mut bytes) = entry.net_bytes.lock() {
                    *bytes = None;
                }
                self.touch(entry);
                self.set_phase(entry, Phase::Ready(running.addr));
                let elapsed = started.elapsed();
                self.metrics.workspace_ready(running.action, elapsed);
                tracing::info!(
                    target: "roost::audit",
                    action = running.action,
                    user = %owner,
                    workspace = %entry.slug,
                    address = %running.addr,
                    duration_ms = elapsed.as_millis() as u64,
                    "workspace ready"
                );
                self.update_running_gauge();
            }
            Err(e) => self.fail(entry, &owner, started, e),
        }
    }

    fn fail(&self, entry: &Entry, owner: &str, started: Instant, e: RuntimeError) {
        let reason = e.reason();
        self.metrics.workspace_failed(reason);
        tracing::warn!(
            target: "roost::audit",
            action = "failed",
            user = %owner,
            workspace = %entry.slug,
            reason,
            error = %e,
            duration_ms = started.elapsed().as_millis() as u64,
            "workspace failed to start"
        );
        self.set_phase(entry, Phase::Failed(reason));
    }

    /// Makes `slug` ready for `caller`, waiting at most `wait` (the start
    /// goes on after that).
    pub async fn ensure_ready(
        self: &Arc<Self>,
        caller: &Identity,
        slug: &str,
        wait: Duration,
    ) -> Result<SocketAddr, RuntimeError> {
        let deadline = tokio::time::Instant::now() + wait;
        let entry = self.entry(slug);
        let owner = match entry.owner() {
            Some(owner) => owner,
            None => {
                // Unknown here: maybe made before this process started, or by another replica.
                let owner = match self.runtime.inspect(slug).await? {
                    Some(info) => Arc::new(info.owner.to_string()),
                    None if *caller.slug == *slug => Arc::new(caller.sub.to_string()),
                    None => return Err(RuntimeError::NoSuchWorkspace),
                };
                entry.owner.store(Some(owner.clone()));
                owner
            }
        };
        if **owner != *caller.sub && !caller.admin {
            return Err(RuntimeError::NotOwner);
        }
        self.touch(&entry);
        let mut phases = entry.subscribe();
        loop {
            self.wake(&entry, owner.clone());
            let settled = phases.wait_for(|p| !matches!(p, Phase::Starting(_) | Phase::Retiring));
            match tokio::time::timeout_at(deadline, settled).await {
                Ok(Ok(phase)) => match &*phase {
                    Phase::Ready(addr) | Phase::Draining(addr) => return Ok(*addr),
                    Phase::Failed("capacity") => return Err(RuntimeError::AtCapacity("", RETRY_AFTER)),
                    Phase::Failed(reason) => return Err(RuntimeError::StartFailed(reason)),
                    // Retired while we waited: wake it again.
                    _ => continue,
                },
                Ok(Err(_)) => return Err(RuntimeError::ShuttingDown),
                Err(_) => {
                    return Err(RuntimeError::NotReady {
                        retry_after: RETRY_AFTER,
                    })
                }
            }
        }
    }

    /// Stops (idle) or removes (lifetime) a workspace; the volume stays.
    /// Drain first: the route is withdrawn (the phase leaves `Ready`, so the
    /// next `/traefik` poll drops it), requests in flight finish during
    /// `workspace.drain_grace`, and an idle workspace used meanwhile is kept.
    pub async fn retire(&self, entry: &Arc<Entry>, why: Retire) -> Result<(), RuntimeError> {
        if entry.busy.swap(true, Ordering::AcqRel) {
            return Ok(()); // a spawn or another retirement is under way
        }
        let started = Instant::now();
        let Phase::Ready(addr) = entry.phase() else {
            entry.busy.store(false, Ordering::Release);
            return Ok(());
        };
        self.set_phase(entry, Phase::Draining(addr));
        self.update_running_gauge();
        let drained_at = self.now_ms();
        tokio::select! {
            () = tokio::time::sleep(self.config.drain_grace) => {}
            () = self.stop.cancelled() => {}
        }
        if why == Retire::Idle && entry.last_active.load(Ordering::Relaxed) > drained_at || self.stop.is_cancelled() {
            // Used again while draining (or roost is stopping): keep it.
            self.set_phase(entry, Phase::Ready(addr));
            self.update_running_gauge();
            entry.busy.store(false, Ordering::Release);
            return Ok(());
        }
        self.set_phase(entry, Phase::Retiring);
        let result = match entry.container() {
            Some((id, _)) => match why {
                Retire::Idle => self.runtime.stop(&id, self.config.stop_timeout).await,
                Retire::Lifetime => {
                    let stopped = self.runtime.stop(&id, self.config.stop_timeout).await;
                    stopped.and(self.runtime.remove(&id).await)
                }
            },
            None => Ok(()),
        };
        if why == Retire::Lifetime && result.is_ok() {
            entry.set_container(None);
        }
        let (action, reason) = match why {
            Retire::Idle => ("culled", "idle"),
            Retire::Lifetime => ("removed", "max_lifetime"),
        };
        match &result {
            Ok(()) => {
                self.metrics.workspace_culled(reason);
                tracing::info!(
                    target: "roost::audit",
                    action,
                    user = %entry.owner().map(|o| o.to_string()).unwrap_or_default(),
                    workspace = %entry.slug,
                    reason,
                    duration_ms = started.elapsed().as_millis() as u64,
                    "workspace retired"
                );
            }
            Err(e) => {
                tracing::warn!(target: "roost::audit", action, workspace = %entry.slug, error = %e, "retiring failed")
            }
        }
        self.set_phase(entry, Phase::Stopped);
        entry.busy.store(false, Ordering::Release);
        result
    }

    /// One pass of the reaper: lifetime first, then idleness (HTTP activity
    /// or, failing that, the container's own network traffic).
    pub async fn reap(&self) {
        let idle_ms = u64::try_from(self.config.idle_timeout.as_millis()).unwrap_or(u64::MAX);
        for entry in self.all() {
            if !matches!(entry.phase(), Phase::Ready(_)) || entry.busy.load(Ordering::Acquire) {
                continue;
            }
            let Some((id, created)) = entry.container() else {
                continue;
            };
            if created > 0 && now_secs().saturating_sub(created) >= self.config.max_lifetime.as_secs() {
                let _ = self.retire(&entry, Retire::Lifetime).await;
                continue;
            }
            let idle_for = self.now_ms().saturating_sub(entry.last_active.load(Ordering::Relaxed));
            if idle_for < idle_ms / 2 {
                continue;
            }
            // Quiet over HTTP for a while: does the container still talk (an open WebSocket)?
            let Ok(stats) = self.runtime.stats(&id).await else {
                continue;
            };
            let previous = entry
                .net_bytes
                .lock()
                .ok()
                .and_then(|mut last| last.replace(stats.net_bytes));
            match previous {
                Some(before) if before != stats.net_bytes => self.touch(&entry),
                Some(_) if idle_for >= idle_ms => {
                    let _ = self.retire(&entry, Retire::Idle).await;
                }
                _ => {}
            }
        }
    }

    /// Brings the registry in line with the engine: adopts running
    /// containers (they become ready once they answer) and forgets stopped ones.
    pub async fn reconcile(self: &Arc<Self>) -> Result<(), RuntimeError> {
        let containers = self.runtime.list().await?;
        let mut seen = std::collections::HashSet::new();
        for info in containers {
            seen.insert(info.slug.clone());
            let entry = self.entry(&info.slug);
            let owner = Arc::new(info.owner.to_string());
            entry.owner.store(Some(owner.clone()));
            match info.state {
                ContainerState::Running => {
                    if !matches!(entry.phase(), Phase::Ready(_)) {
                        tracing::info!(target: "roost::audit", action = "adopted", user = %owner, workspace = %info.slug, "running workspace adopted");
                        self.wake(&entry, owner);
                    }
                }
                _ => self.mark_stopped(&entry),
            }
        }
        for entry in self.all() {
            if !seen.contains(&entry.slug) {
                self.mark_stopped(&entry);
            }
        }
        self.update_running_gauge();
        Ok(())
    }

    fn mark_stopped(&self, entry: &Entry) {
        if !entry.busy.load(Ordering::Acquire) && matches!(entry.phase(), Phase::Ready(_)) {
            self.set_phase(entry, Phase::Stopped);
        }
    }

    /// Follows one engine event.
    pub fn on_event(self: &Arc<Self>, event: RuntimeEvent) {
        match event {
            RuntimeEvent::Started { slug } => {
                // Started by someone else (a replica, an operator): adopt it
                // once it is confirmed running. Never create from an event,
                // and leave alone a workspace whose start just failed here.
                let entry = self.entry(&slug);
                if entry.busy.load(Ordering::Acquire) || matches!(entry.phase(), Phase::Ready(_) | Phase::Failed(_)) {
                    return;
                }
                let registry = self.clone();
                self.tasks.spawn(async move {
                    if let Ok(Some(info)) = registry.runtime.inspect(&slug).await {
                        if info.state == ContainerState::Running {
                            let owner = Arc::new(info.owner.to_string());
                            entry.owner.store(Some(owner.clone()));
                            registry.wake(&entry, owner);
                        }
                    }
                });
            }
            RuntimeEvent::Stopped { slug } => {
                if let Some(entry) = self.get(&slug) {
                    self.mark_stopped(&entry);
                }
            }
            RuntimeEvent::Destroyed { slug } => {
                if let Some(entry) = self.get(&slug) {
                    self.mark_stopped(&entry);
                    if !entry.busy.load(Ordering::Acquire) {
                        entry.set_container(None);
                    }
                }
            }
        }
        self.update_running_gauge();
    }

    /// Stops roost's own tasks (spawns in flight are abandoned, never the
    /// workspaces: they keep running and are adopted on the next start).
    pub async fn shutdown(&self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

impl ReadinessGate for Arc<Registry> {
    fn check(&self, caller: &Identity, workspace: &str) -> Gate {
        let Some(entry) = self.get(workspace) else {
            return Gate::Pending;
        };
        let (Phase::Ready(addr) | Phase::Draining(addr)) = *entry.phase.borrow() else {
            return Gate::Pending;
        };
        match entry.owner.load().as_deref() {
            Some(owner) if **owner == *caller.sub || caller.admin => {
                self.touch(&entry);
                Gate::Ready(Some(addr))
            }
            Some(_) => Gate::Forbidden,
            None => Gate::Pending,
        }
    }

    fn ensure_ready<'a>(
        &'a self,
        caller: &'a Identity,
        workspace: &'a str,
        wait: Duration,
    ) -> BoxFuture<'a, Result<SocketAddr, RuntimeError>> {
        Box::pin(Registry::ensure_ready(self, caller, workspace, wait))
    }

    fn address(&self, workspace: &str) -> Option<SocketAddr> {
        match self.get(workspace)?.phase() {
            Phase::Ready(addr) | Phase::Draining(addr) => Some(addr),
            _ => None,
        }
    }

    fn auth_wait(&self) -> Duration {
        self.config.auth_wait
    }
}
