//! The echo server's WebSocket endpoint (`GET /ws`): the upgrade handshake
//! and an echo session that answers pings and closes with 1001 on shutdown.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::{stopped, text, Body, State};

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

pub(crate) fn wants_websocket(headers: &HeaderMap) -> bool {
    header_has_token(headers, header::UPGRADE, "websocket") && header_has_token(headers, header::CONNECTION, "upgrade")
}

/// Answers the upgrade with 101 and runs the echo session on the upgraded connection.
pub(crate) fn websocket(req: &mut Request<Incoming>, state: &State) -> Response<Body> {
    let headers = req.headers();
    if headers.get(header::SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) != Some(b"13") {
        let mut resp = text(StatusCode::UPGRADE_REQUIRED, "unsupported WebSocket version; want 13");
        resp.headers_mut()
            .insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        return resp;
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return text(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
    };
    let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "bad accept key");
    };

    let on_upgrade = hyper::upgrade::on(req);
    let mut shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                eprintln!("echo: websocket upgrade: {e}");
                return;
            }
        };
        let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        loop {
            let msg = tokio::select! {
                msg = ws.next() => msg,
                _ = stopped(&mut shutdown) => {
                    let frame = CloseFrame { code: CloseCode::Away, reason: "server shutting down".into() };
                    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(Some(frame))).await;
                    break;
                }
            };
            let result = match msg {
                None => break,
                Some(Err(_)) => break,
                Some(Ok(msg @ (Message::Text(_) | Message::Binary(_)))) => ws.send(msg).await,
                // tungstenite queues the pong itself; flushing sends it now.
                Some(Ok(Message::Ping(_))) => ws.flush().await,
                // tungstenite answers the close handshake; keep reading until the stream ends.
                Some(Ok(Message::Pong(_) | Message::Close(_) | Message::Frame(_))) => Ok(()),
            };
            if result.is_err() {
                break;
            }
        }
    });

    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    resp
}
