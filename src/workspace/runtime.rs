//! The container runtime as the rest of roost sees it: a small trait
//! (ensure, stop, remove, inspect, list, logs, stats, events) so a
//! Kubernetes runtime can come later without touching callers. The Docker
//! Engine implementation is `docker::DockerRuntime`; `memory::MemoryRuntime`
//! stands in for it in tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;

use super::spec::WorkspaceSpec;

/// Why a runtime operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("container engine unreachable or failing: {0}")]
    Engine(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("image {0:?} is not present on the engine")]
    ImageMissing(String),
    #[error("workspace exited during start with code {code}; last log lines: {logs:?}")]
    Exited { code: i64, logs: Vec<String> },
    #[error("workspace not ready within {0:?}")]
    StartTimeout(Duration),
    #[error("workspace not ready yet")]
    NotReady { retry_after: Duration },
    /// A start or a stop is under way: what was asked conflicts with it
    /// (409 + `Retry-After`), where [`RuntimeError::NotReady`] is a wait.
    #[error("workspace busy starting or stopping")]
    Busy { retry_after: Duration },
    #[error("too many workspaces {0}")]
    AtCapacity(&'static str, Duration),
    #[error("no such workspace")]
    NoSuchWorkspace,
    #[error("a container named {0:?} exists but is not this roost's")]
    NameTaken(String),
    #[error("the workspace belongs to someone else")]
    NotOwner,
    #[error("workspace failed to start ({0})")]
    StartFailed(FailReason),
    #[error("roost is shutting down")]
    ShuttingDown,
    /// `workspace.network` exists but would not keep workspaces apart (or
    /// could not be made); permanent until the operator fixes it.
    #[error("{0}")]
    UnsafeNetwork(String),
    /// The owner's quota for this period is used up.
    #[error("quota used up until {resets_at}")]
    QuotaUsed {
        /// Seconds since the epoch.
        resets_at: u64,
        retry_after: Duration,
    },
}

impl RuntimeError {
    /// Why a start failed, as a type (what a workspace's phase keeps).
    pub fn fail_reason(&self) -> FailReason {
        match self {
            RuntimeError::Engine(_) => FailReason::Engine,
            RuntimeError::ImageMissing(_) => FailReason::ImageMissing,
            RuntimeError::Exited { .. } => FailReason::Exited,
            RuntimeError::StartTimeout(_) => FailReason::StartTimeout,
            RuntimeError::NotReady { .. } | RuntimeError::Busy { .. } => FailReason::NotReady,
            RuntimeError::AtCapacity(..) => FailReason::Capacity,
            RuntimeError::NoSuchWorkspace => FailReason::NoSuchWorkspace,
            RuntimeError::NameTaken(_) => FailReason::NameTaken,
            RuntimeError::NotOwner => FailReason::NotOwner,
            RuntimeError::StartFailed(reason) => *reason,
            RuntimeError::QuotaUsed { .. } => FailReason::Quota,
            RuntimeError::ShuttingDown => FailReason::ShuttingDown,
            RuntimeError::UnsafeNetwork(_) => FailReason::UnsafeNetwork,
        }
    }

    /// A stable label for metrics.
    pub fn reason(&self) -> &'static str {
        self.fail_reason().as_str()
    }

    /// Whether only someone changing something (the operator's config, the
    /// engine's images) can mend it: retrying soon cannot help.
    pub fn is_permanent(&self) -> bool {
        self.fail_reason().is_permanent()
    }

    /// Whether the workspace is someone else's.
    pub fn is_not_owner(&self) -> bool {
        self.fail_reason() == FailReason::NotOwner
    }
}

/// Why a workspace's last start failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    Engine,
    ImageMissing,
    Exited,
    StartTimeout,
    NotReady,
    Capacity,
    NoSuchWorkspace,
    NameTaken,
    NotOwner,
    ShuttingDown,
    UnsafeNetwork,
    Quota,
}

