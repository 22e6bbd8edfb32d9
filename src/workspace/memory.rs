//! An in-memory container runtime, standing in for an engine where none is
//! wanted: the registry's, reaper's and event follower's tests (under
//! tokio's paused clock, so a start, a drain or an idle timeout takes
//! milliseconds), the auth layer's tests and the benchmarks. It runs
//! nothing: a container is a map entry, and every ready workspace
//! "answers" at the one address it was given. The Docker runtime is tested
//! for real against the engine; this one is for logic around a runtime.
//!
//! Tests steer it: how long a start takes, a failure to return, containers
//! started or stopped behind roost's back (with their engine events), and
//! traffic a container sends (what the reaper samples).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream;
use tokio::sync::broadcast;

use super::runtime::{
    Action, ByteStream, ContainerInfo, ContainerState, EventStream, FailReason, Progress, Running, Runtime,
    RuntimeError, RuntimeEvent, Stats, Step,
};
use super::spec::WorkspaceSpec;
use crate::clock::{Clock, SystemClock};

/// Bytes of an ARP frame (what an idle container sends now and then).
const ARP_FRAME_BYTES: u64 = 42;

#[derive(Debug, Clone)]
struct Container {
    id: String,
    owner: Arc<str>,
    running: bool,
    /// Frozen (running stays true, as the engine reports it).
    paused: bool,
    created: u64,
    config_hash: String,
    profile: Arc<str>,
    tx_bytes: u64,
    tx_packets: u64,
}

#[derive(Default)]
struct State {
    containers: HashMap<Arc<str>, Container>,
    next_id: u64,
    /// What the next ensure fails with, when set.
    fail: Option<FailReason>,
    /// Workspaces whose volume exists (made by their first ensure).
    volumes: std::collections::HashSet<Arc<str>>,
}

pub struct MemoryRuntime {
    addr: SocketAddr,
    start_delay: Duration,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    events: broadcast::Sender<RuntimeEvent>,
    ensures: AtomicUsize,
    stops: AtomicUsize,
    thaws: AtomicUsize,
}

impl MemoryRuntime {
    /// Every workspace answers at `addr` once started; starts are instant.
    pub fn new(addr: SocketAddr) -> Self {
        MemoryRuntime {
            addr,
            start_delay: Duration::ZERO,
            clock: Arc::new(SystemClock),
            state: Mutex::new(State::default()),
            events: broadcast::channel(1024).0,
            ensures: AtomicUsize::new(0),
            stops: AtomicUsize::new(0),
            thaws: AtomicUsize::new(0),
        }
    }

    /// Creating or starting a container takes `delay` (on tokio's clock).
    pub fn with_start_delay(mut self, delay: Duration) -> Self {
        self.start_delay = delay;
        self
    }

    /// Creation times come from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding it can only come from a test's own assertion.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many times `ensure` was called.
    pub fn ensures(&self) -> usize {
        self.ensures.load(Ordering::SeqCst)
    }

    /// How many times `stop` was called.
    pub fn stops(&self) -> usize {
        self.stops.load(Ordering::SeqCst)
    }

    /// Every `ensure` from now on fails this way, until cleared with `None`.
    pub fn fail_with(&self, reason: Option<FailReason>) {
        self.state().fail = reason;
    }

    /// Whether the workspace's container exists and runs.
    pub fn is_running(&self, slug: &str) -> bool {
        self.state().containers.get(slug).is_some_and(|c| c.running)
    }

    /// Whether the workspace has a container at all.
    pub fn exists(&self, slug: &str) -> bool {
        self.state().containers.contains_key(slug)
    }

    /// A container started behind roost's back (another replica, an
    /// operator), announced as the engine would.
    pub fn start_elsewhere(&self, slug: &str, owner: &str) {
        {
            let mut state = self.state();
            let created = self.clock.now_secs();
            state.next_id += 1;
            let id = format!("mem-{}", state.next_id);
            let c = state.containers.entry(slug.into()).or_insert_with(|| Container {
                id,
                owner: owner.into(),
                running: false,
                paused: false,
                created,
                config_hash: String::new(),
                profile: crate::config::DEFAULT_PROFILE.into(),
                tx_bytes: 0,
                tx_packets: 0,
            });
            c.running = true;
        }
        let _ = self.events.send(RuntimeEvent::Started { slug: slug.into() });
    }

    /// A container stopped behind roost's back (it crashed, an operator
    /// stopped it), announced as the engine would.
    pub fn stop_elsewhere(&self, slug: &str) {
        if let Some(c) = self.state().containers.get_mut(slug) {
            c.running = false;
        }
        let _ = self.events.send(RuntimeEvent::Stopped { slug: slug.into() });
    }

