//! A small HTTP + WebSocket echo server: the workspace image used by the
//! tests and the demo (`scripts/build-images` packs it into `roost-echo:*`).
//!
//! Routes:
//! - `GET /healthz` → 200 `ok`
//! - `PUT /files/<name>` stores the body in `$ROOST_VOLUME/<name>` (default `/data`) → 201;
//!   `GET /files/<name>` reads it back (404 if missing); names with `/` or `..` → 400
//! - `GET /ws` with a WebSocket upgrade → echoes text/binary messages, answers pings
//! - `GET /sleep?ms=N` → waits N ms (at most 60000), then 200
//! - anything else → 200 JSON describing the request (method, path, query, headers,
//!   `ROOST_USER`/`ROOST_WORKSPACE`, hostname, body byte count)
//!
//! Flags: `--probe` checks `GET /healthz` on 127.0.0.1:$PORT and exits 0 or 1 (the image's
//! HEALTHCHECK: a scratch image has no shell or curl); `--exit N` exits at once with code N.
//!
//! On SIGTERM/SIGINT it stops accepting, closes idle connections and WebSockets (1001), lets
//! in-flight requests finish for up to `ECHO_SHUTDOWN_GRACE_MS` (default 5000) and exits 0;
//! a second signal exits at once. `ECHO_START_DELAY_MS` delays listening (a slow-starting
//! workspace, for the starting page).
//!
//! `PORT=8080 cargo run --example echo`

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Map, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;

mod websocket;

use websocket::{wants_websocket, websocket};

const DEFAULT_PORT: u16 = 8080;
const MAX_SLEEP_MS: u64 = 60_000;
const DEFAULT_GRACE_MS: u64 = 5_000;

type Body = Full<Bytes>;

struct State {
    volume: PathBuf,
    hostname: Option<String>,
    user: Option<String>,
    workspace: Option<String>,
    profile: Option<String>,
    /// Shutdown signal for WebSocket sessions (they outlive their HTTP connection).
    shutdown: watch::Receiver<bool>,
    tmp_counter: AtomicU64,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port = match port_from_env() {
        Ok(port) => port,
        Err(e) => {
            eprintln!("echo: {e}");
            std::process::exit(2);
        }
    };
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] => {}
        ["--probe"] => std::process::exit(probe(port)),
        ["--exit", code] => match code.parse::<i32>() {
            Ok(code) => {
                eprintln!("exiting with {code}");
                std::process::exit(code);
            }
            Err(_) => usage(&format!("--exit wants an integer, not {code:?}")),
        },
        ["-h" | "--help"] => {
            println!("usage: echo [--probe | --exit N]   (env PORT, ROOST_VOLUME, ECHO_SHUTDOWN_GRACE_MS, ECHO_START_DELAY_MS)");
            return;
        }
        _ => usage(&format!("unexpected arguments {args:?}")),
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("echo: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(serve(port)) {
        eprintln!("echo: {e:#}");
        std::process::exit(1);
    }
    // Do not wait for leftover tasks (e.g. a WebSocket that ignored our close frame).
    runtime.shutdown_background();
}

fn usage(problem: &str) -> ! {
    eprintln!("echo: {problem}\nusage: echo [--probe | --exit N]");
    std::process::exit(2);
}

fn port_from_env() -> Result<u16, String> {
    match std::env::var("PORT") {
        Ok(s) if !s.trim().is_empty() => s.trim().parse().map_err(|_| format!("PORT={s:?} is not a port number")),
        _ => Ok(DEFAULT_PORT),
    }
}

/// `GET /healthz` on 127.0.0.1:port with plain std I/O; 0 if it answered 200, else 1.
fn probe(port: u16) -> i32 {
    let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
    let attempt = || -> std::io::Result<bool> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(1500))?;
        stream.set_read_timeout(Some(Duration::from_millis(1500)))?;
        stream.set_write_timeout(Some(Duration::from_millis(1500)))?;
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
        let mut head = Vec::new();
        let mut buf = [0u8; 256];
        while !head.contains(&b'\n') && head.len() < 4096 {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let status_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
        let mut parts = status_line.split(|&b| b == b' ');
        let version = parts.next().unwrap_or_default();
        let code = parts.next().unwrap_or_default();
        Ok(version.starts_with(b"HTTP/1.") && code == b"200")
    };
    match attempt() {
        Ok(true) => 0,
        Ok(false) => {
            eprintln!("probe: /healthz did not answer 200");
            1
        }
        Err(e) => {
            eprintln!("probe: {e}");
            1
        }
    }
}

async fn serve(port: u16) -> anyhow::Result<()> {
    let grace = std::env::var("ECHO_SHUTDOWN_GRACE_MS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(DEFAULT_GRACE_MS);
    if let Some(ms) = std::env::var("ECHO_START_DELAY_MS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on port {port}: {e}"))?;
    println!("echo listening on {}", listener.local_addr()?);

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let state = Arc::new(State {
        volume: std::env::var_os("ROOST_VOLUME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/data")),
        hostname: hostname(),
        user: std::env::var("ROOST_USER").ok(),
        workspace: std::env::var("ROOST_WORKSPACE").ok(),
        profile: std::env::var("ROOST_PROFILE").ok(),
        shutdown: shutdown_rx.clone(),
        tmp_counter: AtomicU64::new(0),
    });

    let mut signals = Signals::new()?;
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));

    loop {
        let (stream, _peer) = tokio::select! {
            _ = signals.recv() => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // E.g. EMFILE: back off instead of spinning.
                    eprintln!("echo: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let mut shutdown = shutdown_rx.clone();
        let conn = http
            .serve_connection(
                TokioIo::new(stream),
                service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(handle(req, state).await) }
                }),
            )
            .with_upgrades();
        tokio::spawn(async move {
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                res = conn.as_mut() => res,
                _ = stopped(&mut shutdown) => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                if !e.is_incomplete_message() {
                    eprintln!("echo: connection: {e}");
                }
            }
            drop(shutdown); // tells the main task this connection is done
        });
    }

    // Stop accepting, close idle connections and WebSockets, and wait (bounded) for every
    // task holding a receiver, i.e. in-flight connections and WebSocket sessions.
    drop(listener);
    drop(state);
    drop(shutdown_rx);
    let _ = shutdown_tx.send(true);
    tokio::select! {
        _ = shutdown_tx.closed() => {}
        _ = tokio::time::sleep(Duration::from_millis(grace)) => {
            eprintln!("echo: requests still in flight after {grace} ms; exiting anyway");
        }
        _ = signals.recv() => {}
    }
    Ok(())
}

