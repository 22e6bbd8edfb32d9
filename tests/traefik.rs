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
    let Some(traefik) = Traefik::start(&format!("http://{}", roost.addr)).await else {
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
