//! The paused tier over the in-memory runtime, on tokio's paused clock:
//! pause at `pause_after`, stop at `idle_timeout`, thaw on a request or on
//! traffic that reached the frozen container, `max_paused`, `max_running`,
//! and pauses made elsewhere.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{fixture, sleep, user, Fixture};
use crate::auth::Identity;
use crate::workspace::registry::Phase;
use crate::workspace::runtime::RuntimeError;
use crate::workspace::Gate;

/// Paused after 20 s idle (the reaper ticks every 5 s), stopped after 60 s.
const TIERS: &str = "pause_after = \"20s\"\nidle_timeout = \"60s\"\ndrain_grace = \"5s\"";

fn paused(f: &Fixture, who: &Identity) -> bool {
    matches!(f.phase(who), Phase::Paused(_)) && f.runtime.is_paused(&who.slug)
}

/// A running fixture (tiers of [`TIERS`]) in which alice's workspace has
/// been idle long enough to be paused.
async fn alice_paused() -> (Fixture, CancellationToken, Identity) {
    let f = fixture(TIERS, Duration::ZERO);
    let stop = f.run_background();
    let alice = user("alice");
    f.ready(&alice, "ready").await;
    sleep(26).await;
    assert!(paused(&f, &alice));
    (f, stop, alice)
}

