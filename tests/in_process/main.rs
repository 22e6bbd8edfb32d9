//! The whole router driven in-process, without a socket or an issuer on
//! the network: `Request<Full<Bytes>>` in, `Response` out, through
//! `roost::server::handle` exactly as a connection would. Keys and the
//! provider's endpoints come from a static fetcher. Covers routing by
//! listener and host, the sign-in redirects, the page forms' and the API's
//! CSRF checks, and the API's method table; what a person meets
//! ([`pages`]: the starting page, the status page, refusal pages).

#[path = "../support/mod.rs"]
mod support;

mod control;
mod pages;

use std::sync::Arc;

use http::StatusCode;
use roost::app::App;
use roost::server::Listener;
use support::in_process::*;
use support::roost::DOMAIN;

#[tokio::test]
async fn the_public_listener_routes_by_host() {
    let app = app(true).await;
    let public = |r| send(&app, Listener::Public, r);
    // A workspace host: the fallback proxy, which authenticates like /auth.
    let r = public(req("GET", ALICE, "/lab", &[])).await;
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_some());
    let alice = bearer("alice");
    let r = public(req("GET", ALICE, "/lab", &[("authorization", &alice)])).await;
    // Allowed and started (in memory), and only then told that nothing
    // answers at its address (the in-memory runtime runs no workload).
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "your workspace is not answering yet")
    );
    let r = public(req("GET", ALICE, "/lab", &[("authorization", &bearer("bob"))])).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::FORBIDDEN, "not your workspace")
    );
    // The host routed is the host authorized: the request's own `Host`.
    let r = public(req(
        "GET",
        "bob.ws.roost.test",
        "/",
        &[("authorization", &alice), ("x-forwarded-host", ALICE)],
    ))
    .await;
    assert_eq!(r.status, 403);
    let r = public(req(
        "GET",
        "ALICE.WS.roost.test.:8080",
        "/",
        &[("authorization", &alice)],
    ))
    .await;
    assert_eq!(r.status, 503, "any spelling of the host");
    // The starting page's long poll is authenticated too.
    assert_eq!(public(req("GET", ALICE, "/_roost/wait", &[])).await.status, 401);
    assert_eq!(
        public(req("GET", ALICE, "/_roost/wait", &[("authorization", &alice)]))
            .await
            .status,
        200
    );
    // roost's pages live on the bare domain.
    let r = public(req("GET", ALICE, "/_roost/login?rd=%2F", &[])).await;
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some(&*format!("{ORIGIN}/_roost/login?rd=%2F")));
    let r = public(req("POST", ALICE, "/_roost/logout", &[])).await;
    assert_eq!(
        (r.status, r.header("location")),
        (StatusCode::SEE_OTHER, Some(&*format!("{ORIGIN}/_roost/logout")))
    );
    assert_eq!(public(req("GET", ALICE, "/_roost/elsewhere", &[])).await.status, 404);

    // The bare domain: roost's pages.
    let r = public(req("GET", DOMAIN, "/", &[])).await;
    assert_eq!(r.status, 302);
    assert_eq!(r.sign_in_rd(), format!("{ORIGIN}/"));
    let r = public(req("GET", DOMAIN, "/", &[("authorization", &alice)])).await;
    assert_eq!(r.header("location"), Some("http://alice.ws.roost.test/"));
    let r = public(req("GET", DOMAIN, "/_roost/signed-out", &[])).await;
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-security-policy")
        .is_some_and(|c| c.contains("frame-ancestors 'none'")));

    // Anything else is not found, and so are the internal paths, under any host.
    for host in [
        "evil.example.com",
        "a.b.ws.roost.test",
        "alice.ws.roost.test.evil.com",
        "-x.ws.roost.test",
        "",
    ] {
        let r = public(req("GET", host, "/", &[("authorization", &alice)])).await;
        assert_eq!(r.status, 404, "{host:?}");
    }
    for path in ["/auth", "/traefik", "/metrics", "/healthz", "/readyz"] {
        for host in [DOMAIN, "localhost", ""] {
            let r = public(req("GET", host, path, &[("authorization", &alice)])).await;
            assert_eq!(r.status, 404, "{host:?}{path}");
        }
        // On a workspace host the path is the workspace's own.
        let r = public(req("GET", ALICE, path, &[])).await;
        assert_eq!(r.status, 401, "{path}");
    }
}

