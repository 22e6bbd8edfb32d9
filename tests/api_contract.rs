//! The management API against its own OpenAPI document, on the real
//! engine: every admin operation the document lists (read from the served
//! `openapi.json`, so a new one is covered without touching this file)
//! answers 403 to a signed-in non-admin and not 403 to an admin; and
//! schemathesis, run with a user's and an admin's token, finds no 5xx and
//! no response whose status, content type or body the document does not
//! describe.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::{json, Value};

use support::http::Reply;
use support::roost::{TestRoost, AUDIENCE, DOMAIN};
use support::tokens::{auth0_claims, sign};
use support::workspace::{container, World};

const API: &str = "/_roost/api/v1";

/// `[workspace]` lines and more: quick stops, no throttling of the fuzzer,
/// and a second profile for the profile endpoints.
const EXTRA: &str = r#"drain_grace = "100ms"
stop_timeout = "1s"
[limits]
authenticated_per_user = "100000/min"
unauthenticated_per_ip = "100000/min"
[[profiles]]
name = "lean"
description = "The echo again, for those allowed"
image = "roost-echo:test"
permission = "roost:lean"
"#;

/// schemathesis sends bodies only of media types it knows: a tar archive
/// (a volume's backup) goes as the bytes it generates.
const HOOKS: &str = "import schemathesis\n\
schemathesis.serializer.alias(\"application/x-tar\", \"application/octet-stream\")\n";

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// A token of `user` holding the admin permission roost is configured with.
fn admin_token(w: &World, roost: &TestRoost, user: &str) -> String {
    let mut claims = auth0_claims(&w.issuer.url, AUDIENCE, user);
    claims["permissions"] = json!([roost.app.config.oidc.admin_permission]);
    sign("k1", Some("k1"), &claims)
}

/// `method API+path` with `token`, no body.
async fn send(roost: &TestRoost, method: &str, path: &str, token: &str) -> Reply {
    let req = Request::builder()
        .method(method)
        .uri(roost.public_url(&format!("{API}{path}")))
        .header("host", DOMAIN)
        .header("authorization", format!("Bearer {token}"))
        .body(Full::<Bytes>::default())
        .unwrap();
    roost.client.send(req).await.unwrap()
}

/// The document as roost serves it.
async fn document(roost: &TestRoost) -> Value {
    let url = roost.public_url(&format!("{API}/openapi.json"));
    let r = roost.client.get(&url, &[("host", DOMAIN)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).expect("openapi.json is JSON")
}

/// A value a query parameter would plausibly take (`slug` for strings,
/// such as `confirm`).
fn plausible(param: &Value, slug: &str) -> String {
    let schema = &param["schema"];
    if let Some(v) = schema.get("default").or_else(|| schema["enum"].get(0)) {
        return v.as_str().map_or_else(|| v.to_string(), str::to_string);
    }
    match schema["type"].as_str() {
        Some("integer" | "number") => schema.get("minimum").map_or("1".into(), Value::to_string),
        Some("boolean") => "true".into(),
        _ => slug.into(),
    }
}

/// Every operation under `/admin/` as (method, documented path, path and
/// query), `{slug}` being `slug`, with its required query parameters.
fn admin_operations(doc: &Value, slug: &str) -> Vec<(String, String, String)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        if !path.starts_with("/admin/") {
            continue;
        }
        let shared: Vec<Value> = item["parameters"].as_array().cloned().unwrap_or_default();
        for (method, op) in item.as_object().expect("a path item") {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            let concrete = path.replace("{slug}", slug).replace("{sub}", "auth0%7Cother");
            assert!(
                !concrete.contains('{'),
                "{method} {path}: a path parameter unknown here"
            );
            let query: Vec<String> = shared
                .iter()
                .chain(op["parameters"].as_array().into_iter().flatten())
                .filter(|p| p["in"] == "query" && p["required"] == true)
                .map(|p| format!("{}={}", p["name"].as_str().expect("a name"), plausible(p, slug)))
                .collect();
            let target = match query.is_empty() {
                true => concrete,
                false => format!("{concrete}?{}", query.join("&")),
            };
            ops.push((method.to_uppercase(), path.clone(), target));
        }
    }
    ops
}

