use super::*;

const MINIMAL: &str = r#"
[oidc]
issuer = "https://tenant.auth0.com/"
audience = "https://roost.example.com"
[routing]
domain = "ws.example.com"
roost_url = "http://roost:8080"
[workspace]
image = "roost-echo:latest"
"#;

#[test]
fn minimal_config_gets_defaults() {
    let c = Config::from_toml(MINIMAL, Secrets::default()).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.oidc.username_claim, "sub");
    assert_eq!(c.oidc.admin_permission, "roost:admin");
    assert_eq!(c.oidc.algorithms, vec![Algorithm::RS256]);
    assert_eq!(c.oidc.issuer, "https://tenant.auth0.com/");
    assert_eq!(c.routing.scheme, Scheme::Https);
    assert_eq!(c.routing.entrypoints, vec!["web"]);
    assert_eq!(c.workspace.address, AddressMode::Network);
    assert_eq!(c.workspace.network, "roost-workspaces", "<deployment.id>-workspaces");
    assert!(!c.workspace.egress);
    assert_eq!(c.workspace.tmp_size, 256 * 1024 * 1024);
    assert_eq!(c.workspace.user, None);
    assert!(!c.workspace.read_only);
    assert_eq!(c.workspace.memory, 1024 * 1024 * 1024);
    assert_eq!(c.limits.unauthenticated_per_ip.count.get(), 30);
}

#[test]
fn every_bad_key_is_reported_at_once() {
    let text = r#"
listen = "nowhere"
colour = "blue"
[oidc]
issuer = "tenant.auth0.com"
audiense = "x"
algorithms = ["HS256"]
leeway = "a while"
[routing]
domain = "Not A Domain!"
roost_url = "http://roost:8080"
scheme = "gopher"
[workspace]
image = "roost-echo"
port = "eighty"
cpus = 0
memory = "1KiB"
idle_timeout = "2h"
max_lifetime = "1h"
address = "published"
network = "bridge"
tmp_size = "1KiB"
user = "root user"
max_running = 0
[limits]
unauthenticated_per_ip = "lots"
"#;
    let Err(ConfigError::Invalid(errors)) = Config::from_toml(text, Secrets::default()) else {
        panic!("expected an invalid config");
    };
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    for key in [
        "listen",
        "colour",
        "oidc.issuer",
        "oidc.audiense",
        "oidc.audience",
        "oidc.algorithms",
        "oidc.leeway",
        "routing.domain",
        "routing.scheme",
        "workspace.port",
        "workspace.cpus",
        "workspace.memory",
        "workspace.max_lifetime",
        "workspace.address",
        "workspace.network",
        "workspace.tmp_size",
        "workspace.user",
        "workspace.max_running",
        "limits.unauthenticated_per_ip",
    ] {
        assert!(keys.contains(&key), "{key} not reported in {errors:#?}");
    }
    let report = ConfigError::Invalid(errors).to_string();
    assert!(report.contains("\"eighty\""), "bad value shown: {report}");
    assert!(report.contains("\"lots\""), "bad value shown: {report}");
}

#[test]
fn secrets_are_never_shown() {
    let secrets = Secrets {
        oidc_client_secret: Some(Secret::new("hunter2-client-secret")),
        cookie_key: Some(Secret::new("0123456789abcdef0123456789abcdef-cookie")),
        cookie_key_previous: Some(Secret::new("0123456789abcdef0123456789abcdef-previous")),
        redis_url: Some(Secret::new("redis://roost:hunter2-redis@127.0.0.1:6379")),
    };
    let c = Config::from_toml(MINIMAL, secrets).unwrap();
    let shown = format!("{c:?}");
    assert!(!shown.contains("hunter2"));
    assert!(!shown.contains("-cookie"));
    assert!(!shown.contains("-previous"));
}

#[test]
fn browser_sign_in_needs_a_cookie_key_and_sane_session_settings() {
    let text = format!("{MINIMAL}\n[session]\nlifetime = \"8h\"\nmax_age = \"1h\"\nlogout_return_url = \"ftp://x\"\n")
        .replace("[oidc]", "[oidc]\nclient_id = \"roost\"\nscopes = \"email\"");
    let Err(ConfigError::Invalid(errors)) = Config::from_toml(&text, Secrets::default()) else {
        panic!("expected an invalid config");
    };
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    for key in [
        "ROOST_COOKIE_KEY",
        "session.max_age",
        "session.logout_return_url",
        "oidc.scopes",
    ] {
        assert!(keys.contains(&key), "{key} not reported: {keys:?}");
    }
}