#[tokio::test]
async fn the_internal_listener_serves_only_its_own_paths() {
    let app = app(true).await;
    let internal = |r| send(&app, Listener::Internal, r);
    let alice = bearer("alice");
    let r = internal(req(
        "GET",
        "roost:8081",
        "/auth",
        &[("x-forwarded-host", ALICE), ("authorization", &alice)],
    ))
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-roost-user"), Some("alice"));
    assert_eq!(r.header("x-roost-workspace"), Some("alice"));
    let r = internal(req("GET", "roost:8081", "/traefik", &[])).await;
    assert_eq!(
        (r.status, r.header("content-type")),
        (StatusCode::OK, Some("application/json"))
    );
    assert!(r.body.contains("roost-auth"));
    assert_eq!(internal(req("GET", "roost:8081", "/healthz", &[])).await.body, "ok");
    assert_eq!(internal(req("GET", "roost:8081", "/readyz", &[])).await.body, "ready");
    let r = internal(req("GET", "roost:8081", "/metrics", &[])).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("# EOF"));
    // Nothing of the public listener's, whatever the host says.
    for host in [DOMAIN, ALICE, "roost:8081"] {
        for path in [
            "/",
            "/_roost/",
            "/_roost/login",
            "/_roost/api/v1/status",
            "/auth/x",
            "/lab",
        ] {
            let r = internal(req("GET", host, path, &[("authorization", &alice)])).await;
            assert_eq!(r.status, 404, "{host}{path}");
        }
    }
}

#[tokio::test]
async fn browsers_are_sent_to_sign_in_and_api_clients_get_401() {
    let app = app(true).await;
    let auth = |headers: &[(&str, &str)]| {
        let mut h = vec![("x-forwarded-host", ALICE)];
        h.extend_from_slice(headers);
        send(&app, Listener::Internal, req("GET", "roost:8081", "/auth", &h))
    };
    let r = auth(&[
        HTML,
        ("x-forwarded-method", "GET"),
        ("x-forwarded-uri", "/lab/tree?x=1"),
    ])
    .await;
    assert_eq!(r.status, 302);
    assert_eq!(r.sign_in_rd(), "http://alice.ws.roost.test/lab/tree?x=1");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let r = auth(&[HTML, ("x-forwarded-method", "POST"), ("x-forwarded-uri", "/form")]).await;
    assert_eq!(r.status, 303);
    // A way back that is not a path on the workspace host becomes its front page.
    for uri in ["//evil.example.com/x", "https://evil.example.com/", "evil"] {
        let r = auth(&[HTML, ("x-forwarded-uri", uri)]).await;
        assert_eq!(r.sign_in_rd(), "http://alice.ws.roost.test/", "{uri}");
    }
    // Scripts and API clients are told, not redirected.
    for headers in [
        &[][..],
        &[("accept", "application/json")],
        &[HTML, ("x-requested-with", "XMLHttpRequest")],
    ] {
        let r = auth(headers).await;
        assert_eq!(r.status, 401, "{headers:?}");
        assert!(r.header("location").is_none());
    }
    // A stale session: sent to sign in, its cookie cleared.
    let r = auth(&[HTML, ("cookie", "roost_session=stale")]).await;
    assert_eq!(r.status, 302);
    assert!(
        r.header("set-cookie").is_some_and(|c| c.starts_with("roost_session=;")),
        "{:?}",
        r.headers
    );
    // Not a workspace host: no sign-in for it.
    let r = send(
        &app,
        Listener::Internal,
        req(
            "GET",
            "roost:8081",
            "/auth",
            &[HTML, ("x-forwarded-host", "evil.example.com")],
        ),
    )
    .await;
    assert_eq!(r.status, 403);

    // The fallback proxy sends browsers the same way, by the request's own method and path.
    let r = send(&app, Listener::Public, req("GET", ALICE, "/notebooks/a.ipynb", &[HTML])).await;
    assert_eq!(r.status, 302);
    assert_eq!(r.sign_in_rd(), "http://alice.ws.roost.test/notebooks/a.ipynb");
    let r = send(&app, Listener::Public, req("POST", ALICE, "/api/save", &[HTML])).await;
    assert_eq!(r.status, 303);

    // The sign-in page itself: off to the provider, with a state cookie.
    let r = send(
        &app,
        Listener::Public,
        req(
            "GET",
            DOMAIN,
            "/_roost/login?rd=http%3A%2F%2Falice.ws.roost.test%2F",
            &[],
        ),
    )
    .await;
    assert_eq!(r.status, 302);
    assert!(
        r.header("location").is_some_and(|l| l.starts_with(AUTHORIZE)),
        "{:?}",
        r.header("location")
    );
    assert!(r.header("set-cookie").is_some_and(|c| c.starts_with("roost_login_")));
    let r = send(&app, Listener::Public, req("GET", DOMAIN, "/_roost/callback", &[])).await;
    assert_eq!(r.status, 400);

    // Without browser sign-in there is nowhere to send anyone.
    let plain = app_without_sign_in().await;
    let r = send(&plain, Listener::Public, req("GET", DOMAIN, "/_roost/login", &[])).await;
    assert_eq!(r.status, 404);
    let r = send(&plain, Listener::Public, req("GET", DOMAIN, "/", &[HTML])).await;
    assert_eq!(r.status, 401);
}

