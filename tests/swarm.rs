//! The Swarm runtime end to end, on a single-node swarm the test makes on
//! loopback (and leaves): roost's own image and Traefik (both FROM scratch)
//! as containers, workspaces as services on their own overlay networks.
//! One stack, the scenarios in turn (a swarm is one per engine):
//!
//! - the first request through Traefik starts the workspace and is served;
//! - a burst of first requests makes one service and one task;
//! - from inside a hostile workspace, nothing of another's is reachable,
//!   nor roost's listeners, nor the engine's socket;
//! - an idle workspace is scaled to no task, and the next request wakes it;
//! - a workspace removed while requests flow never answers 502.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::eventually;
use support::http::{urlencode, TestClient};
use support::swarm::{docker, Stack};

const IDLE: &str = "4s";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workspaces_run_as_swarm_services() {
    let Some(stack) = Stack::start(&format!("idle_timeout = \"{IDLE}\"\ndrain_grace = \"1s\"")).await else {
        return;
    };
    let alice = stack.user("alice");
    let alice_token = stack.token(&alice, false);

    // First request through Traefik: started, served (the fallback proxy).
    let r = first_request(&stack, &alice, &alice_token).await;
    assert_eq!(r.body.trim(), "ok");
    assert_eq!(
        stack
            .service_field(&alice, "{{.Spec.Mode.Replicated.Replicas}}")
            .as_deref(),
        Some("1")
    );
    let labels = stack.service_field(&alice, "{{json .Spec.Labels}}").unwrap();
    assert!(labels.contains(&format!("\"roost.owner\":\"{alice}\"")), "{labels}");

    single_flight(&stack).await;
    isolation(&stack, &alice, &alice_token).await;
    idle_stop_and_wake(&stack, &alice, &alice_token).await;
    removal_without_502(&stack, &alice, &alice_token).await;
}

/// A first request, retried as a client would while it says 503 +
/// `Retry-After` (a task takes a while to schedule on a busy machine).
async fn first_request(stack: &Stack, user: &str, token: &str) -> support::http::Reply {
    eventually(
        Duration::from_secs(120),
        "the workspace served through Traefik",
        || async {
            let r = stack.get(user, "/healthz", Some(token)).await;
            match r.status.as_u16() {
                200 => Some(r),
                503 if r.header("retry-after").is_some() => None,
                other => panic!("{other}: {}", r.body),
            }
        },
    )
    .await
}

async fn single_flight(stack: &Stack) {
    let bob = stack.user("bob");
    let token = stack.token(&bob, false);
    let replies = futures_util::future::join_all((0..8).map(|_| stack.get(&bob, "/healthz", Some(&token)))).await;
    for r in &replies {
        assert_eq!(r.status, 200, "{}", r.body);
    }
    assert_eq!(stack.tasks(&bob).len(), 1, "one task for a burst of first requests");
}

async fn isolation(stack: &Stack, alice: &str, alice_token: &str) {
    let mallory = stack.user("mallory");
    let token = stack.token(&mallory, false);
    assert_eq!(stack.get(&mallory, "/healthz", Some(&token)).await.status, 200);
    // Alice's addresses on her network: her task's and Traefik's there.
    let alice_net = format!("{}-{alice}-net", stack.deployment);
    let mut targets: Vec<String> = task_ips(&alice_net)
        .into_iter()
        .flat_map(|ip| [format!("{ip}:8080"), format!("{ip}:8081"), format!("{ip}:80")])
        .collect();
    assert!(
        targets.len() >= 6,
        "alice's task and Traefik on her network: {targets:?}"
    );
    // Traefik's (and roost's) addresses on mallory's own network: only
    // Traefik's entrypoint answers there; roost listens on loopback.
    let mallory_net = format!("{}-{mallory}-net", stack.deployment);
    let traefik_ip = docker(&[
        "inspect",
        &stack.traefik,
        "--format",
        &format!("{{{{(index .NetworkSettings.Networks \"{mallory_net}\").IPAddress}}}}"),
    ]);
    assert!(!traefik_ip.is_empty(), "Traefik is attached to mallory's network");
    targets.extend([format!("{traefik_ip}:8080"), format!("{traefik_ip}:8081")]);
    // The probe's own port, to show it can connect at all.
    let own = docker(&[
        "inspect",
        &stack.task_container(&mallory),
        "--format",
        &format!("{{{{(index .NetworkSettings.Networks \"{mallory_net}\").IPAddress}}}}:8080"),
    ]);
    targets.push(own.clone());
    let query: Vec<String> = targets.iter().map(|t| format!("to={}", urlencode(t))).collect();
    let r = stack
        .get(&mallory, &format!("/connect?{}", query.join("&")), Some(&token))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let seen: BTreeMap<String, String> = serde_json::from_str(&r.body).unwrap();
    assert_eq!(seen.get(&own).map(String::as_str), Some("open"), "{seen:?}");
    for (target, how) in &seen {
        if *target != own {
            assert_ne!(how, "open", "mallory reached {target}: {seen:?}");
        }
    }
    let r = stack
        .get(&mallory, "/unix?path=/var/run/docker.sock", Some(&token))
        .await;
    assert!(r.body.contains("missing"), "{}", r.body);
    // And her token opens only her own workspace.
    assert_eq!(stack.get(alice, "/healthz", Some(&token)).await.status, 403);
    assert_eq!(stack.get(alice, "/healthz", Some(alice_token)).await.status, 200);
}

