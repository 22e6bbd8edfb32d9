//! What the fallback proxy removes from the headers it forwards: the
//! hop-by-hop headers (RFC 9110 7.6.1), every header a `Connection` header
//! names, and any spelling of roost's identity headers a client sent
//! (`X_Roost_User`, `X.Roost.User`: distinct names to roost and Traefik,
//! the same `HTTP_X_ROOST_USER` variable to CGI, WSGI or PHP backends).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that belong to one hop and are never forwarded (RFC 9110
/// 7.6.1, plus the non-standard `Keep-Alive` and `Proxy-Connection`).
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// True when `headers` ask for a protocol upgrade (`Connection: upgrade`
/// and an `Upgrade` header).
pub(super) fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_tokens(headers).any(|t| t.eq_ignore_ascii_case(b"upgrade"))
}

/// The comma-separated tokens of every `Connection` header, trimmed.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Removes the hop-by-hop headers and every header named in a
/// `Connection` header. With `upgrade`, the upgrade itself is carried on:
/// `Connection: upgrade` and the `Upgrade` header(s) are put back.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter_map(|t| HeaderName::from_bytes(t).ok())
        .collect();
    let protocols: Vec<HeaderValue> = if upgrade {
        headers.get_all(header::UPGRADE).iter().cloned().collect()
    } else {
        Vec::new()
    };
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    if upgrade && !protocols.is_empty() {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        for p in protocols {
            headers.append(header::UPGRADE, p);
        }
    }
}

/// True for a name a CGI-style backend reads as `X-Roost-…`: with every
/// character that is not a letter or digit taken as `-`, it starts with
/// `x-roost-` (names are lower case in a `HeaderMap`).
fn aliases_roost_header(name: &HeaderName) -> bool {
    const PREFIX: &[u8] = b"x-roost-";
    let name = name.as_str().as_bytes();
    name.len() >= PREFIX.len()
        && name.iter().zip(PREFIX).all(|(&c, &p)| {
            if p == b'-' {
                !c.is_ascii_alphanumeric()
            } else {
                c.eq_ignore_ascii_case(&p)
            }
        })
}

/// Removes every header that is, or aliases, one of roost's own `X-Roost-…`
/// headers: only the values roost adds itself may reach a workspace.
pub(super) fn strip_roost_headers(headers: &mut HeaderMap) {
    let spoofed: Vec<HeaderName> = headers.keys().filter(|n| aliases_roost_header(n)).cloned().collect();
    for name in spoofed {
        headers.remove(&name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    /// The names left, sorted.
    fn names(h: &HeaderMap) -> Vec<&str> {
        let mut names: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_dropped() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("connection", " x-other ,,"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authenticate", "Basic"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("x-secret", "1"),
            ("x-other", "2"),
            ("x-kept", "3"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut h, false);
        let left = names(&h);
        assert_eq!(left, ["accept", "x-kept"]);
    }

    #[test]
    fn an_upgrade_keeps_only_connection_upgrade_and_the_protocol() {
        let mut h = map(&[
            ("connection", "Upgrade, X-Secret"),
            ("upgrade", "websocket"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ]);
        assert!(wants_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
        assert!(!h.contains_key("x-secret") && !h.contains_key("keep-alive"));
        assert!(h.contains_key("sec-websocket-key"), "end-to-end headers stay");
        assert!(wants_upgrade(&h));
    }

    #[test]
    fn upgrade_needs_both_headers() {
        assert!(!wants_upgrade(&map(&[("upgrade", "websocket")])));
        assert!(!wants_upgrade(&map(&[("connection", "upgrade")])));
        assert!(wants_upgrade(&map(&[
            ("connection", "keep-alive, UPGRADE"),
            ("upgrade", "websocket")
        ])));
    }

    #[test]
    fn connection_tokens_that_are_not_header_names_are_ignored() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_bytes(b"x secret, \xff, x-a").unwrap(),
        );
        h.insert("x-a", HeaderValue::from_static("1"));
        h.insert("x-b", HeaderValue::from_static("2"));
        strip_hop_by_hop(&mut h, false);
        let left = names(&h);
        assert_eq!(left, ["x-b"]);
    }

    #[test]
    fn every_alias_of_roost_headers_is_dropped() {
        let mut h = map(&[
            ("x-roost-user", "admin"),
            ("x_roost_user", "admin"),
            ("x.roost.user", "admin"),
            ("x~roost~workspace", "admin"),
            ("x!roost+email", "admin"),
            ("x-roost-csrf", "t"),
            ("x-roostuser", "kept"),
            ("x-roosters", "kept"),
            ("xx-roost-user", "kept"),
            ("x-roost", "kept"),
            ("accept", "kept"),
        ]);
        strip_roost_headers(&mut h);
        let left = names(&h);
        assert_eq!(
            left,
            ["accept", "x-roost", "x-roosters", "x-roostuser", "xx-roost-user"]
        );
    }
}
