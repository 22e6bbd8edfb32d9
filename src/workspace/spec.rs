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
/// The profile a container runs (absent: the default).
pub const LABEL_PROFILE: &str = "roost.profile";
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
    /// The profile's name (`default` for `[workspace]`).
    pub profile: Arc<str>,
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
            profile: crate::config::DEFAULT_PROFILE.into(),
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
        labels.insert(LABEL_PROFILE.into(), self.profile.to_string());
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
            format!("ROOST_PROFILE={}", self.profile),
        ];
        env.extend(self.config.env.iter().map(|(k, v)| format!("{k}={v}")));
        env
    }
}

/// A short hash of everything in the workspace config that shapes a
/// container (and the profile's name, for a profile); a container with
/// another hash is recreated on its next wake.
pub fn config_hash(config: &WorkspaceConfig, profile: Option<&str>) -> String {
    let mut shape = serde_json::json!({
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
    // The default's hash is what it was before profiles existed.
    if let Some(name) = profile {
        shape["profile"] = serde_json::json!(name);
    }
    let digest = Sha256::digest(shape.to_string().as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{AddressMode, Config, Secrets};

    const ISSUER: &str = "https://id.example.com/";

    fn workspace_config(extra: &str) -> WorkspaceConfig {
        let text = format!(
            "[oidc]\nissuer = \"{ISSUER}\"\naudience = \"roost\"\n\
             [routing]\ndomain = \"ws.example.com\"\nroost_url = \"http://127.0.0.1:8080\"\n\
             [workspace]\nimage = \"roost-echo:test\"\n{extra}\n"
        );
        match Config::from_toml(&text, Secrets::default()) {
            Ok(config) => config.workspace,
            Err(e) => panic!("test config: {e}"),
        }
    }

    fn spec(config: WorkspaceConfig) -> WorkspaceSpec {
        let hash = config_hash(&config, None);
        WorkspaceSpec::new(
            "prod".into(),
            ISSUER.into(),
            "alice-0123".into(),
            "auth0|alice".into(),
            Arc::new(config),
            hash.into(),
        )
    }

    #[test]
    fn names_come_from_the_deployment_and_the_slug() {
        assert_eq!(container_name("roost", "alice"), "roost-alice");
        assert_eq!(volume_name("roost", "alice"), "roost-alice-data");
        let s = spec(workspace_config(""));
        assert_eq!(s.container_name(), "prod-alice-0123");
        assert_eq!(s.volume_name(), "prod-alice-0123-data");
        assert_eq!(s.volume, "prod-alice-0123-data");
        assert_eq!(s.legacy_volume, None);
    }

    #[test]
    fn container_labels_say_whose_which_and_when() {
        let s = spec(workspace_config("labels = { team = \"data\" }"));
        let before = now_secs();
        let labels = s.labels();
        let after = now_secs();
        let created: u64 = labels[LABEL_CREATED].parse().expect("a number");
        assert!(
            (before..=after).contains(&created),
            "{created} not in {before}..={after}"
        );
        let expected: BTreeMap<String, String> = [
            (LABEL_MANAGED, "true"),
            (LABEL_OWNER, "auth0|alice"),
            (LABEL_WORKSPACE, "alice-0123"),
            (LABEL_DEPLOYMENT, "prod"),
            (LABEL_ISSUER, ISSUER),
            (LABEL_CONFIG_HASH, &*s.config_hash),
            (LABEL_CREATED, &created.to_string()),
            (LABEL_PROFILE, "default"),
            ("team", "data"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(labels, expected);
        assert_eq!(s.config_hash.len(), 12);
    }

    #[test]
    fn volume_labels_have_no_hash_or_creation_time() {
        let s = spec(workspace_config(""));
        let expected: BTreeMap<String, String> = [
            (LABEL_MANAGED, "true"),
            (LABEL_OWNER, "auth0|alice"),
            (LABEL_WORKSPACE, "alice-0123"),
            (LABEL_DEPLOYMENT, "prod"),
            (LABEL_ISSUER, ISSUER),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(s.volume_labels(), expected);
    }

    #[test]
    fn roosts_labels_win_over_configured_ones() {
        let mut config = workspace_config("");
        config.labels = [(LABEL_OWNER, "auth0|mallory"), (LABEL_MANAGED, "false"), ("team", "x")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let labels = spec(config).labels();
        assert_eq!(labels[LABEL_OWNER], "auth0|alice");
        assert_eq!(labels[LABEL_MANAGED], "true");
        assert_eq!(labels["team"], "x");
    }

    #[test]
    fn env_is_roosts_variables_then_the_configured_ones() {
        let s = spec(workspace_config(
            "volume_path = \"/home/user\"\nenv = { ZED = \"last\", ALPHA = \"a=b\" }",
        ));
        assert_eq!(
            s.env(),
            [
                "ROOST_USER=auth0|alice",
                "ROOST_WORKSPACE=alice-0123",
                "ROOST_VOLUME=/home/user",
                "ROOST_PROFILE=default",
                "ALPHA=a=b",
                "ZED=last",
            ]
        );
        let plain = spec(workspace_config(""));
        assert_eq!(
            plain.env(),
            [
                "ROOST_USER=auth0|alice",
                "ROOST_WORKSPACE=alice-0123",
                "ROOST_VOLUME=/data",
                "ROOST_PROFILE=default"
            ]
        );
    }

    #[test]
    fn the_config_hash_is_stable_for_equal_configs() {
        let a = workspace_config("env = { A = \"1\", B = \"2\" }");
        let b = workspace_config("env = { B = \"2\", A = \"1\" }");
        assert_eq!(config_hash(&a, None), config_hash(&b, None));
        assert_eq!(config_hash(&a, None), config_hash(&a.clone(), None));
        let hash = config_hash(&a, None);
        assert_eq!(hash.len(), 12);
        assert!(
            hash.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
            "{hash}"
        );
    }

    #[test]
    fn every_shaping_key_changes_the_config_hash() {
        let base = workspace_config("");
        let base_hash = config_hash(&base, None);
        type Change = fn(&mut WorkspaceConfig);
        let changes: [(&str, Change); 14] = [
            ("image", |c| c.image = "roost-echo:other".into()),
            ("command", |c| c.command = Some(vec!["sleep".into(), "1".into()])),
            ("port", |c| c.port += 1),
            ("env", |c| {
                c.env.insert("X".into(), "1".into());
            }),
            ("volume_path", |c| c.volume_path = "/elsewhere".into()),
            ("cpus", |c| c.cpus += 0.5),
            ("memory", |c| c.memory += 1),
            ("address", |c| {
                c.address = match c.address {
                    AddressMode::Network => AddressMode::Published,
                    AddressMode::Published => AddressMode::Network,
                }
            }),
            ("network", |c| c.network = "other-net".into()),
            ("egress", |c| c.egress = !c.egress),
            ("tmp_size", |c| c.tmp_size += 1),
            ("user", |c| c.user = Some("1000:1000".into())),
            ("read_only", |c| c.read_only = !c.read_only),
            ("labels", |c| {
                c.labels.insert("team".into(), "data".into());
            }),
        ];
        let mut seen = vec![base_hash.clone()];
        for (key, change) in changes {
            let mut changed = base.clone();
            change(&mut changed);
            let hash = config_hash(&changed, None);
            assert_ne!(hash, base_hash, "changing {key} kept the hash");
            assert!(!seen.contains(&hash), "changing {key} gave a hash already seen");
            seen.push(hash);
        }
    }

    #[test]
    fn keys_that_do_not_shape_a_container_keep_the_hash() {
        let base = workspace_config("");
        let mut changed = base.clone();
        changed.idle_timeout += Duration::from_secs(60);
        changed.max_lifetime += Duration::from_secs(60);
        changed.start_timeout += Duration::from_secs(1);
        changed.max_running += 1;
        changed.max_concurrent_spawns += 1;
        changed.auth_wait += Duration::from_secs(1);
        changed.stop_timeout += Duration::from_secs(1);
        changed.drain_grace += Duration::from_secs(1);
        assert_eq!(config_hash(&changed, None), config_hash(&base, None));
    }

    #[test]
    fn ownership_reads_deployment_issuer_and_owner() {
        let labels = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        };
        let mine = labels(&[
            (LABEL_MANAGED, "true"),
            (LABEL_DEPLOYMENT, "prod"),
            (LABEL_ISSUER, ISSUER),
            (LABEL_OWNER, "auth0|alice"),
        ]);
        assert_eq!(ownership(mine, "prod", ISSUER, "auth0|alice"), Ownership::Mine);
        assert_eq!(ownership(mine, "prod", ISSUER, "auth0|bob"), Ownership::Other);
        assert_eq!(
            ownership(mine, "prod", "https://other.example.com/", "auth0|alice"),
            Ownership::Other
        );
        assert_eq!(ownership(mine, "staging", ISSUER, "auth0|alice"), Ownership::Foreign);
        // Made before deployments and issuers were labelled: the default's.
        let old = labels(&[(LABEL_MANAGED, "true"), (LABEL_OWNER, "auth0|alice")]);
        assert_eq!(
            ownership(old, DEFAULT_DEPLOYMENT, ISSUER, "auth0|alice"),
            Ownership::Mine
        );
        assert_eq!(ownership(old, "prod", ISSUER, "auth0|alice"), Ownership::Foreign);
        let unmanaged = labels(&[(LABEL_OWNER, "auth0|alice")]);
        assert_eq!(
            ownership(unmanaged, DEFAULT_DEPLOYMENT, ISSUER, "auth0|alice"),
            Ownership::Foreign
        );
    }
}
