//! Workspaces: one container per user, created or woken on first use and
//! stopped when idle.
//!
//! - [`spec`]: names, labels, environment and config hash of a container.
//! - [`runtime`]: the [`runtime::Runtime`] trait the engine sits behind.
//! - [`docker`]: the Docker Engine implementation (bollard).
//! - [`registry`]: soft state, single-flight ensure, admission, retirement.
//! - [`events`]: following the engine's event stream, with reconciliation.
//! - [`reaper`]: idle culling and maximum lifetime.
//!
//! `/auth` sees workspaces through the [`ReadinessGate`] defined here.

pub mod docker;
pub mod events;
pub mod reaper;
pub mod registry;
pub mod runtime;
pub mod spec;
pub mod status;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::future::BoxFuture;

pub use runtime::RuntimeError;

use crate::auth::Identity;

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

    /// Where a ready workspace answers.
    fn address(&self, workspace: &str) -> Option<SocketAddr>;

    /// How long `/auth` waits for a starting workspace.
    fn auth_wait(&self) -> Duration;
}

/// A gate for roost without a container runtime (tests of the auth layer,
/// benchmarks): every workspace is ready.
pub struct AlwaysReady;

impl ReadinessGate for AlwaysReady {
    fn check(&self, _caller: &Identity, _workspace: &str) -> Gate {
        Gate::Ready(None)
    }

    fn ensure_ready<'a>(
        &'a self,
        _caller: &'a Identity,
        _workspace: &'a str,
        _wait: Duration,
    ) -> BoxFuture<'a, Result<SocketAddr, RuntimeError>> {
        Box::pin(async { Err(RuntimeError::NoSuchWorkspace) })
    }

    fn address(&self, _workspace: &str) -> Option<SocketAddr> {
        None
    }

    fn auth_wait(&self) -> Duration {
        Duration::ZERO
    }
}
