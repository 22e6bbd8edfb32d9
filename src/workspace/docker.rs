//! The Docker Engine runtime (bollard). Honours `DOCKER_HOST` (default: the
//! local unix socket) and negotiates the API version with the engine on
//! first use, so an engine that is down at startup is retried later.
//! Containers are hardened by default: every capability dropped,
//! `no-new-privileges`, not privileged, a pids limit, CPU and memory limits,
//! no Docker socket, the workspace port published on 127.0.0.1 only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, HealthStatusEnum, HostConfig, PortBinding,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, EventsOptions, InspectContainerOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, StartContainerOptions, StatsOptions, StopContainerOptions,
};
use bollard::Docker;
use futures_util::future::BoxFuture;
use futures_util::stream::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::OnceCell;

use super::runtime::{
    ContainerInfo, ContainerState, EventStream, Progress, Running, Runtime, RuntimeError, RuntimeEvent, Stats,
};
use super::spec::{
    container_name, WorkspaceSpec, LABEL_CONFIG_HASH, LABEL_CREATED, LABEL_MANAGED, LABEL_OWNER, LABEL_WORKSPACE,
};
use crate::config::AddressMode;

/// Most processes a workspace may run.
const PIDS_LIMIT: i64 = 1024;
/// Readiness polling: start fast, and never overshoot readiness by more than
/// a few tens of milliseconds.
const PROBE_BACKOFF_START: Duration = Duration::from_millis(2);
const PROBE_BACKOFF_MAX: Duration = Duration::from_millis(50);
/// Log lines kept from a container that died during start.
const FAILURE_LOG_LINES: usize = 20;

pub struct DockerRuntime {
    connect: Box<dyn Fn() -> Result<Docker, BollardError> + Send + Sync>,
    client: OnceCell<Docker>,
    /// `key=value` label filters naming this roost's containers: always
    /// `roost.managed=true`, plus `workspace.labels`, so two deployments
    /// can share an engine without touching each other's workspaces.
    scope: Vec<String>,
}

fn engine(e: BollardError) -> RuntimeError {
    RuntimeError::Engine(Box::new(e))
}

fn status_of(e: &BollardError) -> Option<u16> {
    match e {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

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
        }
    }

    /// Manages only containers that also carry `labels` (`workspace.labels`).
    pub fn scoped(mut self, labels: &std::collections::BTreeMap<String, String>) -> Self {
        self.scope.extend(labels.iter().map(|(k, v)| format!("{k}={v}")));
        self
    }

    fn in_scope(&self, c: &ContainerInspectResponse) -> bool {
        self.scope.iter().all(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            label(c, k) == Some(v)
        })
    }

    async fn client(&self) -> Result<&Docker, RuntimeError> {
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
        docker
            .create_volume(VolumeCreateRequest {
                name: Some(spec.volume_name()),
                labels: Some(spec.volume_labels().into_iter().collect()),
                ..Default::default()
            })
            .await
            .map_err(engine)?;
        let port = format!("{}/tcp", config.port);
        let mut host = HostConfig {
            binds: Some(vec![format!("{}:{}", spec.volume_name(), config.volume_path)]),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges:true".into()]),
            privileged: Some(false),
            pids_limit: Some(PIDS_LIMIT),
            nano_cpus: Some((config.cpus * 1e9) as i64),
            memory: i64::try_from(config.memory).ok(),
            ..Default::default()
        };
        match config.address {
            AddressMode::Published => {
                let binding = PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(String::new()),
                };
                host.port_bindings = Some(HashMap::from([(port.clone(), Some(vec![binding]))]));
            }
            AddressMode::Network => host.network_mode = config.network.clone(),
        }
        let body = ContainerCreateBody {
            image: Some(config.image.clone()),
            cmd: config.command.clone(),
            env: Some(spec.env()),
            labels: Some(spec.labels().into_iter().collect()),
            exposed_ports: Some(vec![port]),
            host_config: Some(host),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(spec.container_name()),
            ..Default::default()
        };
        match docker.create_container(Some(options), body).await {
            Ok(created) => Ok(created.id),
            // Someone else (another replica) created it first: adopt theirs.
            Err(e) if status_of(&e) == Some(409) => match self.inspect_raw(&spec.container_name()).await? {
                Some(c) => Ok(c.id.unwrap_or_default()),
                None => Err(engine(e)),
            },
            Err(e) => Err(engine(e)),
        }
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        let docker = self.client().await?;
        match docker.start_container(id, None::<StartContainerOptions>).await {
            Ok(()) => Ok(()),
            Err(e) if status_of(&e) == Some(304) => Ok(()), // already started by someone else
            Err(e) => Err(engine(e)),
        }
    }

    /// Waits until the container serves: its HEALTHCHECK says healthy, or
    /// (without one) its port answers HTTP. Fails fast when it exits.
    async fn wait_ready(&self, id: &str, spec: &WorkspaceSpec) -> Result<(SocketAddr, u64), RuntimeError> {
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

    async fn ensure_inner(&self, spec: &WorkspaceSpec, progress: Progress<'_>) -> Result<Running, RuntimeError> {
        let name = spec.container_name();
        let existing = self.inspect_raw(&name).await?;
        if existing.as_ref().is_some_and(|c| !self.in_scope(c)) {
            return Err(RuntimeError::NameTaken(name));
        }
        let (id, action) = match existing {
            Some(c) if is_running(&c) => (c.id.unwrap_or_default(), "ready"),
            Some(c) if label(&c, LABEL_CONFIG_HASH) != Some(&*spec.config_hash) => {
                progress("recreating");
                let old = c.id.unwrap_or_default();
                self.remove(&old).await?;
                (self.create(spec).await?, "recreated")
            }
            Some(c) => (c.id.unwrap_or_default(), "started"),
            None => {
                progress("creating");
                (self.create(spec).await?, "created")
            }
        };
        if action != "ready" {
            progress("starting");
            self.start(&id).await?;
        }
        progress("waiting for the workspace to answer");
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

fn is_running(c: &ContainerInspectResponse) -> bool {
    c.state.as_ref().and_then(|s| s.running).unwrap_or(false)
}

fn label<'a>(c: &'a ContainerInspectResponse, key: &str) -> Option<&'a str> {
    c.config.as_ref()?.labels.as_ref()?.get(key).map(String::as_str)
}

