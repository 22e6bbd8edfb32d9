//! Through the real Traefik: roost's HTTP provider gives Traefik a direct
//! route to each ready workspace, guarded by roost's forwardAuth.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::docker::{self, Cleanup};
use support::issuer::TestIssuer;
use support::roost::{workspace_config, workspace_host, TestRoost, AUDIENCE};
use support::tokens::{auth0_claims, sign};
use support::traefik::Traefik;

#[tokio::test]
async fn ready_workspaces_are_routed_directly_behind_forward_auth() {
    let cleanup = Cleanup::new("traefik");
    let Some(runtime) = docker::engine(&cleanup).await else {
        return;
    };
    let issuer = TestIssuer::start(&["k1"]).await;
    let cfg = workspace_config(&issuer.url, &cleanup.labels_toml());
    let roost = TestRoost::start_with(&cfg, Some(Arc::clone(&runtime))).await;
    roost.wait_ready().await;
    let Some(traefik) = Traefik::start(&roost.provider_base()).await else {
        return;
    };

    let alice = format!("alice-{}", cleanup.id);
    let token = sign("k1", Some("k1"), &auth0_claims(&issuer.url, AUDIENCE, &alice));
    assert_eq!(roost.auth(&workspace_host(&alice), Some(&token)).await.status, 200);
    let router = format!("ws-{alice}");
    support::eventually(Duration::from_secs(20), "Traefik to route the workspace", || async {
        traefik.has_router(&router).await.then_some(())
    })
    .await;

    // The route table is served from memory: the same bytes until something changes.
    let one = roost.client.get(&roost.url("/traefik"), &[]).await.body;
    let two = roost.client.get(&roost.url("/traefik"), &[]).await.body;
    assert_eq!(one, two);

    let via = |token: Option<String>, cookie: Option<&'static str>| {
        let client = roost.client.clone();
        let url = format!("http://{}/echo?via=traefik", traefik.web);
        let host = workspace_host(&alice);
        async move {
            let mut headers = vec![("host", host.clone())];
            if let Some(t) = token {
                headers.push(("authorization", format!("Bearer {t}")));
            }
            if let Some(c) = cookie {
                headers.push(("cookie", c.to_string()));
            }
            let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            client.get(&url, &headers).await
        }
    };
    let r = via(Some(token.clone()), Some("roost_session=secret; theme=dark")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let echo: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let headers = &echo["headers"];
    assert_eq!(headers["x-roost-user"], alice.as_str());
    assert_eq!(headers["x-roost-workspace"], alice.as_str());
    assert!(
        headers.get("authorization").is_none(),
        "the token never reaches the workspace: {headers}"
    );
    assert_eq!(
        headers["cookie"], "theme=dark",
        "roost's cookie never reaches the workspace"
    );

    let bob = sign("k1", Some("k1"), &auth0_claims(&issuer.url, AUDIENCE, "bob"));
    assert_eq!(via(Some(bob), None).await.status, 403);
    let r = via(None, None).await;
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_some());
    drop(traefik);
    roost.stop().await;
}

/// roost with the real engine behind the real Traefik.
struct Stack {
    cleanup: Cleanup,
    issuer: TestIssuer,
    roost: TestRoost,
    traefik: Traefik,
    config: String,
    runtime: Arc<dyn roost::workspace::runtime::Runtime>,
}

impl Stack {
    async fn start(name: &str, workspace_extra: &str) -> Option<Stack> {
        let cleanup = Cleanup::new(name);
        let runtime = docker::engine(&cleanup).await?;
        let issuer = TestIssuer::start(&["k1"]).await;
        let drain = if workspace_extra.contains("drain_grace") {
            ""
        } else {
            "drain_grace = \"1s\""
        };
        let extra = format!(
            "{}\n{drain}\nstop_timeout = \"1s\"\n{workspace_extra}",
            cleanup.labels_toml()
        );
        let config = workspace_config(&issuer.url, &extra);
        let roost = TestRoost::start_with(&config, Some(runtime.clone())).await;
        roost.wait_ready().await;
        let traefik = Traefik::start(&roost.provider_base()).await?;
        Some(Stack {
            cleanup,
            issuer,
            roost,
            traefik,
            config,
            runtime,
        })
    }

    fn user(&self, who: &str) -> String {
        format!("{who}-{}", self.cleanup.id)
    }

    fn token(&self, user: &str) -> String {
        sign("k1", Some("k1"), &auth0_claims(&self.issuer.url, AUDIENCE, user))
    }