async fn app_without_sign_in() -> Arc<App> {
    app(false).await
}

#[tokio::test]
async fn page_forms_need_the_sessions_form_token() {
    let app = app(true).await;
    let (cookie, csrf) = session(&app, "alice");
    let post = |path: &str, headers: &[(&str, &str)], body: &str| {
        send(&app, Listener::Public, form(DOMAIN, path, headers, body))
    };
    let with_cookie = [("cookie", cookie.as_str())];
    for path in ["/_roost/start", "/_roost/stop", "/_roost/restart", "/_roost/logout"] {
        for body in [
            String::new(),
            "csrf=".into(),
            "csrf=wrong".into(),
            format!("csrf={csrf}x"),
        ] {
            let r = post(path, &with_cookie, &body).await;
            assert_eq!(r.status, 403, "{path} {body:?}");
            assert!(r.header("set-cookie").is_none(), "{path}: nobody signed out");
        }
    }
    // The right token passes the check: done, and back to the status page.
    let r = post("/_roost/stop", &with_cookie, &format!("csrf={csrf}")).await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::SEE_OTHER, ""));
    // Not a form at all.
    let mut r = form(DOMAIN, "/_roost/stop", &with_cookie, &format!("csrf={csrf}"));
    r.headers_mut().insert("content-type", "text/plain".parse().unwrap());
    assert_eq!(send(&app, Listener::Public, r).await.status, 400);
    // Forms are for browser sessions; nobody else has a token.
    let alice = bearer("alice");
    let r = post("/_roost/stop", &[("authorization", &alice)], "csrf=").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (StatusCode::FORBIDDEN, "forms need a browser session")
    );
    assert_eq!(post("/_roost/stop", &[], "csrf=x").await.status, 401);
    assert_eq!(post("/_roost/logout", &[], "csrf=x").await.status, 403);
    // The sign-out page carries the token in its forms, escaped.
    let r = send(
        &app,
        Listener::Public,
        req("GET", DOMAIN, "/_roost/logout", &with_cookie),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains(&format!("name=\"csrf\" value=\"{csrf}\"")));
    assert!(r.body.contains("Sign out on every device"), "{}", r.body);
    // Signing out with the token: the cookie cleared, on to the return page.
    let r = post("/_roost/logout", &with_cookie, &format!("csrf={csrf}")).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some(&*format!("{ORIGIN}/_roost/signed-out")));
    assert!(r.header("set-cookie").is_some_and(|c| c.starts_with("roost_session=;")));
    // ... and the session itself is gone: a kept copy of the cookie is refused.
    let r = send(&app, Listener::Internal, req("GET", ALICE, "/auth", &with_cookie)).await;
    assert_eq!(r.status, 401, "{}", r.body);
    let r = send(
        &app,
        Listener::Public,
        req("GET", DOMAIN, "/_roost/logout", &with_cookie),
    )
    .await;
    assert!(!r.body.contains("csrf"), "{}", r.body);
}

