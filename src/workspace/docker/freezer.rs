//! Pausing and thawing workspace containers (the paused tier): the cgroup
//! freezer keeps a container's memory and takes its CPU away; its network
//! stack still accepts connections, which wait until it is thawed.

use super::{engine, status_of, DockerRuntime};
use crate::workspace::runtime::RuntimeError;

impl DockerRuntime {
    /// Freezes `id`; one that is not running is an error (nothing to keep).
    pub(super) async fn pause_inner(&self, id: &str) -> Result<(), RuntimeError> {
        let docker = self.client().await?;
        match docker.pause_container(id).await {
            Ok(()) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Err(RuntimeError::NoSuchWorkspace),
            Err(e) => Err(engine(e)),
        }
    }

    /// Thaws `id`. The engine answers 409 (or 500 on older engines) for a
    /// container that is not paused: a replica or an operator thawed it
    /// first, which is what was wanted, so that is checked and taken as done.
    pub(super) async fn unpause_inner(&self, id: &str) -> Result<(), RuntimeError> {
        let docker = self.client().await?;
        match docker.unpause_container(id).await {
            Ok(()) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Err(RuntimeError::NoSuchWorkspace),
            Err(e) => match self.inspect_raw(id).await? {
                Some(c) if !is_paused(&c) => Ok(()),
                _ => Err(engine(e)),
            },
        }
    }
}

/// Whether the engine reports `c` as frozen.
pub(super) fn is_paused(c: &bollard::models::ContainerInspectResponse) -> bool {
    c.state.as_ref().and_then(|s| s.paused).unwrap_or(false)
}
