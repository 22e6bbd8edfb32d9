//! Workspaces as `/auth` sees them: the [`ReadinessGate`] that says whether
//! a user's workspace is ready, and starts it when not. The container
//! runtime plugs in here; until then [`AlwaysReady`] answers yes.

use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::auth::Identity;

/// Why a workspace could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("workspace not ready within the wait bound")]
    NotReady { retry_after: Duration },
    #[error("too many workspaces starting or running")]
    AtCapacity { retry_after: Duration },
}

/// Decides "2xx only when the workspace is ready".
pub trait ReadinessGate: Send + Sync + 'static {
    /// The hot path: answered from memory.
    fn is_ready(&self, workspace: &str) -> bool;

    /// The slow path: start or wake `workspace` for `caller` and wait,
    /// bounded below Traefik's forwardAuth timeout.
    fn ensure_ready<'a>(&'a self, caller: &'a Identity, workspace: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>>;
}

/// The gate before a container runtime exists: every workspace is ready.
pub struct AlwaysReady;

impl ReadinessGate for AlwaysReady {
    fn is_ready(&self, _workspace: &str) -> bool {
        true
    }

    fn ensure_ready<'a>(
        &'a self,
        _caller: &'a Identity,
        _workspace: &'a str,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async { Ok(()) })
    }
}
