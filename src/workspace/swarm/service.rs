//! What a workspace service is made of, for the swarm: one replica of the
//! workspace container with the Docker runtime's hardening (every
//! capability dropped, `no-new-privileges` where the engine honours it, a
//! pids limit, CPU and memory limits, a tmpfs at `/tmp`, no Docker socket),
//! on the workspace's own overlay network, pinned to the node of its volume
//! unless a volume driver serves every node.

use std::collections::HashMap;

use bollard::models::{
    EndpointSpec, EndpointSpecModeEnum, Limit, Mount, MountTmpfsOptions, MountType, MountVolumeOptions,
    MountVolumeOptionsDriverConfig, NetworkAttachmentConfig, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated,
    TaskSpec, TaskSpecContainerSpec, TaskSpecContainerSpecPrivileges, TaskSpecPlacement, TaskSpecResources,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};

use super::super::docker::PIDS_LIMIT;
use super::super::spec::WorkspaceSpec;

/// Where the service runs: the volume driver, or the node it is pinned to.
#[derive(Debug, Clone)]
pub enum Placement {
    /// Local volumes: on this node only.
    Node(String),
    /// Volumes of this driver, which every node reaches.
    Driver(String),
}

/// The service spec for `spec`, with `replicas` tasks, on `network`.
pub fn service_spec(spec: &WorkspaceSpec, network: &str, placement: &Placement, replicas: i64) -> ServiceSpec {
    let config = &spec.config;
    let labels: HashMap<String, String> = spec.labels().into_iter().collect();
    let memory = i64::try_from(config.memory).ok();
    let mut volume = MountVolumeOptions {
        labels: Some(spec.volume_labels().into_iter().collect()),
        ..Default::default()
    };
    let constraints = match placement {
        Placement::Node(id) => vec![format!("node.id=={id}")],
        Placement::Driver(driver) => {
            volume.driver_config = Some(MountVolumeOptionsDriverConfig {
                name: Some(driver.clone()),
                options: None,
            });
            Vec::new()
        }
    };
    let mounts = vec![
        Mount {
            target: Some(config.volume_path.clone()),
            source: Some(spec.volume_name()),
            typ: Some(MountType::VOLUME),
            volume_options: Some(volume),
            ..Default::default()
        },
        Mount {
            target: Some("/tmp".into()),
            typ: Some(MountType::TMPFS),
            tmpfs_options: Some(MountTmpfsOptions {
                size_bytes: i64::try_from(config.tmp_size).ok(),
                mode: Some(0o1777),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    let container = TaskSpecContainerSpec {
        image: Some(config.image.clone()),
        // `command` replaces the image's CMD, as in the Docker runtime.
        args: config.command.clone(),
        env: Some(spec.env()),
        labels: Some(labels.clone()),
        user: config.user.clone(),
        read_only: Some(config.read_only),
        mounts: Some(mounts),
        capability_drop: Some(vec!["ALL".into()]),
        privileges: Some(TaskSpecContainerSpecPrivileges {
            no_new_privileges: Some(true),
            ..Default::default()
        }),
        stop_grace_period: i64::try_from(config.stop_timeout.as_nanos()).ok(),
        ..Default::default()
    };
    let task = TaskSpec {
        container_spec: Some(container),
        resources: Some(TaskSpecResources {
            limits: Some(Limit {
                nano_cpus: Some((config.cpus * 1e9) as i64),
                memory_bytes: memory,
                pids: Some(PIDS_LIMIT),
            }),
            ..Default::default()
        }),
        // An app that exits stays down (as a container would): the next
        // request starts it again, or the start reports it failed.
        restart_policy: Some(TaskSpecRestartPolicy {
            condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
            ..Default::default()
        }),
        placement: Some(TaskSpecPlacement {
            constraints: Some(constraints),
            ..Default::default()
        }),
        networks: Some(vec![NetworkAttachmentConfig {
            target: Some(network.to_string()),
            ..Default::default()
        }]),
        ..Default::default()
    };
    ServiceSpec {
        name: Some(spec.container_name()),
        labels: Some(labels),
        task_template: Some(task),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: Some(replicas),
            }),
            ..Default::default()
        }),
        // No virtual IP: containers attached to an overlay outside the
        // swarm (Traefik, roost) cannot reach one on every engine; they
        // reach the task's own address.
        endpoint_spec: Some(EndpointSpec {
            mode: Some(EndpointSpecModeEnum::DNSRR),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// How many tasks the service asks for.
pub fn replicas(s: &ServiceSpec) -> i64 {
    s.mode
        .as_ref()
        .and_then(|m| m.replicated.as_ref())
        .and_then(|r| r.replicas)
        .unwrap_or(0)
}

/// `s` asking for `n` tasks; `restart` also makes the swarm replace a task
/// that ended (a failed one stays otherwise).
pub fn scaled(mut s: ServiceSpec, n: i64, restart: bool) -> ServiceSpec {
    s.mode = Some(ServiceSpecMode {
        replicated: Some(ServiceSpecModeReplicated { replicas: Some(n) }),
        ..Default::default()
    });
    if restart {
        if let Some(task) = s.task_template.as_mut() {
            task.force_update = Some(task.force_update.unwrap_or(0).wrapping_add(1));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::{Config, WorkspaceConfig};
    use crate::workspace::spec::{config_hash, LABEL_OWNER};

    fn spec(extra: &str) -> WorkspaceSpec {
        let text = format!(
            "[oidc]\nissuer = \"https://i/\"\naudience = \"a\"\n[routing]\ndomain = \"ws.example.com\"\nroost_url = \"http://r:1\"\n[workspace]\nimage = \"x\"\nmemory = \"512MiB\"\n{extra}"
        );
        let config: WorkspaceConfig = Config::from_toml(&text, Default::default()).unwrap().workspace;
        WorkspaceSpec::new(
            "roost".into(),
            "https://i/".into(),
            "alice".into(),
            "auth0|alice".into(),
            Arc::new(config.clone()),
            config_hash(&config, None).into(),
        )
    }

    #[test]
    fn hardened_pinned_and_alone_on_its_network() {
        let s = service_spec(&spec(""), "roost-alice-net", &Placement::Node("n1".into()), 1);
        assert_eq!(s.name.as_deref(), Some("roost-alice"));
        assert_eq!(s.labels.as_ref().unwrap()[LABEL_OWNER], "auth0|alice");
        assert_eq!(replicas(&s), 1);
        let task = s.task_template.unwrap();
        let c = task.container_spec.unwrap();
        assert_eq!(c.capability_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(c.privileges.unwrap().no_new_privileges, Some(true));
        assert_eq!(
            c.labels.unwrap()[LABEL_OWNER],
            "auth0|alice",
            "task containers are found by label too"
        );
        let mounts = c.mounts.unwrap();
        assert_eq!(mounts[0].source.as_deref(), Some("roost-alice-data"));
        assert_eq!(mounts[1].target.as_deref(), Some("/tmp"));
        assert!(mounts
            .iter()
            .all(|m| m.source.as_deref() != Some("/var/run/docker.sock")));
        let limits = task.resources.unwrap().limits.unwrap();
        assert_eq!(limits.memory_bytes, Some(512 * 1024 * 1024));
        assert_eq!(limits.pids, Some(PIDS_LIMIT));
        assert_eq!(task.placement.unwrap().constraints.unwrap(), ["node.id==n1"]);
        let networks = task.networks.unwrap();
        assert_eq!(networks.len(), 1);
        assert_eq!(networks[0].target.as_deref(), Some("roost-alice-net"));
    }

    #[test]
    fn a_volume_driver_frees_the_placement() {
        let s = service_spec(&spec(""), "n", &Placement::Driver("nfs".into()), 0);
        let task = s.task_template.unwrap();
        assert!(task.placement.unwrap().constraints.unwrap().is_empty());
        let volume = task.container_spec.unwrap().mounts.unwrap()[0]
            .volume_options
            .clone()
            .unwrap();
        assert_eq!(volume.driver_config.unwrap().name.as_deref(), Some("nfs"));
    }

    #[test]
    fn scaling_keeps_the_rest_and_a_restart_forces_a_new_task() {
        let s = service_spec(
            &spec("command = [\"/echo\", \"-v\"]"),
            "n",
            &Placement::Node("n1".into()),
            1,
        );
        let down = scaled(s.clone(), 0, false);
        assert_eq!(replicas(&down), 0);
        assert_eq!(down.task_template, s.task_template);
        let again = scaled(down, 1, true);
        assert_eq!(again.task_template.as_ref().unwrap().force_update, Some(1));
        let args = again.task_template.unwrap().container_spec.unwrap().args;
        assert_eq!(args, Some(vec!["/echo".to_string(), "-v".to_string()]));
    }
}
