//! Prometheus metrics: request counts and latency by endpoint and outcome,
//! JWKS refreshes, the token cache's hits and misses, rate-limit refusals,
//! and the workspace lifecycle (ready durations, running, culls, failures).
//! Served as text at `/metrics`.

use std::time::Duration;

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A label enum whose values are written in snake case.
macro_rules! label_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
        $vis enum $name { $($variant),+ }

        impl $name {
            #[allow(dead_code)]
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
                encoder.write_str(self.as_str())
            }
        }
    };
}

label_enum! {
    pub enum Endpoint { Auth => "auth", Traefik => "traefik", Proxy => "proxy", Pages => "pages", Healthz => "healthz", Readyz => "readyz", Metrics => "metrics", Other => "other" }
}

label_enum! {
    pub enum Outcome {
        Ok => "ok",
        Unauthenticated => "unauthenticated",
        Forbidden => "forbidden",
        NotFound => "not_found",
        RateLimited => "rate_limited",
        Unavailable => "unavailable",
        Error => "error",
    }
}

impl Outcome {
    pub fn of(status: http::StatusCode) -> Outcome {
        match status.as_u16() {
            200..=399 => Outcome::Ok,
            401 => Outcome::Unauthenticated,
            403 => Outcome::Forbidden,
            404 => Outcome::NotFound,
            429 => Outcome::RateLimited,
            503 => Outcome::Unavailable,
            _ => Outcome::Error,
        }
    }
}

label_enum! {
    pub enum RefreshOutcome { Ok => "ok", Error => "error" }
}

