//! Operators and users in control, on the real engine: a profile switch
//! recreates the workspace in the new image on the same volume (files
//! kept, written and read through the real Traefik); a purge removes the container and the volume (for its owner
//! with a confirmation, for an admin on anyone's); a quota runs out and
//! the workspace is drained and stopped, starts are refused with 429 and
//! the reset time; every action lands in the audit trail.

mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::{json, Value};

use roost::workspace::registry::Phase;
use support::docker;
use support::http::Reply;
use support::roost::{TestRoost, AUDIENCE, DOMAIN};
use support::tokens::{auth0_claims, sign};
use support::traefik::Traefik;
use support::workspace::{auth_until_ok, container, echo_get, put_file, ready_addr, until, World};

/// A second profile: the same server from another image, and a quicker idle timeout.
const PROFILES: &str = r#"
[[profiles]]
name = "lean"
description = "The echo without a health check"
image = "roost-echo:nohealth"
"#;

/// `method path` of the API with `token`, JSON `body` when given.
async fn api(roost: &TestRoost, method: &str, path: &str, token: &str, body: Option<Value>) -> Reply {
    let req = Request::builder()
        .method(method)
        .uri(roost.public_url(&format!("/_roost/api/v1/{path}")))
        .header("host", DOMAIN)
        .header("authorization", format!("Bearer {token}"));
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(b.to_string()))),
        None => req.body(Full::default()),
    };
    roost.client.send(req.unwrap()).await.unwrap()
}

fn json_of(r: &Reply) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|_| panic!("not JSON ({}): {}", r.status, r.body))
}

fn admin_token(w: &World, user: &str) -> String {
    let mut claims = auth0_claims(&w.issuer.url, AUDIENCE, user);
    claims["permissions"] = json!(["roost:admin"]);
    sign("k1", Some("k1"), &claims)
}

async fn audit_actions(roost: &TestRoost, admin: &str) -> Vec<(String, String, String)> {
    let r = api(roost, "GET", "admin/audit?limit=200", admin, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    json_of(&r)["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or("").to_string();
            (s("actor"), s("action"), s("workspace"))
        })
        .collect()
}

