//! roost in-process on an ephemeral loopback port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use roost::app::App;
use roost::auth::HttpFetcher;
use roost::config::{Config, Secrets};
use roost::workspace::memory::MemoryRuntime;
use roost::workspace::runtime::Runtime;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::eventually;
use super::http::TestClient;

pub const DOMAIN: &str = "ws.roost.test";
pub const AUDIENCE: &str = "https://roost.test/api";
/// Stands for roost's own address in test configs until it is known.
pub const ROOST_URL_PLACEHOLDER: &str = "http://127.0.0.1:1";

/// A config for `issuer` with the real workspace image and `workspace_extra`
/// lines in `[workspace]`.
pub fn workspace_config(issuer: &str, workspace_extra: &str) -> String {
    config_text(issuer, "", "").replace(
        "image = \"roost-echo:test\"\n",
        &format!("image = \"roost-echo:test\"\n{workspace_extra}\n"),
    )
}

/// A config for `issuer`, with `extra` TOML appended to the matching sections.
pub fn config_text(issuer: &str, oidc_extra: &str, top_extra: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
internal_listen = "127.0.0.1:0"
{top_extra}
[oidc]
issuer = "{issuer}"
audience = "{AUDIENCE}"
{oidc_extra}
[routing]
domain = "{DOMAIN}"
roost_url = "http://127.0.0.1:1"
scheme = "http"
[workspace]
image = "roost-echo:test"
"#
    )
}

