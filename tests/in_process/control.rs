//! Control, in-process: the environment chooser on the status page and
//! its confirmation; the admin console for admins only, its filter and
//! sort, and its actions behind a confirmation and the form token.

use std::sync::Arc;

use http::StatusCode;
use roost::server::Listener;
use roost::workspace::memory::MemoryRuntime;

use super::support::in_process::*;
use super::support::roost::{session_as, DOMAIN};

const PROFILES: &str = r#"
[[profiles]]
name = "lean"
description = "Smaller"
image = "roost-echo:nohealth"
[[profiles]]
name = "gpu"
description = "With a GPU"
image = "roost-echo:test"
permission = "roost:gpu"
"#;

async fn running(app: &roost::app::App, cookie: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = send(
            app,
            Listener::Public,
            req("GET", DOMAIN, "/_roost/api/v1/workspace", &[("cookie", cookie)]),
        )
        .await;
        if r.body.contains("\"running\"") {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "never ran: {}", r.body);
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn the_status_page_offers_the_profiles_and_a_switch_asks_first() {
    let runtime = Arc::new(MemoryRuntime::new(([127, 0, 0, 1], 9).into()));
    let app = app_with(true, runtime.clone(), PROFILES).await;
    let (cookie, csrf) = session_as(&app, "alice", false);
    let c = ("cookie", cookie.as_str());
    let page = send(&app, Listener::Public, req("GET", DOMAIN, "/_roost/", &[c])).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<h2>Environment</h2>"), "{}", page.body);
    assert!(page.body.contains("<option value=\"lean\">"), "{}", page.body);
    // Without its permission a profile shows, but cannot be chosen.
    assert!(page.body.contains("<option value=\"gpu\" disabled>"), "{}", page.body);
    let post = |body: String| send(&app, Listener::Public, form(DOMAIN, "/_roost/profile", &[c], &body));
    assert_eq!(
        post(format!("csrf={csrf}&profile=gpu")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(format!("csrf={csrf}&profile=nope")).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post("csrf=wrong&profile=lean".into()).await.status,
        StatusCode::FORBIDDEN
    );
    // Stopped: chosen at once, for the next start.
    let r = post(format!("csrf={csrf}&profile=lean")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = send(&app, Listener::Public, req("GET", DOMAIN, "/_roost/", &[c])).await;
    assert!(
        page.body.contains("<strong id=\"profile\">lean</strong>"),
        "{}",
        page.body
    );
    // Running: the box must be ticked.
    let started = send(
        &app,
        Listener::Public,
        req(
            "POST",
            DOMAIN,
            "/_roost/api/v1/workspace",
            &[c, ("x-roost-csrf", &csrf)],
        ),
    )
    .await;
    assert_eq!(started.status, 202, "{}", started.body);
    running(&app, &cookie).await;
    let page = send(&app, Listener::Public, req("GET", DOMAIN, "/_roost/", &[c])).await;
    assert!(
        page.body.contains("name=\"confirm\" value=\"1\" required"),
        "{}",
        page.body
    );
    let r = post(format!("csrf={csrf}&profile=default")).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    let r = post(format!("csrf={csrf}&profile=default&confirm=1")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    running(&app, &cookie).await;
    assert!(runtime.stops() >= 1, "the switch stopped the old container");
}

#[tokio::test]
async fn the_console_is_for_admins_and_its_actions_need_a_confirmation() {
    let app = app_with(true, Arc::new(MemoryRuntime::new(([127, 0, 0, 1], 9).into())), "").await;
    let (alice, alice_csrf) = session_as(&app, "alice", false);
    let (root, csrf) = session_as(&app, "root", true);
    // Alice's workspace runs.
    let started = send(
        &app,
        Listener::Public,
        req(
            "POST",
            DOMAIN,
            "/_roost/api/v1/workspace",
            &[("cookie", &alice), ("x-roost-csrf", &alice_csrf)],
        ),
    )
    .await;
    assert_eq!(started.status, 202);
    running(&app, &alice).await;
    let console = |who: &str, query: &str| {
        let path = format!("/_roost/admin{query}");
        let cookie = who.to_string();
        let app = app.clone();
        async move {
            send(
                &app,
                Listener::Public,
                req("GET", DOMAIN, &path, &[("cookie", &cookie), HTML]),
            )
            .await
        }
    };
    let refused = console(&alice, "").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body.contains("<h1>Not allowed</h1>"), "{}", refused.body);
    let page = console(&root, "?sort=owner&dir=desc").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("data-workspace=\"alice\""), "{}", page.body);
    assert!(page.body.contains("Owner ▼"), "{}", page.body);
    // Only the one style the CSP allows by its hash.
    assert!(page
        .body
        .contains(&format!("<style>{}</style>", roost::response::STYLE)));
    assert_eq!(page.body.matches("<style>").count(), 1);
    assert!(page.body.contains("Recent audit events"));
    assert!(
        page.body.contains("<td>start</td>"),
        "the user's start is in the trail: {}",
        page.body
    );
    assert!(!console(&root, "?q=nobody-like-this")
        .await
        .body
        .contains("data-workspace=\"alice\""));
    let act = |cookie: &str, body: String| {
        send(
            &app,
            Listener::Public,
            form(DOMAIN, "/_roost/admin/action", &[("cookie", cookie)], &body),
        )
    };
    // Not an admin; no form token; not confirmed; the wrong name typed.
    assert_eq!(
        act(
            &alice,
            format!("csrf={alice_csrf}&workspace=alice&action=stop&confirm=1")
        )
        .await
        .status,
        403
    );
    assert_eq!(
        act(&root, "workspace=alice&action=stop&confirm=1".into()).await.status,
        403
    );
    assert_eq!(
        act(&root, format!("csrf={csrf}&workspace=alice&action=stop"))
            .await
            .status,
        400
    );
    assert_eq!(
        act(&root, format!("csrf={csrf}&workspace=alice&action=purge&confirm=bob"))
            .await
            .status,
        400
    );
    assert!(console(&root, "")
        .await
        .body
        .contains("<td class=\"state\">running</td>"));
    let r = act(&root, format!("csrf={csrf}&workspace=alice&action=stop&confirm=1")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let page = console(&root, "").await;
    assert!(
        page.body
            .contains("<td>admin</td><td>root</td><td>stop</td><td>alice</td>"),
        "{}",
        page.body
    );
}
