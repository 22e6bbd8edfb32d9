//! Wiring: builds every component from a validated [`Config`], starts the
//! background tasks (key refresher, limiter janitor, engine event follower,
//! reaper) and stops them on shutdown (never the workspaces).
//! The listeners are served around them by `server::run`.

use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::auth::{revocations, KeyFetcher, KeyStore, Login, Revocations, Sessions, Verifier};
use crate::clock::SystemClock;
use crate::config::Config;
use crate::forward_auth::ForwardAuth;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::public_url::PublicOrigin;
use crate::store::{Store, StoreError};
use crate::traefik::RouteTable;
use crate::workspace::registry::{self, Registry};
use crate::workspace::runtime::Runtime;
use crate::workspace::{events, reaper};

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
    /// Shared state (embedded, or Redis for several replicas).
    pub store: Arc<dyn Store>,
    /// Sessions taken away, as this replica knows them.
    pub revocations: Arc<Revocations>,
}

impl App {
    /// Builds the components; nothing runs until `server::run`.
    pub fn new(
        config: Config,
        fetcher: Arc<dyn KeyFetcher>,
        runtime: Arc<dyn Runtime>,
        store: Arc<dyn Store>,
    ) -> Arc<App> {
        let config = Arc::new(config);
        let metrics = Arc::new(Metrics::new());
        let keys = Arc::new(KeyStore::new(&config.oidc, fetcher.clone(), metrics.clone()));
        let verifier = Arc::new(
            Verifier::new(&config.oidc, keys.clone(), metrics.clone()).with_permissions(config.permissions_read()),
        );
        let limits = Arc::new(Limits::new(&config.limits));
        let scope = (config.deployment.id.as_str(), config.oidc.issuer.as_str());
        let workspaces = Registry::new(
            runtime,
            crate::workspace::profiles::Profiles::new(config.workspace.clone(), &config.profiles),
            config.quota.clone(),
            scope,
            metrics.clone(),
            Arc::new(SystemClock),
            store.clone(),
        );
        let revocations = Arc::new(Revocations::default());
        let origin = PublicOrigin::new(&config.routing);
        let sessions = Sessions::new(&config.secrets, &config.session, &origin)
            .map(|s| Arc::new(s.with_revocations(revocations.clone())));
        let login = sessions.as_ref().and_then(|s| {
            Login::new(
                &config,
                &origin,
                s.clone(),
                keys.clone(),
                fetcher.clone(),
                verifier.clone(),
                store.clone(),
            )
        });
        let forward_auth = ForwardAuth::new(
            origin,
            verifier.clone(),
            sessions,
            limits.clone(),
            workspaces.clone(),
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
            store,
            revocations,
        })
    }

    /// Loads what must be known before serving: every revocation in force
    /// (a replica must not accept a revoked session it has not heard of).
    pub async fn load(&self) -> Result<(), StoreError> {
        self.revocations.load(&*self.store).await
    }
}

impl App {
    /// Starts the background tasks, which run until `stop` is cancelled.
    pub fn start_background(&self, stop: &CancellationToken) -> JoinSet<()> {
        let mut background = JoinSet::new();
        background.spawn(self.keys.clone().run_refresher(stop.child_token()));
        background.spawn(self.limits.clone().run_janitor(stop.child_token()));
        background.spawn(events::follow(self.workspaces.clone(), stop.child_token()));
        background.spawn(reaper::run(self.workspaces.clone(), stop.child_token()));
        background.spawn(registry::run_sharing(self.workspaces.clone(), stop.child_token()));
        background.spawn(revocations::follow(
            self.store.clone(),
            self.revocations.clone(),
            stop.child_token(),
        ));
        background
    }

    /// After the listeners drained and `background`'s token was cancelled:
    /// relayed connections closed, the background tasks joined, the
    /// workspaces' pending work finished.
    pub async fn shutdown(&self, mut background: JoinSet<()>) {
        self.proxy.shutdown().await;
        while background.join_next().await.is_some() {}
        self.workspaces.shutdown().await;
    }
}
