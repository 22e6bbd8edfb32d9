//! What a user's workspace container is: its names, labels, environment and
//! the hash of the workspace config it was made from. The engine is the
//! source of truth; these labels are how roost finds its containers again.

use std::collections::BTreeMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::clock::now_secs;
use crate::config::WorkspaceConfig;

pub const LABEL_MANAGED: &str = "roost.managed";
pub const LABEL_OWNER: &str = "roost.owner";
pub const LABEL_WORKSPACE: &str = "roost.workspace";
pub const LABEL_CONFIG_HASH: &str = "roost.config-hash";
pub const LABEL_CREATED: &str = "roost.created";

/// The container name for a slug.
pub fn container_name(slug: &str) -> String {
    format!("roost-{slug}")
}

/// The per-user volume that outlives containers.
pub fn volume_name(slug: &str) -> String {
    format!("roost-{slug}-data")
}

/// Everything needed to create one user's workspace container.
#[derive(Debug, Clone)]
pub struct WorkspaceSpec {
    pub slug: Arc<str>,
    /// The full `sub` of the owner.
    pub owner: Arc<str>,
    pub config: Arc<WorkspaceConfig>,
    /// [`config_hash`] of `config`.
    pub config_hash: Arc<str>,
}

impl WorkspaceSpec {
    pub fn container_name(&self) -> String {
        container_name(&self.slug)
    }

    pub fn volume_name(&self) -> String {
        volume_name(&self.slug)
    }

    /// Labels for a container created now.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.config.labels.clone();
        labels.insert(LABEL_MANAGED.into(), "true".into());
        labels.insert(LABEL_OWNER.into(), self.owner.to_string());
        labels.insert(LABEL_WORKSPACE.into(), self.slug.to_string());
        labels.insert(LABEL_CONFIG_HASH.into(), self.config_hash.to_string());
        labels.insert(LABEL_CREATED.into(), now_secs().to_string());
        labels
    }

    /// Labels for the volume (no creation time or hash: it outlives both).
    pub fn volume_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.config.labels.clone();
        labels.insert(LABEL_MANAGED.into(), "true".into());
        labels.insert(LABEL_OWNER.into(), self.owner.to_string());
        labels.insert(LABEL_WORKSPACE.into(), self.slug.to_string());
        labels
    }

    /// `NAME=value` environment: roost's own variables, then `workspace.env`.
    pub fn env(&self) -> Vec<String> {
        let mut env = vec![
            format!("ROOST_USER={}", self.owner),
            format!("ROOST_WORKSPACE={}", self.slug),
            format!("ROOST_VOLUME={}", self.config.volume_path),
        ];
        env.extend(self.config.env.iter().map(|(k, v)| format!("{k}={v}")));
        env
    }
}

/// A short hash of everything in the workspace config that shapes a
/// container; a container with another hash is recreated on its next wake.
pub fn config_hash(config: &WorkspaceConfig) -> String {
    let shape = serde_json::json!({
        "image": config.image,
        "command": config.command,
        "port": config.port,
        "env": config.env,
        "volume_path": config.volume_path,
        "cpus": config.cpus,
        "memory": config.memory,
        "address": format!("{:?}", config.address),
        "network": config.network,
        "labels": config.labels,
    });
    let digest = Sha256::digest(shape.to_string().as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}
