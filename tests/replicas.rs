//! Several replicas, one truth: roost replicas sharing a real
//! `redis-server` (Debian's, with a password and an ACL user). Sessions
//! taken away on one replica are refused by the others within a second and
//! after every restart; Redis gone for 30 s refuses no authorized request;
//! a wrong password or an unreachable Redis stops roost at start with a
//! message that names `ROOST_REDIS_URL` and not the password. The replicas
//! here run in-process over the in-memory runtime (the auth layer is what
//! is shared); `tests/fleet.rs` runs them as processes behind Traefik on the
//! real engine.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use serde_json::json;
use support::http::{Reply, TestClient};
use support::issuer::TestIssuer;
use support::jar::Jar;
use support::redis_server::{Redis, PASSWORD};
use support::roost::{
    config_text, session_for, sign_in_secrets, workspace_host, TestRoost, AUDIENCE, COOKIE_KEY, DOMAIN,
};
use support::tokens::{auth0_claims, sign};

fn sign_in_config(issuer: &str) -> String {
    config_text(issuer, "client_id = \"roost-test-client\"", "")
}

/// Three replicas sharing `redis`.
async fn replicas(issuer: &str, redis: &Redis) -> Vec<TestRoost> {
    let mut out = Vec::new();
    for _ in 0..3 {
        let mut secrets = sign_in_secrets(COOKIE_KEY, None);
        secrets.redis_url = Some(roost::config::Secret::new(redis.url()));
        let roost = TestRoost::start_full("127.0.0.1:0", &sign_in_config(issuer), secrets, None).await;
        roost.wait_ready().await;
        out.push(roost);
    }
    out
}

/// `/auth` for `host` with a session cookie.
async fn auth_with_cookie(roost: &TestRoost, host: &str, cookie: &str) -> Reply {
    roost
        .client
        .get(
            &roost.url("/auth"),
            &[
                ("x-forwarded-host", host),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-method", "GET"),
                ("x-forwarded-uri", "/"),
                ("x-forwarded-for", "198.51.100.7"),
                ("cookie", cookie),
            ],
        )
        .await
}

/// A page request on the bare domain of `roost`'s public listener.
async fn page(roost: &TestRoost, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut req = http::Request::builder()
        .method(method)
        .uri(roost.public_url(path))
        .header("host", DOMAIN);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    roost
        .client
        .send(req.body(Full::new(Bytes::from(body.to_string()))).unwrap())
        .await
        .unwrap()
}

/// Polls until every replica in `others` refuses `cookie`; how long it took.
async fn refused_everywhere(others: &[&TestRoost], host: &str, cookie: &str) -> Duration {
    let began = Instant::now();
    for roost in others {
        support::eventually(
            Duration::from_secs(5),
            "the other replicas to refuse the session",
            || async { (auth_with_cookie(roost, host, cookie).await.status == 401).then_some(()) },
        )
        .await;
    }
    began.elapsed()
}

