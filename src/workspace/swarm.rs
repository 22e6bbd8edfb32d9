//! The Docker Swarm runtime (`workspace.runtime = "swarm"`), behind the
//! same [`Runtime`] trait as the Docker one: a workspace is a replicated
//! service with one task while it runs and none while it is stopped,
//! removed at `max_lifetime`; it joins only its own overlay network
//! ([`network`]), which Traefik (`swarm.attach`) joins too, and Traefik
//! reaches its task's address there (no virtual IP: containers attached
//! from outside the swarm cannot reach one on every engine). Ready means:
//! its task runs, its HEALTHCHECK (when the task is on this node) says
//! healthy, and its port answers at that address. Labels, limits, hardening and the
//! ownership rule are the Docker runtime's ([`service`]); volumes are made
//! and checked by it too, on this node, unless `swarm.volume_driver` serves
//! every node.
//!
//! roost talks to a manager's engine and must reach workspace networks
//! itself (it probes and proxies), so it runs on that node, in Traefik's
//! network namespace or attached by `swarm.attach`.

mod events;
mod network;
mod service;
mod tasks;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bollard::models::{Service, TaskState};
use bollard::query_parameters::{
    InspectServiceOptions, ListContainersOptions, ListServicesOptions, UpdateServiceOptions,
};
use futures_util::future::BoxFuture;
use tokio::sync::OnceCell;

use super::docker::{engine, last_lines, log_lines, status_of, DockerRuntime};
use super::runtime::{
    Action, ByteStream, ContainerInfo, ContainerState, EventStream, Progress, Running, Runtime, RuntimeError, Stats,
    Step,
};
use super::spec::{
    container_name, ownership, Ownership, WorkspaceSpec, LABEL_CONFIG_HASH, LABEL_CREATED, LABEL_OWNER, LABEL_PROFILE,
    LABEL_WORKSPACE,
};
use crate::config::SwarmConfig;
pub use network::network_name;
use service::{replicas, scaled, service_spec, Placement};
use tasks::task_state;

/// How long a stop or removal waits for the task to end beyond its grace.
const END_WAIT: Duration = Duration::from_secs(15);

pub struct SwarmRuntime {
    /// The same engine as a Docker runtime: its client, scope, volumes,
    /// stats and archive copies serve this one too.
    docker: DockerRuntime,
    attach: Vec<String>,
    volume_driver: Option<String>,
    /// The swarm node id of roost's engine, once asked.
    node: OnceCell<String>,
}

impl SwarmRuntime {
    /// Services on the swarm whose manager `docker` reaches.
    pub fn new(docker: DockerRuntime, config: &SwarmConfig) -> Self {
        SwarmRuntime {
            docker,
            attach: config.attach.clone(),
            volume_driver: config.volume_driver.clone(),
            node: OnceCell::new(),
        }
    }

    async fn placement(&self) -> Result<Placement, RuntimeError> {
        if let Some(driver) = &self.volume_driver {
            return Ok(Placement::Driver(driver.clone()));
        }
        let node = self
            .node
            .get_or_try_init(|| async {
                let info = self.docker.client().await?.info().await.map_err(engine)?;
                info.swarm
                    .and_then(|s| s.node_id)
                    .filter(|id| !id.is_empty())
                    .ok_or_else(|| RuntimeError::Engine("the engine is not part of a swarm".into()))
            })
            .await?;
        Ok(Placement::Node(node.clone()))
    }

    async fn service(&self, name: &str) -> Result<Option<Service>, RuntimeError> {
        let docker = self.docker.client().await?;
        match docker.inspect_service(name, None::<InspectServiceOptions>).await {
            Ok(s) => Ok(Some(s)),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(engine(e)),
        }
    }

    fn in_scope(&self, s: &Service) -> bool {
        let labels = service_labels(s);
        self.docker.labels_in_scope(|k| labels.get(k).map(String::as_str))
    }

