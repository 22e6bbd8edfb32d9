//! Wall-clock time as roost records it: whole seconds since the Unix epoch
//! (token and session expiry, container creation labels). Durations and
//! deadlines use the monotonic clock (tokio's `Instant`) instead.
//!
//! Where wall time decides what happens to a workspace (`max_lifetime`),
//! it comes through the [`Clock`] trait, so tests can run it on tokio's
//! paused clock ([`TokioClock`]).

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (0 if the clock is set before 1970).
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Milliseconds since the Unix epoch (0 if the clock is set before 1970).
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Where wall-clock time comes from.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch (activity shared between replicas).
    fn now_millis(&self) -> u64;
    fn now_secs(&self) -> u64 {
        self.now_millis() / 1000
    }
}

/// The system's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> u64 {
        now_millis()
    }
}

/// Wall time that advances with tokio's clock from the moment it is made:
/// under a paused runtime (tests), it moves only when tokio's time does.
pub struct TokioClock {
    /// Milliseconds since the epoch when it was made.
    wall: u64,
    at: tokio::time::Instant,
}

impl TokioClock {
    pub fn new() -> Self {
        TokioClock {
            wall: now_millis(),
            at: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now_millis(&self) -> u64 {
        self.wall
            .saturating_add(u64::try_from(self.at.elapsed().as_millis()).unwrap_or(u64::MAX))
    }
}
