//! The registry, reaper and event follower over the in-memory runtime, on
//! tokio's paused clock: starts, drains and timeouts of minutes take
//! milliseconds, and every step is exactly where the config says.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::{Phase, Registry, Retire};
use crate::auth::Identity;
use crate::clock::TokioClock;
use crate::config::{Config, QuotaConfig, Secrets};
use crate::metrics::Metrics;
use crate::workspace::memory::MemoryRuntime;
use crate::workspace::profiles::Profiles;
use crate::workspace::runtime::{FailReason, RuntimeError};
use crate::workspace::{events, reaper, Gate};

mod fleet;
mod pause;

const ADDR: &str = "127.0.0.1:9";

/// The profiles of a config with these `[workspace]` lines (and maybe
/// `[[profiles]]` after them).
fn workspace_config(extra: &str) -> (Profiles, QuotaConfig) {
    let text = format!(
        "[oidc]\nissuer = \"https://id.example.com/\"\naudience = \"roost\"\n\
         [routing]\ndomain = \"ws.example.com\"\nroost_url = \"http://127.0.0.1:8080\"\n[workspace]\nimage = \"roost-echo:test\"\n{extra}\n"
    );
    match Config::from_toml(&text, Secrets::default()) {
        Ok(config) => (Profiles::new(config.workspace, &config.profiles), config.quota),
        Err(e) => panic!("test config: {e}"),
    }
}

fn user(name: &str) -> Identity {
    Identity::new(&format!("auth0|{name}"), name, None, false, u64::MAX, vec![]).expect("a valid identity")
}

struct Fixture {
    runtime: Arc<MemoryRuntime>,
    registry: Arc<Registry>,
}

/// An in-memory engine whose starts take `start_delay`, on `clock`.
fn engine(start_delay: Duration, clock: Arc<TokioClock>) -> Arc<MemoryRuntime> {
    let addr: SocketAddr = ADDR.parse().expect("an address");
    Arc::new(MemoryRuntime::new(addr).with_start_delay(start_delay).with_clock(clock))
}

/// A registry over `runtime` with these `[workspace]` lines and `store`.
fn registry_on(
    runtime: Arc<MemoryRuntime>,
    clock: Arc<TokioClock>,
    extra: &str,
    store: Arc<dyn crate::store::Store>,
) -> Arc<Registry> {
    let (profiles, quota) = workspace_config(extra);
    Registry::new(
        runtime,
        profiles,
        quota,
        ("roost", "https://id.example.com/"),
        Arc::new(Metrics::new()),
        clock,
        store,
    )
}

fn fixture(extra: &str, start_delay: Duration) -> Fixture {
    let clock = Arc::new(TokioClock::new());
    let runtime = engine(start_delay, clock.clone());
    let store = Arc::new(crate::store::Embedded::in_memory());
    let registry = registry_on(runtime.clone(), clock, extra, store);
    Fixture { runtime, registry }
}

impl Fixture {
    /// `who`'s own workspace, ready within a second (of tokio's clock).
    async fn ready(&self, who: &Identity, what: &str) {
        if let Err(e) = self.registry.ensure_ready(who, &who.slug, Duration::from_secs(1)).await {
            panic!("{what}: {e:?}");
        }
    }

    fn phase(&self, who: &Identity) -> Phase {
        self.registry.get(&who.slug).map_or(Phase::Stopped, |e| e.phase())
    }

    /// Runs the reaper (and the event follower) as production does.
    fn run_background(&self) -> tokio_util::sync::CancellationToken {
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(reaper::run(self.registry.clone(), stop.child_token()));
        tokio::spawn(events::follow(self.registry.clone(), stop.child_token()));
        stop
    }
}

async fn sleep(secs: u64) {
    tokio::time::sleep(Duration::from_secs(secs)).await;
}