/// SIGTERM or SIGINT.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// Resolves once shutdown has begun (or the sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|&stop| stop).await;
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
}

async fn handle(mut req: Request<Incoming>, state: Arc<State>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let is_get = req.method() == Method::GET || req.method() == Method::HEAD;

    if path == "/healthz" && is_get {
        return text(StatusCode::OK, "ok");
    }
    if let Some(name) = path.strip_prefix("/files/") {
        if is_get || req.method() == Method::PUT {
            if name.is_empty() || name == "." || name.contains('/') || name.contains("..") {
                return text(StatusCode::BAD_REQUEST, "bad file name");
            }
            let file = state.volume.join(name);
            return if req.method() == Method::PUT {
                put_file(req.into_body(), &state, &file, name).await
            } else {
                get_file(&file).await
            };
        }
    }
    if path == "/ws" && req.method() == Method::GET && wants_websocket(req.headers()) {
        return websocket(&mut req, &state);
    }
    if path == "/sleep" && is_get {
        let ms = req
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .find_map(|kv| kv.strip_prefix("ms="));
        // Any run of digits is fine; past the maximum (even past u64) it is the maximum.
        let ms = match ms {
            Some(ms) if !ms.is_empty() && ms.bytes().all(|b| b.is_ascii_digit()) => {
                ms.parse::<u64>().unwrap_or(MAX_SLEEP_MS).min(MAX_SLEEP_MS)
            }
            _ => return text(StatusCode::BAD_REQUEST, "want /sleep?ms=N"),
        };
        tokio::time::sleep(Duration::from_millis(ms)).await;
        return json_response(StatusCode::OK, &json!({ "slept_ms": ms }));
    }
    describe(req, &state).await
}

/// The default answer: the request, described as JSON.
async fn describe(req: Request<Incoming>, state: &State) -> Response<Body> {
    let (parts, mut body) = req.into_parts();
    let mut headers = Map::new();
    for name in parts.headers.keys() {
        let values: Vec<Value> = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let value = if values.len() == 1 {
            values.into_iter().next().unwrap_or_default()
        } else {
            Value::Array(values)
        };
        headers.insert(name.as_str().to_string(), value);
    }
    let mut body_bytes: u64 = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => body_bytes += frame.data_ref().map_or(0, |d| d.len() as u64),
            Err(e) => return text(StatusCode::BAD_REQUEST, &format!("reading the body: {e}")),
        }
    }
    json_response(
        StatusCode::OK,
        &json!({
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "query": parts.uri.query(),
            "headers": headers,
            "env": { "ROOST_USER": state.user, "ROOST_WORKSPACE": state.workspace, "ROOST_PROFILE": state.profile },
            "hostname": state.hostname,
            "body_bytes": body_bytes,
        }),
    )
}

async fn get_file(file: &Path) -> Response<Body> {
    match tokio::fs::read(file).await {
        Ok(data) => {
            let mut resp = Response::new(Full::new(Bytes::from(data)));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            resp
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => text(StatusCode::NOT_FOUND, "no such file"),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("reading {}: {e}", file.display()),
        ),
    }
}

/// Streams the body into a temporary file next to the target, then renames it into place,
/// so a concurrent GET never sees half a file.
async fn put_file(mut body: Incoming, state: &State, file: &Path, name: &str) -> Response<Body> {
    let n = state.tmp_counter.fetch_add(1, Ordering::Relaxed);
    let tmp = state.volume.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
    let result: Result<u64, (StatusCode, String)> = async {
        let io_err = |what: &str, e: std::io::Error| (StatusCode::INTERNAL_SERVER_ERROR, format!("{what}: {e}"));
        tokio::fs::create_dir_all(&state.volume)
            .await
            .map_err(|e| io_err("creating the volume directory", e))?;
        let mut out = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| io_err("creating the file", e))?;
        let mut written = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| (StatusCode::BAD_REQUEST, format!("reading the body: {e}")))?;
            if let Some(data) = frame.data_ref() {
                out.write_all(data).await.map_err(|e| io_err("writing the file", e))?;
                written += data.len() as u64;
            }
        }
        out.flush().await.map_err(|e| io_err("writing the file", e))?;
        drop(out);
        tokio::fs::rename(&tmp, file)
            .await
            .map_err(|e| io_err("renaming the file into place", e))?;
        Ok(written)
    }
    .await;
    match result {
        Ok(bytes) => json_response(StatusCode::CREATED, &json!({ "name": name, "bytes": bytes })),
        Err((status, msg)) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            text(status, &msg)
        }
    }
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_else(|_| b"{}".to_vec());
    body.push(b'\n');
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
