//! The `roost` binary: `check-config` and `serve` as an operator runs them.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::issuer::TestIssuer;
use support::roost::config_text;

fn roost_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_roost"))
}

/// `roost check-config --config PATH`.
fn check_config(path: impl AsRef<std::path::Path>) -> std::process::Output {
    roost_bin()
        .arg("check-config")
        .arg("--config")
        .arg(path.as_ref())
        .output()
        .unwrap()
}

fn write_config(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
    f
}

const BAD: &str = r#"
listen = "localhost"
[oidc]
issuer = "ftp://tenant.auth0.com/"
audience = ""
algorithms = ["none"]
[routing]
domain = "ws.example.com"
roost_url = "roost:8080"
[workspace]
image = "roost-echo"
memmory = "1GiB"
idle_timeout = "soon"
address = "bridge"
[limits]
authenticated_per_user = "many/s"
"#;

#[test]
fn check_config_names_every_bad_key_and_exits_64() {
    let f = write_config(BAD);
    let out = check_config(f.path());
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in [
        "listen",
        "oidc.issuer",
        "oidc.audience",
        "oidc.algorithms",
        "routing.roost_url",
        "workspace.memmory",
        "workspace.idle_timeout",
        "workspace.address",
        "limits.authenticated_per_user",
    ] {
        assert!(stderr.contains(&format!("{key}:")), "{key} missing from:\n{stderr}");
    }
    assert!(stderr.contains("\"soon\""), "bad value shown:\n{stderr}");
}

#[test]
fn check_config_accepts_a_good_file() {
    let f = write_config(&config_text("https://tenant.auth0.com/", "", ""));
    let out = check_config(f.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn check_config_warns_when_workspace_names_come_from_a_claim_other_than_sub() {
    let f = write_config(&config_text(
        "https://tenant.auth0.com/",
        "username_claim = \"nickname\"",
        "",
    ));
    let out = check_config(f.path());
    assert!(out.status.success(), "a warning, not an error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: oidc.username_claim") && stderr.contains("not be unique"),
        "{stderr}"
    );
    let quiet = write_config(&config_text("https://tenant.auth0.com/", "", ""));
    assert!(!String::from_utf8_lossy(&check_config(quiet.path()).stderr).contains("warning"));
}

#[test]
fn serve_with_a_bad_config_exits_64_before_binding() {
    // The listen address is a port we hold: binding it would fail differently.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let text = BAD.replace(
        "listen = \"localhost\"",
        &format!("listen = \"{}\"", held.local_addr().unwrap()),
    );
    let f = write_config(&text);
    let out = roost_bin().arg("serve").arg("--config").arg(f.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("cannot listen"));
}

#[test]
fn secrets_from_the_environment_are_never_printed() {
    let f = write_config(&BAD.replace("[limits]", "[limits]\nunauthenticated_per_ip = \"x\""));
    let out = roost_bin()
        .arg("check-config")
        .arg("--config")
        .arg(f.path())
        .env("ROOST_OIDC_CLIENT_SECRET", "s3cr3t-client-value")
        .env("ROOST_COOKIE_KEY", "tiny")
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("ROOST_COOKIE_KEY:"), "{all}");
    assert!(!all.contains("s3cr3t") && !all.contains("tiny\""), "{all}");
}

/// `roost serve` as a child process, ready.
struct Served {
    child: tokio::process::Child,
    /// The rest of its (JSON) log.
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
    /// Its internal listener (`/healthz`, `/readyz`).
    internal: String,
    _config: tempfile::NamedTempFile,
}

/// `roost serve` on port 0 with JSON logs, once `/readyz` answers.
async fn serve_json(issuer: &TestIssuer) -> Served {
    use tokio::io::AsyncBufReadExt;
    let text = config_text(&issuer.url, "", "").replace("[oidc]", "[server]\nlog_format = \"json\"\n[oidc]");
    let f = write_config(&text);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_roost"))
        .arg("serve")
        .arg("--config")
        .arg(f.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // roost binds port 0 and logs the address it got, as JSON.
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
            if v["fields"]["message"] == "roost listening" {
                // /readyz lives on the internal listener.
                return v["fields"]["internal"].as_str().unwrap().to_string();
            }
        }
        panic!("roost exited before listening");
    })
    .await
    .unwrap();
    let client = support::http::TestClient::default();
    let url = format!("http://{addr}/readyz");
    support::eventually(Duration::from_secs(20), "roost serve /readyz", || {
        let client = client.clone();
        let url = url.clone();
        async move { (client.get(&url, &[]).await.status == 200).then_some(()) }
    })
    .await;
    Served {
        child,
        lines,
        internal: addr,
        _config: f,
    }
}