    async fn update(&self, s: &Service, spec: bollard::models::ServiceSpec) -> Result<(), RuntimeError> {
        let docker = self.docker.client().await?;
        let id = s.id.as_deref().unwrap_or_default();
        let version = s.version.as_ref().and_then(|v| v.index).unwrap_or(0);
        let options = UpdateServiceOptions {
            version: i32::try_from(version).unwrap_or(i32::MAX),
            ..Default::default()
        };
        match docker.update_service(id, spec, options, None).await {
            Ok(_) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Err(RuntimeError::NoSuchWorkspace),
            // Updated meanwhile by someone else (out of sequence): busy.
            Err(e) if status_of(&e) == Some(500) && e.to_string().contains("out of sequence") => {
                Err(RuntimeError::Busy {
                    retry_after: Duration::from_secs(1),
                })
            }
            Err(e) => Err(engine(e)),
        }
    }

    async fn create(&self, spec: &WorkspaceSpec, network: &str) -> Result<String, RuntimeError> {
        let docker = self.docker.client().await?;
        let placement = self.placement().await?;
        let mut spec = spec.clone();
        if let Placement::Node(_) = placement {
            // The image and the volume are on this node, where the task runs.
            match docker.inspect_image(&spec.config.image).await {
                Ok(_) => {}
                Err(e) if status_of(&e) == Some(404) => {
                    return Err(RuntimeError::ImageMissing(spec.config.image.clone()))
                }
                Err(e) => return Err(engine(e)),
            }
            spec.volume = self.docker.volume(&spec).await?;
        }
        match docker
            .create_service(service_spec(&spec, network, &placement, 1), None)
            .await
        {
            Ok(made) => Ok(made.id.unwrap_or_default()),
            // Another replica created it first: adopt theirs.
            Err(e) if status_of(&e) == Some(409) => self
                .service(&spec.container_name())
                .await?
                .and_then(|s| s.id)
                .ok_or_else(|| engine(e)),
            Err(e) => Err(engine(e)),
        }
    }

    /// Removes a service and waits until its task has ended.
    async fn delete(&self, id: &str) -> Result<(), RuntimeError> {
        let docker = self.docker.client().await?;
        match docker.delete_service(id).await {
            Ok(()) => {}
            Err(e) if status_of(&e) == Some(404) => return Ok(()),
            Err(e) => return Err(engine(e)),
        }
        self.wait_ended(id, END_WAIT).await
    }

    async fn ensure_inner(&self, spec: &WorkspaceSpec, progress: Progress<'_>) -> Result<Running, RuntimeError> {
        let name = spec.container_name();
        let existing = self.service(&name).await?;
        if let Some(s) = &existing {
            let labels = service_labels(s);
            let mine = if self.in_scope(s) {
                ownership(|k| labels.get(k).cloned(), &spec.deployment, &spec.issuer, &spec.owner)
            } else {
                Ownership::Foreign
            };
            match mine {
                Ownership::Foreign => {
                    tracing::error!(service = %name, "the name is taken by a service of another deployment (or not roost's)");
                    return Err(RuntimeError::NameTaken(name));
                }
                Ownership::Other => return Err(RuntimeError::NotOwner),
                Ownership::Mine => {}
            }
        }
        let network = self.ensure_network(spec).await?;
        // Tasks from before this start (a stopped or ended one) are not its.
        let mut earlier = Vec::new();
        let (id, action) = match existing {
            Some(s) if service_labels(&s).get(LABEL_CONFIG_HASH).map(String::as_str) != Some(&*spec.config_hash) => {
                progress(Step::Recreating);
                self.delete(s.id.as_deref().unwrap_or_default()).await?;
                (self.create(spec, &network).await?, Action::Recreated)
            }
            Some(s) => {
                let id = s.id.clone().unwrap_or_default();
                let tasks = self.tasks(&id).await?;
                let running = tasks.first().map(task_state) == Some(TaskState::RUNNING);
                earlier = tasks.into_iter().filter_map(|t| t.id).collect();
                let current = s.spec.clone().unwrap_or_default();
                if replicas(&current) >= 1 && running {
                    (id, Action::Ready)
                } else {
                    progress(Step::Starting);
                    // Stopped, or its last task ended: a new task.
                    self.update(&s, scaled(current, 1, true)).await?;
                    (id, Action::Started)
                }
            }
            None => {
                progress(Step::Creating);
                (self.create(spec, &network).await?, Action::Created)
            }
        };
        progress(Step::WaitingReady);
        match self.wait_ready(&id, spec, &network, &earlier).await {
            Ok((addr, created)) => Ok(Running {
                id,
                addr,
                created,
                action,
            }),
            Err(e) => {
                // Leave nothing half-started; the volume stays.
                let _ = self.stop_service(&id).await;
                Err(e)
            }
        }
    }

