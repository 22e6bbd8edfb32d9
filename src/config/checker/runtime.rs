//! `workspace.runtime` and `[swarm]`: what runs workspaces, checked with
//! the `[workspace]` keys that only one runtime can honour.

use super::super::raw::RawSwarm;
use super::super::values::Lenient;
use super::super::{AddressMode, RuntimeChoice, SwarmConfig, WorkspaceConfig};
use super::Checker;

pub(super) fn runtime(
    raw: Option<Lenient<String>>,
    swarm: RawSwarm,
    workspace: Option<&WorkspaceConfig>,
    c: &mut Checker,
) -> Option<RuntimeChoice> {
    let kind = c.parsed("workspace.runtime", raw, Some("docker"), |s| match s {
        "docker" | "swarm" => Ok(s.to_string()),
        _ => Err(format!("{s:?} is not \"docker\" or \"swarm\"")),
    })?;
    if kind == "docker" {
        for (key, set) in [
            ("swarm.attach", swarm.attach.is_some()),
            ("swarm.volume_driver", swarm.volume_driver.is_some()),
        ] {
            if set {
                c.error(key, "only with workspace.runtime = \"swarm\"");
            }
        }
        return Some(RuntimeChoice::Docker);
    }
    if workspace.is_some_and(|w| w.address == AddressMode::Published) {
        c.error(
            "workspace.address",
            "\"published\" is not for workspace.runtime = \"swarm\": Traefik reaches a workspace on its own overlay network (leave it out)",
        );
    }
    if workspace.is_some_and(|w| w.pause_after.is_some()) {
        c.error(
            "workspace.pause_after",
            "is not for workspace.runtime = \"swarm\": a paused task's container is frozen on its node, out of the service's sight (leave it out)",
        );
    }
    let attach = c
        .value("swarm.attach", swarm.attach, None)
        .and_then(|names: Vec<String>| {
            let bad = names.iter().find(|n| !is_container_name(n));
            match bad {
                _ if names.is_empty() => {
                    c.error(
                        "swarm.attach",
                        "must name at least one container: Traefik's, which reaches workspaces on their networks",
                    );
                    None
                }
                Some(n) => {
                    c.error("swarm.attach", format!("{n:?} is not a container name"));
                    None
                }
                None => Some(names),
            }
        });
    let volume_driver = c.optional("swarm.volume_driver", swarm.volume_driver);
    if volume_driver.as_deref().is_some_and(|d| d.trim().is_empty()) {
        c.error(
            "swarm.volume_driver",
            "must not be empty (leave it out for local volumes)",
        );
        return None;
    }
    Some(RuntimeChoice::Swarm(SwarmConfig {
        attach: attach?,
        volume_driver,
    }))
}

/// Docker's container names: `[A-Za-z0-9][A-Za-z0-9_.-]*`.
fn is_container_name(s: &str) -> bool {
    s.len() <= 128
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}
