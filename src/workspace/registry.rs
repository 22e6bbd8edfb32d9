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

use super::runtime::{Runtime, RuntimeError};
use super::spec::{config_hash, WorkspaceSpec};
use super::{Gate, ReadinessGate};
use crate::auth::Identity;
use crate::config::WorkspaceConfig;
use crate::metrics::Metrics;

/// How long a refused caller should wait before asking again.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// Failure reasons a retry cannot mend without someone changing something.
const PERMANENT_FAILURES: &[&str] = &["name_taken", "unsafe_network", "image_missing"];
/// How long such a failure stands before a request may try again.
const PERMANENT_FAILURE_BACKOFF: Duration = Duration::from_secs(30);

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
    pub(super) owner: ArcSwapOption<String>,
    phase: watch::Sender<Phase>,
    /// A spawn or a retirement is under way (only one at a time).
    pub(super) busy: AtomicBool,
    /// Milliseconds since the registry's epoch.
    pub(super) last_active: AtomicU64,
    /// What the workspace itself had sent at the last sample (see
    /// `reaper::own_traffic`): neighbours' broadcasts never move it.
    pub(super) own_traffic: Mutex<Option<u64>>,
    /// When it last became ready (milliseconds since the registry's epoch).
    pub(super) ready_since: AtomicU64,
    /// When its last start failed (milliseconds since the registry's epoch).
    failed_at: AtomicU64,
    container: Mutex<Option<(String, u64)>>,
    /// The owner's volume from before slugs carried 64-bit hashes, as the
    /// owner's identity names it (mounted when the new one does not exist).
    legacy_volume: ArcSwapOption<String>,
}