    /// Scales a service to no task and waits until its task has ended.
    async fn stop_service(&self, id: &str) -> Result<(), RuntimeError> {
        let Some(s) = self.service(id).await? else {
            return Ok(());
        };
        let current = s.spec.clone().unwrap_or_default();
        if replicas(&current) != 0 {
            match self.update(&s, scaled(current, 0, false)).await {
                Ok(()) | Err(RuntimeError::NoSuchWorkspace) => {}
                Err(e) => return Err(e),
            }
        }
        self.wait_ended(id, END_WAIT).await
    }

    /// The newest container of service `id` on this node (stopped ones too).
    async fn local_container(&self, id: &str, running: bool) -> Result<Option<String>, RuntimeError> {
        let docker = self.docker.client().await?;
        let mut filters = HashMap::from([("label".to_string(), vec![format!("com.docker.swarm.service.id={id}")])]);
        if running {
            filters.insert("status".into(), vec!["running".into()]);
        }
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        let mut found = docker.list_containers(Some(options)).await.map_err(engine)?;
        found.sort_by_key(|c| std::cmp::Reverse(c.created.unwrap_or(0)));
        Ok(found.into_iter().next().and_then(|c| c.id))
    }

    /// The stopped task container through which `slug`'s volume is copied.
    async fn volume_container(&self, slug: &str) -> Result<String, RuntimeError> {
        let name = container_name(self.docker.deployment(), slug);
        let s = self.service(&name).await?.ok_or(RuntimeError::NoSuchWorkspace)?;
        if !self.in_scope(&s) {
            return Err(RuntimeError::NoSuchWorkspace);
        }
        let id = s.id.unwrap_or_default();
        if self.local_container(&id, true).await?.is_some() {
            return Err(RuntimeError::Busy {
                retry_after: Duration::from_secs(5),
            });
        }
        self.local_container(&id, false)
            .await?
            .ok_or(RuntimeError::NoSuchWorkspace)
    }

    fn info_of(&self, s: &Service, running: bool) -> Option<ContainerInfo> {
        let labels = service_labels(s);
        let state = match (replicas(s.spec.as_ref()?), running) {
            (0, _) => ContainerState::Stopped,
            (_, true) => ContainerState::Running,
            (_, false) => ContainerState::Created,
        };
        Some(ContainerInfo {
            id: s.id.clone()?,
            slug: labels.get(LABEL_WORKSPACE)?.as_str().into(),
            owner: labels.get(LABEL_OWNER)?.as_str().into(),
            state,
            profile: labels.get(LABEL_PROFILE).map(|p| Arc::from(p.as_str())),
        })
    }
}

fn service_labels(s: &Service) -> HashMap<String, String> {
    s.spec.as_ref().and_then(|s| s.labels.clone()).unwrap_or_default()
}

fn created_label(s: &Service) -> Option<u64> {
    service_labels(s).get(LABEL_CREATED)?.parse().ok()
}

