//! A service's tasks: listing them, waiting until one is ready (running,
//! healthy, answering at its own address on the workspace's network) or
//! until none is live, and why one ended.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bollard::models::{HealthStatusEnum, Task, TaskState};
use bollard::query_parameters::{InspectContainerOptions, InspectNetworkOptions, ListTasksOptions};

use super::super::docker::{engine, http_answers, status_of};
use super::super::runtime::{Runtime, RuntimeError};
use super::super::spec::WorkspaceSpec;
use super::{created_label, SwarmRuntime};

/// Readiness polling (tasks take a few hundred milliseconds to schedule).
const POLL_START: Duration = Duration::from_millis(20);
const POLL_MAX: Duration = Duration::from_millis(200);
const FAILURE_LOG_LINES: usize = 20;

impl SwarmRuntime {
    /// The service's tasks, the one it wants running first ([`newest_first`]).
    pub(super) async fn tasks(&self, service: &str) -> Result<Vec<Task>, RuntimeError> {
        let docker = self.docker.client().await?;
        let options = ListTasksOptions {
            filters: Some(HashMap::from([("service".into(), vec![service.to_string()])])),
        };
        let mut tasks = match docker.list_tasks(Some(options)).await {
            Ok(tasks) => tasks,
            // The service is gone, and its tasks with it.
            Err(e) if status_of(&e) == Some(404) => return Ok(Vec::new()),
            Err(e) => return Err(engine(e)),
        };
        newest_first(&mut tasks);
        Ok(tasks)
    }

    /// Waits until no task of service `id` runs (or exists).
    pub(super) async fn wait_ended(&self, id: &str, limit: Duration) -> Result<(), RuntimeError> {
        let deadline = Instant::now() + limit;
        let mut backoff = POLL_START;
        loop {
            let tasks = self.tasks(id).await?;
            if !tasks.iter().any(|t| is_live(task_state(t))) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(RuntimeError::Engine(
                    format!("service {id} did not stop in time").into(),
                ));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(POLL_MAX);
        }
    }

