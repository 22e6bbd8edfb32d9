//! Turns a [`RawConfig`] into a [`Config`], collecting every problem on the
//! way with the dotted name of its key.

use std::net::SocketAddr;
use std::time::Duration;

use jsonwebtoken::Algorithm;

use super::raw::RawConfig;
use super::values::{parse_duration, parse_size, Lenient, Rate};
use super::*;

mod profiles;
mod runtime;
mod workspace;
pub use profiles::DEFAULT_PROFILE;
use workspace::workspace;

#[derive(Default)]
pub(super) struct Checker {
    errors: Vec<KeyError>,
}

impl Checker {
    pub(super) fn error(&mut self, key: &str, problem: impl Into<String>) {
        self.errors.push(KeyError {
            key: key.to_string(),
            problem: problem.into(),
        });
    }

    pub(super) fn into_errors(self) -> Vec<KeyError> {
        self.errors
    }

    /// The value of `key`, or `default` when absent; `None` (and an error) when
    /// it is present but of the wrong type, or absent without a default.
    fn value<T>(&mut self, key: &str, v: Option<Lenient<T>>, default: Option<T>) -> Option<T> {
        match v {
            Some(Lenient(Ok(v))) => Some(v),
            Some(Lenient(Err(e))) => {
                self.error(key, e);
                None
            }
            None if default.is_some() => default,
            None => {
                self.error(key, "missing (required)");
                None
            }
        }
    }

    fn optional<T>(&mut self, key: &str, v: Option<Lenient<T>>) -> Option<T> {
        match v {
            Some(Lenient(Ok(v))) => Some(v),
            Some(Lenient(Err(e))) => {
                self.error(key, e);
                None
            }
            None => None,
        }
    }

    /// A string value parsed by `parse`, with an optional default written in
    /// the same syntax as the file.
    fn parsed<T>(
        &mut self,
        key: &str,
        v: Option<Lenient<String>>,
        default: Option<&str>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        if let (Some(Lenient(Err(e))), Some(example)) = (&v, default) {
            // A number or a table where text belongs: show how it is written.
            let leaf = key.rsplit('.').next().unwrap_or(key);
            self.error(
                key,
                format!("{e}; write it in quotes, for example {leaf} = {example:?}"),
            );
            return None;
        }
        let text = self.value(key, v, default.map(str::to_string))?;
        match parse(&text) {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(key, e);
                None
            }
        }
    }

    fn duration(&mut self, key: &str, v: Option<Lenient<String>>, default: &str) -> Option<Duration> {
        let d = self.parsed(key, v, Some(default), parse_duration)?;
        if d.is_zero() {
            self.error(key, "must be greater than zero");
            return None;
        }
        Some(d)
    }

    fn non_empty(&mut self, key: &str, v: Option<Lenient<String>>, default: Option<&str>) -> Option<String> {
        let s = self.value(key, v, default.map(str::to_string))?;
        if s.trim().is_empty() {
            self.error(key, "must not be empty");
            return None;
        }
        Some(s)
    }

    fn count(&mut self, key: &str, v: Option<Lenient<i64>>, default: i64, max: i64) -> Option<u32> {
        let n = self.value(key, v, Some(default))?;
        if !(1..=max).contains(&n) {
            self.error(key, format!("{n} is out of range (1 to {max})"));
            return None;
        }
        u32::try_from(n).ok()
    }
}