/// The caller's workspace state, from `GET workspace`.
async fn state(roost: &TestRoost, token: &str) -> String {
    let r = send(roost, "GET", "/workspace", token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let status: Value = serde_json::from_str(&r.body).expect("JSON status");
    status["state"].as_str().expect("a state").to_string()
}

#[tokio::test]
async fn every_admin_operation_refuses_a_non_admin() {
    let Some(w) = World::new("api-admin").await else { return };
    let roost = w.roost(EXTRA).await;
    let alice = w.user("alice");
    let user = w.token(&alice);
    let admin = admin_token(&w, &roost, &w.user("root"));

    // alice's own workspace runs: refused admin actions on it must leave it so.
    let r = send(&roost, "POST", "/workspace", &user).await;
    assert_eq!(r.status, 202, "{}", r.body);
    support::eventually(Duration::from_secs(60), "alice's workspace running", || {
        let (roost, user) = (&roost, &user);
        async move { (state(roost, user).await == "running").then_some(()) }
    })
    .await;

    let doc = document(&roost).await;
    let mut wrong = Vec::new();
    for slug in [alice.as_str(), "someone-1234"] {
        let ops = admin_operations(&doc, slug);
        assert!(!ops.is_empty(), "the document lists no admin operation");
        for (method, _, target) in ops {
            let r = send(&roost, &method, &target, &user).await;
            if r.status != 403 {
                wrong.push(format!("{method} {target} as a non-admin: {} {}", r.status, r.body));
            }
        }
    }
    assert_eq!(state(&roost, &user).await, "running", "a refused admin action acted");

    // An admin is let through (on a workspace nobody has); the overviews
    // (reads naming no workspace) succeed.
    for (method, path, target) in admin_operations(&doc, "someone-1234") {
        let r = send(&roost, &method, &target, &admin).await;
        let refused = r.status == 403 || r.status.is_server_error();
        if refused || (method == "GET" && !path.contains('{') && !r.status.is_success()) {
            wrong.push(format!("{method} {target} as an admin: {} {}", r.status, r.body));
        }
    }
    assert!(
        wrong.is_empty(),
        "admin operations answered wrongly:\n{}",
        wrong.join("\n")
    );
    let running = support::docker::inspect(&container(&alice), "{{.State.Running}}");
    assert_eq!(running, "true", "alice's container was stopped");
}

/// One schemathesis run against `roost` with `token`, in `dir`; `filter`
/// selects the operations. Its exit status and its output.
async fn schemathesis(
    tool: &Path,
    roost: &TestRoost,
    dir: &Path,
    token: &str,
    filter: [&str; 2],
    n: u32,
) -> (bool, String) {
    std::fs::create_dir_all(dir).unwrap();
    let hooks = dir.join("roost_hooks.py");
    std::fs::write(&hooks, HOOKS).unwrap();
    let mut cmd = tokio::process::Command::new(tool);
    cmd.arg("run")
        .arg(roost.public_url(&format!("{API}/openapi.json")))
        .args(["--header", &format!("Host: {DOMAIN}")])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(filter)
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--max-examples",
            &n.to_string(),
            "--request-timeout",
            "20",
            "--generation-database",
            "none",
            "--no-color",
        ])
        // Its caches stay in the temporary directory; loopback needs no proxy.
        .current_dir(dir)
        .env("SCHEMATHESIS_HOOKS", &hooks)
        .env("NO_PROXY", "127.0.0.1")
        .env("no_proxy", "127.0.0.1")
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .expect("schemathesis finished within 5 minutes")
        .expect("schemathesis runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_every_response_matches() {
    let Some(tool) = support::required_tool(".venv/bin/schemathesis", "schemathesis") else {
        return;
    };
    let Some(w) = World::new("api-fuzz").await else { return };
    let roost = w.roost(EXTRA).await;
    let user = w.token(&w.user("alice"));
    let admin = admin_token(&w, &roost, &w.user("root"));
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    // A user on their own operations (test 1 covers them on admin ones),
    // an admin on every operation; at once.
    let (user_dir, admin_dir) = (dir.path().join("user"), dir.path().join("admin"));
    let (as_user, as_admin) = tokio::join!(
        schemathesis(
            &tool,
            &roost,
            &user_dir,
            &user,
            ["--exclude-path-regex", "^/admin/"],
            10
        ),
        schemathesis(&tool, &roost, &admin_dir, &admin, ["--include-path-regex", "^/"], 8),
    );
    eprintln!("schemathesis: both runs took {:?}", started.elapsed());
    let mut failed = Vec::new();
    for (who, (ok, output)) in [("a user", as_user), ("an admin", as_admin)] {
        let summary = output
            .lines()
            .rev()
            .find(|l| l.starts_with("==="))
            .unwrap_or("no summary");
        eprintln!("schemathesis as {who}: {summary}");
        if !ok {
            failed.push(format!("---- schemathesis as {who} ----\n{output}"));
        }
    }
    assert!(failed.is_empty(), "schemathesis found problems:\n{}", failed.join("\n"));
}