#[test]
fn the_public_port_defaults_to_the_schemes() {
    let c = Config::from_toml(MINIMAL, Secrets::default()).unwrap();
    let expected = match c.routing.scheme {
        Scheme::Http => 80,
        Scheme::Https => 443,
    };
    assert_eq!(c.routing.public_port, expected);
    let text = MINIMAL.replace("[routing]", "[routing]\npublic_port = 70000");
    let Err(ConfigError::Invalid(errors)) = Config::from_toml(&text, Secrets::default()) else {
        panic!("expected an invalid config");
    };
    assert_eq!(errors[0].key, "routing.public_port");
}

#[test]
fn short_cookie_key_is_refused_by_name() {
    let secrets = Secrets {
        cookie_key: Some(Secret::new("short")),
        ..Secrets::default()
    };
    let Err(ConfigError::Invalid(errors)) = Config::from_toml(MINIMAL, secrets) else {
        panic!("expected an invalid config");
    };
    assert_eq!(errors[0].key, "ROOST_COOKIE_KEY");
    assert!(!errors[0].problem.contains("short\""), "value not echoed");
}

#[test]
fn syntax_errors_are_reported() {
    assert!(matches!(
        Config::from_toml("listen = ", Secrets::default()),
        Err(ConfigError::Syntax(_))
    ));
}

#[test]
fn published_ports_need_egress() {
    let text = MINIMAL.replace("[workspace]", "[workspace]\naddress = \"published\"");
    let Err(ConfigError::Invalid(errors)) = Config::from_toml(&text, Secrets::default()) else {
        panic!("expected an invalid config");
    };
    assert_eq!(errors[0].key, "workspace.address");
    assert!(errors[0].problem.contains("internal"), "{}", errors[0].problem);
    let text = MINIMAL.replace(
        "[workspace]",
        "[workspace]\naddress = \"published\"\negress = true\nuser = \"1000:1000\"\nread_only = true\nnetwork = \"ws_net.1\"",
    );
    let w = Config::from_toml(&text, Secrets::default()).unwrap().workspace;
    assert_eq!(w.address, AddressMode::Published);
    assert_eq!(w.user.as_deref(), Some("1000:1000"));
    assert!(w.read_only && w.egress);
    assert_eq!(w.network, "ws_net.1");
}

#[test]
fn check_config_says_what_was_meant_and_how_to_write_it() {
    let text = MINIMAL.replace(
        "[workspace]\n",
        "[workspace]\nidle_timout = \"1h\"\nmemory = 1024\nmax_lifetime = \"1 fortnight\"\ntmp_size = \"lots\"\n",
    );
    let Err(ConfigError::Invalid(errors)) = Config::from_toml(&text, Secrets::default()) else {
        panic!("expected an invalid config");
    };
    let problem = |key: &str| {
        errors
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.problem.clone())
            .unwrap_or_else(|| panic!("{key} not reported: {errors:?}"))
    };
    assert_eq!(
        problem("workspace.idle_timout"),
        "unknown key; did you mean `workspace.idle_timeout`?"
    );
    assert!(problem("workspace.memory").ends_with("write it in quotes, for example memory = \"1GiB\""));
    assert_eq!(
        problem("workspace.max_lifetime"),
        "\"1 fortnight\" is not a duration: write a number and a unit (ms, s, m, h, d), like \"30s\", \"5m\" or \"1h 30m\""
    );
    assert!(problem("workspace.tmp_size").starts_with("\"lots\" is not a size: write a number and a unit"));
}

#[test]
fn a_profile_is_the_workspace_with_its_own_keys_and_every_bad_one_is_named() {
    let good = format!(
        "{MINIMAL}idle_timeout = \"10m\"\nmemory = \"2GiB\"\n\
         [[profiles]]\nname = \"python\"\ndescription = \"Python\"\nimage = \"py:1\"\ncpus = 2.0\n\
         env = {{ A = \"1\" }}\npermission = \"roost:python\"\nmax_lifetime = \"2h\"\n\
         [quota]\nworkspace_hours = 10\nexempt_permission = \"roost:unlimited\"\n"
    );
    let c = Config::from_toml(&good, Secrets::default()).unwrap();
    let p = &c.profiles[0];
    assert_eq!(
        (p.name.as_str(), p.workspace.image.as_str(), p.workspace.cpus),
        ("python", "py:1", 2.0)
    );
    // What it does not set is [workspace]'s.
    assert_eq!(p.workspace.memory, 2 * 1024 * 1024 * 1024);
    assert_eq!(p.workspace.idle_timeout, Duration::from_secs(600));
    assert_eq!(p.workspace.max_lifetime, Duration::from_secs(7200));
    assert_eq!(c.quota.workspace_hours, Some(10.0));
    assert_eq!(c.permissions_read(), ["roost:python", "roost:unlimited"]);

    let bad = format!(
        "{MINIMAL}idle_timeout = \"3h\"\n\
         [[profiles]]\nname = \"default\"\ndescription = \"x\"\nimage = \"a\"\n\
         [[profiles]]\nname = \"Bad Name\"\nimage = \"b\"\nmemory = \"lots\"\n\
         [[profiles]]\nname = \"short\"\ndescription = \"y\"\nimage = \"c\"\nmax_lifetime = \"1h\"\n\
         [[profiles]]\nname = \"twice\"\ndescription = \"z\"\nimage = \"d\"\n\
         [[profiles]]\nname = \"twice\"\ndescription = \"z\"\nimage = \"d\"\n\
         [quota]\nperiod = \"10s\"\n"
    );
    let Err(ConfigError::Invalid(errors)) = Config::from_toml(&bad, Secrets::default()) else {
        panic!("accepted");
    };
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    for key in [
        "profiles[0].name",
        "profiles[1].name",
        "profiles[1].description",
        "profiles[1].memory",
        "profiles[2].max_lifetime",
        "profiles[4].name",
        "quota.period",
    ] {
        assert!(keys.contains(&key), "{key} not reported in {keys:?}");
    }
}

