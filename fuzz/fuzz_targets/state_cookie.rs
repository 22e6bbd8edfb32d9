//! The sign-in state cookie (`roost_login_<state prefix>`): opening any
//! value under any name, and, behind the seal, everything the callback does
//! with what it holds: the state and expiry checks, the replay check, the
//! code exchange's answer, the ID token, the session it sets and where it
//! sends the browser. A fresh `Login` per run.
//!
//! Input: byte 0 picks the mode.
//!   0: `name\nvalue` → `Sessions::unseal`; the rest also as a `Cookie`
//!      header for `/_roost/login` (which reads every pending attempt).
//!   1..: lines
//!      0: the state (the callback's `state=` and the cookie's name)
//!      1: the sealed attempt's JSON (`@STATE@` → line 0, `@EXP@` → now + 600)
//!      2: the token endpoint's answer (`@IDTOKEN@` → line 3 signed with the
//!         fuzz Ed25519 key; empty line: the exchange fails)
//!      3: the ID token's claims (`@NOW@`, `@EXP@` as above)
//!
//! Checks: no panic; a completed sign-in redirects to a safe place (its
//! own stored `rd`, else the user's workspace) and sets a session cookie
//! that roost can open again; a state never completes twice.
#![no_main]

use http::header::LOCATION;
use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use roost::auth::session::SESSION_COOKIE;
use roost::auth::AuthError;
use roost_fuzz::{fresh_login, harness, set_cookies, sign_ed, split_at_byte, state_cookie_name, times};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let h = harness();
    let sessions = &h.sessions;
    let login = fresh_login();

    if mode % 4 == 0 {
        let (name, value) = split_at_byte(rest, b'\n');
        if let (Ok(name), Ok(value)) = (std::str::from_utf8(name), std::str::from_utf8(value)) {
            let _ = sessions.unseal(name, value);
        }
        if let Ok(header) = HeaderValue::from_bytes(rest) {
            let _ = login.start(None, Some(&header));
        }
        return;
    }

    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let mut lines = text.splitn(4, '\n');
    let state = lines.next().unwrap_or("");
    let pending = times(&lines.next().unwrap_or("").replace("@STATE@", state));
    let answer = lines.next().unwrap_or("");
    let claims = times(lines.next().unwrap_or(""));

    let answer = answer.replace(
        "@IDTOKEN@",
        &sign_ed(br#"{"alg":"EdDSA","kid":"ed","typ":"JWT"}"#, claims.as_bytes()),
    );
    h.fetcher
        .set_token_answer((!answer.is_empty()).then(|| bytes::Bytes::from(answer.into_bytes())));

    let name = state_cookie_name(state);
    let sealed = sessions.seal(&name, &pending);
    let query = format!("code=fuzz-code&state={}", roost::public_url::encode(state));
    let Ok(cookie) = HeaderValue::from_str(&format!("theme=dark; {name}={sealed}")) else {
        return;
    };

    let result = h.rt.block_on(login.callback(Some(&query), Some(&cookie)));
    if roost_fuzz::debug() {
        eprintln!("state_cookie: {:?}", result.as_ref().map(|r| r.headers()));
    }
    let Ok(resp) = result else {
        return;
    };
    // Signed in: where to, and with which session.
    let location = resp.headers().get(LOCATION).expect("Location").to_str().expect("ASCII");
    let stored_rd = serde_json::from_str::<serde_json::Value>(&pending)
        .ok()
        .and_then(|p| p.get("r").and_then(|r| r.as_str().map(str::to_string)));
    match stored_rd {
        // An rd sealed by roost was validated before it was sealed; here the
        // harness sealed it, so only its being used verbatim is checked.
        Some(rd) => assert_eq!(
            location,
            if HeaderValue::from_str(&rd).is_ok() {
                rd.as_str()
            } else {
                "/"
            }
        ),
        None => {
            let origin = h.app.forward_auth.origin();
            assert!(origin.safe_redirect(location).is_some(), "signed in to {location:?}");
        }
    }
    let set = set_cookies(&resp);
    let (_, value, _) = set
        .iter()
        .find(|(n, _, removal)| n == SESSION_COOKIE && !removal)
        .expect("a session cookie");
    assert!(
        set.iter().any(|(n, _, removal)| *n == name && *removal),
        "the state cookie stays: {set:?}"
    );
    match sessions.open(value) {
        Ok(opened) => assert!(!opened.session.sub.is_empty()),
        Err(AuthError::Session("expired" | "past max_age")) => {}
        Err(e) => panic!(
            "roost cannot open the session it set at sign-in ({} bytes): {e}",
            value.len()
        ),
    }
    // The same callback again: the state is spent.
    let again = h.rt.block_on(login.callback(Some(&query), Some(&cookie)));
    assert!(again.is_err(), "a state completed twice");
});
