//! `PublicOrigin::safe_redirect`: which `rd` targets roost sends a browser
//! to after sign-in (no open redirects), for three public origins.
//!
//! Input: byte 0 picks the origin (https on 443, http on 8080, https on
//! 8443, all for `ws.roost.test`), the rest is the target (UTF-8).
//!
//! Checks: no panic; an accepted target is an absolute URL with the
//! origin's scheme and port, no userinfo, whose host is the domain itself or
//! one DNS label under it, read the same by the WHATWG parser and by `http`'s
//! RFC 3986 parser; accepting it again gives the same URL.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use roost::config::Scheme;
use roost::public_url::PublicOrigin;
use roost_fuzz::DOMAIN;

fn origins() -> &'static [(PublicOrigin, &'static str, &'static str)] {
    static O: OnceLock<Vec<(PublicOrigin, &'static str, &'static str)>> = OnceLock::new();
    O.get_or_init(|| {
        [
            (Scheme::Https, 443, ""),
            (Scheme::Http, 8080, ":8080"),
            (Scheme::Https, 8443, ":8443"),
        ]
        .into_iter()
        .map(|(scheme, port, shown)| {
            let mut routing = roost_fuzz::harness().app.config.routing.clone();
            routing.scheme = scheme;
            routing.public_port = port;
            let origin = PublicOrigin::new(&routing);
            (origin, scheme.as_str(), shown)
        })
        .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(target) = std::str::from_utf8(rest) else {
        return;
    };
    let (origin, scheme, port) = &origins()[pick as usize % 3];
    let Some(url) = origin.safe_redirect(target) else {
        return;
    };
    // Textually: scheme://<host>[:port]/..., host the domain or <label>.domain.
    let after = url
        .strip_prefix(&format!("{scheme}://"))
        .unwrap_or_else(|| panic!("{target:?} -> {url:?}: wrong scheme"));
    let authority = &after[..after
        .find('/')
        .unwrap_or_else(|| panic!("{target:?} -> {url:?}: no path"))];
    let host = authority
        .strip_suffix(port)
        .unwrap_or_else(|| panic!("{target:?} -> {url:?}: wrong port"));
    assert!(!host.contains(':') && !host.contains('@'), "{target:?} -> {url:?}");
    if host != DOMAIN {
        let label = host
            .strip_suffix(&format!(".{DOMAIN}"))
            .unwrap_or_else(|| panic!("{target:?} -> {url:?}: host {host:?} outside the domain"));
        assert!(
            roost::slug::is_label(label),
            "{target:?} -> {url:?}: {label:?} is not one label"
        );
    }
    // The WHATWG parser (what a browser follows) reads the same host ...
    let parsed = url::Url::parse(&url).expect("an accepted target parses");
    assert_eq!(parsed.host_str(), Some(host), "{target:?} -> {url:?}");
    assert!(parsed.username().is_empty() && parsed.password().is_none());
    // ... and so does an RFC 3986 parser (what other clients follow), when it reads it at all.
    if let Ok(uri) = url.parse::<http::Uri>() {
        assert_eq!(
            uri.host(),
            Some(host),
            "{target:?} -> {url:?}: http::Uri reads another host"
        );
        assert_eq!(uri.scheme_str(), Some(*scheme));
    }
    // Bounded after normalisation (roost::public_url::MAX_REDIRECT_LEN), and
    // normalised once and for all.
    assert!(
        url.len() <= roost::public_url::MAX_REDIRECT_LEN,
        "{target:?} -> {} bytes",
        url.len()
    );
    assert_eq!(
        origin.safe_redirect(&url).as_deref(),
        Some(url.as_str()),
        "{target:?} -> {url:?}"
    );
});
