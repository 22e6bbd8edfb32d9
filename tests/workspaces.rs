//! Workspaces on the real Docker Engine, driven through `/auth` the way
//! Traefik drives it: spawn, wake, single flight, admission, hardening,
//! volumes, culling, lifetime, adoption after a restart, and failures.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use roost::workspace::registry::Phase;
use roost::workspace::runtime::Runtime;
use support::docker;
use support::roost::{workspace_host, TestRoost, AUDIENCE};
use support::tokens::sign;
use support::workspace::{auth_until_ok, container, echo_get, put_file, ready_addr, until, World};

#[tokio::test]
async fn first_request_spawns_a_hardened_workspace() {
    let Some(w) = World::new("spawn").await else { return };
    let roost = w.roost("").await;
    let alice = w.user("alice");
    let r = auth_until_ok(&roost, &alice, &w.token(&alice)).await;
    assert_eq!(r.header("x-roost-workspace"), Some(alice.as_str()));

    let name = container(&alice);
    assert_eq!(docker::inspect(&name, "{{.State.Running}}"), "true");
    assert_eq!(
        docker::inspect(&name, "{{index .Config.Labels \"roost.managed\"}}"),
        "true"
    );
    assert_eq!(
        docker::inspect(&name, "{{index .Config.Labels \"roost.owner\"}}"),
        alice
    );
    assert_eq!(
        docker::inspect(&name, "{{index .Config.Labels \"roost.workspace\"}}"),
        alice
    );
    assert!(!docker::inspect(&name, "{{index .Config.Labels \"roost.config-hash\"}}").is_empty());
    // Hardening and limits.
    assert_eq!(docker::inspect(&name, "{{.HostConfig.CapDrop}}"), "[ALL]");
    assert!(docker::inspect(&name, "{{.HostConfig.SecurityOpt}}").contains("no-new-privileges"));
    assert_eq!(docker::inspect(&name, "{{.HostConfig.Privileged}}"), "false");
    assert_eq!(docker::inspect(&name, "{{.HostConfig.PidsLimit}}"), "1024");
    assert_eq!(docker::inspect(&name, "{{.HostConfig.NanoCpus}}"), "1000000000");
    assert_eq!(docker::inspect(&name, "{{.HostConfig.Memory}}"), "1073741824");
    assert_eq!(
        docker::inspect(&name, "{{.HostConfig.MemorySwap}}"),
        "1073741824",
        "no swap beyond the memory limit"
    );
    assert_eq!(
        docker::inspect(&name, "{{index .HostConfig.Tmpfs \"/tmp\"}}"),
        "rw,nosuid,nodev,size=268435456,mode=1777"
    );
    assert_eq!(docker::inspect(&name, "{{.HostConfig.ReadonlyRootfs}}"), "false");
    assert_eq!(docker::inspect(&name, "{{.Config.User}}"), "", "the image's user");
    // Only on the test's workspace network, nothing published.
    let network = w.cleanup.network();
    assert_eq!(
        docker::inspect(&name, "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}"),
        network
    );
    assert_eq!(docker::inspect(&name, "{{len .HostConfig.PortBindings}}"), "0");
    assert_eq!(
        docker::inspect(
            &network,
            "{{.Internal}} {{index .Options \"com.docker.network.bridge.enable_icc\"}}"
        ),
        "true false"
    );
    let mounts = docker::inspect(&name, "{{range .Mounts}}{{.Name}}:{{.Destination}} {{end}}");
    assert_eq!(mounts.trim(), format!("roost-{alice}-data:/data"));
    assert!(!docker::inspect(&name, "{{.HostConfig.Binds}}").contains("docker.sock"));
    // The workspace itself answers, and knows who it belongs to.
    let (code, body) = echo_get(ready_addr(&roost, &alice), "/");
    assert_eq!(code, 200);
    let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["env"]["ROOST_USER"], alice.as_str(), "{body}");
    let metrics = roost.client.get(&roost.url("/metrics"), &[]).await.body;
    assert!(
        metrics.contains("roost_workspace_ready_duration_seconds_count{action=\"created\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("roost_workspaces_running 1"), "{metrics}");
    roost.stop().await;
    // roost's shutdown never stops workspaces.
    assert_eq!(docker::inspect(&name, "{{.State.Running}}"), "true");
}

#[tokio::test]
async fn user_and_read_only_root_reach_the_container() {
    let Some(w) = World::new("useropts").await else { return };
    let roost = w
        .roost("user = \"1000:1000\"\nread_only = true\ntmp_size = \"16MiB\"")
        .await;
    let alice = w.user("alice");
    auth_until_ok(&roost, &alice, &w.token(&alice)).await;
    let name = container(&alice);
    assert_eq!(docker::inspect(&name, "{{.Config.User}}"), "1000:1000");
    assert_eq!(docker::inspect(&name, "{{.HostConfig.ReadonlyRootfs}}"), "true");
    assert_eq!(
        docker::inspect(&name, "{{index .HostConfig.Tmpfs \"/tmp\"}}"),
        "rw,nosuid,nodev,size=16777216,mode=1777"
    );
    let (code, _) = echo_get(ready_addr(&roost, &alice), "/healthz");
    assert_eq!(code, 200);
    roost.stop().await;
}

#[tokio::test]
async fn two_hundred_concurrent_first_requests_make_one_container() {
    let Some(w) = World::new("flight").await else { return };
    let roost = w.roost("").await;
    let alice = w.user("alice");
    let token = w.token(&alice);
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let client = roost.client.clone();
        let url = roost.url("/auth");
        let host = workspace_host(&alice);
        let bearer = format!("Bearer {token}");
        tasks.push(tokio::spawn(async move {
            client
                .get(&url, &[("x-forwarded-host", &host), ("authorization", &bearer)])
                .await
                .status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(w.cleanup.containers().len(), 1);
    // And the registry's own single flight, called directly.
    let registry = roost.app.workspaces.clone();
    let bob = w.user("bob");
    let identity = roost.app.verifier.verify(&w.token(&bob)).await.unwrap();
    let calls = (0..200).map(|_| {
        let registry = registry.clone();
        let identity = identity.clone();
        let bob = bob.clone();
        tokio::spawn(async move {
            let wait = Duration::from_secs(25);
            registry
                .ensure_ready(&identity, &bob, wait)
                .await
                .map_err(|e| e.to_string())
        })
    });
    let addrs: Vec<_> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    assert!(addrs.windows(2).all(|p| p[0] == p[1]));
    assert_eq!(w.cleanup.containers().len(), 2);
    roost.stop().await;
}

#[tokio::test]
async fn fifty_users_at_once_within_the_admission_limits() {
    let Some(w) = World::new("fifty").await else { return };
    let roost = w.roost("max_concurrent_spawns = 4\nmax_running = 50").await;
    let users: Vec<String> = (0..50).map(|i| w.user(&format!("u{i}"))).collect();
    let tasks = users.iter().map(|u| {
        let token = w.token(u);
        let u = u.clone();
        let roost = &roost;
        async move { auth_until_ok(roost, &u, &token).await.status }
    });
    for status in futures_util::future::join_all(tasks).await {
        assert_eq!(status, 200);
    }
    assert_eq!(w.cleanup.running().len(), 50);
    // The 51st is refused clearly, and counted.
    let extra = w.user("extra");
    let r = roost.auth(&workspace_host(&extra), Some(&w.token(&extra))).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.header("retry-after").is_some());
    let metrics = roost.client.get(&roost.url("/metrics"), &[]).await.body;
    assert!(
        metrics.contains("roost_workspace_admission_refusals_total{reason=\"max_running\"}"),
        "{metrics}"
    );
    roost.stop().await;
}

#[tokio::test]
async fn a_stopped_workspace_wakes_with_its_data() {
    let Some(w) = World::new("wake").await else { return };
    let roost = w.roost("").await;
    let alice = w.user("alice");
    let token = w.token(&alice);
    auth_until_ok(&roost, &alice, &token).await;
    let addr = ready_addr(&roost, &alice);
    put_file(addr, "note.txt", "kept");
    let id = docker::inspect(&container(&alice), "{{.Id}}");
    // Stopped behind roost's back: the engine's events tell the registry.
    assert!(std::process::Command::new("docker")
        .args(["stop", "-t", "1", &id])
        .output()
        .unwrap()
        .status
        .success());
    let registry = roost.app.workspaces.clone();
    until(20, "the registry to see the stop", || {
        !matches!(registry.get(&alice).unwrap().phase(), Phase::Ready(_))
    })
    .await;
    auth_until_ok(&roost, &alice, &token).await;
    assert_eq!(
        docker::inspect(&container(&alice), "{{.Id}}"),
        id,
        "woken, not recreated"
    );
    let (code, body) = echo_get(ready_addr(&roost, &alice), "/files/note.txt");
    assert_eq!((code, body.as_str()), (200, "kept"));
    // Removed: recreated on next use, the volume (and the file) kept.
    std::process::Command::new("docker")
        .args(["rm", "-f", &id])
        .output()
        .unwrap();
    until(20, "the registry to see the removal", || {
        !matches!(registry.get(&alice).unwrap().phase(), Phase::Ready(_))
    })
    .await;
    auth_until_ok(&roost, &alice, &token).await;
    assert_ne!(docker::inspect(&container(&alice), "{{.Id}}"), id);
    let (code, body) = echo_get(ready_addr(&roost, &alice), "/files/note.txt");
    assert_eq!((code, body.as_str()), (200, "kept"));
    roost.stop().await;
}

#[tokio::test]
async fn idle_workspaces_are_culled_and_busy_ones_are_not() {
    let Some(w) = World::new("idle").await else { return };
    let roost = w.roost("idle_timeout = \"2s\"\nmax_lifetime = \"1h\"").await;
    let (idle, busy) = (w.user("idle"), w.user("busy"));
    auth_until_ok(&roost, &idle, &w.token(&idle)).await;
    auth_until_ok(&roost, &busy, &w.token(&busy)).await;
    let busy_addr = ready_addr(&roost, &busy);
    // The busy workspace gets network traffic straight to the container (as an
    // editor's WebSocket would), never through roost.
    let stop_traffic = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let stop = stop_traffic.clone();
        tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                let _ = echo_get(busy_addr, "/traffic");
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let idle_name = container(&idle);
    until(30, "the idle workspace to be culled", || {
        docker::inspect(&idle_name, "{{.State.Running}}") == "false"
    })
    .await;
    assert_eq!(
        docker::inspect(&container(&busy), "{{.State.Running}}"),
        "true",
        "traffic keeps it alive"
    );
    assert!(
        docker::inspect(&idle_name, "{{.Id}}").len() > 10,
        "culled = stopped, not removed"
    );
    assert_eq!(w.cleanup.volumes().len(), 2, "volumes kept");
    let registry = roost.app.workspaces.clone();
    until(10, "the registry to mark it stopped", || {
        registry.get(&idle).unwrap().phase() == Phase::Stopped
    })
    .await;
    stop_traffic.store(true, std::sync::atomic::Ordering::Relaxed);
    traffic.await.unwrap();
    until(30, "the busy workspace to be culled once quiet", || {
        docker::inspect(&container(&busy), "{{.State.Running}}") == "false"
    })
    .await;
    until(10, "the registry to mark it stopped", || {
        registry.get(&busy).unwrap().phase() == Phase::Stopped
    })
    .await;
    let metrics = roost.client.get(&roost.url("/metrics"), &[]).await.body;
    assert!(
        metrics.contains("roost_workspace_culls_total{reason=\"idle\"} 2"),
        "{metrics}"
    );
    // The next request wakes it.
    auth_until_ok(&roost, &idle, &w.token(&idle)).await;
    roost.stop().await;
}

#[tokio::test]
async fn past_max_lifetime_the_container_is_removed_and_recreated() {
    let Some(w) = World::new("life").await else { return };
    // idle_timeout as long as max_lifetime: a pass checks the lifetime
    // first, and idleness can never be older than the container, so the
    // removal always wins (with a shorter idle_timeout an idle stop could
    // come first on a slow machine, and a stopped container is not removed).
    let roost = w.roost("idle_timeout = \"2s\"\nmax_lifetime = \"2s\"").await;
    let alice = w.user("alice");
    let token = w.token(&alice);
    auth_until_ok(&roost, &alice, &token).await;
    let first = docker::inspect(&container(&alice), "{{.Id}}");
    until(30, "removal past max_lifetime", || w.cleanup.containers().is_empty()).await;
    assert_eq!(w.cleanup.volumes().len(), 1, "volume kept");
    auth_until_ok(&roost, &alice, &token).await;
    assert_ne!(docker::inspect(&container(&alice), "{{.Id}}"), first);
    roost.stop().await;
}

#[tokio::test]
async fn a_restarted_roost_adopts_running_workspaces_and_culls_them_on_schedule() {
    let Some(w) = World::new("adopt").await else { return };
    let alice = w.user("alice");
    let token = w.token(&alice);
    let first = w.roost("idle_timeout = \"3s\"").await;
    auth_until_ok(&first, &alice, &token).await;
    first.stop().await;
    assert_eq!(docker::inspect(&container(&alice), "{{.State.Running}}"), "true");
    let second = w.roost("idle_timeout = \"3s\"").await;
    let registry = second.app.workspaces.clone();
    until(20, "adoption", || {
        matches!(registry.get(&alice).map(|e| e.phase()), Some(Phase::Ready(_)))
    })
    .await;
    let r = second.auth(&workspace_host(&alice), Some(&token)).await;
    assert_eq!(r.status, 200, "served from memory right away: {}", r.body);
    assert_eq!(w.cleanup.containers().len(), 1, "adopted, not duplicated");
    until(30, "culling of the adopted workspace", || {
        docker::inspect(&container(&alice), "{{.State.Running}}") == "false"
    })
    .await;
    second.stop().await;
}

#[tokio::test]
async fn a_stale_config_is_recreated_on_wake_keeping_the_volume() {
    let Some(w) = World::new("stale").await else { return };
    let alice = w.user("alice");
    let token = w.token(&alice);
    let first = w.roost("").await;
    auth_until_ok(&first, &alice, &token).await;
    let old_hash = docker::inspect(&container(&alice), "{{index .Config.Labels \"roost.config-hash\"}}");
    first.stop().await;
    std::process::Command::new("docker")
        .args(["stop", "-t", "1", &container(&alice)])
        .output()
        .unwrap();
    let second = w.roost("env = { FLAVOUR = \"new\" }").await;
    auth_until_ok(&second, &alice, &token).await;
    let new_hash = docker::inspect(&container(&alice), "{{index .Config.Labels \"roost.config-hash\"}}");
    assert_ne!(old_hash, new_hash);
    assert!(docker::inspect(&container(&alice), "{{.Config.Env}}").contains("FLAVOUR=new"));
    assert_eq!(w.cleanup.volumes().len(), 1);
    second.stop().await;
}

#[tokio::test]
async fn failures_are_clear_and_leave_nothing_behind() {
    let Some(w) = World::new("fail").await else { return };
    // A missing image.
    let cfg = w.config("").replace("roost-echo:test", "roost-no-such-image:none");
    let missing = TestRoost::start_with(&cfg, Some(w.runtime.clone())).await;
    missing.wait_ready().await;
    let alice = w.user("alice");
    let r = missing.auth(&workspace_host(&alice), Some(&w.token(&alice))).await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.body,
        "the workspace image is missing on the server; please tell your operator"
    );
    assert_eq!(r.header("retry-after"), Some("300"), "retrying soon cannot help");
    assert!(w.cleanup.containers().is_empty() && w.cleanup.volumes().is_empty());
    missing.stop().await;
    // A workspace that exits at once: fails fast, with nothing left behind.
    let cfg = w.config("command = [\"/echo\", \"--exit\", \"3\"]\nstart_timeout = \"60s\"");
    let dying = TestRoost::start_with(&cfg, Some(w.runtime.clone())).await;
    dying.wait_ready().await;
    let bob = w.user("bob");
    let started = Instant::now();
    let r = dying.auth(&workspace_host(&bob), Some(&w.token(&bob))).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "failed fast, not after start_timeout"
    );
    assert_eq!(r.body, "your workspace's app stopped right after it started");
    assert!(w.cleanup.containers().is_empty());
    // Within the failure's back-off, asking again starts no other attempt.
    for _ in 0..5 {
        let r = dying.auth(&workspace_host(&bob), Some(&w.token(&bob))).await;
        assert_eq!(r.status, 503, "{}", r.body);
        assert_eq!(r.header("retry-after"), Some("5"));
    }
    let metrics = dying.client.get(&dying.url("/metrics"), &[]).await.body;
    assert!(
        metrics.contains("roost_workspace_failures_total{reason=\"exited\"} 1"),
        "{metrics}"
    );
    dying.stop().await;
}

#[tokio::test]
async fn an_unreachable_engine_is_a_clear_503() {
    let Some(w) = World::new("noengine").await else { return };
    let runtime: Arc<dyn Runtime> = Arc::new(roost::workspace::docker::DockerRuntime::with_connector(|| {
        bollard::Docker::connect_with_unix("/nonexistent/docker.sock", 5, bollard::API_DEFAULT_VERSION)
    }));
    let roost = TestRoost::start_with(&w.config(""), Some(runtime)).await;
    roost.wait_ready().await;
    let alice = w.user("alice");
    let r = roost.auth(&workspace_host(&alice), Some(&w.token(&alice))).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.header("retry-after").is_some());
    assert!(!r.body.contains("sock"), "no internals leaked: {}", r.body);
    assert!(w.cleanup.containers().is_empty());
    roost.stop().await;
}

