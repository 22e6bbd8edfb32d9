//! The reaper: on a steady tick, stops workspaces idle past `idle_timeout`
//! and removes those older than `max_lifetime` (volumes always stay). It
//! never stops anything because roost itself is shutting down.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::registry::Registry;

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
