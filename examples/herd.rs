//! The load generator of `benches/herd.sh`: the herd of new users. Mints a
//! token for each of `--users` new users (`<prefix>-<i>`, signed with the
//! test issuer's key), opens `--concurrency` connections per user to
//! Traefik, and once every connection is open sends all the requests at
//! once: `GET <path>` with the user's bearer token and `Host:
//! <user>.<domain>`, one request per connection (`Connection: close`).
//!
//! Prints one line per request, `user ttfb_ms status` (the time from
//! writing the request to the answer's first byte; status 0: a transport
//! error or no answer within `--timeout`, told on stderr), then `wall <ms>`:
//! from the release of the herd to the last answer read to its end.
//!
//! `cargo run --release --example herd -- --issuer http://127.0.0.1:9000/ \
//!     --traefik 127.0.0.1:8000 --prefix herd-1 --users 100 --concurrency 10`

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Barrier;

#[derive(Parser)]
struct Args {
    /// The issuer, exactly as roost's `oidc.issuer`.
    #[arg(long)]
    issuer: String,
    /// Traefik's entry point.
    #[arg(long)]
    traefik: SocketAddr,
    /// Users are `<prefix>-1` .. `<prefix>-<users>`.
    #[arg(long)]
    prefix: String,
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// Concurrent first requests per user.
    #[arg(long, default_value_t = 10)]
    concurrency: usize,
    #[arg(long, default_value = "tests/fixtures/keys/k1.pem")]
    key: std::path::PathBuf,
    #[arg(long, default_value = "k1")]
    kid: String,
    #[arg(long, default_value = "https://roost.test/api")]
    audience: String,
    #[arg(long, default_value = "ws.roost.test")]
    domain: String,
    #[arg(long, default_value = "/healthz")]
    path: String,
    /// Seconds a request may take, connection to last byte.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

/// One request's outcome: time to first byte, status (0: none), and when
/// its answer was read to the end.
struct Outcome {
    user: usize,
    ttfb: Duration,
    status: u16,
    done: Instant,
}

/// Sends `request` on a fresh connection after the herd is released;
/// reads the answer to its end.
async fn one(
    traefik: SocketAddr,
    request: Arc<Vec<u8>>,
    barrier: Arc<Barrier>,
    timeout: Duration,
) -> Result<(Duration, u16, Instant), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let connected = tokio::time::timeout_at(deadline, TcpStream::connect(traefik)).await;
    // Every task reaches the barrier, connected or not, or the herd would wait forever.
    let tcp = match connected {
        Ok(Ok(tcp)) => Ok(tcp),
        Ok(Err(e)) => Err(format!("connect: {e}")),
        Err(_) => Err("connect: timed out".to_string()),
    };
    barrier.wait().await;
    let mut tcp = tcp?;
    let _ = tcp.set_nodelay(true);
    let exchange = async {
        let start = Instant::now();
        tcp.write_all(&request).await.map_err(|e| format!("write: {e}"))?;
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 4096];
        let n = tcp.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
        let ttfb = start.elapsed();
        if n == 0 {
            return Err("closed without an answer".to_string());
        }
        buf.extend_from_slice(&chunk[..n]);
        loop {
            let n = tcp.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let status = std::str::from_utf8(buf.get(9..12).unwrap_or_default())
            .ok()
            .and_then(|s| s.parse::<u16>().ok())
            .filter(|_| buf.starts_with(b"HTTP/1."))
            .ok_or_else(|| format!("not HTTP: {:?}", String::from_utf8_lossy(&buf[..buf.len().min(64)])))?;
        Ok((ttfb, status, Instant::now()))
    };
    match tokio::time::timeout_at(deadline, exchange).await {
        Ok(r) => r,
        Err(_) => Err("timed out".to_string()),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let key = EncodingKey::from_rsa_pem(&std::fs::read(&args.key)?)?;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(args.kid.clone());
    let total = args.users * args.concurrency;
    let barrier = Arc::new(Barrier::new(total + 1));
    let timeout = Duration::from_secs(args.timeout);
    let mut tasks = tokio::task::JoinSet::new();
    for user in 1..=args.users {
        let sub = format!("{}-{user}", args.prefix);
        // Shaped like examples/mint_token.rs's.
        let claims = json!({
            "iss": args.issuer,
            "sub": sub,
            "aud": [&args.audience, &format!("{}userinfo", args.issuer)],
            "iat": now,
            "exp": now + 3600,
            "scope": "openid profile email",
            "permissions": ["read:workspace"],
            "email": format!("{sub}@example.com"),
        });
        let token = encode(&header, &claims, &key)?;
        let request = Arc::new(
            format!(
                "GET {} HTTP/1.1\r\nHost: {sub}.{}\r\nAuthorization: Bearer {token}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
                args.path, args.domain
            )
            .into_bytes(),
        );
        for _ in 0..args.concurrency {
            let (request, barrier) = (request.clone(), barrier.clone());
            let traefik = args.traefik;
            tasks.spawn(async move { (user, one(traefik, request, barrier, timeout).await) });
        }
    }
    // Every connection is open (or failed): release the herd.
    barrier.wait().await;
    let t0 = Instant::now();
    let mut outcomes = Vec::with_capacity(total);
    let mut errors = 0usize;
    while let Some(done) = tasks.join_next().await {
        let (user, result) = done?;
        match result {
            Ok((ttfb, status, done)) => outcomes.push(Outcome {
                user,
                ttfb,
                status,
                done,
            }),
            Err(e) => {
                errors += 1;
                if errors <= 10 {
                    eprintln!("herd: user {user}: {e}");
                }
                outcomes.push(Outcome {
                    user,
                    ttfb: t0.elapsed(),
                    status: 0,
                    done: Instant::now(),
                });
            }
        }
    }
    if errors > 10 {
        eprintln!("herd: {} more transport errors", errors - 10);
    }
    let wall = outcomes
        .iter()
        .map(|o| o.done)
        .max()
        .unwrap_or(t0)
        .saturating_duration_since(t0);
    for o in &outcomes {
        println!("{} {:.1} {}", o.user, o.ttfb.as_secs_f64() * 1000.0, o.status);
    }
    println!("wall {}", wall.as_millis());
    Ok(())
}