#[tokio::test]
async fn a_session_taken_away_on_one_replica_is_refused_by_all_within_a_second_and_after_restarts() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let issuer = TestIssuer::start(&["k1"]).await;
    let fleet = replicas(&issuer.url, &redis).await;
    let (alice_host, bob_host) = (workspace_host("alice"), workspace_host("bob"));
    let (alice, alice_csrf) = session_for(&fleet[0].app, "alice");
    let (alice_laptop, _) = session_for(&fleet[0].app, "alice");
    let (bob, _) = session_for(&fleet[1].app, "bob");
    for roost in &fleet {
        assert_eq!(auth_with_cookie(roost, &alice_host, &alice).await.status, 200);
        assert_eq!(auth_with_cookie(roost, &bob_host, &bob).await.status, 200);
    }

    // Alice signs out on replica 0: that session, and only that one, is gone everywhere.
    let r = page(
        &fleet[0],
        "POST",
        "/_roost/logout",
        &[
            ("cookie", &alice),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        &format!("csrf={alice_csrf}"),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(auth_with_cookie(&fleet[0], &alice_host, &alice).await.status, 401);
    let took = refused_everywhere(&[&fleet[1], &fleet[2]], &alice_host, &alice).await;
    assert!(took < Duration::from_secs(1), "refused everywhere after {took:?}");
    for roost in &fleet {
        assert_eq!(auth_with_cookie(roost, &alice_host, &alice_laptop).await.status, 200);
    }

    // An admin signs bob out everywhere through replica 1.
    let mut admin_claims = auth0_claims(&issuer.url, AUDIENCE, "root");
    admin_claims["permissions"] = json!(["roost:admin"]);
    let admin = format!("Bearer {}", sign("k1", Some("k1"), &admin_claims));
    let user_token = format!(
        "Bearer {}",
        sign("k1", Some("k1"), &auth0_claims(&issuer.url, AUDIENCE, "carol"))
    );
    let path = "/_roost/api/v1/admin/users/bob/sign-out";
    let r = page(&fleet[1], "POST", path, &[("authorization", &user_token)], "").await;
    assert_eq!(r.status, 403, "a user is not an admin: {}", r.body);
    assert_eq!(auth_with_cookie(&fleet[2], &bob_host, &bob).await.status, 200);
    let r = page(&fleet[1], "POST", path, &[("authorization", &admin)], "").await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (200, r#"{"signed_out":"bob"}"#));
    let took = refused_everywhere(&[&fleet[0], &fleet[1], &fleet[2]], &bob_host, &bob).await;
    assert!(took < Duration::from_secs(1), "bob refused everywhere after {took:?}");

    // Every replica restarts: what was taken away stays away.
    let known: Vec<_> = fleet.iter().map(|r| r.app.revocations.len()).collect();
    assert!(known.iter().all(|n| *n == (1, 1)), "{known:?}");
    for roost in fleet {
        roost.stop().await;
    }
    let fleet = replicas(&issuer.url, &redis).await;
    for roost in &fleet {
        assert_eq!(auth_with_cookie(roost, &alice_host, &alice).await.status, 401);
        assert_eq!(auth_with_cookie(roost, &bob_host, &bob).await.status, 401);
        assert_eq!(auth_with_cookie(roost, &alice_host, &alice_laptop).await.status, 200);
    }
    // ... and after Redis itself restarts (append-only file, fsync always).
    let mut redis = redis;
    redis.restart().await;
    let late = replicas(&issuer.url, &redis).await;
    assert_eq!(auth_with_cookie(&late[0], &alice_host, &alice).await.status, 401);
    assert_eq!(auth_with_cookie(&late[0], &bob_host, &bob).await.status, 401);
    for roost in fleet.into_iter().chain(late) {
        roost.stop().await;
    }
}

#[tokio::test]
async fn one_replica_without_redis_keeps_its_revocations_in_a_file() {
    let issuer = TestIssuer::start(&["k1"]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}\n[store]\npath = \"{}\"\n",
        sign_in_config(&issuer.url),
        dir.path().join("revocations").display()
    );
    let start = || TestRoost::start_full("127.0.0.1:0", &config, sign_in_secrets(COOKIE_KEY, None), None);
    let roost = start().await;
    roost.wait_ready().await;
    let (alice, csrf) = session_for(&roost.app, "alice");
    let host = workspace_host("alice");
    assert_eq!(auth_with_cookie(&roost, &host, &alice).await.status, 200);
    let headers = [
        ("cookie", alice.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    let r = page(&roost, "POST", "/_roost/logout", &headers, &format!("csrf={csrf}")).await;
    assert_eq!(r.status, 303);
    roost.stop().await;
    let roost = start().await;
    roost.wait_ready().await;
    assert_eq!(
        auth_with_cookie(&roost, &host, &alice).await.status,
        401,
        "still refused after a restart"
    );
    roost.stop().await;
}

#[tokio::test]
async fn redis_gone_for_thirty_seconds_refuses_no_authorized_request() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let issuer = TestIssuer::start(&["k1"]).await;
    let fleet = replicas(&issuer.url, &redis).await;
    let users = ["ann", "ben", "cat", "dan"];
    let tokens: Vec<String> = users
        .iter()
        .map(|u| sign("k1", Some("k1"), &auth0_claims(&issuer.url, AUDIENCE, u)))
        .collect();
    let sessions: Vec<(String, String)> = users.iter().map(|u| session_for(&fleet[0].app, u)).collect();
    // Every credential decided once on every replica, as under load before the fault.
    for roost in &fleet {
        for (i, u) in users.iter().enumerate() {
            assert_eq!(roost.auth(&workspace_host(u), Some(&tokens[i])).await.status, 200);
            assert_eq!(
                auth_with_cookie(roost, &workspace_host(u), &sessions[i].0).await.status,
                200
            );
        }
    }

    redis.kill();
    let until = Instant::now() + Duration::from_secs(30);
    let (mut answered, mut refused) = (0u32, Vec::new());
    let mut saw_degraded = false;
    let mut n = 0usize;
    while Instant::now() < until {
        let roost = &fleet[n % 3];
        let i = n % users.len();
        let host = workspace_host(users[i]);
        let (a, b) = tokio::join!(
            roost.auth(&host, Some(&tokens[i])),
            auth_with_cookie(roost, &host, &sessions[i].0)
        );
        for r in [a, b] {
            answered += 1;
            if r.status != 200 {
                refused.push((r.status, r.body));
            }
        }
        if n.is_multiple_of(50) {
            let ready = roost.client.get(&roost.url("/readyz"), &[]).await;
            assert_eq!(ready.status, 200, "still in rotation: {}", ready.body);
            saw_degraded |= ready.body.contains("degraded");
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        refused.is_empty(),
        "{} of {answered} refused: {:?}",
        refused.len(),
        &refused[..refused.len().min(3)]
    );
    assert!(answered > 1000, "under load: {answered}");
    assert!(saw_degraded, "/readyz said the store was down");
    let metrics = fleet[1].client.get(&fleet[1].url("/metrics"), &[]).await.body;
    assert!(metrics.contains("roost_store_up 0"), "{metrics}");

    // Signing out meanwhile works here at once, and everywhere once Redis is back.
    let (ann, ann_csrf) = &sessions[0];
    let headers = [
        ("cookie", ann.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    let r = page(
        &fleet[2],
        "POST",
        "/_roost/logout",
        &headers,
        &format!("csrf={ann_csrf}"),
    )
    .await;
    assert_eq!(r.status, 303);
    assert_eq!(
        auth_with_cookie(&fleet[2], &workspace_host("ann"), ann).await.status,
        401
    );
    assert_eq!(
        auth_with_cookie(&fleet[0], &workspace_host("ann"), ann).await.status,
        200
    );

    redis.restart().await;
    for roost in &fleet {
        let url = roost.url("/metrics");
        support::eventually(Duration::from_secs(15), "the store to be up again", || async {
            roost
                .client
                .get(&url, &[])
                .await
                .body
                .contains("roost_store_up 1")
                .then_some(())
        })
        .await;
    }
    refused_everywhere(&[&fleet[0], &fleet[1]], &workspace_host("ann"), ann).await;
    for roost in fleet {
        roost.stop().await;
    }
}

/// `roost serve` with `ROOST_REDIS_URL`: its exit code and stderr.
async fn serve_with_redis(issuer: &str, url: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("roost.toml");
    std::fs::write(&path, config_text(issuer, "", "")).unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_roost"))
            .args(["serve", "--config"])
            .arg(&path)
            .env("ROOST_REDIS_URL", url)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("roost gives up on a Redis it cannot use")
    .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn a_wrong_password_or_an_unreachable_redis_stops_roost_at_start_and_says_where() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let issuer = TestIssuer::start(&["k1"]).await;
    let wrong = redis.url().replace(PASSWORD, "not-the-password-hunter2");
    let (code, stderr) = serve_with_redis(&issuer.url, &wrong).await;
    assert_ne!(code, Some(0), "{stderr}");
    assert!(stderr.contains("ROOST_REDIS_URL"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "the password never shows: {stderr}");
    assert!(!stderr.contains("roost listening"), "{stderr}");

    let unreachable = format!("redis://roost:hunter2@127.0.0.1:{}/0", support::traefik::free_port());
    let (code, stderr) = serve_with_redis(&issuer.url, &unreachable).await;
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("ROOST_REDIS_URL=redis://roost:***@127.0.0.1"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[tokio::test]
async fn rediss_is_verified_against_the_roots_roost_trusts() {
    let Some(redis) = Redis::start_tls().await else {
        return;
    };
    let issuer = TestIssuer::start(&["k1"]).await;
    // A certificate from a CA roost does not trust: it does not start.
    let (code, stderr) = serve_with_redis(&issuer.url, &redis.url()).await;
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("ROOST_REDIS_URL=rediss://roost:***@localhost"),
        "{stderr}"
    );
    // Told the CA (SSL_CERT_FILE, read by rustls-native-certs): it serves on Redis over TLS.
    let ports = support::replica::Ports::pick(1);
    let config = format!(
        "[oidc]\nissuer = \"{}\"\naudience = \"{AUDIENCE}\"\n[routing]\ndomain = \"{DOMAIN}\"\n\
         roost_url = \"http://127.0.0.1:1\"\nscheme = \"http\"\n[workspace]\nimage = \"roost-echo:test\"\n",
        issuer.url
    );
    let env = [
        ("ROOST_REDIS_URL", redis.url()),
        ("SSL_CERT_FILE", redis.ca_file().display().to_string()),
    ];
    let replica = support::replica::Replica::start("tls", 0, &ports, &config, &env).await;
    let metrics = TestClient::default().get(&replica.url("/metrics"), &[]).await.body;
    assert!(metrics.contains("roost_store_up 1"), "{metrics}");
    replica.kill().await;
}

#[tokio::test]
async fn a_sign_in_state_is_used_once_across_replicas_and_waits_for_redis() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let issuer = TestIssuer::start(&["k1"]).await;
    let fleet = replicas(&issuer.url, &redis).await;
    let login = format!(
        "http://{DOMAIN}/_roost/login?rd={}",
        support::http::urlencode("http://alice.ws.roost.test/")
    );
    // Sign in through replica 0; the same callback replayed on replica 1 is refused.
    let mut jar = Jar::new(fleet[0].addr);
    let to_provider = jar.get(&login).await;
    let back = jar.get(to_provider.header("location").unwrap()).await;
    let callback = back.header("location").unwrap().to_string();
    let mut replayer = Jar::new(fleet[1].addr);
    replayer.cookies = jar.cookies.clone();
    assert_eq!(jar.get(&callback).await.status, 302);
    let replay = replayer.get(&callback).await;
    assert_eq!(replay.status, 400, "{}", replay.body);
    assert!(!replayer.cookies.contains_key("roost_session"));

    // Redis gone: a sign-in cannot be checked for single use, so it waits.
    let mut jar = Jar::new(fleet[2].addr);
    let to_provider = jar.get(&login).await;
    let back = jar.get(to_provider.header("location").unwrap()).await;
    let callback = back.header("location").unwrap().to_string();
    redis.kill();
    let refused = jar.get(&callback).await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.header("retry-after"), Some("5"));
    assert!(
        refused.body.contains("Sign-in is temporarily unavailable"),
        "{}",
        refused.body
    );
    for roost in fleet {
        roost.stop().await;
    }
}

#[tokio::test]
async fn profile_choices_the_audit_trail_and_quota_use_are_shared_through_redis() {
    use roost::store::{Shared, Store, Usage};
    let Some(redis) = Redis::start().await else { return };
    let one = Shared::connect(&redis.url(), "shared-test").await.expect("replica one");
    let two = Shared::connect(&redis.url(), "shared-test").await.expect("replica two");
    one.set_profile("alice-1", Some("lean")).await.unwrap();
    assert_eq!(two.profile("alice-1").await.unwrap().as_deref(), Some("lean"));
    two.set_profile("alice-1", None).await.unwrap();
    assert_eq!(one.profile("alice-1").await.unwrap(), None);
    for n in 1..=3 {
        one.append_audit(&format!("{{\"n\":{n}}}")).await.unwrap();
    }
    assert_eq!(two.recent_audit(2).await.unwrap(), ["{\"n\":3}", "{\"n\":2}"]);
    let used = Usage {
        run_secs: 30.0,
        cpu_secs: 0.5,
    };
    one.add_usage("alice-1", 1000, used).await.unwrap();
    let total = two.add_usage("alice-1", 1000, used).await.unwrap();
    assert_eq!(total, used.plus(used));
    let slugs: Vec<std::sync::Arc<str>> = vec!["alice-1".into(), "bob-2".into()];
    assert_eq!(
        one.usage(&slugs, 1000).await.unwrap(),
        [used.plus(used), Usage::default()]
    );
    // Another period starts from nothing.
    assert_eq!(
        one.usage(&slugs, 2000).await.unwrap(),
        [Usage::default(), Usage::default()]
    );
}
