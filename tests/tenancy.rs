//! One tenant against another, and anyone against roost's internals: the
//! attacks of the tenant-isolation issue, each of which worked before.
//!
//! - roost's internal endpoints through the public entrypoint, under every
//!   spelling of a host (real Traefik, and roost's public listener itself);
//! - anonymous and forged traffic from one address locking signed-in
//!   users out;
//! - a second account with the same `username_claim` value taking over
//!   the first's workspace, its status, its logs or its volume (real engine);
//! - two deployments on one engine meeting (real engine).

mod support;

use std::time::Duration;

use support::docker::{self, docker_lines, inspect, Cleanup};
use support::issuer::TestIssuer;
use support::roost::{
    config_text, session_for, sign_in_secrets, workspace_config, workspace_host, TestRoost, AUDIENCE, COOKIE_KEY,
    DOMAIN,
};
use support::tokens::{auth0_claims, sign};
use support::traefik::Traefik;
use support::workspace::{auth_until_ok, until};

/// Every way to write a host that is not a workspace, including every
/// spelling of the bare domain.
const SPELLINGS: &[&str] = &[
    "ws.roost.test.",
    "WS.ROOST.TEST",
    "Ws.Roost.Test.",
    "ws.roost.test:80",
    "ws.roost.test.:80",
    "xn--ws-roost-test",
    "xn--s-mfa.roost.test",
    "127.0.0.1",
    "[::1]",
    "2130706433",
    "localhost",
    "roost",
];

const INTERNAL_PATHS: &[&str] = &["/traefik", "/metrics", "/auth", "/healthz", "/readyz"];

/// True when a body is roost's route table or its metrics.
fn leaks(body: &str) -> bool {
    body.contains("\"routers\"") || body.contains("# TYPE") || body.contains("roost_http_requests_total")
}

#[tokio::test]
async fn internal_endpoints_are_never_served_through_the_public_entrypoint() {
    let issuer = TestIssuer::start(&["k1"]).await;
    let roost = TestRoost::start_ready(&config_text(&issuer.url, "", "")).await;
    let Some(traefik) = Traefik::start(&roost.provider_base()).await else {
        return;
    };
    // The controls: these are there, on the internal listener.
    assert!(leaks(&roost.client.get(&roost.url("/traefik"), &[]).await.body));
    assert!(leaks(&roost.client.get(&roost.url("/metrics"), &[]).await.body));
    // Wait until Traefik routes the bare domain to roost's public listener.
    support::eventually(Duration::from_secs(20), "Traefik routing the domain", || {
        let client = roost.client.clone();
        let url = format!("http://{}/_roost/signed-out", traefik.web);
        async move { (client.get(&url, &[("host", DOMAIN)]).await.status == 200).then_some(()) }
    })
    .await;
    let workspace = workspace_host("alice");
    let mut hosts: Vec<String> = SPELLINGS.iter().map(|s| s.to_string()).collect();
    hosts.push(workspace.clone());
    hosts.push(workspace.to_uppercase() + ".");
    hosts.push(roost.addr.to_string());
    hosts.push(roost.internal.to_string());
    for host in &hosts {
        for path in INTERNAL_PATHS {
            // Through Traefik, and straight to roost's public listener.
            for base in [traefik.web.clone(), roost.addr.to_string()] {
                let r = roost
                    .client
                    .get(&format!("http://{base}{path}"), &[("host", host.as_str())])
                    .await;
                let through = if base == traefik.web {
                    "Traefik"
                } else {
                    "the public listener"
                };
                assert!(
                    !leaks(&r.body),
                    "{path} with Host {host:?} through {through} leaked: {} {}",
                    r.status,
                    r.body
                );
                // A workspace host goes to the fallback proxy, which asks
                // for credentials; nothing else answers 2xx.
                assert!(
                    r.status != 200 || (host.contains("alice") && r.header("x-roost-user").is_none()),
                    "{path} with Host {host:?} through {through}: {} {}",
                    r.status,
                    r.body
                );
            }
        }
    }
    roost.stop().await;
}

