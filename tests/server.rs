//! The listener's own manners: slow and oversized request heads get a clean
//! 408 / 431, and shutdown lets in-flight requests finish.

mod support;

use std::time::Duration;

use support::issuer::TestIssuer;
use support::roost::{config_text, workspace_host, TestRoost, AUDIENCE};
use support::tokens::{auth0_claims, sign};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn read_all(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut out))
        .await
        .expect("server answered and closed in time")
        .ok();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_slow_request_head_gets_408() {
    let issuer = TestIssuer::start(&["k1"]).await;
    let cfg = config_text(&issuer.url, "", "[server]\nheader_read_timeout = \"500ms\"");
    let roost = TestRoost::start(&cfg).await;
    let mut slow = TcpStream::connect(roost.addr).await.unwrap();
    slow.write_all(b"GET /auth HTTP/1.1\r\nHost: roost\r\nX-Forwarded-Host: ali")
        .await
        .unwrap();
    let answer = read_all(&mut slow).await;
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer:?}");
    // The server is fine afterwards.
    assert_eq!(roost.client.get(&roost.url("/healthz"), &[]).await.status, 200);
    roost.stop().await;
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let issuer = TestIssuer::start(&["k1"]).await;
    let roost = TestRoost::start(&config_text(&issuer.url, "", "")).await;
    let mut big = TcpStream::connect(roost.addr).await.unwrap();
    let filler = "a".repeat(8000);
    let mut req = String::from("GET /auth HTTP/1.1\r\nHost: roost\r\n");
    for i in 0..8 {
        req.push_str(&format!("X-Filler-{i}: {filler}\r\n"));
    }
    req.push_str("\r\n");
    let _ = big.write_all(req.as_bytes()).await; // the server may close before reading it all
    let answer = read_all(&mut big).await;
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer:?}");
    roost.stop().await;
}

#[tokio::test]
async fn a_9kib_bearer_header_is_answered_401_not_431() {
    let issuer = TestIssuer::start(&["k1"]).await;
    let roost = TestRoost::start_ready(&config_text(&issuer.url, "", "")).await;
    let token = "x".repeat(9 * 1024);
    assert_eq!(roost.auth(&workspace_host("alice"), Some(&token)).await.status, 401);
    roost.stop().await;
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let issuer = TestIssuer::start(&["k1"]).await;
    let mut roost = TestRoost::start_ready(&config_text(&issuer.url, "", "")).await;
    // A rotated key makes the next request wait on a slow JWKS refetch.
    issuer.publish(&["k1", "k2"]);
    issuer.set_jwks_delay(Duration::from_millis(800));
    let token = sign("k2", Some("k2"), &auth0_claims(&issuer.url, AUDIENCE, "alice"));
    let client = roost.client.clone();
    let url = roost.url("/auth");
    let in_flight = tokio::spawn(async move {
        let bearer = format!("Bearer {token}");
        client
            .get(
                &url,
                &[("x-forwarded-host", "alice.ws.roost.test"), ("authorization", &bearer)],
            )
            .await
    });
    // Wait until the request is being served (the refetch has started).
    let fetches = issuer.jwks_fetches();
    support::eventually(Duration::from_secs(10), "the refetch to start", || async {
        (issuer.jwks_fetches() > fetches).then_some(())
    })
    .await;
    let stopping = roost.begin_stop();
    let r = in_flight.await.unwrap();
    assert_eq!(r.status, 200, "in-flight request finished: {}", r.body);
    stopping.await.unwrap().unwrap();
    assert!(TcpStream::connect(roost.addr).await.is_err(), "no longer listening");
}