pub(super) fn validate(raw: RawConfig, secrets: Secrets, c: &mut Checker) -> Option<Config> {
    let listen = c.parsed("listen", raw.listen, Some("127.0.0.1:8080"), |s| {
        s.parse::<SocketAddr>()
            .map_err(|_| format!("{s:?} is not an address like \"127.0.0.1:8080\""))
    });
    let internal_listen = c.parsed("internal_listen", raw.internal_listen, Some("127.0.0.1:8081"), |s| {
        s.parse::<SocketAddr>()
            .map_err(|_| format!("{s:?} is not an address like \"127.0.0.1:8081\""))
    });
    if let (Some(l), Some(i)) = (listen, internal_listen) {
        if l == i && l.port() != 0 {
            c.error(
                "internal_listen",
                "must differ from listen (the internal endpoints are never served on the public listener)",
            );
        }
    }
    let deployment = c
        .parsed("deployment.id", raw.deployment.id, Some("roost"), |s| {
            let ok = !s.is_empty()
                && s.len() <= 20
                && s.starts_with(|ch: char| ch.is_ascii_lowercase())
                && !s.ends_with('-')
                && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if ok {
                Ok(s.to_string())
            } else {
                Err(format!(
                    "{s:?} is not a deployment id: 1 to 20 of a-z, 0-9 and '-', starting with a letter (it is part of every container, volume and network name)"
                ))
            }
        })
        .map(|id| DeploymentConfig { id });
    let server = server(raw.server, c);
    let oidc = oidc(raw.oidc, c);
    let routing = routing(raw.routing, internal_listen, c);
    let network = default_workspace_network(deployment.as_ref().map_or("roost", |d| d.id.as_str()));
    let mut raw_workspace = raw.workspace;
    let runtime_key = raw_workspace.runtime.take();
    let workspace = workspace(raw_workspace, &network, c);
    let profiles = profiles::profiles(raw.profiles, workspace.as_ref(), &network, c);
    let quota = profiles::quota(raw.quota, c);
    let runtime = runtime::runtime(runtime_key, raw.swarm, workspace.as_ref(), c);
    let limits = limits(raw.limits, c);
    let session = session(raw.session, c);
    let store = StoreConfig {
        path: c
            .optional("store.path", raw.store.path)
            .filter(|p| !p.is_empty())
            .map(std::path::PathBuf::from),
    };
    if let Some(url) = &secrets.redis_url {
        match url::Url::parse(url.expose()) {
            Ok(u) if matches!(u.scheme(), "redis" | "rediss") && u.host_str().is_some() => {}
            _ => c.error(
                "ROOST_REDIS_URL",
                format!(
                    "{} is not a Redis URL like \"redis://user:password@host:6379/0\" or \"rediss://...\"",
                    crate::store::shared::redacted(url.expose())
                ),
            ),
        }
    }
    for (name, key) in [
        ("ROOST_COOKIE_KEY", &secrets.cookie_key),
        ("ROOST_COOKIE_KEY_PREVIOUS", &secrets.cookie_key_previous),
    ] {
        if key.as_ref().is_some_and(|k| k.expose().len() < 32) {
            c.error(name, "too short (at least 32 characters)");
        }
    }
    let sign_in = oidc.as_ref().is_some_and(|o| o.client_id.is_some());
    if sign_in && secrets.cookie_key.is_none() {
        c.error(
            "ROOST_COOKIE_KEY",
            "required when oidc.client_id is set (browser sign-in seals its cookies with it)",
        );
    }
    Some(Config {
        listen: listen?,
        internal_listen: internal_listen?,
        deployment: deployment?,
        server: server?,
        oidc: oidc?,
        routing: routing?,
        workspace: workspace?,
        profiles: profiles?,
        quota: quota?,
        runtime: runtime?,
        limits: limits?,
        session: session?,
        store,
        secrets,
    })
}

fn session(raw: super::raw::RawSession, c: &mut Checker) -> Option<SessionConfig> {
    let lifetime = c.duration("session.lifetime", raw.lifetime, "8h");
    let max_age = c.duration("session.max_age", raw.max_age, "7d");
    let login_timeout = c.duration("session.login_timeout", raw.login_timeout, "10m");
    let logout_return_url = c.optional("session.logout_return_url", raw.logout_return_url);
    if let Some(url) = &logout_return_url {
        if !matches!(url::Url::parse(url), Ok(u) if matches!(u.scheme(), "http" | "https")) {
            c.error("session.logout_return_url", format!("{url:?} is not an http(s) URL"));
        }
    }
    if let (Some(l), Some(m)) = (lifetime, max_age) {
        if m < l {
            c.error("session.max_age", "must be at least session.lifetime");
        }
    }
    Some(SessionConfig {
        lifetime: lifetime?,
        max_age: max_age?,
        login_timeout: login_timeout?,
        logout_return_url,
    })
}

