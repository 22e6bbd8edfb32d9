//! What operators (and owners) do to a workspace beyond start and stop:
//! stop it as an admin, remove its container, purge its volume, run it
//! in another profile; and the overview of every workspace the console
//! and `GET /admin/workspaces` show. The caller is authorized before these
//! are called; each is recorded in the audit trail by its caller.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use serde::Serialize;

use super::{Busy, Phase, Registry, Retire};
use crate::auth::Identity;
use crate::workspace::runtime::{ContainerState, RuntimeError};

/// Concurrent stats requests for an overview.
const STATS_IN_FLIGHT: usize = 32;

/// One workspace, as an admin sees it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overview {
    pub workspace: String,
    /// The full `sub` of its owner.
    pub owner: String,
    /// `stopped`, `starting`, `running`, `draining`, `stopping` or `failed`.
    pub state: &'static str,
    pub profile: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Run hours in the current quota period (with quotas on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_workspace_hours: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_cpu_hours: Option<f64>,
}

/// What a removal did.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Removed {
    pub container: bool,
    pub volume: bool,
}

/// The state label of a phase (the status API's words).
pub fn state_of(phase: Phase) -> &'static str {
    match phase {
        Phase::Stopped => "stopped",
        Phase::Starting(_) => "starting",
        Phase::Ready(_) => "running",
        Phase::Paused(_) => "paused",
        Phase::Draining(_) => "draining",
        Phase::Retiring => "stopping",
        Phase::Failed(_) => "failed",
    }
}

fn busy() -> RuntimeError {
    RuntimeError::Busy {
        retry_after: Duration::from_secs(2),
    }
}

impl Registry {
    /// Stops `slug` for an admin (drained first; container and volume kept).
    pub fn stop_by_admin(self: &Arc<Self>, slug: &str) -> Result<(), RuntimeError> {
        let Some(entry) = self.get(slug) else {
            return Ok(());
        };
        match entry.phase() {
            Phase::Starting(_) => Err(busy()),
            Phase::Ready(_) | Phase::Paused(_) => {
                self.retire_in_background(entry, Retire::Admin);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Removes `slug`'s container (stopped first, drained when it runs),
    /// and with `purge` its volume too: the user's files are gone.
    pub async fn remove_workspace(self: &Arc<Self>, slug: &str, purge: bool) -> Result<Removed, RuntimeError> {
        let entry = self.entry(slug);
        let mut removed = Removed::default();
        match entry.phase() {
            Phase::Starting(_) | Phase::Retiring => return Err(busy()),
            Phase::Ready(_) | Phase::Paused(_) => {
                self.retire(&entry, Retire::Remove).await?;
                removed.container = entry.container_id().is_none();
            }
            _ => {}
        }
        // No start while the container (and the volume) go.
        let _busy = Busy::take(&entry).ok_or_else(busy)?;
        if let Some(info) = self.runtime.inspect(slug).await? {
            if info.state == ContainerState::Running {
                self.runtime.stop(&info.id, self.config.stop_timeout).await?;
            }
            self.runtime.remove(&info.id).await?;
            removed.container = true;
        }
        entry.set_container(None);
        self.set_phase(&entry, Phase::Stopped);
        self.update_running_gauge();
        if purge {
            removed.volume = self.runtime.remove_volume(slug).await?;
        }
        Ok(removed)
    }

    /// After `slug`'s profile choice changed: a workspace running another
    /// profile is stopped (drained) and started again, recreated on the
    /// same volume in the new one; `true` when that happens. A stopped one
    /// runs the new profile on its next start.
    pub async fn apply_profile(self: &Arc<Self>, caller: &Identity, slug: &str) -> Result<bool, RuntimeError> {
        let Some(entry) = self.get(slug) else {
            return Ok(false);
        };
        match entry.phase() {
            Phase::Ready(_) | Phase::Paused(_) => {
                let chosen = self.chosen_profile(&entry).await;
                if chosen.name == self.profile_of(&entry).name {
                    return Ok(false);
                }
                self.retire(&entry, Retire::Profile).await?;
                self.start(caller, slug).await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Every workspace roost knows of (its containers on the engine, and
    /// those it tried to start), with resource use for the running ones.
    pub async fn overview(&self) -> Result<Vec<Overview>, RuntimeError> {
        let containers = self.runtime.list().await?;
        let mut rows: Vec<(Overview, Option<String>)> = Vec::new();
        for info in &containers {
            let entry = self.get(&info.slug);
            let phase = entry.as_ref().map_or(
                if info.state == ContainerState::Running {
                    Phase::Starting(crate::workspace::runtime::Step::Queued)
                } else {
                    Phase::Stopped
                },
                |e| e.phase(),
            );
            let running = matches!(phase, Phase::Ready(_) | Phase::Paused(_) | Phase::Draining(_));
            let row = Overview {
                workspace: info.slug.to_string(),
                owner: info.owner.to_string(),
                state: state_of(phase),
                profile: self.profiles.resolve(info.profile.as_deref()).name.to_string(),
                uptime_secs: entry.as_ref().filter(|_| running).map(|e| self.ready_for(e).as_secs()),
                idle_secs: entry.as_ref().filter(|_| running).map(|e| self.idle_for(e).as_secs()),
                ..Overview::default()
            };
            rows.push((row, running.then(|| info.id.clone())));
        }
        // Known here but without a container (a failed first start).
        for entry in self.all() {
            if rows.iter().any(|(r, _)| *r.workspace == *entry.slug) {
                continue;
            }
            let Some(owner) = entry.owner() else { continue };
            rows.push((
                Overview {
                    workspace: entry.slug.to_string(),
                    owner: owner.to_string(),
                    state: state_of(entry.phase()),
                    profile: self.profile_of(&entry).name.to_string(),
                    ..Overview::default()
                },
                None,
            ));
        }
        let mut rows: Vec<Overview> = stream::iter(rows)
            .map(|(mut row, id)| async move {
                if let Some(id) = id {
                    if let Ok(stats) = self.runtime.stats(&id).await {
                        row.cpu_seconds = Some(stats.cpu_nanos as f64 / 1e9);
                        row.memory_bytes = Some(stats.memory_bytes);
                    }
                }
                row
            })
            .buffer_unordered(STATS_IN_FLIGHT)
            .collect()
            .await;
        if self.quota_enabled() {
            let slugs: Vec<Arc<str>> = rows.iter().map(|r| Arc::from(r.workspace.as_str())).collect();
            if let Ok(used) = self.store.usage(&slugs, self.period().0).await {
                for (row, used) in rows.iter_mut().zip(used) {
                    row.quota_workspace_hours = Some(used.run_secs / 3600.0);
                    row.quota_cpu_hours = Some(used.cpu_secs / 3600.0);
                }
            }
        }
        rows.sort_by(|a, b| a.workspace.cmp(&b.workspace));
        Ok(rows)
    }
}
