//! The reaper: on a steady tick, stops workspaces idle past `idle_timeout`
//! and removes those older than `max_lifetime` (volumes always stay). It
//! never stops anything because roost itself is shutting down. Retiring
//! drains first: the route is withdrawn, then the container stops.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::registry::{Entry, Phase, Registry};
use super::runtime::RuntimeError;
use crate::clock::now_secs;

/// A quarter of the idle timeout, within [250 ms, 30 s].
pub fn tick_for(idle_timeout: Duration) -> Duration {
    (idle_timeout / 4).clamp(Duration::from_millis(250), Duration::from_secs(30))
}

pub async fn run(registry: Arc<Registry>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(tick_for(registry.config().idle_timeout));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => registry.reap().await,
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
    /// Its user asked (status page or API): stop, keep container and volume.
    Requested,
}

impl Registry {
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
        let (action, reason) = match why {
            Retire::Idle => ("culled", "idle"),
            Retire::Lifetime => ("removed", "max_lifetime"),
            Retire::Requested => ("stopped", "requested"),
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
}