#[tokio::test]
async fn the_api_answers_its_method_table_and_checks_the_csrf_header() {
    let app = app(true).await;
    let api = |method: &str, what: &str, headers: &[(&str, &str)]| {
        send(
            &app,
            Listener::Public,
            req(method, DOMAIN, &format!("/_roost/api/v1/{what}"), headers),
        )
    };
    let alice = bearer("alice");
    let token = [("authorization", alice.as_str())];
    for (method, what, allow) in [
        ("POST", "status", "GET"),
        ("HEAD", "status", "GET"),
        ("DELETE", "logs", "GET"),
        ("GET", "start", "POST"),
        ("PUT", "stop", "POST"),
        ("GET", "restart", "POST"),
    ] {
        // Refused before anyone is asked who they are.
        for headers in [&token[..], &[]] {
            let r = api(method, what, headers).await;
            assert_eq!(r.status, 405, "{method} {what}");
            assert_eq!(r.header("allow"), Some(allow), "{method} {what}");
        }
    }
    for what in ["", "nope", "status/x", "../status"] {
        assert_eq!(api("GET", what, &token).await.status, 404, "{what:?}");
    }
    assert_eq!(api("GET", "status", &[]).await.status, 401);
    // Allowed: the workspace is then asked for (in memory here).
    assert_eq!(api("GET", "status", &token).await.status, 200);
    assert_eq!(
        api("POST", "start", &token).await.status,
        202,
        "a bearer token needs no CSRF header"
    );
    // A session's POST must carry its form token in X-Roost-CSRF.
    let (cookie, csrf) = session(&app, "alice");
    let c = ("cookie", cookie.as_str());
    assert_eq!(api("GET", "status", &[c]).await.status, 200);
    for sent in [None, Some(""), Some("wrong"), Some(&*format!("{csrf}x"))] {
        let mut headers = vec![c];
        headers.extend(sent.map(|s| ("x-roost-csrf", s)));
        let r = api("POST", "stop", &headers).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (StatusCode::FORBIDDEN, "missing or wrong X-Roost-CSRF token"),
            "{sent:?}"
        );
    }
    // Once started (a stop while starting is 503 + Retry-After), the right token stops it.
    let started = |r: Reply| r.body.contains("\"running\"");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !started(api("GET", "status", &[c]).await) {
        assert!(std::time::Instant::now() < deadline, "alice's workspace never ran");
        tokio::task::yield_now().await;
    }
    assert_eq!(api("POST", "stop", &[c, ("x-roost-csrf", &csrf)]).await.status, 202);
    // The status page: GET or HEAD only.
    let r = send(&app, Listener::Public, req("POST", DOMAIN, "/_roost/", &[c])).await;
    assert_eq!(
        (r.status, r.header("allow")),
        (StatusCode::METHOD_NOT_ALLOWED, Some("GET, HEAD"))
    );
    // Anonymous browsers are sent to sign in, back to the page.
    let r = send(&app, Listener::Public, req("GET", DOMAIN, "/_roost/", &[HTML])).await;
    assert_eq!(r.sign_in_rd(), format!("{ORIGIN}/_roost/"));
}
