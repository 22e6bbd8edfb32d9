//! Every workspace's own overlay network: attachable, internal unless
//! `workspace.egress`, labelled as its workspace's, joined by the service
//! and by the containers `swarm.attach` names (Traefik's) and nothing else.
//! Overlay networks have no switch for inter-container traffic, so one
//! network per workspace is what keeps workspaces apart.

use std::collections::HashMap;

use bollard::models::{NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest};
use bollard::query_parameters::{InspectContainerOptions, InspectNetworkOptions};

use super::super::docker::{engine, status_of};
use super::super::runtime::RuntimeError;
use super::super::spec::{WorkspaceSpec, LABEL_WORKSPACE};
use super::SwarmRuntime;

/// The name of workspace `slug`'s network.
pub fn network_name(deployment: &str, slug: &str) -> String {
    format!("{deployment}-{slug}-net")
}

impl SwarmRuntime {
    /// Creates (or checks) `spec`'s network and attaches `swarm.attach` to
    /// it; returns the network's id.
    pub(super) async fn ensure_network(&self, spec: &WorkspaceSpec) -> Result<String, RuntimeError> {
        let docker = self.docker.client().await?;
        let name = network_name(&spec.deployment, &spec.slug);
        let id = match self.network_id(&name, &spec.slug).await? {
            Some(id) => id,
            None => {
                let request = NetworkCreateRequest {
                    name: name.clone(),
                    driver: Some("overlay".into()),
                    attachable: Some(true),
                    internal: Some(!spec.config.egress),
                    labels: Some(spec.volume_labels().into_iter().collect()),
                    ..Default::default()
                };
                match docker.create_network(request).await {
                    Ok(made) => made.id,
                    // Another replica made it first: theirs, once checked.
                    Err(e) if status_of(&e) == Some(409) => {
                        self.network_id(&name, &spec.slug).await?.ok_or_else(|| engine(e))?
                    }
                    Err(e) => return Err(engine(e)),
                }
            }
        };
        for container in &self.attach {
            let c = match docker
                .inspect_container(container, None::<InspectContainerOptions>)
                .await
            {
                Ok(c) => c,
                Err(e) if status_of(&e) == Some(404) => {
                    tracing::error!(container = %container, "swarm.attach names a container that does not exist on roost's engine");
                    return Err(RuntimeError::UnsafeNetwork(format!(
                        "swarm.attach: no container {container:?}"
                    )));
                }
                Err(e) => return Err(engine(e)),
            };
            let joined = c
                .network_settings
                .and_then(|n| n.networks)
                .is_some_and(|n| n.contains_key(&name));
            if joined {
                continue;
            }
            let request = NetworkConnectRequest {
                container: container.clone(),
                endpoint_config: None,
            };
            match docker.connect_network(&name, request).await {
                Ok(()) => {}
                // Joined meanwhile (another replica).
                Err(e) if status_of(&e) == Some(403) => {}
                Err(e) => return Err(engine(e)),
            }
        }
        Ok(id)
    }

    /// The id of network `name`, if it exists and is this workspace's;
    /// another's is refused.
    async fn network_id(&self, name: &str, slug: &str) -> Result<Option<String>, RuntimeError> {
        let docker = self.docker.client().await?;
        let n = match docker.inspect_network(name, None::<InspectNetworkOptions>).await {
            Ok(n) => n,
            Err(e) if status_of(&e) == Some(404) => return Ok(None),
            Err(e) => return Err(engine(e)),
        };
        let labels: HashMap<String, String> = n.labels.unwrap_or_default();
        let ours = self.docker.labels_in_scope(|k| labels.get(k).map(String::as_str))
            && labels.get(LABEL_WORKSPACE).map(String::as_str) == Some(slug);
        if !ours || n.driver.as_deref() != Some("overlay") {
            tracing::error!(network = %name, "a network with this workspace's name is not roost's overlay for it");
            return Err(RuntimeError::UnsafeNetwork(format!(
                "network {name:?} is not this workspace's"
            )));
        }
        Ok(n.id)
    }

    /// Detaches `swarm.attach` from workspace `slug`'s network and removes
    /// it (the service must be gone). Best effort: a leftover is reused.
    pub(super) async fn remove_network(&self, slug: &str) {
        let Ok(docker) = self.docker.client().await else { return };
        let name = network_name(self.docker.deployment(), slug);
        match self.network_id(&name, slug).await {
            Ok(Some(_)) => {}
            _ => return,
        }
        for container in &self.attach {
            let request = NetworkDisconnectRequest {
                container: container.clone(),
                force: Some(true),
            };
            let _ = docker.disconnect_network(&name, request).await;
        }
        // The swarm frees the network a moment after the last task ends.
        for _ in 0..50 {
            match docker.remove_network(&name).await {
                Ok(()) => return,
                Err(e) if status_of(&e) == Some(404) => return,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        }
        tracing::warn!(network = %name, "workspace network not removed (still in use); it is reused next time");
    }
}
