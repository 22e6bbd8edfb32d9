//! Tenant isolation on the real engine, behind the real Traefik, in both
//! address modes: from inside mallory's workspace (the probe image,
//! `examples/probe.rs`) no connection succeeds to alice's workspace (by
//! address or published port), to roost's listeners, to Traefik's
//! entrypoint or API, to the engine (TCP or socket), or, when isolated, to
//! link-local addresses; Traefik and the host still reach both workspaces.
//!
//! Link-local (169.254.169.254) is only tried in the isolated mode, where
//! the engine drops the packet on the host; never from the host itself or
//! with egress on.

mod support;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use support::docker;
use support::http::{Reply, TestClient};
use support::roost::{workspace_host, TestRoost};
use support::traefik::Traefik;
use support::workspace::{container, World};

const PROBE_IMAGE: &str = "roost-probe:test";

/// roost (with the engine of `w`) and Traefik in front of it, and the ports
/// roost listens on; the one place this test touches [`TestRoost`].
async fn start_stack(w: &World, workspace_extra: &str) -> Option<(TestRoost, Traefik, Vec<u16>)> {
    let config = w
        .config(workspace_extra)
        .replace("image = \"roost-echo:test\"", &format!("image = \"{PROBE_IMAGE}\""));
    assert!(config.contains(PROBE_IMAGE), "the test config changed shape:\n{config}");
    let roost = TestRoost::start_with(&config, Some(w.runtime.clone())).await;
    roost.wait_ready().await;
    let traefik = Traefik::start(&roost.provider_base()).await?;
    let ports = vec![roost.addr.port(), roost.internal.port()];
    Some((roost, traefik, ports))
}

/// `GET path` on `user`'s workspace through Traefik, with `user`'s token.
async fn via_traefik(traefik: &Traefik, w: &World, user: &str, path: &str) -> Reply {
    let host = workspace_host(user);
    let bearer = format!("Bearer {}", w.token(user));
    TestClient::default()
        .get(
            &format!("http://{}{path}", traefik.web),
            &[("host", host.as_str()), ("authorization", bearer.as_str())],
        )
        .await
}

/// What mallory's probe says about connecting to each of `targets`.
async fn connect_from(traefik: &Traefik, w: &World, user: &str, targets: &[String]) -> BTreeMap<String, String> {
    let query: Vec<String> = targets
        .iter()
        .map(|t| format!("to={}", support::http::urlencode(t)))
        .collect();
    let r = via_traefik(traefik, w, user, &format!("/connect?{}", query.join("&"))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body))
}

/// The host's IPv4 addresses but loopback (`ip -4 -o addr`).
fn host_ipv4() -> Vec<String> {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
        .expect("ip");
    let text = String::from_utf8_lossy(&out.stdout);
    let addrs: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "inet").nth(1))
        .filter_map(|cidr| cidr.split('/').next())
        .filter(|ip| !ip.starts_with("127."))
        .map(str::to_string)
        .collect();
    assert!(!addrs.is_empty(), "no host address found in:\n{text}");
    addrs
}

