//! A fleet on the real engine: three `roost serve` processes sharing a real
//! `redis-server`, behind a real Traefik that load-balances roost's
//! forwardAuth address, its HTTP provider endpoint and its fallback proxy
//! across them. A herd of new users spread over the replicas makes exactly
//! one container each with no error (a client told "starting, retry after
//! N s" would ask again, as HTTP clients do; here none needs to), and every replica renders the same
//! route table, byte for byte; use seen by one replica keeps a workspace
//! alive while another holds the reaper's lease; a replica killed with
//! SIGKILL mid-spawn costs the user nothing but time.

mod support;

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use support::docker::{self, docker_lines, Cleanup};
use support::http::TestClient;
use support::issuer::TestIssuer;
use support::redis_server::Redis;
use support::replica::{self, Ports, Replica};
use support::roost::{workspace_host, AUDIENCE, DOMAIN};
use support::tokens::{auth0_claims, sign};

/// The tests here load the engine and the two cores hard and measure
/// time-bound behaviour (idleness): one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What every test here starts from: the engine (images built), a Redis,
/// an issuer, ports for `n` replicas and the config they share (listeners
/// are per replica).
struct Setup {
    cleanup: Cleanup,
    redis: Redis,
    issuer: TestIssuer,
    ports: Ports,
    config: String,
}

async fn setup(name: &str, n: usize, image: &str, workspace: &str) -> Option<Setup> {
    let cleanup = Cleanup::new(name);
    docker::engine(&cleanup).await?;
    let redis = Redis::start().await?;
    let issuer = TestIssuer::start(&["k1"]).await;
    let ports = Ports::pick(n);
    let config = format!(
        "[server]\ntrusted_hops = 1\n[oidc]\nissuer = \"{}\"\naudience = \"{AUDIENCE}\"\n\
         [routing]\ndomain = \"{DOMAIN}\"\nscheme = \"http\"\n{}\
         [workspace]\nimage = \"{image}\"\n{}\n{workspace}\n",
        issuer.url,
        ports.shared_toml(),
        cleanup.labels_toml()
    );
    Some(Setup {
        cleanup,
        redis,
        issuer,
        ports,
        config,
    })
}

impl Setup {
    /// Replica `i`, on the shared Redis.
    async fn replica(&self, name: &str, i: usize) -> Replica {
        Replica::start(
            name,
            i,
            &self.ports,
            &self.config,
            &[("ROOST_REDIS_URL", self.redis.url())],
        )
        .await
    }

    fn token(&self, user: &str) -> String {
        sign("k1", Some("k1"), &auth0_claims(&self.issuer.url, AUDIENCE, user))
    }
}

/// `GET /auth` on one replica, as Traefik sends it for `host` (one hop
/// through the load balancer in `X-Forwarded-For`).
async fn auth(client: &TestClient, replica: &Replica, host: &str, token: &str) -> support::http::Reply {
    let bearer = format!("Bearer {token}");
    client
        .get(
            &replica.url("/auth"),
            &[
                ("x-forwarded-host", host),
                ("x-forwarded-proto", "http"),
                ("x-forwarded-method", "GET"),
                ("x-forwarded-uri", "/"),
                ("x-forwarded-for", "198.51.100.9, 127.0.0.1"),
                ("authorization", &bearer),
            ],
        )
        .await
}

fn containers_named(cleanup: &Cleanup, name: &str) -> Vec<String> {
    docker_lines(&[
        "ps",
        "-a",
        "--filter",
        &cleanup.filter(),
        "--filter",
        &format!("name=^/{name}$"),
        "--format",
        "{{.Names}} {{.State}}",
    ])
}

