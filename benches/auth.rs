//! In-process costs of the `/auth` hot path (criterion):
//! - token verification cold (full RSA verify) vs cached (moka hit);
//! - the whole `/auth` decision for a cached token, and the request parse.
//!
//! Keys come from a static in-memory fetcher: this measures roost's own
//! work, not a network (the load script in `benches/load.sh` does that).

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderValue};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use roost::app::App;
use roost::auth::{FetchError, KeyFetcher};
use roost::config::{Config, Secrets};
use roost::forward_auth::AuthRequest;
use roost::workspace::memory::MemoryRuntime;
use serde_json::json;

const ISSUER: &str = "https://tenant.example.auth0.com/";
const AUDIENCE: &str = "https://roost.test/api";

/// Serves fixed discovery and JWKS documents from memory.
struct StaticFetcher {
    jwks: Bytes,
}

impl KeyFetcher for StaticFetcher {
    fn fetch<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<Bytes, FetchError>> {
        Box::pin(async move {
            if url.ends_with("openid-configuration") {
                Ok(Bytes::from(
                    json!({"issuer": ISSUER, "jwks_uri": format!("{ISSUER}.well-known/jwks.json")}).to_string(),
                ))
            } else {
                Ok(self.jwks.clone())
            }
        })
    }

    fn post_form<'a>(&'a self, _url: &'a str, _form: String) -> BoxFuture<'a, Result<Bytes, FetchError>> {
        // The benchmarks never sign a browser in.
        Box::pin(async { Err(FetchError::Status(404)) })
    }
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn token(sub: &str) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k1".into());
    let claims = json!({
        "iss": ISSUER, "sub": sub, "aud": [AUDIENCE, format!("{ISSUER}userinfo")],
        "iat": now, "exp": now + 86_400, "scope": "openid profile email",
        "permissions": ["read:workspace"], "email": format!("{sub}@example.com"),
    });
    encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(&fixture("k1.pem")).unwrap(),
    )
    .unwrap()
}

fn app(rt: &tokio::runtime::Runtime) -> Arc<App> {
    let text = format!(
        r#"
[oidc]
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
[routing]
domain = "ws.roost.test"
roost_url = "http://127.0.0.1:8080"
[workspace]
image = "roost-echo:test"
[limits]
authenticated_per_user = "100000000/s"
"#
    );
    let config = Config::from_toml(&text, Secrets::default()).unwrap();
    let jwk: serde_json::Value = serde_json::from_slice(&fixture("k1.jwk.json")).unwrap();
    let fetcher = Arc::new(StaticFetcher {
        jwks: Bytes::from(json!({ "keys": [jwk] }).to_string()),
    });
    // Containers in memory: the benchmark measures roost, not an engine.
    let runtime = Arc::new(MemoryRuntime::new(([127, 0, 0, 1], 9).into()));
    let app = App::new(config, fetcher, runtime, Arc::new(roost::store::Embedded::in_memory()));
    rt.block_on(app.keys.refresh()).unwrap();
    app
}

/// A current-thread runtime and an app whose keys are loaded.
fn setup() -> (tokio::runtime::Runtime, Arc<App>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = app(&rt);
    (rt, app)
}

fn verify(c: &mut Criterion) {
    let (rt, app) = setup();
    let tok = token("alice");
    let mut g = c.benchmark_group("verify");
    g.bench_function("cold_rsa", |b| {
        b.iter(|| rt.block_on(app.verifier.verify_uncached(black_box(&tok))).unwrap())
    });
    rt.block_on(app.verifier.verify(&tok)).unwrap();
    g.bench_function("cached", |b| b.iter(|| app.verifier.cached(black_box(&tok)).unwrap()));
    g.finish();
}

fn decision(c: &mut Criterion) {
    let (rt, app) = setup();
    let tok = token("alice");
    rt.block_on(app.verifier.verify(&tok)).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("x-forwarded-host", HeaderValue::from_static("alice.ws.roost.test"));
    headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
    headers.insert("x-forwarded-method", HeaderValue::from_static("GET"));
    headers.insert("x-forwarded-uri", HeaderValue::from_static("/lab/tree"));
    headers.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
    headers.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {tok}")).unwrap(),
    );
    let peer: IpAddr = "127.0.0.1".parse().unwrap();
    let mut g = c.benchmark_group("auth");
    g.bench_function("parse_request", |b| {
        b.iter(|| AuthRequest::from_headers(black_box(&headers), peer).client_ip(0))
    });
    g.bench_function("decision_cached_token", |b| {
        b.iter(|| {
            let req = AuthRequest::from_headers(black_box(&headers), peer);
            rt.block_on(roost::forward_auth::handle(&app.forward_auth, &req))
                .unwrap()
        })
    });
    g.finish();
}

/// `/traefik` for 10,000 ready workspaces: a full render, and a poll
/// served from memory.
fn route_table(c: &mut Criterion) {
    let routing = roost::config::RoutingConfig {
        domain: "ws.example.com".into(),
        entrypoints: vec!["websecure".into()],
        roost_url: "http://roost:8080".into(),
        auth_url: "http://roost:8081".into(),
        scheme: roost::config::Scheme::Https,
        tls_resolver: Some("letsencrypt".into()),
        public_port: 443,
    };
    let ready: Vec<(Arc<str>, std::net::SocketAddr)> = (0..10_000u32)
        .map(|i| {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 20_000 + (i % 40_000) as u16));
            (Arc::from(format!("user-{i:05}")), addr)
        })
        .collect();
    let body = roost::traefik::render(&routing, &ready);
    println!("/traefik body for 10,000 workspaces: {} bytes", body.len());
    let mut g = c.benchmark_group("traefik");
    g.sample_size(20);
    g.bench_function("render_10k_workspaces", |b| {
        b.iter(|| roost::traefik::render(&routing, black_box(&ready)))
    });
    let (_rt, app) = setup();
    let table = roost::traefik::RouteTable::new(routing.clone());
    g.bench_function("poll_from_memory", |b| b.iter(|| table.current(&app.workspaces)));
    g.finish();
}

criterion_group!(benches, verify, decision, route_table);
criterion_main!(benches);
