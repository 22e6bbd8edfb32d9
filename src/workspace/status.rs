//! What a user's status page and API show and do: a workspace's state, how
//! long it has run and when it idles out, its resource use and last log
//! lines; and start, stop, restart on its user's request.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::registry::quota::QuotaView;
use super::registry::{state_of, Phase, Registry, Retire};
use super::RuntimeError;
use crate::auth::Identity;

/// Lines of log a status shows.
pub const LOG_LINES: usize = 20;

/// One workspace, as its user sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub workspace: String,
    /// `stopped`, `starting`, `running`, `draining`, `stopping` or `failed`.
    pub state: &'static str,
    /// What a start is doing, or why the last one failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'static str>,
    /// The state in plain words, for people.
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running_for_secs: Option<u64>,
    /// Seconds until it stops for lack of use, if nothing happens meanwhile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_stop_in_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    pub memory_limit_bytes: u64,
    pub idle_timeout_secs: u64,
    /// The profile chosen for it (what its next start runs).
    pub profile: String,
    /// Its use in the current quota period (with quotas on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<QuotaView>,
}

impl Registry {
    /// Whose `slug` is: the owner roost knows, else the container's label
    /// (`None`: no container, so nobody's yet).
    pub async fn owner_of(&self, slug: &str) -> Result<Option<Arc<String>>, RuntimeError> {
        if let Some(owner) = self.get(slug).and_then(|e| e.owner()) {
            return Ok(Some(owner));
        }
        Ok(self
            .runtime()
            .inspect(slug)
            .await?
            .map(|info| Arc::new(info.owner.to_string())))
    }

    /// The ownership rule ([`Identity::may_use`]) for `caller` and `slug`,
    /// on every path that shows or acts on a workspace.
    pub async fn authorize(&self, caller: &Identity, slug: &str) -> Result<(), RuntimeError> {
        match self.owner_of(slug).await? {
            Some(owner) if !caller.may_use(&owner) => Err(RuntimeError::NotOwner),
            _ => Ok(()),
        }
    }

    /// The workspace's status, for `caller` (its owner or an admin);
    /// resource use only while it runs.
    pub async fn status(&self, caller: &Identity, slug: &str) -> Result<Status, RuntimeError> {
        self.authorize(caller, slug).await?;
        let mut status = self.status_unchecked(slug).await;
        status.quota = self.quota_view(slug, self.quota_exempt(caller)).await;
        Ok(status)
    }

    async fn status_unchecked(&self, slug: &str) -> Status {
        let entry = self.get(slug);
        let phase = entry.as_ref().map_or(Phase::Stopped, |e| e.phase());
        let state = state_of(phase);
        let detail = match phase {
            Phase::Starting(step) => Some(step.as_str()),
            Phase::Failed(reason) => Some(reason.as_str()),
            _ => None,
        };
        let chosen = match &entry {
            Some(e) => self.chosen_profile(e).await,
            None => match self.store().profile(slug).await {
                Ok(name) => self.profiles().resolve(name.as_deref()).clone(),
                Err(_) => self.profiles().default_choice().clone(),
            },
        };
        // What runs now: the container's profile while it runs.
        let config = match &entry {
            Some(e) if matches!(state, "running" | "paused" | "draining") => self.profile_of(e).config.clone(),
            _ => chosen.config.clone(),
        };
        let message = match phase {
            Phase::Stopped => "Stopped: it starts when you open it".to_string(),
            Phase::Starting(step) => format!("Starting: {}…", step.explain()),
            Phase::Ready(_) => "Running".to_string(),
            Phase::Paused(_) => "Paused while idle: it resumes at once when you open it".to_string(),
            Phase::Draining(_) => "Stopping… (finishing the requests in flight)".to_string(),
            Phase::Retiring => "Stopping…".to_string(),
            Phase::Failed(reason) => format!("Could not start: {}", reason.explain()),
        };
        let mut status = Status {
            workspace: slug.to_string(),
            message,
            state,
            detail,
            running_for_secs: None,
            idle_stop_in_secs: None,
            cpu_seconds: None,
            memory_bytes: None,
            memory_limit_bytes: config.memory,
            idle_timeout_secs: config.idle_timeout.as_secs(),
            profile: chosen.name.to_string(),
            quota: None,
        };
        let Some(entry) = entry.filter(|_| matches!(state, "running" | "paused" | "draining")) else {
            return status;
        };
        status.running_for_secs = Some(self.ready_for(&entry).as_secs());
        if matches!(state, "running" | "paused") {
            // While it drains it is stopping already: no countdown.
            let idle_stop_in = config.idle_timeout.saturating_sub(self.idle_for(&entry));
            status.idle_stop_in_secs = Some(idle_stop_in.as_secs());
        }
        if let Some(id) = entry.container_id() {
            if let Ok(stats) = self.runtime().stats(&id).await {
                status.cpu_seconds = Some(stats.cpu_nanos as f64 / 1e9);
                status.memory_bytes = Some(stats.memory_bytes);
            }
        }
        status
    }

    /// The workspace's last log lines, for `caller` (none when it has no
    /// container).
    pub async fn recent_logs(&self, caller: &Identity, slug: &str) -> Result<Vec<String>, RuntimeError> {
        self.authorize(caller, slug).await?;
        let id = match self.get(slug).and_then(|e| e.container_id()) {
            Some(id) => id,
            None => match self.runtime().inspect(slug).await? {
                Some(info) => info.id,
                None => return Ok(Vec::new()),
            },
        };
        self.runtime().logs(&id, LOG_LINES).await
    }

    /// Stops the workspace: its route is withdrawn at once, the drain and the
    /// stop go on in the background (the status page shows "Stopping…");
    /// the container and volume are kept.
    pub async fn stop(self: &Arc<Self>, caller: &Identity, slug: &str) -> Result<(), RuntimeError> {
        self.authorize(caller, slug).await?;
        let Some(entry) = self.get(slug) else {
            return Ok(()); // not running here: nothing to stop
        };
        match entry.phase() {
            Phase::Starting(_) => Err(RuntimeError::Busy {
                retry_after: Duration::from_secs(2),
            }),
            Phase::Ready(_) | Phase::Paused(_) => {
                self.retire_in_background(entry, Retire::Requested);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Stops the workspace (drained first), then starts it again (without
    /// waiting for the start).
    pub async fn restart(self: &Arc<Self>, caller: &Identity, slug: &str) -> Result<(), RuntimeError> {
        self.authorize(caller, slug).await?;
        if let Some(entry) = self.get(slug) {
            match entry.phase() {
                Phase::Starting(_) => {
                    return Err(RuntimeError::Busy {
                        retry_after: Duration::from_secs(2),
                    })
                }
                Phase::Ready(_) | Phase::Paused(_) => self.retire(&entry, Retire::Requested).await?,
                _ => {}
            }
        }
        self.start(caller, slug).await
    }
}