    /// A request through Traefik for `user`'s workspace.
    async fn get(&self, user: &str, path: &str, headers: &[(&str, &str)]) -> support::http::Reply {
        let host = workspace_host(user);
        let bearer = format!("Bearer {}", self.token(user));
        let mut all = vec![("host", host.as_str()), ("authorization", bearer.as_str())];
        all.extend_from_slice(headers);
        self.roost
            .client
            .get(&format!("http://{}{path}", self.traefik.web), &all)
            .await
    }

    async fn proxied(&self, kind: &str) -> u64 {
        let body = self.roost.client.get(&self.roost.url("/metrics"), &[]).await.body;
        let needle = format!("roost_proxy_requests_total{{kind=\"{kind}\"}} ");
        body.lines()
            .find_map(|l| l.strip_prefix(needle.as_str()))
            .map_or(0, |v| v.parse().unwrap_or(0))
    }

    async fn wait_direct(&self, user: &str) {
        let router = format!("ws-{user}");
        support::eventually(Duration::from_secs(20), "Traefik's direct route", || async {
            self.traefik.has_router(&router).await.then_some(())
        })
        .await;
    }

    async fn ws_echo(&self, user: &str) -> String {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!("ws://{}/ws", self.traefik.web).into_client_request().unwrap();
        req.headers_mut().insert("host", workspace_host(user).parse().unwrap());
        req.headers_mut()
            .insert("authorization", format!("Bearer {}", self.token(user)).parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("websocket through traefik");
        ws.send("hello roost".into()).await.unwrap();
        let reply = ws.next().await.unwrap().unwrap();
        let _ = ws.close(None).await;
        reply.into_text().unwrap().to_string()
    }
}

#[tokio::test]
async fn a_new_user_is_served_by_the_fallback_then_directly() {
    let Some(s) = Stack::start("fallback", "").await else {
        return;
    };
    let alice = s.user("alice");
    let before = s.proxied("http").await;
    let r = s
        .get(&alice, "/first", &[("cookie", "roost_session=s3cret; theme=dark")])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let echo: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(echo["headers"]["x-roost-user"], alice.as_str());
    assert!(echo["headers"].get("authorization").is_none(), "{}", echo["headers"]);
    assert_eq!(echo["headers"]["cookie"], "theme=dark");
    assert_eq!(
        s.proxied("http").await,
        before + 1,
        "the first request went through roost's proxy"
    );
    s.wait_direct(&alice).await;
    let r = s.get(&alice, "/second", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        s.proxied("http").await,
        before + 1,
        "the next one went straight to the container"
    );
    // Another user's token on alice's host, through either route: 403.
    let bob = sign("k1", Some("k1"), &auth0_claims(&s.issuer.url, AUDIENCE, "bob"));
    let host = workspace_host(&alice);
    let r = s
        .roost
        .client
        .get(
            &format!("http://{}/", s.traefik.web),
            &[("host", &host), ("authorization", &format!("Bearer {bob}"))],
        )
        .await;
    assert_eq!(r.status, 403);
    let r = s
        .roost
        .client
        .get(&format!("http://{}/", s.traefik.web), &[("host", &host)])
        .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn websockets_work_before_and_after_the_direct_route() {
    let Some(s) = Stack::start("ws", "").await else { return };
    let alice = s.user("alice");
    assert_eq!(s.ws_echo(&alice).await, "hello roost");
    assert_eq!(s.proxied("upgrade").await, 1, "through roost's proxy first");
    s.wait_direct(&alice).await;
    assert_eq!(s.ws_echo(&alice).await, "hello roost");
    assert_eq!(s.proxied("upgrade").await, 1, "then straight to the container");
}

#[tokio::test]
async fn a_browser_gets_the_starting_page_until_its_workspace_is_ready() {
    let Some(s) = Stack::start("browser", "").await else {
        return;
    };
    let alice = s.user("alice");
    let r = s
        .get(&alice, "/", &[("accept", "text/html,application/xhtml+xml")])
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("Starting your workspace"), "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(r
        .header("content-security-policy")
        .is_some_and(|c| c.contains("script-src 'sha256-")));
    // The page's long poll answers 200 once the workspace is ready.
    support::eventually(Duration::from_secs(60), "the workspace to be ready", || async {
        (s.get(&alice, "/_roost/wait", &[]).await.status == 200).then_some(())
    })
    .await;
    let r = s.get(&alice, "/", &[("accept", "text/html")]).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("x-roost-user"), "the workspace itself now: {}", r.body);
}