    /// Waits until the service's task runs, is healthy and answers at the
    /// service's address on `network`; fails fast when the task ends.
    /// Tasks named in `earlier` (there before this start, ending or ended)
    /// are not this start's: until the new one is listed, nothing is.
    pub(super) async fn wait_ready(
        &self,
        id: &str,
        spec: &WorkspaceSpec,
        network: &str,
        earlier: &[String],
    ) -> Result<(SocketAddr, u64), RuntimeError> {
        let timeout = spec.config.start_timeout;
        let deadline = Instant::now() + timeout;
        let mut backoff = POLL_START;
        loop {
            let s = self.service(id).await?.ok_or(RuntimeError::NoSuchWorkspace)?;
            let tasks = self.tasks(id).await?;
            let ours = tasks
                .iter()
                .find(|t| t.id.as_ref().is_none_or(|task| !earlier.contains(task)));
            if let Some(task) = ours {
                match task_state(task) {
                    TaskState::FAILED | TaskState::REJECTED | TaskState::COMPLETE | TaskState::SHUTDOWN => {
                        return Err(self.ended(id, task).await);
                    }
                    TaskState::RUNNING => {
                        let name = spec.container_name();
                        let addr = self.task_address(network, &name, task, spec.config.port).await?;
                        if let Some(addr) = addr {
                            if self.healthy(task).await? && http_answers(addr).await {
                                return Ok((addr, created_label(&s).unwrap_or(0)));
                            }
                        }
                    }
                    _ => {}
                }
            }
            if Instant::now() + backoff > deadline {
                return Err(RuntimeError::StartTimeout(timeout));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(POLL_MAX);
        }
    }

    /// Where `task` of `service` answers on `network` (an id): its own
    /// address there, from the swarm's view of the network (any node).
    async fn task_address(
        &self,
        network: &str,
        service: &str,
        task: &Task,
        port: u16,
    ) -> Result<Option<SocketAddr>, RuntimeError> {
        let Some(task_id) = task.id.as_deref() else {
            return Ok(None);
        };
        let docker = self.docker.client().await?;
        let options = InspectNetworkOptions {
            verbose: true,
            scope: Some("swarm".into()),
        };
        let n = match docker.inspect_network(network, Some(options)).await {
            Ok(n) => n,
            Err(e) if status_of(&e) == Some(404) => return Err(RuntimeError::NoSuchWorkspace),
            Err(e) => return Err(engine(e)),
        };
        let services = n.services.unwrap_or_default();
        Ok(task_ip(&services, service, task_id).map(|ip| SocketAddr::new(ip, port)))
    }

    /// Why a task ended during a start: its exit code and last log lines.
    async fn ended(&self, id: &str, task: &Task) -> RuntimeError {
        let status = task.status.clone().unwrap_or_default();
        if let Some(err) = &status.err {
            tracing::warn!(service = %id, error = %err, "workspace task failed");
        }
        let logs = self.logs(id, FAILURE_LOG_LINES).await.unwrap_or_default();
        RuntimeError::Exited {
            code: status.container_status.and_then(|c| c.exit_code).unwrap_or(-1),
            logs,
        }
    }

    /// Whether the task's container says healthy (or has no HEALTHCHECK);
    /// a task on another node counts as healthy: the probe decides.
    async fn healthy(&self, task: &Task) -> Result<bool, RuntimeError> {
        let Some(container) = task
            .status
            .as_ref()
            .and_then(|s| s.container_status.as_ref())
            .and_then(|c| c.container_id.clone())
        else {
            return Ok(false);
        };
        let docker = self.docker.client().await?;
        let c = match docker
            .inspect_container(&container, None::<InspectContainerOptions>)
            .await
        {
            Ok(c) => c,
            Err(e) if status_of(&e) == Some(404) => return Ok(true),
            Err(e) => return Err(engine(e)),
        };
        Ok(!matches!(
            c.state.and_then(|s| s.health).and_then(|h| h.status),
            Some(HealthStatusEnum::STARTING | HealthStatusEnum::UNHEALTHY)
        ))
    }
}

pub(super) fn task_state(t: &Task) -> TaskState {
    t.status.as_ref().and_then(|s| s.state).unwrap_or(TaskState::NEW)
}

/// A task that has not ended (it may still become or be running).
fn is_live(state: TaskState) -> bool {
    !matches!(
        state,
        TaskState::COMPLETE
            | TaskState::SHUTDOWN
            | TaskState::FAILED
            | TaskState::REJECTED
            | TaskState::REMOVE
            | TaskState::ORPHANED
    )
}

/// The address of task `task_id` of service `service` in a verbose
/// network inspection's `Services` (tasks on every node, by name
/// `<service>.<slot>.<task id>`).
fn task_ip(services: &HashMap<String, serde_json::Value>, service: &str, task_id: &str) -> Option<std::net::IpAddr> {
    let tasks = services.get(service)?.get("Tasks")?.as_array()?;
    let task = tasks.iter().find(|t| {
        t.get("Name")
            .and_then(|n| n.as_str())
            .is_some_and(|n| n.ends_with(task_id))
    })?;
    task.get("EndpointIP")?.as_str()?.parse().ok()
}

/// Orders tasks the service wants running first, each group newest (by
/// version) first. A task scaled away (desired state shutdown) keeps
/// changing as it winds down, so its version can pass that of the task
/// just made to replace it: by version alone, a wake read the old task's
/// end as the new one's.
fn newest_first(tasks: &mut [Task]) {
    tasks.sort_by_key(|t| {
        std::cmp::Reverse((
            t.desired_state == Some(TaskState::RUNNING),
            t.version.as_ref().and_then(|v| v.index).unwrap_or(0),
        ))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_task_wanted_running_comes_before_one_winding_down() {
        let task = |id: &str, desired: TaskState, index: u64| Task {
            id: Some(id.into()),
            desired_state: Some(desired),
            version: Some(bollard::models::ObjectVersion { index: Some(index) }),
            ..Default::default()
        };
        let mut tasks = vec![
            task("old", TaskState::SHUTDOWN, 40),
            task("new", TaskState::RUNNING, 38),
            task("older", TaskState::SHUTDOWN, 12),
        ];
        newest_first(&mut tasks);
        let order: Vec<_> = tasks.iter().map(|t| t.id.as_deref().unwrap()).collect();
        assert_eq!(order, ["new", "old", "older"]);
    }

    #[test]
    fn a_task_is_found_by_its_id_in_the_networks_view() {
        let services: HashMap<String, serde_json::Value> = serde_json::from_str(
            r#"{"": {"Tasks": [{"Name": "traefik", "EndpointIP": "10.0.1.5"}]},
                "roost-alice": {"VIP": "<nil>", "Tasks": [
                  {"Name": "roost-alice.1.oldtask", "EndpointIP": "10.0.1.3"},
                  {"Name": "roost-alice.1.newtask", "EndpointIP": "10.0.1.7"}]}}"#,
        )
        .unwrap();
        assert_eq!(task_ip(&services, "roost-alice", "newtask"), Some([10, 0, 1, 7].into()));
        assert_eq!(task_ip(&services, "roost-alice", "gone"), None);
        assert_eq!(task_ip(&services, "roost-bob", "newtask"), None);
    }

    #[test]
    fn only_ended_tasks_are_not_live() {
        assert!(is_live(TaskState::RUNNING));
        assert!(is_live(TaskState::PREPARING));
        assert!(!is_live(TaskState::SHUTDOWN));
        assert!(!is_live(TaskState::FAILED));
    }
}
