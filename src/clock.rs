//! Wall-clock time as roost records it: whole seconds since the Unix epoch
//! (token and session expiry, container creation labels). Durations and
//! deadlines use the monotonic clock (`Instant`) instead.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (0 if the clock is set before 1970).
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
