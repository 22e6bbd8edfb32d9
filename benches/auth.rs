//! In-process costs of the `/auth` hot path (criterion):
//! - token verification cold (full RSA verify) vs cached (moka hit);
//! - the whole `/auth` decision for a cached token and for a session
//!   cookie, and the request parse.
//!
//! Keys come from a static in-memory fetcher: this measures roost's own
//! work, not a network (the load script in `benches/load.sh` does that).

mod common;

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;

use common::{setup, token};
use criterion::{criterion_group, criterion_main, Criterion};
use http::HeaderValue;
use roost::forward_auth::AuthRequest;

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
    let mut headers = common::forwarded_headers();
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
    let mut with_cookie = headers.clone();
    with_cookie.remove("authorization");
    let cookie = common::session_cookie(&app, "alice");
    with_cookie.insert("cookie", HeaderValue::from_str(&cookie).unwrap());
    g.bench_function("decision_session_cookie", |b| {
        b.iter(|| {
            let req = AuthRequest::from_headers(black_box(&with_cookie), peer);
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
