//! The shipped compose stack, `examples/docker-compose.yml`, started as a
//! user starts it (`docker-compose up -d`): roost's own image as two
//! replicas, Traefik and an authenticated Redis, with the locally built
//! `roost-traefik:test` and `roost-redis:test` standing in for the
//! registry's images. A user signs in through Traefik against the real
//! oidc-provider-mock (on loopback; the stack runs on the host's network),
//! reaches their workspace through Traefik, and the workspace has no engine
//! socket. `docker-compose down -v` and roost's own leftovers (its
//! workspace, volume and network, labelled with this run's deployment id)
//! leave nothing behind; a guard does the same when the test fails.
//!
//! Settings reach docker-compose through its own environment only; the
//! configs are the shipped `examples/roost.compose*.toml` with this run's
//! ports, issuer, domain and image.

mod support;

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::docker::{docker_lines, inspect, Cleanup};
use support::http::TestClient;
use support::jar::Jar;
use support::oidc_mock::OidcMock;
use support::roost::DOMAIN;
use support::traefik::free_port;

const CLIENT_ID: &str = "roost-compose-test";
const STARTUP: Duration = Duration::from_secs(120);

/// `docker-compose`, or `None` (a loud skip outside CI) when it is missing.
fn compose_tool() -> Option<()> {
    let found = Command::new("docker-compose")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some(());
    }
    let msg = "docker-compose not found (run scripts/test, which installs it)";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!("\n*** SKIPPED: {msg} ***\n");
    None
}

/// The group of the engine's socket, which roost's non-root user is given.
fn docker_socket() -> (PathBuf, u32) {
    let path = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"));
    let gid = std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .gid();
    (path, gid)
}

/// `text` with `from` replaced by `to`, which must be there (the shipped
/// file changed shape otherwise).
fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "{from:?} is no longer in the shipped config:\n{text}"
    );
    text.replace(from, to)
}

