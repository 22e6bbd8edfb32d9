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
}

impl Retire {
    /// The audit log's action and the metrics' reason.
    fn labels(self) -> (&'static str, &'static str) {
        match self {
            Retire::Idle => ("culled", "idle"),
            Retire::Lifetime => ("removed", "max_lifetime"),
            Retire::Requested => ("stopped", "requested"),
        }
    }
}

impl Registry {
    /// Drains, then stops or removes a ready workspace. Nothing happens when
    /// it is not ready, or a spawn or another retirement is under way.
    pub async fn retire(&self, entry: &Arc<Entry>, why: Retire) -> Result<(), RuntimeError> {
        let Some(_busy) = Busy::take(entry) else {
            return Ok(());
        };
        let started = Instant::now();
        let Phase::Ready(addr) = entry.phase() else {
            return Ok(());
        };
        self.set_phase(entry, Phase::Draining(addr));
        self.update_running_gauge();
        let drained_at = self.now_ms();
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
            Some(id) => match why {
                Retire::Idle | Retire::Requested => self.runtime.stop(&id, self.config.stop_timeout).await,
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
        let (action, reason) = why.labels();
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
        self.update_running_gauge();
        result
    }

    /// Retires `entry` in a task of the registry's (roost's shutdown waits
    /// for it; [`Registry::retire`] keeps the workspace when roost stops).
    pub fn retire_in_background(self: &Arc<Self>, entry: Arc<Entry>, why: Retire) {
        let registry = self.clone();
        // Not `spawn_task`: a drain cut short by shutdown must still settle the phase.
        self.tasks.spawn(async move {
            let _ = registry.retire(&entry, why).await;
        });
    }
}
