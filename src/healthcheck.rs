//! `roost healthcheck`: one `GET /healthz` on roost's internal listener,
//! exit 0 on 200 and 1 otherwise, with a one-line message. It is the
//! HEALTHCHECK of roost's image, which has no shell and no curl.
//!
//! The address comes from `--url`, or from `internal_listen` in the config
//! file (default `127.0.0.1:8081`; `0.0.0.0` and `[::]` mean loopback).
//! Only that key is read: the check needs none of the `ROOST_*` secrets and
//! never validates the rest of the file (`check-config` does that).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;

/// Where `serve` is pointed in roost's image, and so the check's default.
pub const DEFAULT_CONFIG: &str = "/etc/roost/roost.toml";
/// `internal_listen` when the file does not set it (as `serve` reads it).
const DEFAULT_INTERNAL_LISTEN: &str = "127.0.0.1:8081";
/// The whole check (connect, request, status line) must fit in this.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Runs the check and prints its one line: on stdout when healthy, on
/// stderr otherwise.
pub fn run(config: &Path, url: Option<&str>) -> ExitCode {
    let url = match url {
        Some(url) => url.to_string(),
        None => match url_from_config(config) {
            Ok(url) => url,
            Err(e) => {
                eprintln!("roost healthcheck: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    match check(&url, TIMEOUT) {
        Ok(()) => {
            println!("roost healthcheck: {url}: 200 OK");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("roost healthcheck: {url}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `http://<internal_listen>/healthz` for the config file at `path`.
pub fn url_from_config(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| {
        let first = e.message().lines().next().unwrap_or("").to_string();
        format!("{}: not valid TOML: {first}", path.display())
    })?;
    let listen = match table.get("internal_listen") {
        None => DEFAULT_INTERNAL_LISTEN,
        Some(toml::Value::String(s)) => s.as_str(),
        Some(_) => return Err(format!("{}: internal_listen is not a string", path.display())),
    };
    let addr: SocketAddr = listen
        .parse()
        .map_err(|_| format!("{}: internal_listen {listen:?} is not an address", path.display()))?;
    if addr.port() == 0 {
        return Err(format!(
            "{}: internal_listen {listen:?} has port 0 (chosen when roost starts): pass --url",
            path.display()
        ));
    }
    Ok(healthz_url(addr))
}

/// `http://<addr>/healthz`, an unspecified address (`0.0.0.0`, `[::]`)
/// replaced by the loopback one of its family.
pub fn healthz_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}/healthz", SocketAddr::new(ip, addr.port()))
}

/// GETs `url` (plain `http`), Ok on 200, within `timeout`.
pub fn check(url: &str, timeout: Duration) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    if parsed.scheme() != "http" {
        return Err(format!("only http:// is checked, not {}://", parsed.scheme()));
    }
    let host = parsed.host_str().ok_or("the URL has no host")?.to_string();
    let port = parsed.port_or_known_default().unwrap_or(80);
    let authority = match parsed.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    let path = &parsed[url::Position::BeforePath..url::Position::AfterQuery];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        let request = get(&host, port, &authority, path);
        match tokio::time::timeout(timeout, request).await {
            Ok(Ok(200)) => Ok(()),
            Ok(Ok(status)) => Err(format!("answered {status}, not 200")),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        }
    })
}

/// One HTTP/1.1 GET; the status code.
async fn get(host: &str, port: u16, authority: &str, path: &str) -> Result<u16, String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    tokio::spawn(conn);
    let request = http::Request::get(path)
        .header(http::header::HOST, authority)
        .header(http::header::USER_AGENT, "roost-healthcheck")
        .body(Empty::new())
        .map_err(|e| format!("bad request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    Ok(response.status().as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_addresses_are_checked_on_loopback() {
        let url = |s: &str| healthz_url(s.parse().unwrap());
        assert_eq!(url("0.0.0.0:8081"), "http://127.0.0.1:8081/healthz");
        assert_eq!(url("[::]:9000"), "http://[::1]:9000/healthz");
        assert_eq!(url("10.1.2.3:8081"), "http://10.1.2.3:8081/healthz");
    }

    fn config(text: &str) -> Result<String, String> {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        url_from_config(file.path())
    }

    #[test]
    fn the_config_names_the_internal_listener_or_the_default_applies() {
        assert_eq!(config("").unwrap(), "http://127.0.0.1:8081/healthz");
        assert_eq!(
            config("internal_listen = \"0.0.0.0:7001\"\n").unwrap(),
            "http://127.0.0.1:7001/healthz"
        );
        assert!(config("internal_listen = \"127.0.0.1:0\"\n")
            .unwrap_err()
            .contains("--url"));
        assert!(config("internal_listen = 8081\n").unwrap_err().contains("not a string"));
        assert!(config("internal_listen = \"nowhere\"\n")
            .unwrap_err()
            .contains("not an address"));
        assert!(config("[oidc\n").unwrap_err().contains("not valid TOML"));
    }

    #[test]
    fn only_http_is_checked() {
        let e = check("https://127.0.0.1:1/healthz", Duration::from_secs(1)).unwrap_err();
        assert!(e.contains("only http://"), "{e}");
    }
}
