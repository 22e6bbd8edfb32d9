//! Workspaces: one container per user, created or woken on first use and
//! stopped when idle.
//!
//! - [`spec`]: names, labels, environment and config hash of a container.
//! - [`runtime`]: the [`runtime::Runtime`] trait the engine sits behind.
//! - [`docker`]: the Docker Engine implementation (bollard).
//! - [`swarm`]: the Docker Swarm implementation (a service per workspace).
//! - [`memory`]: an in-memory implementation for tests and benchmarks.
//! - [`profiles`]: the environments a workspace can run (`[workspace]` and `[[profiles]]`).
//! - [`registry`]: soft state, single-flight ensure, admission, retirement.
//! - [`events`]: following the engine's event stream, with reconciliation.
//! - [`reaper`]: idle culling (the paused tier, then the stop) and maximum lifetime.
//!
//! `/auth` asks the registry's [`registry::Registry::gate`] first, from
//! memory, and waits for `ensure_ready` only when that says [`Gate::Pending`].

pub mod docker;
pub mod events;
pub mod memory;
pub mod profiles;
pub mod reaper;
pub mod registry;
pub mod runtime;
pub mod spec;
pub mod status;
pub mod swarm;

use std::net::SocketAddr;

pub use runtime::RuntimeError;

use crate::config::{Config, RuntimeChoice};

/// The runtime `workspace.runtime` names, on the engine at `DOCKER_HOST`,
/// managing only this deployment's workspaces.
pub fn runtime_for(config: &Config) -> std::sync::Arc<dyn runtime::Runtime> {
    let docker = docker::DockerRuntime::from_env()
        .scoped(&config.workspace.labels)
        .for_deployment(&config.deployment.id, &config.oidc.issuer);
    match &config.runtime {
        RuntimeChoice::Docker => std::sync::Arc::new(docker),
        RuntimeChoice::Swarm(swarm) => std::sync::Arc::new(swarm::SwarmRuntime::new(docker, swarm)),
    }
}

/// The hot-path answer about a workspace ([`registry::Registry::gate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Ready at this address, and the caller may use it.
    Ready(SocketAddr),
    /// Ready, but it belongs to someone else (by its owner label).
    Forbidden,
    /// Not known to be ready: take the slow path.
    Pending,
}
