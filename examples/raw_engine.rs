//! The raw-engine side of `benches/spawn.sh`: what it costs to make a
//! workspace straight through the Docker API, with nothing of roost in the
//! way. Creates the same volume and container roost would (limits,
//! hardening, loopback port), starts it, polls its port in a tight loop
//! until it answers HTTP 200, then stops and starts it again the same way.
//! Prints `spawn_ms wake_ms` for each of N rounds, and removes what it made.
//!
//! `cargo run --release --example raw_engine -- IMAGE N LABEL`
//!
//! With `--concurrent` (the raw side of `benches/herd.sh`), all N are made
//! at once, each shaped as roost makes one with its default
//! `address = "network"`: on a bridge network of their own (internal,
//! inter-container traffic off, made before the clock starts), no published
//! port, a tmpfs at `/tmp`, readiness polled at the container's address with
//! roost's back-off (2 ms doubling to 50 ms). Prints each one's
//! `spawn_ms` (volume + create + start + first HTTP 200, from the common
//! start), then `wall <ms>` (the last one's), and removes what it made.
//!
//! `cargo run --release --example raw_engine -- --concurrent IMAGE N LABEL`

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, HostConfig, NetworkCreateRequest, PortBinding, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, RemoveContainerOptions, RemoveVolumeOptions,
    StartContainerOptions, StopContainerOptions,
};
use bollard::Docker;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn answers_200(addr: SocketAddr) -> bool {
    let Ok(mut tcp) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    if tcp
        .write_all(b"GET / HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    tcp.read_exact(&mut head).await.is_ok() && &head[..12] == b"HTTP/1.1 200"
}

async fn port(docker: &Docker, id: &str) -> anyhow::Result<SocketAddr> {
    let c = docker.inspect_container(id, None::<InspectContainerOptions>).await?;
    let port = c
        .network_settings
        .and_then(|n| n.ports)
        .and_then(|p| p.get("8080/tcp").cloned().flatten())
        .and_then(|b| b.first().and_then(|b| b.host_port.clone()))
        .ok_or_else(|| anyhow::anyhow!("no published port"))?;
    Ok(SocketAddr::from(([127, 0, 0, 1], port.parse()?)))
}

/// Makes the volume and the container roost would (`host` says how it is
/// reached, hardening and limits added here); returns the container's id.
async fn create(
    docker: &Docker,
    image: &str,
    name: &str,
    labels: &HashMap<String, String>,
    host: HostConfig,
) -> anyhow::Result<String> {
    let volume = format!("{name}-data");
    docker
        .create_volume(VolumeCreateRequest {
            name: Some(volume.clone()),
            labels: Some(labels.clone()),
            ..Default::default()
        })
        .await?;
    let host = HostConfig {
        binds: Some(vec![format!("{volume}:/data")]),
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges:true".into()]),
        privileged: Some(false),
        pids_limit: Some(1024),
        nano_cpus: Some(1_000_000_000),
        memory: Some(1 << 30),
        ..host
    };
    let options = CreateContainerOptions {
        name: Some(name.to_string()),
        ..Default::default()
    };
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        env: Some(vec![
            "ROOST_USER=raw".into(),
            "ROOST_WORKSPACE=raw".into(),
            "ROOST_VOLUME=/data".into(),
        ]),
        labels: Some(labels.clone()),
        exposed_ports: Some(vec!["8080/tcp".into()]),
        host_config: Some(host),
        ..Default::default()
    };
    Ok(docker.create_container(Some(options), body).await?.id)
}

async fn start_and_wait(docker: &Docker, id: &str) -> anyhow::Result<()> {
    docker.start_container(id, None::<StartContainerOptions>).await?;
    let addr = port(docker, id).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !answers_200(addr).await {
        anyhow::ensure!(Instant::now() < deadline, "never answered");
    }
    Ok(())
}