#[tokio::test]
async fn no_502_across_drain_removal_and_recreation() {
    let Some(s) = Stack::start("no502", "idle_timeout = \"3s\"\nmax_lifetime = \"3s\"").await else {
        return;
    };
    let alice = s.user("alice");
    assert_eq!(s.get(&alice, "/", &[]).await.status, 200);
    let first = docker::inspect(&format!("roost-{alice}"), "{{.Id}}");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut statuses = std::collections::BTreeMap::new();
    let mut recreated = false;
    while std::time::Instant::now() < deadline {
        let r = s.get(&alice, "/tick", &[]).await;
        *statuses.entry(r.status.as_u16()).or_insert(0) += 1;
        assert_eq!(r.status, 200, "after {statuses:?}: {}", r.body);
        let now = docker::inspect(&format!("roost-{alice}"), "{{.Id}}");
        if !now.is_empty() && now != first {
            recreated = true;
        }
        if recreated && statuses[&200] > 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await; // the client's request rhythm, not a wait
    }
    assert!(
        recreated,
        "the container was removed and recreated within a minute: {statuses:?}"
    );
}

fn running(user: &str) -> bool {
    docker::inspect(&format!("roost-{user}"), "{{.State.Running}}") == "true"
}

#[tokio::test]
async fn idle_culling_withdraws_the_route_before_stopping_and_the_next_request_wakes_it() {
    let Some(s) = Stack::start("cull", "idle_timeout = \"2s\"\ndrain_grace = \"3s\"").await else {
        return;
    };
    let alice = s.user("alice");
    assert_eq!(s.get(&alice, "/", &[]).await.status, 200);
    s.wait_direct(&alice).await;
    let router = format!("ws-{alice}");
    // The route goes first, while the container still runs.
    support::eventually(Duration::from_secs(30), "the route to be withdrawn", || async {
        (!s.traefik.has_router(&router).await).then_some(())
    })
    .await;
    assert!(running(&alice), "withdrawn before stopped");
    support::eventually(Duration::from_secs(30), "the container to stop", || async {
        (!running(&alice)).then_some(())
    })
    .await;
    let r = s.get(&alice, "/again", &[]).await;
    assert_eq!(r.status, 200, "woken through the fallback: {}", r.body);
    assert!(running(&alice));
}

#[tokio::test]
async fn a_busy_websocket_keeps_its_workspace_alive() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let Some(s) = Stack::start("busyws", "idle_timeout = \"2s\"").await else {
        return;
    };
    let alice = s.user("alice");
    assert_eq!(s.get(&alice, "/", &[]).await.status, 200);
    s.wait_direct(&alice).await;
    let mut req = format!("ws://{}/ws", s.traefik.web).into_client_request().unwrap();
    req.headers_mut()
        .insert("host", workspace_host(&alice).parse().unwrap());
    req.headers_mut()
        .insert("authorization", format!("Bearer {}", s.token(&alice)).parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    // Three idle timeouts of editor traffic and no new HTTP request.
    let until = std::time::Instant::now() + Duration::from_secs(6);
    while std::time::Instant::now() < until {
        ws.send("keystroke".into()).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap().into_text().unwrap().as_str(),
            "keystroke"
        );
        tokio::time::sleep(Duration::from_millis(300)).await; // typing rhythm, not a wait
    }
    assert!(running(&alice), "kept alive by its WebSocket traffic");
    let _ = ws.close(None).await;
}

#[tokio::test]
async fn a_roost_restart_keeps_traefik_routing_and_the_routes_unchanged() {
    let Some(mut s) = Stack::start("restart", "").await else {
        return;
    };
    let alice = s.user("alice");
    assert_eq!(s.get(&alice, "/", &[]).await.status, 200);
    s.wait_direct(&alice).await;
    let before = s.roost.client.get(&s.roost.url("/traefik"), &[]).await.body;
    let (addr, internal) = (s.roost.addr.to_string(), s.roost.internal.to_string());
    let old = std::mem::replace(&mut s.roost, TestRoost::start_with(&s.config, None).await);
    old.stop().await;
    // roost is down: Traefik keeps its last good table.
    assert!(s.traefik.has_router(&format!("ws-{alice}")).await);
    assert!(running(&alice), "workspaces outlive roost");
    let restarted = TestRoost::start_at((&addr, &internal), &s.config, Some(s.runtime.clone())).await;
    restarted.wait_ready().await;
    support::eventually(Duration::from_secs(20), "the adopted route", || async {
        let now = restarted.client.get(&restarted.url("/traefik"), &[]).await.body;
        (now == before).then_some(())
    })
    .await;
    s.roost = restarted;
    assert_eq!(s.get(&alice, "/after", &[]).await.status, 200);
    assert!(s.traefik.has_router(&format!("ws-{alice}")).await);
}
