//! An Auth0-shaped OIDC issuer of the project's own, on loopback: discovery
//! and JWKS, issuer URL with a trailing slash, keys that can be rotated, a
//! fetch counter, an optional delay, and an off switch.

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

use super::tokens;

#[derive(Default)]
struct State {
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
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
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

async fn answer(state: &State, url: &str, req: Request<Incoming>) -> Response<Full<Bytes>> {
    state.requests.fetch_add(1, Ordering::SeqCst);
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
