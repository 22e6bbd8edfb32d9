//! The one bridge network a deployment's workspaces share
//! (`workspace.network`): inter-container traffic off, so no workspace
//! reaches another, and internal (no default route: no internet, no
//! link-local, no host address but the bridge's own) unless
//! `workspace.egress`. Traefik and roost reach workspaces from the host,
//! through the bridge's route.
//!
//! roost creates the network when it is missing and checks an existing one
//! (made by another roost, or by the operator) before the first container
//! joins it. Creation is safe when several roosts (or tests) race: the
//! bridge's interface name is derived from the network name, and the engine
//! refuses a second network with the same interface (403), where its name
//! check (409) is missing before API 1.44 (bollard cannot send
//! `CheckDuplicate`). Either answer means "look again".

use std::collections::HashMap;

use bollard::errors::Error as BollardError;
use bollard::models::{NetworkCreateRequest, NetworkInspect};
use bollard::query_parameters::InspectNetworkOptions;
use bollard::Docker;
use sha2::{Digest, Sha256};

use super::super::runtime::RuntimeError;
use super::super::spec::{LABEL_DEPLOYMENT, LABEL_MANAGED};
use super::{engine, status_of};
use crate::config::WorkspaceConfig;

/// Off means the bridge drops traffic between its containers.
pub const ICC_OPTION: &str = "com.docker.network.bridge.enable_icc";
/// The host-side interface name of the bridge.
pub const BRIDGE_NAME_OPTION: &str = "com.docker.network.bridge.name";

/// The host interface of a network roost creates: `roost` and 8 hex digits
/// of the network name's SHA-256 (13 characters; Linux allows 15), the same
/// for every roost that uses the name, so that host firewall rules can name
/// every workspace bridge as `-i roost+`.
pub fn bridge_name(network: &str) -> String {
    let digest = Sha256::digest(network.as_bytes());
    let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("roost{hex}")
}

/// What Go's `strconv.ParseBool` (the engine's reading of options) takes as false.
fn is_false(v: &str) -> bool {
    matches!(v, "0" | "f" | "F" | "false" | "FALSE" | "False")
}

/// Why `net` would not keep workspaces apart, if it would not.
pub fn unsafe_because(net: &NetworkInspect, egress: bool) -> Option<String> {
    let driver = net.driver.as_deref().unwrap_or("");
    if driver != "bridge" {
        return Some(format!(
            "its driver is {driver:?}, not \"bridge\" (roost isolates workspaces on a local bridge)"
        ));
    }
    let icc = net.options.as_ref().and_then(|o| o.get(ICC_OPTION));
    if !icc.is_some_and(|v| is_false(v)) {
        return Some(format!(
            "containers on it can reach each other: it needs the option {ICC_OPTION}=false"
        ));
    }
    if net.enable_ipv6 == Some(true) {
        return Some(
            "IPv6 is enabled on it (the engine's isolation rules cover IPv4 only unless ip6tables is on)".into(),
        );
    }
    let internal = net.internal.unwrap_or(false);
    if !egress && !internal {
        return Some(
            "it is not internal, so workspaces would reach the internet, link-local addresses (cloud metadata) \
             and the host's addresses: create it with --internal, or set workspace.egress = true"
                .into(),
        );
    }
    if egress && internal {
        return Some(
            "it is internal, but workspace.egress = true (and Docker publishes no port of an internal network): \
             remove it (docker network rm, once no container uses it) so roost makes it anew, or set workspace.egress = false"
                .into(),
        );
    }
    None
}

fn unsafe_network(name: &str, why: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::UnsafeNetwork(format!("workspace.network {name:?} cannot hold workspaces: {why}"))
}

async fn inspect(docker: &Docker, name: &str) -> Result<Option<NetworkInspect>, RuntimeError> {
    match docker.inspect_network(name, None::<InspectNetworkOptions>).await {
        Ok(n) => Ok(Some(n)),
        Err(e) if status_of(&e) == Some(404) => Ok(None),
        Err(e) => Err(engine(e)),
    }
}

/// The request that creates `workspace.network` for a deployment.
pub fn create_request(config: &WorkspaceConfig, deployment: &str) -> NetworkCreateRequest {
    let mut labels: HashMap<String, String> = config.labels.clone().into_iter().collect();
    labels.insert(LABEL_MANAGED.into(), "true".into());
    labels.insert(LABEL_DEPLOYMENT.into(), deployment.into());
    NetworkCreateRequest {
        name: config.network.clone(),
        driver: Some("bridge".into()),
        internal: Some(!config.egress),
        enable_ipv6: Some(false),
        options: Some(HashMap::from([
            (ICC_OPTION.into(), "false".into()),
            (BRIDGE_NAME_OPTION.into(), bridge_name(&config.network)),
        ])),
        labels: Some(labels),
        ..Default::default()
    }
}