#[tokio::test]
async fn another_users_workspace_is_forbidden_by_its_owner_label() {
    let Some(w) = World::new("owner").await else { return };
    let roost = w.roost("").await;
    let alice = w.user("alice");
    auth_until_ok(&roost, &alice, &w.token(&alice)).await;
    // A token whose username claim maps to alice's slug but whose sub differs.
    let cfg_user = sign(
        "k1",
        Some("k1"),
        &serde_json::json!({
            "iss": w.issuer.url, "sub": "impostor", "aud": AUDIENCE,
            "exp": support::tokens::now() + 600, "https://roost.test/username": alice,
        }),
    );
    let cfg = w.config("").replace(
        "[routing]",
        "username_claim = \"https://roost.test/username\"\n[routing]",
    );
    let second = TestRoost::start_with(&cfg, Some(w.runtime.clone())).await;
    second.wait_ready().await;
    let r = second.auth(&workspace_host(&alice), Some(&cfg_user)).await;
    assert_eq!(r.status, 403, "{}", r.body);
    second.stop().await;
    roost.stop().await;
}

#[tokio::test]
async fn two_roost_replicas_racing_for_one_user_make_one_container() {
    let Some(w) = World::new("replicas").await else { return };
    let (a, b) = (w.roost("").await, w.roost("").await);
    let alice = w.user("alice");
    let token = w.token(&alice);
    let (ra, rb) = tokio::join!(auth_until_ok(&a, &alice, &token), auth_until_ok(&b, &alice, &token));
    assert_eq!((ra.status.as_u16(), rb.status.as_u16()), (200, 200));
    assert_eq!(
        w.cleanup.containers().len(),
        1,
        "the loser adopted the winner's container"
    );
    assert_eq!(ready_addr(&a, &alice), ready_addr(&b, &alice));
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn without_a_healthcheck_readiness_is_an_http_answer() {
    let Some(w) = World::new("probe").await else { return };
    let cfg = w.config("").replace("roost-echo:test", "roost-echo:nohealth");
    let roost = TestRoost::start_with(&cfg, Some(w.runtime.clone())).await;
    roost.wait_ready().await;
    let alice = w.user("alice");
    auth_until_ok(&roost, &alice, &w.token(&alice)).await;
    assert_eq!(
        docker::inspect(&container(&alice), "{{if .State.Health}}health{{else}}none{{end}}"),
        "none"
    );
    let (code, _) = echo_get(ready_addr(&roost, &alice), "/healthz");
    assert_eq!(code, 200, "ready means it answers");
    roost.stop().await;
}
