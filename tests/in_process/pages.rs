//! What a person meets, in-process: the starting page following a start
//! and a failure, the status page following a start, refusal pages.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use roost::app::App;
use roost::server::Listener;
use roost::workspace::memory::MemoryRuntime;
use roost::workspace::runtime::FailReason;

use super::support::in_process::*;
use super::support::roost::DOMAIN;

// On tokio's paused clock: the long poll's wait and the 30 s start take no time.
#[tokio::test(start_paused = true)]
async fn the_starting_page_follows_each_step_and_a_failure_ends_with_its_reason() {
    let runtime = Arc::new(MemoryRuntime::new(([127, 0, 0, 1], 9).into()).with_start_delay(Duration::from_secs(30)));
    let app = app_on(false, runtime.clone()).await;
    let alice = bearer("alice");
    let auth = ("authorization", alice.as_str());
    // A browser's first request: the starting page, with the way on.
    let page = send(&app, Listener::Public, req("GET", ALICE, "/", &[auth, HTML])).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Starting your workspace"), "{}", page.body);
    assert!(page
        .body
        .contains(&format!("<a href=\"{ORIGIN}/_roost/\">Your status page</a>")));
    // Its long poll reports what the start is doing, in plain words.
    let wait = send(&app, Listener::Public, req("GET", ALICE, "/_roost/wait", &[auth])).await;
    assert_eq!(
        (wait.status, wait.body.as_str()),
        (StatusCode::ACCEPTED, "starting your container")
    );

    // bob's start fails: the poll ends with why, and a Retry-After that tells the truth.
    runtime.fail_with(Some(FailReason::ImageMissing));
    let bob = bearer("bob");
    let bob_host = "bob.ws.roost.test";
    for _ in 0..5 {
        let wait = send(
            &app,
            Listener::Public,
            req("GET", bob_host, "/_roost/wait", &[("authorization", &bob)]),
        )
        .await;
        assert_eq!(wait.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            wait.body,
            "the workspace image is missing on the server; please tell your operator"
        );
        assert_eq!(wait.header("retry-after"), Some("300"));
    }
    assert_eq!(
        runtime.ensures(),
        2,
        "one attempt each for alice and bob, however often bob's page asks"
    );
}

#[tokio::test(start_paused = true)]
async fn the_status_page_follows_a_start_in_plain_words() {
    let runtime = Arc::new(MemoryRuntime::new(([127, 0, 0, 1], 9).into()).with_start_delay(Duration::from_secs(30)));
    let app = app_on(true, runtime).await;
    let (cookie, csrf) = session(&app, "alice");
    let c = ("cookie", cookie.as_str());
    let page = |app: Arc<App>, cookie: String| async move {
        send(
            &app,
            Listener::Public,
            req("GET", DOMAIN, "/_roost/", &[("cookie", &cookie)]),
        )
        .await
    };
    const REFRESH: &str = "<meta http-equiv=\"refresh\" content=\"2\">";
    let stopped = page(app.clone(), cookie.clone()).await;
    assert!(
        stopped.body.contains("Stopped: it starts when you open it"),
        "{}",
        stopped.body
    );
    assert!(!stopped.body.contains(REFRESH));
    let r = send(
        &app,
        Listener::Public,
        form(DOMAIN, "/_roost/start", &[c], &format!("csrf={csrf}")),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let starting = page(app.clone(), cookie.clone()).await;
    assert!(
        starting.body.contains("data-state=\"starting\">Starting: "),
        "{}",
        starting.body
    );
    assert!(starting.body.contains(REFRESH), "refreshes itself while starting");
    tokio::time::sleep(Duration::from_secs(31)).await;
    let running = page(app.clone(), cookie.clone()).await;
    assert!(
        running.body.contains("data-state=\"running\">Running<"),
        "{}",
        running.body
    );
    assert!(running.body.contains("just started") || running.body.contains("Running for"));
    assert!(!running.body.contains(REFRESH));
}

#[tokio::test]
async fn a_person_meets_a_page_with_ways_on_and_a_client_gets_text() {
    let app = app(true).await;
    let bob = bearer("bob");
    let alice = bearer("alice");
    // alice's workspace exists; bob asks for it through Traefik's forwardAuth.
    let forwarded = |who: &str, accept: &str| {
        req(
            "GET",
            "roost:8081",
            "/auth",
            &[
                ("x-forwarded-host", ALICE),
                ("x-forwarded-method", "GET"),
                ("authorization", who),
                ("accept", accept),
            ],
        )
    };
    let ok = send(&app, Listener::Internal, forwarded(&alice, "*/*")).await;
    assert_eq!(ok.status, 200);
    let page = send(&app, Listener::Internal, forwarded(&bob, HTML.1)).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    let csp = page.header("content-security-policy").expect("a CSP");
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    for way in [
        format!("<a href=\"{ORIGIN}/\">Your workspace</a>"),
        format!("<a href=\"{ORIGIN}/_roost/\">Your status page</a>"),
        format!("<a href=\"{ORIGIN}/_roost/logout\">Sign out or switch user</a>"),
    ] {
        assert!(page.body.contains(&way), "{way} missing: {}", page.body);
    }
    assert!(
        page.body
            .contains("<h1>Not your workspace</h1><p>This workspace belongs to another account"),
        "{}",
        page.body
    );
    let text = send(&app, Listener::Internal, forwarded(&bob, "application/json")).await;
    assert_eq!(
        (text.status, text.body.as_str()),
        (StatusCode::FORBIDDEN, "not your workspace")
    );
    assert_eq!(text.header("content-type"), Some("text/plain; charset=utf-8"));
    // Unknown pages too.
    let r = send(&app, Listener::Public, req("GET", DOMAIN, "/_roost/nope", &[HTML])).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body.contains("<h1>Not found</h1>"), "{}", r.body);
    let r = send(&app, Listener::Public, req("GET", DOMAIN, "/_roost/nope", &[])).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::NOT_FOUND, "not found"));
    // A sign-in link that is no good: a page that says what to do.
    let r = send(
        &app,
        Listener::Public,
        req("GET", DOMAIN, "/_roost/callback?state=stale&code=x", &[HTML]),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.body.contains("<h1>That did not work</h1>") && r.body.contains("sign in again"),
        "{}",
        r.body
    );
    // Too many sign-ins from one address: a page with Retry-After, text for clients.
    let mut refused = None;
    for _ in 0..100 {
        let r = send(&app, Listener::Public, req("GET", DOMAIN, "/_roost/login", &[HTML])).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(r);
            break;
        }
    }
    let r = refused.expect("a 429 within 100 sign-ins from one address");
    assert!(r.header("retry-after").is_some());
    assert!(r.body.contains("<h1>Too many requests</h1>"), "{}", r.body);
    assert!(r.body.contains("Your status page"), "{}", r.body);
    let r = send(&app, Listener::Public, req("GET", DOMAIN, "/_roost/login", &[])).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "too many requests")
    );
}