impl Entry {
    fn new(slug: &str) -> Self {
        Entry {
            slug: slug.into(),
            owner: ArcSwapOption::empty(),
            phase: watch::Sender::new(Phase::Stopped),
            busy: AtomicBool::new(false),
            last_active: AtomicU64::new(0),
            own_traffic: Mutex::new(None),
            ready_since: AtomicU64::new(0),
            failed_at: AtomicU64::new(0),
            container: Mutex::new(None),
            legacy_volume: ArcSwapOption::empty(),
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

    pub(super) fn container(&self) -> Option<(String, u64)> {
        self.container.lock().ok()?.clone()
    }

    pub(super) fn set_container(&self, value: Option<(String, u64)>) {
        if let Ok(mut c) = self.container.lock() {
            *c = value;
        }
    }
}

pub struct Registry {
    pub(super) runtime: Arc<dyn Runtime>,
    pub(super) config: Arc<WorkspaceConfig>,
    config_hash: Arc<str>,
    /// `deployment.id` and `oidc.issuer`, for names and ownership labels.
    deployment: Arc<str>,
    issuer: Arc<str>,
    pub(super) entries: RwLock<HashMap<Arc<str>, Arc<Entry>, foldhash::fast::RandomState>>,
    spawn_permits: Arc<Semaphore>,
    /// Spawns past the running-limit check and not yet finished.
    spawns_in_progress: AtomicUsize,
    /// Bumped whenever a workspace becomes ready or stops being ready:
    /// the route table's version.
    routes_version: AtomicU64,
    pub(super) metrics: Arc<Metrics>,
    epoch: Instant,
    pub(super) tasks: TaskTracker,
    pub(super) stop: CancellationToken,
}

impl Registry {
    pub fn new(
        runtime: Arc<dyn Runtime>,
        config: WorkspaceConfig,
        (deployment, issuer): (&str, &str),
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let permits = config.max_concurrent_spawns as usize;
        Arc::new(Registry {
            runtime,
            deployment: deployment.into(),
            issuer: issuer.into(),
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

    pub(super) fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The entry for `slug`, if roost knows of it.
    pub fn get(&self, slug: &str) -> Option<Arc<Entry>> {
        self.entries.read().ok()?.get(slug).cloned()
    }

    pub(super) fn entry(&self, slug: &str) -> Arc<Entry> {
        if let Some(e) = self.get(slug) {
            return e;
        }
        let mut entries = self.entries.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries
            .entry(slug.into())
            .or_insert_with(|| Arc::new(Entry::new(slug)))
            .clone()
    }

    pub(super) fn all(&self) -> Vec<Arc<Entry>> {
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
    pub(super) fn set_phase(&self, entry: &Entry, phase: Phase) {
        let before = entry.phase.send_replace(phase.clone());
        if matches!(phase, Phase::Ready(_)) && !matches!(before, Phase::Ready(_) | Phase::Draining(_)) {
            entry.ready_since.store(self.now_ms(), Ordering::Relaxed);
        }
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

    pub(super) fn update_running_gauge(&self) {
        let n = self
            .all()
            .iter()
            .filter(|e| matches!(e.phase(), Phase::Ready(_)))
            .count();
        self.metrics.set_running(n);
    }

    /// Starts a spawn for `entry` unless one (or a retirement) is under way
    /// or it is ready.
    pub(super) fn wake(self: &Arc<Self>, entry: &Arc<Entry>, owner: Arc<String>) {
        self.start(entry, owner, false);
    }

    /// Takes over a container that is running already (found at startup or
    /// started by someone else): waits for it to answer, and never creates,
    /// starts or recreates anything.
    pub(super) fn adopt(self: &Arc<Self>, entry: &Arc<Entry>, owner: Arc<String>) {
        self.start(entry, owner, true);
    }

    fn start(self: &Arc<Self>, entry: &Arc<Entry>, owner: Arc<String>, adopt_only: bool) {
        match entry.phase() {
            Phase::Ready(_) => return,
            // Failures no retry can mend (a configuration problem, another
            // account's volume) are not tried again for a while: no storm.
            Phase::Failed(reason)
                if PERMANENT_FAILURES.contains(&reason)
                    && self.now_ms().saturating_sub(entry.failed_at.load(Ordering::Relaxed))
                        < PERMANENT_FAILURE_BACKOFF.as_millis() as u64 =>
            {
                return
            }
            _ => {}
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
                () = registry.spawn(&entry, owner, adopt_only) => {}
                () = stop.cancelled() => {
                    registry.set_phase(&entry, Phase::Failed("shutting_down"));
                }
            }
            entry.busy.store(false, Ordering::Release);
        });
    }

    /// One spawn: admission, then the runtime's ensure, then the phase.
    async fn spawn(&self, entry: &Arc<Entry>, owner: Arc<String>, adopt_only: bool) {
        let started = Instant::now();
        if adopt_only {
            let running = matches!(
                self.runtime.inspect(&entry.slug).await,
                Ok(Some(ref info)) if info.state == super::runtime::ContainerState::Running
            );
            if !running {
                self.set_phase(entry, Phase::Stopped);
                return;
            }
        }
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
        let mut spec = WorkspaceSpec::new(
            self.deployment.clone(),
            self.issuer.clone(),
            entry.slug.clone(),
            owner.as_str().into(),
            self.config.clone(),
            self.config_hash.clone(),
        );
        spec.legacy_volume = entry.legacy_volume.load_full().map(|v| v.to_string());
        let progress = |what: &'static str| {
            self.set_phase(entry, Phase::Starting(what));
        };
        let result = self.runtime.ensure(&spec, &progress).await;
        self.spawns_in_progress.fetch_sub(1, Ordering::AcqRel);
        match result {
            Ok(running) => {
                entry.set_container(Some((running.id.clone(), running.created)));
                if let Ok(mut bytes) = entry.own_traffic.lock() {
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
        entry.failed_at.store(self.now_ms(), Ordering::Relaxed);
        // The owner may have come from the caller (no container yet): the
        // next request finds it out again, so a refused account (another's
        // volume) leaves nothing behind that could refuse the rightful one.
        entry.owner.store(None);
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
        if !caller.may_use(&owner) {
            return Err(RuntimeError::NotOwner);
        }
        if *caller.slug == *slug && *caller.sub == **owner {
            if let Some(old) = &caller.legacy_slug {
                let volume = super::spec::volume_name(&self.deployment, old);
                if entry.legacy_volume.load().as_deref().is_none_or(|v| *v != volume) {
                    entry.legacy_volume.store(Some(Arc::new(volume)));
                }
            }
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
            Some(owner) if caller.may_use(owner) => {
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
