//! What a workspace container is made of, for the engine: the hardened
//! host config, the network, the published port, and where the workspace
//! answers once it runs.
//!
//! Hardening defaults: every capability dropped, `no-new-privileges`, not
//! privileged, a pids limit, CPU and memory limits with no swap beyond the
//! memory limit, a `nosuid,nodev` tmpfs at `/tmp`, no Docker socket, and
//! only `workspace.network` (inter-container traffic off, internal unless
//! `workspace.egress`). Opt-in: `workspace.user`, `workspace.read_only`.

use std::collections::HashMap;
use std::net::SocketAddr;

use bollard::models::{ContainerCreateBody, ContainerInspectResponse, HostConfig, PortBinding};

use super::super::spec::WorkspaceSpec;
use crate::config::AddressMode;

/// Most processes a workspace may run.
pub const PIDS_LIMIT: i64 = 1024;

/// The create request for `spec`'s container.
pub fn create_body(spec: &WorkspaceSpec) -> ContainerCreateBody {
    let config = &spec.config;
    let port = format!("{}/tcp", config.port);
    let memory = i64::try_from(config.memory).ok();
    let mut host = HostConfig {
        binds: Some(vec![format!("{}:{}", spec.volume_name(), config.volume_path)]),
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges:true".into()]),
        privileged: Some(false),
        pids_limit: Some(PIDS_LIMIT),
        nano_cpus: Some((config.cpus * 1e9) as i64),
        memory,
        // Swap counts in MemorySwap: equal to Memory means none beyond it.
        memory_swap: memory,
        tmpfs: Some(HashMap::from([(
            "/tmp".to_string(),
            format!("rw,nosuid,nodev,size={},mode=1777", config.tmp_size),
        )])),
        readonly_rootfs: Some(config.read_only),
        network_mode: Some(config.network.clone()),
        ..Default::default()
    };
    if config.address == AddressMode::Published {
        let binding = PortBinding {
            host_ip: Some("127.0.0.1".into()),
            host_port: Some(String::new()),
        };
        host.port_bindings = Some(HashMap::from([(port.clone(), Some(vec![binding]))]));
    }
    ContainerCreateBody {
        image: Some(config.image.clone()),
        cmd: config.command.clone(),
        user: config.user.clone(),
        env: Some(spec.env()),
        labels: Some(spec.labels().into_iter().collect()),
        exposed_ports: Some(vec![port]),
        host_config: Some(host),
        ..Default::default()
    }
}

/// True when the container is attached to `network` and to nothing else
/// (one made by an older roost sits on Docker's default bridge, where
/// containers reach each other).
pub fn only_on(c: &ContainerInspectResponse, network: &str) -> bool {
    let networks = c.network_settings.as_ref().and_then(|n| n.networks.as_ref());
    networks.is_some_and(|n| n.len() == 1 && n.contains_key(network))
}

/// Where the workspace port answers: the published loopback port, or the
/// container's address on `workspace.network`.
pub fn address(c: &ContainerInspectResponse, spec: &WorkspaceSpec) -> Option<SocketAddr> {
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
            let ip = net
                .networks
                .as_ref()?
                .get(&spec.config.network)?
                .ip_address
                .as_deref()?
                .parse()
                .ok()?;
            Some(SocketAddr::new(ip, spec.config.port))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::{Config, WorkspaceConfig};

    fn config(extra: &str) -> WorkspaceConfig {
        let text = format!(
            "[oidc]\nissuer = \"https://i/\"\naudience = \"a\"\n[routing]\ndomain = \"ws.example.com\"\nroost_url = \"http://r:1\"\n[workspace]\nimage = \"x\"\nmemory = \"512MiB\"\n{extra}"
        );
        Config::from_toml(&text, Default::default()).unwrap().workspace
    }

    fn spec(config: WorkspaceConfig) -> WorkspaceSpec {
        WorkspaceSpec::new(
            "roost".into(),
            "https://i/".into(),
            "alice".into(),
            "auth0|alice".into(),
            Arc::new(config.clone()),
            super::super::super::spec::config_hash(&config, None).into(),
        )
    }

    #[test]
    fn hardened_by_default() {
        let body = create_body(&spec(config("")));
        let host = body.host_config.unwrap();
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(host.privileged, Some(false));
        assert_eq!(host.memory, Some(512 * 1024 * 1024));
        assert_eq!(host.memory_swap, host.memory, "no swap beyond memory");
        assert_eq!(host.tmpfs.unwrap()["/tmp"], "rw,nosuid,nodev,size=268435456,mode=1777");
        assert_eq!(host.readonly_rootfs, Some(false));
        assert_eq!(host.network_mode.as_deref(), Some("roost-workspaces"));
        assert_eq!(host.port_bindings, None, "nothing published in network mode");
        assert_eq!(body.user, None, "the image's user");
    }

    #[test]
    fn opt_in_settings_reach_the_container() {
        let c = config("address = \"published\"\negress = true\nuser = \"1000:1000\"\nread_only = true\ntmp_size = \"64MiB\"\nnetwork = \"ws-net\"");
        let body = create_body(&spec(c));
        let host = body.host_config.unwrap();
        assert_eq!(body.user.as_deref(), Some("1000:1000"));
        assert_eq!(host.readonly_rootfs, Some(true));
        assert!(host.tmpfs.unwrap()["/tmp"].contains("size=67108864"));
        assert_eq!(host.network_mode.as_deref(), Some("ws-net"));
        let bindings = host.port_bindings.unwrap();
        let b = bindings["8080/tcp"].as_ref().unwrap();
        assert_eq!(b[0].host_ip.as_deref(), Some("127.0.0.1"));
    }
}
