//! Wiring: builds every component from a validated [`Config`], and [`run`]
//! owns the background tasks (key refresher, limiter janitor, engine event
//! follower, reaper) and the
//! listener, stopping all of them on shutdown (never the workspaces).

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::auth::{KeyFetcher, KeyStore, Login, Sessions, Verifier};
use crate::clock::SystemClock;
use crate::config::Config;
use crate::forward_auth::ForwardAuth;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::public_url::PublicOrigin;
use crate::traefik::RouteTable;
use crate::workspace::registry::Registry;
use crate::workspace::runtime::Runtime;
use crate::workspace::{events, reaper, ReadinessGate};

/// Everything a request handler can reach.
pub struct App {
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub keys: Arc<KeyStore>,
    pub verifier: Arc<Verifier>,
    pub limits: Arc<Limits>,
    pub forward_auth: ForwardAuth,
    /// Browser sign-in, when `oidc.client_id` is set.
    pub login: Option<Login>,
    /// The workspaces.
    pub workspaces: Arc<Registry>,
    /// What `GET /traefik` serves.
    pub routes: RouteTable,
    pub proxy: Proxy,
}

impl App {
    /// Builds the components; nothing runs until [`run`].
    pub fn new(config: Config, fetcher: Arc<dyn KeyFetcher>, runtime: Arc<dyn Runtime>) -> Arc<App> {
        let config = Arc::new(config);
        let metrics = Arc::new(Metrics::new());
        let keys = Arc::new(KeyStore::new(&config.oidc, fetcher.clone(), metrics.clone()));
        let verifier = Arc::new(Verifier::new(&config.oidc, keys.clone(), metrics.clone()));
        let limits = Arc::new(Limits::new(&config.limits));
        let scope = (config.deployment.id.as_str(), config.oidc.issuer.as_str());
        let workspaces = Registry::new(
            runtime,
            config.workspace.clone(),
            scope,
            metrics.clone(),
            Arc::new(SystemClock),
        );
        let gate: Arc<dyn ReadinessGate> = Arc::new(workspaces.clone());
        let origin = PublicOrigin::new(&config.routing);
        let sessions = Sessions::new(&config.secrets, &config.session, &origin).map(Arc::new);
        let login = sessions.as_ref().and_then(|s| {
            Login::new(
                &config,
                &origin,
                s.clone(),
                keys.clone(),
                fetcher.clone(),
                verifier.clone(),
            )
        });
        let forward_auth = ForwardAuth::new(
            origin,
            verifier.clone(),
            sessions,
            limits.clone(),
            gate,
            metrics.clone(),
            config.server.trusted_hops,
        );
        let routes = RouteTable::new(config.routing.clone());
        Arc::new(App {
            routes,
            proxy: Proxy::new(metrics.clone(), &config.limits),
            config,
            metrics,
            keys,
            verifier,
            limits,
            forward_auth,
            login,
            workspaces,
        })
    }
}

/// roost's two bound listeners (see [`crate::server`]).
pub struct Listeners {
    /// `listen`: the fallback proxy and pages.
    pub public: TcpListener,
    /// `internal_listen`: `/auth`, `/traefik`, `/metrics`, probes.
    pub internal: TcpListener,
}

/// Serves on both listeners until `shutdown` completes, then drains
/// requests and stops every background task.
pub async fn run(app: Arc<App>, listeners: Listeners, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
    let stop = CancellationToken::new();
    let mut background = JoinSet::new();
    background.spawn(app.keys.clone().run_refresher(stop.child_token()));
    background.spawn(app.limits.clone().run_janitor(stop.child_token()));
    background.spawn(events::follow(app.workspaces.clone(), stop.child_token()));
    background.spawn(reaper::run(app.workspaces.clone(), stop.child_token()));
    // The listeners run as tasks on the runtime's workers, like the
    // connections they spawn: no cross-thread wake-up per connection.
    use crate::server::{serve, Listener};
    let flatten =
        |r: Result<std::io::Result<()>, tokio::task::JoinError>| r.unwrap_or_else(|e| Err(std::io::Error::other(e)));
    let mut servers = JoinSet::new();
    servers.spawn(serve(listeners.public, Listener::Public, app.clone(), stop.clone()));
    servers.spawn(serve(listeners.internal, Listener::Internal, app.clone(), stop.clone()));
    let mut result = Ok(());
    tokio::select! {
        // A listener ended on its own: stop everything.
        Some(r) = servers.join_next() => result = flatten(r),
        () = shutdown => tracing::info!("shutting down"),
    }
    stop.cancel();
    while let Some(r) = servers.join_next().await {
        result = result.and(flatten(r));
    }
    stop.cancel();
    app.proxy.shutdown().await;
    while background.join_next().await.is_some() {}
    app.workspaces.shutdown().await;
    result
}