label_enum! {
    pub enum Limit { UnauthenticatedPerIp => "unauthenticated_per_ip", AuthenticatedPerUser => "authenticated_per_user" }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: Endpoint,
    outcome: Outcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefreshLabels {
    outcome: RefreshOutcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    result: CacheResult,
}

label_enum! {
    enum CacheResult { Hit => "hit", Miss => "miss" }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    limit: Limit,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The series of one endpoint and outcome, resolved once at startup so
/// counting a request takes no lock and no label hashing.
struct RequestSeries {
    count: Counter,
    latency: Histogram,
}

/// Every metric roost exports, registered once.
pub struct Metrics {
    registry: Registry,
    /// Indexed by `endpoint * Outcome::ALL.len() + outcome`.
    request_series: Vec<RequestSeries>,
    jwks_refreshes: Family<RefreshLabels, Counter>,
    /// The hit and miss series, resolved once (the hot path only increments).
    token_cache_hit: Counter,
    token_cache_miss: Counter,
    rate_limited: Family<LimitLabels, Counter>,
    spawn_duration: HistogramFamily<ActionLabels>,
    running: Gauge,
    paused: Gauge,
    pauses: Counter,
    store_up: Gauge,
    culls: Family<ReasonLabels, Counter>,
    spawn_failures: Family<ReasonLabels, Counter>,
    admission_refusals: Family<ReasonLabels, Counter>,
    proxied: Family<KindLabels, Counter>,
    tunnels_refused: Counter,
    /// Quota use, summed over every workspace (no per-user labels).
    quota_run_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    quota_cpu_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
}

fn spawn_histogram() -> Histogram {
    // 50 ms … ~100 s.
    Histogram::new(exponential_buckets(0.05, 2.0, 12))
}

fn latency_histogram() -> Histogram {
    // 5 µs … ~6.5 s: the hot path lives in the first buckets.
    Histogram::new(exponential_buckets(0.000_005, 2.0, 21))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("roost");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: HistogramFamily<RequestLabels> = Family::new_with_constructor(latency_histogram);
        let jwks_refreshes = Family::<RefreshLabels, Counter>::default();
        let token_cache = Family::<CacheLabels, Counter>::default();
        let rate_limited = Family::<LimitLabels, Counter>::default();
        registry.register(
            "http_requests",
            "Requests answered, by endpoint and outcome",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer, by endpoint and outcome",
            latency.clone(),
        );
        registry.register("jwks_refreshes", "JWKS loads, by outcome", jwks_refreshes.clone());
        registry.register(
            "token_cache_lookups",
            "Verified-token cache lookups (hit ratio = hit / (hit + miss))",
            token_cache.clone(),
        );
        registry.register("rate_limited", "Requests refused by a rate limit", rate_limited.clone());
        let spawn_duration: HistogramFamily<ActionLabels> = Family::new_with_constructor(spawn_histogram);
        let running = Gauge::default();
        let culls = Family::<ReasonLabels, Counter>::default();
        let spawn_failures = Family::<ReasonLabels, Counter>::default();
        let admission_refusals = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "workspace_ready_duration_seconds",
            "Time from the first request to a ready workspace, by what it took (created, started, recreated, resumed from paused, ready)",
            spawn_duration.clone(),
        );
        registry.register("workspaces_running", "Workspaces running and ready", running.clone());
        let paused = Gauge::default();
        registry.register(
            "workspaces_paused",
            "Workspaces paused (frozen, memory kept) after workspace.pause_after idle",
            paused.clone(),
        );
        let pauses = Counter::default();
        registry.register("workspace_pauses", "Workspaces paused for idleness", pauses.clone());
        let store_up = Gauge::default();
        registry.register(
            "store_up",
            "1 while the shared store (embedded or Redis) answers, 0 while roost decides from memory alone",
            store_up.clone(),
        );
        let proxied = Family::<KindLabels, Counter>::default();
        registry.register(
            "proxy_requests",
            "Requests served by the fallback proxy (before Traefik routes directly), by kind",
            proxied.clone(),
        );
        let tunnels_refused = Counter::default();
        registry.register(
            "proxy_tunnels_refused",
            "Upgrades (WebSockets) refused by the fallback proxy: the user had limits.tunnels_per_user open",
            tunnels_refused.clone(),
        );
        registry.register(
            "workspace_culls",
            "Workspaces stopped or removed by roost, by reason",
            culls.clone(),
        );
        registry.register(
            "workspace_failures",
            "Workspace starts that failed, by reason",
            spawn_failures.clone(),
        );
        registry.register(
            "workspace_admission_refusals",
            "Starts refused for capacity, by limit",
            admission_refusals.clone(),
        );
        let quota_run_seconds = Counter::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "quota_workspace_seconds",
            "Run time counted against quotas, all workspaces together (roost_workspace_culls{reason=\"quota\"} counts the stops)",
            quota_run_seconds.clone(),
        );
        let quota_cpu_seconds = Counter::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "quota_cpu_seconds",
            "CPU time counted against quotas, all workspaces together",
            quota_cpu_seconds.clone(),
        );
        let token_cache_hit = token_cache
            .get_or_create(&CacheLabels {
                result: CacheResult::Hit,
            })
            .clone();
        let token_cache_miss = token_cache
            .get_or_create(&CacheLabels {
                result: CacheResult::Miss,
            })
            .clone();
        let mut request_series = Vec::new();
        for &endpoint in Endpoint::ALL {
            for &outcome in Outcome::ALL {
                let labels = RequestLabels { endpoint, outcome };
                request_series.push(RequestSeries {
                    count: requests.get_or_create(&labels).clone(),
                    latency: latency.get_or_create(&labels).clone(),
                });
            }
        }
        Metrics {
            registry,
            request_series,
            jwks_refreshes,
            token_cache_hit,
            token_cache_miss,
            rate_limited,
            spawn_duration,
            running,
            paused,
            pauses,
            store_up,
            culls,
            spawn_failures,
            admission_refusals,
            proxied,
            tunnels_refused,
            quota_run_seconds,
            quota_cpu_seconds,
        }
    }

    pub fn request(&self, endpoint: Endpoint, status: http::StatusCode, elapsed: Duration) {
        let series = &self.request_series[endpoint as usize * Outcome::ALL.len() + Outcome::of(status) as usize];
        series.count.inc();
        series.latency.observe(elapsed.as_secs_f64());
    }

    pub fn jwks_refresh(&self, outcome: RefreshOutcome) {
        self.jwks_refreshes.get_or_create(&RefreshLabels { outcome }).inc();
    }

    pub fn token_cache(&self, hit: bool) {
        if hit {
            self.token_cache_hit.inc();
        } else {
            self.token_cache_miss.inc();
        }
    }

    pub fn rate_limited(&self, limit: Limit) {
        self.rate_limited.get_or_create(&LimitLabels { limit }).inc();
    }

    pub fn workspace_ready(&self, action: &'static str, elapsed: Duration) {
        self.spawn_duration
            .get_or_create(&ActionLabels { action })
            .observe(elapsed.as_secs_f64());
    }

    pub fn set_store_up(&self, up: bool) {
        self.store_up.set(i64::from(up));
    }

    pub fn set_running(&self, n: usize) {
        self.running.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn set_paused(&self, n: usize) {
        self.paused.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn workspace_paused(&self) {
        self.pauses.inc();
    }

    pub fn quota_used(&self, run_secs: f64, cpu_secs: f64) {
        self.quota_run_seconds.inc_by(run_secs);
        self.quota_cpu_seconds.inc_by(cpu_secs);
    }

    pub fn workspace_culled(&self, reason: &'static str) {
        self.culls.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn workspace_failed(&self, reason: &'static str) {
        self.spawn_failures.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn admission_refused(&self, reason: &'static str) {
        self.admission_refusals.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn proxied(&self, upgrade: bool) {
        let kind = if upgrade { "upgrade" } else { "http" };
        self.proxied.get_or_create(&KindLabels { kind }).inc();
    }

    pub fn tunnel_refused(&self) {
        self.tunnels_refused.inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