#[tokio::test]
async fn anonymous_and_forged_traffic_from_one_address_locks_no_one_out() {
    let issuer = TestIssuer::start(&["k1"]).await;
    let config = config_text(&issuer.url, "client_id = \"roost-test-client\"", "");
    let roost = TestRoost::start_full("127.0.0.1:0", &config, sign_in_secrets(COOKIE_KEY, None), None).await;
    roost.wait_ready().await;
    let office = "203.0.113.50";
    let ask = |host: String, headers: Vec<(&'static str, String)>| {
        let client = roost.client.clone();
        let url = roost.url("/auth");
        async move {
            let mut h: Vec<(&str, &str)> = vec![
                ("x-forwarded-host", host.as_str()),
                ("x-forwarded-for", office),
                ("x-forwarded-proto", "https"),
            ];
            h.extend(headers.iter().map(|(k, v)| (*k, v.as_str())));
            client.get(&url, &h).await
        }
    };
    let alice_token = sign("k1", Some("k1"), &auth0_claims(&issuer.url, AUDIENCE, "alice"));
    // alice's token is known before the flood (cached); bob and dave have
    // used roost before (yesterday's tokens).
    let r = ask(
        workspace_host("alice"),
        vec![("authorization", format!("Bearer {alice_token}"))],
    )
    .await;
    assert_eq!(r.status, 200);
    for colleague in ["bob", "dave"] {
        let mut old = auth0_claims(&issuer.url, AUDIENCE, colleague);
        old["iat"] = serde_json::json!(support::tokens::now() - 60);
        let yesterday = sign("k1", Some("k1"), &old);
        let r = ask(
            workspace_host(colleague),
            vec![("authorization", format!("Bearer {yesterday}"))],
        )
        .await;
        assert_eq!(r.status, 200);
    }
    // The flood: anonymous requests, then forged tokens (a key the issuer
    // never published), all from the office's address.
    for _ in 0..60 {
        assert_eq!(ask(workspace_host("alice"), vec![]).await.status, 401);
    }
    let mut refused = 0;
    for i in 0..60 {
        let forged = sign(
            "attacker",
            Some("k1"),
            &auth0_claims(&issuer.url, AUDIENCE, &format!("mallory{i}")),
        );
        let r = ask(
            workspace_host("alice"),
            vec![("authorization", format!("Bearer {forged}"))],
        )
        .await;
        assert!(matches!(r.status.as_u16(), 401 | 429), "{}", r.status);
        refused += usize::from(r.status == 429);
    }
    assert!(refused > 0, "the forged flood is still cut off");
    // alice's cached token, a session, and brand-new tokens of colleagues
    // behind the same address all still pass, at once.
    let r = ask(
        workspace_host("alice"),
        vec![("authorization", format!("Bearer {alice_token}"))],
    )
    .await;
    assert_eq!(r.status, 200, "cached token: {}", r.body);
    let (cookie, _) = session_for(&roost.app, "carol");
    let r = ask(workspace_host("carol"), vec![("cookie", cookie)]).await;
    assert_eq!(r.status, 200, "session: {}", r.body);
    for colleague in ["bob", "dave"] {
        let fresh = sign("k1", Some("k1"), &auth0_claims(&issuer.url, AUDIENCE, colleague));
        let r = ask(
            workspace_host(colleague),
            vec![("authorization", format!("Bearer {fresh}"))],
        )
        .await;
        assert_eq!(r.status, 200, "{colleague}'s new token: {}", r.body);
    }
    roost.stop().await;
}

/// A config whose workspace names come from a non-unique claim: the test
/// tokens' `https://roost.test/username` (the part of `sub` after `|`), so
/// `auth0|x` and `google-oauth2|x` get the same workspace name `x`.
fn nickname_config(issuer: &str, cleanup: &Cleanup, extra: &str) -> String {
    workspace_config(issuer, &format!("{}\n{extra}", cleanup.labels_toml()))
        .replace("[oidc]\n", "[oidc]\nusername_claim = \"https://roost.test/username\"\n")
}

