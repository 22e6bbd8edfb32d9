//! The reaper: on a steady tick, pauses workspaces idle past
//! `pause_after` (when set), stops those idle past `idle_timeout`, keeps at
//! most `max_paused` paused, thaws a paused one that traffic reached, and
//! removes those older than `max_lifetime` (volumes always stay). It
//! never stops anything because roost itself is shutting down. Retiring
//! drains first: the route is withdrawn, then the container stops.
//!
//! One replica reaps at a time (the store's lease); before it calls a
//! workspace idle it reads the use the other replicas wrote.
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

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use tokio_util::sync::CancellationToken;

use super::registry::{Phase, Registry, Retire};
use super::runtime::Stats;

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
    let mut tick = tokio::time::interval(tick_for(registry.reaper_pace()));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => registry.reap().await,
        }
    }
}

impl Registry {
    /// The shortest `idle_timeout` of any profile: the reaper's pace.
    pub fn shortest_idle_timeout(&self) -> Duration {
        self.profiles()
            .all()
            .iter()
            .map(|c| c.config.idle_timeout)
            .min()
            .unwrap_or(self.config().idle_timeout)
    }

    /// What the reaper's tick follows: the shortest `idle_timeout`, or
    /// `pause_after` when that is shorter and some profile pauses.
    pub fn reaper_pace(&self) -> Duration {
        let idle = self.shortest_idle_timeout();
        match self.config().pause_after {
            Some(pause) if self.pauses() => idle.min(pause),
            _ => idle,
        }
    }