/// Makes sure `workspace.network` exists and keeps workspaces apart:
/// creates it when missing, checks it when present.
pub async fn ensure(docker: &Docker, config: &WorkspaceConfig, deployment: &str) -> Result<(), RuntimeError> {
    let name = &config.network;
    let net = match inspect(docker, name).await? {
        Some(net) => net,
        None => match docker.create_network(create_request(config, deployment)).await {
            Ok(_) => {
                tracing::info!(network = %name, bridge = %bridge_name(name), egress = config.egress, "created the workspace network");
                return Ok(());
            }
            // Created meanwhile by another roost: check theirs.
            Err(e) if matches!(status_of(&e), Some(403 | 409)) => match inspect(docker, name).await? {
                Some(net) => net,
                None => return Err(unsafe_network(name, create_failed(&e))),
            },
            Err(e) if status_of(&e).is_some_and(|s| (400..500).contains(&s)) => {
                return Err(unsafe_network(name, create_failed(&e)));
            }
            Err(e) => return Err(engine(e)),
        },
    };
    match unsafe_because(&net, config.egress) {
        None => Ok(()),
        Some(why) => Err(unsafe_network(name, why)),
    }
}

fn create_failed(e: &BollardError) -> String {
    match e {
        BollardError::DockerResponseServerError { message, .. } => {
            format!("the engine refused to create it: {message}")
        }
        other => format!("the engine refused to create it: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(driver: &str, icc: Option<&str>, internal: bool) -> NetworkInspect {
        NetworkInspect {
            driver: Some(driver.into()),
            internal: Some(internal),
            options: Some(
                icc.map(|v| (ICC_OPTION.to_string(), v.to_string()))
                    .into_iter()
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn bridge_names_fit_an_interface_name_and_share_a_prefix() {
        let a = bridge_name("roost-workspaces");
        assert_eq!(a.len(), 13);
        assert!(a.starts_with("roost"));
        assert_eq!(a, bridge_name("roost-workspaces"));
        assert_ne!(a, bridge_name("roost-other"));
    }

    #[test]
    fn only_an_isolating_bridge_is_accepted() {
        assert_eq!(unsafe_because(&net("bridge", Some("false"), true), false), None);
        assert_eq!(unsafe_because(&net("bridge", Some("0"), true), false), None);
        assert_eq!(unsafe_because(&net("bridge", Some("false"), false), true), None);
        let refused = [
            (net("overlay", Some("false"), true), false, "driver"),
            (net("bridge", None, true), false, "reach each other"),
            (net("bridge", Some("true"), true), false, "reach each other"),
            (net("bridge", Some("false"), false), false, "not internal"),
            (net("bridge", Some("false"), true), true, "is internal"),
        ];
        for (n, egress, why) in refused {
            let found = unsafe_because(&n, egress).unwrap_or_default();
            assert!(found.contains(why), "{why}: {found}");
        }
        let mut v6 = net("bridge", Some("false"), true);
        v6.enable_ipv6 = Some(true);
        assert!(unsafe_because(&v6, false).unwrap().contains("IPv6"));
    }

    #[test]
    fn the_network_roost_creates_passes_its_own_check() {
        let config = crate::config::Config::from_toml(
            "[oidc]\nissuer = \"https://i/\"\naudience = \"a\"\n[routing]\ndomain = \"ws.example.com\"\nroost_url = \"http://r:1\"\n[workspace]\nimage = \"x\"\n",
            Default::default(),
        )
        .unwrap()
        .workspace;
        for egress in [false, true] {
            let req = create_request(
                &WorkspaceConfig {
                    egress,
                    ..config.clone()
                },
                "roost",
            );
            let made = NetworkInspect {
                driver: req.driver.clone(),
                internal: req.internal,
                enable_ipv6: req.enable_ipv6,
                options: req.options.clone(),
                ..Default::default()
            };
            assert_eq!(unsafe_because(&made, egress), None);
            let labels = req.labels.unwrap();
            assert_eq!(labels[LABEL_MANAGED], "true");
            assert_eq!(labels[LABEL_DEPLOYMENT], "roost");
        }
    }
}
