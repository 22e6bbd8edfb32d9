//! The Docker Engine runtime (bollard). Honours `DOCKER_HOST` (default: the
//! local unix socket) and negotiates the API version with the engine on
//! first use, so an engine that is down at startup is retried later.
//! Containers are hardened by default (see [`container`]) and join only
//! `workspace.network`, which roost creates or checks first ([`network`]).

mod container;
mod freezer;
pub mod network;
mod ready;
mod stats;
mod volume;

use std::collections::HashMap;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum};
use bollard::query_parameters::{
    CreateContainerOptions, EventsOptions, InspectContainerOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, StartContainerOptions, StopContainerOptions,
};
use bollard::Docker;
use futures_util::future::BoxFuture;
use futures_util::stream::StreamExt;
use tokio::sync::{Mutex, OnceCell};

use super::runtime::{
    Action, ByteStream, ContainerInfo, ContainerState, EventStream, Progress, Running, Runtime, RuntimeError,
    RuntimeEvent, Stats, Step,
};
use super::spec::{
    container_name, ownership, Ownership, WorkspaceSpec, DEFAULT_DEPLOYMENT, LABEL_CONFIG_HASH, LABEL_DEPLOYMENT,
    LABEL_ISSUER, LABEL_MANAGED, LABEL_OWNER, LABEL_PROFILE, LABEL_WORKSPACE,
};
use crate::config::WorkspaceConfig;
pub use container::PIDS_LIMIT;
use container::{address, only_on};
pub(in crate::workspace) use ready::http_answers;

pub struct DockerRuntime {
    connect: Box<dyn Fn() -> Result<Docker, BollardError> + Send + Sync>,
    client: OnceCell<Docker>,
    /// `key=value` label filters naming this roost's containers: always
    /// `roost.managed=true`, plus `workspace.labels`, so two deployments
    /// can share an engine without touching each other's workspaces.
    scope: Vec<String>,
    /// `deployment.id`: part of every name, and a label every container
    /// and volume of this roost carries.
    deployment: String,
    /// `oidc.issuer`, when set: containers labelled with another are not
    /// this roost's.
    issuer: Option<String>,
    /// The `workspace.network` found safe (or created), once it has been.
    network: Mutex<Option<String>>,
}

pub(in crate::workspace) fn engine(e: BollardError) -> RuntimeError {
    RuntimeError::Engine(Box::new(e))
}

