//! One client connection. hyper closes a connection whose request head did
//! not arrive within `server.header_read_timeout` without a word; this
//! module notices partial heads and answers those 408 before closing, so a
//! slow client learns why.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::app::App;

const TIMEOUT_RESPONSE: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 15\r\n\r\nrequest timeout";

/// A TCP stream that remembers whether bytes arrived since the last
/// response bytes left: at a header timeout, that means a partial head.
struct WatchedIo {
    tcp: TcpStream,
    unanswered: Arc<AtomicBool>,
}

impl AsyncRead for WatchedIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.unanswered.store(true, Ordering::Relaxed);
        }
        res
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.tcp).poll_write(cx, buf);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.unanswered.store(false, Ordering::Relaxed);
        }
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.unanswered.store(false, Ordering::Relaxed);
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// Serves one connection until the client leaves, an error, or `stop`
/// (then in-flight requests finish and the connection closes, or is cut
/// at `force`).
pub(super) async fn serve(
    builder: http1::Builder,
    tcp: TcpStream,
    peer: SocketAddr,
    role: super::Listener,
    app: Arc<App>,
    stop: CancellationToken,
    force: CancellationToken,
) {
    let unanswered = Arc::new(AtomicBool::new(false));
    let io = WatchedIo {
        tcp,
        unanswered: unanswered.clone(),
    };
    let service = service_fn(move |req| {
        let app = app.clone();
        async move { Ok::<_, std::convert::Infallible>(super::routes::handle(&app, req, peer, role).await) }
    });
    let mut conn = builder.serve_connection(TokioIo::new(io), service).with_upgrades();
    let result = tokio::select! {
        r = &mut conn => r,
        () = stop.cancelled() => {
            Pin::new(&mut conn).graceful_shutdown();
            tokio::select! {
                r = &mut conn => r,
                () = force.cancelled() => return,
            }
        }
    };
    let Err(e) = result else { return };
    if e.is_timeout() && unanswered.load(Ordering::Relaxed) {
        tracing::debug!(%peer, "request head not received in time: 408");
        if let Some(parts) = conn.into_parts() {
            let mut tcp = parts.io.into_inner().tcp;
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                tcp.write_all(TIMEOUT_RESPONSE).await?;
                tcp.shutdown().await
            })
            .await;
        }
    } else if !e.is_incomplete_message() {
        tracing::debug!(%peer, error = %e, "connection error");
    }
}