impl Runtime for SwarmRuntime {
    fn ensure<'a>(
        &'a self,
        spec: &'a WorkspaceSpec,
        progress: Progress<'a>,
    ) -> BoxFuture<'a, Result<Running, RuntimeError>> {
        Box::pin(self.ensure_inner(spec, progress))
    }

    /// Scales to no task; the service's own stop grace (`stop_timeout`)
    /// applies.
    fn stop<'a>(&'a self, id: &'a str, _grace: Duration) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(self.stop_service(id))
    }

    /// No paused tier on a swarm (the config refuses `pause_after` with it):
    /// a task's frozen container is out of the service's sight.
    fn pause<'a>(&'a self, _id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async { Err(RuntimeError::Engine("pausing is not supported on Docker Swarm".into())) })
    }

    fn unpause<'a>(&'a self, _id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async { Ok(()) })
    }

    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let slug = match self.service(id).await? {
                Some(s) if self.in_scope(&s) => service_labels(&s).get(LABEL_WORKSPACE).cloned(),
                Some(_) => return Ok(()),
                None => None,
            };
            self.delete(id).await?;
            if let Some(slug) = slug {
                self.remove_network(&slug).await;
            }
            Ok(())
        })
    }

    fn remove_volume<'a>(&'a self, slug: &'a str) -> BoxFuture<'a, Result<bool, RuntimeError>> {
        Box::pin(async move {
            // The swarm keeps ended task containers a while; they hold the volume.
            let name = container_name(self.docker.deployment(), slug);
            if let Some(s) = self.service(&name).await? {
                if self.in_scope(&s) {
                    return Err(RuntimeError::Busy {
                        retry_after: Duration::from_secs(5),
                    });
                }
            }
            let docker = self.docker.client().await?;
            let options = ListContainersOptions {
                all: true,
                filters: Some(HashMap::from([(
                    "volume".to_string(),
                    vec![super::spec::volume_name(self.docker.deployment(), slug)],
                )])),
                ..Default::default()
            };
            for c in docker.list_containers(Some(options)).await.map_err(engine)? {
                let ours = c
                    .labels
                    .as_ref()
                    .is_some_and(|l| self.docker.labels_in_scope(|k| l.get(k).map(String::as_str)));
                if let (true, Some(id)) = (ours, c.id) {
                    let _ = self.docker.remove(&id).await;
                }
            }
            self.docker.remove_volume_of(slug).await
        })
    }

    fn export_volume<'a>(&'a self, slug: &'a str) -> BoxFuture<'a, Result<ByteStream, RuntimeError>> {
        Box::pin(async move {
            let container = self.volume_container(slug).await?;
            self.docker.export_through(&container, slug).await
        })
    }

    fn import_volume<'a>(&'a self, slug: &'a str, tar: ByteStream) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let container = self.volume_container(slug).await?;
            self.docker.import_through(&container, slug, tar).await
        })
    }

    fn inspect<'a>(&'a self, slug: &'a str) -> BoxFuture<'a, Result<Option<ContainerInfo>, RuntimeError>> {
        Box::pin(async move {
            let Some(s) = self.service(&container_name(self.docker.deployment(), slug)).await? else {
                return Ok(None);
            };
            if !self.in_scope(&s) {
                return Ok(None);
            }
            let id = s.id.clone().unwrap_or_default();
            let running = self.tasks(&id).await?.first().map(task_state) == Some(TaskState::RUNNING);
            Ok(self.info_of(&s, running))
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<ContainerInfo>, RuntimeError>> {
        Box::pin(async move {
            let docker = self.docker.client().await?;
            let options = ListServicesOptions {
                filters: Some(HashMap::from([("label".into(), self.docker.scope().to_vec())])),
                status: Some(true),
            };
            let services = docker.list_services(Some(options)).await.map_err(engine)?;
            Ok(services
                .iter()
                .filter(|s| self.in_scope(s))
                .filter_map(|s| {
                    let running = s.service_status.as_ref().and_then(|st| st.running_tasks).unwrap_or(0) > 0;
                    self.info_of(s, running)
                })
                .collect())
        })
    }

    fn logs<'a>(&'a self, id: &'a str, tail: usize) -> BoxFuture<'a, Result<Vec<String>, RuntimeError>> {
        Box::pin(async move {
            let docker = self.docker.client().await?;
            log_lines(docker.service_logs(id, Some(last_lines(tail)))).await
        })
    }

    /// The running task's container's use, when it runs on this node.
    fn stats<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Stats, RuntimeError>> {
        Box::pin(async move {
            match self.local_container(id, true).await? {
                Some(container) => self.docker.stats(&container).await,
                None => Ok(Stats::default()),
            }
        })
    }

    /// The swarm's service events and this node's task container deaths
    /// ([`events`]).
    fn events(&self) -> BoxFuture<'_, Result<EventStream, RuntimeError>> {
        Box::pin(self.event_stream())
    }
}
