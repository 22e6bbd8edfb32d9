//! The HTTP listener: accepts connections, serves each with hyper's HTTP/1
//! (keep-alive, header-read timeout answered 408, header-size limit answered
//! 431), routes roost's own paths, and drains on shutdown: no new
//! connections, in-flight requests finish within `server.shutdown_grace`.

mod conn;
mod routes;

use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::app::App;

/// Serves `listener` until `stop` is cancelled, then drains.
pub async fn serve(listener: TcpListener, app: Arc<App>, stop: CancellationToken) -> std::io::Result<()> {
    let server = &app.config.server;
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(server.header_read_timeout)
        .max_buf_size(server.max_header_bytes)
        .keep_alive(true);
    let grace = server.shutdown_grace;
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    // Latency matters more than packet count for tiny answers.
                    let _ = tcp.set_nodelay(true);
                    connections.spawn(conn::serve(builder.clone(), tcp, peer, app.clone(), stop.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: let some close.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    let open = connections.len();
    if open > 0 {
        tracing::info!(connections = open, grace = ?grace, "draining connections");
    }
    let drained = tokio::time::timeout(grace, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(connections = connections.len(), "grace period over; closing the rest");
        connections.shutdown().await;
    }
    Ok(())
}
