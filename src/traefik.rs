//! `GET /traefik`: the whole dynamic configuration for Traefik's HTTP
//! provider, as JSON with a stable key order (Traefik skips a poll whose
//! body hash is unchanged). Rendered only when the set of ready workspaces
//! changed and served from memory otherwise.
//!
//! What it holds: the `roost-auth` forwardAuth middleware (and a copy per
//! workspace naming its upstream address); a lowest-priority
//! fallback router sending every `<slug>.<domain>` to roost (its proxy
//! serves a workspace until its own route exists); a router for `/_roost/`
//! on those hosts and the bare domain; and one router + service
//! `ws-<slug>` per ready workspace, straight to its container.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::config::{RoutingConfig, Scheme};
use crate::forward_auth::{X_ROOST_EMAIL, X_ROOST_USER, X_ROOST_WORKSPACE};
use crate::workspace::registry::Registry;

/// The forwardAuth middleware; each workspace router uses its own copy
/// `roost-auth-<slug>` naming the workspace's address.
pub const AUTH_MIDDLEWARE: &str = "roost-auth";
/// Largest forwardAuth answer Traefik reads (roost's are tiny).
const AUTH_RESPONSE_CAP: u64 = 64 * 1024;

/// Renders the dynamic configuration for `ready` workspaces (any order).
pub fn render(routing: &RoutingConfig, ready: &[(Arc<str>, SocketAddr)]) -> Bytes {
    let entry_points = json!(routing.entrypoints);
    let domain_re = regex_escape(&routing.domain);
    let any_workspace = format!("HostRegexp(`^[a-z0-9-]+\\.{domain_re}$`)");
    let tls = match (&routing.scheme, &routing.tls_resolver) {
        (Scheme::Https, Some(resolver)) => Some(json!({ "certResolver": resolver })),
        (Scheme::Https, None) => Some(json!({})),
        (Scheme::Http, _) => None,
    };
    let router = |rule: String, priority: u32, service: &str, middlewares: Option<Value>| {
        let mut r = Map::new();
        r.insert("rule".into(), json!(rule));
        r.insert("priority".into(), json!(priority));
        r.insert("entryPoints".into(), entry_points.clone());
        r.insert("service".into(), json!(service));
        if let Some(m) = middlewares {
            r.insert("middlewares".into(), m);
        }
        if let Some(tls) = &tls {
            r.insert("tls".into(), tls.clone());
        }
        Value::Object(r)
    };

    let mut routers = Map::new();
    let mut services = Map::new();
    routers.insert("roost-fallback".into(), router(any_workspace.clone(), 1, "roost", None));
    routers.insert(
        "roost-internal".into(),
        router(
            format!(
                "(Host(`{}`) || {any_workspace}) && PathPrefix(`/_roost/`)",
                routing.domain
            ),
            10_000,
            "roost",
            None,
        ),
    );
    routers.insert(
        "roost-landing".into(),
        router(format!("Host(`{}`)", routing.domain), 2, "roost", None),
    );
    services.insert(
        "roost".into(),
        json!({ "loadBalancer": { "servers": [{ "url": routing.roost_url }] } }),
    );
    let forward_auth = |address: String| {
        json!({
            "forwardAuth": {
                "address": address,
                "trustForwardHeader": false,
                "authResponseHeaders": [
                    X_ROOST_USER.as_str(), X_ROOST_WORKSPACE.as_str(), X_ROOST_EMAIL.as_str(),
                    "Authorization", "Cookie",
                ],
                "maxResponseBodySize": AUTH_RESPONSE_CAP,
            }
        })
    };
    let mut middlewares = Map::new();
    middlewares.insert(
        AUTH_MIDDLEWARE.into(),
        forward_auth(format!("{}/auth", routing.roost_url)),
    );
    for (slug, addr) in ready {
        let name = format!("ws-{slug}");
        // Each workspace's forwardAuth names the address Traefik will send
        // the request to, so roost says yes only while that is still the
        // workspace's address: a stale route (a container that died, whose
        // port another container may now hold) gets 503, never a 2xx.
        let auth = format!("{AUTH_MIDDLEWARE}-{slug}");
        middlewares.insert(
            auth.clone(),
            forward_auth(format!("{}/auth?upstream={addr}", routing.roost_url)),
        );
        let rule = format!("Host(`{slug}.{}`)", routing.domain);
        routers.insert(name.clone(), router(rule, 100, &name, Some(json!([auth]))));
        services.insert(
            name,
            json!({ "loadBalancer": { "servers": [{ "url": format!("http://{addr}") }] } }),
        );
    }
    // serde_json's map is ordered by key: the same table renders to the same bytes.
    let doc = json!({ "http": { "middlewares": middlewares, "routers": routers, "services": services } });
    Bytes::from(serde_json::to_vec(&doc).unwrap_or_default())
}