    /// The container sends one frame of `bytes` (its own traffic: an
    /// answer, a WebSocket message).
    pub fn send(&self, slug: &str, bytes: u64) {
        if let Some(c) = self.state().containers.get_mut(slug) {
            c.tx_bytes += bytes;
            c.tx_packets += 1;
        }
    }

    /// Whether the workspace's container is paused.
    pub fn is_paused(&self, slug: &str) -> bool {
        self.state().containers.get(slug).is_some_and(|c| c.running && c.paused)
    }

    /// How many times `unpause` thawed a container.
    pub fn thaws(&self) -> usize {
        self.thaws.load(Ordering::SeqCst)
    }

    /// A container paused or thawed behind roost's back (another replica,
    /// an operator), announced as the engine would.
    pub fn freeze_elsewhere(&self, slug: &str, paused: bool) {
        if let Some(c) = self.state().containers.get_mut(slug) {
            c.paused = paused && c.running;
        }
        let slug = slug.to_string();
        let _ = self.events.send(if paused {
            RuntimeEvent::Paused { slug }
        } else {
            RuntimeEvent::Unpaused { slug }
        });
    }

    fn freeze(&self, id: &str, paused: bool) -> Result<(), RuntimeError> {
        let slug = self.slug_of(id).ok_or(RuntimeError::NoSuchWorkspace)?;
        {
            let mut state = self.state();
            let c = state.containers.get_mut(&slug).ok_or(RuntimeError::NoSuchWorkspace)?;
            if !c.running {
                return Err(RuntimeError::NoSuchWorkspace);
            }
            if c.paused == paused {
                return Ok(());
            }
            c.paused = paused;
        }
        if !paused {
            self.thaws.fetch_add(1, Ordering::SeqCst);
        }
        self.freeze_elsewhere(&slug, paused);
        Ok(())
    }

    /// The container answers an ARP probe: noise, not use.
    pub fn arp(&self, slug: &str) {
        self.send(slug, ARP_FRAME_BYTES);
    }

    fn info(slug: &Arc<str>, c: &Container) -> ContainerInfo {
        ContainerInfo {
            id: c.id.clone(),
            slug: slug.clone(),
            owner: c.owner.clone(),
            state: match (c.running, c.paused) {
                (true, true) => ContainerState::Paused,
                (true, false) => ContainerState::Running,
                (false, _) => ContainerState::Stopped,
            },
            profile: Some(c.profile.clone()),
        }
    }

    async fn ensure_inner(&self, spec: &WorkspaceSpec, progress: Progress<'_>) -> Result<Running, RuntimeError> {
        self.ensures.fetch_add(1, Ordering::SeqCst);
        let (action, id) = {
            let mut state = self.state();
            match state.fail {
                Some(FailReason::ImageMissing) => return Err(RuntimeError::ImageMissing(spec.config.image.clone())),
                Some(FailReason::NameTaken) => return Err(RuntimeError::NameTaken(spec.container_name())),
                Some(FailReason::Engine) => return Err(RuntimeError::Engine("the engine is down".into())),
                Some(reason) => return Err(RuntimeError::StartFailed(reason)),
                None => {}
            }
            let created = self.clock.now_secs();
            state.next_id += 1;
            let fresh = Container {
                id: format!("mem-{}", state.next_id),
                owner: spec.owner.clone(),
                running: false,
                paused: false,
                created,
                config_hash: spec.config_hash.to_string(),
                profile: spec.profile.clone(),
                tx_bytes: 0,
                tx_packets: 0,
            };
            state.volumes.insert(spec.slug.clone());
            match state.containers.get_mut(&spec.slug) {
                Some(c) if *c.owner != *spec.owner => return Err(RuntimeError::NotOwner),
                Some(c) if c.running => {
                    c.paused = false;
                    (Action::Ready, c.id.clone())
                }
                Some(c) if c.config_hash != *spec.config_hash => {
                    let id = fresh.id.clone();
                    *c = fresh;
                    (Action::Recreated, id)
                }
                Some(c) => (Action::Started, c.id.clone()),
                None => {
                    let id = fresh.id.clone();
                    state.containers.insert(spec.slug.clone(), fresh);
                    (Action::Created, id)
                }
            }
        };
        if action != Action::Ready {
            progress(Step::Starting);
            tokio::time::sleep(self.start_delay).await;
            let created = {
                let mut state = self.state();
                let c = state
                    .containers
                    .get_mut(&spec.slug)
                    .ok_or(RuntimeError::NoSuchWorkspace)?;
                c.running = true;
                c.created
            };
            let _ = self.events.send(RuntimeEvent::Started {
                slug: spec.slug.to_string(),
            });
            progress(Step::WaitingReady);
            return Ok(Running {
                id,
                addr: self.addr,
                created,
                action,
            });
        }
        let created = self.state().containers.get(&spec.slug).map_or(0, |c| c.created);
        Ok(Running {
            id,
            addr: self.addr,
            created,
            action,
        })
    }

