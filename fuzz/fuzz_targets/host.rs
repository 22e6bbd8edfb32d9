//! `roost::host::normalize` on any `Host` / `X-Forwarded-Host` value.
//!
//! Checks: no panic, and what comes out is a canonical host: ASCII, no
//! upper case, no trailing dot, no `:` unless it is an IPv6 literal in
//! brackets, normalising it again changes nothing, and the same input in
//! upper case normalises the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roost::host::normalize;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    if roost_fuzz::debug() {
        let upper = raw.to_ascii_uppercase();
        eprintln!(
            "host: {raw:?} -> {:?}; {upper:?} -> {:?}",
            normalize(raw),
            normalize(&upper)
        );
    }
    let Some(out) = normalize(raw) else {
        return;
    };
    let out: &str = &out;
    assert!(!out.is_empty(), "{raw:?} -> empty");
    assert!(out.is_ascii(), "{raw:?} -> {out:?}: not ASCII");
    assert!(
        !out.bytes().any(|b| b.is_ascii_uppercase()),
        "{raw:?} -> {out:?}: upper case"
    );
    assert!(!out.ends_with('.'), "{raw:?} -> {out:?}: trailing dot");
    if out.contains(':') {
        let inner = out
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or_else(|| panic!("{raw:?} -> {out:?}: a ':' outside an IPv6 literal"));
        assert!(
            inner.parse::<std::net::Ipv6Addr>().is_ok(),
            "{raw:?} -> {out:?}: brackets around no IPv6 address"
        );
    }
    let again = normalize(out);
    assert_eq!(again.as_deref(), Some(out), "{raw:?} -> {out:?}: not idempotent");
    // One name, one answer, however it is spelled: upper case changes nothing.
    // KNOWN FINDING (reported; reproducer fuzz/artifacts/host/): the fast path
    // accepts lower-case `xn--` labels the WHATWG parser refuses (invalid
    // punycode), which the same name in upper case is refused for. Skipped for
    // such labels; delete the `xn--` condition once normalize validates them.
    // KNOWN FINDING 2 (reported; reproducers fuzz/artifacts/host/): the fast
    // path's `looks_numeric` misses hex labels, so `0x` and `0x7f.0x1` pass as
    // names while the WHATWG parser (and a browser) reads them as IPv4
    // (`0X` -> 0.0.0.0, `0x7f.0x1` -> 127.0.0.1). Skipped for a last label
    // starting `0x`; delete that condition once the fast path leaves those to
    // the WHATWG parser.
    let hex_tail = out.rsplit('.').next().is_some_and(|l| l.starts_with("0x"));
    let upper = raw.to_ascii_uppercase();
    if !out.contains("xn--") && !hex_tail {
        assert_eq!(
            normalize(&upper).as_deref(),
            Some(out),
            "{raw:?} -> {out:?}, but {upper:?} differs"
        );
    }
});
