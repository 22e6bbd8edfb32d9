//! Upgraded connections (WebSockets) relayed by the fallback proxy: at most
//! `limits.tunnels_per_user` open per user (`sub`) at once, and each closed
//! after `limits.tunnel_idle_timeout` without a byte in either direction.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Open tunnels per user. The lock is held only to count, never across an
/// `.await`.
pub(super) struct Tunnels {
    open: Mutex<HashMap<Arc<str>, u32>>,
    per_user: u32,
    idle_timeout: Duration,
}

/// One open tunnel, counted until dropped.
pub(super) struct TunnelSlot {
    tunnels: Arc<Tunnels>,
    user: Arc<str>,
}

impl Tunnels {
    pub(super) fn new(per_user: u32, idle_timeout: Duration) -> Arc<Tunnels> {
        Arc::new(Tunnels {
            open: Mutex::new(HashMap::new()),
            per_user,
            idle_timeout,
        })
    }

    pub(super) fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// A slot for one more tunnel of `user`, or `None` when they have
    /// `per_user` open already.
    pub(super) fn open(self: &Arc<Self>, user: &Arc<str>) -> Option<TunnelSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(user.clone()).or_insert(0);
        if *n >= self.per_user {
            return None;
        }
        *n += 1;
        Some(TunnelSlot {
            tunnels: self.clone(),
            user: user.clone(),
        })
    }

    /// Tunnels `user` has open.
    #[cfg(test)]
    fn count(&self, user: &str) -> u32 {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(user).copied().unwrap_or(0)
    }
}

impl Drop for TunnelSlot {
    fn drop(&mut self) {
        let mut open = self.tunnels.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.user);
            }
        }
    }
}

/// Why a relay ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Ended {
    /// Both sides closed.
    Closed,
    /// No byte either way for the idle timeout.
    Idle,
    /// roost is shutting down.
    Stopped,
}

/// Relays bytes both ways between `client` and `backend` until both close,
/// neither moves a byte for `idle`, or `stop` fires.
pub(super) async fn relay<C, B>(
    client: C,
    mut backend: B,
    idle: Duration,
    stop: &CancellationToken,
) -> io::Result<Ended>
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    // Every byte of either direction passes through the client side, so
    // watching it alone sees all progress.
    let mut client = Watched {
        inner: client,
        activity: Activity::new(),
    };
    let activity = client.activity.clone();
    tokio::select! {
        r = tokio::io::copy_bidirectional(&mut client, &mut backend) => r.map(|_| Ended::Closed),
        () = activity.idle_for(idle) => Ok(Ended::Idle),
        () = stop.cancelled() => Ok(Ended::Stopped),
    }
}

/// When a stream last moved a byte, in milliseconds since its start.
#[derive(Clone)]
struct Activity {
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Completes once nothing moved for `idle`; each wake-up sleeps until
    /// the deadline the latest progress set.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// A stream that records its progress in an [`Activity`].
struct Watched<S> {
    inner: S,
    activity: Activity,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn each_user_gets_the_cap_and_a_closed_tunnel_frees_its_slot() {
        let tunnels = Tunnels::new(2, Duration::from_secs(60));
        let (alice, bob): (Arc<str>, Arc<str>) = ("alice".into(), "bob".into());
        let one = tunnels.open(&alice).unwrap();
        let two = tunnels.open(&alice).unwrap();
        assert!(tunnels.open(&alice).is_none(), "the third is refused");
        let bobs = tunnels.open(&bob).expect("another user is unaffected");
        drop(one);
        let three = tunnels.open(&alice).expect("a closed tunnel frees its slot");
        assert_eq!(tunnels.count("alice"), 2);
        drop((two, three, bobs));
        assert!(tunnels.open.lock().unwrap().is_empty(), "no entry left behind");
    }

    #[tokio::test]
    async fn an_idle_relay_ends_and_a_busy_one_does_not() {
        let idle = Duration::from_millis(300);
        let stop = CancellationToken::new();

        // Nothing moves: ended after the idle timeout.
        let (client, _client_peer) = tokio::io::duplex(64);
        let (backend, _backend_peer) = tokio::io::duplex(64);
        let started = Instant::now();
        assert_eq!(relay(client, backend, idle, &stop).await.unwrap(), Ended::Idle);
        assert!(started.elapsed() >= idle, "{:?}", started.elapsed());

        // A byte every 100 ms, one way or the other, for four idle timeouts: still open.
        let (client, mut client_peer) = tokio::io::duplex(64);
        let (backend, mut backend_peer) = tokio::io::duplex(64);
        let task = tokio::spawn({
            let stop = stop.clone();
            async move { relay(client, backend, idle, &stop).await }
        });
        let mut byte = [0u8; 1];
        for i in 0..12u8 {
            tokio::time::sleep(Duration::from_millis(100)).await; // the traffic's rhythm
            if i % 2 == 0 {
                client_peer.write_all(&[i]).await.unwrap();
                backend_peer.read_exact(&mut byte).await.unwrap();
            } else {
                backend_peer.write_all(&[i]).await.unwrap();
                client_peer.read_exact(&mut byte).await.unwrap();
            }
            assert_eq!(byte[0], i);
        }
        assert!(!task.is_finished(), "busy relays stay open");
        stop.cancel();
        assert_eq!(task.await.unwrap().unwrap(), Ended::Stopped);
    }

    #[tokio::test]
    async fn a_relay_ends_when_both_sides_close() {
        let (client, client_peer) = tokio::io::duplex(64);
        let (backend, backend_peer) = tokio::io::duplex(64);
        drop((client_peer, backend_peer));
        let ended = relay(client, backend, Duration::from_secs(60), &CancellationToken::new()).await;
        assert_eq!(ended.unwrap(), Ended::Closed);
    }
}
