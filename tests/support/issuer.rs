//! An Auth0-shaped OIDC issuer of the project's own, on loopback: discovery
//! and JWKS, issuer URL with a trailing slash, keys that can be rotated, a
//! fetch counter, an optional delay, and an off switch. It also signs users
//! in without a form (`/authorize` answers at once for `login_hint`, else
//! "alice") and enforces PKCE S256 at its token endpoint, which the real
//! oidc-provider-mock does not: PKCE tests need a provider that refuses a
//! wrong verifier.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::tokens;

/// An issued authorization code, until it is redeemed.
struct Grant {
    sub: String,
    nonce: String,
    challenge: Option<String>,
    client_id: String,
}

#[derive(Default)]
struct State {
    /// Who `/authorize` signs in without a `login_hint`.
    user: Mutex<Option<String>>,
    grants: Mutex<std::collections::HashMap<String, Grant>>,
    token_requests: AtomicUsize,
    keys: Mutex<Vec<Value>>,
    jwks_delay: Mutex<Duration>,
    jwks_fetches: AtomicUsize,
    requests: AtomicUsize,
}

pub struct TestIssuer {
    /// The issuer, exactly as discovery states it (trailing slash, like Auth0).
    pub url: String,
    state: Arc<State>,
    stop: CancellationToken,
}

impl TestIssuer {
    /// Starts serving with the named fixture keys published.
    pub async fn start(keys: &[&str]) -> TestIssuer {
        Self::start_on("127.0.0.1:0", keys).await
    }

    /// Starts serving on `addr` (a bridge's gateway, for roost in a container).
    pub async fn start_on(addr: &str, keys: &[&str]) -> TestIssuer {
        let listener = TcpListener::bind(addr).await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let state = Arc::new(State::default());
        let stop = CancellationToken::new();
        let issuer = TestIssuer {
            url: url.clone(),
            state: state.clone(),
            stop: stop.clone(),
        };
        issuer.publish(keys);
        tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    Ok((tcp, _)) = listener.accept() => {
                        let state = state.clone();
                        let url = url.clone();
                        conns.spawn(async move {
                            let svc = service_fn(move |req| {
                                let state = state.clone();
                                let url = url.clone();
                                async move { Ok::<_, Infallible>(answer(&state, &url, req).await) }
                            });
                            let _ = http1::Builder::new().serve_connection(TokioIo::new(tcp), svc).await;
                        });
                    }
                }
            }
            conns.shutdown().await; // the issuer is down: every connection closes
        });
        issuer
    }

    /// Replaces the published keys.
    pub fn publish(&self, keys: &[&str]) {
        *self.state.keys.lock().unwrap() = keys.iter().map(|k| tokens::jwk(k)).collect();
    }

    /// Publishes arbitrary JWKS entries.
    pub fn publish_raw(&self, keys: Vec<Value>) {
        *self.state.keys.lock().unwrap() = keys;
    }

    pub fn set_jwks_delay(&self, delay: Duration) {
        *self.state.jwks_delay.lock().unwrap() = delay;
    }

    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Makes `/authorize` sign in `sub` from now on.
    pub fn sign_in_as(&self, sub: &str) {
        *self.state.user.lock().unwrap() = Some(sub.to_string());
    }

    /// Requests to the token endpoint so far.
    pub fn token_requests(&self) -> usize {
        self.state.token_requests.load(Ordering::SeqCst)
    }

    /// Takes the issuer off the network.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn query_map(text: &str) -> std::collections::HashMap<String, String> {
    url::form_urlencoded::parse(text.as_bytes()).into_owned().collect()
}

fn status(code: u16, body: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = http::StatusCode::from_u16(code).unwrap();
    resp
}

