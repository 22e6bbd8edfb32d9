//! Workspaces: one container per user, created or woken on first use and
//! stopped when idle.
//!
//! - [`spec`]: names, labels, environment and config hash of a container.
//! - [`runtime`]: the [`runtime::Runtime`] trait the engine sits behind.
//! - [`docker`]: the Docker Engine implementation (bollard).
//! - [`memory`]: an in-memory implementation for tests and benchmarks.
//! - [`registry`]: soft state, single-flight ensure, admission, retirement.
//! - [`events`]: following the engine's event stream, with reconciliation.
//! - [`reaper`]: idle culling and maximum lifetime.
//!
//! `/auth` sees workspaces through the [`ReadinessGate`] defined here.

pub mod docker;
pub mod events;
pub mod memory;
pub mod reaper;
pub mod registry;
pub mod runtime;
pub mod spec;
pub mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

pub use runtime::RuntimeError;

use crate::auth::Identity;
use registry::Registry;

/// The hot-path answer about a workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Ready (at this address, when a runtime knows it), and the caller may use it.
    Ready(Option<SocketAddr>),
    /// Ready, but it belongs to someone else (by its owner label).
    Forbidden,
    /// Not known to be ready: take the slow path.
    Pending,
}

/// Decides "2xx only when the workspace is ready".
pub trait ReadinessGate: Send + Sync + 'static {
    /// The hot path, answered from memory; records activity when ready.
    fn check(&self, caller: &Identity, workspace: &str) -> Gate;

    /// The slow path: start or wake `workspace` for `caller` and wait for it
    /// at most `wait` (then `RuntimeError::NotReady`; the start goes on).
    fn ensure_ready<'a>(
        &'a self,
        caller: &'a Identity,
        workspace: &'a str,
        wait: Duration,
    ) -> BoxFuture<'a, Result<SocketAddr, RuntimeError>>;

    /// How long `/auth` waits for a starting workspace.
    fn auth_wait(&self) -> Duration;
}

impl ReadinessGate for Arc<Registry> {
    fn check(&self, caller: &Identity, workspace: &str) -> Gate {
        let Some(entry) = self.get(workspace) else {
            return Gate::Pending;
        };
        let Some(addr) = entry.phase().address() else {
            return Gate::Pending;
        };
        match entry.owner().as_deref() {
            Some(owner) if caller.may_use(owner) => {
                self.touch(&entry);
                Gate::Ready(Some(addr))
            }
            Some(_) => Gate::Forbidden,
            None => Gate::Pending,
        }
    }

    fn ensure_ready<'a>(
        &'a self,
        caller: &'a Identity,
        workspace: &'a str,
        wait: Duration,
    ) -> BoxFuture<'a, Result<SocketAddr, RuntimeError>> {
        Box::pin(Registry::ensure_ready(self, caller, workspace, wait))
    }

    fn auth_wait(&self) -> Duration {
        self.config().auth_wait
    }
}
