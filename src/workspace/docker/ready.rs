//! Readiness: a started container is ready when its HEALTHCHECK says
//! healthy or, without one, when its port answers HTTP; one that exits
//! meanwhile fails at once, with its exit code and last log lines.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bollard::models::{ContainerStateStatusEnum, HealthStatusEnum};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::super::runtime::{Runtime, RuntimeError};
use super::super::spec::WorkspaceSpec;
use super::{address, label, DockerRuntime};
use crate::workspace::spec::LABEL_CREATED;

/// Readiness polling: start fast, and never overshoot readiness by more than
/// a few tens of milliseconds.
const PROBE_BACKOFF_START: Duration = Duration::from_millis(2);
const PROBE_BACKOFF_MAX: Duration = Duration::from_millis(50);
/// Log lines kept from a container that died during start.
const FAILURE_LOG_LINES: usize = 20;

impl DockerRuntime {
    /// Waits until the container serves: its HEALTHCHECK says healthy, or
    /// (without one) its port answers HTTP. Fails fast when it exits.
    pub(super) async fn wait_ready(&self, id: &str, spec: &WorkspaceSpec) -> Result<(SocketAddr, u64), RuntimeError> {
        let timeout = spec.config.start_timeout;
        let deadline = Instant::now() + timeout;
        let mut backoff = PROBE_BACKOFF_START;
        loop {
            let c = self.inspect_raw(id).await?.ok_or(RuntimeError::NoSuchWorkspace)?;
            let state = c.state.clone().unwrap_or_default();
            match state.status {
                Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD) => {
                    let logs = self.logs(id, FAILURE_LOG_LINES).await.unwrap_or_default();
                    return Err(RuntimeError::Exited {
                        code: state.exit_code.unwrap_or(-1),
                        logs,
                    });
                }
                Some(ContainerStateStatusEnum::RUNNING) => {
                    if let Some(addr) = address(&c, spec) {
                        let ready = match state.health.and_then(|h| h.status) {
                            Some(HealthStatusEnum::HEALTHY) => true,
                            Some(HealthStatusEnum::STARTING | HealthStatusEnum::UNHEALTHY) => false,
                            _ => http_answers(addr).await,
                        };
                        if ready {
                            return Ok((addr, created_label(&c).unwrap_or(0)));
                        }
                    }
                }
                _ => {}
            }
            if Instant::now() + backoff > deadline {
                return Err(RuntimeError::StartTimeout(timeout));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(PROBE_BACKOFF_MAX);
        }
    }
}

/// True when something at `addr` answers an HTTP request (any status).
pub(in crate::workspace) async fn http_answers(addr: SocketAddr) -> bool {
    let probe = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: workspace\r\nUser-Agent: roost-probe\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut head = [0u8; 5];
        tcp.read_exact(&mut head).await.ok()?;
        (&head == b"HTTP/").then_some(())
    };
    tokio::time::timeout(Duration::from_millis(500), probe)
        .await
        .ok()
        .flatten()
        .is_some()
}

/// Unix seconds, from roost's `roost.created` label.
fn created_label(c: &bollard::models::ContainerInspectResponse) -> Option<u64> {
    label(c, LABEL_CREATED)?.parse().ok()
}
