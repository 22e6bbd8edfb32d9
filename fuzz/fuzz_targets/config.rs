//! `Config::from_toml` on any UTF-8 text (what `roost check-config` and
//! `roost serve` read), with no secrets and with every secret set; a config
//! that validates is then wired into an `App` the way `roost serve` does
//! (minus the listener and the Docker runtime), since "check-config said
//! ok" must mean "serve starts".
//!
//! Input: byte 0 picks the secrets (even: none, odd: all), the rest is the
//! TOML text.
//!
//! Checks: no panic (in validation, in the error messages, or while
//! building the components of a valid config); an invalid config says why.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use roost::config::{Config, ConfigError, Secrets};
use roost_fuzz::{harness, secrets};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let secrets = if pick % 2 == 0 { Secrets::default() } else { secrets() };
    match Config::from_toml(text, secrets) {
        Ok(config) => {
            let h = harness();
            let _enter = h.rt.enter();
            let runtime = Arc::new(roost::workspace::memory::MemoryRuntime::new(([127, 0, 0, 1], 9).into()));
            let store = Arc::new(roost::store::Embedded::in_memory());
            let app = roost::app::App::new(config, h.fetcher.clone(), runtime, store);
            let _ = app.routes.current(&app.workspaces);
            drop(Arc::clone(&app));
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(!shown.is_empty());
            if let ConfigError::Invalid(errors) = &e {
                assert!(!errors.is_empty(), "Invalid without a reason");
            }
        }
    }
});
