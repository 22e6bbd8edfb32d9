//! The real third-party OIDC provider, PyPI's `oidc-provider-mock`, started
//! from the project's virtualenv on an ephemeral loopback port.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::http::{urlencode, TestClient};

pub struct OidcMock {
    /// The issuer as its discovery document states it (no trailing slash).
    pub issuer: String,
    client: TestClient,
    _child: Child,
}

impl OidcMock {
    /// Starts the provider, or `None` (a loud skip outside CI) when the
    /// virtualenv was not set up.
    pub async fn start() -> Option<OidcMock> {
        let bin = super::required_tool(".venv/bin/oidc-provider-mock", "oidc-provider-mock")?;
        let mut child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start oidc-provider-mock");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let issuer = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(rest) = line.split("running on ").nth(1) {
                    return rest.split_whitespace().next().unwrap().to_string();
                }
            }
            panic!("oidc-provider-mock exited before listening");
        })
        .await
        .expect("oidc-provider-mock listening in time");
        // Keep draining its log so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Some(OidcMock {
            issuer,
            client: TestClient::default(),
            _child: child,
        })
    }

    /// Sets a user's claims at the provider.
    pub async fn set_user(&self, sub: &str, claims: &Value) {
        let req = http::Request::put(format!("{}/users/{}", self.issuer, urlencode(sub)))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(claims.to_string())))
            .unwrap();
        let r = self.client.send(req).await.unwrap();
        assert_eq!(r.status, 204, "{}", r.body);
    }

    /// Signs `sub` in through the authorization code flow, as a browser
    /// would submit the provider's form, and returns the ID token.
    pub async fn id_token(&self, client_id: &str, sub: &str) -> String {
        let redirect_uri = "http://127.0.0.1:9/callback";
        let authorize = format!(
            "{}/oauth2/authorize?client_id={}&redirect_uri={}&response_type=code&scope={}&state=st&nonce=nn",
            self.issuer,
            urlencode(client_id),
            urlencode(redirect_uri),
            urlencode("openid email profile"),
        );
        let r = self.client.post_form(&authorize, &[("sub", sub)]).await;
        assert_eq!(r.status, 302, "{}", r.body);
        let location = r.header("location").unwrap();
        let code = location
            .split(['?', '&'])
            .find_map(|kv| kv.strip_prefix("code="))
            .expect("code in redirect")
            .to_string();
        let r = self
            .client
            .post_form(
                &format!("{}/oauth2/token", self.issuer),
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", redirect_uri),
                    ("client_id", client_id),
                    ("client_secret", "not-checked-by-the-mock"),
                ],
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let body: Value = serde_json::from_str(&r.body).unwrap();
        body["id_token"].as_str().unwrap().to_string()
    }
}
