//! Configuration: the TOML file and the `ROOST_*` secrets from the
//! environment, turned into a validated [`Config`] before any port is bound.
//! Every bad key is reported at once, by name and with its bad value
//! ([`ConfigError::Invalid`]).

mod checker;
mod keys;
mod raw;
mod values;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;

pub use values::{parse_duration, parse_size, Rate};

use checker::Checker;
pub use checker::DEFAULT_PROFILE;
use raw::RawConfig;

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Syntax(#[source] toml::de::Error),
    #[error("invalid configuration:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<KeyError>),
}

/// One bad key: its dotted name and what is wrong with its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    pub key: String,
    pub problem: String,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.problem)
    }
}

/// A secret from the environment. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// The secrets roost reads from its environment, and only from there.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// `ROOST_OIDC_CLIENT_SECRET`: for the code exchange of browser sign-in.
    pub oidc_client_secret: Option<Secret>,
    /// `ROOST_COOKIE_KEY`: encrypts session cookies.
    pub cookie_key: Option<Secret>,
    /// `ROOST_COOKIE_KEY_PREVIOUS`: the key before the last rotation; its
    /// cookies are still accepted (and re-sealed with the current key).
    pub cookie_key_previous: Option<Secret>,
    /// `ROOST_REDIS_URL`: the shared store of several replicas
    /// (`redis://` or `rediss://`, user and password in the URL).
    pub redis_url: Option<Secret>,
}