/// `method path` on `user`'s workspace through Traefik until it answers
/// `want` (a start, a route being replaced: polled with a deadline).
async fn through_traefik(
    t: &Traefik,
    roost: &TestRoost,
    user: &str,
    token: &str,
    req: (&str, &str, &str),
    want: u16,
) -> Reply {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let (method, path, body) = req;
        let r = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", t.web))
            .header("host", support::roost::workspace_host(user))
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let reply = roost.client.send(r).await.unwrap();
        if reply.status == want {
            return reply;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{method} {path}: {} {}",
            reply.status,
            reply.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_profile_switch_keeps_the_files_and_runs_the_new_image() {
    let Some(w) = World::new("profile").await else { return };
    let roost = w
        .roost(&format!("drain_grace = \"200ms\"\nstop_timeout = \"2s\"\n{PROFILES}"))
        .await;
    let Some(traefik) = Traefik::start(&roost.provider_base()).await else {
        return;
    };
    let alice = w.user("alice");
    let token = w.token(&alice);
    let started = api(&roost, "POST", "workspace", &token, None).await;
    assert_eq!(started.status, 202, "{}", started.body);
    through_traefik(
        &traefik,
        &roost,
        &alice,
        &token,
        ("PUT", "/files/note.txt", "kept"),
        201,
    )
    .await;
    assert_eq!(
        docker::inspect(&container(&alice), "{{.Config.Image}}"),
        "roost-echo:test"
    );

    let offered = json_of(&api(&roost, "GET", "profiles", &token, None).await);
    let names: Vec<_> = offered["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].clone())
        .collect();
    assert_eq!(names, [json!("default"), json!("lean")]);
    // No such profile, and no images of one's own.
    let unknown = api(
        &roost,
        "PUT",
        "workspace/profile",
        &token,
        Some(json!({"profile": "nope"})),
    )
    .await;
    assert_eq!(unknown.status, 400, "{}", unknown.body);
    let image = json!({"profile": "lean", "image": "evil:latest"});
    assert_eq!(
        api(&roost, "PUT", "workspace/profile", &token, Some(image))
            .await
            .status,
        400
    );
    // Running: switching restarts it, so it asks first.
    let unconfirmed = api(
        &roost,
        "PUT",
        "workspace/profile",
        &token,
        Some(json!({"profile": "lean"})),
    )
    .await;
    assert_eq!(unconfirmed.status, 409, "{}", unconfirmed.body);
    assert_eq!(
        docker::inspect(&container(&alice), "{{.Config.Image}}"),
        "roost-echo:test"
    );
    let switched = api(
        &roost,
        "PUT",
        "workspace/profile",
        &token,
        Some(json!({"profile": "lean", "confirm": true})),
    )
    .await;
    assert_eq!(switched.status, 200, "{}", switched.body);
    assert_eq!(json_of(&switched), json!({"profile": "lean", "restarting": true}));
    auth_until_ok(&roost, &alice, &token).await;
    until(60, "the new image", || {
        docker::inspect(&container(&alice), "{{.Config.Image}}") == "roost-echo:nohealth"
    })
    .await;
    auth_until_ok(&roost, &alice, &token).await;
    let read = through_traefik(&traefik, &roost, &alice, &token, ("GET", "/files/note.txt", ""), 200).await;
    assert_eq!(read.body, "kept");
    let described = through_traefik(&traefik, &roost, &alice, &token, ("GET", "/", ""), 200).await;
    let described: Value = serde_json::from_str(&described.body).unwrap();
    assert_eq!(described["env"]["ROOST_PROFILE"], "lean");
    let status = json_of(&api(&roost, "GET", "workspace", &token, None).await);
    assert_eq!(
        (status["profile"].as_str(), status["state"].as_str()),
        (Some("lean"), Some("running"))
    );
    // The choice outlives the container.
    docker::docker_lines(&["rm", "-f", &container(&alice)]);
    let registry = roost.app.workspaces.clone();
    until(20, "the registry to see the removal", || {
        !matches!(registry.get(&alice).unwrap().phase(), Phase::Ready(_))
    })
    .await;
    auth_until_ok(&roost, &alice, &token).await;
    assert_eq!(
        docker::inspect(&container(&alice), "{{.Config.Image}}"),
        "roost-echo:nohealth"
    );
    let admin = admin_token(&w, &w.user("root"));
    let actions = audit_actions(&roost, &admin).await;
    assert!(
        actions.contains(&("user".into(), "profile".into(), alice.clone())),
        "{actions:?}"
    );
    roost.stop().await;
}

#[tokio::test]
async fn purge_removes_the_container_and_the_volume() {
    let Some(w) = World::new("purge").await else { return };
    let roost = w.roost("drain_grace = \"200ms\"\nstop_timeout = \"2s\"").await;
    let (alice, bob) = (w.user("alice"), w.user("bob"));
    let (alice_token, bob_token) = (w.token(&alice), w.token(&bob));
    let admin = admin_token(&w, &w.user("root"));
    for (user, token) in [(&alice, &alice_token), (&bob, &bob_token)] {
        auth_until_ok(&roost, user, token).await;
        put_file(ready_addr(&roost, user), "note.txt", "mine");
    }
    assert_eq!(w.cleanup.volumes().len(), 2);
    // Without the workspace's name as confirmation, nothing happens.
    let refused = api(
        &roost,
        "DELETE",
        "workspace?purge=true&confirm=someone-else",
        &alice_token,
        None,
    )
    .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_eq!(w.cleanup.volumes().len(), 2);
    let purged = api(
        &roost,
        "DELETE",
        &format!("workspace?purge=true&confirm={alice}"),
        &alice_token,
        None,
    )
    .await;
    assert_eq!(purged.status, 200, "{}", purged.body);
    assert_eq!(json_of(&purged)["removed"], json!({"container": true, "volume": true}));
    assert!(docker::docker_lines(&["ps", "-aq", "--filter", &format!("name=^{}$", container(&alice))]).is_empty());
    assert_eq!(w.cleanup.volumes().len(), 1);
    // A fresh start has an empty volume.
    auth_until_ok(&roost, &alice, &alice_token).await;
    assert_eq!(echo_get(ready_addr(&roost, &alice), "/files/note.txt").0, 404);

    // Another user's: for admins only.
    let path = format!("admin/workspaces/{bob}/volume?confirm={bob}");
    assert_eq!(api(&roost, "DELETE", &path, &alice_token, None).await.status, 403);
    assert_eq!(
        api(
            &roost,
            "POST",
            &format!("admin/workspaces/{bob}/stop"),
            &alice_token,
            None
        )
        .await
        .status,
        403
    );
    let overview = api(&roost, "GET", "admin/workspaces", &admin, None).await;
    assert_eq!(overview.status, 200, "{}", overview.body);
    let rows = json_of(&overview)["workspaces"].as_array().unwrap().clone();
    let row = rows.iter().find(|r| r["workspace"] == json!(bob)).expect("bob's row");
    assert_eq!(row["state"], "running");
    assert_eq!(row["owner"], json!(bob));
    assert!(row["memory_bytes"].as_u64().is_some_and(|m| m > 0), "{row}");
    let removed = api(&roost, "DELETE", &path, &admin, None).await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert_eq!(json_of(&removed)["removed"], json!({"container": true, "volume": true}));
    assert!(docker::docker_lines(&["ps", "-aq", "--filter", &format!("name=^{}$", container(&bob))]).is_empty());
    let actions = audit_actions(&roost, &admin).await;
    for expected in [("user", "purge", &alice), ("admin", "purge", &bob)] {
        let expected = (expected.0.to_string(), expected.1.to_string(), expected.2.clone());
        assert!(actions.contains(&expected), "{expected:?} not in {actions:?}");
    }
    roost.stop().await;
}

#[tokio::test]
async fn a_used_up_quota_stops_the_workspace_and_refuses_starts_until_it_resets() {
    let Some(w) = World::new("quota").await else { return };
    // 1.8 s of run time a day; a profile nobody uses sets the reaper's pace to 500 ms.
    let extra = r#"drain_grace = "200ms"
stop_timeout = "2s"
[[profiles]]
name = "brisk"
description = "Sets the reaper's pace"
image = "roost-echo:test"
idle_timeout = "2s"
[quota]
period = "1d"
workspace_hours = 0.0005
"#;
    let roost = w.roost(extra).await;
    let (alice, root) = (w.user("alice"), w.user("root"));
    let token = w.token(&alice);
    let admin = admin_token(&w, &root);
    auth_until_ok(&roost, &alice, &token).await;
    // The admin is exempt: their workspace keeps running.
    auth_until_ok(&roost, &root, &admin).await;
    until(60, "the quota to stop alice's workspace", || {
        docker::inspect(&container(&alice), "{{.State.Running}}") == "false"
    })
    .await;
    let refused = roost.auth(&support::roost::workspace_host(&alice), Some(&token)).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    let wait: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&wait), "{wait}");
    assert!(refused.body.contains("quota"), "{}", refused.body);
    // A browser is told, in a page, when it resets.
    let host = support::roost::workspace_host(&alice);
    let bearer = format!("Bearer {token}");
    let headers = [
        ("x-forwarded-host", host.as_str()),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-method", "GET"),
        ("x-forwarded-uri", "/"),
        ("accept", "text/html"),
        ("authorization", bearer.as_str()),
    ];
    let page = roost.client.get(&roost.url("/auth"), &headers).await;
    assert_eq!(page.status, 429, "{}", page.body);
    assert!(page.body.contains("<h1>Your quota is used up</h1>"), "{}", page.body);
    assert!(page.body.contains("it resets at 20"), "{}", page.body);
    let status = json_of(&api(&roost, "GET", "workspace", &token, None).await);
    assert_eq!(status["quota"]["used_up"], json!(true), "{status}");
    assert!(status["quota"]["workspace_hours"].as_f64().unwrap() >= 0.0005);
    let start = api(&roost, "POST", "workspace", &token, None).await;
    assert_eq!(start.status, 429, "{}", start.body);
    assert_eq!(docker::inspect(&container(&root), "{{.State.Running}}"), "true");
    let actions = audit_actions(&roost, &admin).await;
    assert!(
        actions.contains(&("quota".into(), "stopped".into(), alice.clone())),
        "{actions:?}"
    );
    let metrics = roost.client.get(&roost.url("/metrics"), &[]).await.body;
    assert!(
        metrics.contains("roost_workspace_culls_total{reason=\"quota\"} 1"),
        "{metrics}"
    );
    roost.stop().await;
}

/// `tar -tvf` of `archive`: one line per entry, mode, owner and name (no dates).
fn listing(archive: &[u8]) -> Vec<String> {
    use std::io::Write;
    let mut child = std::process::Command::new("tar")
        .args(["-tvf", "-", "--numeric-owner"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(archive).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "not a tar archive");
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // mode, owner/group, size, date, time, name
            format!("{} {} {} {}", f[0], f[1], f[2], f[5..].join(" "))
        })
        .collect();
    lines.sort();
    lines
}

