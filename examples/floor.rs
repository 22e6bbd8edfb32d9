//! The benchmark floor: a bare hyper HTTP/1 server that answers every
//! request 200 with an empty body: an HTTP round trip and nothing else.
//! Same runtime and connection settings as roost. Prints its address.
//!
//! `cargo run --release --example floor [ADDR] [--identity-headers]`
//! (default 127.0.0.1:0). With `--identity-headers` every answer carries
//! the three headers roost's `/auth` answers with (fixed values), so a
//! forwardAuth comparison differs only in roost's decision.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::{TokioIo, TokioTimer};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let identity = args.iter().any(|a| a == "--identity-headers");
    let addr = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).keep_alive(true);
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let builder = builder.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |_req| async move {
                let mut resp = Response::new(Full::new(Bytes::new()));
                if identity {
                    let h = resp.headers_mut();
                    h.insert("x-roost-user", "alice".parse().expect("static header value"));
                    h.insert("x-roost-workspace", "alice".parse().expect("static header value"));
                    h.insert(
                        "x-roost-email",
                        "alice@example.com".parse().expect("static header value"),
                    );
                }
                Ok::<_, Infallible>(resp)
            });
            let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
        });
    }
}