    fn slug_of(&self, id: &str) -> Option<Arc<str>> {
        self.state()
            .containers
            .iter()
            .find(|(_, c)| c.id == id)
            .map(|(slug, _)| slug.clone())
    }
}

impl Runtime for MemoryRuntime {
    fn ensure<'a>(
        &'a self,
        spec: &'a WorkspaceSpec,
        progress: Progress<'a>,
    ) -> BoxFuture<'a, Result<Running, RuntimeError>> {
        Box::pin(self.ensure_inner(spec, progress))
    }

    fn stop<'a>(&'a self, id: &'a str, _grace: Duration) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            self.stops.fetch_add(1, Ordering::SeqCst);
            let slug = self.slug_of(id).ok_or(RuntimeError::NoSuchWorkspace)?;
            if let Some(c) = self.state().containers.get_mut(&slug) {
                c.running = false;
                c.paused = false;
            }
            let _ = self.events.send(RuntimeEvent::Stopped { slug: slug.to_string() });
            Ok(())
        })
    }

    fn pause<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move { self.freeze(id, true) })
    }

    fn unpause<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move { self.freeze(id, false) })
    }

    fn remove<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let slug = self.slug_of(id).ok_or(RuntimeError::NoSuchWorkspace)?;
            self.state().containers.remove(&slug);
            let _ = self.events.send(RuntimeEvent::Destroyed { slug: slug.to_string() });
            Ok(())
        })
    }

    fn remove_volume<'a>(&'a self, slug: &'a str) -> BoxFuture<'a, Result<bool, RuntimeError>> {
        // No volumes here: a workspace's "volume" lasts while its name was used.
        let existed = self.state().volumes.remove(slug);
        Box::pin(async move { Ok(existed) })
    }

    fn export_volume<'a>(&'a self, _slug: &'a str) -> BoxFuture<'a, Result<ByteStream, RuntimeError>> {
        // No files here: backups are tested against the real engine.
        Box::pin(async { Err(RuntimeError::NoSuchWorkspace) })
    }

    fn import_volume<'a>(&'a self, _slug: &'a str, _tar: ByteStream) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async { Err(RuntimeError::NoSuchWorkspace) })
    }

    fn inspect<'a>(&'a self, slug: &'a str) -> BoxFuture<'a, Result<Option<ContainerInfo>, RuntimeError>> {
        Box::pin(async move {
            let state = self.state();
            Ok(state
                .containers
                .get_key_value(slug)
                .map(|(slug, c)| Self::info(slug, c)))
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<ContainerInfo>, RuntimeError>> {
        Box::pin(async move {
            let state = self.state();
            Ok(state.containers.iter().map(|(slug, c)| Self::info(slug, c)).collect())
        })
    }

    fn logs<'a>(&'a self, id: &'a str, tail: usize) -> BoxFuture<'a, Result<Vec<String>, RuntimeError>> {
        Box::pin(async move {
            let slug = self.slug_of(id).ok_or(RuntimeError::NoSuchWorkspace)?;
            Ok(vec![format!("{slug}: in memory")].into_iter().take(tail).collect())
        })
    }

    fn stats<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Stats, RuntimeError>> {
        Box::pin(async move {
            let state = self.state();
            let c = state
                .containers
                .values()
                .find(|c| c.id == id)
                .ok_or(RuntimeError::NoSuchWorkspace)?;
            Ok(Stats {
                tx_bytes: c.tx_bytes,
                tx_packets: c.tx_packets,
                ..Stats::default()
            })
        })
    }

    fn events(&self) -> BoxFuture<'_, Result<EventStream, RuntimeError>> {
        let rx = self.events.subscribe();
        Box::pin(async move {
            let events = stream::unfold(rx, |mut rx| async move {
                match rx.recv().await {
                    Ok(event) => Some((Ok(event), rx)),
                    // A slow reader missed some: like a lost engine connection.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        Some((Err(RuntimeError::Engine("event stream lagged".into())), rx))
                    }
                    Err(broadcast::error::RecvError::Closed) => None,
                }
            });
            Ok(Box::pin(events) as EventStream)
        })
    }
}