fn created_label(c: &ContainerInspectResponse) -> Option<u64> {
    label(c, LABEL_CREATED)?.parse().ok()
}

/// Where the workspace port answers: the published loopback port, or the
/// container's address on `workspace.network`.
fn address(c: &ContainerInspectResponse, spec: &WorkspaceSpec) -> Option<SocketAddr> {
    let net = c.network_settings.as_ref()?;
    match spec.config.address {
        AddressMode::Published => {
            let bindings = net
                .ports
                .as_ref()?
                .get(&format!("{}/tcp", spec.config.port))?
                .as_ref()?;
            let port: u16 = bindings.iter().find_map(|b| b.host_port.as_deref()?.parse().ok())?;
            Some(SocketAddr::from(([127, 0, 0, 1], port)))
        }
        AddressMode::Network => {
            let network = spec.config.network.as_deref()?;
            let ip = net
                .networks
                .as_ref()?
                .get(network)?
                .ip_address
                .as_deref()?
                .parse()
                .ok()?;
            Some(SocketAddr::new(ip, spec.config.port))
        }
    }
}

/// True when something at `addr` answers an HTTP request (any status).
async fn http_answers(addr: SocketAddr) -> bool {
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

fn info_of(c: &ContainerInspectResponse, spec_address: Option<SocketAddr>) -> Option<ContainerInfo> {
    let state = match c.state.as_ref().and_then(|s| s.status) {
        Some(ContainerStateStatusEnum::RUNNING) => ContainerState::Running,
        Some(ContainerStateStatusEnum::CREATED) => ContainerState::Created,
        _ => ContainerState::Stopped,
    };
    Some(ContainerInfo {
        id: c.id.clone()?,
        slug: label(c, LABEL_WORKSPACE)?.into(),
        owner: label(c, LABEL_OWNER)?.into(),
        state,
        config_hash: label(c, LABEL_CONFIG_HASH).unwrap_or_default().to_string(),
        created: created_label(c).unwrap_or(0),
        addr: spec_address,
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
            let Some(c) = self.inspect_raw(&container_name(slug)).await? else {
                return Ok(None);
            };
            if !self.in_scope(&c) {
                return Ok(None); // a stranger's container with our name: not ours to touch
            }
            Ok(info_of(&c, None))
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
                    out.extend(info_of(&c, None));
                }
            }
            Ok(out)
        })
    }

    fn logs<'a>(&'a self, id: &'a str, tail: usize) -> BoxFuture<'a, Result<Vec<String>, RuntimeError>> {
        Box::pin(async move {
            let docker = self.client().await?;
            let options = LogsOptions {
                stdout: true,
                stderr: true,
                tail: tail.to_string(),
                ..Default::default()
            };
            let mut stream = docker.logs(id, Some(options));
            let mut text = String::new();
            while let Some(chunk) = stream.next().await {
                text.push_str(&chunk.map_err(engine)?.to_string());
            }
            Ok(text.lines().map(str::to_string).collect())
        })
    }

    fn stats<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Stats, RuntimeError>> {
        Box::pin(async move {
            let docker = self.client().await?;
            let options = StatsOptions {
                stream: false,
                one_shot: true,
            };
            let mut stream = docker.stats(id, Some(options));
            let s = match stream.next().await {
                Some(s) => s.map_err(engine)?,
                None => return Ok(Stats::default()),
            };
            let net_bytes = s
                .networks
                .iter()
                .flat_map(|n| n.values())
                .map(|n| n.rx_bytes.unwrap_or(0) + n.tx_bytes.unwrap_or(0))
                .sum();
            Ok(Stats {
                net_bytes,
                memory_bytes: s.memory_stats.and_then(|m| m.usage).unwrap_or(0),
                cpu_nanos: s
                    .cpu_stats
                    .and_then(|c| c.cpu_usage)
                    .and_then(|u| u.total_usage)
                    .unwrap_or(0),
            })
        })
    }

    fn events(&self) -> BoxFuture<'_, Result<EventStream, RuntimeError>> {
        Box::pin(async move {
            let docker = self.client().await?.clone();
            let options = EventsOptions {
                filters: Some(HashMap::from([
                    ("type".into(), vec!["container".into()]),
                    ("label".into(), self.scope.clone()),
                    ("event".into(), vec!["start".into(), "die".into(), "destroy".into()]),
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
                    _ => None,
                }
            });
            Ok(stream.boxed())
        })
    }
}