pub(in crate::workspace) fn status_of(e: &BollardError) -> Option<u16> {
    match e {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// After a name conflict, how often and how long to look for the winner's container.
const CONFLICT_POLL: std::time::Duration = std::time::Duration::from_millis(100);
const CONFLICT_POLLS: usize = 50;

impl DockerRuntime {
    /// The engine at `DOCKER_HOST`, or the local default.
    pub fn from_env() -> Self {
        Self::with_connector(Docker::connect_with_defaults)
    }

    /// An engine reached through `connect` (tests point it elsewhere).
    pub fn with_connector(connect: impl Fn() -> Result<Docker, BollardError> + Send + Sync + 'static) -> Self {
        DockerRuntime {
            connect: Box::new(connect),
            client: OnceCell::new(),
            scope: vec![format!("{LABEL_MANAGED}=true")],
            deployment: DEFAULT_DEPLOYMENT.to_string(),
            issuer: None,
            network: Mutex::new(None),
        }
    }

    /// Manages only this deployment's containers and volumes, for owners
    /// from this issuer; names carry the deployment id.
    /// `deployment.id`.
    pub(in crate::workspace) fn deployment(&self) -> &str {
        &self.deployment
    }

    /// The `key=value` label filters naming this roost's objects.
    pub(in crate::workspace) fn scope(&self) -> &[String] {
        &self.scope
    }

    pub fn for_deployment(mut self, id: &str, issuer: &str) -> Self {
        self.deployment = id.to_string();
        self.issuer = Some(issuer.to_string());
        self.scope.push(format!("{LABEL_DEPLOYMENT}={id}"));
        self
    }

    /// Manages only containers that also carry `labels` (`workspace.labels`).
    pub fn scoped(mut self, labels: &std::collections::BTreeMap<String, String>) -> Self {
        self.scope.extend(labels.iter().map(|(k, v)| format!("{k}={v}")));
        self
    }

    fn in_scope(&self, c: &ContainerInspectResponse) -> bool {
        self.labels_in_scope(|k| label(c, k))
    }

    /// Whether an object with these labels is this roost's (its deployment,
    /// its issuer, `workspace.labels`), whatever kind of object it is.
    pub(in crate::workspace) fn labels_in_scope<'a>(&self, label: impl Fn(&str) -> Option<&'a str>) -> bool {
        let issuer_ok = match (&self.issuer, label(LABEL_ISSUER)) {
            (Some(ours), Some(theirs)) => ours == theirs,
            _ => true,
        };
        issuer_ok
            && self.scope.iter().all(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                match label(k) {
                    Some(found) => found == v,
                    // Made before deployments were labelled: the default one's.
                    None => k == LABEL_DEPLOYMENT && v == DEFAULT_DEPLOYMENT,
                }
            })
    }

    /// Whose a container is, by the one ownership rule ([`ownership`]).
    fn owner_of(&self, c: &ContainerInspectResponse, spec: &WorkspaceSpec) -> Ownership {
        if !self.in_scope(c) {
            return Ownership::Foreign;
        }
        let labels = |k: &str| label(c, k).map(str::to_string);
        ownership(labels, &spec.deployment, &spec.issuer, &spec.owner)
    }

    pub(in crate::workspace) async fn client(&self) -> Result<&Docker, RuntimeError> {
        self.client
            .get_or_try_init(|| async {
                let docker = (self.connect)().map_err(engine)?;
                docker.negotiate_version().await.map_err(engine)
            })
            .await
    }

    async fn inspect_raw(&self, name: &str) -> Result<Option<ContainerInspectResponse>, RuntimeError> {
        let docker = self.client().await?;
        match docker.inspect_container(name, None::<InspectContainerOptions>).await {
            Ok(c) => Ok(Some(c)),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(engine(e)),
        }
    }

    async fn create(&self, spec: &WorkspaceSpec) -> Result<String, RuntimeError> {
        let docker = self.client().await?;
        let config = &spec.config;
        match docker.inspect_image(&config.image).await {
            Ok(_) => {}
            Err(e) if status_of(&e) == Some(404) => return Err(RuntimeError::ImageMissing(config.image.clone())),
            Err(e) => return Err(engine(e)),
        }
        let volume = self.volume(spec).await?;
        let resolved;
        let spec = if volume == spec.volume {
            spec
        } else {
            resolved = WorkspaceSpec { volume, ..spec.clone() };
            &resolved
        };
        let options = CreateContainerOptions {
            name: Some(spec.container_name()),
            ..Default::default()
        };
        let mut retried = false;
        loop {
            self.ensure_network(config).await?;
            let options = options.clone();
            match docker
                .create_container(Some(options), container::create_body(spec))
                .await
            {
                Ok(created) => return Ok(created.id),
                // Someone else (another replica) created it first: adopt
                // theirs. The engine reserves the name before the container
                // can be inspected, so it may take a moment to appear.
                Err(e) if status_of(&e) == Some(409) => {
                    for _ in 0..CONFLICT_POLLS {
                        if let Some(c) = self.inspect_raw(&spec.container_name()).await? {
                            return Ok(c.id.unwrap_or_default());
                        }
                        tokio::time::sleep(CONFLICT_POLL).await;
                    }
                    return Err(engine(e));
                }
                // The network went away since it was checked (`docker
                // network prune` while every workspace was stopped): again.
                Err(e) if status_of(&e) == Some(404) && !retried => {
                    retried = true;
                    self.forget_network().await;
                }
                Err(e) => return Err(engine(e)),
            }
        }
    }

    /// Creates or checks `workspace.network` before the first container
    /// joins it; a success is remembered, a failure is tried again next time.
    async fn ensure_network(&self, config: &WorkspaceConfig) -> Result<(), RuntimeError> {
        let mut checked = self.network.lock().await;
        if checked.as_deref() == Some(config.network.as_str()) {
            return Ok(());
        }
        network::ensure(self.client().await?, config, &self.deployment).await?;
        *checked = Some(config.network.clone());
        Ok(())
    }

    async fn forget_network(&self) {
        *self.network.lock().await = None;
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        let docker = self.client().await?;
        match docker.start_container(id, None::<StartContainerOptions>).await {
            Ok(()) => Ok(()),
            Err(e) if status_of(&e) == Some(304) => Ok(()), // already started by someone else
            // The container, or the network it was made on, is gone.
            Err(e) if status_of(&e) == Some(404) => Err(RuntimeError::NoSuchWorkspace),
            Err(e) => Err(engine(e)),
        }
    }

    async fn ensure_inner(&self, spec: &WorkspaceSpec, progress: Progress<'_>) -> Result<Running, RuntimeError> {
        let name = spec.container_name();
        let existing = self.inspect_raw(&name).await?;
        match existing.as_ref().map(|c| self.owner_of(c, spec)) {
            Some(Ownership::Foreign) => {
                tracing::error!(
                    container = %name,
                    "the name is taken by a container of another deployment (or not roost's): give each roost on this engine its own deployment.id"
                );
                return Err(RuntimeError::NameTaken(name));
            }
            Some(Ownership::Other) => return Err(RuntimeError::NotOwner),
            Some(Ownership::Mine) | None => {}
        }
        // A paused container (the paused tier, or adopted so) is thawed
        // first: frozen, it would never answer the readiness probe.
        if let Some(c) = existing.as_ref().filter(|c| freezer::is_paused(c)) {
            self.unpause_inner(c.id.as_deref().unwrap_or_default()).await?;
        }
        let network = &spec.config.network;
        let (mut id, mut action) = match existing {
            Some(c) if is_running(&c) && only_on(&c, network) && address(&c, spec).is_some() => {
                (c.id.unwrap_or_default(), Action::Ready)
            }
            // Running elsewhere (made by a roost before workspace.network,
            // on a bridge where containers meet) or stale: made anew.
            Some(c) if is_running(&c) || label(&c, LABEL_CONFIG_HASH) != Some(&*spec.config_hash) => {
                progress(Step::Recreating);
                let old = c.id.unwrap_or_default();
                self.remove(&old).await?;
                (self.create(spec).await?, Action::Recreated)
            }
            Some(c) => (c.id.unwrap_or_default(), Action::Started),
            None => {
                progress(Step::Creating);
                (self.create(spec).await?, Action::Created)
            }
        };
        if action != Action::Ready {
            progress(Step::Starting);
            match self.start(&id).await {
                // Stopped on a network that has since been removed: made anew.
                Err(RuntimeError::NoSuchWorkspace) if action == Action::Started => {
                    progress(Step::Recreating);
                    self.forget_network().await;
                    self.remove(&id).await?;
                    (id, action) = (self.create(spec).await?, Action::Recreated);
                    self.start(&id).await?;
                }
                other => other?,
            }
        }
        progress(Step::WaitingReady);
        match self.wait_ready(&id, spec).await {
            Ok((addr, created)) => Ok(Running {
                id,
                addr,
                created,
                action,
            }),
            Err(e) => {
                // Leave no half-started container behind; the volume stays.
                let _ = self.remove(&id).await;
                Err(e)
            }
        }
    }
}