impl FailReason {
    /// A stable label (metrics, logs, the status API's `detail`).
    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::Engine => "engine",
            FailReason::ImageMissing => "image_missing",
            FailReason::Exited => "exited",
            FailReason::StartTimeout => "start_timeout",
            FailReason::NotReady => "not_ready",
            FailReason::Capacity => "capacity",
            FailReason::NoSuchWorkspace => "no_such_workspace",
            FailReason::NameTaken => "name_taken",
            FailReason::NotOwner => "not_owner",
            FailReason::ShuttingDown => "shutting_down",
            FailReason::UnsafeNetwork => "unsafe_network",
            FailReason::Quota => "quota",
        }
    }

    /// What happened, in plain words for the person whose workspace it is
    /// (pages, the API); nothing of the engine's details.
    pub fn explain(self) -> &'static str {
        match self {
            FailReason::Engine => "the container engine is not answering",
            FailReason::ImageMissing => "the workspace image is missing on the server; please tell your operator",
            FailReason::Exited => "your workspace's app stopped right after it started",
            FailReason::StartTimeout => "your workspace did not answer in time",
            FailReason::NotReady => "your workspace is starting",
            FailReason::Capacity => "no capacity for your workspace right now",
            FailReason::NoSuchWorkspace => "no such workspace",
            FailReason::NameTaken | FailReason::UnsafeNetwork => {
                "your workspace cannot be created: roost's configuration needs fixing; please tell your operator"
            }
            FailReason::NotOwner => "this workspace belongs to another account",
            FailReason::ShuttingDown => "roost is restarting",
            FailReason::Quota => "your quota for this period is used up",
        }
    }

    /// How long a failure stands before a request may start another
    /// attempt: no storm of doomed starts, and a truthful `Retry-After`.
    pub fn backoff(self) -> Duration {
        match self {
            // The caller's fault (another's volume), not the workspace's: it
            // must never stand in the way of the rightful owner's next request.
            FailReason::NotOwner => Duration::ZERO,
            _ if self.is_permanent() => Duration::from_secs(30),
            // What a refusal for capacity tells the client (`Retry-After: 2`).
            FailReason::Capacity => Duration::from_secs(2),
            _ => Duration::from_secs(5),
        }
    }

    /// Failures no retry can mend without someone changing something.
    pub fn is_permanent(self) -> bool {
        matches!(
            self,
            FailReason::NameTaken | FailReason::UnsafeNetwork | FailReason::ImageMissing
        )
    }
}

impl std::fmt::Display for FailReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a start is doing (the starting page shows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Waiting for a spawn slot (`max_concurrent_spawns`).
    Queued,
    Creating,
    /// Removing a stale container and making it anew (volume kept).
    Recreating,
    Starting,
    /// Started; waiting until it answers.
    WaitingReady,
}

impl Step {
    /// What it is doing, in plain words (the starting page shows it).
    pub fn explain(self) -> &'static str {
        match self {
            Step::Queued => "waiting for a free slot",
            Step::Creating => "creating your container",
            Step::Recreating => "updating your container",
            Step::Starting => "starting your container",
            Step::WaitingReady => "waiting for your app to answer",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Queued => "queued",
            Step::Creating => "creating",
            Step::Recreating => "recreating",
            Step::Starting => "starting",
            Step::WaitingReady => "waiting for the workspace to answer",
        }
    }
}

/// What ensure had to do to make a workspace ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// It was running and ready already.
    Ready,
    /// A stopped container was started.
    Started,
    Created,
    /// A stale or misplaced container was replaced (volume kept).
    Recreated,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Ready => "ready",
            Action::Started => "started",
            Action::Created => "created",
            Action::Recreated => "recreated",
        }
    }
}

/// A container's lifecycle state, as the engine reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    Created,
    Running,
    /// Frozen by the cgroup freezer: memory kept, no CPU, not answering.
    Paused,
    /// Exited, dead, restarting, removing: not serving.
    Stopped,
}

/// One of roost's containers, as found on the engine.
#[derive(Debug, Clone)]
pub struct ContainerInfo {
    pub id: String,
    pub slug: Arc<str>,
    pub owner: Arc<str>,
    pub state: ContainerState,
    /// The profile it runs, by its label (`None`: the default).
    pub profile: Option<Arc<str>>,
}

/// A running, ready workspace.
#[derive(Debug, Clone)]
pub struct Running {
    pub id: String,
    pub addr: SocketAddr,
    pub created: u64,
    /// What ensure had to do.
    pub action: Action,
}