/// One stack: its project, deployment id, settings and configs. Dropping
/// it takes everything down, also when the test failed.
struct Stack {
    project: String,
    deployment: String,
    env: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

/// The loopback ports of one stack (each one the kernel just handed out).
struct Ports {
    web: u16,
    lb_public: u16,
    lb_internal: u16,
    a: (u16, u16),
    b: (u16, u16),
    redis: u16,
}

impl Stack {
    fn new(issuer: &str, ports: &Ports) -> Stack {
        let n = std::process::id();
        let (project, deployment) = (format!("roost-compose-{n}"), format!("cmp-{n}"));
        let dir = tempfile::tempdir().unwrap();
        let examples = support::project_dir().join("examples");
        let config = |file: &str, (listen, internal): (u16, u16), old: (u16, u16)| {
            let shipped = std::fs::read_to_string(examples.join(file)).unwrap();
            let mut text = replaced(
                &shipped,
                &format!("127.0.0.1:{}\"", old.0),
                &format!("127.0.0.1:{listen}\""),
            );
            for (from, to) in [
                (format!("127.0.0.1:{}\"", old.1), format!("127.0.0.1:{internal}\"")),
                ("id = \"roost\"".into(), format!("id = \"{deployment}\"")),
                ("https://YOUR-TENANT.auth0.com/".into(), issuer.to_string()),
                ("YOUR-CLIENT-ID".into(), CLIENT_ID.into()),
                ("domain = \"ws.example.com\"".into(), format!("domain = \"{DOMAIN}\"")),
                ("127.0.0.1:8090\"".into(), format!("127.0.0.1:{}\"", ports.lb_public)),
                ("127.0.0.1:8091\"".into(), format!("127.0.0.1:{}\"", ports.lb_internal)),
                (
                    "scheme = \"http\"".into(),
                    format!("scheme = \"http\"\npublic_port = {}", ports.web),
                ),
                ("registry.example.com/workspace:latest".into(), "roost-echo:test".into()),
            ] {
                text = replaced(&text, &from, &to);
            }
            let path = dir.path().join(file);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };
        let config_a = config("roost.compose.toml", ports.a, (8080, 8081));
        let config_b = config("roost.compose-b.toml", ports.b, (8082, 8083));
        let (socket, gid) = docker_socket();
        let env = [
            ("ROOST_IMAGE", "roost:latest".to_string()),
            ("TRAEFIK_IMAGE", "roost-traefik:test".into()),
            ("REDIS_IMAGE", "roost-redis:test".into()),
            ("ROOST_HTTP_PORT", ports.web.to_string()),
            ("ROOST_LB_PUBLIC_PORT", ports.lb_public.to_string()),
            ("ROOST_LB_INTERNAL_PORT", ports.lb_internal.to_string()),
            ("ROOST_A_PORT", ports.a.0.to_string()),
            ("ROOST_A_INTERNAL_PORT", ports.a.1.to_string()),
            ("ROOST_B_PORT", ports.b.0.to_string()),
            ("ROOST_B_INTERNAL_PORT", ports.b.1.to_string()),
            ("REDIS_PORT", ports.redis.to_string()),
            ("ROOST_CONFIG_A", config_a),
            ("ROOST_CONFIG_B", config_b),
            ("DOCKER_SOCKET", socket.display().to_string()),
            ("DOCKER_GID", gid.to_string()),
            ("ROOST_OIDC_CLIENT_SECRET", "compose-test-client-secret".into()),
            (
                "ROOST_COOKIE_KEY",
                "compose-test-cookie-key-0123456789abcdef0123".into(),
            ),
            (
                "ROOST_REDIS_PASSWORD",
                "compose-test-redis-password-0123456789abcdef".into(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Stack {
            project,
            deployment,
            env,
            _dir: dir,
        }
    }

    /// `docker-compose -p PROJECT -f examples/docker-compose.yml ARGS`, with
    /// the stack's settings in the child's environment only.
    fn compose(&self, args: &[&str]) -> Output {
        Command::new("docker-compose")
            .arg("-p")
            .arg(&self.project)
            .arg("-f")
            .arg(support::project_dir().join("examples/docker-compose.yml"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("run docker-compose")
    }

    fn compose_ok(&self, args: &[&str]) {
        let out = self.compose(args);
        assert!(
            out.status.success(),
            "docker-compose {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The container of one service.
    fn container(&self, service: &str) -> String {
        let out = self.compose(&["ps", "-q", service]);
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(!id.is_empty(), "no container for {service}");
        id
    }

    fn filters(&self) -> [String; 2] {
        [
            format!("label=com.docker.compose.project={}", self.project),
            format!("label=roost.deployment={}", self.deployment),
        ]
    }

    /// What roost made for this deployment (its workspaces, their volumes,
    /// the workspace network): removed, as an operator would.
    fn remove_roosts_own(&self) {
        let filter = &self.filters()[1];
        for (kind, rm) in [
            (vec!["ps", "-aq"], vec!["rm", "-f"]),
            (vec!["volume", "ls", "-q"], vec!["volume", "rm", "-f"]),
            (vec!["network", "ls", "-q"], vec!["network", "rm"]),
        ] {
            let ids = docker_lines(&[kind.as_slice(), &["--filter", filter]].concat());
            if !ids.is_empty() {
                let _ = Command::new("docker").args(&rm).args(&ids).output();
            }
        }
    }

    /// Every container, volume and network of the project or the deployment.
    fn leftovers(&self) -> Vec<String> {
        let mut found = Vec::new();
        for filter in &self.filters() {
            for kind in [&["ps", "-aq"][..], &["volume", "ls", "-q"], &["network", "ls", "-q"]] {
                let ids = docker_lines(&[kind, &["--filter", filter]].concat());
                found.extend(ids.into_iter().map(|id| format!("{} {id} ({filter})", kind[0])));
            }
        }
        found
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs = self.compose(&["logs", "--no-color", "--tail", "40"]);
            eprintln!("--- the stack's logs ---\n{}", String::from_utf8_lossy(&logs.stdout));
        }
        let _ = self.compose(&["down", "-v", "--timeout", "10"]);
        self.remove_roosts_own();
    }
}

/// Polls `check` (blocking) until it returns `Some`, or panics after `deadline`.
fn until<T>(deadline: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Redis answers a command without the password with NOAUTH.
fn redis_refuses_without_password(port: u16) {
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("redis on loopback");
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(b"PING\r\n").unwrap();
    let mut buf = [0u8; 64];
    let n = tcp.read(&mut buf).unwrap();
    let reply = String::from_utf8_lossy(&buf[..n]);
    assert!(
        reply.starts_with("-NOAUTH"),
        "redis answered {reply:?} without a password"
    );
}

fn no_socket(container: &str) {
    let mounts = inspect(container, "{{json .Mounts}} {{json .HostConfig.Binds}}");
    assert!(
        !mounts.contains("docker.sock"),
        "the workspace sees the engine: {mounts}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_stack_signs_a_user_in_and_serves_their_workspace_through_traefik() {
    let started = Instant::now();
    if compose_tool().is_none() {
        return;
    }
    // Reachability, and the images (scripts/build-images --quiet) once.
    if support::docker::engine(&Cleanup::new("compose")).await.is_none() {
        return;
    }
    let Some(provider) = OidcMock::start().await else {
        return;
    };
    let ports = Ports {
        web: free_port(),
        lb_public: free_port(),
        lb_internal: free_port(),
        a: (free_port(), free_port()),
        b: (free_port(), free_port()),
        redis: free_port(),
    };
    let stack = Stack::new(&provider.issuer, &ports);
    stack.compose_ok(&["up", "-d"]);
    let roost_a = stack.container("roost-a");
    let roost_b = stack.container("roost-b");

    // Traefik answers for the workspace host once roost's table is applied:
    // a browser without a session is sent to sign in.
    let web: std::net::SocketAddr = ([127, 0, 0, 1], ports.web).into();
    let client = TestClient::default();
    let home = format!("http://alice.{DOMAIN}/");
    support::eventually(STARTUP, "roost's routes in Traefik", || {
        let client = client.clone();
        async move {
            let req = http::Request::get(format!("http://{web}/"))
                .header("host", format!("alice.{DOMAIN}"))
                .header("accept", "text/html")
                .body(Default::default())
                .unwrap();
            client.send(req).await.ok().filter(|r| r.status == 302).map(|_| ())
        }
    })
    .await;

    // Sign in through Traefik: roost → the provider's form → the callback
    // (on either replica: the sign-in state is in Redis) → the workspace.
    let mut jar = Jar::new(web);
    let (form, authorize) = jar.follow(&home).await;
    assert_eq!(form.status, 200, "the provider's form: {}", form.body);
    assert!(authorize.starts_with(&provider.issuer), "{authorize}");
    let back = jar.post_form(&authorize, "sub=alice", &[]).await;
    assert_eq!(back.status, 302, "{}", back.body);
    let (landed, url) = jar.follow(back.header("location").unwrap()).await;
    assert!(
        url.starts_with(&format!("http://alice.{DOMAIN}:{}/", ports.web)),
        "{url}: {landed:?}"
    );
    assert!(jar.cookies.contains_key("roost_session"));

    // The workspace (roost-echo) answers through Traefik, as alice.
    let echo: serde_json::Value = support::eventually(STARTUP, "alice's workspace through Traefik", || {
        let mut jar = jar.clone();
        let home = home.clone();
        async move {
            let r = jar.get(&home).await;
            (r.status == 200)
                .then(|| serde_json::from_str::<serde_json::Value>(&r.body).ok())
                .flatten()
        }
    })
    .await;
    assert_eq!(echo["env"]["ROOST_USER"], "alice", "{echo}");

    // The workspace: on roost's isolated network, without the engine's socket.
    let workspaces = docker_lines(&["ps", "-q", "--filter", &stack.filters()[1]]);
    assert_eq!(workspaces.len(), 1, "one workspace: {workspaces:?}");
    no_socket(&workspaces[0]);
    let network = format!("{}-workspaces", stack.deployment);
    let networks = inspect(
        &workspaces[0],
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
    );
    assert_eq!(networks, network);
    let options = inspect(&network, "{{json .Options}} internal={{.Internal}}");
    assert!(
        options.contains("\"com.docker.network.bridge.enable_icc\":\"false\"") && options.ends_with("internal=true"),
        "{options}"
    );

    // roost runs as its non-root user, drives the engine through the
    // socket, and its image's HEALTHCHECK (`roost healthcheck`) passes.
    for id in [&roost_a, &roost_b] {
        assert_eq!(inspect(id, "{{.Config.User}}"), "65532:65532");
        assert!(inspect(id, "{{json .Mounts}}").contains("docker.sock"));
        until(STARTUP, "roost healthy", || {
            (inspect(id, "{{.State.Health.Status}}") == "healthy").then_some(())
        });
    }
    redis_refuses_without_password(ports.redis);

    // Down: nothing of the project or the deployment remains.
    stack.compose_ok(&["down", "-v", "--timeout", "10"]);
    stack.remove_roosts_own();
    let left = stack.leftovers();
    assert!(left.is_empty(), "left behind: {left:?}");
    eprintln!("compose stack test took {:?}", started.elapsed());
    drop(stack);
}

#[test]
fn the_stack_reads_its_settings_from_the_environment_with_the_documented_defaults() {
    let text = std::fs::read_to_string(support::project_dir().join("examples/docker-compose.yml")).unwrap();
    for setting in [
        "${ROOST_IMAGE:-roost:latest}",
        "${TRAEFIK_IMAGE:-traefik:v3.7.15}",
        "${REDIS_IMAGE:-redis:7}",
        "${ROOST_HTTP_PORT:-80}",
        "${DOCKER_GID:?",
        "${ROOST_REDIS_PASSWORD:?",
    ] {
        assert!(text.contains(setting), "{setting} missing");
    }
    // Only roost mounts the engine's socket.
    let mounts = text.matches("/var/run/docker.sock}:/var/run/docker.sock").count();
    assert_eq!(mounts, 2, "the socket is mounted by the two roost replicas only");
}
