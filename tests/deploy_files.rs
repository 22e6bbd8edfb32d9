//! The deployment files are checked, not just written:
//!
//! - every manifest in `k8s/` against the Kubernetes schemas
//!   (`kubernetes-validate --strict`, PyPI), and a broken one is refused;
//! - the Traefik Middleware CRD (for which there is no schema) against what
//!   roost itself publishes as its forwardAuth middleware;
//! - the alerting rules with `promtool check rules` and their unit tests
//!   with `promtool test rules` (Debian's `prometheus`);
//! - roost's live `/metrics` with `promtool check metrics`;
//! - every `roost_*` metric the rules and the Grafana dashboard name is one
//!   roost serves.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use support::issuer::TestIssuer;
use support::roost::{config_text, TestRoost};

/// Kubernetes version the manifests are checked against.
const KUBERNETES: &str = "1.33.0";

fn project(path: &str) -> PathBuf {
    support::project_dir().join(path)
}

/// `promtool` from Debian's `prometheus`: a failure in CI when missing,
/// a loud skip elsewhere.
fn promtool() -> Option<PathBuf> {
    let path = PathBuf::from("/usr/bin/promtool");
    if path.exists() {
        return Some(path);
    }
    let msg = "promtool not found (Debian's prometheus package; scripts/test installs it)";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!("\n*** SKIPPED: {msg} ***\n");
    None
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(project("k8s"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn validate(tool: &Path, files: &[PathBuf]) -> Output {
    run(Command::new(tool)
        .args(["--strict", "--quiet", "-k", KUBERNETES])
        .args(files))
}

#[test]
fn every_manifest_is_valid_against_the_kubernetes_schemas() {
    let Some(tool) = support::required_tool(".venv/bin/kubernetes-validate", "kubernetes-validate (PyPI)") else {
        return;
    };
    let files = manifests();
    assert!(files.len() >= 4, "{files:?}");
    let out = validate(&tool, &files);
    assert!(out.status.success(), "{}", text(&out));
    // Only the Traefik CRD kinds may lack a schema, and they are checked below.
    for line in text(&out).lines().filter(|l| l.contains("Couldn't find schema")) {
        assert!(line.contains("traefik.io/"), "{line}");
    }

    // The check can fail: a Deployment with a wrongly typed and an unknown field.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    let deployment = std::fs::read_to_string(project("k8s/roost.yaml"))
        .unwrap()
        .replace("replicas: 3", "replicas: three\n  colour: blue");
    std::fs::write(&broken, deployment).unwrap();
    let out = validate(&tool, &[broken]);
    assert!(!out.status.success(), "a broken manifest passed: {}", text(&out));
}

/// The YAML documents of `file`, as JSON (through the venv's PyYAML, which
/// kubernetes-validate brings).
fn yaml_documents(file: &Path) -> Option<Vec<Value>> {
    let python = support::required_tool(".venv/bin/python", "the project's virtualenv")?;
    let out = run(Command::new(python)
        .arg("-c")
        .arg("import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))")
        .arg(file));
    assert!(out.status.success(), "{}", text(&out));
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

/// roost with the memory runtime, and its issuer.
async fn roost() -> (TestRoost, TestIssuer) {
    let issuer = TestIssuer::start(&["k1"]).await;
    let roost = TestRoost::start(&config_text(&issuer.url, "", "")).await;
    (roost, issuer)
}

#[tokio::test]
async fn the_middleware_crd_is_the_one_roost_publishes() {
    let Some(docs) = yaml_documents(&project("k8s/traefik.yaml")) else {
        return;
    };
    let crd = docs
        .iter()
        .find(|d| d["kind"] == "Middleware")
        .expect("a Middleware in k8s/traefik.yaml");
    assert_eq!(crd["apiVersion"], "traefik.io/v1alpha1");
    let theirs = &crd["spec"]["forwardAuth"];
    assert!(theirs["address"].as_str().unwrap().ends_with(":8081/auth"), "{theirs}");

    let (roost, _issuer) = roost().await;
    let table = roost
        .client
        .get(&format!("http://{}/traefik", roost.internal), &[])
        .await;
    let table: Value = serde_json::from_str(&table.body).unwrap();
    let ours = &table["http"]["middlewares"]["roost-auth"]["forwardAuth"];
    for key in [
        "authResponseHeadersRegex",
        "addAuthCookiesToResponse",
        "maxResponseBodySize",
        "trustForwardHeader",
    ] {
        assert_eq!(theirs[key], ours[key], "{key}");
    }
    let headers = |v: &Value| -> BTreeSet<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap().to_ascii_lowercase())
            .collect()
    };
    assert_eq!(
        headers(&theirs["authResponseHeaders"]),
        headers(&ours["authResponseHeaders"])
    );
    // The static configuration polls roost's internal Service.
    let static_config = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    let yml = static_config["data"]["traefik.yml"].as_str().unwrap();
    assert!(
        yml.contains("endpoint: \"http://roost-internal.roost.svc:8081/traefik\""),
        "{yml}"
    );
}

#[test]
fn the_alerting_rules_pass_promtool_and_their_unit_tests() {
    let Some(promtool) = promtool() else { return };
    let out = run(Command::new(&promtool)
        .args(["check", "rules"])
        .arg(project("deploy/prometheus/roost-rules.yml")));
    assert!(out.status.success(), "{}", text(&out));
    let out = run(Command::new(&promtool)
        .args(["test", "rules"])
        .arg(project("deploy/prometheus/roost-rules.test.yml")));
    assert!(out.status.success(), "{}", text(&out));
    // The check can fail: a rule with a broken expression.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yml");
    std::fs::write(
        &broken,
        "groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: rate(roost_store_up[5m]\n",
    )
    .unwrap();
    let out = run(Command::new(&promtool).args(["check", "rules"]).arg(&broken));
    assert!(!out.status.success(), "{}", text(&out));
}

/// roost's OpenMetrics exposition as the Prometheus text format that
/// `promtool check metrics` parses: OpenMetrics names a counter family
/// without `_total` in `# HELP` and `# TYPE` (its samples carry it) and
/// ends with `# EOF`; Prometheus itself makes the same translation when it
/// scrapes OpenMetrics. Everything else is passed through for promtool to lint.
fn as_prometheus_text(open_metrics: &str) -> String {
    let counters: BTreeSet<&str> = open_metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::new();
    for line in open_metrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let header = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match header {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let name = if counters.contains(name) {
                    format!("{name}_total")
                } else {
                    name.to_string()
                };
                out.push_str(&format!("{prefix}{name} {tail}\n"));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// The families `src/metrics.rs` registers (`roost_` + the first string
/// after each `registry.register(`).
fn registered_families() -> BTreeSet<String> {
    let source = std::fs::read_to_string(project("src/metrics.rs")).unwrap();
    source
        .split("registry.register(")
        .skip(1)
        .filter_map(|call| call.split('"').nth(1))
        .map(|name| format!("roost_{name}"))
        .collect()
}

/// `roost_*` names in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("roost_") {
        let start = i + at;
        let before_ok = start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .map_or(text.len(), |n| start + n);
        if before_ok {
            names.insert(text[start..end].to_string());
        }
        i = end;
    }
    names
}

#[tokio::test]
async fn live_metrics_pass_promtool_and_cover_every_name_the_rules_and_dashboard_use() {
    let Some(promtool) = promtool() else { return };
    let (roost, _issuer) = roost().await;
    // Some traffic first, so that request families have samples.
    let _ = roost.client.get(&format!("http://{}/auth", roost.internal), &[]).await;
    let metrics = roost
        .client
        .get(&format!("http://{}/metrics", roost.internal), &[])
        .await;
    assert_eq!(metrics.status, 200);
    let body = as_prometheus_text(&metrics.body);
    let out = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "promtool check metrics:\n{}", text(&out));

    // Every family roost serves, by its TYPE line's name; a family with no
    // sample yet (no failure so far) is not in the exposition, so the
    // families src/metrics.rs registers count too, and every family served
    // must be one of those.
    let live: BTreeSet<String> = metrics
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    let registered = registered_families();
    assert!(
        live.is_subset(&registered),
        "live {live:?} vs registered {registered:?}"
    );
    assert!(live.len() >= 5, "{live:?}");
    let served: BTreeSet<&str> = registered.iter().map(String::as_str).collect();
    let family = |name: &str| -> String {
        for suffix in ["_total", "_bucket", "_count", "_sum", "_created"] {
            if let Some(base) = name.strip_suffix(suffix) {
                if served.contains(base) {
                    return base.to_string();
                }
            }
        }
        name.to_string()
    };
    let rules = std::fs::read_to_string(project("deploy/prometheus/roost-rules.yml")).unwrap();
    let dashboard = std::fs::read_to_string(project("deploy/grafana/roost.json")).unwrap();
    let parsed: Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    assert!(!parsed["panels"].as_array().unwrap().is_empty());
    let used = metric_names(&rules).into_iter().chain(metric_names(&dashboard));
    let mut missing = Vec::new();
    let mut seen = 0;
    for name in used {
        seen += 1;
        if !served.contains(family(&name).as_str()) {
            missing.push(name);
        }
    }
    assert!(seen >= 10, "the rules and dashboard name roost's metrics");
    assert!(
        missing.is_empty(),
        "not served by roost: {missing:?}\nserved: {served:?}"
    );
}
