//! roost: per-user workspace containers behind a stock Traefik.
//!
//! Traefik's forwardAuth asks roost on every request whether it may pass;
//! Traefik's HTTP provider polls roost for routes. The architecture: `docs/ARCHITECTURE.md`.
//!
//! Map of the crate (imports point down it, never back: [`response`] and
//! [`request`] below the handlers, the handlers below [`server`]):
//!
//! - [`config`]: the TOML file and `ROOST_*` secrets → a validated [`Config`];
//!   every bad key reported at once.
//! - [`app`]: builds the components from the config; starts and stops the
//!   background tasks.
//! - [`server`]: the two listeners (public: the fallback proxy and pages;
//!   internal: `/auth`, `/traefik`, `/metrics`, probes), connection limits
//!   (408/431), [`server::run`] (serve, then drain), and [`server::handle`],
//!   the router by listener and host, over any request body.
//! - [`request`]: the request parsed once ([`request::Parsed`]: normalised
//!   host, credential, client kind, asked-for path, client address), read by
//!   `/auth`, the proxy and the pages alike.
//! - [`response`]: a leaf: bodies, text/JSON/HTML answers with roost's
//!   security headers and CSP, redirects, HTML escaping, constant-time
//!   compares.
//! - [`host`]: host names normalised once (case, port, trailing dot, IDNA,
//!   IP literals), the same way for routing, authorization and rendering.
//! - [`forward_auth`]: the `/auth` decision: host → workspace, caller,
//!   ownership, limits, readiness.
//! - [`auth`]: signing keys ([`auth::jwks`]), token verification with the
//!   claims cache, the verified [`auth::Identity`], browser sessions
//!   ([`auth::session`]) and sign-in ([`auth::login`]).
//! - [`public_url`]: absolute URLs from the configured public origin, and
//!   which redirect targets are safe.
//! - [`pages`]: the bare domain: landing, sign-in endpoints, the user's
//!   status page and JSON API, the forms' token check.
//! - [`slug`]: claim value → workspace name.
//! - [`store`]: shared state behind one trait: embedded (one replica,
//!   revocations in a file) or Redis (many replicas): revocations, sign-in
//!   states used once, activity, the reaper's lease, fleet-wide slots.
//! - [`audit`]: the audit trail: who did what to which workspace, why,
//!   and how it ended; logged and kept in the store.
//! - [`clock`]: wall-clock seconds for expiry and labels, and the [`clock::Clock`]
//!   trait the registry reads them through (tests pause it).
//! - [`limits`]: governor rate limits per address and per user.
//! - [`workspace`]: the container runtime trait with its Docker (bollard),
//!   Docker Swarm and in-memory implementations, the registry (private state, one verb
//!   per transition: single-flight spawn, drain and retire), the reaper,
//!   engine events, the status view.
//! - [`error`]: every refusal turned into its response, in one place.
//! - [`traefik`]: `GET /traefik`, the dynamic configuration for Traefik's
//!   HTTP provider, rendered on change and served from memory.
//! - [`proxy`]: the fallback proxy (HTTP, WebSocket, the starting page) for
//!   workspaces Traefik does not route directly yet.
//! - [`metrics`]: Prometheus metrics served at `/metrics`.
//! - [`healthcheck`]: `roost healthcheck`, one `GET /healthz` (the image's
//!   HEALTHCHECK).

pub mod app;
pub mod audit;
pub mod auth;
pub mod clock;
pub mod config;
pub mod error;
pub mod forward_auth;
pub mod healthcheck;
pub mod host;
pub mod limits;
pub mod metrics;
pub mod pages;
pub mod proxy;
pub mod public_url;
pub mod request;
pub mod response;
pub mod server;
pub mod slug;
pub mod store;
pub mod traefik;
pub mod workspace;

pub use config::Config;
