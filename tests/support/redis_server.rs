//! A real `redis-server` (Debian's) for the shared store's tests: on a
//! loopback port, with `requirepass` for the default user and an ACL user
//! `roost` limited to roost's keys and channels, append-only persistence in
//! a temporary folder (so a restart keeps what was written). Stopped on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::traefik::free_port;

pub const USER: &str = "roost";
pub const PASSWORD: &str = "test-redis-password-0123456789";
const ADMIN_PASSWORD: &str = "test-redis-admin-password-0123456789";

pub struct Redis {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

fn binary() -> Option<PathBuf> {
    let path = PathBuf::from("/usr/bin/redis-server");
    if path.exists() {
        return Some(path);
    }
    let msg = "redis-server not found (run scripts/test, which installs Debian's redis-server)";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!("\n*** SKIPPED: {msg} ***\n");
    None
}

impl Redis {
    /// Starts a server and waits until the `roost` user can use it;
    /// `None` (a loud skip outside CI) without redis-server.
    pub async fn start() -> Option<Redis> {
        binary()?;
        let mut redis = Redis {
            port: free_port(),
            child: None,
            dir: tempfile::tempdir().unwrap(),
        };
        redis.run().await;
        Some(redis)
    }

    async fn run(&mut self) {
        let child = Command::new("/usr/bin/redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--requirepass", ADMIN_PASSWORD])
            .args([
                "--user",
                USER,
                "on",
                &format!(">{PASSWORD}"),
                "~roost:*",
                "&roost:*",
                "+@all",
                "-@admin",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--save", ""])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let url = self.url();
        super::eventually(Duration::from_secs(20), "redis-server to answer", || {
            let url = url.clone();
            async move {
                let client = redis::Client::open(url).ok()?;
                let mut conn = client.get_multiplexed_async_connection().await.ok()?;
                let pong: String = redis::cmd("PING").query_async(&mut conn).await.ok()?;
                (pong == "PONG").then_some(())
            }
        })
        .await;
    }

    /// The URL roost uses: the ACL user and its password.
    pub fn url(&self) -> String {
        format!("redis://{USER}:{PASSWORD}@127.0.0.1:{}/0", self.port)
    }

    /// Kills the server (SIGKILL: no goodbye to the clients).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same data.
    pub async fn restart(&mut self) {
        self.kill();
        self.run().await;
    }

    /// A connection as the `roost` user, for the test's own looks.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