/// Resource use, from the engine's one-shot stats.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    /// Bytes received on all the container's interfaces. Neighbours'
    /// broadcasts and multicasts (ARP, IPv6 router solicitations) land here
    /// too, so it is no sign of use (see `reaper::own_traffic`).
    pub rx_bytes: u64,
    /// Bytes the container sent on all its interfaces.
    pub tx_bytes: u64,
    /// Frames the container sent on all its interfaces.
    pub tx_packets: u64,
    pub memory_bytes: u64,
    /// Total CPU time used, nanoseconds.
    pub cpu_nanos: u64,
}

/// A lifecycle change the engine announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeEvent {
    Started {
        slug: String,
    },
    Stopped {
        slug: String,
    },
    Destroyed {
        slug: String,
    },
    /// Frozen (by any replica, or an operator).
    Paused {
        slug: String,
    },
    Unpaused {
        slug: String,
    },
}

/// Bytes streamed to or from the engine.
pub type ByteStream = BoxStream<'static, Result<bytes::Bytes, std::io::Error>>;

pub type EventStream = BoxStream<'static, Result<RuntimeEvent, RuntimeError>>;

/// What ensure reports while it works, for progress displays.
pub type Progress<'a> = &'a (dyn Fn(Step) + Send + Sync);

pub trait Runtime: Send + Sync + 'static {
    /// Finds the workspace's container by name and labels; running and
    /// ready: returns it; stopped: starts it (recreated first when its config
    /// hash is stale, keeping the volume); missing: creates and starts it.
    /// Then waits until it is ready, at most `workspace.start_timeout`.
    fn ensure<'a>(
        &'a self,
        spec: &'a WorkspaceSpec,
        progress: Progress<'a>,
    ) -> BoxFuture<'a, Result<Running, RuntimeError>>;
    /// Stops a container (volume kept), giving its processes `grace` to exit.
    fn stop<'a>(&'a self, id: &'a str, grace: Duration) -> BoxFuture<'a, Result<(), RuntimeError>>;
    /// Freezes a running container (the cgroup freezer: its memory stays,
    /// it uses no CPU); its network stack still takes connections.
    fn pause<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>>;
    /// Thaws a paused container; nothing to do when it is not paused.
    fn unpause<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>>;
    /// Removes a container (volume kept).
    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>>;
    /// Removes workspace `slug`'s volume (its container must be gone):
    /// only a volume labelled as this deployment's and this workspace's;
    /// `false` when there is none.
    fn remove_volume<'a>(&'a self, slug: &'a str) -> BoxFuture<'a, Result<bool, RuntimeError>>;
    /// The files of workspace `slug`'s volume as a tar archive (entries
    /// under the last part of its mount path), read through its container,
    /// which must exist and be stopped (the engine's archive API: no
    /// helper image).
    fn export_volume<'a>(&'a self, slug: &'a str) -> BoxFuture<'a, Result<ByteStream, RuntimeError>>;
    /// Unpacks `tar` (as [`Runtime::export_volume`] made it) into the
    /// volume, through its stopped container; modes and owners kept.
    fn import_volume<'a>(&'a self, slug: &'a str, tar: ByteStream) -> BoxFuture<'a, Result<(), RuntimeError>>;
    /// One workspace's container, if it exists.
    fn inspect<'a>(&'a self, slug: &'a str) -> BoxFuture<'a, Result<Option<ContainerInfo>, RuntimeError>>;
    /// Every container roost manages.
    fn list(&self) -> BoxFuture<'_, Result<Vec<ContainerInfo>, RuntimeError>>;
    /// The last `tail` log lines.
    fn logs<'a>(&'a self, id: &'a str, tail: usize) -> BoxFuture<'a, Result<Vec<String>, RuntimeError>>;
    /// Current resource use.
    fn stats<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Stats, RuntimeError>>;
    /// Subscribes to lifecycle events of roost's containers; the stream ends
    /// or errs when the engine connection is lost (the caller reconnects and
    /// reconciles).
    fn events(&self) -> BoxFuture<'_, Result<EventStream, RuntimeError>>;
}

#[cfg(test)]
mod tests;
