//! `[workspace]`: the image and how its containers are shaped, limited,
//! networked and timed.

use super::super::raw::RawWorkspace;
use super::super::values::parse_size;
use super::super::*;
use super::Checker;

pub(super) fn workspace(raw: RawWorkspace, default_network: &str, c: &mut Checker) -> Option<WorkspaceConfig> {
    workspace_at("workspace", raw, default_network, c)
}

/// `max_lifetime` is no shorter than `idle_timeout` (checked on the
/// finished config: a profile may set one and inherit the other).
pub(super) fn lifetimes_agree(section: &str, config: &WorkspaceConfig, c: &mut Checker) -> bool {
    if config.max_lifetime < config.idle_timeout {
        c.error(
            &format!("{section}.max_lifetime"),
            format!(
                "{} is shorter than {section}.idle_timeout ({})",
                humantime::format_duration(config.max_lifetime),
                humantime::format_duration(config.idle_timeout)
            ),
        );
        return false;
    }
    true
}

/// The keys of `[workspace]` (or of a profile, under `section`), checked.
pub(super) fn workspace_at(
    section: &str,
    raw: RawWorkspace,
    default_network: &str,
    c: &mut Checker,
) -> Option<WorkspaceConfig> {
    let k = |leaf: &str| format!("{section}.{leaf}");
    let image = c.non_empty(&k("image"), raw.image, None);
    let command = c.optional(&k("command"), raw.command);
    if command.as_ref().is_some_and(|cmd| cmd.is_empty()) {
        c.error(
            &k("command"),
            "must not be an empty list (leave it out to use the image's)",
        );
    }
    let port = c
        .value(&k("port"), raw.port, Some(8080))
        .and_then(|p| match u16::try_from(p) {
            Ok(p) if p > 0 => Some(p),
            _ => {
                c.error(&k("port"), format!("{p} is not a port (1 to 65535)"));
                None
            }
        });
    let env = c.value(&k("env"), raw.env, Some(BTreeMap::new())).and_then(|env| {
        let bad: Vec<_> = env
            .keys()
            .filter(|k| {
                k.is_empty()
                    || k.starts_with(|ch: char| ch.is_ascii_digit())
                    || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    || k.starts_with("ROOST_")
            })
            .cloned()
            .collect();
        if bad.is_empty() {
            Some(env)
        } else {
            c.error(
                &k("env"),
                format!("{bad:?}: names must be [A-Za-z_][A-Za-z0-9_]* and not start with ROOST_ (roost sets those)"),
            );
            None
        }
    });
    let volume_path = c.parsed(&k("volume_path"), raw.volume_path, Some("/data"), |s| {
        if s.starts_with('/') && s != "/" && !s.contains(':') {
            Ok(s.to_string())
        } else {
            Err(format!("{s:?} is not an absolute path below / inside the container"))
        }
    });
    let cpus = c.value(&k("cpus"), raw.cpus, Some(1.0)).and_then(|n| {
        if n.is_finite() && (0.01..=512.0).contains(&n) {
            Some(n)
        } else {
            c.error(&k("cpus"), format!("{n} is out of range (0.01 to 512)"));
            None
        }
    });
    let memory = c
        .parsed(&k("memory"), raw.memory, Some("1GiB"), parse_size)
        .and_then(|m| {
            if m >= 6 * 1024 * 1024 {
                Some(m)
            } else {
                c.error(&k("memory"), format!("{m} bytes is below the engine's minimum of 6MiB"));
                None
            }
        });
    let idle_timeout = c.duration(&k("idle_timeout"), raw.idle_timeout, "30m");
    let max_lifetime = c.duration(&k("max_lifetime"), raw.max_lifetime, "24h");
    let start_timeout = c.duration(&k("start_timeout"), raw.start_timeout, "60s");
    let pause_after = match raw.pause_after {
        Some(v) => c.duration(&k("pause_after"), Some(v), "0s").map(Some),
        None => Some(None),
    };
    if let (Some(Some(pause)), Some(idle)) = (pause_after, idle_timeout) {
        if pause >= idle {
            c.error(
                &k("pause_after"),
                format!(
                    "{} is not shorter than {section}.idle_timeout ({}): a workspace is paused first, stopped later",
                    humantime::format_duration(pause),
                    humantime::format_duration(idle)
                ),
            );
        }
    }
    let max_paused = c.count(&k("max_paused"), raw.max_paused, 20, 100_000);
    // A profile's pair is checked once merged with `[workspace]`'s.
    if let (Some(idle), Some(life), "workspace") = (idle_timeout, max_lifetime, section) {
        if life < idle {
            c.error(
                &k("max_lifetime"),
                format!(
                    "{} is shorter than workspace.idle_timeout ({})",
                    humantime::format_duration(life),
                    humantime::format_duration(idle)
                ),
            );
        }
    }
    let address = c.parsed(&k("address"), raw.address, Some("network"), |s| match s {
        "network" => Ok(AddressMode::Network),
        "published" => Ok(AddressMode::Published),
        _ => Err(format!("{s:?} is not \"network\" or \"published\"")),
    });
    let network = c.parsed(&k("network"), raw.network, Some(default_network), |s| {
        let ok = s.len() <= 64
            && s.starts_with(|ch: char| ch.is_ascii_alphanumeric())
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        match s {
            "bridge" | "host" | "none" | "default" => Err(format!(
                "{s:?} is one of Docker's own networks; workspaces need a bridge with inter-container traffic off (leave it out: roost creates {default_network:?})"
            )),
            _ if ok => Ok(s.to_string()),
            _ => Err(format!("{s:?} is not a network name ([A-Za-z0-9][A-Za-z0-9_.-]*, at most 64)")),
        }
    });
    let egress = c.value(&k("egress"), raw.egress, Some(false));
    if address == Some(AddressMode::Published) && egress == Some(false) {
        c.error(
            &k("address"),
            "\"published\" needs workspace.egress = true: Docker publishes no port of an isolated (internal) network: use address = \"network\" (the default), or set workspace.egress = true",
        );
    }
    let tmp_size = c
        .parsed(&k("tmp_size"), raw.tmp_size, Some("256MiB"), parse_size)
        .and_then(|n| {
            if n >= 1024 * 1024 {
                Some(n)
            } else {
                c.error(&k("tmp_size"), format!("{n} bytes is below 1MiB"));
                None
            }
        });
    let user = c.optional(&k("user"), raw.user);
    let user_ok = |part: &str| {
        !part.is_empty()
            && !part.starts_with('-')
            && part.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    };
    if let Some(u) = &user {
        let (name, group) = u.split_once(':').map_or((u.as_str(), None), |(n, g)| (n, Some(g)));
        if u.len() > 64 || !user_ok(name) || group.is_some_and(|g| !user_ok(g)) {
            c.error(
                &k("user"),
                format!("{u:?} is not a user like \"1000:1000\" or \"app\" (user[:group], names or numeric ids)"),
            );
        }
    }
    let read_only = c.value(&k("read_only"), raw.read_only, Some(false));
    let max_running = c.count(&k("max_running"), raw.max_running, 100, 100_000);
    let max_concurrent_spawns = c.count(&k("max_concurrent_spawns"), raw.max_concurrent_spawns, 4, 1000);
    let labels = c
        .value(&k("labels"), raw.labels, Some(BTreeMap::new()))
        .and_then(|labels| {
            let bad: Vec<_> = labels
                .keys()
                .filter(|k| k.is_empty() || k.starts_with("roost."))
                .cloned()
                .collect();
            if bad.is_empty() {
                Some(labels)
            } else {
                c.error(
                    &k("labels"),
                    format!("{bad:?}: label names must not be empty or start with \"roost.\" (roost sets those)"),
                );
                None
            }
        });
    let auth_wait = c.duration(&k("auth_wait"), raw.auth_wait, "25s").and_then(|d| {
        if d < TRAEFIK_FORWARD_AUTH_TIMEOUT {
            Some(d)
        } else {
            c.error(&k("auth_wait"), "must be below Traefik's 30s forwardAuth timeout");
            None
        }
    });
    let stop_timeout = c.duration(&k("stop_timeout"), raw.stop_timeout, "10s");
    let drain_grace = c.duration(&k("drain_grace"), raw.drain_grace, "5s");
    Some(WorkspaceConfig {
        labels: labels?,
        auth_wait: auth_wait?,
        stop_timeout: stop_timeout?,
        drain_grace: drain_grace?,
        image: image?,
        command,
        port: port?,
        env: env?,
        volume_path: volume_path?,
        cpus: cpus?,
        memory: memory?,
        idle_timeout: idle_timeout?,
        pause_after: pause_after?,
        max_paused: max_paused?,
        max_lifetime: max_lifetime?,
        start_timeout: start_timeout?,
        address: address?,
        network: network?,
        egress: egress?,
        tmp_size: tmp_size?,
        user,
        read_only: read_only?,
        max_running: max_running?,
        max_concurrent_spawns: max_concurrent_spawns?,
    })
}
