//! A container's resource use, from the engine's one-shot stats (the
//! reaper's traffic samples, the quota's CPU time, the status page).

use bollard::query_parameters::StatsOptions;
use futures_util::stream::StreamExt;

use super::{engine, DockerRuntime};
use crate::workspace::runtime::{RuntimeError, Stats};

impl DockerRuntime {
    pub(super) async fn stats_of(&self, id: &str) -> Result<Stats, RuntimeError> {
        let docker = self.client().await?;
        let options = StatsOptions {
            stream: false,
            one_shot: true,
        };
        let mut stream = docker.stats(id, Some(options));
        let s = match stream.next().await {
            Some(s) => s.map_err(engine)?,
            None => return Ok(Stats::default()),
        };
        let interfaces = || s.networks.iter().flat_map(|n| n.values());
        let sum = |field: fn(&bollard::models::ContainerNetworkStats) -> Option<u64>| {
            interfaces()
                .map(|n| field(n).unwrap_or(0))
                .fold(0u64, u64::wrapping_add)
        };
        Ok(Stats {
            rx_bytes: sum(|n| n.rx_bytes),
            tx_bytes: sum(|n| n.tx_bytes),
            tx_packets: sum(|n| n.tx_packets),
            memory_bytes: s.memory_stats.and_then(|m| m.usage).unwrap_or(0),
            cpu_nanos: s
                .cpu_stats
                .and_then(|c| c.cpu_usage)
                .and_then(|u| u.total_usage)
                .unwrap_or(0),
        })
    }
}
