//! The isolation probe: a tiny workspace that tries connections from inside
//! its container and says how each went (`scripts/build-images` packs it
//! into `roost-probe:test`; `tests/isolation.rs` drives it through Traefik).
//! Standard library only.
//!
//! Routes (HTTP/1.1 on `$PORT`, default 8080):
//! - `GET /healthz` → 200 `ok`
//! - `GET /connect?to=HOST:PORT&to=...` → a JSON object with, per target, how a TCP
//!   connect went within 1.5 s: `"open"`, `"refused"`, `"unreachable"`, `"timeout"`
//!   or `"error: ..."` (targets are tried at once; IPv6 as `[addr]:port`)
//! - `GET /unix?path=/var/run/docker.sock` → `{"<path>": "open" | "missing" | "refused" | "error: ..."}`
//! - `GET /routes` → `/proc/net/route` as is (no `00000000` destination: no default route)
//!
//! `--probe` GETs its own `/healthz` on 127.0.0.1:$PORT and exits 0 or 1 (the
//! image's HEALTHCHECK: a scratch image has no shell or curl).
//!
//! `PORT=8080 cargo run --example probe`

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);
const MAX_TARGETS: usize = 256;

fn main() {
    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p.parse().unwrap_or_else(|_| {
            eprintln!("probe: PORT={p:?} is not a port");
            std::process::exit(2)
        }),
        Err(_) => 8080,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => {}
        Some("--probe") => std::process::exit(health_probe(port)),
        Some(other) => {
            eprintln!("probe: unknown argument {other:?} (usage: probe [--probe])");
            std::process::exit(2);
        }
    }
    let listener = TcpListener::bind(("0.0.0.0", port)).unwrap_or_else(|e| {
        eprintln!("probe: cannot listen on port {port}: {e}");
        std::process::exit(1)
    });
    eprintln!("probe listening on {}", listener.local_addr().unwrap());
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        std::thread::spawn(move || serve(conn));
    }
}

/// `GET /healthz` on our own port: 0 when it answers 200.
fn health_probe(port: u16) -> i32 {
    let check = || -> std::io::Result<bool> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        tcp.set_read_timeout(Some(Duration::from_secs(2)))?;
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")?;
        let mut head = [0u8; 12];
        tcp.read_exact(&mut head)?;
        Ok(head.starts_with(b"HTTP/1.1 200"))
    };
    i32::from(!matches!(check(), Ok(true)))
}

/// One connection, keep-alive until the client closes it or sends `Connection: close`.
fn serve(conn: TcpStream) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let Ok(mut out) = conn.try_clone() else { return };
    let mut input = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if input.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut close = false;
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if input.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
                    close = true;
                } else if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse().unwrap_or(0);
                }
            }
        }
        // Bodies are not used; read and drop them to keep the connection in step.
        if std::io::copy(&mut (&mut input).take(length as u64), &mut std::io::sink()).is_err() {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let (status, content_type, body) = answer(method, target);
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{}\r\n",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        if out
            .write_all(head.as_bytes())
            .and_then(|()| out.write_all(body.as_bytes()))
            .is_err()
            || close
        {
            return;
        }
    }
}

fn answer(method: &str, target: &str) -> (&'static str, &'static str, String) {
    const JSON: &str = "application/json";
    const TEXT: &str = "text/plain; charset=utf-8";
    if method != "GET" {
        return ("405 Method Not Allowed", TEXT, "GET only\n".into());
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params = || {
        query.split('&').filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((decode(k), decode(v)))
        })
    };
    match path {
        "/healthz" => ("200 OK", TEXT, "ok\n".into()),
        "/routes" => match std::fs::read_to_string("/proc/net/route") {
            Ok(text) => ("200 OK", TEXT, text),
            Err(e) => ("500 Internal Server Error", TEXT, format!("{e}\n")),
        },
        "/connect" => {
            let targets: Vec<String> = params().filter(|(k, _)| k == "to").map(|(_, v)| v).collect();
            if targets.is_empty() || targets.len() > MAX_TARGETS {
                return (
                    "400 Bad Request",
                    TEXT,
                    format!("give 1 to {MAX_TARGETS} to=HOST:PORT\n"),
                );
            }
            let outcomes: Vec<String> = std::thread::scope(|s| {
                let tries: Vec<_> = targets.iter().map(|t| s.spawn(move || connect(t))).collect();
                tries
                    .into_iter()
                    .map(|t| t.join().unwrap_or_else(|_| "error: panicked".into()))
                    .collect()
            });
            ("200 OK", JSON, json_object(targets.iter().zip(&outcomes)))
        }
        "/unix" => {
            let Some((_, path)) = params().find(|(k, _)| k == "path") else {
                return ("400 Bad Request", TEXT, "give path=/a/socket\n".into());
            };
            let outcome = match UnixStream::connect(&path) {
                Ok(_) => "open".to_string(),
                Err(e) if e.kind() == ErrorKind::NotFound => "missing".into(),
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => "refused".into(),
                Err(e) => format!("error: {e}"),
            };
            ("200 OK", JSON, json_object([(&path, &outcome)]))
        }
        _ => ("404 Not Found", TEXT, "not found\n".into()),
    }
}

/// How a TCP connect to `target` (`HOST:PORT`) went.
fn connect(target: &str) -> String {
    let addr = match target.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => match target.to_socket_addrs().map(|mut a| a.next()) {
            Ok(Some(a)) => a,
            Ok(None) => return "error: no address".into(),
            Err(e) => return format!("error: cannot resolve: {e}"),
        },
    };
    match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
        Ok(_) => "open".into(),
        Err(e) => match (e.kind(), e.raw_os_error()) {
            (ErrorKind::ConnectionRefused, _) => "refused".into(),
            (ErrorKind::TimedOut | ErrorKind::WouldBlock, _) => "timeout".into(),
            // ENETUNREACH, EHOSTUNREACH
            (ErrorKind::NetworkUnreachable | ErrorKind::HostUnreachable, _) | (_, Some(101 | 113)) => {
                "unreachable".into()
            }
            _ => format!("error: {e}"),
        },
    }
}

/// `%XX` and `+` decoding of one query component.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_object<'a>(pairs: impl IntoIterator<Item = (&'a String, &'a String)>) -> String {
    let fields: Vec<String> = pairs
        .into_iter()
        .map(|(k, v)| format!("{}:{}", json_string(k), json_string(v)))
        .collect();
    format!("{{{}}}\n", fields.join(","))
}
