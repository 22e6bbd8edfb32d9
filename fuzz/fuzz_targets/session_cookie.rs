//! Browser sessions: `Sessions::open` on any `roost_session` value (what a
//! browser, or anyone, can send), `cookie_value` / `cookies` on any `Cookie`
//! header, and, behind the seal, what an opened session's JSON may hold.
//!
//! Input: byte 0 picks the mode, the rest is
//!   0, 1: a cookie value (`@SESSION@`, `@STALE@`, `@OLDKEY@` splice in
//!         real ones) → `open`; and the same bytes as a whole `Cookie`
//!         header → `cookie_value`, `cookies`;
//!   2:    session JSON (`@NOW@`, `@EXP@`: timestamps), sealed with the current key, then opened;
//!   3:    session JSON, sealed with the previous key, then opened.
//!
//! Checks: no panic; an opened session is unexpired and within max_age, its
//! identity has a valid slug; a session roost renews opens again (roost
//! must always read the cookies it writes); a cookie sealed with the
//! previous key asks to be re-sealed.
#![no_main]

use std::sync::OnceLock;

use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use roost::auth::session::{cookie_value, cookies, Opened, SESSION_COOKIE};
use roost::auth::{AuthError, Sessions};
use roost::config::{Secret, Secrets};
use roost::public_url::PublicOrigin;
use roost_fuzz::{credentials, harness, now, times, OLD_COOKIE_KEY};

/// Seals with what is now the previous key.
fn old_sessions() -> &'static Sessions {
    static S: OnceLock<Sessions> = OnceLock::new();
    S.get_or_init(|| {
        let config = &harness().app.config;
        let secrets = Secrets {
            cookie_key: Some(Secret::new(OLD_COOKIE_KEY)),
            ..Secrets::default()
        };
        Sessions::new(&secrets, &config.session, &PublicOrigin::new(&config.routing)).expect("sessions")
    })
}

fn value_of(set_cookie: &HeaderValue) -> String {
    let text = set_cookie.to_str().expect("Set-Cookie is ASCII");
    cookie::Cookie::parse(text.to_string())
        .expect("Set-Cookie parses")
        .value()
        .to_string()
}

fn check_opened(sessions: &Sessions, opened: &Opened) {
    if roost_fuzz::debug() {
        eprintln!(
            "session_cookie: opened {:?} refresh {}",
            opened.session.sub, opened.refresh
        );
    }
    let s = &opened.session;
    let now = now();
    let config = &harness().app.config.session;
    assert!(s.expires.saturating_add(2) > now, "expired session opened: {s:?}");
    assert!(
        now.saturating_sub(s.signed_in) < config.max_age.as_secs() + 2,
        "session past max_age opened: {s:?}"
    );
    if let Ok(identity) = sessions.identity(s) {
        assert!(roost::slug::is_label(&identity.slug), "slug {:?}", identity.slug);
        assert_eq!(&*identity.sub, s.sub.as_str());
    }
    // What roost hands back must open again (or have run out of time).
    let renewed = sessions.renew(s);
    let value = value_of(&renewed);
    match sessions.open(&value) {
        Ok(again) => assert_eq!(again.session.sub, s.sub),
        Err(AuthError::Session("expired" | "past max_age")) => {}
        // A session JSON the harness sealed near the size limit can outgrow it
        // when re-serialised; state_cookie checks roost's own sessions strictly.
        Err(AuthError::Session("not authentic")) if value.len() > 2048 => {}
        Err(e) => panic!(
            "roost cannot open the session cookie it renewed ({} bytes): {e}",
            value.len()
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let h = harness();
    let sessions = &h.sessions;
    match mode % 4 {
        0 | 1 => {
            let rest = credentials().splice(rest);
            if let Ok(value) = std::str::from_utf8(&rest) {
                if let Ok(opened) = sessions.open(value) {
                    check_opened(sessions, &opened);
                }
            }
            if let Ok(header) = HeaderValue::from_bytes(&rest) {
                let found = cookie_value(Some(&header), SESSION_COOKIE);
                if let Some(v) = found {
                    let text = header.to_str().expect("cookie_value only reads ASCII headers");
                    assert!(text.contains(v));
                    if let Ok(opened) = sessions.open(v) {
                        check_opened(sessions, &opened);
                    }
                }
                for (name, value) in cookies(Some(&header)) {
                    assert!(!name.contains(';') && !value.contains(';'));
                }
            }
        }
        m => {
            let Ok(json) = std::str::from_utf8(rest) else {
                return;
            };
            let json = &times(json);
            let sealer = if m == 2 { sessions } else { old_sessions() };
            let sealed = sealer.seal(SESSION_COOKIE, json);
            match sessions.open(&sealed) {
                Ok(opened) => {
                    assert!(m == 2 || opened.refresh, "a previous-key cookie not re-sealed");
                    check_opened(sessions, &opened);
                }
                Err(AuthError::Session("not authentic")) => {
                    assert!(
                        sealed.len() > 2048,
                        "a cookie roost sealed ({} bytes) does not open",
                        sealed.len()
                    );
                }
                Err(_) => {}
            }
        }
    }
});