/// Both output streams' last `tail` lines.
pub(in crate::workspace) fn last_lines(tail: usize) -> LogsOptions {
    LogsOptions {
        stdout: true,
        stderr: true,
        tail: tail.to_string(),
        ..Default::default()
    }
}

/// The lines of a log stream (a container's or a service's).
pub(in crate::workspace) async fn log_lines(
    stream: impl futures_util::Stream<Item = Result<bollard::container::LogOutput, BollardError>>,
) -> Result<Vec<String>, RuntimeError> {
    let mut stream = std::pin::pin!(stream);
    let mut text = String::new();
    while let Some(chunk) = stream.next().await {
        text.push_str(&chunk.map_err(engine)?.to_string());
    }
    Ok(text.lines().map(str::to_string).collect())
}

fn is_running(c: &ContainerInspectResponse) -> bool {
    c.state.as_ref().and_then(|s| s.running).unwrap_or(false)
}

fn label<'a>(c: &'a ContainerInspectResponse, key: &str) -> Option<&'a str> {
    c.config.as_ref()?.labels.as_ref()?.get(key).map(String::as_str)
}

fn info_of(c: &ContainerInspectResponse) -> Option<ContainerInfo> {
    let state = match c.state.as_ref().and_then(|s| s.status) {
        Some(ContainerStateStatusEnum::RUNNING) => ContainerState::Running,
        Some(ContainerStateStatusEnum::PAUSED) => ContainerState::Paused,
        Some(ContainerStateStatusEnum::CREATED) => ContainerState::Created,
        _ => ContainerState::Stopped,
    };
    Some(ContainerInfo {
        id: c.id.clone()?,
        slug: label(c, LABEL_WORKSPACE)?.into(),
        owner: label(c, LABEL_OWNER)?.into(),
        state,
        profile: label(c, LABEL_PROFILE).map(std::sync::Arc::from),
    })
}