/// One workspace of the concurrent mode, made the way roost makes it on
/// `network`: volume, create, start, then its address polled until it
/// answers 200. Returns the time from `t0` until then.
async fn spawn_on_network(
    docker: &Docker,
    image: &str,
    name: &str,
    network: &str,
    labels: &HashMap<String, String>,
    t0: Instant,
) -> anyhow::Result<Duration> {
    let host = HostConfig {
        memory_swap: Some(1 << 30),
        tmpfs: Some(HashMap::from([(
            "/tmp".to_string(),
            "rw,nosuid,nodev,size=268435456,mode=1777".to_string(),
        )])),
        readonly_rootfs: Some(false),
        network_mode: Some(network.to_string()),
        ..Default::default()
    };
    let id = create(docker, image, name, labels, host).await?;
    docker.start_container(&id, None::<StartContainerOptions>).await?;
    let c = docker.inspect_container(&id, None::<InspectContainerOptions>).await?;
    let ip: std::net::IpAddr = c
        .network_settings
        .and_then(|n| n.networks)
        .and_then(|n| n.get(network).and_then(|e| e.ip_address.clone()))
        .ok_or_else(|| anyhow::anyhow!("{name}: no address on {network}"))?
        .parse()?;
    let addr = SocketAddr::new(ip, 8080);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut backoff = Duration::from_millis(2);
    loop {
        let probe = tokio::time::timeout(Duration::from_millis(500), answers_200(addr)).await;
        if matches!(probe, Ok(true)) {
            return Ok(t0.elapsed());
        }
        anyhow::ensure!(Instant::now() < deadline, "{name} never answered");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(50));
    }
}

/// `--concurrent`: all `n` at once on a network of their own; prints each
/// one's spawn time and the wall time, then removes everything it made.
async fn concurrent(docker: Docker, image: String, n: usize, label: String) -> anyhow::Result<()> {
    let labels = HashMap::from([("roost-bench.run".to_string(), label.clone())]);
    let network = format!("raw-{label}");
    docker
        .create_network(NetworkCreateRequest {
            name: network.clone(),
            driver: Some("bridge".into()),
            internal: Some(true),
            enable_ipv6: Some(false),
            options: Some(HashMap::from([(
                "com.docker.network.bridge.enable_icc".to_string(),
                "false".to_string(),
            )])),
            labels: Some(labels.clone()),
            ..Default::default()
        })
        .await?;
    let names: Vec<String> = (0..n).map(|i| format!("raw-{label}-{i}")).collect();
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for name in &names {
        let (docker, image, name, network, labels) = (
            docker.clone(),
            image.clone(),
            name.clone(),
            network.clone(),
            labels.clone(),
        );
        tasks.spawn(async move { spawn_on_network(&docker, &image, &name, &network, &labels, t0).await });
    }
    let mut times = Vec::with_capacity(n);
    let mut failed = None;
    while let Some(done) = tasks.join_next().await {
        match done? {
            Ok(t) => times.push(t),
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    let wall = t0.elapsed();
    if failed.is_none() {
        for t in &times {
            println!("{}", t.as_millis());
        }
        println!("wall {}", wall.as_millis());
    }
    // Clean up whatever was made, even after a failure.
    let mut removals = tokio::task::JoinSet::new();
    for name in names {
        let docker = docker.clone();
        removals.spawn(async move {
            let remove = RemoveContainerOptions {
                force: true,
                ..Default::default()
            };
            let _ = docker.remove_container(&name, Some(remove)).await;
            let _ = docker
                .remove_volume(&format!("{name}-data"), None::<RemoveVolumeOptions>)
                .await;
        });
    }
    while removals.join_next().await.is_some() {}
    let _ = docker.remove_network(&network).await;
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().collect();
    let is_concurrent = args.get(1).is_some_and(|a| a == "--concurrent");
    if is_concurrent {
        args.remove(1);
    }
    anyhow::ensure!(args.len() == 4, "usage: raw_engine [--concurrent] IMAGE N LABEL");
    let (image, rounds, label) = (args[1].clone(), args[2].parse::<usize>()?, args[3].clone());
    let docker = Docker::connect_with_defaults()?.negotiate_version().await?;
    if is_concurrent {
        return concurrent(docker, image, rounds, label).await;
    }
    let labels = HashMap::from([("roost-bench.run".to_string(), label.clone())]);
    for i in 0..rounds {
        let name = format!("raw-{label}-{i}");
        let t0 = Instant::now();
        let host = HostConfig {
            port_bindings: Some(HashMap::from([(
                "8080/tcp".to_string(),
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(String::new()),
                }]),
            )])),
            ..Default::default()
        };
        let id = create(&docker, &image, &name, &labels, host).await?;
        start_and_wait(&docker, &id).await?;
        let spawn = t0.elapsed();
        let stop = StopContainerOptions {
            t: Some(1),
            ..Default::default()
        };
        docker.stop_container(&id, Some(stop)).await?;
        let t1 = Instant::now();
        start_and_wait(&docker, &id).await?;
        let wake = t1.elapsed();
        println!("{} {}", spawn.as_millis(), wake.as_millis());
        let remove = RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        docker.remove_container(&id, Some(remove)).await?;
        docker
            .remove_volume(&format!("{name}-data"), None::<RemoveVolumeOptions>)
            .await?;
    }
    Ok(())
}
