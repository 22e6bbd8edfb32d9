//! Shared test harness: a real Auth0-shaped issuer on loopback, roost
//! in-process on port 0, a tiny HTTP client, token minting, and the
//! external-tool lookup that fails loudly in CI.
#![allow(dead_code)]

pub mod browser;
pub mod docker;
pub mod http;
pub mod in_process;
pub mod issuer;
pub mod jar;
pub mod oidc_mock;
pub mod redis_server;
pub mod replica;
pub mod roost;
pub mod swarm;
pub mod tokens;
pub mod traefik;
pub mod workspace;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where the project keeps its test tools (see `scripts/test`).
pub fn project_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A tool the test setup installs. Missing: a failure in CI (`CI=true`), a
/// loud skip elsewhere (`None`).
pub fn required_tool(relative: &str, what: &str) -> Option<PathBuf> {
    let path = project_dir().join(relative);
    if path.exists() {
        return Some(path);
    }
    let msg = format!(
        "{what} not found at {} (run scripts/test, which installs it)",
        path.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!("\n*** SKIPPED: {msg} ***\n");
    None
}

/// Polls `check` until it returns `Some`, or panics after `deadline`.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = Instant::now() + deadline;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}