/// `/authorize`: a code for `login_hint` (default alice), straight back.
fn authorize(state: &State, query: &str) -> Response<Full<Bytes>> {
    let q = query_map(query);
    if q.get("response_type").map(String::as_str) != Some("code") {
        return status(400, "unsupported_response_type");
    }
    let code = format!("code-{}", state.requests.load(Ordering::SeqCst));
    let grant = Grant {
        sub: q
            .get("login_hint")
            .cloned()
            .or_else(|| state.user.lock().unwrap().clone())
            .unwrap_or_else(|| "alice".into()),
        nonce: q.get("nonce").cloned().unwrap_or_default(),
        challenge: (q.get("code_challenge_method").map(String::as_str) == Some("S256"))
            .then(|| q.get("code_challenge").cloned())
            .flatten(),
        client_id: q.get("client_id").cloned().unwrap_or_default(),
    };
    state.grants.lock().unwrap().insert(code.clone(), grant);
    let redirect = q.get("redirect_uri").cloned().unwrap_or_default();
    let sep = if redirect.contains('?') { '&' } else { '?' };
    let location = format!(
        "{redirect}{sep}code={code}&state={}",
        url::form_urlencoded::byte_serialize(q.get("state").map_or("", String::as_str).as_bytes()).collect::<String>()
    );
    let mut resp = status(302, "");
    resp.headers_mut().insert("location", location.parse().unwrap());
    resp
}

/// `/oauth/token`: redeems a code once, only with the PKCE verifier.
fn token(state: &State, url: &str, form: &str) -> Response<Full<Bytes>> {
    state.token_requests.fetch_add(1, Ordering::SeqCst);
    let f = query_map(form);
    let Some(grant) = f.get("code").and_then(|c| state.grants.lock().unwrap().remove(c)) else {
        return status(400, r#"{"error":"invalid_grant"}"#);
    };
    if let Some(challenge) = &grant.challenge {
        use sha2::Digest;
        let ok = f
            .get("code_verifier")
            .is_some_and(|v| URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(v.as_bytes())) == *challenge);
        if !ok {
            return status(
                400,
                r#"{"error":"invalid_grant","error_description":"PKCE verification failed"}"#,
            );
        }
    }
    if f.get("client_id") != Some(&grant.client_id) {
        return status(401, r#"{"error":"invalid_client"}"#);
    }
    let mut claims = tokens::auth0_claims(url, &grant.client_id, &grant.sub);
    claims["aud"] = json!(grant.client_id);
    claims["nonce"] = json!(grant.nonce);
    let id_token = tokens::sign("k1", Some("k1"), &claims);
    let body = json!({"id_token": id_token, "access_token": "opaque", "token_type": "Bearer", "expires_in": 3600});
    let mut resp = status(200, &body.to_string());
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    resp
}

async fn answer(state: &State, url: &str, req: Request<Incoming>) -> Response<Full<Bytes>> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    match req.uri().path() {
        "/authorize" => return authorize(state, req.uri().query().unwrap_or("")),
        "/oauth/token" => {
            use http_body_util::BodyExt;
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return token(state, url, &String::from_utf8_lossy(&body));
        }
        _ => {}
    }
    let body = match req.uri().path() {
        "/.well-known/openid-configuration" => json!({
            "issuer": url,
            "authorization_endpoint": format!("{url}authorize"),
            "token_endpoint": format!("{url}oauth/token"),
            "jwks_uri": format!("{url}.well-known/jwks.json"),
            "end_session_endpoint": format!("{url}oidc/logout"),
            "id_token_signing_alg_values_supported": ["RS256"],
        }),
        "/.well-known/jwks.json" => {
            state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            let delay = *state.jwks_delay.lock().unwrap();
            if !delay.is_zero() {
                tokio::time::sleep(delay).await; // simulates a slow provider, not a wait in a test
            }
            json!({ "keys": state.keys.lock().unwrap().clone() })
        }
        _ => {
            let mut resp = Response::new(Full::new(Bytes::from_static(b"not found")));
            *resp.status_mut() = http::StatusCode::NOT_FOUND;
            return resp;
        }
    };
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    resp
}
