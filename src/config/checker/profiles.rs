//! `[[profiles]]`: the environments a user may choose, each the default
//! `[workspace]` with some of its keys set otherwise; and `[quota]`.

use std::sync::Arc;

use super::super::raw::{RawProfile, RawQuota, RawWorkspace};
use super::super::*;
use super::workspace::{lifetimes_agree, workspace_at};
use super::Checker;

/// The name of `[workspace]` itself among the profiles.
pub const DEFAULT_PROFILE: &str = "default";

pub(super) fn profiles(
    raw: Vec<RawProfile>,
    base: Option<&WorkspaceConfig>,
    default_network: &str,
    c: &mut Checker,
) -> Option<Vec<Profile>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (i, p) in raw.into_iter().enumerate() {
        match profile(i, p, base, default_network, c) {
            Some(p) if out.iter().any(|o: &Profile| o.name == p.name) => {
                c.error(&format!("profiles[{i}].name"), format!("{:?} is used twice", p.name));
                ok = false;
            }
            Some(p) => out.push(p),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn profile(
    i: usize,
    raw: RawProfile,
    base: Option<&WorkspaceConfig>,
    default_network: &str,
    c: &mut Checker,
) -> Option<Profile> {
    let section = format!("profiles[{i}]");
    let k = |leaf: &str| format!("{section}.{leaf}");
    let name = c.parsed(&k("name"), raw.name, None, |s| {
        let ok = (1..=32).contains(&s.len())
            && s.starts_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        match s {
            DEFAULT_PROFILE => Err(format!("{s:?} is [workspace]'s own name")),
            _ if ok => Ok(s.to_string()),
            _ => Err(format!("{s:?} is not a profile name: 1 to 32 of a-z, 0-9 and '-'")),
        }
    });
    let description = c.non_empty(&k("description"), raw.description, None);
    let permission = c.optional(&k("permission"), raw.permission);
    if permission
        .as_ref()
        .is_some_and(|p| p.trim().is_empty() || p.len() > 100)
    {
        c.error(&k("permission"), "must be a permission name of 1 to 100 characters");
    }
    // Which keys the profile sets: the others are `[workspace]`'s.
    let set = [
        raw.command.is_some(),
        raw.env.is_some(),
        raw.cpus.is_some(),
        raw.memory.is_some(),
        raw.port.is_some(),
        raw.volume_path.is_some(),
        raw.idle_timeout.is_some(),
        raw.max_lifetime.is_some(),
    ];
    let own = workspace_at(
        &section,
        RawWorkspace {
            image: raw.image,
            command: raw.command,
            env: raw.env,
            cpus: raw.cpus,
            memory: raw.memory,
            port: raw.port,
            volume_path: raw.volume_path,
            idle_timeout: raw.idle_timeout,
            max_lifetime: raw.max_lifetime,
            ..RawWorkspace::default()
        },
        default_network,
        c,
    );
    let (own, base) = (own?, base?);
    let mut w = base.clone();
    w.image = own.image;
    let [command, env, cpus, memory, port, volume_path, idle, life] = set;
    if command {
        w.command = own.command;
    }
    if env {
        w.env = own.env;
    }
    if cpus {
        w.cpus = own.cpus;
    }
    if memory {
        w.memory = own.memory;
    }
    if port {
        w.port = own.port;
    }
    if volume_path {
        w.volume_path = own.volume_path;
    }
    if idle {
        w.idle_timeout = own.idle_timeout;
    }
    if life {
        w.max_lifetime = own.max_lifetime;
    }
    if !lifetimes_agree(&section, &w, c) {
        return None;
    }
    Some(Profile {
        name: name?,
        description: description?,
        permission: permission.filter(|p| !p.trim().is_empty() && p.len() <= 100),
        workspace: Arc::new(w),
    })
}

pub(super) fn quota(raw: RawQuota, c: &mut Checker) -> Option<QuotaConfig> {
    let period = c.duration("quota.period", raw.period, "30d");
    let hours = |c: &mut Checker, key: &str, v| -> Option<Option<f64>> {
        match c.optional(key, v) {
            None => Some(None),
            Some(h) if f64::is_finite(h) && h > 0.0 && h <= 1e6 => Some(Some(h)),
            Some(h) => {
                c.error(key, format!("{h} is out of range (above 0, at most 1000000 hours)"));
                None
            }
        }
    };
    let workspace_hours = hours(c, "quota.workspace_hours", raw.workspace_hours);
    let cpu_hours = hours(c, "quota.cpu_hours", raw.cpu_hours);
    let exempt_permission = c.optional("quota.exempt_permission", raw.exempt_permission);
    let period = period?;
    if period < std::time::Duration::from_secs(60) {
        c.error("quota.period", "must be at least a minute");
        return None;
    }
    Some(QuotaConfig {
        period,
        workspace_hours: workspace_hours?,
        cpu_hours: cpu_hours?,
        exempt_permission: exempt_permission.filter(|p| !p.is_empty()),
    })
}
