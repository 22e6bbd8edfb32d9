//! `/auth` as Traefik calls it: a forwarded request's headers, all chosen by
//! the client (X-Forwarded-Host, Host, X-Forwarded-For, Authorization,
//! Cookie, X-Forwarded-Uri, X-Forwarded-Method, Accept, ...).
//!
//! Input (text-like, one item a line):
//!   line 0: `/auth`'s own query string (`upstream=...`)
//!   line 1: the peer address (else 192.0.2.1)
//!   then:   `Name: value` header lines (repeatable; invalid ones skipped)
//! Markers in values (`@TOKEN@`, `@SESSION@`, ... see roost_fuzz::Credentials)
//! become valid credentials, so the authorized path is reached too.
//!
//! Checks: no panic; the parsed request is consistent with its headers; a
//! 2xx only for alice's own workspace (or the admin); a sign-in redirect
//! points at roost's own login page with a return address under the domain;
//! roost's cookies never reach a workspace.
#![no_main]

use std::net::IpAddr;

use http::header::{HeaderName, HeaderValue, AUTHORIZATION, COOKIE, LOCATION};
use http::HeaderMap;
use libfuzzer_sys::fuzz_target;
use roost::auth::session::cookies;
use roost::forward_auth::{self, AuthRequest, ClientKind, Credential, ROOST_COOKIE_PREFIX};
use roost_fuzz::{credentials, harness, ORIGIN};

fuzz_target!(|data: &[u8]| {
    let h = harness();
    let data = credentials().splice(data);
    let mut lines = data.split(|&b| b == b'\n');
    let query = lines.next().and_then(|l| std::str::from_utf8(l).ok());
    let peer: IpAddr = lines
        .next()
        .and_then(|l| std::str::from_utf8(l).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(IpAddr::from([192, 0, 2, 1]));
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii_start());
        let value = value.strip_suffix(b"\r").unwrap_or(value);
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            headers.append(name, value);
        }
    }

    let req = AuthRequest::from_headers(&headers, peer).with_upstream(query);
    check_request(&req, &headers, peer);

    let method = headers.get("x-forwarded-method").map(HeaderValue::as_bytes);
    let kind = ClientKind::of(method, &headers);
    if kind != ClientKind::Api {
        let accept = headers.get("accept").and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(accept.contains("text/html"), "{kind:?} without accepting HTML");
    }

    let kept = forward_auth::workspace_cookie(headers.get(COOKIE));
    check_workspace_cookie(kept.as_ref());

    let fa = &h.app.forward_auth;
    let outcome = h.rt.block_on(forward_auth::handle(fa, &req));
    if roost_fuzz::debug() {
        match &outcome {
            Ok(r) => eprintln!("forwarded_headers: {} {:?}", r.status(), r.headers()),
            Err(e) => eprintln!("forwarded_headers: {e}"),
        }
    }
    match outcome {
        Ok(resp) if resp.status().is_success() => {
            let user = resp.headers().get("x-roost-user").expect("X-Roost-User on a 2xx");
            let ws = resp
                .headers()
                .get("x-roost-workspace")
                .expect("X-Roost-Workspace on a 2xx");
            let host = req.host.as_deref().expect("a 2xx names a host");
            assert_eq!(fa.workspace_of(host).map(str::as_bytes), Some(ws.as_bytes()));
            // The only credentials that can pass: alice's token or session, root's (admin) token.
            assert!(
                (user == "alice" && ws == "alice") || user == "root",
                "{user:?} let into {ws:?}"
            );
            check_workspace_cookie(resp.headers().get(COOKIE));
        }
        Ok(resp) => {
            assert!(resp.status().is_redirection(), "{}", resp.status());
            let location = resp.headers().get(LOCATION).expect("a redirect has a Location");
            let location = location.to_str().expect("Location is ASCII");
            let login = format!("{ORIGIN}/_roost/login?rd=");
            let rd = location
                .strip_prefix(&login)
                .unwrap_or_else(|| panic!("sign-in goes elsewhere: {location}"));
            let back: String = url::form_urlencoded::parse(format!("rd={rd}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            // Only the length may keep it out: roost::public_url::MAX_REDIRECT_LEN
            // after normalisation (sign-in then returns to the workspace's front
            // page instead).
            let too_long =
                url::Url::parse(&back).map_or(false, |u| u.as_str().len() > roost::public_url::MAX_REDIRECT_LEN);
            if !too_long {
                // What sign-in will accept as the way back (else the browser loses its page).
                let safe = fa.origin().safe_redirect(&back);
                assert!(safe.is_some(), "sign-in redirect with an unsafe way back: {back:?}");
            }
        }
        Err(e) => {
            let resp = e.into_response();
            assert!(
                resp.status().is_client_error() || resp.status().is_server_error(),
                "{}",
                resp.status()
            );
        }
    }
});

fn check_request(req: &AuthRequest<'_>, headers: &HeaderMap, peer: IpAddr) {
    if let Some(host) = req.host.as_deref() {
        assert!(host.is_ascii(), "host {host:?}");
        assert!(
            !host.bytes().any(|b| b.is_ascii_uppercase()),
            "host {host:?} not lower case"
        );
    }
    if headers.get("x-forwarded-for").is_none() {
        for hops in [0, 1, 3] {
            assert_eq!(req.client_ip(hops), peer);
        }
    } else {
        let _ = (req.client_ip(0), req.client_ip(1), req.client_ip(u32::MAX.min(64)));
    }
    match req.credential {
        Credential::Bearer(t) => {
            assert!(!t.is_empty() && t.trim() == t, "bearer {t:?}");
            assert!(headers.contains_key(AUTHORIZATION));
        }
        Credential::Session(v) => {
            assert!(!v.is_empty());
            assert!(
                !headers.contains_key(AUTHORIZATION),
                "a session read despite Authorization"
            );
        }
        Credential::None | Credential::Unsupported => {}
    }
}

/// No cookie of roost's (by the parser roost itself uses) in what a
/// workspace would see.
fn check_workspace_cookie(kept: Option<&HeaderValue>) {
    for (name, _) in cookies(kept) {
        assert!(
            !name.starts_with(ROOST_COOKIE_PREFIX),
            "{name:?} reaches the workspace: {kept:?}"
        );
    }
}