impl Runtime for DockerRuntime {
    fn ensure<'a>(
        &'a self,
        spec: &'a WorkspaceSpec,
        progress: Progress<'a>,
    ) -> BoxFuture<'a, Result<Running, RuntimeError>> {
        Box::pin(self.ensure_inner(spec, progress))
    }

    fn stop<'a>(&'a self, id: &'a str, grace: Duration) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let docker = self.client().await?;
            let options = StopContainerOptions {
                t: Some(i32::try_from(grace.as_secs()).unwrap_or(i32::MAX)),
                ..Default::default()
            };
            match docker.stop_container(id, Some(options)).await {
                Ok(()) => Ok(()),
                Err(e) if matches!(status_of(&e), Some(304 | 404)) => Ok(()),
                Err(e) => Err(engine(e)),
            }
        })
    }

    fn export_volume<'a>(&'a self, slug: &'a str) -> BoxFuture<'a, Result<ByteStream, RuntimeError>> {
        Box::pin(self.export_volume_of(slug))
    }

    fn import_volume<'a>(&'a self, slug: &'a str, tar: ByteStream) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(self.import_volume_of(slug, tar))
    }

    fn remove_volume<'a>(&'a self, slug: &'a str) -> BoxFuture<'a, Result<bool, RuntimeError>> {
        Box::pin(self.remove_volume_of(slug))
    }

    fn pause<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(self.pause_inner(id))
    }

    fn unpause<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(self.unpause_inner(id))
    }

    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let docker = self.client().await?;
            let options = RemoveContainerOptions {
                force: true,
                v: false,
                ..Default::default()
            };
            match docker.remove_container(id, Some(options)).await {
                Ok(()) => Ok(()),
                Err(e) if status_of(&e) == Some(404) => Ok(()),
                Err(e) => Err(engine(e)),
            }
        })
    }

    fn inspect<'a>(&'a self, slug: &'a str) -> BoxFuture<'a, Result<Option<ContainerInfo>, RuntimeError>> {
        Box::pin(async move {
            let Some(c) = self.inspect_raw(&container_name(&self.deployment, slug)).await? else {
                return Ok(None);
            };
            if !self.in_scope(&c) {
                return Ok(None); // a stranger's container with our name: not ours to touch
            }
            Ok(info_of(&c))
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<ContainerInfo>, RuntimeError>> {
        Box::pin(async move {
            let docker = self.client().await?;
            let options = ListContainersOptions {
                all: true,
                filters: Some(HashMap::from([("label".into(), self.scope.clone())])),
                ..Default::default()
            };
            let summaries = docker.list_containers(Some(options)).await.map_err(engine)?;
            let mut out = Vec::new();
            for s in summaries {
                let Some(id) = s.id else { continue };
                if let Some(c) = self.inspect_raw(&id).await? {
                    out.extend(info_of(&c));
                }
            }
            Ok(out)
        })
    }

    fn logs<'a>(&'a self, id: &'a str, tail: usize) -> BoxFuture<'a, Result<Vec<String>, RuntimeError>> {
        Box::pin(async move {
            let docker = self.client().await?;
            log_lines(docker.logs(id, Some(last_lines(tail)))).await
        })
    }

    fn stats<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Stats, RuntimeError>> {
        Box::pin(self.stats_of(id))
    }

    fn events(&self) -> BoxFuture<'_, Result<EventStream, RuntimeError>> {
        Box::pin(async move {
            let docker = self.client().await?.clone();
            let options = EventsOptions {
                filters: Some(HashMap::from([
                    ("type".into(), vec!["container".into()]),
                    ("label".into(), self.scope.clone()),
                    (
                        "event".into(),
                        ["start", "die", "destroy", "pause", "unpause"]
                            .map(String::from)
                            .to_vec(),
                    ),
                ])),
                ..Default::default()
            };
            let stream = docker.events(Some(options)).filter_map(|msg| async move {
                let msg = match msg {
                    Ok(msg) => msg,
                    Err(e) => return Some(Err(engine(e))),
                };
                let slug = msg.actor?.attributes?.get(LABEL_WORKSPACE)?.clone();
                match msg.action.as_deref()? {
                    "start" => Some(Ok(RuntimeEvent::Started { slug })),
                    "die" => Some(Ok(RuntimeEvent::Stopped { slug })),
                    "destroy" => Some(Ok(RuntimeEvent::Destroyed { slug })),
                    "pause" => Some(Ok(RuntimeEvent::Paused { slug })),
                    "unpause" => Some(Ok(RuntimeEvent::Unpaused { slug })),
                    _ => None,
                }
            });
            Ok(stream.boxed())
        })
    }
}