pub struct TestRoost {
    /// The public listener (fallback proxy, pages).
    pub addr: SocketAddr,
    /// The internal listener (`/auth`, `/traefik`, `/metrics`, probes).
    pub internal: SocketAddr,
    pub app: Arc<App>,
    pub client: TestClient,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestRoost {
    /// Starts roost with `config` (TOML text) and waits until `/healthz` answers.
    pub async fn start(config: &str) -> TestRoost {
        Self::start_with(config, None).await
    }

    /// Starts roost; `routing.roost_url` in `config` is replaced by the
    /// address roost actually listens on.
    pub async fn start_with(config: &str, runtime: Option<Arc<dyn Runtime>>) -> TestRoost {
        Self::start_at(("127.0.0.1:0", "127.0.0.1:0"), config, runtime).await
    }

    /// Starts roost on these (public, internal) addresses (a restart on the
    /// same addresses).
    pub async fn start_at(addrs: (&str, &str), config: &str, runtime: Option<Arc<dyn Runtime>>) -> TestRoost {
        Self::start_on(addrs, config, Secrets::default(), runtime).await
    }

    /// Starts roost on `addr` with these secrets (what it would read from
    /// its environment; the test process's own stays untouched).
    pub async fn start_full(
        addr: &str,
        config: &str,
        secrets: Secrets,
        runtime: Option<Arc<dyn Runtime>>,
    ) -> TestRoost {
        Self::start_on((addr, "127.0.0.1:0"), config, secrets, runtime).await
    }

    async fn start_on(
        (public, internal): (&str, &str),
        config: &str,
        secrets: Secrets,
        runtime: Option<Arc<dyn Runtime>>,
    ) -> TestRoost {
        let public = TcpListener::bind(public).await.unwrap();
        let internal = TcpListener::bind(internal).await.unwrap();
        let (addr, internal_addr) = (public.local_addr().unwrap(), internal.local_addr().unwrap());
        let config = config.replace(ROOST_URL_PLACEHOLDER, &format!("http://{addr}"));
        let mut config = Config::from_toml(&config, secrets).expect("valid test config");
        config.routing.auth_url = format!("http://{internal_addr}");
        let fetcher = Arc::new(HttpFetcher::new(config.oidc.http_timeout));
        // Without a runtime of the test's own: containers in memory, every
        // workspace answering at the discard port (tests of the auth layer).
        let runtime = runtime.unwrap_or_else(|| Arc::new(MemoryRuntime::new(([127, 0, 0, 1], 9).into())));
        // The store the config asks for (Redis when the secrets name one).
        let store = roost::store::open(&config).await.expect("the shared store");
        let app = App::new(config, fetcher, runtime, store);
        app.load().await.expect("revocations loaded");
        let (tx, rx) = oneshot::channel();
        let listeners = roost::server::Listeners { public, internal };
        let task = tokio::spawn(roost::server::run(app.clone(), listeners, async {
            let _ = rx.await;
        }));
        TestRoost {
            addr,
            internal: internal_addr,
            app,
            client: TestClient::default(),
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Starts roost and waits until its keys are loaded (`/readyz` is 200).
    pub async fn start_ready(config: &str) -> TestRoost {
        let roost = Self::start(config).await;
        roost.wait_ready().await;
        roost
    }

    pub async fn wait_ready(&self) {
        let client = self.client.clone();
        let url = self.url("/readyz");
        eventually(Duration::from_secs(10), "roost /readyz", || {
            let client = client.clone();
            let url = url.clone();
            async move { (client.get(&url, &[]).await.status == 200).then_some(()) }
        })
        .await;
    }

    /// A URL on the internal listener (`/auth`, `/traefik`, `/metrics`, probes).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.internal)
    }

    /// A URL on the public listener (the fallback proxy, pages).
    pub fn public_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The value of one counter series of `/metrics` (`name{labels}` as
    /// exported), 0 while it is not there.
    pub async fn counter(&self, series: &str) -> u64 {
        let body = self.client.get(&self.url("/metrics"), &[]).await.body;
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0, |v| v.parse().unwrap_or(0))
    }

    /// What Traefik's HTTP provider polls: `<internal>` (+ `/traefik`).
    pub fn provider_base(&self) -> String {
        format!("http://{}", self.internal)
    }

    /// `GET /auth` as Traefik sends it for `https://<host>/`.
    pub async fn auth(&self, host: &str, token: Option<&str>) -> super::http::Reply {
        self.auth_from(host, token, "198.51.100.1").await
    }

    pub async fn auth_from(&self, host: &str, token: Option<&str>, client_ip: &str) -> super::http::Reply {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![
            ("x-forwarded-host", host),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/"),
            ("x-forwarded-for", client_ip),
        ];
        if let Some(b) = &bearer {
            headers.push(("authorization", b.as_str()));
        }
        self.client.get(&self.url("/auth"), &headers).await
    }

    /// Asks roost to stop and waits until it has drained.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// Requests shutdown without waiting.
    pub fn begin_stop(&mut self) -> JoinHandle<std::io::Result<()>> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.take().expect("running")
    }
}

impl Drop for TestRoost {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Secrets with a cookie key (and optionally the previous one) for browser
/// sign-in.
pub fn sign_in_secrets(cookie_key: &str, previous: Option<&str>) -> Secrets {
    Secrets {
        oidc_client_secret: Some(roost::config::Secret::new("test-client-secret")),
        cookie_key: Some(roost::config::Secret::new(cookie_key)),
        cookie_key_previous: previous.map(roost::config::Secret::new),
        redis_url: None,
    }
}

pub const COOKIE_KEY: &str = "test-cookie-key-0123456789abcdef0123456789";
pub const OLD_COOKIE_KEY: &str = "old-cookie-key-0123456789abcdef0123456789";

pub fn workspace_host(slug: &str) -> String {
    format!("{slug}.{DOMAIN}")
}

/// A browser session for `user` on `app` (sealed with its cookie key, as
/// any replica would): its `Cookie` header and its form token.
pub fn session_for(app: &App, user: &str) -> (String, String) {
    session_as(app, user, false)
}

/// [`session_for`], for an admin when `admin`.
pub fn session_as(app: &App, user: &str, admin: bool) -> (String, String) {
    let origin = roost::public_url::PublicOrigin::new(&app.config.routing);
    let sessions = roost::auth::Sessions::new(&app.config.secrets, &app.config.session, &origin).expect("a cookie key");
    let s = sessions.start(user, user, Some(format!("{user}@example.com")), admin, vec![]);
    let set_cookie = sessions.set_cookie(&s);
    let cookie = set_cookie.to_str().unwrap().split(';').next().unwrap().to_string();
    (cookie, s.csrf)
}