fn tcp_open(addr: &str) -> bool {
    let addr: SocketAddr = addr.parse().unwrap();
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

/// `/proc/net/route`'s gateway field (hex, little-endian) as an address.
fn route_gateway(hex: &str) -> String {
    let n = u32::from_str_radix(hex, 16).unwrap_or(0);
    std::net::Ipv4Addr::from(n.to_le_bytes()).to_string()
}

async fn no_workspace_reaches_another(name: &str, published: bool) {
    let Some(w) = World::new(name).await else { return };
    let extra = if published {
        "address = \"published\"\negress = true"
    } else {
        ""
    };
    let Some((_roost, traefik, roost_ports)) = start_stack(&w, extra).await else {
        return;
    };
    let (alice, mallory) = (w.user("alice"), w.user("mallory"));

    // Both start through Traefik, then Traefik routes to each directly.
    for user in [&alice, &mallory] {
        support::eventually(Duration::from_secs(90), "the workspace through Traefik", || async {
            (via_traefik(&traefik, &w, user, "/healthz").await.status == 200).then_some(())
        })
        .await;
        let router = format!("ws-{user}");
        support::eventually(Duration::from_secs(20), "Traefik's direct route", || async {
            traefik.has_router(&router).await.then_some(())
        })
        .await;
        let r = via_traefik(&traefik, &w, user, "/healthz").await;
        assert_eq!(r.status, 200, "Traefik reaches {user}'s workspace: {}", r.body);
    }

    let network = w.cleanup.network();
    let alice_ip = docker::inspect(
        &container(&alice),
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
    );
    let gateway = docker::inspect(&network, "{{range .IPAM.Config}}{{.Gateway}}{{end}}");
    assert!(!alice_ip.is_empty() && !gateway.is_empty(), "{alice_ip:?} {gateway:?}");
    let mut hosts = vec![gateway.clone()];
    hosts.extend(host_ipv4().into_iter().filter(|h| *h != gateway));

    let mut targets = vec![format!("{alice_ip}:8080")];
    let mut host_ports = roost_ports.clone();
    for entrypoint in [&traefik.web, &traefik.api] {
        host_ports.push(entrypoint.rsplit_once(':').unwrap().1.parse().unwrap());
    }
    let published_port = published.then(|| {
        docker::inspect(
            &container(&alice),
            "{{(index (index .NetworkSettings.Ports \"8080/tcp\") 0).HostPort}}",
        )
    });
    if let Some(port) = &published_port {
        host_ports.push(port.parse().unwrap());
    }
    for host in &hosts {
        targets.extend(host_ports.iter().map(|p| format!("{host}:{p}")));
    }
    targets.extend([format!("{gateway}:2375"), format!("{gateway}:2376")]);
    if !published {
        targets.push("169.254.169.254:80".into());
    }
    let control = "127.0.0.1:8080".to_string();
    targets.push(control.clone());

    let outcomes = connect_from(&traefik, &w, &mallory, &targets).await;
    eprintln!("from mallory's workspace ({name}): {outcomes:#?}");
    assert_eq!(outcomes.len(), targets.len(), "{outcomes:#?}");
    assert_eq!(
        outcomes[&control], "open",
        "the probe reaches its own port (else it proves nothing)"
    );
    let open: Vec<_> = outcomes
        .iter()
        .filter(|(t, outcome)| **t != control && outcome.as_str() == "open")
        .collect();
    assert!(open.is_empty(), "reachable from mallory's workspace: {open:?}");

    let r = via_traefik(&traefik, &w, &mallory, "/unix?path=/var/run/docker.sock").await;
    let sock: BTreeMap<String, String> = serde_json::from_str(&r.body).unwrap();
    assert_ne!(sock["/var/run/docker.sock"], "open");

    if !published {
        // This engine gives containers on an internal network a default
        // route all the same; it leads only to the host, whose forwarding
        // rules drop whatever leaves the network (link-local above timed out).
        let routes = via_traefik(&traefik, &w, &mallory, "/routes").await.body;
        for line in routes.lines().skip(1).filter(|l| !l.trim().is_empty()) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(fields[0], "eth0", "one interface only: {routes}");
            if fields[1] == "00000000" {
                assert_eq!(route_gateway(fields[2]), gateway, "{routes}");
            }
        }
    }

    // The host reaches alice's workspace (Traefik's and roost's view).
    assert!(tcp_open(&format!("{alice_ip}:8080")), "host → {alice_ip}:8080");
    if let Some(port) = &published_port {
        assert!(tcp_open(&format!("127.0.0.1:{port}")), "host → 127.0.0.1:{port}");
    }
    let r = TestClient::default()
        .get(&format!("http://{alice_ip}:8080/healthz"), &[])
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn no_workspace_reaches_another_on_the_isolated_network() {
    no_workspace_reaches_another("iso-net", false).await;
}

#[tokio::test]
async fn no_workspace_reaches_another_with_published_ports_and_egress() {
    no_workspace_reaches_another("iso-pub", true).await;
}
