//! The paused tier: a workspace idle for `workspace.pause_after` is frozen
//! (the cgroup freezer: its memory stays, it uses no CPU) and keeps its
//! route; its next request is let through `/auth` only once it is thawed,
//! which takes milliseconds where a stopped one takes a start. The reaper
//! stops it at `idle_timeout`, keeps at most `max_paused` paused (the
//! longest paused stopped first), and thaws one that traffic reached while
//! frozen (an open WebSocket's next message: the kernel still answers).
//!
//! Use during a freeze: the gate records use before it reads the phase,
//! and a pause reads the use again once the container is frozen, so a
//! request let through just before is never left waiting on a frozen app.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{Busy, Entry, Phase, Registry, Retire};
use crate::workspace::runtime::{FailReason, RuntimeError};

impl Registry {
    /// How long `entry` may be idle before it is paused: `pause_after`,
    /// when its profile's `idle_timeout` is longer.
    pub fn pause_after(&self, entry: &Entry) -> Option<Duration> {
        let config = &self.profile_of(entry).config;
        self.config.pause_after.filter(|p| *p < config.idle_timeout)
    }

    /// Whether any profile pauses (the reaper's pace follows `pause_after`).
    pub fn pauses(&self) -> bool {
        self.config
            .pause_after
            .is_some_and(|p| self.profiles.all().iter().any(|c| p < c.config.idle_timeout))
    }

    /// When it was paused (milliseconds since the registry's epoch).
    pub fn paused_since(&self, entry: &Entry) -> u64 {
        entry.paused_since.load(Ordering::Relaxed)
    }

    /// Ready → Paused, unless a spawn or retirement is under way. Used
    /// while it froze: thawed again at once. Returns whether it paused.
    pub async fn pause(&self, entry: &Arc<Entry>) -> bool {
        let Some(_busy) = Busy::take(entry) else {
            return false;
        };
        let (Phase::Ready(addr), Some(id)) = (entry.phase(), entry.container_id()) else {
            return false;
        };
        let seen = entry.last_active.load(Ordering::SeqCst);
        if let Err(e) = self.runtime.pause(&id).await {
            tracing::warn!(workspace = %entry.slug, error = %e, "pausing failed: it keeps running");
            return false;
        }
        entry.paused_since.store(self.now_ms(), Ordering::Relaxed);
        self.set_phase(entry, Phase::Paused(addr));
        self.update_running_gauge();
        self.metrics.workspace_paused();
        tracing::info!(
            action = "paused",
            workspace = %entry.slug,
            idle_secs = self.idle_for(entry).as_secs(),
            "workspace paused"
        );
        if entry.last_active.load(Ordering::SeqCst) != seen {
            // A request passed the gate while it froze.
            let _ = self.thaw(entry, addr, &id).await;
        }
        true
    }

    /// Thaws a paused workspace in a task of the registry's (a request
    /// waits for the phase; the reaper saw traffic reach it).
    pub(in crate::workspace) fn resume(self: &Arc<Self>, entry: &Arc<Entry>) {
        let Some(busy) = Busy::take(entry) else {
            return; // a pause (which thaws when used) or a retirement is under way
        };
        let (Phase::Paused(addr), Some(id)) = (entry.phase(), entry.container_id()) else {
            return;
        };
        let registry = self.clone();
        let entry = entry.clone();
        self.spawn_task(async move {
            let _busy = busy;
            let _ = registry.thaw(&entry, addr, &id).await;
        });
    }

    /// Paused → Ready; a container that is gone is Stopped (the next
    /// request starts it), an engine that fails is a failed start.
    async fn thaw(&self, entry: &Entry, addr: std::net::SocketAddr, id: &str) -> Result<(), RuntimeError> {
        let started = Instant::now();
        let result = self.runtime.unpause(id).await;
        match &result {
            Ok(()) => {
                self.touch(entry);
                self.set_phase(entry, Phase::Ready(addr));
                self.metrics.workspace_ready("resumed", started.elapsed());
                tracing::info!(
                    action = "resumed",
                    workspace = %entry.slug,
                    duration_ms = started.elapsed().as_millis() as u64,
                    "workspace resumed"
                );
            }
            Err(RuntimeError::NoSuchWorkspace) => self.set_phase(entry, Phase::Stopped),
            Err(e) => {
                tracing::warn!(workspace = %entry.slug, error = %e, "resuming failed");
                entry.failed_at.store(self.now_ms(), Ordering::Relaxed);
                self.set_phase(entry, Phase::Failed(FailReason::Engine));
            }
        }
        self.update_running_gauge();
        result
    }

    /// Paused workspaces no spawn or retirement holds, the longest paused
    /// first: the order they are stopped in to make room.
    fn paused_longest_first(&self) -> Vec<Arc<Entry>> {
        let mut paused: Vec<_> = self
            .all()
            .into_iter()
            .filter(|e| matches!(e.phase(), Phase::Paused(_)) && !e.is_busy())
            .collect();
        paused.sort_by_key(|e| self.paused_since(e));
        paused
    }

    /// Keeps at most `max_paused` paused: the longest paused are stopped.
    pub(in crate::workspace) fn evict_paused(self: &Arc<Self>) {
        let paused = self.paused_longest_first();
        let over = paused.len().saturating_sub(self.config.max_paused as usize);
        for entry in paused.into_iter().take(over) {
            self.retire_in_background(entry, Retire::Evicted);
        }
    }

    /// The longest-paused workspace, stopped to make room for a start
    /// (`max_running` counts paused workspaces: they hold their memory).
    pub(super) fn evict_oldest_paused(self: &Arc<Self>) {
        if let Some(entry) = self.paused_longest_first().into_iter().next() {
            self.retire_in_background(entry, Retire::Evicted);
        }
    }

    /// The engine says it was paused (by another replica, an operator).
    pub fn engine_paused(&self, entry: &Entry) {
        if let (false, Phase::Ready(addr)) = (entry.is_busy(), entry.phase()) {
            entry.paused_since.store(self.now_ms(), Ordering::Relaxed);
            self.set_phase(entry, Phase::Paused(addr));
            self.update_running_gauge();
        }
    }

    /// The engine says it was thawed.
    pub fn engine_unpaused(&self, entry: &Entry) {
        if let (false, Phase::Paused(addr)) = (entry.is_busy(), entry.phase()) {
            self.set_phase(entry, Phase::Ready(addr));
            self.update_running_gauge();
        }
    }
}