/// Escapes a domain for a Go regular expression.
fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                vec![c]
            } else {
                vec!['\\', c]
            }
        })
        .collect()
}

/// The rendered route table, re-rendered only when the registry's
/// route version moved.
pub struct RouteTable {
    routing: RoutingConfig,
    cached: ArcSwap<(u64, Bytes)>,
    render_lock: Mutex<()>,
}

impl RouteTable {
    pub fn new(routing: RoutingConfig) -> Self {
        let empty = render(&routing, &[]);
        RouteTable {
            routing,
            cached: ArcSwap::from_pointee((0, empty)),
            render_lock: Mutex::new(()),
        }
    }

    /// The current table: from memory unless the workspaces changed.
    pub fn current(&self, registry: Option<&Registry>) -> Bytes {
        let Some(registry) = registry else {
            return self.cached.load().1.clone();
        };
        let version = registry.routes_version();
        let cached = self.cached.load();
        if cached.0 == version {
            return cached.1.clone();
        }
        // One render at a time; the others take its result.
        let _guard = self.render_lock.lock().unwrap_or_else(|p| p.into_inner());
        let cached = self.cached.load();
        if cached.0 == version {
            return cached.1.clone();
        }
        let mut ready = registry.ready();
        ready.sort_by(|a, b| a.0.cmp(&b.0));
        let body = render(&self.routing, &ready);
        self.cached.store(Arc::new((version, body.clone())));
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routing() -> RoutingConfig {
        RoutingConfig {
            domain: "ws.example.com".into(),
            entrypoints: vec!["web".into()],
            roost_url: "http://roost:8080".into(),
            scheme: Scheme::Http,
            tls_resolver: None,
        }
    }

    #[test]
    fn renders_the_whole_table_with_a_stable_order() {
        let a: (Arc<str>, SocketAddr) = ("alice".into(), "127.0.0.1:32768".parse().unwrap());
        let b: (Arc<str>, SocketAddr) = ("bob".into(), "127.0.0.1:32769".parse().unwrap());
        let one = render(&routing(), &[a.clone(), b.clone()]);
        let two = render(&routing(), &[b, a]);
        assert_eq!(one, two, "same table, same bytes");
        let v: Value = serde_json::from_slice(&one).unwrap();
        let http = &v["http"];
        assert_eq!(http["routers"]["ws-alice"]["rule"], "Host(`alice.ws.example.com`)");
        assert_eq!(http["routers"]["ws-alice"]["middlewares"], json!(["roost-auth-alice"]));
        assert_eq!(
            http["middlewares"]["roost-auth-alice"]["forwardAuth"]["address"],
            "http://roost:8080/auth?upstream=127.0.0.1:32768"
        );
        assert_eq!(
            http["services"]["ws-alice"]["loadBalancer"]["servers"][0]["url"],
            "http://127.0.0.1:32768"
        );
        assert_eq!(http["routers"]["roost-fallback"]["priority"], 1);
        assert_eq!(
            http["routers"]["roost-fallback"]["rule"],
            "HostRegexp(`^[a-z0-9-]+\\.ws\\.example\\.com$`)"
        );
        let fa = &http["middlewares"]["roost-auth"]["forwardAuth"];
        assert_eq!(fa["address"], "http://roost:8080/auth");
        assert_eq!(fa["trustForwardHeader"], false);
        for h in [
            "X-Roost-User",
            "X-Roost-Workspace",
            "X-Roost-Email",
            "Authorization",
            "Cookie",
        ] {
            assert!(
                fa["authResponseHeaders"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|v| v.as_str().unwrap().eq_ignore_ascii_case(h)),
                "{h}"
            );
        }
        assert!(http["routers"]["ws-alice"].get("tls").is_none());
    }

    #[test]
    fn https_routers_carry_tls_and_the_resolver() {
        let mut r = routing();
        r.scheme = Scheme::Https;
        r.tls_resolver = Some("le".into());
        let v: Value =
            serde_json::from_slice(&render(&r, &[("alice".into(), "127.0.0.1:1".parse().unwrap())])).unwrap();
        assert_eq!(v["http"]["routers"]["ws-alice"]["tls"]["certResolver"], "le");
    }
}
