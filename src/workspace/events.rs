//! Following the engine: subscribe to its event stream for roost's
//! containers, reconcile after every (re)connection so nothing missed while
//! disconnected stays wrong, reconnect with backoff when the stream ends.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::registry::Registry;

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

pub async fn follow(registry: Arc<Registry>, cancel: CancellationToken) {
    let mut backoff = BACKOFF_START;
    loop {
        match registry.runtime().events().await {
            Ok(mut stream) => {
                // Subscribed first, then reconciled: an event in between is not lost.
                match registry.reconcile().await {
                    Ok(()) => backoff = BACKOFF_START,
                    Err(e) => tracing::warn!(error = %e, "reconciling with the engine failed"),
                }
                loop {
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        event = stream.next() => match event {
                            Some(Ok(event)) => registry.on_event(event),
                            Some(Err(e)) => {
                                tracing::warn!(error = %e, "engine event stream lost");
                                break;
                            }
                            None => break,
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, retry_in = ?backoff, "cannot subscribe to engine events"),
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}
