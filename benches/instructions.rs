//! Instruction counts of roost's hot paths, from callgrind: the same on a
//! busy machine as on an idle one, so a change that makes a path dearer
//! shows even where timings drown in noise.
//!
//! Paths: `/auth` with a cached bearer token, `/auth` with a session
//! cookie, and the `/traefik` render for 100 workspaces. Each is run
//! under `valgrind --tool=callgrind`, counting only inside [`measured`]
//! (N iterations after the set-up and a warm-up), so the set-up's own
//! variations (key loading, background tasks starting) stay out.
//!
//!   cargo bench --bench instructions                  # release: print, compare
//!   cargo bench --bench instructions -- --save        # write the release baseline
//!   cargo test --bench instructions                   # debug: the CI check
//!
//! Baselines: `benches/instructions.baseline` (one line per profile and
//! path). The check fails when any path costs more than 10% over its
//! baseline; a path that got cheaper by more than 10% asks for `--save`.
//! Without valgrind it is a loud skip, and a failure in CI (`CI=true`).

mod common;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, ExitCode};
use std::sync::Arc;

use http::HeaderValue;
use roost::forward_auth::AuthRequest;

const PATHS: [&str; 3] = ["auth_bearer_cached", "auth_session_cookie", "traefik_render_100"];
/// Iterations counted.
const N: u64 = 1000;
/// A path may cost this much more than its baseline.
const TOLERANCE: f64 = 1.10;
const BASELINE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/instructions.baseline");

fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [run, path, n] = args.as_slice() {
        if run == "run" {
            let n = n.parse().expect("iterations");
            run_path(path, n);
            return ExitCode::SUCCESS;
        }
    }
    measure(args.iter().any(|a| a == "--save"))
}

/// Runs `path` `n` times after its set-up and a warm-up (what valgrind counts).
fn run_path(path: &str, n: u64) {
    let (rt, app) = common::setup();
    let peer: IpAddr = "127.0.0.1".parse().unwrap();
    let mut headers = common::forwarded_headers();
    // alice's workspace is ready (in memory), as on the hot path.
    let tok = common::token("alice");
    let alice = rt.block_on(app.verifier.verify(&tok)).unwrap();
    rt.block_on(
        app.workspaces
            .ensure_ready(&alice, "alice", std::time::Duration::from_secs(5)),
    )
    .unwrap();
    match path {
        "auth_bearer_cached" => {
            let bearer = HeaderValue::from_str(&format!("Bearer {tok}")).unwrap();
            headers.insert("authorization", bearer);
        }
        "auth_session_cookie" => {
            let cookie = common::session_cookie(&app, "alice");
            headers.insert("cookie", HeaderValue::from_str(&cookie).unwrap());
        }
        "traefik_render_100" => {
            let ready: Vec<(Arc<str>, SocketAddr)> = (0..100u16)
                .map(|i| {
                    (
                        Arc::from(format!("user-{i:03}")),
                        SocketAddr::from(([10, 0, 0, 1], 20_000 + i)),
                    )
                })
                .collect();
            let routing = &app.config.routing;
            let mut render = || {
                black_box(roost::traefik::render(routing, black_box(&ready)));
            };
            (0..10).for_each(|_| render());
            measured(n, &mut render);
            return;
        }
        other => panic!("unknown path {other:?}"),
    }
    let mut decide = || {
        let req = AuthRequest::from_headers(black_box(&headers), peer);
        let resp = rt
            .block_on(roost::forward_auth::handle(&app.forward_auth, &req))
            .unwrap();
        assert_eq!(resp.status(), 200);
        black_box(resp);
    };
    (0..10).for_each(|_| decide());
    measured(n, &mut decide);
}

/// The only function callgrind counts in (`--toggle-collect`).
#[inline(never)]
fn measured(n: u64, work: &mut dyn FnMut()) {
    for _ in 0..n {
        work();
    }
}

/// Instructions callgrind counted for `path` run `n` times.
fn count(path: &str, n: u64) -> Result<u64, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = Command::new("valgrind")
        .args([
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            "--collect-atstart=no",
            "--toggle-collect=*instructions::measured*",
        ])
        .arg(&me)
        .args(["run", path, &n.to_string()])
        .output()
        .map_err(|e| format!("valgrind: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("{path} under valgrind failed: {stderr}"));
    }
    stderr
        .lines()
        .find_map(|l| l.split("Collected : ").nth(1))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| format!("no instruction count in valgrind's output: {stderr}"))
}

fn read_baseline() -> BTreeMap<String, u64> {
    std::fs::read_to_string(BASELINE)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (profile, path, n) = (f.next()?, f.next()?, f.next()?.parse().ok()?);
            Some((format!("{profile} {path}"), n))
        })
        .collect()
}

fn measure(save: bool) -> ExitCode {
    if Command::new("valgrind").arg("--version").output().is_err() {
        let msg = "valgrind is not installed (Debian's valgrind): instruction counts not checked";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            eprintln!("error: {msg}");
            return ExitCode::FAILURE;
        }
        eprintln!("\n*** SKIPPED: {msg} ***\n");
        return ExitCode::SUCCESS;
    }
    let mut baseline = read_baseline();
    let mut failed = Vec::new();
    println!(
        "\n{:<24} {:>14} {:>14} {:>8}   ({} build)",
        "path",
        "instructions",
        "baseline",
        "ratio",
        profile()
    );
    for path in PATHS {
        let per = match count(path, N) {
            Ok(total) => total / N,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let key = format!("{} {path}", profile());
        let base = baseline.get(&key).copied();
        let ratio = base.map(|b| per as f64 / b as f64);
        println!(
            "{path:<24} {per:>14} {:>14} {:>8}",
            base.map_or("-".into(), |b| b.to_string()),
            ratio.map_or("-".into(), |r| format!("{r:.3}x"))
        );
        match ratio {
            Some(r) if r > TOLERANCE => failed.push(format!(
                "{path}: {per} instructions, {r:.3}x its baseline (at most {TOLERANCE}x)"
            )),
            Some(r) if r < 1.0 / TOLERANCE && !save => {
                println!("  {path} is over 10% cheaper than its baseline: record it with --save")
            }
            None if !save => failed.push(format!("{path}: no {} baseline (run with --save)", profile())),
            _ => {}
        }
        baseline.insert(key, per);
    }
    if save {
        let mut text = String::from("# profile path instructions-per-iteration (benches/instructions.rs)\n");
        for (key, n) in &baseline {
            text.push_str(&format!("{key} {n}\n"));
        }
        std::fs::write(BASELINE, text).expect("write the baseline");
        println!("baseline written to {BASELINE}");
        return ExitCode::SUCCESS;
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        for f in &failed {
            eprintln!("error: {f}");
        }
        ExitCode::FAILURE
    }
}
