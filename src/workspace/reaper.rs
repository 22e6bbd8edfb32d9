//! The reaper: on a steady tick, stops workspaces idle past `idle_timeout`
//! and removes those older than `max_lifetime` (volumes always stay). It
//! never stops anything because roost itself is shutting down. Retiring
//! drains first: the route is withdrawn, then the container stops.
//!
//! Idle means no authorized request (roost's `/auth` and fallback proxy
//! touch the workspace) and no traffic the container sent itself
//! ([`own_traffic`]): what it receives is no sign of use, since neighbours'
//! broadcasts reach every workspace on the bridge.
//!
//! Worst-case lag: a pass starts every [`tick_for`] interval, samples every
//! ready workspace at once, and retires those idle for `idle_timeout` at
//! that moment. So a workspace stops at most `idle_timeout`, one interval,
//! `drain_grace` and `stop_timeout` after its last request through roost
//! (plus the engine's stats answer, about a second); traffic that only the
//! counters see is noticed one pass late, one interval more.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use tokio_util::sync::CancellationToken;

use super::registry::{Entry, Phase, Registry};
use super::runtime::{RuntimeError, Stats};
use crate::clock::now_secs;

/// A quarter of the idle timeout, within [250 ms, 30 s].
pub fn tick_for(idle_timeout: Duration) -> Duration {
    (idle_timeout / 4).clamp(Duration::from_millis(250), Duration::from_secs(30))
}

/// An ARP request or reply as an interface's counters see it: Ethernet
/// header (14) and ARP payload (28), before any padding on the wire.
const ARP_FRAME_BYTES: u64 = 42;

/// Stats requests in flight at once during a pass. The Docker Engine
/// answers a one-shot stats request when its collector next samples (once a
/// second on 20.10: one request in about 1 s, 8 in series in 8 s, 8 at once
/// in 1.1 s), so the pass asks for all workspaces at once, not in turn.
const STATS_IN_FLIGHT: usize = 64;

/// What a container sent beyond ARP frames: its transmitted bytes minus 42
/// per transmitted frame (wrapping). Between two samples it grows exactly
/// when the container sent at least one frame larger than an ARP frame, that
/// is, any IP traffic at all (a TCP segment is at least 54 bytes, UDP and
/// ICMP at least 42 with nothing in them).
///
/// Why this and not "any change of the counters": measured on Docker 20.10
/// with workspaces on one bridge (inter-container traffic off), an untouched
/// workspace's receive counters grow whenever a neighbour starts or stops
/// (IPv6 router solicitations from the neighbour's new host-side veth, 70
/// bytes, and ARP broadcasts, 42), while it sends nothing: 0 frames over ten
/// neighbour starts and stops and 30 s of quiet. The only frames an idle
/// workspace sends are ARP, each 42 bytes: its answer to the host's
/// reachability probe and its own probe of the gateway, about 5 s after
/// the last traffic it had. (roost's networks have IPv6 off, so it sends no
/// neighbour solicitations or multicast reports either.) Whatever it sends
/// as part of real use is larger: an HTTP answer, a WebSocket echo (a
/// 9-byte message is one frame of about 77 bytes), a bare TCP
/// acknowledgement (54 or 66). A byte or frame threshold instead would not
/// do: one short WebSocket message per sample is a single frame hardly
/// bigger than the noise. Consequences: an open connection the peer keeps
/// alive with TCP keep-alive probes counts (the workspace answers them), and
/// so does the close of a pooled connection after the last request.
pub fn own_traffic(stats: &Stats) -> u64 {
    stats
        .tx_bytes
        .wrapping_sub(stats.tx_packets.wrapping_mul(ARP_FRAME_BYTES))
}

/// Whether a container sent IP traffic between two samples of
/// [`own_traffic`]. A drop (the counters restart with the container) is not.
pub fn sent_between(before: u64, now: u64) -> bool {
    (now.wrapping_sub(before) as i64) > 0
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
            // Used again while draining (or roost is stopping): keep it,
            // if its container still runs (an engine event that came
            // during the drain was ignored: the entry was busy).
            let alive = match self.runtime.inspect(&entry.slug).await {
                Ok(Some(info)) => {
                    info.state == super::runtime::ContainerState::Running
                        && entry.container().is_some_and(|(id, _)| id == info.id)
                }
                Ok(None) => false,
                // The engine did not answer: keep what we knew.
                Err(_) => true,
            };
            self.set_phase(entry, if alive { Phase::Ready(addr) } else { Phase::Stopped });
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

    /// One pass of the reaper: lifetime first, then idleness (no HTTP
    /// activity, and no traffic the container sent since the last pass).
    /// Every ready workspace is sampled on every pass, so the last sample
    /// is at most one interval old whatever happened before. Retirements run
    /// as tasks of their own: a pass never waits for a drain.
    pub async fn reap(self: &Arc<Self>) {
        let idle_ms = u64::try_from(self.config.idle_timeout.as_millis()).unwrap_or(u64::MAX);
        let mut ready = Vec::new();
        for entry in self.all() {
            if !matches!(entry.phase(), Phase::Ready(_)) || entry.busy.load(Ordering::Acquire) {
                continue;
            }
            let Some((id, created)) = entry.container() else {
                continue;
            };
            if created > 0 && now_secs().saturating_sub(created) >= self.config.max_lifetime.as_secs() {
                self.retire_in_background(entry, Retire::Lifetime);
                continue;
            }
            ready.push((entry, id));
        }
        let samples: Vec<_> = stream::iter(ready)
            .map(|(entry, id)| async move { (self.runtime.stats(&id).await, entry) })
            .buffer_unordered(STATS_IN_FLIGHT)
            .collect()
            .await;
        for (stats, entry) in samples {
            let Ok(stats) = stats else {
                continue;
            };
            let now = own_traffic(&stats);
            let before = entry.own_traffic.lock().ok().and_then(|mut last| last.replace(now));
            let Some(before) = before else {
                continue; // the first sample since it became ready
            };
            if sent_between(before, now) {
                self.touch(&entry);
            } else if self.now_ms().saturating_sub(entry.last_active.load(Ordering::Relaxed)) >= idle_ms {
                self.retire_in_background(entry, Retire::Idle);
            }
        }
    }

    /// Retires `entry` in a task of the registry's (roost's shutdown waits
    /// for it; [`Registry::retire`] keeps the workspace when roost stops).
    fn retire_in_background(self: &Arc<Self>, entry: Arc<Entry>, why: Retire) {
        let registry = self.clone();
        self.tasks.spawn(async move {
            let _ = registry.retire(&entry, why).await;
        });
    }
}
