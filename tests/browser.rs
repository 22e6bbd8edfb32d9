//! A person's first minutes, in a real headless browser (Debian's chromium
//! over WebDriver) through the real Traefik, with the real
//! oidc-provider-mock and the real Docker Engine: open your workspace URL,
//! sign in at the provider, see the starting page, land in your workspace;
//! reload without signing in again; another user is refused; the status
//! page and a stop; a workspace that cannot start; sign-out with the page's
//! button; the admin console. Screenshots of the starting page (in
//! progress and failed), the 403 page, the status page (running, with its
//! environment chooser; stopping; stopped) and the admin console are kept
//! under `target/test-artifacts/`.

mod support;

use fantoccini::Locator;
use support::browser::Browser;
use support::docker::{self, Cleanup};
use support::oidc_mock::OidcMock;
use support::roost::{sign_in_secrets, workspace_config, TestRoost, COOKIE_KEY, DOMAIN};
use support::traefik::{free_port, Traefik};

/// Signs in at oidc-provider-mock's form as `sub`, once the form shows.
async fn sign_in_at_provider(browser: &Browser, issuer: &str, sub: &str) {
    browser
        .page_until(60, "the provider's sign-in form", |url, src| {
            url.starts_with(issuer) && src.contains("name=\"sub\"")
        })
        .await;
    let c = &browser.client;
    c.find(Locator::Css("input[name=sub]"))
        .await
        .unwrap()
        .send_keys(sub)
        .await
        .unwrap();
    c.find(Locator::XPath("//button[normalize-space()='Authorize']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

fn assert_png(path: &std::path::Path) {
    let bytes = std::fs::read(path).unwrap();
    assert!(bytes.starts_with(b"\x89PNG"), "{} is a PNG", path.display());
    assert!(
        bytes.len() > 2000,
        "{} has content ({} bytes)",
        path.display(),
        bytes.len()
    );
}

#[tokio::test]
async fn a_person_signs_in_with_a_browser_and_lands_in_their_workspace() {
    let cleanup = Cleanup::new("browser");
    let Some(runtime) = docker::engine(&cleanup).await else {
        return;
    };
    let Some(provider) = OidcMock::start().await else {
        return;
    };
    let Some(alice_browser) = Browser::start().await else {
        return;
    };
    let port = free_port();
    let domain = "ws.localhost";
    let config = workspace_config(
        &provider.issuer,
        &format!(
            "{}\nenv = {{ ECHO_START_DELAY_MS = \"2500\" }}\ndrain_grace = \"6s\"\n\
             [[profiles]]\nname = \"lean\"\ndescription = \"The echo without a health check\"\n\
             image = \"roost-echo:nohealth\"",
            cleanup.labels_toml()
        ),
    )
    .replace(
        &format!("domain = \"{DOMAIN}\""),
        &format!("domain = \"{domain}\"\npublic_port = {port}"),
    )
    .replace("[oidc]\n", "[oidc]\nclient_id = \"roost-browser-test\"\n");
    let roost = TestRoost::start_full("127.0.0.1:0", &config, sign_in_secrets(COOKIE_KEY, None), Some(runtime)).await;
    roost.wait_ready().await;
    let Some(_traefik) = Traefik::start_on(&roost.provider_base(), port).await else {
        return;
    };

    let alice = format!("alice-{}", cleanup.id);
    let bob = format!("bob-{}", cleanup.id);
    let alice_url = format!("http://{alice}.{domain}:{port}/");
    let issuer = provider.issuer.clone();
    // Alice is an admin (the console below).
    provider
        .set_user(&alice, &serde_json::json!({ "permissions": ["roost:admin"] }))
        .await;

    // Alice opens her workspace: off to sign in, then the starting page.
    alice_browser.client.goto(&alice_url).await.unwrap();
    sign_in_at_provider(&alice_browser, &issuer, &alice).await;
    alice_browser
        .page_until(60, "the starting page", |url, src| {
            url == alice_url && src.contains("Starting your workspace")
        })
        .await;
    let starting = alice_browser.screenshot("starting-page").await;
    assert_png(&starting);

    // It turns into her workspace by itself (the echo server's answer).
    let page = alice_browser
        .page_until(90, "alice's workspace", |url, src| {
            url == alice_url && src.contains("x-roost-user") && !src.contains("Starting your workspace")
        })
        .await;
    assert!(page.contains(&alice), "{page}");
    assert!(
        !page.contains("roost_session"),
        "roost's cookie never reaches the workspace: {page}"
    );

    // A reload stays signed in: no trip to the provider.
    alice_browser.client.refresh().await.unwrap();
    alice_browser
        .page_until(30, "alice's workspace after a reload", |url, src| {
            url == alice_url && src.contains("x-roost-user")
        })
        .await;

    // Bob, in his own browser, signs in and tries alice's workspace.
    let Some(bob_browser) = Browser::start().await else {
        return;
    };
    bob_browser.client.goto(&alice_url).await.unwrap();
    sign_in_at_provider(&bob_browser, &issuer, &bob).await;
    bob_browser
        .page_until(60, "403 for bob on alice's host", |url, src| {
            url == alice_url && src.contains("Not your workspace") && src.contains("Sign out or switch user")
        })
        .await;
    let forbidden = bob_browser.screenshot("forbidden-page").await;
    assert_png(&forbidden);

    // Bob's own workspace cannot start: its name is taken by a container
    // that is not roost's. The starting page ends with why and a way on.
    let taken = format!("roost-{bob}");
    let made = std::process::Command::new("docker")
        .args(["create", "--name", &taken, "--label", "roost.managed=true"])
        .args(["--label", "roost.deployment=someone-else"])
        .args(["--label", &format!("roost-test.run={}", cleanup.id), "roost-echo:test"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let bob_url = format!("http://{bob}.{domain}:{port}/");
    bob_browser.client.goto(&bob_url).await.unwrap();
    bob_browser
        .page_until(60, "bob's starting page, failed", |url, src| {
            url == bob_url && src.contains("could not start") && src.contains("operator")
        })
        .await;
    let failed = bob_browser.screenshot("starting-page-failed").await;
    assert_png(&failed);
    bob_browser.close().await;

    // Alice's status page.
    let status_url = format!("http://{domain}:{port}/_roost/");
    alice_browser.client.goto(&status_url).await.unwrap();
    alice_browser
        .page_until(30, "the status page", |url, src| {
            url == status_url && src.contains("Your workspace") && src.contains("data-state=\"running\"")
        })
        .await;
    let page = alice_browser.client.source().await.unwrap();
    assert!(
        page.contains("Environment") && page.contains("value=\"lean\""),
        "{page}"
    );
    let status = alice_browser.screenshot("status-page").await;
    assert_png(&status);

    // The admin console: her running workspace among every one, sortable.
    let console_url = format!("http://{domain}:{port}/_roost/admin?sort=state&dir=desc");
    alice_browser.client.goto(&console_url).await.unwrap();
    let console = alice_browser
        .page_until(30, "the admin console", |url, src| {
            url == console_url
                && src.contains("id=\"workspaces\"")
                && src.contains(&format!("data-workspace=\"{alice}\""))
        })
        .await;
    assert!(
        console.contains("Recent audit events") && console.contains("Purge"),
        "{console}"
    );
    let shot = alice_browser.screenshot("admin-console").await;
    assert_png(&shot);
    alice_browser.client.goto(&status_url).await.unwrap();

    // Stop: the page follows the drain by itself ("Stopping…"), then stopped.
    alice_browser
        .client
        .find(Locator::XPath("//button[normalize-space()='Stop']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    alice_browser
        .page_until(30, "the status page, stopping", |url, src| {
            url == status_url && src.contains("Stopping…")
        })
        .await;
    let stopping = alice_browser.screenshot("status-page-stopping").await;
    assert_png(&stopping);
    alice_browser
        .page_until(30, "the status page, stopped", |url, src| {
            url == status_url && src.contains("data-state=\"stopped\"")
        })
        .await;
    let stopped = alice_browser.screenshot("status-page-stopped").await;
    assert_png(&stopped);

    // Sign-out: the page only shows a button (a POST with the form token);
    // clicking it ends the session, then the workspace URL asks for sign-in again.
    let logout_url = format!("http://{domain}:{port}/_roost/logout");
    alice_browser.client.goto(&logout_url).await.unwrap();
    alice_browser
        .page_until(30, "the sign-out page", |url, src| {
            url == logout_url && src.contains("Sign out")
        })
        .await;
    alice_browser
        .client
        .find(Locator::XPath("//button[normalize-space()='Sign out']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    alice_browser
        .page_until(30, "the provider's sign-out page", |url, _| url.starts_with(&issuer))
        .await;
    alice_browser.client.goto(&alice_url).await.unwrap();
    alice_browser
        .page_until(30, "sign-in again after sign-out", |url, src| {
            url.starts_with(&issuer) && src.contains("name=\"sub\"")
        })
        .await;
    alice_browser.close().await;
}
