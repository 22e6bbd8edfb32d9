//! The raw-engine side of `benches/spawn.sh`: what it costs to make a
//! workspace straight through the Docker API, with nothing of roost in the
//! way. Creates the same volume and container roost would (limits,
//! hardening, loopback port), starts it, polls its port in a tight loop
//! until it answers HTTP 200, then stops and starts it again the same way.
//! Prints `spawn_ms wake_ms` for each of N rounds, and removes what it made.
//!
//! `cargo run --release --example raw_engine -- IMAGE N LABEL`

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, HostConfig, PortBinding, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, RemoveContainerOptions, StartContainerOptions,
    StopContainerOptions,
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

async fn start_and_wait(docker: &Docker, id: &str) -> anyhow::Result<()> {
    docker.start_container(id, None::<StartContainerOptions>).await?;
    let addr = port(docker, id).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !answers_200(addr).await {
        anyhow::ensure!(Instant::now() < deadline, "never answered");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (image, rounds, label) = (args[1].clone(), args[2].parse::<usize>()?, args[3].clone());
    let docker = Docker::connect_with_defaults()?.negotiate_version().await?;
    let labels = HashMap::from([("roost-bench.run".to_string(), label.clone())]);
    for i in 0..rounds {
        let name = format!("raw-{label}-{i}");
        let volume = format!("{name}-data");
        let t0 = Instant::now();
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
            port_bindings: Some(HashMap::from([(
                "8080/tcp".to_string(),
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(String::new()),
                }]),
            )])),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(image.clone()),
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
        let options = CreateContainerOptions {
            name: Some(name.clone()),
            ..Default::default()
        };
        let id = docker.create_container(Some(options), body).await?.id;
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
            .remove_volume(&volume, None::<bollard::query_parameters::RemoveVolumeOptions>)
            .await?;
    }
    Ok(())
}
