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

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use bytes::Bytes;

use crate::auth::session::SESSION_COOKIE;
use crate::config::{RoutingConfig, Scheme};
use crate::forward_auth::{X_ROOST_EMAIL, X_ROOST_USER, X_ROOST_WORKSPACE};
use crate::workspace::registry::Registry;

/// The forwardAuth middleware; each workspace router uses its own copy
/// `roost-auth-<slug>` naming the workspace's address.
pub const AUTH_MIDDLEWARE: &str = "roost-auth";
/// Largest forwardAuth answer Traefik reads (`maxResponseBodySize`).
/// Traefik allocates a buffer this size for every answer, so it is kept
/// small: at 64 KiB it cost 15% of the throughput through Traefik, at
/// 4 KiB nothing measurable (`benches/traefik.sh`). roost's largest answer,
/// a refusal page, is about 2 KiB with the longest domain a host can have
/// (checked in `error/tests.rs`).
pub const AUTH_RESPONSE_CAP: u64 = 4096;
/// `authResponseHeadersRegex`, as a JSON string: Traefik first removes
/// every request header whose name matches, then copies the matching ones
/// from roost's answer. Go canonicalises names on dashes only, so
/// `X_Roost_User` or `X.Roost.User` would otherwise pass as headers of
/// their own, which CGI, WSGI or PHP backends read as `X-Roost-User`.
/// (No backslash or quote inside: the JSON is the text between quotes.)
const ALIAS_REGEX_JSON: &str = r#""^(?i)x[^a-z0-9]roost[^a-z0-9]""#;

