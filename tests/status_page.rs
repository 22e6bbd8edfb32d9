//! The user's status page and JSON API against the real Docker Engine:
//! state, uptime, idle deadline, resources and logs; start, stop and
//! restart by bearer token (API) and by browser session (forms with the
//! session's anti-CSRF token, API with `X-Roost-CSRF`); security headers.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::http::Reply;
use support::jar::Jar;
use support::roost::{TestRoost, DOMAIN};
use support::workspace::World;

const EXTRA: &str = "drain_grace = \"100ms\"\nidle_timeout = \"10m\"";

async fn api(roost: &TestRoost, method: &str, what: &str, token: &str) -> Reply {
    let req = http::Request::builder()
        .method(method)
        .uri(roost.public_url(&format!("/_roost/api/v1/{what}")))
        .header("host", DOMAIN)
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Full::default())
        .unwrap();
    roost.client.send(req).await.unwrap()
}

async fn state_becomes(roost: &TestRoost, token: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = api(roost, "GET", "status", token).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let v: Value = serde_json::from_str(&r.body).unwrap();
        if v["state"] == want {
            return v;
        }
        assert!(Instant::now() < deadline, "never {want}: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_api_shows_and_drives_the_callers_own_workspace() {
    let Some(w) = World::new("statusapi").await else { return };
    let roost = w.roost(EXTRA).await;
    let alice = w.user("alice");
    let token = w.token(&alice);

    let v = state_becomes(&roost, &token, "stopped").await;
    assert_eq!(v["workspace"], alice.as_str());
    assert_eq!(v["url"], format!("http://{alice}.{DOMAIN}/"));

    let started = api(&roost, "POST", "start", &token).await;
    assert_eq!(started.status, 202, "{}", started.body);
    let v = state_becomes(&roost, &token, "running").await;
    assert!(v["running_for_secs"].is_u64(), "{v}");
    assert!(v["idle_stop_in_secs"].as_u64().unwrap() <= 600, "{v}");
    assert!(v["memory_bytes"].as_u64().unwrap() > 0, "{v}");
    assert!(v["cpu_seconds"].is_number(), "{v}");

    let logs = api(&roost, "GET", "logs", &token).await;
    let logs: Value = serde_json::from_str(&logs.body).unwrap();
    assert!(
        logs["lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("echo listening")),
        "{logs}"
    );

    assert_eq!(api(&roost, "POST", "stop", &token).await.status, 202);
    state_becomes(&roost, &token, "stopped").await;
    assert_eq!(
        support::docker::inspect(&format!("roost-{alice}"), "{{.State.Running}}"),
        "false"
    );
    assert_eq!(api(&roost, "POST", "restart", &token).await.status, 202);
    state_becomes(&roost, &token, "running").await;

    // Wrong methods, unknown paths, and no credentials.
    assert_eq!(api(&roost, "GET", "start", &token).await.status, 405);
    assert_eq!(api(&roost, "GET", "nothing", &token).await.status, 404);
    let anonymous = roost
        .client
        .get(&roost.public_url("/_roost/api/v1/status"), &[("host", DOMAIN)])
        .await;
    assert_eq!(anonymous.status, 401);
}

#[tokio::test]
async fn the_status_page_shows_the_workspace_and_its_buttons_need_the_form_token() {
    let Some(w) = World::new("statuspage").await else {
        return;
    };
    let roost = w.roost_with_sign_in(EXTRA).await;
    let alice = w.user("alice");
    w.issuer.sign_in_as(&alice);
    let mut jar = Jar::new(roost.addr);

    // Not signed in: off to sign in, then back to the page.
    let (page, url) = jar.follow(&format!("http://{DOMAIN}/_roost/")).await;
    assert_eq!(url, format!("http://{DOMAIN}/_roost/"));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("Your workspace") && page.body.contains(&alice),
        "{}",
        page.body
    );
    assert!(page.body.contains("data-state=\"stopped\">Stopped"), "{}", page.body);
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'") && !csp.contains("unsafe"), "{csp}");
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));

    let token = page
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a form token in the page")
        .to_string();
    let start = format!("http://{DOMAIN}/_roost/start");
    let forged = jar.post_form(&start, "csrf=forged", &[]).await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    let missing = jar.post_form(&start, "", &[]).await;
    assert_eq!(missing.status, 403);
    let ok = jar.post_form(&start, &format!("csrf={token}"), &[]).await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert_eq!(ok.header("location"), Some(format!("http://{DOMAIN}/_roost/").as_str()));

    let deadline = Instant::now() + Duration::from_secs(120);
    let running = loop {
        let page = jar.get(&format!("http://{DOMAIN}/_roost/")).await;
        if page.body.contains("data-state=\"running\">Running<") {
            break page;
        }
        assert!(Instant::now() < deadline, "never running: {}", page.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for text in ["Running for", "Stops when idle in", "Memory in use", "echo listening"] {
        assert!(running.body.contains(text), "{text} missing: {}", running.body);
    }

    // The API with the session cookie: POSTs need the form token as a header.
    let stop = format!("http://{DOMAIN}/_roost/api/v1/stop");
    let no_header = jar.request("POST", &stop, &[], None).await;
    assert_eq!(no_header.status, 403, "{}", no_header.body);
    let with_header = jar.request("POST", &stop, &[("x-roost-csrf", &token)], None).await;
    assert_eq!(with_header.status, 202, "{}", with_header.body);
}
