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
    /// Serving TLS only (`rediss://`), with a certificate for `localhost`
    /// from a throwaway CA (`ca_file`).
    tls: bool,
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
            tls: false,
            child: None,
            dir: tempfile::tempdir().unwrap(),
        };
        redis.run().await;
        Some(redis)
    }

    /// The same over TLS only, with a CA of its own (`ca_file`).
    pub async fn start_tls() -> Option<Redis> {
        binary()?;
        let dir = tempfile::tempdir().unwrap();
        let sh = format!(
            "set -e; cd {}; \
             openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=roost-test-ca -keyout ca.key -out ca.pem 2>/dev/null; \
             openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr 2>/dev/null; \
             printf 'subjectAltName=DNS:localhost\\n' > san.ext; \
             openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile san.ext -out server.pem 2>/dev/null",
            dir.path().display()
        );
        let made = Command::new("sh").arg("-c").arg(&sh).status().expect("openssl");
        assert!(made.success(), "making the test certificates failed");
        let mut redis = Redis {
            port: free_port(),
            tls: true,
            child: None,
            dir,
        };
        redis.run().await;
        Some(redis)
    }

    /// The CA that signed a TLS server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    async fn run(&mut self) {
        let mut cmd = Command::new("/usr/bin/redis-server");
        if self.tls {
            let file = |name: &str| self.dir.path().join(name).display().to_string();
            cmd.args([
                "--port",
                "0",
                "--tls-port",
                &self.port.to_string(),
                "--tls-auth-clients",
                "no",
            ])
            .args([
                "--tls-cert-file",
                &file("server.pem"),
                "--tls-key-file",
                &file("server.key"),
            ])
            .args(["--tls-ca-cert-file", &file("ca.pem")]);
        } else {
            cmd.args(["--port", &self.port.to_string()]);
        }
        let child = cmd
            .args(["--bind", "127.0.0.1"])
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
        if self.tls {
            // The test process trusts no such CA: ask redis-cli, which is told it.
            let (port, ca) = (self.port.to_string(), self.ca_file());
            super::eventually(Duration::from_secs(20), "redis-server (TLS) to answer", || {
                let out = Command::new("redis-cli")
                    .args(["--tls", "--cacert"])
                    .arg(&ca)
                    .args([
                        "-h",
                        "localhost",
                        "-p",
                        &port,
                        "--user",
                        USER,
                        "--pass",
                        PASSWORD,
                        "--no-auth-warning",
                        "PING",
                    ])
                    .output();
                async move {
                    out.ok()
                        .filter(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG")
                        .map(|_| ())
                }
            })
            .await;
            return;
        }
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
        match self.tls {
            true => format!("rediss://{USER}:{PASSWORD}@localhost:{}/0", self.port),
            false => format!("redis://{USER}:{PASSWORD}@127.0.0.1:{}/0", self.port),
        }
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
