//! The HTTP listeners: accept connections, serve each with hyper's HTTP/1
//! (keep-alive, header-read timeout answered 408, header-size limit answered
//! 431), route roost's own paths ([`handle`], over any request body, so
//! tests drive it without a socket), and drain on shutdown: no new
//! connections, in-flight requests finish within `server.shutdown_grace`.
//! [`run`] serves both listeners around the app's background tasks.
//!
//! There are two, and what one serves the other never does: the public
//! listener (what Traefik's routers forward to: the fallback proxy and
//! roost's pages) and the internal one (`/auth`, `/traefik`, `/metrics`,
//! `/healthz`, `/readyz`: what Traefik itself and operators ask).

mod conn;
mod routes;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioTimer;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::App;
pub use routes::handle;

/// Which of roost's two listeners a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// Workspace hosts (the fallback proxy) and the bare domain (pages).
    Public,
    /// Traefik's forwardAuth and HTTP provider, metrics and probes.
    Internal,
}

/// roost's two bound listeners.
pub struct Listeners {
    /// `listen`: the fallback proxy and pages.
    pub public: TcpListener,
    /// `internal_listen`: `/auth`, `/traefik`, `/metrics`, probes.
    pub internal: TcpListener,
}

/// Serves on both listeners until `shutdown` completes, then drains
/// requests and stops every background task.
pub async fn run(app: Arc<App>, listeners: Listeners, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
    let stop = CancellationToken::new();
    let background = app.start_background(&stop);
    // The listeners run as tasks on the runtime's workers, like the
    // connections they spawn: no cross-thread wake-up per connection.
    let flatten =
        |r: Result<std::io::Result<()>, tokio::task::JoinError>| r.unwrap_or_else(|e| Err(std::io::Error::other(e)));
    let mut servers = JoinSet::new();
    servers.spawn(serve(listeners.public, Listener::Public, app.clone(), stop.clone()));
    servers.spawn(serve(listeners.internal, Listener::Internal, app.clone(), stop.clone()));
    let mut result = Ok(());
    tokio::select! {
        // A listener ended on its own: stop everything.
        Some(r) = servers.join_next() => result = flatten(r),
        () = shutdown => tracing::info!("shutting down"),
    }
    stop.cancel();
    while let Some(r) = servers.join_next().await {
        result = result.and(flatten(r));
    }
    app.shutdown(background).await;
    result
}

/// Serves `listener` until `stop` is cancelled, then drains.
async fn serve(listener: TcpListener, role: Listener, app: Arc<App>, stop: CancellationToken) -> std::io::Result<()> {
    let server = &app.config.server;
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(server.header_read_timeout)
        .max_buf_size(server.max_header_bytes)
        .keep_alive(true);
    let grace = server.shutdown_grace;
    // Tracked, not joined: a finished connection wakes nobody (a JoinSet
    // polled here would wake this loop once per closed connection, and
    // Traefik's forwardAuth client opens and closes many).
    let connections = TaskTracker::new();
    // Cancelled when the grace period is over: the connections still open close.
    let force = CancellationToken::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    // Latency matters more than packet count for tiny answers.
                    let _ = tcp.set_nodelay(true);
                    let conn = conn::serve(builder.clone(), tcp, peer, role, app.clone(), stop.clone(), force.clone());
                    connections.spawn(conn);
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
    connections.close();
    let open = connections.len();
    if open > 0 {
        tracing::info!(connections = open, grace = ?grace, "draining connections");
    }
    if tokio::time::timeout(grace, connections.wait()).await.is_err() {
        tracing::warn!(connections = connections.len(), "grace period over; closing the rest");
        force.cancel();
        connections.wait().await;
    }
    Ok(())
}
