//! The sign-in endpoints as a browser (or anyone) calls them:
//! `/_roost/callback?<query>` with any `Cookie` header, and
//! `/_roost/login?rd=<rd>` with any `Cookie` header (which expires the
//! oldest pending attempts). A fresh `Login` per run, the token endpoint
//! always failing.
//!
//! Input lines:
//!   0: the callback's query string (`@STATE@` becomes the state of a real
//!      attempt started for this run)
//!   1: the `Cookie` header (`@PENDING@` becomes that attempt's
//!      `name=value`)
//!   2: `rd` for `/_roost/login`
//!
//! Checks: no panic; the callback never succeeds (no code exchange can); a
//! state is never accepted twice; `/_roost/login` goes to the provider's
//! authorize endpoint, leaves at most MAX_PENDING attempts, and keeps only
//! a safe `rd`.
#![no_main]

use http::header::LOCATION;
use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use roost::auth::login::{LOGIN_COOKIE_PREFIX, MAX_PENDING};
use roost::auth::session::cookies;
use roost::auth::LoginError;
use roost_fuzz::{fresh_login, harness, set_cookies, split_at_byte, AUTHORIZE, ORIGIN};

fuzz_target!(|data: &[u8]| {
    let h = harness();
    let sessions = &h.sessions;
    let login = fresh_login();
    h.fetcher.set_token_answer(None);

    let (query, rest) = split_at_byte(data, b'\n');
    let (cookie, rd) = split_at_byte(rest, b'\n');

    // A real attempt, to splice in.
    let started = login.start(None, None).expect("start");
    let (name, value, _) = set_cookies(&started)
        .into_iter()
        .find(|(n, _, removal)| n.starts_with(LOGIN_COOKIE_PREFIX) && !removal)
        .expect("a state cookie");
    let location = started.headers().get(LOCATION).unwrap().to_str().unwrap().to_string();
    let state = url::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();

    let query = String::from_utf8_lossy(query).replace("@STATE@", &state);
    let cookie = String::from_utf8_lossy(cookie).replace("@PENDING@", &format!("{name}={value}"));
    let cookie = HeaderValue::from_str(&cookie).ok();

    let first = h.rt.block_on(login.callback(Some(&query), cookie.as_ref()));
    if roost_fuzz::debug() {
        eprintln!("callback_query: {:?}", first.as_ref().map(|r| r.status()));
    }
    assert!(first.is_err(), "a callback succeeded without a code exchange");
    if matches!(first, Err(LoginError::Exchange(_))) {
        // It got as far as the exchange: the state is spent.
        let second = h.rt.block_on(login.callback(Some(&query), cookie.as_ref()));
        assert!(
            matches!(second, Err(LoginError::Replayed)),
            "a state accepted twice: {second:?}"
        );
    }

    // /_roost/login with this rd and these cookies.
    let rd = std::str::from_utf8(rd).ok();
    let resp = login.start(rd, cookie.as_ref()).expect("start");
    let location = resp.headers().get(LOCATION).unwrap().to_str().unwrap();
    assert!(
        location.starts_with(&format!("{AUTHORIZE}?response_type=code&")),
        "{location}"
    );
    let pending_before = cookies(cookie.as_ref())
        .filter(|(n, _)| n.starts_with(LOGIN_COOKIE_PREFIX))
        .count();
    let set = set_cookies(&resp);
    let removed = set.iter().filter(|(_, _, removal)| *removal).count();
    assert_eq!(removed, (pending_before + 1).saturating_sub(MAX_PENDING), "{set:?}");
    let (name, value, _) = set
        .iter()
        .find(|(_, _, removal)| !removal)
        .expect("the new state cookie");
    let Some((json, _)) = sessions.unseal(name, value) else {
        // KNOWN FINDING (reported; reproducer fuzz/artifacts/callback_query/):
        // `start` keeps any safe `rd` up to 4096 bytes, but `unseal` refuses
        // values over 2048, so an `rd` over ~1330 bytes makes a state cookie
        // the callback can never open (sign-in from a long deep link fails).
        // Tolerated here; delete this arm once start bounds what it seals.
        if roost_fuzz::debug() {
            eprintln!("callback_query: state cookie of {} bytes does not open", value.len());
        }
        assert!(
            value.len() > 2048,
            "roost cannot open its own state cookie ({} bytes)",
            value.len()
        );
        return;
    };
    let pending: serde_json::Value = serde_json::from_str(&json).expect("state JSON");
    if let Some(r) = pending.get("r") {
        let r = r.as_str().expect("rd is a string");
        assert_eq!(h.app.forward_auth.origin().safe_redirect(r).as_deref(), Some(r));
        let host = url::Url::parse(r).unwrap().host_str().unwrap().to_string();
        assert!(
            r.starts_with(&format!("{ORIGIN}/")) || host.ends_with(&format!(".{}", roost_fuzz::DOMAIN)),
            "rd {r:?} kept"
        );
    }
});