#[tokio::test]
async fn serve_answers_then_drains_on_sigterm() {
    let issuer = TestIssuer::start(&["k1"]).await;
    let Served {
        mut child, mut lines, ..
    } = serve_json(&issuer).await;
    let pid = child.id().unwrap().to_string();
    assert!(Command::new("kill").arg("-TERM").arg(&pid).status().unwrap().success());
    let mut rest = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        rest.push(line);
    }
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(rest.iter().any(|l| l.contains("shutting down")), "{rest:?}");
}

/// `roost healthcheck ARGS`: its exit code and its output (both streams).
async fn healthcheck(args: &[&str]) -> (Option<i32>, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_roost"))
        .arg("healthcheck")
        .args(args)
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[tokio::test]
async fn healthcheck_passes_against_a_running_roost_and_fails_against_a_closed_port() {
    let issuer = TestIssuer::start(&["k1"]).await;
    let served = serve_json(&issuer).await;
    let addr = served.internal.clone();
    let (code, out) = healthcheck(&["--url", &format!("http://{addr}/healthz")]).await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out.lines().count(), 1, "one line: {out}");

    // From the config file, as the image's HEALTHCHECK runs it; an
    // unspecified address is checked on loopback.
    let port = addr.rsplit(':').next().unwrap();
    for listen in [addr.clone(), format!("0.0.0.0:{port}")] {
        let f = write_config(&format!("internal_listen = \"{listen}\"\n"));
        let (code, out) = healthcheck(&["--config", f.path().to_str().unwrap()]).await;
        assert_eq!(code, Some(0), "{listen}: {out}");
    }

    // Nothing listening: 1, with one line saying why.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (code, out) = healthcheck(&["--url", &format!("http://{closed}/healthz")]).await;
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(out.lines().count(), 1, "one line: {out}");
    assert!(out.contains("cannot connect"), "{out}");

    // A path that is not 200 fails too, and a missing config file says so.
    let (code, out) = healthcheck(&["--url", &format!("http://{addr}/no-such-path")]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("not 200"), "{out}");
    let (code, out) = healthcheck(&["--config", "/nonexistent/roost.toml"]).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("cannot read /nonexistent/roost.toml"), "{out}");
}

#[test]
fn the_example_config_is_valid() {
    let path = support::project_dir().join("roost.example.toml");
    let out = check_config(&path);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_compose_example_configs_are_valid_once_their_secrets_are_set() {
    for file in ["examples/roost.compose.toml", "examples/roost.compose-b.toml"] {
        compose_config_is_valid_once_its_secrets_are_set(file);
    }
}

fn compose_config_is_valid_once_its_secrets_are_set(file: &str) {
    let path = support::project_dir().join(file);
    let without = roost_bin()
        .args(["check-config", "--config"])
        .arg(&path)
        .env_remove("ROOST_COOKIE_KEY")
        .output()
        .unwrap();
    assert_eq!(without.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&without.stderr);
    assert!(
        stderr.contains("ROOST_COOKIE_KEY"),
        "browser sign-in needs the cookie key: {stderr}"
    );
    let with = roost_bin()
        .args(["check-config", "--config"])
        .arg(&path)
        .env("ROOST_COOKIE_KEY", "a-cookie-key-of-at-least-32-characters-0123")
        .env("ROOST_REDIS_URL", "redis://:a-password@127.0.0.1:6379/0")
        .output()
        .unwrap();
    assert!(with.status.success(), "{}", String::from_utf8_lossy(&with.stderr));
    let bad_url = roost_bin()
        .args(["check-config", "--config"])
        .arg(&path)
        .env("ROOST_COOKIE_KEY", "a-cookie-key-of-at-least-32-characters-0123")
        .env("ROOST_REDIS_URL", "http://user:hunter2@127.0.0.1:6379")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&bad_url.stderr);
    assert_eq!(bad_url.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("ROOST_REDIS_URL") && !stderr.contains("hunter2"),
        "{stderr}"
    );
}
