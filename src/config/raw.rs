//! The config file exactly as written: every leaf is [`Lenient`] so that a
//! wrongly typed value becomes a named error instead of aborting the parse.
//! Unknown keys are collected by `serde_ignored` (see `Config::from_toml`),
//! which reports all of them, where `deny_unknown_fields` would stop at the
//! first.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::values::Lenient;

type L<T> = Option<Lenient<T>>;

#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    pub listen: L<String>,
    pub internal_listen: L<String>,
    #[serde(default)]
    pub deployment: RawDeployment,
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub oidc: RawOidc,
    #[serde(default)]
    pub routing: RawRouting,
    #[serde(default)]
    pub workspace: RawWorkspace,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub session: RawSession,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub profiles: Vec<RawProfile>,
    #[serde(default)]
    pub quota: RawQuota,
    #[serde(default)]
    pub swarm: RawSwarm,
}

/// `[swarm]`: only with `workspace.runtime = "swarm"`.
#[derive(Debug, Default, Deserialize)]
pub struct RawSwarm {
    pub attach: L<Vec<String>>,
    pub volume_driver: L<String>,
}

/// One `[[profiles]]` entry: a name, what a user reads, who may choose it,
/// and the `[workspace]` keys it sets differently.
#[derive(Debug, Default, Deserialize)]
pub struct RawProfile {
    pub name: L<String>,
    pub description: L<String>,
    pub permission: L<String>,
    pub image: L<String>,
    pub command: L<Vec<String>>,
    pub env: L<BTreeMap<String, String>>,
    pub cpus: L<f64>,
    pub memory: L<String>,
    pub port: L<i64>,
    pub volume_path: L<String>,
    pub idle_timeout: L<String>,
    pub max_lifetime: L<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawQuota {
    pub period: L<String>,
    pub workspace_hours: L<f64>,
    pub cpu_hours: L<f64>,
    pub exempt_permission: L<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawStore {
    pub path: L<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawDeployment {
    pub id: L<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawServer {
    pub trusted_hops: L<i64>,
    pub header_read_timeout: L<String>,
    pub max_header_bytes: L<String>,
    pub shutdown_grace: L<String>,
    pub log_format: L<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawOidc {
    pub issuer: L<String>,
    pub audience: L<String>,
    pub client_id: L<String>,
    pub leeway: L<String>,
    pub username_claim: L<String>,
    pub admin_permission: L<String>,
    pub algorithms: L<Vec<String>>,
    pub jwks_refresh: L<String>,
    pub jwks_min_refetch: L<String>,
    pub http_timeout: L<String>,
    pub scopes: L<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawRouting {
    pub domain: L<String>,
    pub entrypoints: L<Vec<String>>,
    pub roost_url: L<String>,
    pub auth_url: L<String>,
    pub scheme: L<String>,
    pub tls_resolver: L<String>,
    pub public_port: L<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawWorkspace {
    pub runtime: L<String>,
    pub image: L<String>,
    pub command: L<Vec<String>>,
    pub port: L<i64>,
    pub env: L<BTreeMap<String, String>>,
    pub volume_path: L<String>,
    pub cpus: L<f64>,
    pub memory: L<String>,
    pub idle_timeout: L<String>,
    pub pause_after: L<String>,
    pub max_paused: L<i64>,
    pub max_lifetime: L<String>,
    pub start_timeout: L<String>,
    pub address: L<String>,
    pub network: L<String>,
    pub egress: L<bool>,
    pub tmp_size: L<String>,
    pub user: L<String>,
    pub read_only: L<bool>,
    pub max_running: L<i64>,
    pub max_concurrent_spawns: L<i64>,
    pub labels: L<BTreeMap<String, String>>,
    pub auth_wait: L<String>,
    pub stop_timeout: L<String>,
    pub drain_grace: L<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawLimits {
    pub unauthenticated_per_ip: L<String>,
    pub authenticated_per_user: L<String>,
    pub tunnels_per_user: L<i64>,
    pub tunnel_idle_timeout: L<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawSession {
    pub lifetime: L<String>,
    pub max_age: L<String>,
    pub login_timeout: L<String>,
    pub logout_return_url: L<String>,
}