impl Secrets {
    /// Reads the `ROOST_*` secrets from the process environment.
    pub fn from_env() -> Self {
        let get = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty()).map(Secret);
        Secrets {
            oidc_client_secret: get("ROOST_OIDC_CLIENT_SECRET"),
            cookie_key: get("ROOST_COOKIE_KEY"),
            cookie_key_previous: get("ROOST_COOKIE_KEY_PREVIOUS"),
            redis_url: get("ROOST_REDIS_URL"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The public listener: the fallback proxy and roost's pages, what
    /// Traefik's routers forward to.
    pub listen: SocketAddr,
    /// The internal listener: `/auth`, `/traefik`, `/metrics`, `/healthz`,
    /// `/readyz`; never served through the public one.
    pub internal_listen: SocketAddr,
    pub deployment: DeploymentConfig,
    pub server: ServerConfig,
    pub oidc: OidcConfig,
    pub routing: RoutingConfig,
    /// `[workspace]`: the default profile, and what every profile shares.
    pub workspace: WorkspaceConfig,
    /// `[[profiles]]`: the other environments a user may choose.
    pub profiles: Vec<Profile>,
    pub quota: QuotaConfig,
    /// `workspace.runtime`: what runs workspaces (and `[swarm]`).
    pub runtime: RuntimeChoice,
    pub limits: LimitsConfig,
    pub session: SessionConfig,
    pub store: StoreConfig,
    pub secrets: Secrets,
}

/// An environment a user may choose (`[[profiles]]`).
#[derive(Debug, Clone)]
pub struct Profile {
    /// `[a-z0-9-]{1,32}`, never `default` (that is `[workspace]`).
    pub name: String,
    /// What a user reads when choosing.
    pub description: String,
    /// The token permission a user needs to choose it (admins need none).
    pub permission: Option<String>,
    /// `[workspace]` with the profile's keys in place.
    pub workspace: Arc<WorkspaceConfig>,
}

/// `[quota]`: how much one user may consume per period; no limit set, no quota.
#[derive(Debug, Clone)]
pub struct QuotaConfig {
    /// Usage counts in windows of this length, aligned to the Unix epoch
    /// (`1d`: from midnight UTC).
    pub period: Duration,
    /// Hours a user's workspace may run per period.
    pub workspace_hours: Option<f64>,
    /// CPU hours (as the engine counts them) per period.
    pub cpu_hours: Option<f64>,
    /// Users whose token carries this permission have no quota (admins neither).
    pub exempt_permission: Option<String>,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig {
            period: Duration::from_secs(30 * 86_400),
            workspace_hours: None,
            cpu_hours: None,
            exempt_permission: None,
        }
    }
}

/// Where shared state lives (`[store]` and `ROOST_REDIS_URL`).
#[derive(Debug, Clone, Default)]
pub struct StoreConfig {
    /// The embedded store's revocation file (one replica, no Redis). Read
    /// from a file, the config defaults it to `roost-revocations` beside
    /// itself and resolves a relative path against its own folder; `None`
    /// (a config built in memory) keeps revocations in memory only.
    pub path: Option<PathBuf>,
}

/// Which roost this is (`[deployment]`): its id is in every container,
/// volume and network name it makes and in their labels, so deployments
/// sharing an engine never touch each other's workspaces.
#[derive(Debug, Clone)]
pub struct DeploymentConfig {
    /// `[a-z][a-z0-9-]*`, at most 20 characters; default `roost`.
    pub id: String,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Proxies in front of Traefik that append to `X-Forwarded-For` (a load
    /// balancer): the client address is that many entries before the last.
    pub trusted_hops: u32,
    /// A client must send a request's whole head within this time (408 otherwise).
    pub header_read_timeout: Duration,
    /// Largest request head accepted (431 beyond).
    pub max_header_bytes: usize,
    /// How long in-flight requests may run on after SIGTERM.
    pub shutdown_grace: Duration,
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// Exactly as the provider's discovery document states it (Auth0's ends in `/`).
    pub issuer: String,
    pub audience: String,
    pub client_id: Option<String>,
    pub leeway: Duration,
    pub username_claim: String,
    pub admin_permission: String,
    pub algorithms: Vec<Algorithm>,
    /// How often keys are refreshed when all is well.
    pub jwks_refresh: Duration,
    /// At most one refetch per this interval on an unknown `kid`.
    pub jwks_min_refetch: Duration,
    /// Bound on each discovery / JWKS / token request.
    pub http_timeout: Duration,
    /// Scopes asked for at browser sign-in.
    pub scopes: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

#[derive(Debug, Clone)]
pub struct RoutingConfig {
    /// Workspaces live at `<slug>.<domain>`; lower case, no trailing dot.
    pub domain: String,
    pub entrypoints: Vec<String>,
    /// How Traefik reaches roost's public listener (the fallback proxy),
    /// e.g. `http://127.0.0.1:8080`.
    pub roost_url: String,
    /// How Traefik reaches roost's internal listener (forwardAuth), e.g.
    /// `http://127.0.0.1:8081`; default `http://<internal_listen>`.
    pub auth_url: String,
    pub scheme: Scheme,
    /// Traefik certificate resolver for the workspace routers (https).
    pub tls_resolver: Option<String>,
    /// The port browsers use (default: the scheme's); part of every absolute
    /// URL roost sends a browser to.
    pub public_port: u16,
}

/// What runs workspaces (`workspace.runtime`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeChoice {
    /// Containers on the one Docker Engine roost talks to (the default).
    Docker,
    /// Services on the Docker Swarm whose manager roost talks to.
    Swarm(SwarmConfig),
}

/// `[swarm]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmConfig {
    /// Containers roost connects to every workspace's own overlay network:
    /// Traefik's (and roost's, when they do not share one network namespace).
    pub attach: Vec<String>,
    /// A volume driver whose volumes every node reaches; without one, a
    /// workspace is pinned to the node roost's engine runs on, where its
    /// volume lives.
    pub volume_driver: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressMode {
    /// The workspace port is published on 127.0.0.1 with an ephemeral host
    /// port (the container is on `workspace.network` all the same; Docker
    /// publishes no port of an internal network, so this needs
    /// `workspace.egress`).
    Published,
    /// The container's IP on `workspace.network`, reached from the host
    /// through the network's bridge (the default).
    Network,
}

/// The network roost creates for its workspaces when `workspace.network`
/// is not set: `<deployment.id>-workspaces`.
pub fn default_workspace_network(deployment: &str) -> String {
    format!("{deployment}-workspaces")
}

#[derive(Debug, Clone)]
pub struct WorkspaceConfig {
    pub image: String,
    pub command: Option<Vec<String>>,
    pub port: u16,
    pub env: BTreeMap<String, String>,
    pub volume_path: String,
    pub cpus: f64,
    pub memory: u64,
    pub idle_timeout: Duration,
    /// Idle this long, a running workspace is paused (the cgroup freezer:
    /// memory kept, no CPU) and woken in milliseconds by its next request;
    /// stopped only at `idle_timeout`. `None`: no paused tier. A profile
    /// whose `idle_timeout` is not longer is never paused.
    pub pause_after: Option<Duration>,
    /// At most this many workspaces stay paused; past it the longest paused
    /// are stopped first.
    pub max_paused: u32,
    pub max_lifetime: Duration,
    pub start_timeout: Duration,
    pub address: AddressMode,
    /// The bridge network every workspace joins: inter-container traffic
    /// off, and internal (no route out) unless `egress`. Created by roost
    /// when missing; an existing one must pass the same checks.
    pub network: String,
    /// Workspaces may open connections to the internet (the network is not
    /// internal).
    pub egress: bool,
    /// Size of the tmpfs mounted at `/tmp`.
    pub tmp_size: u64,
    /// `user[:group]` the workspace runs as (default: the image's).
    pub user: Option<String>,
    /// A read-only root filesystem (`/tmp` and the volume stay writable).
    pub read_only: bool,
    pub max_running: u32,
    pub max_concurrent_spawns: u32,
    /// Extra labels on every container and volume roost creates.
    pub labels: BTreeMap<String, String>,
    /// How long `/auth` waits for a starting workspace before 503 +
    /// `Retry-After`; below Traefik's fixed 30 s forwardAuth timeout.
    pub auth_wait: Duration,
    /// Grace given to a workspace's processes when it is stopped.
    pub stop_timeout: Duration,
    /// Between withdrawing a workspace's route and stopping it: long enough
    /// for Traefik to poll and apply the new table.
    pub drain_grace: Duration,
}

#[derive(Debug, Clone)]
pub struct LimitsConfig {
    pub unauthenticated_per_ip: Rate,
    pub authenticated_per_user: Rate,
    /// Upgraded connections (WebSockets) one user (`sub`) may have open
    /// through the fallback proxy at once; beyond, 429.
    pub tunnels_per_user: u32,
    /// An upgraded connection with no bytes in either direction for this
    /// long is closed.
    pub tunnel_idle_timeout: Duration,
}

/// Browser sessions (`[session]`).
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// A session ends after this long without use (sliding expiry).
    pub lifetime: Duration,
    /// ... and this long after sign-in, however much it is used.
    pub max_age: Duration,
    /// How long a sign-in attempt (its state cookie) stays valid.
    pub login_timeout: Duration,
    /// Where the provider sends a browser after sign-out (default: roost's
    /// signed-out page).
    pub logout_return_url: Option<String>,
}

/// Traefik gives up on a forwardAuth answer after 30 s; roost must answer first.
pub const TRAEFIK_FORWARD_AUTH_TIMEOUT: Duration = Duration::from_secs(30);

impl Config {
    /// What is valid but likely a mistake, in plain words (check-config
    /// prints these, `serve` logs them once).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.oidc.username_claim != "sub" {
            out.push(format!(
                "oidc.username_claim = {:?}: workspace names come from a claim that may not be unique or stable \
                 (two accounts with the same value share one name; only the first account's `sub` may use it, the \
                 other gets 403). Use \"sub\" unless the provider guarantees the claim is unique and never reused.",
                self.oidc.username_claim
            ));
        }
        out
    }

    /// Reads and validates `path`, with secrets from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut config = Config::from_toml(&text, Secrets::from_env())?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let file = config
            .store
            .path
            .take()
            .unwrap_or_else(|| PathBuf::from("roost-revocations"));
        config.store.path = Some(dir.join(file));
        Ok(config)
    }

    /// Validates a config file's text; every bad key is reported at once.
    /// The token permissions roost reads besides the admin one: each
    /// profile's `permission` and `quota.exempt_permission`.
    pub fn permissions_read(&self) -> Vec<String> {
        let mut read: Vec<String> = self.profiles.iter().filter_map(|p| p.permission.clone()).collect();
        read.extend(self.quota.exempt_permission.clone());
        read.sort();
        read.dedup();
        read
    }

    pub fn from_toml(text: &str, secrets: Secrets) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(ConfigError::Syntax)?;
        let mut unknown = Vec::new();
        let raw: RawConfig =
            serde_ignored::deserialize(de, |path| unknown.push(path.to_string())).map_err(ConfigError::Syntax)?;
        let mut c = Checker::default();
        if !unknown.is_empty() {
            let known = keys::known();
            for key in unknown {
                match keys::nearest(&key, &known) {
                    Some(meant) => c.error(&key, format!("unknown key; did you mean `{meant}`?")),
                    None => c.error(&key, "unknown key"),
                }
            }
        }
        let config = checker::validate(raw, secrets, &mut c);
        match (config, c.into_errors()) {
            (Some(config), errors) if errors.is_empty() => Ok(config),
            (_, errors) => Err(ConfigError::Invalid(errors)),
        }
    }
}

#[cfg(test)]
mod tests;