/// Renders the dynamic configuration for `ready` workspaces (any order:
/// they are written sorted by slug, every key in a fixed order, so the same
/// table always renders to the same bytes). Written straight into one
/// buffer: 10,000 workspaces render in milliseconds.
pub fn render(routing: &RoutingConfig, ready: &[(Arc<str>, SocketAddr)]) -> Bytes {
    let mut ready: Vec<&(Arc<str>, SocketAddr)> = ready.iter().collect();
    ready.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let entry_points = serde_json::to_string(&routing.entrypoints).unwrap_or_default();
    let tls = match (&routing.scheme, &routing.tls_resolver) {
        (Scheme::Https, Some(resolver)) => format!(r#","tls":{{"certResolver":{}}}"#, q(resolver)),
        (Scheme::Https, None) => r#","tls":{}"#.to_string(),
        (Scheme::Http, _) => String::new(),
    };
    let domain = &routing.domain;
    let any_workspace = format!("HostRegexp(`^[a-z0-9-]+\\.{}$`)", regex_escape(domain));
    let auth_headers = serde_json::to_string(&[
        X_ROOST_USER.as_str(),
        X_ROOST_WORKSPACE.as_str(),
        X_ROOST_EMAIL.as_str(),
        "Authorization",
        "Cookie",
    ])
    .unwrap_or_default();
    let roost_url = &routing.roost_url;
    let mut out = String::with_capacity(1024 + ready.len() * 640);
    // The forwardAuth middleware, written once: what comes before its
    // address and what comes after.
    let auth_head = format!(
        r#"{{"forwardAuth":{{"addAuthCookiesToResponse":[{}],"address":"#,
        q(SESSION_COOKIE)
    );
    let auth_tail = format!(
        r#","authResponseHeaders":{auth_headers},"authResponseHeadersRegex":{ALIAS_REGEX_JSON},"maxResponseBodySize":{AUTH_RESPONSE_CAP},"trustForwardHeader":false}}}}"#
    );
    let router = |out: &mut String, name: &str, rule: &str, priority: u32, service: &str, middleware: Option<&str>| {
        let _ = write!(out, r#"{}:{{"entryPoints":{entry_points}"#, q(name));
        if let Some(m) = middleware {
            let _ = write!(out, r#","middlewares":[{}]"#, q(m));
        }
        let _ = write!(
            out,
            r#","priority":{priority},"rule":{},"service":{}{tls}}}"#,
            q(rule),
            q(service)
        );
    };
    // Per workspace, everything is written straight into `out`: slugs are
    // DNS labels and addresses are IP:port, so neither needs JSON escaping,
    // and the configured parts are escaped once, here.
    let url_json = q(roost_url);
    let auth_json = q(&routing.auth_url);
    let auth_open = &auth_json[..auth_json.len() - 1]; // `"<auth_url>` without its closing quote
    let domain_json = q(domain);
    let domain_inner = &domain_json[1..domain_json.len() - 1];
    out.push_str(r#"{"http":{"middlewares":{"#);
    let auth_url = &routing.auth_url;
    let _ = write!(
        out,
        "{}:{auth_head}{}{auth_tail}",
        q(AUTH_MIDDLEWARE),
        q(&format!("{auth_url}/auth"))
    );
    for (slug, addr) in &ready {
        // Each workspace's forwardAuth names the address Traefik will send
        // the request to, so roost says yes only while that is still the
        // workspace's address: a stale route (a container that died, whose
        // port another container may now hold) gets 503, never a 2xx.
        let _ = write!(
            out,
            r#","{AUTH_MIDDLEWARE}-{slug}":{auth_head}{auth_open}/auth?upstream={addr}"{auth_tail}"#
        );
    }
    out.push_str(r#"},"routers":{"#);
    router(&mut out, "roost-fallback", &any_workspace, 1, "roost", None);
    out.push(',');
    let internal = format!("(Host(`{domain}`) || {any_workspace}) && PathPrefix(`/_roost/`)");
    router(&mut out, "roost-internal", &internal, 10_000, "roost", None);
    out.push(',');
    router(
        &mut out,
        "roost-landing",
        &format!("Host(`{domain}`)"),
        2,
        "roost",
        None,
    );
    for (slug, _) in &ready {
        let _ = write!(
            out,
            r#","ws-{slug}":{{"entryPoints":{entry_points},"middlewares":["{AUTH_MIDDLEWARE}-{slug}"],"priority":100,"rule":"Host(`{slug}.{domain_inner}`)","service":"ws-{slug}"{tls}}}"#
        );
    }
    out.push_str(r#"},"services":{"#);
    let _ = write!(
        out,
        r#""roost":{{"loadBalancer":{{"servers":[{{"url":{url_json}}}]}}}}"#
    );
    for (slug, addr) in &ready {
        let _ = write!(
            out,
            r#","ws-{slug}":{{"loadBalancer":{{"servers":[{{"url":"http://{addr}"}}]}}}}"#
        );
    }
    out.push_str("}}}");
    Bytes::from(out)
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
    pub fn current(&self, registry: &Registry) -> Bytes {
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
        let body = render(&self.routing, &registry.ready());
        self.cached.store(Arc::new((version, body.clone())));
        body
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn routing() -> RoutingConfig {
        RoutingConfig {
            domain: "ws.example.com".into(),
            entrypoints: vec!["web".into()],
            roost_url: "http://roost:8080".into(),
            auth_url: "http://roost:8081".into(),
            scheme: Scheme::Http,
            tls_resolver: None,
            public_port: 443,
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
            "http://roost:8081/auth?upstream=127.0.0.1:32768",
            "forwardAuth goes to the internal listener"
        );
        assert_eq!(
            http["services"]["roost"]["loadBalancer"]["servers"][0]["url"], "http://roost:8080",
            "the fallback goes to the public listener"
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
        for name in ["roost-auth", "roost-auth-alice", "roost-auth-bob"] {
            assert_eq!(
                http["middlewares"][name]["forwardAuth"]["authResponseHeadersRegex"], "^(?i)x[^a-z0-9]roost[^a-z0-9]",
                "{name} strips every alias of roost's headers"
            );
        }
        // Keys stay sorted (the body is hashed by Traefik: same table, same bytes).
        let text = std::str::from_utf8(&one).unwrap();
        let sorted = r#"],"authResponseHeadersRegex":"^(?i)x[^a-z0-9]roost[^a-z0-9]","maxResponseBodySize":"#;
        assert_eq!(text.matches(sorted).count(), 3, "{text}");
        assert_eq!(fa["address"], "http://roost:8081/auth");
        assert_eq!(fa["trustForwardHeader"], false);
        assert_eq!(fa["addAuthCookiesToResponse"], json!(["roost_session"]));
        // Every workspace's copy is the same middleware but for its address.
        let mut copy = http["middlewares"]["roost-auth-bob"]["forwardAuth"].clone();
        copy["address"] = fa["address"].clone();
        assert_eq!(&copy, fa);
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
