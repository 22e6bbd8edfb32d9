//! A real headless browser: Debian's `chromium`, driven over WebDriver by
//! Debian's `chromedriver` (both installed by `scripts/test`), one fresh
//! profile per [`Browser`] so two browsers share no cookies.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use serde_json::json;
use tokio::process::{Child, Command};

pub struct Browser {
    pub client: Client,
    _driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless chromium session; `None` (a loud
    /// skip outside CI) when they are not installed.
    pub async fn start() -> Option<Browser> {
        let driver_bin = super::required_tool("/usr/bin/chromedriver", "chromedriver (Debian chromium-driver)")?;
        super::required_tool("/usr/bin/chromium", "chromium (Debian chromium)")?;
        let port = super::traefik::free_port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--window-size=1024,768",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let client = super::eventually(Duration::from_secs(60), "chromedriver", || {
            let caps = caps.clone();
            let url = url.clone();
            async move {
                ClientBuilder::rustls()
                    .ok()?
                    .capabilities(caps)
                    .connect(&url)
                    .await
                    .ok()
            }
        })
        .await;
        Some(Browser {
            client,
            _driver: driver,
            _profile: profile,
        })
    }

    /// The page's HTML once `check` accepts it (polled), or a panic after `secs`.
    pub async fn page_until(&self, secs: u64, what: &str, check: impl Fn(&str, &str) -> bool) -> String {
        let client = &self.client;
        super::eventually(Duration::from_secs(secs), what, || async {
            let url = client.current_url().await.ok()?.to_string();
            let source = client.source().await.ok()?;
            check(&url, &source).then_some(source)
        })
        .await
    }

    /// Saves a screenshot as a test artifact and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = super::project_dir().join("target/test-artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, &png).unwrap();
        path
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}