#[tokio::test]
async fn a_workspace_belongs_to_the_sub_that_created_it_on_every_path() {
    let cleanup = Cleanup::new("owner");
    let Some(runtime) = docker::engine(&cleanup).await else {
        return;
    };
    let issuer = TestIssuer::start(&["k1"]).await;
    let config = nickname_config(&issuer.url, &cleanup, "");
    let roost = TestRoost::start_with(&config, Some(runtime.clone())).await;
    roost.wait_ready().await;
    let name = format!("sam-{}", cleanup.id);
    let alice = sign(
        "k1",
        Some("k1"),
        &auth0_claims(&issuer.url, AUDIENCE, &format!("auth0|{name}")),
    );
    let mallory = sign(
        "k1",
        Some("k1"),
        &auth0_claims(&issuer.url, AUDIENCE, &format!("google-oauth2|{name}")),
    );
    auth_until_ok(&roost, &name, &alice).await;
    let container = format!("roost-{name}");
    assert_eq!(
        inspect(&container, "{{index .Config.Labels \"roost.owner\"}}"),
        format!("auth0|{name}")
    );

    // mallory's name maps to the same workspace: every path says no.
    assert_eq!(roost.auth(&workspace_host(&name), Some(&mallory)).await.status, 403);
    for what in ["status", "logs"] {
        let r = roost
            .client
            .get(
                &roost.public_url(&format!("/_roost/api/v1/{what}")),
                &[("host", DOMAIN), ("authorization", &format!("Bearer {mallory}"))],
            )
            .await;
        assert_eq!(r.status, 403, "{what}: {}", r.body);
        assert!(!r.body.contains(&container), "{what} leaked: {}", r.body);
    }

    // alice's container goes (max_lifetime, a failed start, an operator)
    // and roost restarts: the volume still belongs to alice.
    roost.stop().await;
    assert!(std::process::Command::new("docker")
        .args(["rm", "-f", &container])
        .output()
        .unwrap()
        .status
        .success());
    let roost = TestRoost::start_with(&config, Some(runtime.clone())).await;
    roost.wait_ready().await;
    let r = roost.auth(&workspace_host(&name), Some(&mallory)).await;
    assert_eq!(r.status, 403, "mallory on alice's volume: {}", r.body);
    assert!(r.body.contains("another account"), "{}", r.body);
    let made = docker_lines(&["ps", "-aq", "--filter", &format!("name=^/{container}$")]);
    assert!(made.is_empty(), "a container was made for mallory on alice's volume");
    // ... and alice is not locked out by mallory's attempt.
    auth_until_ok(&roost, &name, &alice).await;
    assert_eq!(
        inspect(&container, "{{index .Config.Labels \"roost.owner\"}}"),
        format!("auth0|{name}")
    );
    roost.stop().await;
}