#[tokio::test(start_paused = true)]
async fn concurrent_first_requests_share_one_spawn() {
    let f = fixture("", Duration::from_secs(3));
    let alice = user("alice");
    let waits = (0..50).map(|_| f.registry.ensure_ready(&alice, &alice.slug, Duration::from_secs(10)));
    let results = futures_util::future::join_all(waits).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(f.runtime.ensures(), 1);
    assert!(matches!(f.phase(&alice), Phase::Ready(_)));
    assert!(!f.registry.get(&alice.slug).expect("an entry").is_busy());
}

#[tokio::test(start_paused = true)]
async fn a_wait_that_runs_out_leaves_the_start_going() {
    let f = fixture("", Duration::from_secs(20));
    let alice = user("alice");
    let first = f
        .registry
        .ensure_ready(&alice, &alice.slug, Duration::from_secs(5))
        .await;
    assert!(matches!(first, Err(RuntimeError::NotReady { .. })), "{first:?}");
    assert!(matches!(f.phase(&alice), Phase::Starting(_)));
    let second = f
        .registry
        .ensure_ready(&alice, &alice.slug, Duration::from_secs(30))
        .await;
    assert!(second.is_ok(), "{second:?}");
    assert_eq!(f.runtime.ensures(), 1, "the second request joined the first start");
}

