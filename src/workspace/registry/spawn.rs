//! Starting workspaces: a user's request (`ensure_ready`, `start`) or a
//! container the engine already runs (`adopt`). One spawn task per
//! workspace at a time, which every concurrent request waits on through
//! the entry's phase; across processes the engine's name conflict makes the
//! loser adopt the winner's container (see the Docker runtime). Admission:
//! at most `max_concurrent_spawns` spawns run at once (the rest queue,
//! bounded by `start_timeout`), and no spawn starts past `max_running`,
//! both counted across replicas through the store's slots.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::{Busy, Choice, Entry, Phase, Registry};
use crate::audit::{Actor, Event};
use crate::auth::Identity;
use crate::workspace::runtime::{ContainerState, FailReason, RuntimeError, Step};
use crate::workspace::spec::{volume_name, WorkspaceSpec};

/// How long a refused caller should wait before asking again.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// What a spawn may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Create, start or recreate as needed.
    Wake,
    /// Only wait for a container that runs already to answer.
    Adopt,
}

impl Registry {
    /// Makes `slug` ready for `caller`, waiting at most `wait` (the start
    /// goes on after that: `RuntimeError::NotReady`).
    pub async fn ensure_ready(
        self: &Arc<Self>,
        caller: &Identity,
        slug: &str,
        wait: Duration,
    ) -> Result<SocketAddr, RuntimeError> {
        let deadline = Instant::now() + wait;
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
                self.learn_owner(&entry, owner.clone());
                owner
            }
        };
        if !caller.may_use(&owner) {
            return Err(RuntimeError::NotOwner);
        }
        if *caller.sub == **owner && !entry.phase().is_up() {
            self.check_quota(caller, &entry).await?;
        }
        if *caller.slug == *slug && *caller.sub == **owner {
            if let Some(old) = &caller.legacy_slug {
                let volume = volume_name(&self.deployment, old);
                if entry.legacy_volume.load().as_deref().is_none_or(|v| *v != volume) {
                    entry.legacy_volume.store(Some(Arc::new(volume)));
                }
            }
        }
        self.touch(&entry);
        let mut phases = entry.subscribe();
        loop {
            self.launch(&entry, owner.clone(), Mode::Wake);
            let settled = phases.wait_for(|p| !matches!(p, Phase::Starting(_) | Phase::Retiring | Phase::Paused(_)));
            match tokio::time::timeout_at(deadline, settled).await {
                Ok(Ok(phase)) => match *phase {
                    Phase::Ready(addr) | Phase::Draining(addr) => return Ok(addr),
                    Phase::Failed(FailReason::Capacity) => return Err(RuntimeError::AtCapacity("", RETRY_AFTER)),
                    Phase::Failed(reason) => return Err(RuntimeError::StartFailed(reason)),
                    // Retired while we waited: wake it again.
                    Phase::Stopped | Phase::Starting(_) | Phase::Retiring | Phase::Paused(_) => continue,
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

    /// Starts the workspace for `caller` without waiting for it.
    pub async fn start(self: &Arc<Self>, caller: &Identity, slug: &str) -> Result<(), RuntimeError> {
        match self.ensure_ready(caller, slug, Duration::ZERO).await {
            Ok(_) | Err(RuntimeError::NotReady { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Takes over a container that is running already (found at startup or
    /// started by someone else), owned by `owner` by its labels: waits for
    /// it to answer, and never creates, starts or recreates anything.
    pub fn adopt(self: &Arc<Self>, entry: &Arc<Entry>, owner: Arc<String>) {
        self.learn_owner(entry, owner.clone());
        if !entry.phase().is_up() {
            self.record_later(
                Event::new(Actor::System, "adopted")
                    .workspace(&entry.slug)
                    .why(&format!("owner {owner}")),
            );
            self.launch(entry, owner, Mode::Adopt);
        }
    }

    /// Starts a spawn task for `entry` unless one (or a retirement) is under
    /// way, it is ready, or its last failure is one to wait out.
    fn launch(self: &Arc<Self>, entry: &Arc<Entry>, owner: Arc<String>, mode: Mode) {
        match entry.phase() {
            Phase::Ready(_) => return,
            Phase::Paused(_) => return self.resume(entry),
            // A failure stands for its back-off: no storm of doomed starts.
            Phase::Failed(reason)
                if self.now_ms().saturating_sub(entry.failed_at.load(Ordering::Relaxed))
                    < reason.backoff().as_millis() as u64 =>
            {
                return
            }
            _ => {}
        }
        let Some(busy) = Busy::take(entry) else {
            return;
        };
        self.set_phase(entry, Phase::Starting(Step::Queued));
        let registry = self.clone();
        let entry = entry.clone();
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            let _busy = busy;
            tokio::select! {
                () = registry.spawn(&entry, owner, mode) => {}
                () = stop.cancelled() => {
                    registry.set_phase(&entry, Phase::Failed(FailReason::ShuttingDown));
                }
            }
        });
    }

    /// One spawn: admission, then the runtime's ensure, then the phase.
    async fn spawn(self: &Arc<Self>, entry: &Arc<Entry>, owner: Arc<String>, mode: Mode) {
        let started = Instant::now();
        let choice = if mode == Mode::Adopt {
            match self.runtime.inspect(&entry.slug).await {
                // A paused one is thawed by the runtime's ensure.
                Ok(Some(info)) if matches!(info.state, ContainerState::Running | ContainerState::Paused) => {
                    self.profiles.resolve(info.profile.as_deref()).clone()
                }
                _ => {
                    self.set_phase(entry, Phase::Stopped);
                    return;
                }
            }
        } else {
            self.chosen_profile(entry).await
        };
        entry.profile.store(Some(choice.clone()));
        // Adopting creates nothing: only a start counts toward the limits.
        let admitted = match mode {
            Mode::Wake => match self.admit(entry, &owner, started).await {
                Some(permit) => Some(permit),
                None => return,
            },
            Mode::Adopt => None,
        };
        self.spawns_in_progress.fetch_add(1, Ordering::AcqRel);
        let mut spec = WorkspaceSpec::new(
            self.deployment.clone(),
            self.issuer.clone(),
            entry.slug.clone(),
            owner.as_str().into(),
            choice.config.clone(),
            choice.hash.clone(),
        );
        spec.profile = choice.name.clone();
        spec.legacy_volume = entry.legacy_volume.load_full().map(|v| v.to_string());
        let progress = |step: Step| self.set_phase(entry, Phase::Starting(step));
        let result = self.runtime.ensure(&spec, &progress).await;
        self.spawns_in_progress.fetch_sub(1, Ordering::AcqRel);
        if admitted.is_some() {
            self.release_spawn_slot(entry).await;
        }
        drop(admitted);
        match result {
            Ok(running) => {
                entry.set_container(Some((running.id.clone(), running.created)));
                entry.reset_traffic_sample();
                self.reset_accounting(entry);
                self.touch(entry);
                self.set_phase(entry, Phase::Ready(running.addr));
                let elapsed = started.elapsed();
                self.metrics.workspace_ready(running.action.as_str(), elapsed);
                tracing::info!(
                    user = %owner,
                    workspace = %entry.slug,
                    address = %running.addr,
                    duration_ms = elapsed.as_millis() as u64,
                    "workspace ready"
                );
                if running.action != crate::workspace::runtime::Action::Ready {
                    let event = Event::new(Actor::System, running.action.as_str())
                        .workspace(&entry.slug)
                        .why(&format!("profile {}", choice.name));
                    self.audit.record(event).await;
                }
                self.update_running_gauge();
            }
            Err(e) => self.fail(entry, &owner, started, e),
        }
    }

    /// Admission of a start: a local permit (queued up to `start_timeout`),
    /// a fleet-wide slot, and room under `max_running`; `None` (the entry
    /// failed with `Capacity`) when there is none.
    async fn admit(
        self: &Arc<Self>,
        entry: &Arc<Entry>,
        owner: &str,
        started: Instant,
    ) -> Option<OwnedSemaphorePermit> {
        let permit = tokio::time::timeout(self.config.start_timeout, self.spawn_permits.clone().acquire_owned()).await;
        let Ok(Ok(permit)) = permit else {
            self.metrics.admission_refused("max_concurrent_spawns");
            self.fail(entry, owner, started, RuntimeError::AtCapacity("starting", RETRY_AFTER));
            return None;
        };
        // The same limit across replicas: a slot in the shared store.
        let Some(spawning) = self.take_spawn_slot(entry, started + self.config.start_timeout).await else {
            self.metrics.admission_refused("max_concurrent_spawns");
            self.fail(entry, owner, started, RuntimeError::AtCapacity("starting", RETRY_AFTER));
            return None;
        };
        // Every replica sees every running container (engine events);
        // paused ones hold their memory, so they count.
        let running = self.all().iter().filter(|e| e.phase().is_up()).count();
        if running + spawning >= self.config.max_running as usize {
            // The longest-paused one makes room: the retry finds it.
            self.evict_oldest_paused();
            self.release_spawn_slot(entry).await;
            self.metrics.admission_refused("max_running");
            self.fail(entry, owner, started, RuntimeError::AtCapacity("running", RETRY_AFTER));
            return None;
        }
        Some(permit)
    }

    /// The profile chosen for `entry` (the store's word; when it does not
    /// answer, the one its container ran last).
    pub async fn chosen_profile(&self, entry: &Entry) -> Arc<Choice> {
        match self.store.profile(&entry.slug).await {
            Ok(name) => self.profiles.resolve(name.as_deref()).clone(),
            Err(e) => {
                tracing::warn!(workspace = %entry.slug, error = %e, "profile choice unknown (the store does not answer): keeping the last one");
                self.profile_of(entry)
            }
        }
    }

    fn fail(&self, entry: &Entry, owner: &str, started: Instant, e: RuntimeError) {
        let reason = e.fail_reason();
        self.metrics.workspace_failed(reason.as_str());
        tracing::warn!(
            action = "failed",
            user = %owner,
            workspace = %entry.slug,
            reason = reason.as_str(),
            error = %e,
            duration_ms = started.elapsed().as_millis() as u64,
            "workspace failed to start"
        );
        if reason != FailReason::NotOwner {
            let event = Event::new(Actor::System, "start")
                .workspace(&entry.slug)
                .outcome(&format!("failed: {}", reason.as_str()));
            self.record_later(event);
        }
        entry.failed_at.store(self.now_ms(), Ordering::Relaxed);
        // The owner may have come from the caller (no container yet): the
        // next request finds it out again, so a refused account (another's
        // volume) leaves nothing behind that could refuse the rightful one.
        entry.owner.store(None);
        self.set_phase(entry, Phase::Failed(reason));
    }
}
