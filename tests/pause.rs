//! The paused tier on the real engine: a workspace idle for `pause_after`
//! is frozen by the cgroup freezer (same process, memory kept), its route
//! stays, and its next request through roost thaws it; a WebSocket left
//! open across the pause still carries messages (the frozen container's
//! kernel answers, the reaper sees it and thaws it); it is stopped at
//! `idle_timeout`; metrics and the registry show the state.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use roost::workspace::registry::Phase;
use support::roost::{workspace_host, TestRoost};
use support::workspace::{auth_until_ok, container, until, World};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

async fn docker_inspect(format: &str, name: &str) -> String {
    let out = tokio::process::Command::new("docker")
        .args(["inspect", "-f", format, name])
        .output()
        .await
        .expect("docker");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn phase(roost: &TestRoost, user: &str) -> Option<Phase> {
    roost.app.workspaces.get(user).map(|e| e.phase())
}

fn is_paused(roost: &TestRoost, user: &str) -> bool {
    matches!(phase(roost, user), Some(Phase::Paused(_)))
}

/// Waits until roost and the engine both say `user`'s workspace is paused.
async fn until_paused(roost: &TestRoost, user: &str) {
    until(15, "the workspace to be paused", || is_paused(roost, user)).await;
    assert_eq!(docker_inspect("{{.State.Paused}}", &container(user)).await, "true");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_workspace_is_paused_thawed_by_its_next_request_and_stopped_at_its_idle_timeout() {
    let Some(w) = World::new("pause").await else { return };
    let roost = w.roost("pause_after = \"2s\"\nidle_timeout = \"8s\"").await;
    let alice = w.user("alice");
    let token = w.token(&alice);
    let bearer = format!("Bearer {token}");
    auth_until_ok(&roost, &alice, &token).await;
    let pid = docker_inspect("{{.State.Pid}}", &container(&alice)).await;

    until_paused(&roost, &alice).await;
    // Its route stays: Traefik keeps sending its requests, and /auth thaws first.
    assert!(roost.app.workspaces.ready().iter().any(|(slug, _)| **slug == *alice));
    let metrics = roost.client.get(&roost.url("/metrics"), &[]).await.body;
    assert!(metrics.contains("roost_workspaces_paused 1"), "{metrics}");

    // The next request is answered by the same process (memory kept).
    let host = workspace_host(&alice);
    let r = roost
        .client
        .get(
            &format!("http://{}/hello", roost.addr),
            &[("host", &host), ("authorization", &bearer)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"/hello\""), "{}", r.body);
    assert!(matches!(phase(&roost, &alice), Some(Phase::Ready(_))));
    assert_eq!(docker_inspect("{{.State.Paused}}", &container(&alice)).await, "false");
    assert_eq!(
        docker_inspect("{{.State.Pid}}", &container(&alice)).await,
        pid,
        "not restarted"
    );
    // So is /auth's: 200 at once, thawed.
    until_paused(&roost, &alice).await;
    let r = roost.auth(&host, Some(&token)).await;
    assert_eq!(r.status, 200);
    assert_eq!(docker_inspect("{{.State.Paused}}", &container(&alice)).await, "false");
    let metrics = roost.client.get(&roost.url("/metrics"), &[]).await.body;
    assert!(metrics.contains("roost_workspaces_paused 0"), "{metrics}");
    assert!(metrics.contains("action=\"resumed\""), "{metrics}");

    // Left alone: paused, then stopped at idle_timeout (container kept).
    until_paused(&roost, &alice).await;
    until(20, "the paused workspace to stop", || {
        phase(&roost, &alice) == Some(Phase::Stopped)
    })
    .await;
    assert_eq!(docker_inspect("{{.State.Running}}", &container(&alice)).await, "false");
    assert_eq!(docker_inspect("{{.State.Paused}}", &container(&alice)).await, "false");
    roost.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_open_across_a_pause_still_carries_messages() {
    let Some(w) = World::new("pausews").await else { return };
    let roost = w.roost("pause_after = \"2s\"\nidle_timeout = \"60s\"").await;
    let bob = w.user("bob");
    let token = w.token(&bob);
    auth_until_ok(&roost, &bob, &token).await;

    let mut req = format!("ws://{}/ws", roost.addr).into_client_request().unwrap();
    req.headers_mut().insert("host", workspace_host(&bob).parse().unwrap());
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.expect("WebSocket");
    for round in 0..2 {
        // Silent long enough to be paused, with the connection open.
        until_paused(&roost, &bob).await;
        ws.send(Message::text(format!("after pause {round}")))
            .await
            .expect("send");
        let reply = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
        match reply {
            Ok(Some(Ok(Message::Text(t)))) => assert_eq!(t.as_str(), format!("after pause {round}")),
            other => panic!("no echo across the pause: {other:?}"),
        }
        // Thawed (roost records it once the engine's answer is back, which
        // may come after the app's own answer).
        until(5, "the workspace to be ready again", || {
            matches!(phase(&roost, &bob), Some(Phase::Ready(_)))
        })
        .await;
    }
    let _ = ws.close(None).await;
    roost.stop().await;
}
