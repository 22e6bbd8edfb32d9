//! roost's own image (`scripts/build-images`): FROM scratch, at most 15 MB,
//! a non-root user, `roost healthcheck` as its HEALTHCHECK, nothing to run
//! but roost, and it runs `check-config` (and `serve`: tests/compose.rs,
//! tests/swarm.rs).

mod support;

use std::process::{Command, Output};

use support::docker::Cleanup;

const IMAGE: &str = "roost:latest";

fn docker(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().expect("run docker")
}

fn inspect(format: &str) -> String {
    let out = docker(&["image", "inspect", IMAGE, "--format", format]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `roost check-config` inside the image, on `config` mounted read-only.
fn check_config(config: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("roost.toml");
    std::fs::write(&path, config).unwrap();
    let mount = format!("{}:/etc/roost/roost.toml:ro", path.display());
    docker(&[
        "run",
        "--rm",
        "-v",
        &mount,
        IMAGE,
        "check-config",
        "--config",
        "/etc/roost/roost.toml",
    ])
}

#[tokio::test]
async fn the_image_is_small_non_root_and_holds_roost_alone() {
    let cleanup = Cleanup::new("image");
    if support::docker::engine(&cleanup).await.is_none() {
        return;
    }
    let size: u64 = inspect("{{.Size}}").parse().unwrap();
    assert!(size <= 15_000_000, "{size} bytes");
    assert_eq!(inspect("{{.Config.User}}"), "65532:65532");
    assert_eq!(inspect("{{json .Config.Entrypoint}}"), r#"["/roost"]"#);
    assert!(inspect("{{json .Config.Healthcheck.Test}}").contains("healthcheck"));
    // Nothing else to run: no shell.
    let out = docker(&["run", "--rm", "--entrypoint", "/bin/sh", IMAGE, "-c", "true"]);
    assert!(!out.status.success(), "a shell ran in the image");

    let example = std::fs::read_to_string(support::project_dir().join("roost.example.toml")).unwrap();
    let out = check_config(&example);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = check_config(&example.replace("port = 8080", "port = \"eighty\""));
    assert_eq!(
        out.status.code(),
        Some(64),
        "an invalid config is refused with EX_USAGE"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("workspace.port"));
}