fn server(raw: super::raw::RawServer, c: &mut Checker) -> Option<ServerConfig> {
    let header_read_timeout = c.duration("server.header_read_timeout", raw.header_read_timeout, "30s");
    let max_header_bytes = c.parsed(
        "server.max_header_bytes",
        raw.max_header_bytes,
        Some("32KiB"),
        parse_size,
    );
    let max_header_bytes = max_header_bytes.and_then(|n| {
        if (8192..=1024 * 1024).contains(&n) {
            usize::try_from(n).ok()
        } else {
            c.error("server.max_header_bytes", format!("{n} is out of range (8KiB to 1MiB)"));
            None
        }
    });
    let shutdown_grace = c.duration("server.shutdown_grace", raw.shutdown_grace, "10s");
    let log_format = c.parsed("server.log_format", raw.log_format, Some("text"), |s| match s {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("{s:?} is not \"text\" or \"json\"")),
    });
    let trusted_hops = match c.value("server.trusted_hops", raw.trusted_hops, Some(0)) {
        Some(n) if (0..=8).contains(&n) => Some(n as u32),
        Some(n) => {
            c.error(
                "server.trusted_hops",
                format!("{n} is out of range (0 to 8): the number of proxies in front of Traefik that append to X-Forwarded-For"),
            );
            None
        }
        None => None,
    };
    Some(ServerConfig {
        trusted_hops: trusted_hops?,
        header_read_timeout: header_read_timeout?,
        max_header_bytes: max_header_bytes?,
        shutdown_grace: shutdown_grace?,
        log_format: log_format?,
    })
}

fn oidc(raw: super::raw::RawOidc, c: &mut Checker) -> Option<OidcConfig> {
    let issuer = c.parsed("oidc.issuer", raw.issuer, None, |s| {
        if s.starts_with("https://") || s.starts_with("http://") {
            Ok(s.to_string())
        } else {
            Err(format!("{s:?} is not an http(s) URL"))
        }
    });
    let audience = c.non_empty("oidc.audience", raw.audience, None);
    let client_id = c.optional("oidc.client_id", raw.client_id);
    let leeway = c.parsed("oidc.leeway", raw.leeway, Some("60s"), parse_duration);
    let username_claim = c.non_empty("oidc.username_claim", raw.username_claim, Some("sub"));
    let admin_permission = c.non_empty("oidc.admin_permission", raw.admin_permission, Some("roost:admin"));
    let algorithms = c
        .value("oidc.algorithms", raw.algorithms, Some(vec!["RS256".to_string()]))
        .and_then(|names| {
            let mut algs = Vec::new();
            for name in &names {
                match name.as_str() {
                    "RS256" => algs.push(Algorithm::RS256),
                    "RS384" => algs.push(Algorithm::RS384),
                    "RS512" => algs.push(Algorithm::RS512),
                    "PS256" => algs.push(Algorithm::PS256),
                    "PS384" => algs.push(Algorithm::PS384),
                    "PS512" => algs.push(Algorithm::PS512),
                    "ES256" => algs.push(Algorithm::ES256),
                    "ES384" => algs.push(Algorithm::ES384),
                    "EdDSA" => algs.push(Algorithm::EdDSA),
                    other => {
                        c.error(
                            "oidc.algorithms",
                            format!("{other:?} is not an allowed asymmetric algorithm (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)"),
                        );
                        return None;
                    }
                }
            }
            if algs.is_empty() {
                c.error("oidc.algorithms", "must list at least one algorithm");
                return None;
            }
            Some(algs)
        });
    let jwks_refresh = c.duration("oidc.jwks_refresh", raw.jwks_refresh, "1h");
    let jwks_min_refetch = c.duration("oidc.jwks_min_refetch", raw.jwks_min_refetch, "30s");
    let http_timeout = c.duration("oidc.http_timeout", raw.http_timeout, "5s");
    let scopes = c.non_empty("oidc.scopes", raw.scopes, Some("openid profile email"));
    if scopes
        .as_ref()
        .is_some_and(|s| !s.split_whitespace().any(|s| s == "openid"))
    {
        c.error("oidc.scopes", "must include \"openid\"");
    }
    Some(OidcConfig {
        issuer: issuer?,
        audience: audience?,
        client_id,
        leeway: leeway?,
        username_claim: username_claim?,
        admin_permission: admin_permission?,
        algorithms: algorithms?,
        jwks_refresh: jwks_refresh?,
        jwks_min_refetch: jwks_min_refetch?,
        http_timeout: http_timeout?,
        scopes: scopes?,
    })
}

fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

fn http_url(s: &str, example: &str) -> Result<String, String> {
    match s.parse::<http::Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {
            Ok(s.trim_end_matches('/').to_string())
        }
        _ => Err(format!("{s:?} is not an http(s) URL like \"{example}\"")),
    }
}

fn routing(raw: super::raw::RawRouting, internal_listen: Option<SocketAddr>, c: &mut Checker) -> Option<RoutingConfig> {
    let domain = c.parsed("routing.domain", raw.domain, None, |s| {
        let d = s.trim_end_matches('.').to_ascii_lowercase();
        if is_dns_name(&d) {
            Ok(d)
        } else {
            Err(format!("{s:?} is not a DNS name like \"ws.example.com\""))
        }
    });
    let entrypoints = c
        .value("routing.entrypoints", raw.entrypoints, Some(vec!["web".to_string()]))
        .and_then(|eps| {
            if eps.is_empty() || eps.iter().any(|e| e.trim().is_empty()) {
                c.error(
                    "routing.entrypoints",
                    "must list at least one non-empty entrypoint name",
                );
                None
            } else {
                Some(eps)
            }
        });
    let roost_url = c.parsed("routing.roost_url", raw.roost_url, None, |s| {
        http_url(s, "http://roost:8080")
    });
    // Where Traefik's forwardAuth reaches the internal listener: said, or
    // the internal listener's own address when that is a specific one.
    let derived = internal_listen
        .filter(|a| !a.ip().is_unspecified())
        .map(|a| format!("http://{a}"));
    let auth_url = match (raw.auth_url, derived) {
        (None, None) if internal_listen.is_some() => {
            c.error(
                "routing.auth_url",
                "required when internal_listen is an unspecified address (0.0.0.0 or [::]): how Traefik reaches the internal listener, e.g. \"http://roost:8081\"",
            );
            None
        }
        (raw_url, derived) => c.parsed("routing.auth_url", raw_url, derived.as_deref(), |s| {
            http_url(s, "http://roost:8081")
        }),
    };
    let scheme = c.parsed("routing.scheme", raw.scheme, Some("https"), |s| match s {
        "http" => Ok(Scheme::Http),
        "https" => Ok(Scheme::Https),
        _ => Err(format!("{s:?} is not \"http\" or \"https\"")),
    });
    let tls_resolver = c.optional("routing.tls_resolver", raw.tls_resolver);
    let public_port = match c.optional("routing.public_port", raw.public_port) {
        None => scheme.map(|s| match s {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }),
        Some(p) => match u16::try_from(p) {
            Ok(p) if p > 0 => Some(p),
            _ => {
                c.error("routing.public_port", format!("{p} is not a port (1 to 65535)"));
                None
            }
        },
    };
    Some(RoutingConfig {
        tls_resolver,
        domain: domain?,
        entrypoints: entrypoints?,
        roost_url: roost_url?,
        auth_url: auth_url?,
        scheme: scheme?,
        public_port: public_port?,
    })
}

fn limits(raw: super::raw::RawLimits, c: &mut Checker) -> Option<LimitsConfig> {
    let unauthenticated_per_ip = c.parsed(
        "limits.unauthenticated_per_ip",
        raw.unauthenticated_per_ip,
        Some("30/min"),
        Rate::parse,
    );
    let authenticated_per_user = c.parsed(
        "limits.authenticated_per_user",
        raw.authenticated_per_user,
        Some("2000/s"),
        Rate::parse,
    );
    let tunnels_per_user = c.count("limits.tunnels_per_user", raw.tunnels_per_user, 32, 100_000);
    let tunnel_idle_timeout = c.duration("limits.tunnel_idle_timeout", raw.tunnel_idle_timeout, "1h");
    Some(LimitsConfig {
        unauthenticated_per_ip: unauthenticated_per_ip?,
        authenticated_per_user: authenticated_per_user?,
        tunnels_per_user: tunnels_per_user?,
        tunnel_idle_timeout: tunnel_idle_timeout?,
    })
}