#[tokio::test]
async fn a_herd_over_three_replicas_makes_one_container_each_and_one_route_table() {
    let _serial = ONE_AT_A_TIME.lock().await;
    // No HEALTHCHECK: roost probes over HTTP. (The test image's check runs
    // every 250 ms: 100 of them are 400 engine execs a second, which is
    // what this machine's two cores would then measure.)
    let workspace = "idle_timeout = \"10m\"\nstart_timeout = \"120s\"\nmax_concurrent_spawns = 16\nmax_running = 200";
    let Some(s) = setup("fleet-herd", 3, "roost-echo:nohealth", workspace).await else {
        return;
    };
    let mut fleet = Vec::new();
    for i in 0..3 {
        fleet.push(s.replica("herd", i).await);
    }
    let Some((traefik, _lb)) = replica::traefik(&s.ports).await else {
        return;
    };

    // 100 users, 10 concurrent first requests each, all at once through
    // Traefik (which spreads them over the replicas).
    let users: Vec<String> = (0..100).map(|i| format!("h{i}-{}", s.cleanup.id)).collect();
    let client = TestClient::default();
    let began = Instant::now();
    let requests = users.iter().flat_map(|user| {
        let bearer = format!("Bearer {}", s.token(user));
        let host = workspace_host(user);
        let url = format!("http://{}/", traefik.web);
        let client = client.clone();
        (0..10).map(move |_| {
            let (client, url, host, bearer) = (client.clone(), url.clone(), host.clone(), bearer.clone());
            async move {
                // As any HTTP client of a starting workspace does: a 503
                // with Retry-After is "not yet", asked again after it.
                let deadline = Instant::now() + Duration::from_secs(240);
                let mut waits = 0u32;
                loop {
                    let req = http::Request::get(&url)
                        .header("host", &host)
                        .header("authorization", &bearer)
                        .body(Default::default())
                        .unwrap();
                    match client.send(req).await {
                        Ok(r) if r.status == 200 && r.body.contains("x-roost-user") => return (None, waits),
                        Ok(r)
                            if r.status == 503
                                && r.body == "your workspace is starting"
                                && Instant::now() < deadline =>
                        {
                            let after = r
                                .header("retry-after")
                                .and_then(|s| s.parse().ok())
                                .expect("a Retry-After");
                            waits += 1;
                            tokio::time::sleep(Duration::from_secs(after)).await;
                        }
                        Ok(r) => {
                            let body: String = r.body.chars().take(120).collect();
                            return (Some(format!("{host}: {} {body}", r.status)), waits);
                        }
                        Err(e) => return (Some(format!("{host}: {e}")), waits),
                    }
                }
            }
        })
    });
    let answers = join_all(requests).await;
    let took = began.elapsed();
    let retried = answers.iter().filter(|(_, waits)| *waits > 0).count();
    let errors: Vec<String> = answers.into_iter().filter_map(|(e, _)| e).collect();
    assert!(
        errors.is_empty(),
        "{} of 1000 failed: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    let made = s.cleanup.containers();
    assert_eq!(made.len(), 100, "one container per user: {made:?}");
    eprintln!("herd: 1000 first requests of 100 users through 3 replicas answered in {took:?} ({retried} asked again after a 503 + Retry-After)");
    for i in 0..3 {
        let log =
            std::fs::read_to_string(support::project_dir().join(format!("target/test-artifacts/herd-replica-{i}.log")))
                .unwrap();
        assert!(
            !log.contains("workspace failed to start"),
            "replica {i} failed a start:\n{log}"
        );
    }

    // Every replica renders the same table, byte for byte, with every workspace.
    let tables = support::eventually(Duration::from_secs(60), "identical route tables", || {
        let client = client.clone();
        let urls: Vec<String> = fleet.iter().map(|r| r.url("/traefik")).collect();
        async move {
            let mut bodies = Vec::new();
            for url in &urls {
                bodies.push(client.get(url, &[]).await.body);
            }
            let all_there = bodies[0].matches("\"ws-h").count() >= 100;
            (all_there && bodies.iter().all(|b| *b == bodies[0])).then_some(bodies)
        }
    })
    .await;
    assert!(tables[0].contains(&format!("ws-{}", users[99])));
    drop(traefik);
    for r in fleet {
        r.kill().await;
    }
}

#[tokio::test]
async fn use_seen_by_one_replica_keeps_a_workspace_that_another_reaps() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let workspace = "idle_timeout = \"6s\"\ndrain_grace = \"1s\"\nstop_timeout = \"1s\"";
    let Some(s) = setup("fleet-lease", 2, "roost-echo:test", workspace).await else {
        return;
    };
    // A starts alone and takes the reaper's lease; B never gets it while A lives.
    let a = s.replica("lease", 0).await;
    let conn = s.redis.connection().await;
    let holder = |conn: redis::aio::MultiplexedConnection| async move {
        let mut conn = conn;
        redis::cmd("GET")
            .arg("roost:roost:lease:reaper")
            .query_async::<Option<String>>(&mut conn)
            .await
            .ok()
            .flatten()
    };
    let a_id = support::eventually(Duration::from_secs(20), "replica A to hold the reaper's lease", || {
        let conn = conn.clone();
        async move { holder(conn).await }
    })
    .await;
    let b = s.replica("lease", 1).await;

    // Dee works through B only: B's /auth touches her workspace; the
    // container itself sends nothing, so A sees no use of its own.
    let dee = format!("dee-{}", s.cleanup.id);
    let (host, dee_token) = (workspace_host(&dee), s.token(&dee));
    let client = TestClient::default();
    support::eventually(Duration::from_secs(60), "dee's workspace through B", || async {
        (auth(&client, &b, &host, &dee_token).await.status == 200).then_some(())
    })
    .await;
    let name = format!("roost-{dee}");
    let started_at = docker::inspect(&name, "{{.State.StartedAt}}");
    let used_until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < used_until {
        assert_eq!(auth(&client, &b, &host, &dee_token).await.status, 200);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(
        containers_named(&s.cleanup, &name),
        vec![format!("{name} running")],
        "in use through B for 20 s (idle_timeout 6 s): A kept it"
    );
    assert_eq!(
        docker::inspect(&name, "{{.State.StartedAt}}"),
        started_at,
        "never stopped and woken again meanwhile"
    );
    assert_eq!(holder(conn.clone()).await, Some(a_id), "A held the lease all along");
    // Nobody uses it any more: A stops it (so A does reap).
    support::eventually(Duration::from_secs(30), "A to stop the idle workspace", || async {
        (containers_named(&s.cleanup, &name) == vec![format!("{name} exited")]).then_some(())
    })
    .await;
    a.kill().await;
    b.kill().await;
}

#[tokio::test]
async fn a_replica_killed_mid_spawn_costs_the_user_only_time() {
    let _serial = ONE_AT_A_TIME.lock().await;
    // The workspace takes 4 s to answer: time to kill A while it spawns.
    let workspace = "env = { ECHO_START_DELAY_MS = \"4000\" }\nauth_wait = \"1s\"";
    let Some(s) = setup("fleet-kill", 2, "roost-echo:test", workspace).await else {
        return;
    };
    let a = s.replica("kill", 0).await;
    let b = s.replica("kill", 1).await;
    let eve = format!("eve-{}", s.cleanup.id);
    let (host, eve_token) = (workspace_host(&eve), s.token(&eve));
    let name = format!("roost-{eve}");
    let client = TestClient::default();
    // Eve's first request reaches A, which creates and starts her container...
    let first = auth(&client, &a, &host, &eve_token).await;
    assert_ne!(first.status, 200, "not ready within auth_wait: {}", first.body);
    support::eventually(Duration::from_secs(30), "A to start eve's container", || async {
        (containers_named(&s.cleanup, &name) == vec![format!("{name} running")]).then_some(())
    })
    .await;
    // ... and dies before it is ready.
    a.kill().await;
    // Her next request goes through B, which completes the start.
    let began = Instant::now();
    support::eventually(Duration::from_secs(60), "eve's workspace through B", || async {
        (auth(&client, &b, &host, &eve_token).await.status == 200).then_some(())
    })
    .await;
    eprintln!("after the kill, ready through B in {:?}", began.elapsed());
    assert_eq!(
        containers_named(&s.cleanup, &name),
        vec![format!("{name} running")],
        "one container, no orphan"
    );
    let table = client.get(&b.url("/traefik"), &[]).await.body;
    assert!(table.contains(&format!("\"ws-{eve}\"")), "B routes it: {table}");
    b.kill().await;
}
