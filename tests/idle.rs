//! Idle detection among neighbours, on the real engine. What a workspace
//! receives is no sign of use (every neighbour that starts or stops sends
//! broadcasts and multicasts to the whole bridge); what it sends is.
//!
//! 40 workspaces: 30 untouched after their first request all stop within
//! `idle_timeout` + one reaper interval + `drain_grace`, while 10 neighbours
//! keep being stopped and started, and one whose WebSocket exchanges a
//! message every 10 s stays up the whole time.

mod support;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use roost::workspace::reaper::{own_traffic, tick_for};
use roost::workspace::registry::{Phase, Registry};
use roost::workspace::runtime::Stats;
use support::roost::{workspace_host, TestRoost};
use support::workspace::{auth_until_ok, container, World};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

const IDLE: Duration = Duration::from_secs(15);
/// `workspace.drain_grace`, left at its default.
const DRAIN: Duration = Duration::from_secs(5);
/// What the engine adds: its stats answer (about 1 s, by which a pass's
/// decision can slip), and its stop of a container that exits at once on
/// SIGTERM (echo does; far below `stop_timeout`). Plus this test's 50 ms poll.
const ENGINE_SLACK: Duration = Duration::from_secs(3);
/// The live workspace's WebSocket: one message this often (below IDLE).
const WS_CADENCE: Duration = Duration::from_secs(10);
const UNTOUCHED: usize = 30;
const NEIGHBOURS: usize = 10;

fn phase(registry: &Registry, user: &str) -> Option<Phase> {
    registry.get(user).map(|e| e.phase())
}

fn is_ready(registry: &Registry, user: &str) -> bool {
    matches!(phase(registry, user), Some(Phase::Ready(_)))
}

