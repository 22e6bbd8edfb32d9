//! Against a real third-party OIDC provider (PyPI `oidc-provider-mock`):
//! discovery, its JWKS and its RS256 ID tokens.

mod support;

use serde_json::json;
use support::oidc_mock::OidcMock;
use support::roost::{config_text, workspace_host, TestRoost};

#[tokio::test]
async fn id_tokens_from_a_real_provider_pass_for_their_owner_only() {
    let Some(provider) = OidcMock::start().await else {
        return;
    };
    provider.set_user("alice", &json!({"email": "alice@example.org"})).await;
    let cfg = config_text(&provider.issuer, "", "").replace("https://roost.test/api", "roost-test");
    let roost = TestRoost::start_ready(&cfg).await;
    let alice = provider.id_token("roost-test", "alice").await;
    let bob = provider.id_token("roost-test", "bob").await;

    let r = roost.auth(&workspace_host("alice"), Some(&alice)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-roost-user"), Some("alice"));
    assert_eq!(r.header("x-roost-email"), Some("alice@example.org"));
    assert_eq!(roost.auth(&workspace_host("alice"), Some(&bob)).await.status, 403);
    assert_eq!(roost.auth(&workspace_host("bob"), Some(&bob)).await.status, 200);

    // A token for another client (audience) of the same provider is refused.
    let other = provider.id_token("some-other-app", "alice").await;
    assert_eq!(roost.auth(&workspace_host("alice"), Some(&other)).await.status, 401);
    roost.stop().await;
}