#[tokio::test]
async fn deployments_on_one_engine_never_meet() {
    let cleanup = Cleanup::new("deploy");
    let issuer = TestIssuer::start(&["k1"]).await;
    // Deployment ids are short: a per-test suffix from the cleanup id.
    let tag: String = format!("{:x}", {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        cleanup.id.hash(&mut h);
        h.finish()
    })
    .chars()
    .take(8)
    .collect();
    let (a, b) = (format!("ta{tag}"), format!("tb{tag}"));
    let Some(runtime_a) = docker::engine_for(&cleanup, &a, &issuer.url).await else {
        return;
    };
    let Some(runtime_b) = docker::engine_for(&cleanup, &b, &issuer.url).await else {
        return;
    };
    let with_id = |id: &str| {
        workspace_config(&issuer.url, &cleanup.labels_toml())
            .replace("[oidc]\n", &format!("[deployment]\nid = \"{id}\"\n[oidc]\n"))
    };
    let roost_a = TestRoost::start_with(&with_id(&a), Some(runtime_a.clone())).await;
    let roost_b = TestRoost::start_with(&with_id(&b), Some(runtime_b.clone())).await;
    roost_a.wait_ready().await;
    roost_b.wait_ready().await;
    let alice = format!("alice-{tag}");
    let token = sign("k1", Some("k1"), &auth0_claims(&issuer.url, AUDIENCE, &alice));
    auth_until_ok(&roost_a, &alice, &token).await;
    auth_until_ok(&roost_b, &alice, &token).await;
    // Two containers, two volumes, each labelled with its deployment.
    for id in [&a, &b] {
        let c = format!("{id}-{alice}");
        assert_eq!(inspect(&c, "{{index .Config.Labels \"roost.deployment\"}}"), *id);
        assert_eq!(inspect(&c, "{{index .Config.Labels \"roost.issuer\"}}"), issuer.url);
        let mounts = inspect(&c, "{{range .Mounts}}{{.Name}}{{end}}");
        assert_eq!(mounts, format!("{id}-{alice}-data"));
    }
    // What B sees on the engine (and so may adopt, stop or remove) is B's
    // alone, though A's workspace of the same name runs beside it.
    let seen = runtime_b.list().await.unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        runtime_b.inspect(&alice).await.unwrap().map(|c| c.id),
        Some(inspect(&format!("{b}-{alice}"), "{{.Id}}"))
    );
    // B, restarted, adopts its own workspace.
    roost_b.stop().await;
    let roost_b = TestRoost::start_with(&with_id(&b), Some(runtime_b.clone())).await;
    roost_b.wait_ready().await;
    let registry = &roost_b.app.workspaces;
    until(20, "B adopting its own workspace", || registry.get(&alice).is_some()).await;
    roost_a.stop().await;

    // A name B would use, taken by something that is not B's: a clear
    // configuration error, tried once per back-off, not a retry storm.
    let carol = format!("carol-{tag}");
    let taken = format!("{b}-{carol}");
    let made = std::process::Command::new("docker")
        .args([
            "create",
            "--name",
            &taken,
            "--label",
            "roost.managed=true",
            "--label",
            "roost.deployment=someone-else",
        ])
        .args(["--label", &format!("roost-test.run={}", cleanup.id), "roost-echo:test"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let carol_token = sign("k1", Some("k1"), &auth0_claims(&issuer.url, AUDIENCE, &carol));
    for _ in 0..5 {
        let r = roost_b.auth(&workspace_host(&carol), Some(&carol_token)).await;
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(r.body.contains("operator"), "{}", r.body);
        assert_eq!(r.header("retry-after"), Some("300"), "retrying soon cannot help");
    }
    let metrics = roost_b.client.get(&roost_b.url("/metrics"), &[]).await.body;
    assert!(
        metrics.contains(r#"roost_workspace_failures_total{reason="name_taken"} 1"#),
        "one attempt, not five:\n{metrics}"
    );
    assert_eq!(
        inspect(&taken, "{{index .Config.Labels \"roost.deployment\"}}"),
        "someone-else",
        "left alone"
    );
    roost_b.stop().await;
}

#[tokio::test]
async fn a_volume_from_before_64_bit_slugs_stays_with_its_owner() {
    let cleanup = Cleanup::new("legacy");
    let Some(runtime) = docker::engine(&cleanup).await else {
        return;
    };
    let issuer = TestIssuer::start(&["k1"]).await;
    let roost = TestRoost::start_with(&workspace_config(&issuer.url, &cleanup.labels_toml()), Some(runtime)).await;
    roost.wait_ready().await;
    // An Auth0 `sub` needs mapping, so its slug carries a hash: 32 bits
    // before, 64 now. The old workspace's volume, as an old roost left it.
    let sub = format!("auth0|{}", cleanup.id);
    let (slug, old) = (roost::slug::slug_for(&sub), roost::slug::legacy_slug_for(&sub).unwrap());
    let old_volume = format!("roost-{old}-data");
    let made = std::process::Command::new("docker")
        .args(["volume", "create", "--label", "roost.managed=true", "--label"])
        .arg(format!("roost.owner={sub}"))
        .args(["--label", &format!("roost.workspace={old}"), "--label"])
        .arg(format!("roost-test.run={}", cleanup.id))
        .arg(&old_volume)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let token = sign("k1", Some("k1"), &auth0_claims(&issuer.url, AUDIENCE, &sub));
    auth_until_ok(&roost, &slug, &token).await;
    let container = format!("roost-{slug}");
    assert_eq!(inspect(&container, "{{range .Mounts}}{{.Name}}{{end}}"), old_volume);
    roost.stop().await;
}
