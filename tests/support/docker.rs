//! The real Docker Engine for tests: reachability (a failure in CI, a loud
//! skip elsewhere), the locally built echo and probe images, and a guard
//! that removes every container, volume and network a test made, also when
//! it fails.

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use roost::workspace::docker::DockerRuntime;
use roost::workspace::runtime::Runtime;

/// The engine, or `None` (with a loud skip line) when it is unreachable
/// outside CI. The runtime manages only `cleanup`'s containers.
pub async fn engine(cleanup: &Cleanup) -> Option<Arc<dyn Runtime>> {
    let reachable = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !reachable {
        let msg = "Docker Engine not reachable (docker version failed)";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{msg}");
        }
        eprintln!("\n*** SKIPPED: {msg} ***\n");
        return None;
    }
    build_images();
    let labels = std::collections::BTreeMap::from([("roost-test.run".to_string(), cleanup.id.clone())]);
    Some(Arc::new(DockerRuntime::from_env().scoped(&labels)))
}

/// The engine as a roost of deployment `id` trusting `issuer` sees it (what
/// `roost serve` builds from its config).
pub async fn engine_for(cleanup: &Cleanup, id: &str, issuer: &str) -> Option<Arc<dyn Runtime>> {
    engine(cleanup).await?;
    let labels = std::collections::BTreeMap::from([("roost-test.run".to_string(), cleanup.id.clone())]);
    Some(Arc::new(
        DockerRuntime::from_env().scoped(&labels).for_deployment(id, issuer),
    ))
}

/// Builds the echo and probe images once per test binary (`scripts/build-images`).
fn build_images() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new(super::project_dir().join("scripts/build-images"))
            .arg("--quiet")
            .status()
            .expect("run scripts/build-images");
        assert!(status.success(), "scripts/build-images failed");
    });
}

/// Labels every container, volume and network of one test; removes them all
/// on drop.
pub struct Cleanup {
    pub id: String,
}

impl Cleanup {
    pub fn new(name: &str) -> Cleanup {
        static N: AtomicU64 = AtomicU64::new(0);
        let id = format!("{name}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        Cleanup { id }
    }

    /// The `[workspace]` lines that scope what roost creates to this test:
    /// its label, and a workspace network of its own (so parallel tests
    /// never share one, and the guard removes it).
    pub fn labels_toml(&self) -> String {
        format!(
            "labels = {{ \"roost-test.run\" = \"{}\" }}\nnetwork = \"{}\"",
            self.id,
            self.network()
        )
    }

    /// The test's `workspace.network`.
    pub fn network(&self) -> String {
        format!("roost-test-{}", self.id)
    }

    pub fn filter(&self) -> String {
        format!("label=roost-test.run={}", self.id)
    }

    /// IDs of this test's containers, all states.
    pub fn containers(&self) -> Vec<String> {
        docker_lines(&["ps", "-aq", "--filter", &self.filter()])
    }

    /// IDs of this test's running containers.
    pub fn running(&self) -> Vec<String> {
        docker_lines(&["ps", "-q", "--filter", &self.filter()])
    }

    pub fn volumes(&self) -> Vec<String> {
        docker_lines(&["volume", "ls", "-q", "--filter", &self.filter()])
    }

    pub fn networks(&self) -> Vec<String> {
        docker_lines(&["network", "ls", "-q", "--filter", &self.filter()])
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let containers = self.containers();
        if !containers.is_empty() {
            let _ = Command::new("docker").args(["rm", "-f"]).args(&containers).output();
        }
        let volumes = self.volumes();
        if !volumes.is_empty() {
            let _ = Command::new("docker")
                .args(["volume", "rm", "-f"])
                .args(&volumes)
                .output();
        }
        let networks = self.networks();
        if !networks.is_empty() {
            let _ = Command::new("docker").args(["network", "rm"]).args(&networks).output();
        }
    }
}

pub fn docker_lines(args: &[&str]) -> Vec<String> {
    let out = Command::new("docker").args(args).output().expect("docker");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

/// `docker inspect --format FORMAT NAME`, trimmed.
pub fn inspect(name: &str, format: &str) -> String {
    let out = Command::new("docker")
        .args(["inspect", "--format", format, name])
        .output()
        .expect("docker");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
