//! Host names as roost compares them, normalised once and the same way for
//! routing, authorization and rendering: lower case, no port, no trailing
//! dot, IDNA mapped to ASCII (punycode), IP literals in their canonical
//! form. `ws.example.com.`, `WS.Example.COM:443` and `ｗｓ.example.com` are
//! all `ws.example.com`; anything that is not a host at all is `None`.

use std::borrow::Cow;
use std::net::Ipv6Addr;

/// The normalised form of a `Host` / `X-Forwarded-Host` value, or `None`
/// when it is not a host name or IP literal (with an optional port).
pub fn normalize(raw: &str) -> Option<Cow<'_, str>> {
    let raw = raw.trim_matches(|c: char| c == ' ' || c == '\t');
    if raw.is_empty() || raw.len() > 1024 {
        return None;
    }
    if let Some(rest) = raw.strip_prefix('[') {
        // [IPv6]:port
        let (literal, after) = rest.split_once(']')?;
        if !after.is_empty() && !is_port(after.strip_prefix(':')?) {
            return None;
        }
        let ip: Ipv6Addr = literal.parse().ok()?;
        return Some(Cow::Owned(format!("[{ip}]")));
    }
    let host = match raw.split_once(':') {
        Some((host, port)) if is_port(port) => host,
        Some(_) => return None,
        None => raw,
    };
    // One trailing dot is the fully qualified spelling of the same name.
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.ends_with('.') {
        return None;
    }
    // The fast path: already lower-case ASCII letters, digits, '-' and '.'
    // with no empty label (what every well-behaved client sends).
    if host
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && is_dns_name(host)
        && !looks_numeric(host)
        && !host.starts_with("xn--")
        && !host.contains(".xn--")
    {
        return Some(Cow::Borrowed(host));
    }
    // Everything else goes through the WHATWG host parser, as a browser
    // reads it: IDNA mapping (upper case, full-width forms, Unicode →
    // punycode) and IPv4 in any of its spellings.
    match url::Host::parse(host).ok()? {
        // Only DNS names (letters, digits, '-'; labels of 1 to 63, at most
        // 253 in all) are hosts roost can serve: what IDNA maps to anything
        // else is no host (and normalising stays idempotent).
        url::Host::Domain(d) => {
            let d = d.strip_suffix('.').unwrap_or(&d);
            is_dns_name(d).then(|| Cow::Owned(d.to_string()))
        }
        url::Host::Ipv4(ip) => Some(Cow::Owned(ip.to_string())),
        url::Host::Ipv6(ip) => Some(Cow::Owned(format!("[{ip}]"))),
    }
}

/// Lower-case letters, digits and '-', in labels of 1 to 63, at most 253 in all.
fn is_dns_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

/// True when the last label is a number (decimal, or `0x` and hex digits,
/// WHATWG's "ends in a number"): the WHATWG parser reads such a name as an
/// IPv4 address (`0x7f.1`, `2130706433`, `0x`), so it takes the slow path
/// to be canonicalised. Punycode labels (`xn--`) take it too, to be
/// validated.
fn looks_numeric(host: &str) -> bool {
    let last = host.rsplit('.').next().unwrap_or(host);
    match last.strip_prefix("0x") {
        Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => last.bytes().all(|b| b.is_ascii_digit()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Option<String> {
        normalize(s).map(Cow::into_owned)
    }

    #[test]
    fn every_spelling_of_a_name_is_one_name() {
        for spelling in [
            "ws.example.com",
            "ws.example.com.",
            "WS.EXAMPLE.COM",
            "Ws.Example.Com.:8443",
            "ws.example.com:80",
            " ws.example.com ",
            "ｗｓ.example.com",
        ] {
            assert_eq!(n(spelling).as_deref(), Some("ws.example.com"), "{spelling:?}");
        }
        assert_eq!(n("alice.ws.example.com").as_deref(), Some("alice.ws.example.com"));
        assert_eq!(n("bücher.example").as_deref(), Some("xn--bcher-kva.example"));
        assert_eq!(n("xn--bcher-kva.example").as_deref(), Some("xn--bcher-kva.example"));
    }

    #[test]
    fn ip_literals_are_canonical() {
        assert_eq!(n("127.0.0.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(n("127.0.0.1:8080").as_deref(), Some("127.0.0.1"));
        assert_eq!(n("0x7f.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(n("2130706433").as_deref(), Some("127.0.0.1"));
        assert_eq!(n("0x7f.0x1").as_deref(), Some("127.0.0.1"));
        assert_eq!(n("0x").as_deref(), Some("0.0.0.0"));
        assert_eq!(n("[::1]:80").as_deref(), Some("[::1]"));
        assert_eq!(n("[0:0::1]").as_deref(), Some("[::1]"));
    }

    #[test]
    fn what_is_not_a_host_is_none() {
        for bad in [
            "",
            ".",
            "..",
            "a..b",
            ".ws.example.com",
            "ws.example.com..",
            "ws.example.com:http",
            "ws.example.com:1:2",
            "::1",
            "[::1",
            "[::1]x",
            "user@ws.example.com",
            "ws.example.com/path",
            "ws example.com",
            // Invalid punycode, however it is cased.
            "xn--licice-1na.ws.roost.test",
            "XN--LICICE-1NA.WS.ROOST.TEST",
            // What IDNA maps to something other than a DNS name.
            "e'ļ.example",
            &"a".repeat(64),
        ] {
            assert_eq!(n(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        for s in [
            "WS.example.com.",
            "ｗｓ.example.com",
            "0x7f.1",
            "[0::1]",
            "Bücher.Example",
        ] {
            let once = n(s).unwrap();
            assert_eq!(n(&once).as_deref(), Some(once.as_str()), "{s:?}");
        }
    }
}