/// The addresses of every endpoint on swarm network `net` (tasks on any
/// node, and the containers attached to it).
fn task_ips(net: &str) -> Vec<String> {
    let out = docker(&["network", "inspect", "--verbose", net, "--format", "{{json .Services}}"]);
    let services: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut ips = Vec::new();
    for service in services.as_object().into_iter().flat_map(|m| m.values()) {
        for task in service["Tasks"].as_array().into_iter().flatten() {
            ips.extend(task["EndpointIP"].as_str().map(str::to_string));
        }
    }
    ips
}

async fn idle_stop_and_wake(stack: &Stack, alice: &str, token: &str) {
    let tasks_before = stack.tasks(alice);
    eventually(
        Duration::from_secs(60),
        "alice's idle workspace scaled to no task",
        || async {
            (stack
                .service_field(alice, "{{.Spec.Mode.Replicated.Replicas}}")
                .as_deref()
                == Some("0"))
            .then_some(())
        },
    )
    .await;
    let r = stack.get(alice, "/healthz", Some(token)).await;
    assert_eq!(r.status, 200, "woken: {}", r.body);
    assert_eq!(
        stack
            .service_field(alice, "{{.Spec.Mode.Replicated.Replicas}}")
            .as_deref(),
        Some("1")
    );
    let tasks = stack.tasks(alice);
    assert!(
        tasks.iter().any(|t| !tasks_before.contains(t)),
        "a new task on the same service: {tasks:?} (before: {tasks_before:?})"
    );
}

async fn removal_without_502(stack: &Stack, alice: &str, token: &str) {
    let id_before = stack.service_field(alice, "{{.ID}}").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let load = {
        let (stop, sent) = (stop.clone(), sent.clone());
        let (web, host, bearer) = (
            stack.web.clone(),
            support::roost::workspace_host(alice),
            format!("Bearer {token}"),
        );
        tokio::spawn(async move {
            let client = TestClient::default();
            let mut bad = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let req = http::Request::get(format!("http://{web}/healthz"))
                    .header("host", host.as_str())
                    .header("authorization", bearer.as_str())
                    .body(Default::default())
                    .unwrap();
                let r = client.send(req).await;
                sent.fetch_add(1, Ordering::Relaxed);
                match r {
                    Ok(r) if r.status.is_server_error() && r.status != 503 => bad.push(r.status.to_string()),
                    Ok(_) => {}
                    Err(e) => bad.push(e),
                }
            }
            bad
        })
    };
    eventually(Duration::from_secs(10), "requests flowing", || async {
        (sent.load(Ordering::Relaxed) > 5).then_some(())
    })
    .await;
    let admin = stack.token(&stack.user("admin"), true);
    let r = TestClient::default()
        .send(
            http::Request::post(format!(
                "http://{}/_roost/api/v1/admin/workspaces/{alice}/remove",
                stack.web
            ))
            .header("host", support::roost::DOMAIN)
            .header("authorization", format!("Bearer {admin}"))
            .body(Default::default())
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    // The requests go on and start it anew: a new service.
    eventually(Duration::from_secs(60), "alice's workspace made anew", || async {
        stack
            .service_field(alice, "{{.ID}}")
            .filter(|id| *id != id_before)
            .map(|_| ())
    })
    .await;
    let during = sent.load(Ordering::Relaxed);
    eventually(Duration::from_secs(30), "requests served again", || async {
        (sent.load(Ordering::Relaxed) > during + 5).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let bad = load.await.unwrap();
    assert!(
        bad.is_empty(),
        "{} of {} requests failed: {bad:?}",
        bad.len(),
        sent.load(Ordering::Relaxed)
    );
}
