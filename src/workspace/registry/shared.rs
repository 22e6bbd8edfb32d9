//! What the registry shares with other replicas through the store: the
//! use each replica sees (written in batches, read by the reaper before it
//! calls a workspace idle), the reaper's lease (one culler at a time) and
//! spawn slots (`max_concurrent_spawns` and `max_running` fleet-wide).
//! With the embedded store all of it is local and immediate.
//!
//! Times cross replicas as wall-clock milliseconds; inside, the registry
//! keeps its own monotonic milliseconds, and converts at the edge.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Entry, Registry};

/// How often each replica writes the use it saw.
pub const SHARE_EVERY: Duration = Duration::from_secs(1);
/// The reaper's lease.
const REAPER: &str = "reaper";
/// The fleet's spawns in progress.
const SPAWNS: &str = "spawns";
/// How often a queued spawn asks for a fleet-wide slot again.
const SLOT_POLL: Duration = Duration::from_millis(100);

impl Registry {
    /// Monotonic registry milliseconds → wall-clock milliseconds.
    fn local_to_wall(&self, ms: u64) -> u64 {
        self.clock.now_millis().saturating_sub(self.now_ms().saturating_sub(ms))
    }

    /// Wall-clock milliseconds → monotonic registry milliseconds.
    fn wall_to_local(&self, wall: u64) -> u64 {
        self.now_ms()
            .saturating_sub(self.clock.now_millis().saturating_sub(wall))
    }

    /// Writes the use seen here since the last call; kept for the next
    /// call when the store does not answer.
    pub async fn share_activity(&self) {
        let mut batch = Vec::new();
        let mut marks = Vec::new();
        for entry in self.all() {
            let last = entry.last_active.load(Ordering::Relaxed);
            if last > entry.shared_active.load(Ordering::Relaxed) {
                batch.push((entry.slug.clone(), self.local_to_wall(last)));
                marks.push((entry, last));
            }
        }
        if batch.is_empty() || self.store.record_activity(&batch).await.is_err() {
            return;
        }
        for (entry, last) in marks {
            entry.shared_active.fetch_max(last, Ordering::Relaxed);
        }
    }

    /// Learns the use other replicas saw of `entries` (a store that does
    /// not answer teaches nothing: the local view stands).
    pub async fn learn_activity(&self, entries: &[Arc<Entry>]) {
        let slugs: Vec<Arc<str>> = entries.iter().map(|e| e.slug.clone()).collect();
        let Ok(seen) = self.store.last_activity(&slugs).await else {
            return;
        };
        for (entry, wall) in entries.iter().zip(seen) {
            if let Some(wall) = wall {
                let at = self.wall_to_local(wall);
                entry.last_active.fetch_max(at, Ordering::Relaxed);
                entry.shared_active.fetch_max(at, Ordering::Relaxed);
            }
        }
    }

    /// Whether this replica may reap now: it holds (or just took) the
    /// reaper's lease. A store that does not answer: nobody reaps, since a
    /// workspace in use through another replica would look idle here.
    pub async fn holds_reaper_lease(&self, ttl: Duration) -> bool {
        matches!(self.store.hold_lease(REAPER, &self.replica, ttl).await, Ok(true))
    }

    /// A workspace holds one slot however many replicas start it at once
    /// (the engine makes one container; the others wait on it).
    fn slot_token(&self, entry: &Entry) -> String {
        entry.slug.to_string()
    }

    /// Takes a fleet-wide spawn slot for `entry`, asking again until
    /// `deadline`: `Some(spawns in progress elsewhere)` once taken, `None`
    /// when the fleet stayed full. A store that does not answer: the
    /// local limits alone decide (`Some` with the local count).
    pub(super) async fn take_spawn_slot(&self, entry: &Entry, deadline: Instant) -> Option<usize> {
        let token = self.slot_token(entry);
        let max = self.config.max_concurrent_spawns;
        let ttl = self.config.start_timeout + Duration::from_secs(30);
        loop {
            match self.store.take_slot(SPAWNS, &token, max, ttl).await {
                Ok(true) => {
                    let taken = self.store.slots_taken(SPAWNS).await;
                    return Some(taken.map_or_else(
                        |_| self.spawns_in_progress.load(Ordering::Acquire),
                        |n| (n as usize).saturating_sub(1),
                    ));
                }
                Ok(false) if Instant::now() + SLOT_POLL < deadline => tokio::time::sleep(SLOT_POLL).await,
                Ok(false) => return None,
                Err(_) => return Some(self.spawns_in_progress.load(Ordering::Acquire)),
            }
        }
    }

    pub(super) async fn release_spawn_slot(&self, entry: &Entry) {
        let _ = self.store.release_slot(SPAWNS, &self.slot_token(entry)).await;
    }
}

/// Writes this replica's activity every [`SHARE_EVERY`] until `cancel`
/// (and once more then).
pub async fn run_sharing(registry: Arc<Registry>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(SHARE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = tick.tick() => registry.share_activity().await,
        }
    }
    registry.share_activity().await;
}
