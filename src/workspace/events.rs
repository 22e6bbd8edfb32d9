//! Following the engine: subscribe to its event stream for roost's
//! containers, reconcile after every (re)connection so nothing missed while
//! disconnected stays wrong, reconnect with backoff when the stream ends;
//! and the registry's reactions to what the engine says.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::registry::{Phase, Registry};
use super::runtime::{ContainerState, RuntimeError, RuntimeEvent};

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

pub async fn follow(registry: Arc<Registry>, cancel: CancellationToken) {
    let mut backoff = BACKOFF_START;
    loop {
        match registry.runtime().events().await {
            Ok(mut stream) => {
                // Subscribed first, then reconciled: an event in between is not lost.
                match registry.reconcile().await {
                    Ok(()) => backoff = BACKOFF_START,
                    Err(e) => tracing::warn!(error = %e, "reconciling with the engine failed"),
                }
                loop {
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        event = stream.next() => match event {
                            Some(Ok(event)) => registry.on_event(event),
                            Some(Err(e)) => {
                                tracing::warn!(error = %e, "engine event stream lost");
                                break;
                            }
                            None => break,
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, retry_in = ?backoff, "cannot subscribe to engine events"),
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

impl Registry {
    /// Brings the registry in line with the engine: adopts running
    /// containers (they become ready once they answer) and forgets stopped ones.
    pub async fn reconcile(self: &Arc<Self>) -> Result<(), RuntimeError> {
        let containers = self.runtime().list().await?;
        let mut seen = std::collections::HashSet::new();
        for info in containers {
            seen.insert(info.slug.clone());
            let entry = self.entry(&info.slug);
            let owner = Arc::new(info.owner.to_string());
            match info.state {
                // A paused one is thawed: it becomes ready, and is paused
                // again once idle.
                ContainerState::Running | ContainerState::Paused => self.adopt(&entry, owner),
                _ => {
                    self.learn_owner(&entry, owner);
                    self.engine_stopped(&entry);
                }
            }
        }
        for entry in self.all() {
            if !seen.contains(entry.slug()) {
                self.engine_stopped(&entry);
            }
        }
        Ok(())
    }

    /// Follows one engine event.
    pub fn on_event(self: &Arc<Self>, event: RuntimeEvent) {
        match event {
            RuntimeEvent::Started { slug } => {
                // Started by someone else (a replica, an operator): adopt it
                // once it is confirmed running. Never create from an event,
                // and leave alone a workspace whose start just failed here.
                let entry = self.entry(&slug);
                if entry.is_busy() || matches!(entry.phase(), Phase::Ready(_) | Phase::Paused(_) | Phase::Failed(_)) {
                    return;
                }
                let registry = self.clone();
                self.spawn_task(async move {
                    if let Ok(Some(info)) = registry.runtime().inspect(&slug).await {
                        if info.state == ContainerState::Running {
                            registry.adopt(&entry, Arc::new(info.owner.to_string()));
                        }
                    }
                });
            }
            RuntimeEvent::Stopped { slug } => {
                if let Some(entry) = self.get(&slug) {
                    self.engine_stopped(&entry);
                }
            }
            RuntimeEvent::Destroyed { slug } => {
                if let Some(entry) = self.get(&slug) {
                    self.engine_destroyed(&entry);
                }
            }
            // Paused or thawed elsewhere (or here: the event trails the
            // change, and may trail a later one): what the engine says now
            // decides, not the event.
            RuntimeEvent::Paused { slug } | RuntimeEvent::Unpaused { slug } => {
                let Some(entry) = self.get(&slug) else { return };
                let registry = self.clone();
                self.spawn_task(async move {
                    if let Ok(Some(info)) = registry.runtime().inspect(&slug).await {
                        match info.state {
                            ContainerState::Paused => registry.engine_paused(&entry),
                            ContainerState::Running => registry.engine_unpaused(&entry),
                            _ => {}
                        }
                    }
                });
            }
        }
    }
}