#[tokio::test(start_paused = true)]
async fn an_idle_workspace_stops_within_its_bound_and_noise_does_not_keep_it() {
    // idle 60 s: the reaper ticks every 15 s; drain 5 s.
    let f = fixture("idle_timeout = \"60s\"\ndrain_grace = \"5s\"", Duration::ZERO);
    let stop = f.run_background();
    let alice = user("alice");
    f.ready(&alice, "ready").await;
    for _ in 0..5 {
        sleep(10).await; // 50 s of nothing but ARP answers
        f.runtime.arp(&alice.slug);
    }
    assert!(matches!(f.phase(&alice), Phase::Ready(_)), "not idle for 60 s yet");
    // Bound: idle_timeout + one interval + drain_grace.
    sleep(60 + 15 + 5 - 50 + 1).await;
    assert_eq!(f.phase(&alice), Phase::Stopped);
    assert!(!f.runtime.is_running(&alice.slug));
    assert!(f.runtime.exists(&alice.slug), "the container (and volume) stay");
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_workspace_sending_its_own_traffic_stays_up() {
    let f = fixture("idle_timeout = \"60s\"\ndrain_grace = \"5s\"", Duration::ZERO);
    let stop = f.run_background();
    let alice = user("alice");
    f.ready(&alice, "ready").await;
    for _ in 0..60 {
        sleep(10).await;
        f.runtime.send(&alice.slug, 77); // a WebSocket message every 10 s
    }
    assert!(matches!(f.phase(&alice), Phase::Ready(_)), "{:?}", f.phase(&alice));
    assert_eq!(f.runtime.stops(), 0);
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_workspace_used_while_draining_is_kept() {
    let f = fixture("drain_grace = \"10s\"", Duration::ZERO);
    let alice = user("alice");
    f.ready(&alice, "ready").await;
    let entry = f.registry.get(&alice.slug).expect("an entry");
    f.registry.retire_in_background(entry.clone(), Retire::Idle);
    sleep(2).await;
    assert!(matches!(f.phase(&alice), Phase::Draining(_)), "route withdrawn first");
    assert!(f.registry.ready().is_empty(), "not in the route table while draining");
    // A request through the fallback proxy while draining.
    assert!(matches!(f.registry.gate(&alice, &alice.slug), Gate::Ready(_)));
    sleep(10).await;
    assert!(matches!(f.phase(&alice), Phase::Ready(_)));
    assert_eq!(f.runtime.stops(), 0);
    assert!(!entry.is_busy(), "the busy mark is cleared");
}

#[tokio::test(start_paused = true)]
async fn past_max_lifetime_the_container_is_removed_and_made_anew() {
    let f = fixture(
        "max_lifetime = \"2m\"\nidle_timeout = \"2m\"\ndrain_grace = \"5s\"",
        Duration::ZERO,
    );
    let stop = f.run_background();
    let alice = user("alice");
    f.ready(&alice, "ready").await;
    for _ in 0..2 {
        sleep(50).await;
        f.ready(&alice, "in use").await;
    }
    assert!(matches!(f.phase(&alice), Phase::Ready(_)));
    // Bound: max_lifetime + one interval (30 s) + drain_grace.
    sleep(120 + 30 + 5 + 1 - 100).await;
    assert_eq!(f.phase(&alice), Phase::Stopped);
    assert!(!f.runtime.exists(&alice.slug), "the container is removed");
    f.ready(&alice, "made anew").await;
    assert_eq!(f.runtime.ensures(), 2);
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn running_containers_are_adopted_at_startup_and_from_events() {
    let f = fixture("", Duration::ZERO);
    let (alice, bob) = (user("alice"), user("bob"));
    f.runtime.start_elsewhere(&alice.slug, &alice.sub);
    let stop = f.run_background();
    sleep(1).await;
    assert!(matches!(f.phase(&alice), Phase::Ready(_)), "adopted by reconciliation");
    assert_eq!(
        f.registry
            .get(&alice.slug)
            .and_then(|e| e.owner())
            .as_deref()
            .map(String::as_str),
        Some(&*alice.sub)
    );
    f.runtime.start_elsewhere(&bob.slug, &bob.sub); // another replica started bob's
    sleep(1).await;
    assert!(matches!(f.phase(&bob), Phase::Ready(_)), "adopted from the event");
    f.runtime.stop_elsewhere(&bob.slug); // an operator stopped it
    sleep(1).await;
    assert_eq!(f.phase(&bob), Phase::Stopped);
    // Adoption never creates or starts anything.
    assert_eq!(f.runtime.stops(), 0);
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_permanent_failure_is_not_retried_for_a_while() {
    let f = fixture("", Duration::ZERO);
    f.runtime.fail_with(Some(FailReason::ImageMissing));
    let alice = user("alice");
    for _ in 0..20 {
        let e = f
            .registry
            .ensure_ready(&alice, &alice.slug, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(
            matches!(e, RuntimeError::StartFailed(FailReason::ImageMissing)),
            "{e:?}"
        );
        assert!(e.is_permanent());
        sleep(1).await;
    }
    assert_eq!(f.runtime.ensures(), 1, "no storm of doomed starts");
    sleep(30).await;
    f.runtime.fail_with(None);
    f.ready(&alice, "fixed").await;
    assert_eq!(f.runtime.ensures(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_passing_failure_is_retried_after_a_short_back_off() {
    let f = fixture("", Duration::ZERO);
    f.runtime.fail_with(Some(FailReason::Exited));
    let alice = user("alice");
    for _ in 0..10 {
        let e = f
            .registry
            .ensure_ready(&alice, &alice.slug, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(e, RuntimeError::StartFailed(FailReason::Exited)), "{e:?}");
        assert!(!e.is_permanent());
        tokio::time::sleep(Duration::from_millis(250)).await; // the starting page's poll
    }
    assert_eq!(f.runtime.ensures(), 1, "one attempt per back-off window");
    f.runtime.fail_with(None);
    sleep(3).await;
    f.ready(&alice, "retried").await;
    assert_eq!(f.runtime.ensures(), 2);
}

#[tokio::test(start_paused = true)]
async fn max_running_refuses_one_more_with_capacity() {
    let f = fixture("max_running = 1", Duration::ZERO);
    let (alice, bob) = (user("alice"), user("bob"));
    f.ready(&alice, "ready").await;
    let e = f
        .registry
        .ensure_ready(&bob, &bob.slug, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(e, RuntimeError::AtCapacity(..)), "{e:?}");
    f.registry.stop(&alice, &alice.slug).await.expect("stopping");
    sleep(6).await; // past the drain, and past the refusal's back-off
    f.ready(&bob, "room now").await;
}

#[tokio::test(start_paused = true)]
async fn nobody_uses_or_sees_another_users_workspace() {
    let f = fixture("", Duration::ZERO);
    let (alice, mallory) = (user("alice"), user("mallory"));
    let nobody = f
        .registry
        .ensure_ready(&mallory, &alice.slug, Duration::from_secs(1))
        .await;
    assert!(matches!(nobody, Err(RuntimeError::NoSuchWorkspace)), "{nobody:?}");
    f.ready(&alice, "ready").await;
    assert_eq!(f.registry.gate(&mallory, &alice.slug), Gate::Forbidden);
    for refused in [
        f.registry
            .ensure_ready(&mallory, &alice.slug, Duration::from_secs(1))
            .await
            .map(drop),
        f.registry.status(&mallory, &alice.slug).await.map(drop),
        f.registry.recent_logs(&mallory, &alice.slug).await.map(drop),
        f.registry.stop(&mallory, &alice.slug).await,
    ] {
        assert!(matches!(refused, Err(RuntimeError::NotOwner)), "{refused:?}");
    }
    assert!(matches!(f.phase(&alice), Phase::Ready(_)));
    // An admin may.
    let admin = Identity::new("auth0|root", "root", None, true, u64::MAX, vec![]).expect("an identity");
    f.registry
        .status(&admin, &alice.slug)
        .await
        .expect("admins see every workspace");
}

#[tokio::test(start_paused = true)]
async fn status_follows_the_clock() {
    let f = fixture("idle_timeout = \"10m\"", Duration::from_secs(4));
    let alice = user("alice");
    f.registry.start(&alice, &alice.slug).await.expect("starting");
    let starting = f.registry.status(&alice, &alice.slug).await.expect("status");
    assert_eq!(starting.state, "starting");
    sleep(5).await;
    sleep(90).await;
    let running = f.registry.status(&alice, &alice.slug).await.expect("status");
    assert_eq!(running.state, "running");
    assert_eq!(running.running_for_secs, Some(91));
    // Used last when it became ready, 91 s ago.
    assert_eq!(running.idle_stop_in_secs, Some(600 - 91));
}

#[tokio::test(start_paused = true)]
async fn shutdown_abandons_spawns_and_never_stops_workspaces() {
    let f = fixture("", Duration::from_secs(60));
    let (alice, bob) = (user("alice"), user("bob"));
    f.registry
        .ensure_ready(&alice, &alice.slug, Duration::from_secs(61))
        .await
        .expect("ready");
    f.registry.start(&bob, &bob.slug).await.expect("starting");
    f.registry.shutdown().await;
    assert_eq!(f.phase(&bob), Phase::Failed(FailReason::ShuttingDown));
    assert!(matches!(f.phase(&alice), Phase::Ready(_)));
    assert_eq!(f.runtime.stops(), 0);
    assert!(f.runtime.is_running(&alice.slug));
}

#[tokio::test(start_paused = true)]
async fn a_stop_withdraws_the_route_at_once_and_stops_after_the_drain() {
    let f = fixture("drain_grace = \"5s\"", Duration::ZERO);
    let alice = user("alice");
    f.ready(&alice, "ready").await;
    f.registry.stop(&alice, &alice.slug).await.expect("stopping");
    assert!(matches!(f.phase(&alice), Phase::Draining(_)), "{:?}", f.phase(&alice));
    assert!(f.registry.ready().is_empty());
    let status = f.registry.status(&alice, &alice.slug).await.expect("status");
    assert_eq!(status.message, "Stopping… (finishing the requests in flight)");
    sleep(6).await;
    assert_eq!(f.phase(&alice), Phase::Stopped);
    assert_eq!(f.runtime.stops(), 1);
    // A restart drains, stops and starts again.
    f.ready(&alice, "ready again").await;
    f.registry.restart(&alice, &alice.slug).await.expect("restarting");
    sleep(1).await;
    assert!(matches!(f.phase(&alice), Phase::Ready(_)));
    assert_eq!(f.runtime.stops(), 2);
}