/// Polls `check` every 50 ms until true; panics after `secs`.
async fn until(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn docker(args: &[&str]) -> String {
    let out = tokio::process::Command::new("docker")
        .args(args)
        .output()
        .await
        .expect("docker");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_workspaces_stop_among_restarting_neighbours_while_a_live_websocket_keeps_its_own() {
    let Some(w) = World::new("idle40").await else { return };
    // Without a HEALTHCHECK: 40 containers probed four times a second
    // (the test image's interval) would saturate two cores. Readiness is
    // then roost's HTTP probe, real traffic to each workspace as it starts.
    let config = w
        .config(&format!("idle_timeout = \"{}s\"", IDLE.as_secs()))
        .replace("roost-echo:test", "roost-echo:nohealth");
    let roost = TestRoost::start_with(&config, Some(w.runtime.clone())).await;
    roost.wait_ready().await;
    let registry = roost.app.workspaces.clone();
    assert_eq!(registry.config().drain_grace, DRAIN);
    let tick = tick_for(IDLE);
    let bound = IDLE + tick + DRAIN + ENGINE_SLACK;

    let neighbours: Vec<String> = (0..NEIGHBOURS).map(|i| w.user(&format!("nb{i}"))).collect();
    let untouched: Vec<String> = (0..UNTOUCHED).map(|i| w.user(&format!("idle{i}"))).collect();
    let live = w.user("live");
    let first = neighbours.iter().chain([&live]).map(|u| async {
        auth_until_ok(&roost, u, &w.token(u)).await;
    });
    futures_util::future::join_all(first).await;
    let done = CancellationToken::new();
    let begun = Instant::now();

    // An editor's WebSocket through roost's fallback proxy: roost sees the
    // upgrade request, then only the container's own traffic.
    let websocket = async {
        let mut req = format!("ws://{}/ws", roost.addr).into_client_request().unwrap();
        req.headers_mut().insert("host", workspace_host(&live).parse().unwrap());
        req.headers_mut()
            .insert("authorization", format!("Bearer {}", w.token(&live)).parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("WebSocket to the live workspace");
        let mut exchanged = 0;
        loop {
            ws.send(Message::text("keystroke"))
                .await
                .expect("the live workspace's WebSocket is open");
            let reply = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
            match reply {
                Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "keystroke" => exchanged += 1,
                other => panic!("the live workspace stopped answering after {exchanged} messages: {other:?}"),
            }
            tokio::select! {
                () = tokio::time::sleep(WS_CADENCE) => {}
                () = done.cancelled() => break,
            }
        }
        let _ = ws.close(None).await;
        exchanged
    };

    // Neighbours stopped and started in turn, the whole time. The others
    // are kept in use meanwhile, so that only this loop stops them.
    let churn = async {
        let mut restarts = 0;
        'rounds: loop {
            for u in &neighbours {
                if done.is_cancelled() {
                    break 'rounds;
                }
                for other in neighbours.iter().filter(|o| is_ready(&registry, o)) {
                    roost.auth(&workspace_host(other), Some(&w.token(other))).await;
                }
                if is_ready(&registry, u) {
                    docker(&["stop", "-t", "1", &container(u)]).await;
                    until(20, "roost to see a neighbour stop", || !is_ready(&registry, u)).await;
                }
                auth_until_ok(&roost, u, &w.token(u)).await;
                restarts += 1;
            }
        }
        restarts
    };

    let watch = async {
        // Each of the 30 started by one authorized request, then left alone.
        let started = untouched.iter().map(|u| async {
            auth_until_ok(&roost, u, &w.token(u)).await;
            let ready_at = Instant::now();
            (ready_at, w.runtime.stats(&container(u)).await.expect("stats"))
        });
        let started: Vec<(Instant, Stats)> = futures_util::future::join_all(started).await;
        let mut withdrawn: Vec<Option<Instant>> = vec![None; UNTOUCHED];
        let mut stopped: Vec<Option<Instant>> = vec![None; UNTOUCHED];
        // Each one's counters while it drains, its last moments of running.
        let mut last_stats = Vec::new();
        // Until all 30 stopped, and the live workspace outlived what it
        // would have without its WebSocket.
        while stopped.iter().any(Option::is_none) || begun.elapsed() < bound {
            let now = Instant::now();
            for (i, u) in untouched.iter().enumerate() {
                let p = phase(&registry, u);
                if withdrawn[i].is_none() && !matches!(p, Some(Phase::Ready(_))) {
                    withdrawn[i] = Some(now);
                    let (runtime, name) = (w.runtime.clone(), container(u));
                    last_stats.push((i, tokio::spawn(async move { runtime.stats(&name).await })));
                }
                if stopped[i].is_none() && p == Some(Phase::Stopped) {
                    stopped[i] = Some(now);
                }
                let ready_at = started[i].0;
                assert!(
                    stopped[i].is_some() || now < ready_at + bound,
                    "{u} untouched for {:?} is still {p:?} (idle_timeout {IDLE:?}, interval {tick:?}, drain_grace {DRAIN:?})",
                    now - ready_at,
                );
            }
            assert!(
                is_ready(&registry, &live),
                "the live workspace was retired: {:?}",
                phase(&registry, &live)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        done.cancel();
        let mut noise = 0;
        for (i, handle) in last_stats {
            let (before, after) = (started[i].1, handle.await.unwrap());
            let Ok(after) = after else { continue }; // already stopped: no counters
            assert_eq!(
                own_traffic(&after),
                own_traffic(&before),
                "{} sent more than ARP while untouched: {before:?} → {after:?}",
                untouched[i]
            );
            noise += usize::from(after.rx_bytes > before.rx_bytes);
        }
        let lag = |at: &[Option<Instant>]| {
            let lags: Vec<Duration> = at.iter().zip(&started).map(|(t, (r, _))| t.unwrap() - *r).collect();
            (lags.iter().min().copied().unwrap(), lags.iter().max().copied().unwrap())
        };
        (lag(&withdrawn), lag(&stopped), noise)
    };

    let (exchanged, restarts, (withdrawn, stopped, noise)) = tokio::join!(websocket, churn, watch);
    eprintln!(
        "idle: {UNTOUCHED} untouched stopped {:?}..{:?} after their request (withdrawn {:?}..{:?}; bound {bound:?}); \
         {restarts} neighbour restarts; rx grew on {noise} while they sent nothing but ARP; \
         {exchanged} WebSocket messages over {:?}",
        stopped.0,
        stopped.1,
        withdrawn.0,
        withdrawn.1,
        begun.elapsed()
    );
    assert!(restarts >= NEIGHBOURS, "the neighbours churned: {restarts} restarts");
    assert!(
        noise >= UNTOUCHED / 2,
        "neighbour noise reached only {noise} untouched workspaces: the test proves little"
    );
    let elapsed_messages = begun.elapsed().as_secs() / WS_CADENCE.as_secs();
    assert!(exchanged as u64 >= elapsed_messages, "{exchanged} WebSocket messages");
    // The engine agrees: stopped (not removed), the live one running.
    for u in &untouched {
        assert_eq!(
            docker(&["inspect", "-f", "{{.State.Running}}", &container(u)]).await,
            "false",
            "{u}"
        );
    }
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Running}}", &container(&live)]).await,
        "true"
    );
    roost.stop().await;
}
