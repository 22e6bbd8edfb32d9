//! Retiring workspaces: stop (idle, or its user asked) or remove
//! (`max_lifetime`); the volume always stays. Drain first: the route is
//! withdrawn (the phase leaves `Ready`, so the next `/traefik` poll drops
//! it), requests in flight finish during `workspace.drain_grace`, and an
//! idle workspace used meanwhile is kept. Never because roost itself is
//! shutting down.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::time::Instant;

use super::{Busy, Entry, Phase, Registry};
use crate::audit::{Actor, Event};
use crate::workspace::runtime::{ContainerState, RuntimeError};

/// Why a workspace is retired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retire {
    /// Idle past `idle_timeout`: stop, keep container and volume.
    Idle,
    /// Older than `max_lifetime`: remove the container, keep the volume.
    Lifetime,
    /// Its user asked (status page or API): stop, keep container and volume.
    Requested,
    /// An admin asked: stop, keep container and volume.
    Admin,
    /// An admin (or its owner, purging) asked: remove the container, keep the volume.
    Remove,
    /// Its quota is used up: stop, keep container and volume.
    Quota,
    /// Another profile was chosen: stop (the next start recreates it).
    Profile,
    /// Paused, and past `max_paused` or in the way of a start under
    /// `max_running`: stop, keep container and volume.
    Evicted,
}

impl Retire {
    /// The audit log's action and the metrics' reason.
    fn labels(self) -> (&'static str, &'static str) {
        match self {
            Retire::Idle => ("culled", "idle"),
            Retire::Lifetime => ("removed", "max_lifetime"),
            Retire::Requested => ("stopped", "requested"),
            Retire::Admin => ("stopped", "admin"),
            Retire::Remove => ("removed", "admin"),
            Retire::Quota => ("stopped", "quota"),
            Retire::Profile => ("stopped", "profile"),
            Retire::Evicted => ("culled", "evicted"),
        }
    }

    /// Who retires it, for the audit trail: the reaper and the quota act
    /// on their own; the person who asked records their own request.
    fn actor(self) -> Option<Actor> {
        match self {
            Retire::Idle | Retire::Lifetime | Retire::Evicted => Some(Actor::Reaper),
            Retire::Quota => Some(Actor::Quota),
            Retire::Requested | Retire::Admin | Retire::Remove | Retire::Profile => None,
        }
    }

    fn removes(self) -> bool {
        matches!(self, Retire::Lifetime | Retire::Remove)
    }
}

/// A retirement begun: the route withdrawn, the drain under way.
struct Draining {
    _busy: Busy,
    addr: std::net::SocketAddr,
    /// It was paused: thawed before the drain, so requests in flight finish.
    paused: bool,
    started: Instant,
    /// When the drain began (milliseconds since the registry's epoch).
    drained_at: u64,
}

impl Registry {
    /// Drains, then stops or removes a ready workspace. Nothing happens when
    /// it is not ready, or a spawn or another retirement is under way.
    pub async fn retire(&self, entry: &Arc<Entry>, why: Retire) -> Result<(), RuntimeError> {
        match self.begin_retire(entry) {
            Some(draining) => self.finish_retire(entry, why, draining).await,
            None => Ok(()),
        }
    }

    /// Ready or Paused → Draining, at once (the route is withdrawn from the
    /// next `/traefik`); `None` when it is neither, or busy.
    fn begin_retire(&self, entry: &Arc<Entry>) -> Option<Draining> {
        let busy = Busy::take(entry)?;
        let (addr, paused) = match entry.phase() {
            Phase::Ready(addr) => (addr, false),
            Phase::Paused(addr) => (addr, true),
            _ => return None,
        };
        self.set_phase(entry, Phase::Draining(addr));
        self.update_running_gauge();
        Some(Draining {
            _busy: busy,
            addr,
            paused,
            started: Instant::now(),
            drained_at: self.now_ms(),
        })
    }

    /// The drain, then the stop or removal.
    async fn finish_retire(&self, entry: &Arc<Entry>, why: Retire, draining: Draining) -> Result<(), RuntimeError> {
        let Draining {
            addr,
            paused,
            started,
            drained_at,
            ..
        } = draining;
        if paused {
            // Frozen, it would finish nothing and heed no stop signal.
            if let Some(id) = entry.container_id() {
                if let Err(e) = self.runtime.unpause(&id).await {
                    tracing::warn!(workspace = %entry.slug, error = %e, "thawing before the stop failed");
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(self.config.drain_grace) => {}
            () = self.stop.cancelled() => {}
        }
        let used = why == Retire::Idle && entry.last_active.load(Ordering::Relaxed) > drained_at;
        if used || self.stop.is_cancelled() {
            // Used again while draining (or roost is stopping): keep it,
            // if its container still runs (an engine event that came
            // during the drain was ignored: the entry was busy).
            let alive = match self.runtime.inspect(&entry.slug).await {
                Ok(Some(info)) => {
                    info.state == ContainerState::Running && entry.container_id().is_some_and(|id| id == info.id)
                }
                Ok(None) => false,
                // The engine did not answer: keep what we knew.
                Err(_) => true,
            };
            self.set_phase(entry, if alive { Phase::Ready(addr) } else { Phase::Stopped });
            self.update_running_gauge();
            return Ok(());
        }
        self.set_phase(entry, Phase::Retiring);
        let result = match entry.container_id() {
            Some(id) if why.removes() => {
                let stopped = self.runtime.stop(&id, self.config.stop_timeout).await;
                stopped.and(self.runtime.remove(&id).await)
            }
            Some(id) => self.runtime.stop(&id, self.config.stop_timeout).await,
            None => Ok(()),
        };
        if why.removes() && result.is_ok() {
            entry.set_container(None);
        }
        let (action, reason) = why.labels();
        match &result {
            Ok(()) => {
                self.metrics.workspace_culled(reason);
                tracing::info!(
                    action,
                    user = %entry.owner().map(|o| o.to_string()).unwrap_or_default(),
                    workspace = %entry.slug,
                    reason,
                    duration_ms = started.elapsed().as_millis() as u64,
                    "workspace retired"
                );
            }
            Err(e) => {
                tracing::warn!(action, workspace = %entry.slug, error = %e, "retiring failed")
            }
        }
        if let Some(actor) = why.actor() {
            let event = Event::new(actor, action)
                .workspace(&entry.slug)
                .why(reason)
                .result(&result, |e| format!("failed: {}", e.reason()));
            self.audit.record(event).await;
        }
        self.set_phase(entry, Phase::Stopped);
        self.update_running_gauge();
        result
    }

    /// Begins retiring `entry` now (it is draining when this returns) and
    /// finishes in a task of the registry's (roost's shutdown waits for it;
    /// a drain cut short by shutdown keeps the workspace).
    pub fn retire_in_background(self: &Arc<Self>, entry: Arc<Entry>, why: Retire) {
        let Some(draining) = self.begin_retire(&entry) else {
            return;
        };
        let registry = self.clone();
        // Not `spawn_task`: a drain cut short by shutdown must still settle the phase.
        self.tasks.spawn(async move {
            let _ = registry.finish_retire(&entry, why, draining).await;
        });
    }
}