    /// One pass of the reaper: lifetime first, then idleness (no HTTP
    /// activity, and no traffic the container sent since the last pass).
    /// Every ready workspace is sampled on every pass, so the last sample
    /// is at most one interval old whatever happened before. Retirements run
    /// as tasks of their own: a pass never waits for a drain.
    pub async fn reap(self: &Arc<Self>) {
        // One reaper in the fleet. The lease outlives a few slow passes (a
        // pass waits for the engine's stats): if its holder dies, another
        // replica reaps after at most this long.
        let lease = tick_for(self.reaper_pace()) * 3 + Duration::from_secs(10);
        if !self.holds_reaper_lease(lease).await {
            return;
        }
        let mut ready = Vec::new();
        for entry in self.all() {
            if !entry.phase().is_up() || entry.is_busy() {
                continue;
            }
            let (Some(id), Some(created)) = (entry.container_id(), entry.created()) else {
                continue;
            };
            let max_lifetime = self.profile_of(&entry).config.max_lifetime.as_secs();
            if created > 0 && self.now_secs().saturating_sub(created) >= max_lifetime {
                self.retire_in_background(entry, Retire::Lifetime);
                continue;
            }
            ready.push((entry, id));
        }
        let samples: Vec<_> = stream::iter(ready)
            .map(|(entry, id)| async move { (self.runtime().stats(&id).await, entry) })
            .buffer_unordered(STATS_IN_FLIGHT)
            .collect()
            .await;
        let samples: Vec<_> = samples
            .into_iter()
            .filter_map(|(stats, entry)| Some((entry, stats.ok()?)))
            .collect();
        self.account(&samples).await;
        let mut idle = Vec::new();
        for (entry, stats) in samples {
            let now = own_traffic(&stats);
            let Some(before) = entry.swap_traffic_sample(now) else {
                continue; // the first sample since it became ready
            };
            if sent_between(before, now) {
                self.touch(&entry);
                // Frozen, it still sent: its kernel answered a connection
                // or a WebSocket's message, which wait for the app.
                if matches!(entry.phase(), Phase::Paused(_)) {
                    self.resume(&entry);
                }
            } else {
                // Idle past the first tier: paused, or stopped.
                let idle_for = self.idle_for(&entry);
                let first = self
                    .pause_after(&entry)
                    .unwrap_or(self.profile_of(&entry).config.idle_timeout);
                if idle_for >= first {
                    idle.push(entry);
                }
            }
        }
        // Idle here may be in use through another replica.
        self.learn_activity(&idle).await;
        for entry in idle {
            let idle_for = self.idle_for(&entry);
            if idle_for >= self.profile_of(&entry).config.idle_timeout {
                self.retire_in_background(entry, Retire::Idle);
            } else if matches!(entry.phase(), Phase::Ready(_))
                && self.pause_after(&entry).is_some_and(|p| idle_for >= p)
            {
                let registry = self.clone();
                self.spawn_task(async move {
                    registry.pause(&entry).await;
                });
            }
        }
        self.evict_paused();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(tx_bytes: u64, tx_packets: u64) -> Stats {
        Stats {
            tx_bytes,
            tx_packets,
            ..Stats::default()
        }
    }

    #[test]
    fn the_tick_is_a_quarter_of_the_idle_timeout_within_bounds() {
        assert_eq!(tick_for(Duration::ZERO), Duration::from_millis(250));
        assert_eq!(tick_for(Duration::from_millis(400)), Duration::from_millis(250));
        assert_eq!(tick_for(Duration::from_secs(1)), Duration::from_millis(250));
        assert_eq!(tick_for(Duration::from_secs(2)), Duration::from_millis(500));
        assert_eq!(tick_for(Duration::from_secs(60)), Duration::from_secs(15));
        assert_eq!(tick_for(Duration::from_secs(120)), Duration::from_secs(30));
        assert_eq!(tick_for(Duration::from_secs(121)), Duration::from_secs(30));
        assert_eq!(tick_for(Duration::from_secs(3600)), Duration::from_secs(30));
    }

    #[test]
    fn own_traffic_is_what_was_sent_beyond_arp_frames() {
        assert_eq!(own_traffic(&Stats::default()), 0);
        assert_eq!(own_traffic(&sent(42, 1)), 0);
        assert_eq!(own_traffic(&sent(3 * 42, 3)), 0);
        assert_eq!(own_traffic(&sent(1000, 10)), 580);
        // What it received is no sign of use.
        let received = Stats {
            rx_bytes: 1 << 20,
            ..sent(1000, 10)
        };
        assert_eq!(own_traffic(&received), 580);
    }

    #[test]
    fn arp_frames_alone_are_not_traffic() {
        let before = own_traffic(&sent(1000, 10));
        let after_two_arps = own_traffic(&sent(1000 + 2 * 42, 12));
        assert_eq!(after_two_arps, before);
        assert!(!sent_between(before, after_two_arps));
    }

    #[test]
    fn a_bare_tcp_ack_is_traffic() {
        let before = own_traffic(&sent(1000, 10));
        let after_ack = own_traffic(&sent(1000 + 54, 11));
        assert_eq!(after_ack, before + 12);
        assert!(sent_between(before, after_ack));
        // One ACK among ARP frames still counts.
        let mixed = own_traffic(&sent(1000 + 54 + 3 * 42, 14));
        assert!(sent_between(before, mixed));
    }

    #[test]
    fn wrapping_counters_still_show_traffic() {
        // The byte counter wraps past u64::MAX with one 54-byte frame.
        let high = sent(u64::MAX - 10, 5);
        let wrapped = sent((u64::MAX - 10).wrapping_add(54), 6);
        assert_eq!(wrapped.tx_bytes, 43);
        let (before, now) = (own_traffic(&high), own_traffic(&wrapped));
        assert_eq!(now.wrapping_sub(before), 12);
        assert!(sent_between(before, now));
        // ... and ARP only across the wrap is still nothing.
        let arp_across = sent((u64::MAX - 10).wrapping_add(42), 6);
        assert!(!sent_between(before, own_traffic(&arp_across)));
        // The difference itself wrapping past zero.
        assert!(sent_between(u64::MAX, 5));
        assert!(sent_between(u64::MAX - 1, u64::MAX));
    }

    #[test]
    fn nothing_new_or_a_counter_reset_is_not_traffic() {
        let before = own_traffic(&sent(10_000_000, 20_000));
        assert!(!sent_between(before, before));
        // The container restarted: its counters begin again, lower.
        let restarted = own_traffic(&sent(300, 2));
        assert!(restarted < before);
        assert!(!sent_between(before, restarted));
        assert!(!sent_between(5, 0));
    }
}