#[tokio::test(start_paused = true)]
async fn an_idle_workspace_is_paused_first_and_stopped_at_its_idle_timeout() {
    let f = fixture(TIERS, Duration::ZERO);
    let stop = f.run_background();
    let alice = user("alice");
    f.ready(&alice, "ready").await;
    sleep(15).await;
    assert!(matches!(f.phase(&alice), Phase::Ready(_)), "not idle for 20 s yet");
    // Bound: pause_after + one interval.
    sleep(20 + 5 - 15 + 1).await;
    assert!(paused(&f, &alice), "{:?}", f.phase(&alice));
    // Its route stays (`/auth` thaws it before a request passes).
    assert!(f.registry.ready().iter().any(|(slug, _)| **slug == *alice.slug));
    // Still idle: stopped at idle_timeout + one interval + drain_grace.
    sleep(60 + 5 + 5 - 26 + 1).await;
    assert_eq!(f.phase(&alice), Phase::Stopped);
    assert!(!f.runtime.is_running(&alice.slug));
    assert!(f.runtime.exists(&alice.slug), "the container (and volume) stay");
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_request_to_a_paused_workspace_thaws_it_without_a_start() {
    let f = fixture(TIERS, Duration::from_secs(3));
    let stop = f.run_background();
    let alice = user("alice");
    let first = f
        .registry
        .ensure_ready(&alice, &alice.slug, Duration::from_secs(10))
        .await;
    assert!(first.is_ok(), "{first:?}");
    sleep(26).await;
    assert!(paused(&f, &alice));
    let ensures = f.runtime.ensures();
    let before = tokio::time::Instant::now();
    let addr = f
        .registry
        .ensure_ready(&alice, &alice.slug, Duration::from_secs(1))
        .await;
    assert!(addr.is_ok(), "{addr:?}");
    assert!(before.elapsed() < Duration::from_secs(3), "thawed, not started");
    assert_eq!(f.runtime.ensures(), ensures, "no start");
    assert_eq!(f.runtime.thaws(), 1);
    assert!(matches!(f.phase(&alice), Phase::Ready(_)));
    assert!(!f.runtime.is_paused(&alice.slug));
    assert!(matches!(f.registry.gate(&alice, &alice.slug), Gate::Ready(_)));
    // The idle clock starts again from that request.
    sleep(15).await;
    assert!(matches!(f.phase(&alice), Phase::Ready(_)));
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn another_account_cannot_thaw_a_paused_workspace() {
    let (f, stop, alice) = alice_paused().await;
    let mallory = user("mallory");
    let refused = f
        .registry
        .ensure_ready(&mallory, &alice.slug, Duration::from_secs(1))
        .await;
    assert!(matches!(refused, Err(RuntimeError::NotOwner)), "{refused:?}");
    assert!(paused(&f, &alice), "still paused");
    assert_eq!(f.runtime.thaws(), 0);
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn traffic_that_reaches_a_paused_workspace_thaws_it() {
    let (f, stop, alice) = alice_paused().await;
    // A WebSocket's message arrives: the frozen app's kernel acknowledges it.
    f.runtime.send(&alice.slug, 66);
    sleep(5 + 1).await;
    assert!(matches!(f.phase(&alice), Phase::Ready(_)), "{:?}", f.phase(&alice));
    assert!(!f.runtime.is_paused(&alice.slug));
    // ... and the idle clock starts again from there (30 s): paused again
    // at 50 s, and ARP answers while paused are no use.
    sleep(24).await;
    assert!(paused(&f, &alice), "{:?}", f.phase(&alice));
    f.runtime.arp(&alice.slug);
    sleep(6).await;
    assert!(paused(&f, &alice), "ARP does not thaw it");
    // Not stopped at 60 s from the first request: 90 s from the thaw.
    assert!(f.runtime.is_running(&alice.slug));
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn at_most_max_paused_stay_paused_and_the_longest_paused_stops_first() {
    let f = fixture(&format!("{TIERS}\nmax_paused = 2"), Duration::ZERO);
    let stop = f.run_background();
    let users: Vec<_> = ["alice", "bob", "carol"].into_iter().map(user).collect();
    for who in &users {
        f.ready(who, "ready").await;
        sleep(6).await;
    }
    // alice paused at ~25 s, bob ~30 s, carol ~35 s: one too many.
    sleep(30).await;
    assert_eq!(f.phase(&users[0]), Phase::Stopped, "the longest paused is stopped");
    assert!(paused(&f, &users[1]));
    assert!(paused(&f, &users[2]));
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn paused_workspaces_count_toward_max_running_and_make_room() {
    let f = fixture(&format!("{TIERS}\nmax_running = 1"), Duration::ZERO);
    let stop = f.run_background();
    let (alice, bob) = (user("alice"), user("bob"));
    f.ready(&alice, "ready").await;
    sleep(26).await;
    assert!(paused(&f, &alice));
    let refused = f.registry.ensure_ready(&bob, &bob.slug, Duration::from_secs(1)).await;
    assert!(matches!(refused, Err(RuntimeError::AtCapacity(..))), "{refused:?}");
    // alice's workspace is stopped (drained) to make room; bob's retry gets in.
    sleep(5 + 1).await;
    assert_eq!(f.phase(&alice), Phase::Stopped);
    sleep(2).await;
    f.ready(&bob, "after the paused one made room").await;
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn pauses_made_elsewhere_are_followed() {
    let f = fixture(TIERS, Duration::ZERO);
    let stop = f.run_background();
    let alice = user("alice");
    f.ready(&alice, "ready").await;
    f.runtime.freeze_elsewhere(&alice.slug, true);
    sleep(1).await;
    assert!(paused(&f, &alice), "{:?}", f.phase(&alice));
    assert_eq!(f.registry.gate(&alice, &alice.slug), Gate::Pending);
    f.runtime.freeze_elsewhere(&alice.slug, false);
    sleep(1).await;
    assert!(matches!(f.phase(&alice), Phase::Ready(_)));
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_paused_workspace_is_stopped_on_request_thawed_first() {
    let (f, stop, alice) = alice_paused().await;
    let stopped = f.registry.stop(&alice, &alice.slug).await;
    assert!(stopped.is_ok(), "{stopped:?}");
    assert_eq!(f.phase(&alice).route(), None, "the route is withdrawn at once");
    sleep(5 + 1).await;
    assert_eq!(f.phase(&alice), Phase::Stopped);
    assert_eq!(f.runtime.thaws(), 1, "thawed before the stop");
    stop.cancel();
}
