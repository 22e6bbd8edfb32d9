//! Registries sharing one store and one engine, as replicas do: the reaper's
//! lease, activity one replica saw keeping a workspace the other reaps, and
//! admission counted across replicas.

use std::sync::Arc;
use std::time::Duration;

use super::{engine, registry_on, sleep, user};
use crate::clock::TokioClock;
use crate::store::{Embedded, Store};
use crate::workspace::memory::MemoryRuntime;
use crate::workspace::registry::{run_sharing, Phase, Registry};
use crate::workspace::{events, reaper};

struct Fleet {
    runtime: Arc<MemoryRuntime>,
    replicas: Vec<Arc<Registry>>,
    stop: tokio_util::sync::CancellationToken,
}

/// `n` registries over one in-memory engine and one store, each with its
/// reaper, event follower and activity writer running.
fn fleet(n: usize, extra: &str, start_delay: Duration) -> Fleet {
    let clock = Arc::new(TokioClock::new());
    let runtime = engine(start_delay, clock.clone());
    let store: Arc<dyn Store> = Arc::new(Embedded::in_memory());
    let stop = tokio_util::sync::CancellationToken::new();
    let replicas = (0..n)
        .map(|_| {
            let registry = registry_on(runtime.clone(), clock.clone(), extra, store.clone());
            tokio::spawn(reaper::run(registry.clone(), stop.child_token()));
            tokio::spawn(events::follow(registry.clone(), stop.child_token()));
            tokio::spawn(run_sharing(registry.clone(), stop.child_token()));
            registry
        })
        .collect();
    Fleet {
        runtime,
        replicas,
        stop,
    }
}

#[tokio::test(start_paused = true)]
async fn use_seen_only_by_another_replica_keeps_a_workspace_and_then_it_stops() {
    // idle 60 s: a pass every 15 s; drain 5 s.
    let f = fleet(2, "idle_timeout = \"60s\"\ndrain_grace = \"5s\"", Duration::ZERO);
    let (a, b) = (&f.replicas[0], &f.replicas[1]);
    let alice = user("alice");
    sleep(1).await; // the reapers' first passes: A took the lease first
    a.ensure_ready(&alice, &alice.slug, Duration::from_secs(1))
        .await
        .unwrap();
    sleep(1).await; // B adopts it from the engine's event
    assert!(matches!(b.gate(&alice, &alice.slug), crate::workspace::Gate::Ready(_)));
    // Five minutes of requests through B only.
    for _ in 0..30 {
        sleep(10).await;
        assert!(
            matches!(b.gate(&alice, &alice.slug), crate::workspace::Gate::Ready(_)),
            "kept while used through B"
        );
    }
    assert_eq!(f.runtime.stops(), 0);
    // Nobody uses it: stopped within idle + a pass + the drain (+ a second's write).
    sleep(60 + 15 + 5 + 1 + 1).await;
    assert_eq!(f.runtime.stops(), 1);
    assert!(!f.runtime.is_running(&alice.slug));
    f.stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn one_reaper_in_the_fleet() {
    let f = fleet(3, "idle_timeout = \"60s\"\ndrain_grace = \"1s\"", Duration::ZERO);
    let alice = user("alice");
    sleep(1).await;
    f.replicas[1]
        .ensure_ready(&alice, &alice.slug, Duration::from_secs(1))
        .await
        .unwrap();
    sleep(120).await;
    assert_eq!(f.runtime.stops(), 1, "stopped once, by the lease holder alone");
    f.stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn spawn_admission_counts_across_replicas() {
    // One start at a time in the fleet; each takes 10 s.
    let f = fleet(2, "max_concurrent_spawns = 1", Duration::from_secs(10));
    let bob = user("bob");
    let (a, b) = (f.replicas[0].clone(), f.replicas[1].clone());
    let first = tokio::spawn(async move {
        let alice = user("alice");
        a.ensure_ready(&alice, &alice.slug, Duration::from_secs(60)).await
    });
    sleep(1).await;
    let began = tokio::time::Instant::now();
    b.ensure_ready(&bob, &bob.slug, Duration::from_secs(60)).await.unwrap();
    assert!(first.await.unwrap().is_ok());
    let waited = began.elapsed();
    assert!(
        waited >= Duration::from_secs(18),
        "bob's start waited for alice's slot: {waited:?}"
    );
    assert!(matches!(
        f.replicas[0].get(&bob.slug).map(|e| e.phase()),
        Some(Phase::Ready(_))
    ));
    f.stop.cancel();
}
