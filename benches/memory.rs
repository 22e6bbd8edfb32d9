//! roost's memory with many users: 10,000 known workspaces (running, on
//! the in-memory runtime) and 100,000 cached browser sessions (ten cookies
//! per user, each opened by a real `/auth` decision). Prints the process's
//! resident memory (VmRSS) before and after; the target is at most 100 MB.
//!
//!   cargo bench --bench memory        # release: the figure for the README
//!   cargo test --bench memory         # debug: a tenth of it, as a check that it runs
//!   cargo bench --bench memory -- --users 10000 --per-user 1
//!
//! Nothing but roost's state is held by the benchmark: each cookie is made,
//! decided and dropped.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;

use http::{HeaderMap, HeaderValue};
use roost::forward_auth::AuthRequest;

/// Resident memory, MiB, from /proc/self/status.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kib / 1024.0
}

const LIMIT_MIB: f64 = 100.0;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1)?.parse::<usize>().ok())
    };
    let users = arg("--users").unwrap_or(if cfg!(debug_assertions) { 1_000 } else { 10_000 });
    let per_user = arg("--per-user").unwrap_or(10);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let app = common::app_with(&rt, "max_running = 100000\nidle_timeout = \"24h\"");
    let before = rss_mib();
    let origin = roost::public_url::PublicOrigin::new(&app.config.routing);
    let sessions = roost::auth::Sessions::new(&app.config.secrets, &app.config.session, &origin).expect("sessions");
    let mut headers = HeaderMap::new();
    headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
    headers.insert("x-forwarded-method", HeaderValue::from_static("GET"));
    headers.insert("x-forwarded-uri", HeaderValue::from_static("/lab/tree"));
    for u in 0..users {
        let user = format!("user-{u:05}");
        headers.insert(
            "x-forwarded-host",
            HeaderValue::from_str(&format!("{user}.ws.roost.test")).expect("host"),
        );
        for s in 0..per_user {
            let session = sessions.start(&user, &user, Some(format!("{user}@example.com")), false, vec![]);
            let set_cookie = sessions.set_cookie(&session);
            let cookie = set_cookie
                .to_str()
                .expect("cookie")
                .split(';')
                .next()
                .expect("cookie")
                .to_string();
            headers.insert("cookie", HeaderValue::from_str(&cookie).expect("cookie"));
            // A different address per request: no per-address limit in the way.
            let n = (u * per_user + s) as u32;
            let peer = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | n));
            let req = AuthRequest::from_headers(&headers, peer);
            let resp = rt.block_on(roost::forward_auth::handle(&app.forward_auth, &req));
            match resp {
                Ok(r) if r.status() == 200 => {}
                Ok(r) => panic!("{user}: /auth answered {}", r.status()),
                Err(e) => panic!("{user}: /auth refused: {e}"),
            }
        }
    }
    let after = rss_mib();
    let workspaces = app.workspaces.ready().len();
    let cached = app.forward_auth.cached_sessions();
    println!("\nworkspaces known and running      {workspaces:>9}");
    println!("browser sessions cached            {cached:>9}");
    println!("RSS before (keys loaded)           {before:>8.1} MiB");
    println!("RSS after                          {after:>8.1} MiB  (limit {LIMIT_MIB} MiB at full size)");
    println!(
        "per workspace + its {per_user} sessions      {:>8.1} KiB",
        (after - before) * 1024.0 / users as f64
    );
    if workspaces != users || cached != (users * per_user) as u64 {
        eprintln!("expected {users} workspaces and {} sessions", users * per_user);
        return ExitCode::FAILURE;
    }
    if !cfg!(debug_assertions) && users * per_user >= 100_000 && after > LIMIT_MIB {
        eprintln!("over the limit");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
