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
/// The `deployment.id` of the roost that made it.
pub const LABEL_DEPLOYMENT: &str = "roost.deployment";
/// The issuer the owner's `sub` belongs to: a `sub` counts only with it.
pub const LABEL_ISSUER: &str = "roost.issuer";
/// The default `deployment.id`; containers and volumes made before
/// deployments were labelled count as its own.
pub const DEFAULT_DEPLOYMENT: &str = "roost";

/// The container name for a slug in a deployment.
pub fn container_name(deployment: &str, slug: &str) -> String {
    format!("{deployment}-{slug}")
}

/// The per-user volume that outlives containers.
pub fn volume_name(deployment: &str, slug: &str) -> String {
    format!("{deployment}-{slug}-data")
}

/// Whose a container or volume is, by its labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// This deployment's, this issuer's and this `sub`'s.
    Mine,
    /// This deployment's, but another account's.
    Other,
    /// Not this deployment's (or not roost's at all).
    Foreign,
}

/// Reads the labels of a container or volume against a deployment, an
/// issuer and a full `sub`: the one ownership rule for everything on the
/// engine. Unlabelled deployment and issuer (made before those labels
/// existed) count as the default deployment's and the configured issuer's.
pub fn ownership(label: impl Fn(&str) -> Option<String>, deployment: &str, issuer: &str, owner: &str) -> Ownership {
    let ours = label(LABEL_MANAGED).as_deref() == Some("true")
        && match label(LABEL_DEPLOYMENT) {
            Some(d) => d == deployment,
            None => deployment == DEFAULT_DEPLOYMENT,
        };
    if !ours {
        return Ownership::Foreign;
    }
    let same_issuer = label(LABEL_ISSUER).is_none_or(|i| i == issuer);
    if same_issuer && label(LABEL_OWNER).as_deref() == Some(owner) {
        Ownership::Mine
    } else {
        Ownership::Other
    }
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
    /// `deployment.id` and `oidc.issuer`: part of names and labels.
    pub deployment: Arc<str>,
    pub issuer: Arc<str>,
    /// The volume to mount: `<deployment>-<slug>-data`, or the one this
    /// user's workspace had before slugs carried 64-bit hashes.
    pub volume: String,
    /// That older volume's name, when the user had one under another slug.
    pub legacy_volume: Option<String>,
}

impl WorkspaceSpec {
    pub fn new(
        deployment: Arc<str>,
        issuer: Arc<str>,
        slug: Arc<str>,
        owner: Arc<str>,
        config: Arc<WorkspaceConfig>,
        config_hash: Arc<str>,
    ) -> Self {
        WorkspaceSpec {
            volume: volume_name(&deployment, &slug),
            legacy_volume: None,
            slug,
            owner,
            config,
            config_hash,
            deployment,
            issuer,
        }
    }

    pub fn container_name(&self) -> String {
        container_name(&self.deployment, &self.slug)
    }

    pub fn volume_name(&self) -> String {
        self.volume.clone()
    }

    /// Labels for a container created now.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.volume_labels();
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
        labels.insert(LABEL_DEPLOYMENT.into(), self.deployment.to_string());
        labels.insert(LABEL_ISSUER.into(), self.issuer.to_string());
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
        // How roost itself shapes containers (hardening, network): bumped
        // when that changes, so existing containers are recreated with it.
        "shape": 2,
        "image": config.image,
        "command": config.command,
        "port": config.port,
        "env": config.env,
        "volume_path": config.volume_path,
        "cpus": config.cpus,
        "memory": config.memory,
        "address": format!("{:?}", config.address),
        "network": config.network,
        "egress": config.egress,
        "tmp_size": config.tmp_size,
        "user": config.user,
        "read_only": config.read_only,
        "labels": config.labels,
    });
    let digest = Sha256::digest(shape.to_string().as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}