fn error_keys(text: &str) -> Vec<String> {
    match Config::from_toml(text, Secrets::default()) {
        Err(ConfigError::Invalid(errors)) => errors.into_iter().map(|e| e.key).collect(),
        other => panic!("expected errors, got {other:?}"),
    }
}

#[test]
fn the_runtime_is_docker_unless_swarm_is_chosen() {
    let c = Config::from_toml(MINIMAL, Secrets::default()).unwrap();
    assert_eq!(c.runtime, RuntimeChoice::Docker);
    let text = MINIMAL.replace("[workspace]\n", "[workspace]\nruntime = \"swarm\"\n")
        + "[swarm]\nattach = [\"traefik\"]\nvolume_driver = \"nfs\"\n";
    let c = Config::from_toml(&text, Secrets::default()).unwrap();
    assert_eq!(
        c.runtime,
        RuntimeChoice::Swarm(SwarmConfig {
            attach: vec!["traefik".into()],
            volume_driver: Some("nfs".into()),
        })
    );
}

#[test]
fn swarm_keys_are_checked_by_name() {
    // [swarm] without the swarm runtime.
    let keys = error_keys(&(MINIMAL.to_string() + "[swarm]\nattach = [\"traefik\"]\n"));
    assert_eq!(keys, ["swarm.attach"]);
    // An unknown runtime.
    let keys = error_keys(&MINIMAL.replace("[workspace]\n", "[workspace]\nruntime = \"k8s\"\n"));
    assert_eq!(keys, ["workspace.runtime"]);
    // The swarm runtime: attach required, published addresses refused.
    let swarm = MINIMAL.replace(
        "[workspace]\n",
        "[workspace]\nruntime = \"swarm\"\naddress = \"published\"\negress = true\n",
    );
    let mut keys = error_keys(&swarm);
    keys.sort();
    assert_eq!(keys, ["swarm.attach", "workspace.address"]);
    let keys = error_keys(
        &(MINIMAL.replace("[workspace]\n", "[workspace]\nruntime = \"swarm\"\n") + "[swarm]\nattach = [\"no/such\"]\n"),
    );
    assert_eq!(keys, ["swarm.attach"]);
}

#[test]
fn the_paused_tier_is_off_unless_set_and_comes_before_the_stop() {
    let c = Config::from_toml(MINIMAL, Secrets::default()).unwrap();
    assert_eq!(c.workspace.pause_after, None);
    assert_eq!(c.workspace.max_paused, 20);
    let text = MINIMAL.replace(
        "[workspace]\n",
        "[workspace]\npause_after = \"5m\"\nidle_timeout = \"1h\"\nmax_paused = 3\n",
    );
    let c = Config::from_toml(&text, Secrets::default()).unwrap();
    assert_eq!(c.workspace.pause_after, Some(Duration::from_secs(300)));
    assert_eq!(c.workspace.max_paused, 3);
    // Not before the stop, not zero, max_paused in range: each by name.
    let keys = error_keys(&MINIMAL.replace(
        "[workspace]\n",
        "[workspace]\npause_after = \"30m\"\nidle_timeout = \"30m\"\nmax_paused = 0\n",
    ));
    assert_eq!(keys, ["workspace.pause_after", "workspace.max_paused"]);
    let keys = error_keys(&MINIMAL.replace("[workspace]\n", "[workspace]\npause_after = \"0s\"\n"));
    assert_eq!(keys, ["workspace.pause_after"]);
    // Not on a swarm.
    let swarm = MINIMAL.replace(
        "[workspace]\n",
        "[workspace]\nruntime = \"swarm\"\npause_after = \"1m\"\n",
    ) + "[swarm]\nattach = [\"traefik\"]\n";
    assert_eq!(error_keys(&swarm), ["workspace.pause_after"]);
}
