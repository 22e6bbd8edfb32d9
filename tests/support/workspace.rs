//! Helpers for the workspace tests against the real engine: a per-test
//! world (issuer, engine, clean-up), polling, and requests to workspaces.

use std::sync::Arc;
use std::time::{Duration, Instant};

use roost::workspace::registry::Phase;
use roost::workspace::runtime::Runtime;

use super::docker::{self, Cleanup};
use super::issuer::TestIssuer;
use super::roost::{workspace_config, workspace_host, TestRoost, AUDIENCE};
use super::tokens::{auth0_claims, sign};

pub struct World {
    pub issuer: TestIssuer,
    pub runtime: Arc<dyn Runtime>,
    pub cleanup: Cleanup,
}

impl World {
    pub async fn new(name: &str) -> Option<World> {
        let cleanup = Cleanup::new(name);
        let runtime = docker::engine(&cleanup).await?;
        Some(World {
            issuer: TestIssuer::start(&["k1"]).await,
            runtime,
            cleanup,
        })
    }

    /// A user name unique to this test (and a valid slug as it is).
    pub fn user(&self, who: &str) -> String {
        format!("{who}-{}", self.cleanup.id)
    }

    pub fn token(&self, user: &str) -> String {
        sign("k1", Some("k1"), &auth0_claims(&self.issuer.url, AUDIENCE, user))
    }

    pub fn config(&self, extra: &str) -> String {
        workspace_config(&self.issuer.url, &format!("{}\n{extra}", self.cleanup.labels_toml()))
    }

    /// roost with browser sign-in (client id and cookie key) enabled.
    pub async fn roost_with_sign_in(&self, extra: &str) -> TestRoost {
        let config = self
            .config(extra)
            .replace("[oidc]\n", "[oidc]\nclient_id = \"roost-test-client\"\n");
        let secrets = super::roost::sign_in_secrets(super::roost::COOKIE_KEY, None);
        let roost = TestRoost::start_full("127.0.0.1:0", &config, secrets, Some(self.runtime.clone())).await;
        roost.wait_ready().await;
        roost
    }

    pub async fn roost(&self, extra: &str) -> TestRoost {
        let roost = TestRoost::start_with(&self.config(extra), Some(self.runtime.clone())).await;
        roost.wait_ready().await;
        roost
    }
}

pub fn container(user: &str) -> String {
    format!("roost-{user}")
}

/// Polls `check` every 50 ms until true, or panics after `secs`.
pub async fn until(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `/auth` until it is 200 (a 503 + Retry-After means "starting, ask again").
pub async fn auth_until_ok(roost: &TestRoost, user: &str, token: &str) -> super::http::Reply {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = roost.auth(&workspace_host(user), Some(token)).await;
        if r.status == 200 {
            return r;
        }
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(r.header("retry-after").is_some());
        assert!(Instant::now() < deadline, "never ready: {}", r.body);
    }
}

/// Stores `body` as file `name` on the volume, through the echo server.
pub fn put_file(addr: std::net::SocketAddr, name: &str, body: &str) {
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "PUT",
            "--data",
            body,
        ])
        .arg(format!("http://{addr}/files/{name}"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "201");
}

pub fn echo_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", &format!("http://{addr}{path}")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.parse().unwrap_or(0), body.to_string())
}

pub fn ready_addr(roost: &TestRoost, user: &str) -> std::net::SocketAddr {
    match roost.app.workspaces.get(user).map(|e| e.phase()) {
        Some(Phase::Ready(addr)) => addr,
        other => panic!("{user} not ready: {other:?}"),
    }
}