#[tokio::test]
async fn a_backup_round_trips_a_tree_of_files_with_their_modes() {
    let Some(w) = World::new("backup").await else { return };
    let roost = w.roost("drain_grace = \"200ms\"\nstop_timeout = \"2s\"").await;
    let alice = w.user("alice");
    let token = w.token(&alice);
    let admin = admin_token(&w, &w.user("root"));
    auth_until_ok(&roost, &alice, &token).await;
    put_file(ready_addr(&roost, &alice), "before.txt", "old");
    // A tree with modes of its own, packed the way a backup is (under `data/`).
    let dir = std::env::temp_dir().join(format!("roost-backup-{}", w.cleanup.id));
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("sub/deeper")).unwrap();
    for (name, text, mode) in [
        ("note.txt", "kept", 0o644),
        ("private.txt", "mine", 0o640),
        ("run.sh", "#!/bin/sh\n", 0o755),
        ("sub/secret", "s3", 0o600),
        ("sub/deeper/x", "x", 0o644),
    ] {
        std::fs::write(data.join(name), text).unwrap();
        std::fs::set_permissions(data.join(name), std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    }
    std::fs::set_permissions(data.join("sub"), std::os::unix::fs::PermissionsExt::from_mode(0o750)).unwrap();
    let packed = std::process::Command::new("tar")
        .args(["--numeric-owner", "--owner=1000", "--group=1000", "-C"])
        .arg(&dir)
        .args(["-cf", "-", "data"])
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(packed.status.success());
    let path = format!("admin/workspaces/{alice}/backup");
    let send_tar = |token: String, tar: Vec<u8>| {
        let req = Request::put(roost.public_url(&format!("/_roost/api/v1/{path}")))
            .header("host", DOMAIN)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/x-tar")
            .body(Full::new(Bytes::from(tar)))
            .unwrap();
        roost.client.send(req)
    };
    // Running: the volume is in use.
    let busy = send_tar(admin.clone(), packed.stdout.clone()).await.unwrap();
    assert_eq!(busy.status, 409, "{}", busy.body);
    assert_eq!(
        send_tar(token.clone(), packed.stdout.clone()).await.unwrap().status,
        403
    );
    assert_eq!(api(&roost, "DELETE", "workspace", &token, None).await.status, 202);
    let registry = roost.app.workspaces.clone();
    until(30, "alice's workspace to stop", || {
        matches!(registry.get(&alice).unwrap().phase(), Phase::Stopped)
    })
    .await;
    let restored = send_tar(admin.clone(), packed.stdout.clone()).await.unwrap();
    assert_eq!(restored.status, 200, "{}", restored.body);
    // The raw bytes (the test client reads bodies as text), off this
    // thread: roost answers on it.
    let (url, bearer) = (
        roost.public_url(&format!("/_roost/api/v1/{path}")),
        format!("authorization: Bearer {admin}"),
    );
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args([
                "-s",
                "-f",
                "-D",
                "/dev/stderr",
                "-H",
                &format!("host: {DOMAIN}"),
                "-H",
                &bearer,
                &url,
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("content-type: application/x-tar"));
    let got = listing(&out.stdout);
    let sent = listing(&packed.stdout);
    for entry in &sent {
        assert!(got.contains(entry), "{entry} not in the backup: {got:?}");
    }
    assert!(got.iter().any(|l| l.ends_with("data/before.txt")), "{got:?}");
    // Started again: the files are there.
    auth_until_ok(&roost, &alice, &token).await;
    let addr = ready_addr(&roost, &alice);
    assert_eq!(echo_get(addr, "/files/note.txt"), (200, "kept".to_string()));
    assert_eq!(echo_get(addr, "/files/before.txt"), (200, "old".to_string()));
    let actions = audit_actions(&roost, &admin).await;
    for action in ["restore", "backup"] {
        assert!(
            actions.contains(&("admin".into(), action.into(), alice.clone())),
            "{action}: {actions:?}"
        );
    }
    roost.stop().await;
}
