//! What a client holding WebSockets tries, against real roost and the real
//! engine (issue 9's lower findings, split from `hostile_client.rs`):
//! holding more open than `limits.tunnels_per_user`, or one idle past
//! `limits.tunnel_idle_timeout`.

mod support;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use roost::config::{Config, ConfigError, Secrets};
use support::roost::{config_text, workspace_host, TestRoost};
use support::workspace::World;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// roost with these `[limits]` lines, alice's workspace ready.
async fn roost_with_limits(w: &World, limits: &str, users: &[&str]) -> TestRoost {
    let config = format!("{}\n[limits]\n{limits}\n", w.config(""));
    let roost = TestRoost::start_with(&config, Some(w.runtime.clone())).await;
    roost.wait_ready().await;
    for user in users {
        let host = workspace_host(user);
        let bearer = format!("Bearer {}", w.token(user));
        let r = roost
            .client
            .get(&roost.public_url("/"), &[("host", &host), ("authorization", &bearer)])
            .await;
        assert_eq!(r.status, 200, "{user}'s workspace: {}", r.body);
    }
    roost
}

/// A WebSocket to `user`'s workspace through roost's fallback proxy.
async fn ws_connect(roost: &TestRoost, w: &World, user: &str) -> Result<Ws, tungstenite::Error> {
    let mut req = format!("ws://{}/ws", roost.addr).into_client_request().unwrap();
    req.headers_mut().insert("host", workspace_host(user).parse().unwrap());
    req.headers_mut()
        .insert("authorization", format!("Bearer {}", w.token(user)).parse().unwrap());
    tokio_tungstenite::connect_async(req).await.map(|(ws, _)| ws)
}

/// One message there and back.
async fn echoes(ws: &mut Ws, text: &str) -> bool {
    if ws.send(Message::text(text)).await.is_err() {
        return false;
    }
    match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => t.as_str() == text,
        _ => false,
    }
}

async fn tunnels_refused(roost: &TestRoost) -> u64 {
    roost.counter("roost_proxy_tunnels_refused_total").await
}

#[tokio::test]
async fn a_user_over_the_tunnel_cap_gets_429_while_others_still_connect() {
    let Some(w) = World::new("tunnelcap").await else { return };
    let (alice, bob) = (w.user("alice"), w.user("bob"));
    let roost = roost_with_limits(&w, "tunnels_per_user = 2", &[&alice, &bob]).await;

    let mut one = ws_connect(&roost, &w, &alice).await.expect("alice's first");
    let mut two = ws_connect(&roost, &w, &alice).await.expect("alice's second");
    assert!(echoes(&mut one, "one").await && echoes(&mut two, "two").await);
    match ws_connect(&roost, &w, &alice).await {
        Err(tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 429);
            let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=60).contains(&retry), "{retry}");
            let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned();
            assert!(
                body.len() < 100 && !body.contains(&alice),
                "short, leaks nothing: {body}"
            );
        }
        Ok(_) => panic!("a third concurrent WebSocket from alice was proxied"),
        Err(e) => panic!("expected 429, got {e}"),
    }
    assert_eq!(tunnels_refused(&roost).await, 1);
    // Another user is not affected, and alice's open tunnels keep working.
    let mut bobs = ws_connect(&roost, &w, &bob).await.expect("bob's");
    assert!(echoes(&mut bobs, "bob").await);
    assert!(echoes(&mut one, "still").await);

    // Closing one frees its slot.
    let _ = one.close(None).await;
    drop(one);
    let mut three = support::eventually(Duration::from_secs(10), "a freed slot", || async {
        ws_connect(&roost, &w, &alice).await.ok()
    })
    .await;
    assert!(echoes(&mut three, "three").await);
}

#[tokio::test]
async fn an_idle_tunnel_is_closed_and_a_busy_one_stays_open() {
    let Some(w) = World::new("tunnelidle").await else {
        return;
    };
    let alice = w.user("alice");
    let roost = roost_with_limits(&w, "tunnel_idle_timeout = \"1s\"", &[&alice]).await;

    let mut idle = ws_connect(&roost, &w, &alice).await.expect("idle one");
    let mut busy = ws_connect(&roost, &w, &alice).await.expect("busy one");
    assert!(echoes(&mut idle, "hello").await);
    let opened = Instant::now();
    // The idle one: closed by roost within a few seconds (awaited, with a deadline).
    let watcher = tokio::spawn(async move {
        loop {
            match tokio::time::timeout(Duration::from_secs(6), idle.next()).await {
                Err(_) => return None,
                Ok(Some(Ok(Message::Text(_) | Message::Binary(_) | Message::Ping(_) | Message::Pong(_)))) => {}
                Ok(_) => return Some(opened.elapsed()),
            }
        }
    });
    // The busy one: a message every 300 ms, for three idle timeouts.
    while opened.elapsed() < Duration::from_secs(3) {
        assert!(
            echoes(&mut busy, "keystroke").await,
            "busy tunnel closed after {:?}",
            opened.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(300)).await; // typing rhythm, not a wait
    }
    let closed_after = watcher.await.unwrap().expect("the idle tunnel was never closed");
    assert!(
        closed_after >= Duration::from_millis(900) && closed_after < Duration::from_secs(5),
        "{closed_after:?}"
    );
    assert!(echoes(&mut busy, "still here").await);
}

// ------------------------------------------------------------------- config

#[test]
fn tunnel_limits_have_defaults_and_named_errors() {
    let base = config_text("https://issuer.example/", "", "");
    let c = Config::from_toml(&base, Secrets::default()).unwrap();
    assert_eq!(c.limits.tunnels_per_user, 32);
    assert_eq!(c.limits.tunnel_idle_timeout, Duration::from_secs(3600));
    let set = format!("{base}\n[limits]\ntunnels_per_user = 2\ntunnel_idle_timeout = \"90s\"\n");
    let c = Config::from_toml(&set, Secrets::default()).unwrap();
    assert_eq!(
        (c.limits.tunnels_per_user, c.limits.tunnel_idle_timeout),
        (2, Duration::from_secs(90))
    );
    for (bad, key) in [
        ("tunnels_per_user = 0", "limits.tunnels_per_user"),
        ("tunnels_per_user = \"many\"", "limits.tunnels_per_user"),
        ("tunnel_idle_timeout = \"0s\"", "limits.tunnel_idle_timeout"),
        ("tunnel_idle_timeout = \"forever\"", "limits.tunnel_idle_timeout"),
    ] {
        let text = format!("{base}\n[limits]\n{bad}\n");
        let Err(ConfigError::Invalid(errors)) = Config::from_toml(&text, Secrets::default()) else {
            panic!("{bad} accepted");
        };
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].key, key, "{bad}");
    }
    // The example names both.
    let example = std::fs::read_to_string(support::project_dir().join("roost.example.toml")).unwrap();
    assert!(example.contains("tunnels_per_user = 32") && example.contains("tunnel_idle_timeout = \"1h\""));
}
